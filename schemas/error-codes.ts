// The standard's error codes: the one list the runtime, the bindings and the conformance harness share.

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

export function isMigErrorCode(value: unknown): value is MigErrorCode {
  return typeof value === "string" && (MIG_ERROR_CODES as readonly string[]).includes(value);
}
