// Two sides, each driven by its own loader process in serve mode, measured in alternating rounds (baseline, path,
// path, baseline, …) after a warm-up of each: calls per second, latency, each process's CPU µs per call (from /proc,
// around every round) and, for a side with a nats-server, the messages it carried per call. The ratio is the median
// over pairs of neighbouring rounds (paired.ts), as the loader rows and the other script rows compute theirs.
import { startCpuMeter } from "./background.ts";
import { callsOfRun, cpuPerCall, cpuSnapshot, medianPerKey } from "./cpu.ts";
import { alternate, median, pairedMedianRatio } from "./paired.ts";
import type { ServeLoader } from "./serve-loader.ts";

/** One side: its loader, and the server processes whose CPU is read (the loader's own is `client`). */
export interface Side {
  label: string;
  loader: Pick<ServeLoader, "pid" | "run">;
  processes: Record<string, number | undefined>;
  /** The monitoring endpoint of the side's nats-server, when it has one. */
  natsMonitorUrl?: string;
}

export interface RoundSettings {
  rounds: number;
  warmupMs: number;
  /** Unmeasured calls at the start of each round, while the callers get going again. */
  leadInMs: number;
  durationMs: number;
}

interface Round {
  cps: number;
  errors: number;
  first_error?: string;
  p50_ms: number;
  p99_ms: number;
  cpu: Record<string, number>;
  /** Messages into and out of the side's nats-server per call (`in_msgs` + `out_msgs` of /varz). */
  bus_msgs?: number;
  /** Share of all cores other work on the machine used meanwhile. */
  background: number;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** (max − min) / mean. */
function spreadOf(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return mean > 0 ? round2((Math.max(...values) - Math.min(...values)) / mean) : 0;
}

/** Messages in and out of a nats-server so far, from its monitoring endpoint; undefined without one. */
async function busMessages(monitorUrl: string | undefined): Promise<number | undefined> {
  if (!monitorUrl) return undefined;
  const varz = (await (await fetch(`${monitorUrl}/varz`)).json()) as { in_msgs: number; out_msgs: number };
  return varz.in_msgs + varz.out_msgs;
}

/** One round: the lead-in, then the measured window; CPU per call over both (callsOfRun). */
async function measureRound(side: Side, settings: RoundSettings): Promise<Round> {
  const pids = { ...side.processes, client: side.loader.pid };
  const busBefore = await busMessages(side.natsMonitorUrl);
  const meter = startCpuMeter();
  const before = cpuSnapshot(pids);
  const result = await side.loader.run(settings.leadInMs, settings.durationMs);
  const after = cpuSnapshot(pids);
  const background = meter();
  const busAfter = await busMessages(side.natsMonitorUrl);
  const calls = callsOfRun(result, settings.leadInMs, settings.durationMs);
  return {
    cps: result.throughput_rps,
    errors: result.errors,
    ...(result.first_error ? { first_error: result.first_error } : {}),
    p50_ms: result.latency_ms.p50,
    p99_ms: result.latency_ms.p99,
    cpu: cpuPerCall(before, after, calls),
    ...(busBefore !== undefined && busAfter !== undefined && calls > 0
      ? { bus_msgs: round2((busAfter - busBefore) / calls) }
      : {}),
    background,
  };
}

/** A side's figures over its rounds: the median round's rate and latencies, each process's median CPU per call. */
function sideFigures(rounds: Round[]) {
  const cpu = medianPerKey(rounds.map((r) => r.cpu)).cpu_us_per_call ?? {};
  const cps = Math.round(median(rounds.map((r) => r.cps)));
  return {
    calls_per_s: cps,
    rounds_calls_per_s: rounds.map((r) => r.cps),
    spread: spreadOf(rounds.map((r) => r.cps)),
    p50_ms: round2(median(rounds.map((r) => r.p50_ms))),
    p99_ms: round2(median(rounds.map((r) => r.p99_ms))),
    errors: rounds.reduce((sum, r) => sum + r.errors, 0),
    ...(rounds.some((r) => r.first_error) ? { first_error: rounds.find((r) => r.first_error)!.first_error } : {}),
    cpu_us_per_call: cpu,
    ...(rounds.every((r) => r.bus_msgs !== undefined)
      ? { bus_msgs_per_call: round2(median(rounds.map((r) => r.bus_msgs!))) }
      : {}),
    // The share of one core the loader used at that rate: a loader near 1 would be the bottleneck.
    ...(cpu.client !== undefined ? { loader_cores: round2((cpu.client * cps) / 1e6) } : {}),
  };
}

export type SideFigures = ReturnType<typeof sideFigures>;

/** Warms both sides up, one at a time, then alternates their rounds and sums them up. */
export async function compareSides(
  baseline: Side,
  path: Side,
  settings: RoundSettings,
  log: (line: string) => void,
): Promise<{
  ratio: number | null;
  pair_ratios: number[];
  path: SideFigures;
  baseline: SideFigures;
  background_cpu: number[];
}> {
  for (const side of [baseline, path]) {
    log(`  warm-up: ${side.label}`);
    await side.loader.run(settings.warmupMs, 1);
  }
  const measured = (side: Side) => async () => {
    const r = await measureRound(side, settings);
    log(`  ${side.label}: ${r.cps} calls/s`);
    return r;
  };
  const rounds = await alternate(settings.rounds, measured(baseline), measured(path));
  const pathRates = rounds.b.map((r) => r.cps);
  const baselineRates = rounds.a.map((r) => r.cps);
  return {
    ratio: pairedMedianRatio(pathRates, baselineRates),
    pair_ratios: pathRates.map((rate, i) => round2(rate / baselineRates[i]!)),
    path: sideFigures(rounds.b),
    baseline: sideFigures(rounds.a),
    background_cpu: [...rounds.a, ...rounds.b].map((r) => r.background),
  };
}
