// Writes MIG answers over HTTP: JSON bodies, and error envelopes with the status of the standard's table.
import type { ServerResponse } from "node:http";
import { HTTP_STATUS, toMigError } from "../../runtime/errors.ts";
import { errorEnvelope } from "../../runtime/envelope.ts";
import { BodyTooLarge } from "./body.ts";

export function sendJson(res: ServerResponse, status: number, value: unknown, extraHeaders: Record<string, string> = {}): void {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...extraHeaders,
  });
  res.end(text);
}

export function sendError(
  res: ServerResponse,
  err: unknown,
  body: unknown,
  tenantHint: string | undefined,
  override: { status?: number; headers?: Record<string, string> } = {},
): void {
  const error = toMigError(err);
  // A body over the limit is MIG_INVALID_REQUEST on the wire, but HTTP has a precise status for it.
  const status = override.status ?? (err instanceof BodyTooLarge ? 413 : HTTP_STATUS[error.code]);
  const headers: Record<string, string> = { ...override.headers };
  if (err instanceof BodyTooLarge) headers.connection = "close";
  if (error.code === "MIG_RATE_LIMITED" && typeof error.details?.retry_after_ms === "number") {
    headers["retry-after"] = String(Math.ceil(error.details.retry_after_ms / 1000));
  }
  sendJson(res, status, errorEnvelope(error, body, tenantHint), headers);
}
