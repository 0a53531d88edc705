// proto-loader objects of mig.v0_1 ↔ the standard's JSON wire objects (Struct, Timestamp, enums; nothing else).
//
// proto-loader (keepCase, enums as String, longs as Number, defaults, oneofs) already gives the
// standard's snake_case field names, so only three things differ from the JSON binding:
//   google.protobuf.Struct  ↔ a JSON object        (fields named payload, meta, details)
//   google.protobuf.Timestamp ↔ an RFC 3339 string  (fields named timestamp, published_at)
//   enum names (BINDING_TYPE_GRPC, MIG_TIMEOUT) ↔ the JSON strings ("grpc", "MIG_TIMEOUT")
// Field names carry one meaning across every mig.v0_1 message, so both walks are keyed by name.
// The gRPC binding reads requests and writes answers with it; the client writes requests and reads answers.

import { MIG_ERROR_CODES, MigError } from "./errors.ts";
import type { JsonObject } from "./types.ts";

interface EnumTable {
  name: string;
  unspecified: string;
  toJson: ReadonlyMap<string, string>;
  toProto: ReadonlyMap<string, string>;
}

function enumTable(name: string, prefix: string, values: readonly string[], upper = true): EnumTable {
  const toJson = new Map<string, string>();
  const toProto = new Map<string, string>();
  for (const value of values) {
    const protoName = upper ? `${prefix}${value.toUpperCase()}` : value;
    toJson.set(protoName, value);
    toProto.set(value, protoName);
  }
  return { name, unspecified: `${prefix}UNSPECIFIED`, toJson, toProto };
}

const BINDING = enumTable("BindingType", "BINDING_TYPE_", ["grpc", "nats", "http"]);
const MODE = enumTable("InvocationMode", "INVOCATION_MODE_", [
  "unary",
  "server_stream",
  "client_stream",
  "bidi_stream",
]);
const PREFERENCE = enumTable("StreamPreference", "STREAM_PREFERENCE_", ["unary", "server_stream", "bidi_stream"]);
const DELIVERY = enumTable("DeliverySemantics", "DELIVERY_SEMANTICS_", [
  "best_effort",
  "at_least_once",
  "exactly_once",
]);
const FRAME_KIND = enumTable("FrameKind", "FRAME_KIND_", ["request", "response", "event", "control", "error"]);
// MigErrorCode values carry no prefix: the proto names are the JSON strings.
const ERROR_CODE = enumTable("MigErrorCode", "MIG_ERROR_CODE_", MIG_ERROR_CODES, false);

const ENUM_FIELDS: Readonly<Record<string, EnumTable>> = {
  requested_bindings: BINDING,
  selected_binding: BINDING,
  modes: MODE,
  stream_preference: PREFERENCE,
  delivery_semantics: DELIVERY,
  kind: FRAME_KIND,
  code: ERROR_CODE,
};
const STRUCT_FIELDS: ReadonlySet<string> = new Set(["payload", "meta", "details"]);
const TIMESTAMP_FIELDS: ReadonlySet<string> = new Set(["timestamp", "published_at"]);

export type ProtoObject = Record<string, unknown>;

// ---- proto → JSON --------------------------------------------------------------------------

/**
 * Turns a decoded mig.v0_1 request into the JSON body the runtime takes; throws MIG_INVALID_REQUEST on values JSON
 * cannot carry. proto3 default values ("", 0, false, UNSPECIFIED, unset messages, empty lists) mean "not set": they
 * are left out, and the runtime applies the standard's defaults as on every binding.
 */
export function fromProto(message: ProtoObject, path = ""): JsonObject {
  return walkFromProto(message, path, false);
}

/**
 * Turns a decoded mig.v0_1 answer into its JSON form. An answer's `false`, `0` and empty lists are values the
 * server meant (`accepted: false`, `replay: false`, `load_factor: 0`, `enabled_features: []`), so they are kept;
 * empty strings, unset messages and UNSPECIFIED enums are optional fields left unset, and stay out.
 */
export function answerFromProto(message: ProtoObject): JsonObject {
  return walkFromProto(message, "", true);
}

