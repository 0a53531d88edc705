// Checks for names that become NATS subject tokens or URL segments: tenants, capabilities, ids, topics.
import { MigError } from "../../schemas/errors.ts";

const TOKEN = /^[A-Za-z0-9_-]+$/;
const DOTTED = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export const MAX_TOKEN_LENGTH = 64;
export const MAX_NAME_LENGTH = 200;

function describe(value: string): string {
  if (value === "") return "is empty";
  if (/[*>]/.test(value)) return "contains a NATS wildcard (* or >)";
  if (/\s/.test(value)) return "contains whitespace";
  if (/\.\.|^\.|\.$/.test(value)) return "has an empty dot-separated token";
  return "contains a character other than letters, digits, '-', '_' and '.'";
}

export function checkTenant(value: string, where = "tenant_id"): string {
  if (value.length > MAX_TOKEN_LENGTH) {
    throw new MigError("MIG_INVALID_REQUEST", `${where} is longer than ${MAX_TOKEN_LENGTH} characters`);
  }
  if (!TOKEN.test(value)) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${where} "${value}" ${describe(value)}; use letters, digits, '-' and '_'`,
    );
  }
  return value;
}

/** Capability ids and topics: dot-separated tokens, e.g. observatory.models.infer. */
export function checkDottedName(value: string, where: string, requireNamespace = false): string {
  if (value.length > MAX_NAME_LENGTH) {
    throw new MigError("MIG_INVALID_REQUEST", `${where} is longer than ${MAX_NAME_LENGTH} characters`);
  }
  if (!DOTTED.test(value)) {
    throw new MigError("MIG_INVALID_REQUEST", `${where} "${value}" ${describe(value)}`);
  }
  if (requireNamespace && !value.includes(".")) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${where} "${value}" must be namespaced with a dot, e.g. "orders.created"`,
    );
  }
  return value;
}

/** Message ids must be UUIDs: the standard's schema says so, and they become NATS subject tokens. */
export function checkMessageId(value: string, where = "message_id"): string {
  if (!UUID.test(value)) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${where} "${value.slice(0, 80)}" is not a UUID (e.g. 0b7c6c8e-0d7e-4b8e-9a57-3f1f2f7c9b11)`,
    );
  }
  return value;
}
