// The typed MIG error: one class with a stable code, plus the per-binding status tables.

import { isMigErrorCode, MIG_ERROR_CODES, type MigErrorCode } from "./error-codes.ts";

export { MIG_ERROR_CODES, type MigErrorCode };

/** Codes a caller may retry unchanged; the rest need a different request. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<MigErrorCode> = new Set<MigErrorCode>([
  "MIG_TIMEOUT",
  "MIG_RATE_LIMITED",
  "MIG_BACKPRESSURE",
  "MIG_UNAVAILABLE",
]);

/** HTTP statuses per the standard's table; MIG_BACKPRESSURE is 503 (documented in docs/bindings/http.md). */
export const HTTP_STATUS: Record<MigErrorCode, number> = {
  MIG_INVALID_REQUEST: 400,
  MIG_UNAUTHORIZED: 401,
  MIG_FORBIDDEN: 403,
  MIG_NOT_FOUND: 404,
  MIG_UNSUPPORTED_CAPABILITY: 404,
  MIG_VERSION_MISMATCH: 400,
  MIG_TIMEOUT: 504,
  MIG_RATE_LIMITED: 429,
  MIG_BACKPRESSURE: 503,
  MIG_UNAVAILABLE: 503,
  MIG_INTERNAL: 500,
};

export interface MigErrorBody {
  code: MigErrorCode;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
}

export class MigError extends Error {
  readonly code: MigErrorCode;
  readonly retryable: boolean;
  readonly details?: Record<string, unknown>;

  /**
   * `cause` is the library's or the system's error behind this one, for the log only: it never goes on the wire
   * (toJSON leaves it out); the caller gets `details.cause` from publicCause().
   */
  constructor(
    code: MigErrorCode,
    message: string,
    options: { retryable?: boolean; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MigError";
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    if (options.details !== undefined) this.details = options.details;
  }

  toJSON(): MigErrorBody {
    const body: MigErrorBody = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.details !== undefined) body.details = this.details;
    return body;
  }

  static isCode(value: unknown): value is MigErrorCode {
    return isMigErrorCode(value);
  }

  /** Rebuilds a MigError from a wire body, e.g. one a remote provider sent. */
  static fromBody(body: { code?: unknown; message?: unknown; retryable?: unknown; details?: unknown }): MigError {
    const code = MigError.isCode(body.code) ? body.code : "MIG_INTERNAL";
    const message =
      typeof body.message === "string" ? body.message : "the provider reported an error without a message";
    const options: { retryable?: boolean; details?: Record<string, unknown> } = {};
    if (typeof body.retryable === "boolean") options.retryable = body.retryable;
    if (body.details && typeof body.details === "object" && !Array.isArray(body.details)) {
      options.details = body.details as Record<string, unknown>;
    }
    return new MigError(code, message, options);
  }
}

/** Turns anything thrown into a MigError without leaking stack traces to the wire. */
export function toMigError(err: unknown, fallbackMessage = "the capability failed with an internal error"): MigError {
  if (err instanceof MigError) return err;
  return new MigError("MIG_INTERNAL", fallbackMessage);
}

/** Upper bound of a `details.cause` sentence, in characters. */
const MAX_CAUSE_CHARS = 200;

/**
 * What a caller may read of a library's or the system's error (nats-server, nats.js, Node): its first line, with
 * file paths, file URLs and stack frames taken out, at most MAX_CAUSE_CHARS long. JetStream, for one, names the
 * files of its store in its errors ("open /var/lib/nats/jetstream/…/1.blk: is a directory"); the full error goes
 * to the log as the MigError's `cause`.
 */
export function publicCause(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = (text.split(/\r?\n/, 1)[0] ?? "")
    .replace(/\s+at\s+\S+\s+\(.*$/, "")
    .replace(/file:\/\/\S+/g, "<path>")
    // An absolute POSIX path: a slash (not a URL's "//") at the start or after a space, quote, bracket or "=".
    .replace(/(^|[\s"'([=])\/(?!\/)[^\s"'()[\],;:]*/g, "$1<path>")
    .replace(/(^|[\s"'([=])[A-Za-z]:\\[^\s"'()[\],;]*/g, "$1<path>");
  return line.length > MAX_CAUSE_CHARS ? `${line.slice(0, MAX_CAUSE_CHARS - 1)}…` : line;
}

/** How long a caller should wait before retrying after the bus connection dropped: about one reconnect. */
export const BUS_RETRY_AFTER_MS = 1_000;

/** The bus connection dropped while a request waited on it: whatever it waited for will not come on that connection. */
export class BusDropped extends Error {
  constructor(readonly waiting: string) {
    super(`the NATS connection dropped while ${waiting}; retry`);
    this.name = "BusDropped";
  }
}

/**
 * `details` of a MIG_UNAVAILABLE error for a bus failure: the cause as the caller may read it (publicCause), and
 * when the connection dropped, `retry_after_ms`.
 */
export function busCauseDetails(err: unknown): { cause: string; retry_after_ms?: number } {
  if (err instanceof BusDropped) return { cause: err.message, retry_after_ms: BUS_RETRY_AFTER_MS };
  return { cause: publicCause(err) };
}

/** A MIG_UNAVAILABLE for an operation the bus connection dropped under. */
export function busDropped(waiting: string): MigError {
  const dropped = new BusDropped(waiting);
  return new MigError("MIG_UNAVAILABLE", dropped.message, { details: busCauseDetails(dropped) });
}
