// Error envelopes: the `{header, error}` answer every binding gives, with the best header the request allows.
import { randomUUID } from "node:crypto";
import { type MigError, toMigError } from "../../schemas/errors.ts";
import type { ErrorEnvelope, MessageHeader } from "../../schemas/types.ts";
import { DEFAULT_DEADLINE_MS, MIG_VERSION } from "./header.ts";

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const TENANT = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A header for an error answer: the request's message_id and tenant when they are well formed (so the
 * caller can correlate), fresh values otherwise; never an echo of malformed input.
 */
export function errorHeader(body: unknown, tenantHint?: string): MessageHeader {
  const given =
    body !== null && typeof body === "object" && !Array.isArray(body)
      ? (body as { header?: unknown }).header
      : undefined;
  const raw =
    given !== null && typeof given === "object" && !Array.isArray(given) ? (given as Record<string, unknown>) : {};
  const tenant =
    typeof raw.tenant_id === "string" && TENANT.test(raw.tenant_id)
      ? raw.tenant_id
      : tenantHint && TENANT.test(tenantHint)
        ? tenantHint
        : "";
  const header: MessageHeader = {
    mig_version: MIG_VERSION,
    message_id: typeof raw.message_id === "string" && UUID.test(raw.message_id) ? raw.message_id : randomUUID(),
    timestamp: new Date().toISOString(),
    tenant_id: tenant,
    deadline_ms:
      typeof raw.deadline_ms === "number" && Number.isInteger(raw.deadline_ms) && raw.deadline_ms > 0
        ? raw.deadline_ms
        : DEFAULT_DEADLINE_MS,
  };
  if (typeof raw.session_id === "string" && raw.session_id.length <= 256) header.session_id = raw.session_id;
  if (
    typeof raw.traceparent === "string" &&
    /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/.test(raw.traceparent)
  ) {
    header.traceparent = raw.traceparent;
  }
  return header;
}

export function errorEnvelope(err: unknown, body: unknown, tenantHint?: string): ErrorEnvelope {
  const error: MigError = toMigError(err);
  return { header: errorHeader(body, tenantHint), error: error.toJSON() };
}
