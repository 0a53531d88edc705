// The gRPC binding's translator: requests read and answers written with the shared proto ↔ JSON walks, held to the
// binding's limits (the runtime's JSON nesting inbound, protobuf's message nesting outbound).
import { tooDeep, valueDepth } from "../../runtime/mod.ts";
import { fromProto, type ProtoObject, toProto } from "../../schemas/proto-json.ts";
import type { JsonObject } from "../../schemas/types.ts";

export { fromProto, jsonToStruct, toProto } from "../../schemas/proto-json.ts";

/**
 * fromProto of a whole request or frame, held to the nesting limit every binding applies (`maxJsonDepth`), so a
 * gRPC caller cannot send deeper JSON than an HTTP or NATS caller can.
 */
export function requestFromProto(message: ProtoObject, maxDepth: number): JsonObject {
  const body = fromProto(message);
  if (valueDepth(body, maxDepth) > maxDepth) throw tooDeep(maxDepth);
  return body;
}

/**
 * A unary answer as toProto makes it, refused with a MIG error when protobuf could not encode it (nested deeper
 * than protobuf's message nesting limit), so that the caller gets a status with the MIG trailers instead.
 */
export function answerToProto(message: JsonObject): ProtoObject {
  return toProto(message, 0);
}
