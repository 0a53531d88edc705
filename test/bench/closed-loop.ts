// The closed-loop driver shared by the load generators: N callers, each sending its next
// request as soon as the previous one answers, over a warm-up and then a measured window; and
// the loader process's life: probe, then one run (one-shot) or runs on command (--serve).
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Histogram } from "./histogram.ts";
import type { LoadResult } from "./types.ts";

export interface LoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** One request; resolves when the answer is complete, rejects on any failure. */
  call: () => Promise<void>;
}

export interface LoopOutcome {
  requests: number;
  errors: number;
  histogram: Histogram;
  firstError?: string;
}

/** Pause after a failed request so a dead server does not turn the loop into a busy spin. */
const ERROR_PAUSE_MS = 10;

export async function runClosedLoop(options: LoopOptions): Promise<LoopOutcome> {
  const histogram = new Histogram();
  let requests = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const measureUntil = measureFrom + options.durationMs;

  async function caller(): Promise<void> {
    for (;;) {
      const sent = performance.now();
      if (sent >= measureUntil) return;
      try {
        await options.call();
        const done = performance.now();
        if (done >= measureFrom && done < measureUntil) {
          histogram.recordMs(done - sent);
          requests++;
        }
      } catch (err) {
        const done = performance.now();
        if (done >= measureFrom && done < measureUntil) {
          errors++;
          firstError ??= describe(err);
        }
        await new Promise((resolve) => setTimeout(resolve, ERROR_PAUSE_MS));
      }
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, caller));
  return { requests, errors, histogram, firstError };
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** The command line every load generator accepts, next to its own target options. */
export interface LoaderArgs {
  concurrency: number;
  body: string;
  /** One-shot mode: warm-up and measured window of the single run. */
  warmupMs: number;
  durationMs: number;
  /** Serve mode: after the probe, print {"ready":true} and run on command (see runLoader). */
  serve: boolean;
  values: Record<string, string | boolean | undefined>;
}

export function parseLoaderArgs(extra: string[]): LoaderArgs {
  const options: Record<string, { type: "string" } | { type: "boolean" }> = {
    concurrency: { type: "string" },
    "warmup-ms": { type: "string" },
    "duration-ms": { type: "string" },
    body: { type: "string" },
    serve: { type: "boolean" },
  };
  for (const name of extra) options[name] = { type: "string" };
  const { values } = parseArgs({ options, strict: true });
  const serve = values.serve === true;
  const concurrency = positiveInt(values.concurrency, "--concurrency");
  const warmupMs = serve ? 0 : positiveInt(values["warmup-ms"] ?? "0", "--warmup-ms", true);
  const durationMs = serve ? 0 : positiveInt(values["duration-ms"], "--duration-ms");
  if (typeof values.body !== "string") throw new Error("--body is required: the JSON body to send");
  JSON.parse(values.body); // fail early on a body that is not JSON
  for (const name of extra) {
    if (typeof values[name] !== "string") throw new Error(`--${name} is required`);
  }
  return { concurrency, warmupMs, durationMs, serve, body: values.body, values };
}

function positiveInt(value: unknown, flag: string, zeroOk = false): number {
  const n = Number(value);
  if (typeof value !== "string" || !Number.isInteger(n) || n < (zeroOk ? 0 : 1)) {
    throw new Error(`${flag} must be a ${zeroOk ? "non-negative" : "positive"} integer, got ${value}`);
  }
  return n;
}

/**
 * Checks one answer body before the run: it must be a JSON object without an `error` field,
 * so a loop of fast 404s or MIG error envelopes is never reported as throughput.
 */
export function checkProbeReply(text: string): string | undefined {
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    return `probe: answer is not JSON: ${text.slice(0, 200)}`;
  }
  if (typeof reply !== "object" || reply === null || Array.isArray(reply)) {
    return `probe: answer is not a JSON object: ${text.slice(0, 200)}`;
  }
  if ("error" in reply) return `probe: answer is an error envelope: ${text.slice(0, 300)}`;
  return undefined;
}

/** What a wire-specific load generator provides to `runLoader`. */
export interface Wire {
  tool: LoadResult["tool"];
  /** Sends one request and checks its answer; resolves with why it is unusable, if it is. */
  probe(): Promise<string | undefined>;
  call(): Promise<void>;
  /** Wire-specific figures of the run just finished (and resets their counters). */
  extra?(): Partial<LoadResult>;
  close(): Promise<void>;
}

/** A command of serve mode, one JSON object per stdin line. */
interface RunCommand {
  warmup_ms: number;
  duration_ms: number;
}

/**
 * The life of a loader process: probe, then either one run (one-shot) or, with --serve, a run
 * per stdin command, until stdin closes. Each run prints one JSON line on stdout.
 */
export async function runLoader(args: LoaderArgs, wire: Wire): Promise<void> {
  let problem: string | undefined;
  try {
    problem = await wire.probe();
  } catch (err) {
    problem = `probe: ${describe(err)}`;
  }
  if (problem) {
    await print(failedResult(wire.tool, args, problem));
    process.exit(2);
  }
  const once = async (warmupMs: number, durationMs: number) => {
    const outcome = await runClosedLoop({ concurrency: args.concurrency, warmupMs, durationMs, call: wire.call });
    return { ...toResult(wire.tool, args.concurrency, warmupMs, durationMs, outcome), ...wire.extra?.() };
  };
  if (!args.serve) {
    await print(await once(args.warmupMs, args.durationMs));
  } else {
    await print({ ready: true });
    for await (const line of createInterface({ input: process.stdin })) {
      if (!line.trim()) continue;
      const command = JSON.parse(line) as RunCommand;
      await print(await once(command.warmup_ms, command.duration_ms));
    }
  }
  await wire.close();
  process.exit(0);
}

function print(value: unknown): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(value)}\n`, () => resolve()));
}

/** Turns a loop outcome into the JSON line the orchestrator reads. */
function toResult(
  tool: LoadResult["tool"],
  concurrency: number,
  warmupMs: number,
  durationMs: number,
  outcome: LoopOutcome,
): LoadResult {
  const h = outcome.histogram;
  return {
    tool,
    concurrency,
    warmup_s: warmupMs / 1000,
    duration_s: durationMs / 1000,
    requests: outcome.requests,
    errors: outcome.errors,
    throughput_rps: durationMs > 0 ? Math.round((outcome.requests / durationMs) * 1000 * 10) / 10 : 0,
    latency_ms: h.latencies(),
    ...(outcome.firstError ? { first_error: outcome.firstError } : {}),
    histogram: h.toJSON(),
  };
}

/** Result line for a loader that could not measure at all. */
export function failedResult(tool: LoadResult["tool"], args: LoaderArgs, error: string): LoadResult {
  return {
    tool,
    concurrency: args.concurrency,
    warmup_s: args.warmupMs / 1000,
    duration_s: args.durationMs / 1000,
    requests: 0,
    errors: 0,
    throughput_rps: 0,
    latency_ms: { p50: 0, p99: 0, p999: 0, mean: 0, max: 0 },
    error,
  };
}
