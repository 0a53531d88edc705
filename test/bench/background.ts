// Measures how much of the machine other work used while a slice ran: CPU time of all cores
// (/proc/stat) minus the CPU time of this benchmark's own process tree. Such work (test suites,
// compilers) slows whichever side is running, so the report flags rows that had much of it.
import { readFileSync } from "node:fs";
import { treeCpuTicks } from "./processes.ts";

/** Share of all cores used by other work above which a row's figures are flagged as noisy. */
export const BUSY_THRESHOLD = 0.15;

function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1);
  const ticks = fields.map(Number);
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal
  return { busy: total - ticks[3] - ticks[4], total }; // minus idle and iowait
}

/** Starts a measurement; the returned function gives the other work's share of all cores. */
export function startCpuMeter(): () => number {
  let before: { busy: number; total: number; ours: number };
  try {
    before = { ...machineTicks(), ours: treeCpuTicks(process.pid) };
  } catch {
    return () => 0; // no /proc: not measured
  }
  return () => {
    const after = { ...machineTicks(), ours: treeCpuTicks(process.pid) };
    const total = after.total - before.total;
    if (total <= 0) return 0;
    const other = after.busy - before.busy - (after.ours - before.ours);
    return Math.round(Math.min(1, Math.max(0, other / total)) * 100) / 100;
  };
}
