// Whether this process can do its work right now, as a load balancer or an orchestrator asks (`GET /readyz`): the
// bus answers a round trip, and JetStream (streams, buckets) answers a request. Liveness is a separate question:
// a process that waits for its bus to come back is alive and should not be restarted for it.
import type { Bus } from "./bus.ts";

export interface Readiness {
  ready: boolean;
  /** "connected", "unreachable" (no round trip within the bound) or "closed". */
  bus: string;
  /** "ok", or why JetStream did not answer. */
  jetstream: string;
}

/** How long each check may take: a probe that hangs is as bad as one that fails. */
const CHECK_MS = 1_000;

export async function readiness(bus: Bus): Promise<Readiness> {
  if (bus.nc.isClosed()) return { ready: false, bus: "closed", jetstream: "unknown" };
  if (!(await within(bus.nc.rtt(), CHECK_MS))) return { ready: false, bus: "unreachable", jetstream: "unknown" };
  try {
    if (!(await within(bus.jsm.getAccountInfo(), CHECK_MS)))
      return { ready: false, bus: "connected", jetstream: `no answer within ${CHECK_MS} ms` };
  } catch (err) {
    return { ready: false, bus: "connected", jetstream: err instanceof Error ? err.message : String(err) };
  }
  return { ready: true, bus: "connected", jetstream: "ok" };
}

/** Whether `work` settles within `ms` (its rejection is rethrown). */
async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([work.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
