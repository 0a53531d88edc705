// HEARTBEAT: echoes the caller's interval within bounds and reports this process's load factor.

import type { HeartbeatAck } from "../../schemas/types.ts";
import type { RuntimeCore } from "../core.ts";
import type { RequestContext } from "../protocol/request-context.ts";
import { acceptRequest, optionalPositiveInt } from "./request.ts";

export const DEFAULT_HEARTBEAT_MS = 15_000;
const MIN_HEARTBEAT_MS = 1_000;
const MAX_HEARTBEAT_MS = 60_000;

export function heartbeat(core: RuntimeCore, body: unknown, request: RequestContext): HeartbeatAck {
  const { raw, header } = acceptRequest(core, body, request);
  const interval = optionalPositiveInt(raw, "interval_ms", 24 * 3600 * 1000) ?? DEFAULT_HEARTBEAT_MS;
  const suggested_interval_ms = Math.min(Math.max(interval, MIN_HEARTBEAT_MS), MAX_HEARTBEAT_MS);
  return { header, suggested_interval_ms, load_factor: core.load.factor() };
}
