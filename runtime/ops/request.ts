// Shape checks of inbound request bodies, shared by every operation: one JSON object, typed fields.

import { MigError } from "../../schemas/errors.ts";
import type { JsonObject, MessageHeader } from "../../schemas/types.ts";

import { transportTenant } from "../policy/policy.ts";
import { acceptHeader } from "../protocol/header.ts";
import type { RequestContext } from "../protocol/request-context.ts";

export function requireObject(body: unknown, what = "the request body"): JsonObject {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new MigError("MIG_INVALID_REQUEST", `${what} must be a JSON object`);
  }
  return body as JsonObject;
}

export function optionalStringField(body: JsonObject, field: string, maxLength = 1024): string | undefined {
  const value = body[field];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new MigError("MIG_INVALID_REQUEST", `${field} must be a string`);
  if (value.length > maxLength)
    throw new MigError("MIG_INVALID_REQUEST", `${field} is longer than ${maxLength} characters`);
  return value;
}

export function optionalBooleanField(body: JsonObject, field: string, fallback: boolean): boolean {
  const value = body[field];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "boolean") throw new MigError("MIG_INVALID_REQUEST", `${field} must be true or false`);
  return value;
}

export function optionalStringList(body: JsonObject, field: string, maxItems = 64): string[] {
  const value = body[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string") || value.length > maxItems) {
    throw new MigError("MIG_INVALID_REQUEST", `${field} must be a list of at most ${maxItems} strings`);
  }
  return value as string[];
}

export function optionalPositiveInt(body: JsonObject, field: string, max: number): number | undefined {
  const value = body[field];
  if (value === undefined || value === null || value === 0) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    throw new MigError("MIG_INVALID_REQUEST", `${field} must be an integer between 1 and ${max}`);
  }
  return value;
}

/** A value named both in the path (or subject) and in the body must agree. */
export function agreeing(
  fromPath: string | undefined,
  fromBody: string | undefined,
  field: string,
): string | undefined {
  if (fromPath !== undefined && fromBody !== undefined && fromPath !== fromBody) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${field} "${fromBody}" in the body differs from "${fromPath}" in the path`,
    );
  }
  return fromPath ?? fromBody;
}

/**
 * Where every operation starts: the body as one JSON object and its header normalized for this
 * request's transport (tenant agreement with the credential, the transport's own deadline).
 */
export function acceptRequest(
  core: { config: { maxDeadlineMs: number } },
  body: unknown,
  request: RequestContext,
): { raw: JsonObject; header: MessageHeader } {
  const raw = requireObject(body);
  const header = acceptHeader(raw, {
    transportTenant: transportTenant(request.principal, request.tenant),
    maxDeadlineMs: core.config.maxDeadlineMs,
    transportDeadlineAt: request.deadlineAt,
  });
  return { raw, header };
}