function walkFromProto(message: ProtoObject, path: string, keepDefaults: boolean): JsonObject {
  const out: JsonObject = {};
  for (const key in message) {
    const value = message[key];
    if (value === null || value === undefined || value === "") continue;
    if (!keepDefaults && (value === 0 || value === false)) continue;
    const where = path + key;
    if (STRUCT_FIELDS.has(key)) out[key] = structToJson(value as ProtoObject, where);
    else if (TIMESTAMP_FIELDS.has(key)) out[key] = timestampToRfc3339(value as ProtoObject, where);
    else if (key in ENUM_FIELDS) {
      const table = ENUM_FIELDS[key]!;
      if (Array.isArray(value)) {
        const list = value.map((v, i) => enumToJson(table, v, `${where}[${i}]`)).filter((v) => v !== undefined);
        if (keepDefaults || list.length > 0) out[key] = list;
      } else {
        const text = enumToJson(table, value, where);
        if (text !== undefined) out[key] = text;
      }
    } else if (Array.isArray(value)) {
      if (keepDefaults || value.length > 0)
        out[key] = value.map((v, i) => (isObject(v) ? walkFromProto(v, `${where}[${i}].`, keepDefaults) : v));
    } else if (isObject(value)) {
      out[key] = walkFromProto(value, `${where}.`, keepDefaults);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function enumToJson(table: EnumTable, value: unknown, where: string): string | undefined {
  if (typeof value === "string") {
    const text = table.toJson.get(value);
    if (text !== undefined) return text;
    if (value === table.unspecified) return undefined;
  }
  // proto-loader hands over an enum number it does not know as the number itself.
  throw new MigError("MIG_INVALID_REQUEST", `${where}: ${String(value)} is not a ${table.name} value of mig.v0_1`);
}

// Nesting is bounded before this walk: protobufjs refuses to decode messages nested deeper than 100
// levels (protoc's default; a JSON level is two of them, a Value and its Struct or ListValue), and the
// gRPC binding's request decoder turns that into MIG_INVALID_REQUEST before applying the runtime's own limit.
function structToJson(struct: ProtoObject, where: string): JsonObject {
  const out: JsonObject = {};
  const fields = struct.fields as Record<string, ProtoObject> | undefined;
  if (fields) for (const key in fields) out[key] = valueToJson(fields[key]!, where);
  return out;
}

function valueToJson(value: ProtoObject, where: string): unknown {
  // google.protobuf.Value comes from protobufjs's built-in struct.proto, whose field names are camelCase.
  switch (value.kind) {
    case "stringValue":
      return value.stringValue;
    case "numberValue":
      if (!Number.isFinite(value.numberValue)) {
        throw new MigError(
          "MIG_INVALID_REQUEST",
          `${where} holds ${String(value.numberValue)}, which JSON cannot carry`,
        );
      }
      return value.numberValue;
    case "boolValue":
      return value.boolValue;
    case "structValue":
      return structToJson(value.structValue as ProtoObject, where);
    case "listValue": {
      const values = ((value.listValue as ProtoObject).values ?? []) as ProtoObject[];
      return values.map((v) => valueToJson(v, where));
    }
    default:
      // nullValue, or a Value with no kind set: JSON's null either way.
      return null;
  }
}

const MIN_SECONDS = -62_135_596_800; // 0001-01-01T00:00:00Z, the Timestamp type's lower bound
const MAX_SECONDS = 253_402_300_799; // 9999-12-31T23:59:59Z, its upper bound

function timestampToRfc3339(timestamp: ProtoObject, where: string): string {
  const seconds = Number(timestamp.seconds ?? 0);
  const nanos = Number(timestamp.nanos ?? 0);
  if (
    !Number.isInteger(seconds) ||
    seconds < MIN_SECONDS ||
    seconds > MAX_SECONDS ||
    !Number.isInteger(nanos) ||
    nanos < 0 ||
    nanos > 999_999_999
  ) {
    throw new MigError(
      "MIG_INVALID_REQUEST",
      `${where} is not a valid google.protobuf.Timestamp (seconds within years 1-9999, nanos 0-999999999)`,
    );
  }
  const text = new Date(seconds * 1000).toISOString();
  if (nanos === 0) return text;
  // Keep every digit the caller sent: 9 fraction digits, trailing zeros trimmed.
  return `${text.slice(0, 19)}.${String(nanos).padStart(9, "0").replace(/0+$/, "")}Z`;
}

// ---- JSON → proto --------------------------------------------------------------------------

/**
 * Message nesting protobufjs encodes (its util.recursionLimit, protoc's default): the top message is level 0, and
 * each JSON level of a Struct takes two (a Value and its Struct or ListValue). Deeper, grpc-js could only fail the
 * call with a bare INTERNAL "Error serializing response" after the work was done.
 */
const PROTOBUF_MAX_LEVEL = 100;

/** Turns a JSON wire object into the object proto-loader serializes; with `level`, checks its nesting. */
export function toProto(message: JsonObject, level?: number): ProtoObject {
  const inner = level === undefined ? undefined : level + 1;
  const out: ProtoObject = {};
  for (const key in message) {
    const value = message[key];
    if (value === null || value === undefined) continue;
    if (STRUCT_FIELDS.has(key)) out[key] = jsonToStruct(value as JsonObject, inner);
    else if (TIMESTAMP_FIELDS.has(key)) out[key] = rfc3339ToTimestamp(value as string);
    else if (key in ENUM_FIELDS) {
      const table = ENUM_FIELDS[key]!;
      out[key] = Array.isArray(value) ? value.map((v) => enumToProto(table, v)) : enumToProto(table, value);
    } else if (Array.isArray(value)) {
      out[key] = value.map((v) => (isObject(v) ? toProto(v, inner) : v));
    } else if (isObject(value)) {
      out[key] = toProto(value, inner);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function enumToProto(table: EnumTable, value: unknown): string {
  return (typeof value === "string" && table.toProto.get(value)) || table.unspecified;
}

export function jsonToStruct(object: JsonObject, level?: number): ProtoObject {
  if (level !== undefined && level > PROTOBUF_MAX_LEVEL) throw tooDeepForProtobuf();
  const inner = level === undefined ? undefined : level + 1;
  const fields: ProtoObject = {};
  for (const key in object) {
    const value = object[key];
    if (value !== undefined) fields[key] = jsonToValue(value, inner);
  }
  return { fields };
}

function tooDeepForProtobuf(): MigError {
  const levels = PROTOBUF_MAX_LEVEL / 2;
  return new MigError(
    "MIG_INTERNAL",
    `the answer nests objects or arrays deeper than gRPC's protobuf encoding carries (about ${levels} levels); use the HTTP or NATS binding, or a flatter output`,
    {
      details: { max_protobuf_depth: PROTOBUF_MAX_LEVEL },
    },
  );
}

function jsonToValue(value: unknown, level?: number): ProtoObject {
  if (level !== undefined && level > PROTOBUF_MAX_LEVEL) throw tooDeepForProtobuf();
  const inner = level === undefined ? undefined : level + 1;
  switch (typeof value) {
    case "string":
      return { stringValue: value };
    case "number":
      return { numberValue: value };
    case "boolean":
      return { boolValue: value };
    case "object":
      if (value === null) return { nullValue: "NULL_VALUE" };
      if (Array.isArray(value)) {
        const deeper = inner === undefined ? undefined : inner + 1; // the ListValue, then each Value in it
        return { listValue: { values: value.map((v) => jsonToValue(v ?? null, deeper)) } };
      }
      return { structValue: jsonToStruct(value as JsonObject, inner) };
    default:
      return { nullValue: "NULL_VALUE" };
  }
}

function rfc3339ToTimestamp(text: string): ProtoObject | undefined {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return undefined;
  const fraction = /\.(\d+)/.exec(text)?.[1] ?? "";
  return { seconds: Math.floor(ms / 1000), nanos: Number(fraction.padEnd(9, "0").slice(0, 9)) };
}

function isObject(value: unknown): value is ProtoObject {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !Buffer.isBuffer(value);
}
