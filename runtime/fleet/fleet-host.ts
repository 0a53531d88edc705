// What the fleet's modules use of the runtime that hosts them. A port: runtime.ts starts the fleet, so the fleet
// names the few things it needs here instead of importing the runtime.
import type { Bus } from "../bus/bus.ts";
import type { RuntimeCore } from "../core.ts";
import type { StreamSession } from "../flow/stream-session.ts";
import type { OpenStreamOptions } from "../ops/stream.ts";
import type { AuditLog } from "../policy/audit.ts";
import type { RequestContext } from "../protocol/request-context.ts";

export interface FleetHost extends RuntimeCore {
  bus: Bus;
  /** This process's id in the fleet (a fresh UUID per start). */
  instanceId: string;
  audit: AuditLog | undefined;
  /** Opens a stream the way a binding does (a worker's side of a relayed stream). */
  openStream(body: unknown, request: RequestContext, options: OpenStreamOptions): StreamSession;
}
