// CPU time of the processes of a benchmark run, from /proc (Linux): on a shared machine the steadier figure
// than a rate, as it does not count the time a process waited for a core.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

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

/** CPU µs per unit of work that each named process (and this one, as `client`) spent while `run` ran. */
export async function cpuPerUnit<T>(
  pids: Record<string, number | undefined>,
  units: number,
  run: () => Promise<T>,
): Promise<{ result: T; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMicros(pid)]));
  const self0 = process.cpuUsage();
  const result = await run();
  const self = process.cpuUsage(self0);
  const per = (us: number) => Math.round((us / units) * 10) / 10;
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, per(cpuMicros(pid) - before[k]!)]));
  cpu.client = per(self.user + self.system);
  return { result, cpu };
}
