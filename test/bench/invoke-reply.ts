// The reply the raw baselines answer with: a MIG InvokeResponse built from the request, so
// the baselines parse and serialize the same JSON shape as the runtime does.
import { randomUUID } from "node:crypto";

export interface InvokeLikeRequest {
  header?: { tenant_id?: unknown };
  capability?: unknown;
  payload?: unknown;
}

export function invokeReply(request: InvokeLikeRequest, capability: string): string {
  return JSON.stringify({
    header: {
      mig_version: "0.1",
      message_id: randomUUID(),
      timestamp: new Date().toISOString(),
      tenant_id: typeof request.header?.tenant_id === "string" ? request.header.tenant_id : "",
    },
    capability: typeof request.capability === "string" ? request.capability : capability,
    payload: { output: request.payload ?? null },
  });
}

/** The same reply when the request is not JSON, in the MIG error envelope. */
export function invalidRequestReply(): string {
  return JSON.stringify({
    header: { mig_version: "0.1", message_id: randomUUID(), timestamp: new Date().toISOString() },
    error: { code: "MIG_INVALID_REQUEST", message: "body is not JSON", retryable: false },
  });
}
