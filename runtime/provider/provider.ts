// The provider SDK: defineCapability(descriptor, handler) describes a capability a runtime can host.
import { MigError } from "../../schemas/errors.ts";
import type { CapabilityDescriptor, InvocationMode, JsonObject, MessageHeader } from "../../schemas/types.ts";
import { checkDottedName } from "../protocol/names.ts";
import type { Principal } from "../protocol/principal.ts";
import { lifecycleOf } from "./lifecycle.ts";
import { checkVersion } from "./versions.ts";

export interface InvocationContext {
  header: MessageHeader;
  principal: Principal;
  capability: CapabilityDescriptor;
  /** Fires on CANCEL and on the deadline; its reason is the MigError the caller receives. */
  signal: AbortSignal;
}

export type UnaryHandler = (payload: JsonObject, context: InvocationContext) => JsonObject | Promise<JsonObject>;

export interface StreamContext extends InvocationContext {
  /** server_stream or bidi_stream, as the caller chose. */
  mode: "server_stream" | "bidi_stream";
  /**
   * Sends one `response` frame. It resolves when the runtime has room for the frame (credit from the
   * consumer), so `await emit(...)` in a loop can never outrun the consumer; it rejects with the
   * stream's MigError once the stream has ended (cancel, deadline, backpressure, closed connection).
   */
  emit(payload: JsonObject): Promise<void>;
  /** The caller's frames after the request, in order (bidi_stream); ends when the caller sends end_stream. */
  inbound: AsyncIterable<JsonObject>;
}

/**
 * A stream handler emits frames and then returns: the value it returns (if any) is the payload of the
 * terminal `response` frame (`end_stream: true`) and is checked against the output schema; a throw
 * ends the stream with an `error` frame.
 */
export type StreamHandler = (
  payload: JsonObject,
  context: StreamContext,
) => void | JsonObject | Promise<void | JsonObject>;

export interface CapabilityDefinition {
  descriptor: CapabilityDescriptor;
  /** JSON Schemas by URI, for the descriptor's input and output schema URIs. */
  schemas: Record<string, JsonObject>;
  handler: UnaryHandler;
  /** Serves the descriptor's server_stream and bidi_stream modes. */
  stream?: StreamHandler;
}

const MODES: readonly InvocationMode[] = ["unary", "server_stream", "client_stream", "bidi_stream"];

export function defineCapability(
  descriptor: CapabilityDescriptor,
  handler: UnaryHandler,
  schemas: Record<string, JsonObject> = {},
  stream?: StreamHandler,
): CapabilityDefinition {
  checkDescriptor(descriptor);
  checkStreamModes(descriptor, stream);
  return stream ? { descriptor, handler, schemas, stream } : { descriptor, handler, schemas };
}

/** A capability that only streams: its unary handler refuses, as INVOKE refuses unary for it anyway. */
export function defineStreamingCapability(
  descriptor: CapabilityDescriptor,
  stream: StreamHandler,
  schemas: Record<string, JsonObject> = {},
): CapabilityDefinition {
  const unary: UnaryHandler = () => {
    throw new MigError(
      "MIG_UNSUPPORTED_CAPABILITY",
      `capability ${descriptor.id} only streams; invoke it with stream_preference ${descriptor.modes.join(" or ")}`,
    );
  };
  return defineCapability(descriptor, unary, schemas, stream);
}

function checkStreamModes(descriptor: CapabilityDescriptor, stream: StreamHandler | undefined): void {
  if (stream && !descriptor.modes.some((m) => m === "server_stream" || m === "bidi_stream")) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `capability ${descriptor.id}: a stream handler needs server_stream or bidi_stream in modes`,
    );
  }
}

/** Refuses a descriptor a caller could not use: bad id, version, modes, schema URIs or lifecycle. */
export function checkDescriptor(descriptor: CapabilityDescriptor): void {
  checkDottedName(descriptor.id, "capability id", true);
  checkVersion(descriptor.version, descriptor.id);
  if (
    !Array.isArray(descriptor.modes) ||
    descriptor.modes.length === 0 ||
    descriptor.modes.some((m) => !MODES.includes(m))
  ) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `capability ${descriptor.id}: modes must be a non-empty list of ${MODES.join(", ")}`,
    );
  }
  for (const field of ["input_schema_uri", "output_schema_uri"] as const) {
    const uri = descriptor[field];
    if (typeof uri !== "string" || !/^[a-z][a-z0-9+.-]*:\S+$/i.test(uri)) {
      throw new MigError(
        "MIG_INVALID_REQUEST",
        `capability ${descriptor.id}: ${field} must be a URI, e.g. schema://team/name/v1`,
      );
    }
  }
  if (!Array.isArray(descriptor.auth_scopes)) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `capability ${descriptor.id}: auth_scopes must be a list (it may be empty)`,
    );
  }
  lifecycleOf(descriptor);
}
