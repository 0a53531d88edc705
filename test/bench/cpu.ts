// CPU time of the processes of a benchmark run, from /proc (Linux): on a shared machine the steadier figure
// than a rate, as it does not count the time a process waited for a core.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { median } from "./paired.ts";
import type { LoadResult } from "./types.ts";

/** CPU time (user + system) of a process so far, in µs; NaN when it cannot be read (gone, or not Linux). */
export function cpuMicros(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return Number.NaN;
  }
}

/** The embedded nats-server's pid, from the ports file it wrote into the runtime's data directory. */
export function natsServerPid(dataDir: string): number | undefined {
  const file = readdirSync(join(dataDir, "ports")).find((f) => /^nats-server_\d+\.ports$/.test(f));
  return file ? Number(/\d+/.exec(file)![0]) : undefined;
}

/** CPU µs per unit of work that each named process (and this one, as `client`) spent while `run` ran; unreadable ones left out. */
export async function cpuPerUnit<T>(
  pids: Record<string, number | undefined>,
  units: number,
  run: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number> }> {
  const before = cpuSnapshot(pids);
  const self0 = process.cpuUsage();
  const result = await run();
  const self = process.cpuUsage(self0);
  const cpu = cpuPerCall(before, cpuSnapshot(pids), units);
  cpu.client = Math.round(((self.user + self.system) / units) * 10) / 10;
  return { result, cpu };
}

/** CPU µs of each named process so far. */
export function cpuSnapshot(pids: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMicros(pid)]));
}

/**
 * The calls a loader run made, lead-in included (its CPU is spent on them too): the lead-in's as the loader counted
 * them when it can (wrk), otherwise taken to run at the measured window's rate.
 */
export function callsOfRun(result: LoadResult, leadInMs: number, durationMs: number): number {
  return result.requests + (result.lead_in_requests ?? (result.requests * leadInMs) / durationMs);
}

/** CPU µs per call of each process between two snapshots; processes that could not be read are left out. */
export function cpuPerCall(
  before: Record<string, number>,
  after: Record<string, number>,
  calls: number,
): Record<string, number> {
  const per: Record<string, number> = {};
  for (const [name, us] of Object.entries(after)) {
    const spent = us - before[name]!;
    if (calls > 0 && Number.isFinite(spent)) per[name] = Math.round((spent / calls) * 10) / 10;
  }
  return per;
}

/** `{cpu_us_per_call}` with each process's median over the slices, or nothing when no slice measured any. */
export function medianPerKey(slices: Record<string, number>[]): { cpu_us_per_call?: Record<string, number> } {
  const names = [...new Set(slices.flatMap((slice) => Object.keys(slice)))];
  if (names.length === 0) return {};
  const of = (name: string) =>
    Math.round(median(slices.flatMap((slice) => (name in slice ? [slice[name]!] : []))) * 10) / 10;
  return { cpu_us_per_call: Object.fromEntries(names.map((name) => [name, of(name)])) };
}

/** "gateway 21.2 + worker 20.1 + … = 70.3": each process's CPU per unit, the figure a loaded machine disturbs least. */
export function cpuLine(cpu: Record<string, number>): string {
  const total = Object.values(cpu).reduce((a, b) => a + b, 0);
  return `${Object.entries(cpu)
    .map(([k, v]) => `${k} ${v}`)
    .join(" + ")} = ${Math.round(total * 1000) / 1000}`;
}
