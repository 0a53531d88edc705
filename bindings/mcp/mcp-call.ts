// What an MCP request handler knows about its call, as the MIG side wants it (bindings/mcp/backend.ts McpCall):
// method, JSON-RPC id, client, `_meta.traceparent`, `_meta.deadline_ms`, `_meta["mig.capability_version"]`, and the
// signal that says the caller left.
import { CLIENT_INFO_META_KEY, type ServerContext } from "@modelcontextprotocol/server";
import { MigError } from "../../schemas/errors.ts";
import type { McpCall } from "./backend.ts";

/** The client as a 2025-era connection declared it at `initialize` (stdio; stateless HTTP forgets it). */
export interface ClientIdentity {
  name?: string | undefined;
  version?: string | undefined;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const MAX_DEADLINE_MS = 24 * 3600 * 1000;

/** The request's `_meta` (the SDK lifts the reserved envelope keys out; `progressToken`, `traceparent` stay). */
export function metaOf(ctx: ServerContext): Record<string, unknown> {
  return (ctx.mcpReq._meta ?? {}) as Record<string, unknown>;
}

/**
 * The McpCall of a request: its client from the 2026-era envelope (or the connection's `initialize`), its trace
 * context and deadline from `_meta`. A `deadline_ms` in `_meta` that is not a positive integer is refused.
 */
export function callOf(
  ctx: ServerContext,
  name: string | undefined,
  client: ClientIdentity | undefined,
  fallbackDeadlineMs?: number,
): McpCall {
  const meta = metaOf(ctx);
  const envelope = ctx.mcpReq.envelope as Record<string, unknown> | undefined;
  const info = (envelope?.[CLIENT_INFO_META_KEY] as ClientIdentity | undefined) ?? client;
  const call: McpCall = {
    method: ctx.mcpReq.method,
    name,
    requestId: ctx.mcpReq.id,
    signal: ctx.mcpReq.signal,
    deadlineMs: fallbackDeadlineMs,
  };
  if (typeof info?.name === "string") call.clientName = info.name.slice(0, 200);
  if (typeof info?.version === "string") call.clientVersion = info.version.slice(0, 100);
  if (typeof meta.traceparent === "string" && TRACEPARENT.test(meta.traceparent)) call.traceparent = meta.traceparent;
  // The runtime checks the pin (semver) as it does for every binding; here it only has to be a string.
  const pin = meta["mig.capability_version"];
  if (typeof pin === "string") call.capabilityVersion = pin.slice(0, 200);
  const deadline = meta.deadline_ms;
  if (deadline !== undefined) {
    if (typeof deadline !== "number" || !Number.isInteger(deadline) || deadline < 1 || deadline > MAX_DEADLINE_MS) {
      throw new MigError("MIG_INVALID_REQUEST", "_meta.deadline_ms must be a positive integer number of milliseconds");
    }
    call.deadlineMs = deadline;
  }
  return call;
}
