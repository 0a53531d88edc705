// Normalizes an inbound MIG header: fills the standard's defaults and rejects fields of the wrong shape.
import { randomFillSync, randomUUID } from "node:crypto";
import { MigError } from "../../schemas/errors.ts";
import type { JsonObject, MessageHeader } from "../../schemas/types.ts";
import { isoNow } from "./clock.ts";
import { checkMessageId, checkTenant } from "./names.ts";

export const MIG_VERSION = "0.1";
export const DEFAULT_DEADLINE_MS = 30_000;
const MAX_KEY_LENGTH = 256;
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export interface HeaderContext {
  /** Tenant established by the transport (X-Tenant-ID, a NATS subject token, gRPC metadata). */
  transportTenant?: string | undefined;
  maxDeadlineMs: number;
  /** When the transport stops waiting (epoch ms); deadline_ms is lowered to end no later. */
  transportDeadlineAt?: number | undefined;
}

function optionalString(raw: JsonObject, field: string, maxLength = MAX_KEY_LENGTH): string | undefined {
  const value = raw[field];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") {
    throw new MigError("MIG_INVALID_REQUEST", `header.${field} must be a string`);
  }
  if (value.length > maxLength) {
    throw new MigError("MIG_INVALID_REQUEST", `header.${field} is longer than ${maxLength} characters`);
  }
  return value;
}

// Trace ids come from a pool refilled 256 ids at a time: one crypto call per request showed up in profiles.
const TRACE_BYTES = 24;
const tracePool = Buffer.alloc(TRACE_BYTES * 256);
let tracePoolOffset = tracePool.length;

export function newTraceparent(): string {
  if (tracePoolOffset === tracePool.length) {
    randomFillSync(tracePool);
    tracePoolOffset = 0;
  }
  const hex = tracePool.toString("hex", tracePoolOffset, tracePoolOffset + TRACE_BYTES);
  tracePoolOffset += TRACE_BYTES;
  return `00-${hex.slice(0, 32)}-${hex.slice(32, 48)}-01`;
}

/** A fresh header for answers that have no usable request header (e.g. an unparseable body). */
export function fallbackHeader(tenant = ""): MessageHeader {
  return {
    mig_version: MIG_VERSION,
    message_id: randomUUID(),
    timestamp: new Date().toISOString(),
    tenant_id: tenant,
    deadline_ms: DEFAULT_DEADLINE_MS,
  };
}

export function normalizeHeader(input: unknown, context: HeaderContext): MessageHeader {
  if (input !== undefined && input !== null && (typeof input !== "object" || Array.isArray(input))) {
    throw new MigError("MIG_INVALID_REQUEST", "header must be a JSON object");
  }
  const raw = (input ?? {}) as JsonObject;

  const version = optionalString(raw, "mig_version") ?? MIG_VERSION;
  if (version !== MIG_VERSION) {
    throw new MigError(
      "MIG_VERSION_MISMATCH",
      `mig_version "${version}" is not supported; this server speaks "${MIG_VERSION}"`,
      {
        details: { supported_versions: [MIG_VERSION] },
      },
    );
  }

  const givenId = optionalString(raw, "message_id");
  const message_id = givenId === undefined ? randomUUID() : checkMessageId(givenId, "header.message_id");

  const givenTime = optionalString(raw, "timestamp", 64);
  if (givenTime !== undefined && Number.isNaN(Date.parse(givenTime))) {
    throw new MigError("MIG_INVALID_REQUEST", `header.timestamp "${givenTime}" is not an RFC 3339 date-time`);
  }

  const bodyTenant = optionalString(raw, "tenant_id", 64);
  const transportTenant = context.transportTenant || undefined;
  if (bodyTenant !== undefined && transportTenant !== undefined && bodyTenant !== transportTenant) {
    throw new MigError(
      "MIG_FORBIDDEN",
      `header.tenant_id "${bodyTenant}" differs from the tenant "${transportTenant}" this connection established`,
    );
  }
  const tenant = bodyTenant ?? transportTenant;
  if (tenant === undefined) {
    throw new MigError("MIG_INVALID_REQUEST", "tenant_id is required: set header.tenant_id or the X-Tenant-ID header");
  }
  checkTenant(tenant, "tenant_id");

  let deadline_ms = DEFAULT_DEADLINE_MS;
  const givenDeadline = raw.deadline_ms;
  if (givenDeadline !== undefined && givenDeadline !== null && givenDeadline !== 0) {
    if (typeof givenDeadline !== "number" || !Number.isInteger(givenDeadline) || givenDeadline < 1) {
      throw new MigError("MIG_INVALID_REQUEST", "header.deadline_ms must be a positive integer number of milliseconds");
    }
    deadline_ms = Math.min(givenDeadline, context.maxDeadlineMs);
  }
  if (context.transportDeadlineAt !== undefined) {
    // Work nobody waits for is wasted: the transport's deadline wins when it is the shorter one.
    deadline_ms = Math.max(1, Math.min(deadline_ms, Math.floor(context.transportDeadlineAt - Date.now())));
  }

  const header: MessageHeader = {
    mig_version: MIG_VERSION,
    message_id,
    timestamp: givenTime ?? isoNow(),
    tenant_id: tenant,
    deadline_ms,
  };

  const session = optionalString(raw, "session_id");
  if (session !== undefined) header.session_id = session;
  const key = optionalString(raw, "idempotency_key");
  if (key !== undefined) header.idempotency_key = key;
  const traceparent = optionalString(raw, "traceparent", 128);
  // An invalid traceparent is replaced rather than refused, as W3C Trace Context asks.
  header.traceparent = traceparent !== undefined && TRACEPARENT.test(traceparent) ? traceparent : newTraceparent();

  const meta = raw.meta;
  if (meta !== undefined && meta !== null) {
    if (typeof meta !== "object" || Array.isArray(meta)) {
      throw new MigError("MIG_INVALID_REQUEST", "header.meta must be a JSON object");
    }
    header.meta = meta as JsonObject;
  }
  return header;
}

/**
 * Normalizes the header of a request body and writes it back into the body, so that an error answered
 * later for this request carries the same message_id, tenant and trace as a success would.
 */
export function acceptHeader(body: JsonObject, context: HeaderContext): MessageHeader {
  const header = normalizeHeader(body.header, context);
  body.header = header;
  return header;
}
