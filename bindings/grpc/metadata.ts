// Request metadata of a gRPC call: credentials, the transport's tenant, and MIG header fields mirrored in metadata.
import type { Metadata } from "@grpc/grpc-js";
import type { Credentials } from "../../runtime/mod.ts";
import type { JsonObject } from "../../schemas/types.ts";

/** Metadata keys that may carry MIG header fields; a field set in the message's header takes precedence. */
const HEADER_FIELDS: [key: string, field: string][] = [
  ["traceparent", "traceparent"],
  ["idempotency-key", "idempotency_key"],
  ["x-session-id", "session_id"],
];

/** The first text value of a metadata key (binary `-bin` values are not read). */
export function first(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === "string" ? value : undefined;
}

export function credentialsOf(metadata: Metadata): Credentials {
  // binding and tenant go into the audit record of a refused credential.
  return {
    authorization: first(metadata, "authorization"),
    actor: first(metadata, "x-actor"),
    binding: "grpc",
    tenant: tenantOf(metadata),
  };
}

export function tenantOf(metadata: Metadata): string | undefined {
  return first(metadata, "x-tenant-id");
}

/** Copies MIG header fields from metadata into the request's header where the message left them unset. */
export function mergeHeaderFields(metadata: Metadata, body: JsonObject): void {
  for (const [key, field] of HEADER_FIELDS) {
    const value = first(metadata, key);
    if (value === undefined || value === "") continue;
    const header = (body.header ??= {}) as JsonObject;
    if (header[field] === undefined) header[field] = value;
  }
}

/**
 * A call ended this close to its deadline ended because of it: the client's deadline timer starts
 * before the request reaches us, so its cancel can arrive early, more so on a loaded machine.
 */
export const DEADLINE_SLACK_MS = 100;

/** The call's deadline (grpc-timeout) as epoch ms; Infinity when the client set none. */
export function deadlineAtOf(call: { getDeadline(): Date | number }): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** Whether a call that just ended was ended by its own deadline rather than by the client. */
export function endedByDeadline(deadlineAt: number): boolean {
  return deadlineAt - Date.now() <= DEADLINE_SLACK_MS;
}
