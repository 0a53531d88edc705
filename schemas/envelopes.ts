// Checks a value against one MIG v0.1 wire envelope from envelopes.json, with validators compiled once and cached by name.
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import envelopes from "./envelopes.json" with { type: "json" };

/** Every `$defs` entry of envelopes.json; test/schemas.test.ts checks that the two lists agree. */
export const ENVELOPE_NAMES = [
  "MessageHeader",
  "HelloRequest",
  "HelloResponse",
  "DiscoverRequest",
  "DiscoverResponse",
  "CapabilityDescriptor",
  "QoSProfile",
  "InvokeRequest",
  "InvokeResponse",
  "PublishRequest",
  "PublishAck",
  "SubscribeRequest",
  "EventMessage",
  "CancelRequest",
  "CancelAck",
  "HeartbeatRequest",
  "HeartbeatAck",
  "StreamFrame",
  "ErrorEnvelope",
  "MigError",
  "BindingType",
  "InvocationMode",
  "StreamPreference",
  "DeliverySemantics",
  "FrameKind",
  "MigErrorCode",
] as const;

export type EnvelopeName = (typeof ENVELOPE_NAMES)[number];

export type EnvelopeCheck = { ok: true } | { ok: false; errors: string[] };

export const ENVELOPES_SCHEMA_ID = envelopes.$id;

const ajv = new Ajv2020({ allErrors: true });
// ajv-formats is CommonJS; its plugin is both module.exports and module.exports.default.
formats.default(ajv);
ajv.addSchema(envelopes);

const validators = new Map<EnvelopeName, ValidateFunction>();

function validatorFor(name: EnvelopeName): ValidateFunction {
  let validate = validators.get(name);
  if (validate === undefined) {
    validate = ajv.getSchema(`${ENVELOPES_SCHEMA_ID}#/$defs/${name}`);
    if (validate === undefined) {
      throw new Error(`unknown envelope "${name}" - not a $def of ${ENVELOPES_SCHEMA_ID}`);
    }
    validators.set(name, validate);
  }
  return validate;
}

function describe(name: EnvelopeName, error: ErrorObject): string {
  const where = `${name}${error.instancePath}`;
  if (error.keyword === "enum") {
    const allowed = (error.params as { allowedValues: unknown[] }).allowedValues;
    return `${where} must be one of ${allowed.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  return `${where} ${error.message ?? "is invalid"}`;
}

/** Validates `value` as the envelope `name`; on failure every problem is listed with its JSON path. */
export function validateEnvelope(name: EnvelopeName, value: unknown): EnvelopeCheck {
  const validate = validatorFor(name);
  if (validate(value)) return { ok: true };
  return { ok: false, errors: (validate.errors ?? []).map((e) => describe(name, e)) };
}
