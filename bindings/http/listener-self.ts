// What an HTTP listener knows of itself, for the admin routes that report on the process (connections, self-check).
import type { ConnectionCensus } from "./connection-census.ts";
import type { SelfCheck, SelfCheckState } from "./self-check.ts";

export interface ListenerSelf {
  census: ConnectionCensus;
  selfCheck: SelfCheckState;
  /** Whether this process serves the NATS binding too: the composition root says so (AdminHooks). */
  natsBinding: boolean;
}

/** What the composition root tells the HTTP binding about the rest of the process, once every binding listens. */
export interface AdminHooks {
  /** Runs the conformance harness against this runtime (GET /admin/v0.1/health/conformance). */
  selfCheck?: SelfCheck;
  /** Whether the NATS binding runs in this process (`summary.nats_binding_active` of GET /admin/v0.1/connections). */
  natsBinding?: boolean;
}
