// JSON-RPC request ids ↔ MIG message ids. A stateless endpoint keeps no map between them: on the 2025-era wire a
// cancellation (`notifications/cancelled`) is a separate POST that any gateway may receive, so the message id is
// computed from what both requests carry, the caller and the request id, and any gateway finds it again.
import { createHash, randomUUID } from "node:crypto";
import type { McpBackend } from "./backend.ts";

/** A UUID (version 8: application-defined) made from the caller's key and a JSON-RPC request id. */
export function stableMessageId(callerKey: string, requestId: string | number): string {
  const hash = createHash("sha256")
    .update(`mcp\u0000${callerKey}\u0000${JSON.stringify(requestId)}`)
    .digest();
  hash[6] = (hash[6]! & 0x0f) | 0x80;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * The message id of a call: stable when the backend asks for it (stateless HTTP, 2025-era requests) and that id is
 * free here, otherwise random. Two clients of one principal that use the same request id at the same time share
 * the stable id: the second gets a random one, and a cancellation notification from either reaches the first's call
 * (the 2025 wire has no session to tell them apart; closing the request cancels the right one).
 */
export function messageIdFor(backend: McpBackend, requestId: string | number | undefined): string {
  if (backend.correlationKey === undefined || requestId === undefined) return randomUUID();
  const id = stableMessageId(backend.correlationKey, requestId);
  return backend.inFlight?.(id) ? randomUUID() : id;
}
