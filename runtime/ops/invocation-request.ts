// The checks a unary INVOKE and a stream's opening share: which capability the request names, and whether its
// payload is one that capability accepts. Written once, so a rule holds the same on both paths.

import { MigError } from "../../schemas/errors.ts";
import type { JsonObject } from "../../schemas/types.ts";
import type { RuntimeCore } from "../core.ts";
import { checkDottedName } from "../protocol/names.ts";
import type { RegisteredCapability } from "../provider/registry.ts";
import { agreeing, optionalStringField, requireObject } from "./request.ts";

/**
 * The capability the request names (in the body, or where the binding puts it, e.g. the HTTP path), served here.
 * `where` tells the caller where else it may name it.
 */
export function namedCapability(
  core: RuntimeCore,
  raw: JsonObject,
  named: string | undefined,
  where: string,
): RegisteredCapability {
  const id = agreeing(named, optionalStringField(raw, "capability", 200), "capability");
  if (id === undefined) throw new MigError("MIG_INVALID_REQUEST", `capability is required: name it in ${where}`);
  checkDottedName(id, "capability");
  const entry = core.capabilities.get(id);
  if (!entry) {
    throw new MigError(
      "MIG_UNSUPPORTED_CAPABILITY",
      `capability ${id} is not served here; DISCOVER lists the capabilities you can invoke`,
    );
  }
  return entry;
}

/** The request's payload, checked against the capability's size bound and input schema. */
export function acceptedPayload(
  core: RuntimeCore,
  raw: JsonObject,
  entry: RegisteredCapability,
  bodyBytes: number | undefined,
): JsonObject {
  if (raw.payload === undefined)
    throw new MigError("MIG_INVALID_REQUEST", "payload is required: send a JSON object, e.g. {}");
  const payload = requireObject(raw.payload, "payload");
  checkPayloadSize(payload, entry, bodyBytes);
  const { input_schema_uri } = entry.descriptor;
  const problems = core.schemas.check(input_schema_uri, payload);
  if (problems) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `payload does not match the input schema ${input_schema_uri}: ${problems[0]}`,
      { details: { schema_uri: input_schema_uri, errors: problems } },
    );
  }
  return payload;
}

function checkPayloadSize(payload: JsonObject, entry: RegisteredCapability, bodyBytes: number | undefined): void {
  const max = entry.descriptor.qos?.max_payload_bytes;
  // The body is an upper bound of the payload's size: measure the payload only when the body is larger.
  if (!max || (bodyBytes !== undefined && bodyBytes <= max)) return;
  const size = Buffer.byteLength(JSON.stringify(payload));
  if (size > max) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `payload is ${size} bytes; capability ${entry.descriptor.id} accepts at most ${max}`,
      {
        details: { payload_bytes: size, max_payload_bytes: max },
      },
    );
  }
}
