// MIG errors as gRPC statuses: the standard's status table, "<CODE>: <message>", and the MIG error in trailing metadata.
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { errorHeader } from "../../runtime/mod.ts";
import { type MigError, type MigErrorCode, toMigError } from "../../schemas/errors.ts";

/** gRPC statuses per the standard's table (spec section 4). */
export const GRPC_STATUS: Record<MigErrorCode, status> = {
  MIG_INVALID_REQUEST: status.INVALID_ARGUMENT,
  MIG_UNAUTHORIZED: status.UNAUTHENTICATED,
  MIG_FORBIDDEN: status.PERMISSION_DENIED,
  MIG_NOT_FOUND: status.NOT_FOUND,
  MIG_UNSUPPORTED_CAPABILITY: status.NOT_FOUND,
  MIG_VERSION_MISMATCH: status.FAILED_PRECONDITION,
  MIG_TIMEOUT: status.DEADLINE_EXCEEDED,
  MIG_RATE_LIMITED: status.RESOURCE_EXHAUSTED,
  MIG_BACKPRESSURE: status.RESOURCE_EXHAUSTED,
  MIG_UNAVAILABLE: status.UNAVAILABLE,
  MIG_INTERNAL: status.INTERNAL,
};

/** Trailer keys that carry the MIG error (docs/bindings/grpc.md). */
export const TRAILER = {
  code: "mig-error-code",
  retryable: "mig-error-retryable",
  details: "mig-error-details",
  messageId: "mig-message-id",
} as const;

/** Details larger than this stay out of the trailers (clients cap metadata at 8 KiB by default). */
const MAX_DETAILS_CHARS = 4096;

/** JSON with every non-ASCII character escaped, so it is a legal ASCII metadata value and still the same JSON. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * The status a failed call ends with. `body` is the request as far as it was read: its message_id
 * (when well formed) goes into the trailers so that the caller can correlate.
 */
export function statusFor(err: unknown, body?: unknown, tenantHint?: string, grpcCode?: status): ServiceError {
  const error: MigError = toMigError(err);
  const metadata = new Metadata();
  metadata.set(TRAILER.code, error.code);
  metadata.set(TRAILER.retryable, String(error.retryable));
  if (error.details !== undefined) {
    const json = asciiJson(error.details);
    metadata.set(
      TRAILER.details,
      json.length <= MAX_DETAILS_CHARS ? json : asciiJson({ truncated: true, size: json.length }),
    );
  }
  metadata.set(TRAILER.messageId, errorHeader(body, tenantHint).message_id);
  const details = `${error.code}: ${error.message}`;
  return Object.assign(new Error(details), { code: grpcCode ?? GRPC_STATUS[error.code], details, metadata });
}
