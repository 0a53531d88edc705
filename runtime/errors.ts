// The typed MIG error: one class with a stable code, plus the per-binding status tables.

export const MIG_ERROR_CODES = [
  "MIG_INVALID_REQUEST",
  "MIG_UNAUTHORIZED",
  "MIG_FORBIDDEN",
  "MIG_NOT_FOUND",
  "MIG_UNSUPPORTED_CAPABILITY",
  "MIG_VERSION_MISMATCH",
  "MIG_TIMEOUT",
  "MIG_RATE_LIMITED",
  "MIG_BACKPRESSURE",
  "MIG_UNAVAILABLE",
  "MIG_INTERNAL",
] as const;

export type MigErrorCode = (typeof MIG_ERROR_CODES)[number];

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

  constructor(
    code: MigErrorCode,
    message: string,
    options: { retryable?: boolean; details?: Record<string, unknown> } = {},
  ) {
    super(message);
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
    return typeof value === "string" && (MIG_ERROR_CODES as readonly string[]).includes(value);
  }

  /** Rebuilds a MigError from a wire body, e.g. one a remote provider sent. */
  static fromBody(body: { code?: unknown; message?: unknown; retryable?: unknown; details?: unknown }): MigError {
    const code = MigError.isCode(body.code) ? body.code : "MIG_INTERNAL";
    const message = typeof body.message === "string" ? body.message : "the provider reported an error without a message";
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
