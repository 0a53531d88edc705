// Outcomes a check can raise (failure, skip) and the small predicates the checks share.
import type { MigErrorCode } from "../schemas/error-codes.ts";

/** Thrown by a check to fail with a reason. */
export class CheckFailure extends Error {
  override name = "CheckFailure";
}

/** Thrown by a check that cannot run against this endpoint, with the reason. */
export class CheckSkipped extends Error {
  override name = "CheckSkipped";
}

export function fail(reason: string): never {
  throw new CheckFailure(reason);
}

export function skip(reason: string): never {
  throw new CheckSkipped(reason);
}

export function ensure(condition: unknown, reason: string): asserts condition {
  if (!condition) fail(reason);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value as short JSON for a reason line. */
export function brief(value: unknown, max = 160): string {
  let text: string;
  try {
    text = typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  text = text.replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export { isMigErrorCode, MIG_ERROR_CODES, type MigErrorCode } from "../schemas/error-codes.ts";

/** HTTP statuses the standard's error table allows per MIG code (backpressure: "choose and document"). */
export const HTTP_STATUS_BY_CODE: Readonly<Record<MigErrorCode, readonly number[]>> = {
  MIG_INVALID_REQUEST: [400],
  MIG_UNAUTHORIZED: [401],
  MIG_FORBIDDEN: [403],
  MIG_NOT_FOUND: [404],
  MIG_UNSUPPORTED_CAPABILITY: [404],
  MIG_VERSION_MISMATCH: [400],
  MIG_TIMEOUT: [504],
  MIG_RATE_LIMITED: [429],
  MIG_BACKPRESSURE: [503, 429],
  MIG_UNAVAILABLE: [503],
  MIG_INTERNAL: [500],
};

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const RFC3339_PATTERN = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
export const SEMVER_PATTERN = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;
