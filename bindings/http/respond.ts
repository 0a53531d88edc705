// Writes MIG answers over HTTP: JSON bodies, and error envelopes with the status of the standard's table.
import type { ServerResponse } from "node:http";
import { encodeFrame, errorEnvelope, errorHeader } from "../../runtime/mod.ts";
import { HTTP_STATUS, MigError, toMigError } from "../../schemas/errors.ts";
import type { StreamFrame } from "../../schemas/types.ts";
import { BodyTooLarge, UnsupportedContentType } from "./body.ts";

/** The answer when an answer cannot be encoded as JSON (too deep, a BigInt, a cycle): the caller still gets an envelope. */
export const UNENCODABLE = "the answer could not be encoded as JSON; the runtime log has the cause";

/**
 * JSON.stringify that never throws: a value it cannot encode becomes a MIG_INTERNAL envelope that keeps the
 * request's correlation header. `failed` says which happened, for the status and the log.
 */
export function encodeAnswer(value: unknown, tenantHint?: string): { text: string; failed: unknown } {
  try {
    return { text: JSON.stringify(value), failed: undefined };
  } catch (err) {
    const envelope = {
      header: errorHeader(value, tenantHint),
      error: new MigError("MIG_INTERNAL", UNENCODABLE).toJSON(),
    };
    return { text: JSON.stringify(envelope), failed: err };
  }
}

/** Writes `value` as JSON; one that cannot be encoded is answered 500 MIG_INTERNAL. Returns what failed, if anything. */
export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  extraHeaders: Record<string, string> = {},
): unknown {
  if (res.destroyed || res.headersSent) return undefined;
  const { text, failed } = encodeAnswer(value);
  res.writeHead(failed === undefined ? status : 500, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...extraHeaders,
  });
  if (text.length <= ANSWER_SLICE) res.end(text);
  else writeSliced(res, text, 0);
  return failed;
}

/**
 * Answers longer than this (in UTF-16 units) are written a slice per turn of the event loop. Writing one to a socket
 * costs its process the kernel's copy, about 11 µs per KiB on a loopback socket here, all in one system call: a 500 KB
 * answer held the loop for about 6 ms, and every other caller's request with it. In slices, others' requests are
 * read and answered between them (docs/security.md, 'Large answers').
 */
export const ANSWER_SLICE = 64 * 1024;

function writeSliced(res: ServerResponse, text: string, from: number): void {
  if (res.destroyed) return;
  let to = from + ANSWER_SLICE;
  if (to >= text.length) {
    res.end(from === 0 ? text : text.slice(from));
    return;
  }
  // Never between the two halves of a surrogate pair: each slice is encoded as UTF-8 on its own.
  const code = text.charCodeAt(to - 1);
  if (code >= 0xd800 && code <= 0xdbff) to--;
  res.write(text.slice(from, to));
  setImmediate(writeSliced, res, text, to);
}

/** An error's `details.retry_after_ms` as an HTTP Retry-After value (whole seconds, at least 1), if it has one. */
export function retryAfterSeconds(error: MigError): string | undefined {
  const ms = error.details?.retry_after_ms;
  return typeof ms === "number" ? String(Math.max(1, Math.ceil(ms / 1000))) : undefined;
}

export function sendError(
  res: ServerResponse,
  err: unknown,
  body: unknown,
  tenantHint: string | undefined,
  override: { status?: number; headers?: Record<string, string>; close?: boolean } = {},
): unknown {
  const error = toMigError(err);
  // A body over the limit or not JSON is MIG_INVALID_REQUEST on the wire, but HTTP has a precise status for each.
  const status =
    override.status ??
    (err instanceof BodyTooLarge ? 413 : err instanceof UnsupportedContentType ? 415 : HTTP_STATUS[error.code]);
  const headers: Record<string, string> = { ...override.headers };
  if (err instanceof BodyTooLarge || override.close) headers.connection = "close";
  const retryAfter = retryAfterSeconds(error);
  if ((error.code === "MIG_RATE_LIMITED" || error.code === "MIG_BACKPRESSURE") && retryAfter !== undefined) {
    headers["retry-after"] = retryAfter;
  }
  let envelope = errorEnvelope(error, body, tenantHint);
  try {
    JSON.stringify(envelope.error);
  } catch {
    // Details a provider or a remote runtime filled with something JSON cannot hold: the code and message still go out.
    envelope = {
      header: envelope.header,
      error: { code: error.code, message: error.message, retryable: error.retryable },
    };
  }
  return sendJson(res, status, envelope, headers);
}

/** A stream frame as JSON, or undefined when JSON cannot encode it (then its stream is failed, or its terminal replaced). */
export function tryEncodeFrame(frame: StreamFrame): string | undefined {
  try {
    return encodeFrame(frame);
  } catch {
    return undefined;
  }
}

/** The terminal error frame that stands in for a terminal frame JSON could not encode: same stream, a header of its well-formed fields. */
export function unencodableTerminal(frame: StreamFrame, tenantHint?: string): string {
  return JSON.stringify({
    header: errorHeader(frame, tenantHint),
    stream_id: typeof frame.stream_id === "string" ? frame.stream_id : "",
    capability: typeof frame.capability === "string" ? frame.capability : "",
    kind: "error",
    end_stream: true,
    error: new MigError("MIG_INTERNAL", UNENCODABLE).toJSON(),
  });
}
