// The provider SDK: defineCapability(descriptor, handler) describes a capability a runtime can host.
import { MigError } from "./errors.ts";
import { checkDottedName } from "./names.ts";
import type { Principal } from "./principal.ts";
import type { CapabilityDescriptor, InvocationMode, JsonObject, MessageHeader } from "./types.ts";

export interface InvocationContext {
  header: MessageHeader;
  principal: Principal;
  capability: CapabilityDescriptor;
  /** Fires on CANCEL and on the deadline; its reason is the MigError the caller receives. */
  signal: AbortSignal;
}

export type UnaryHandler = (payload: JsonObject, context: InvocationContext) => JsonObject | Promise<JsonObject>;

export interface CapabilityDefinition {
  descriptor: CapabilityDescriptor;
  /** JSON Schemas by URI, for the descriptor's input and output schema URIs. */
  schemas: Record<string, JsonObject>;
  handler: UnaryHandler;
}

const MODES: readonly InvocationMode[] = ["unary", "server_stream", "client_stream", "bidi_stream"];
const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

export function defineCapability(
  descriptor: CapabilityDescriptor,
  handler: UnaryHandler,
  schemas: Record<string, JsonObject> = {},
): CapabilityDefinition {
  checkDescriptor(descriptor);
  return { descriptor, handler, schemas };
}

/** Refuses a descriptor a caller could not use: bad id, version, modes or schema URIs. */
export function checkDescriptor(descriptor: CapabilityDescriptor): void {
  checkDottedName(descriptor.id, "capability id", true);
  if (!SEMVER.test(descriptor.version)) {
    throw new MigError("MIG_INVALID_REQUEST", `capability ${descriptor.id}: version "${descriptor.version}" is not semver (e.g. 1.0.0)`);
  }
  if (!Array.isArray(descriptor.modes) || descriptor.modes.length === 0 || descriptor.modes.some((m) => !MODES.includes(m))) {
    throw new MigError("MIG_INVALID_REQUEST", `capability ${descriptor.id}: modes must be a non-empty list of ${MODES.join(", ")}`);
  }
  for (const field of ["input_schema_uri", "output_schema_uri"] as const) {
    const uri = descriptor[field];
    if (typeof uri !== "string" || !/^[a-z][a-z0-9+.-]*:\S+$/i.test(uri)) {
      throw new MigError("MIG_INVALID_REQUEST", `capability ${descriptor.id}: ${field} must be a URI, e.g. schema://team/name/v1`);
    }
  }
  if (!Array.isArray(descriptor.auth_scopes)) {
    throw new MigError("MIG_INVALID_REQUEST", `capability ${descriptor.id}: auth_scopes must be a list (it may be empty)`);
  }
}
