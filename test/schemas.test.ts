// Checks the wire contracts in schemas/: the JSON envelopes accept and refuse the right bodies, and mig.proto keeps the standard's names and numbers.
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { describe, expect, it } from "vitest";
import envelopes from "../schemas/envelopes.json" with { type: "json" };
import { ENVELOPE_NAMES, type EnvelopeName, validateEnvelope } from "../schemas/envelopes.ts";

const schemasDir = join(dirname(fileURLToPath(import.meta.url)), "..", "schemas");

function header(overrides: Record<string, unknown> = {}) {
  return {
    mig_version: "0.1",
    message_id: randomUUID(),
    timestamp: "2025-01-02T03:04:05Z",
    tenant_id: "acme",
    ...overrides,
  };
}

const inferDescriptor = {
  id: "observatory.models.infer",
  version: "1.0.0",
  modes: ["unary", "server_stream"],
  input_schema_uri: "schema://observatory/models/infer-input/v1",
  output_schema_uri: "schema://observatory/models/infer-output/v1",
  event_topics: ["observatory.inference.completed"],
  auth_scopes: ["capability:infer"],
  qos: {
    max_payload_bytes: 1_048_576,
    supports_replay: true,
    delivery_semantics: "at_least_once",
    supports_ordering: true,
  },
};

function errorsOf(name: EnvelopeName, value: unknown): string[] {
  const result = validateEnvelope(name, value);
  return result.ok ? [] : result.errors;
}

describe("envelopes.json", () => {
  it("lists the same definitions as ENVELOPE_NAMES, and every one compiles", () => {
    expect(Object.keys(envelopes.$defs).sort()).toEqual([...ENVELOPE_NAMES].sort());
    for (const name of ENVELOPE_NAMES) {
      // A throw here means the $def failed to compile; the verdict itself does not matter.
      expect(() => validateEnvelope(name, {})).not.toThrow();
    }
  });

  it("accepts complete envelopes of each kind the server sends", () => {
    const samples: [EnvelopeName, unknown][] = [
      [
        "MessageHeader",
        header({
          session_id: "s1",
          traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
          idempotency_key: "k1",
          deadline_ms: 30000,
          meta: { "idg.product_tier": "oss" },
        }),
      ],
      [
        "HelloResponse",
        {
          header: header(),
          selected_version: "0.1",
          selected_binding: "http",
          enabled_features: ["streaming"],
          server_id: "mig-1",
        },
      ],
      ["DiscoverResponse", { header: header(), capabilities: [inferDescriptor] }],
      [
        "InvokeResponse",
        {
          header: header(),
          capability: "observatory.models.infer",
          payload: { result: "ok" },
          result_schema_uri: "schema://observatory/models/infer-output/v1",
        },
      ],
      [
        "PublishAck",
        { header: header(), topic: "observatory.inference.completed", event_id: "e1", sequence: 0, accepted: true },
      ],
      [
        "EventMessage",
        {
          header: header(),
          topic: "observatory.inference.completed",
          event_id: "e1",
          sequence: 7,
          payload: {},
          published_at: "2025-01-02T03:04:05.123+02:00",
          replay: true,
        },
      ],
      ["CancelAck", { header: header(), target_message_id: randomUUID(), accepted: true, status: "cancelled" }],
      ["HeartbeatAck", { header: header(), suggested_interval_ms: 15000, load_factor: 0.25 }],
      [
        "StreamFrame",
        {
          header: header(),
          stream_id: "st1",
          capability: "observatory.models.infer",
          kind: "error",
          end_stream: true,
          error: { code: "MIG_TIMEOUT", message: "deadline exceeded", retryable: true },
        },
      ],
      [
        "ErrorEnvelope",
        {
          header: header(),
          error: {
            code: "MIG_NOT_FOUND",
            message: "no such capability",
            retryable: false,
            details: { capability: "x.y" },
          },
        },
      ],
    ];
    for (const [name, value] of samples) {
      expect({ name, result: validateEnvelope(name, value) }).toEqual({ name, result: { ok: true } });
    }
  });

  it("accepts the requests a minimal client sends", () => {
    expect(
      validateEnvelope("HelloRequest", {
        header: header(),
        supported_versions: ["0.1"],
        requested_bindings: ["grpc", "nats", "http"],
      }),
    ).toEqual({ ok: true });
    expect(validateEnvelope("InvokeRequest", { header: header(), payload: { input: "health-check" } })).toEqual({
      ok: true,
    });
    expect(validateEnvelope("DiscoverRequest", { header: header() })).toEqual({ ok: true });
  });

  it("refuses an error envelope without a header, naming the missing field", () => {
    const errors = errorsOf("ErrorEnvelope", { error: { code: "MIG_INTERNAL", message: "boom", retryable: false } });
    expect(errors).toEqual(["ErrorEnvelope must have required property 'header'"]);
  });

  it("refuses a message_id that is not a UUID, such as the reference gateway's 32 hex digits", () => {
    const errors = errorsOf("InvokeResponse", {
      header: header({ message_id: "9f86d081884c7d659a2feaa0c55ad015" }),
      capability: "c.d",
      payload: {},
    });
    expect(errors).toEqual(['InvokeResponse/header/message_id must match format "uuid"']);
  });

  it("refuses header values outside the standard: no time zone, zero deadline, missing tenant", () => {
    expect(errorsOf("MessageHeader", header({ timestamp: "2025-01-02T03:04:05" }))).toEqual([
      'MessageHeader/timestamp must match format "date-time"',
    ]);
    expect(errorsOf("MessageHeader", header({ deadline_ms: 0 }))).toEqual(["MessageHeader/deadline_ms must be >= 1"]);
    const { tenant_id: _dropped, ...noTenant } = header();
    expect(errorsOf("MessageHeader", noTenant)).toEqual(["MessageHeader must have required property 'tenant_id'"]);
  });

  it("refuses proto enum names and lower-case error codes on the JSON wire", () => {
    expect(
      errorsOf("HelloResponse", { header: header(), selected_version: "0.1", selected_binding: "BINDING_TYPE_HTTP" }),
    ).toHaveLength(1);
    expect(errorsOf("MigError", { code: "mig_internal", message: "x", retryable: false })[0]).toMatch(
      /^MigError\/code must be one of "MIG_INVALID_REQUEST"/,
    );
  });

  it("lists every problem at once", () => {
    const errors = errorsOf("EventMessage", {
      header: header(),
      topic: "a.b",
      event_id: "e",
      sequence: -1,
      payload: [],
      published_at: "yesterday",
    });
    expect(errors.sort()).toEqual(
      [
        "EventMessage must have required property 'replay'",
        'EventMessage/published_at must match format "date-time"',
        "EventMessage/payload must be object",
        "EventMessage/sequence must be >= 0",
      ].sort(),
    );
  });

  it("refuses a descriptor whose schema URI is not a URI", () => {
    expect(errorsOf("CapabilityDescriptor", { ...inferDescriptor, input_schema_uri: "infer input" })).toEqual([
      'CapabilityDescriptor/input_schema_uri must match format "uri"',
    ]);
  });
});

describe("mig.proto", () => {
  const definition = protoLoader.loadSync(join(schemasDir, "mig.proto"), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [schemasDir],
  });

  type FieldDescriptor = { name: string; number: number; type: string; typeName: string; label: string };
  type MessageDescriptor = { field: FieldDescriptor[] };
  type EnumDescriptor = { value: { name: string; number: number }[] };

  function message(name: string): MessageDescriptor {
    const entry = definition[`mig.v0_1.${name}`];
    if (entry === undefined || !("format" in entry) || entry.format !== "Protocol Buffer 3 DescriptorProto") {
      throw new Error(`mig.v0_1.${name} is not a message`);
    }
    return entry.type as MessageDescriptor;
  }
  function field(messageName: string, fieldName: string): FieldDescriptor {
    const found = message(messageName).field.find((f) => f.name === fieldName);
    if (found === undefined) throw new Error(`${messageName}.${fieldName} is missing`);
    return found;
  }
  function enumValues(name: string): Record<string, number> {
    const entry = definition[`mig.v0_1.${name}`];
    if (entry === undefined || !("format" in entry) || entry.format !== "Protocol Buffer 3 EnumDescriptorProto") {
      throw new Error(`mig.v0_1.${name} is not an enum`);
    }
    return Object.fromEntries((entry.type as EnumDescriptor).value.map((v) => [v.name, v.number]));
  }

  it("offers the four services with their methods and streaming flags", () => {
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      mig: { v0_1: Record<string, grpc.ServiceClientConstructor> };
    };
    const services = loaded.mig.v0_1;
    const shape = (name: string) =>
      Object.fromEntries(
        Object.entries(services[name]!.service).map(([method, d]) => [
          method,
          [d.path, d.requestStream, d.responseStream],
        ]),
      );
    expect(shape("Discovery")).toEqual({
      Hello: ["/mig.v0_1.Discovery/Hello", false, false],
      Discover: ["/mig.v0_1.Discovery/Discover", false, false],
    });
    expect(shape("Invocation")).toEqual({
      Invoke: ["/mig.v0_1.Invocation/Invoke", false, false],
      StreamInvoke: ["/mig.v0_1.Invocation/StreamInvoke", true, true],
    });
    expect(shape("Events")).toEqual({
      Publish: ["/mig.v0_1.Events/Publish", false, false],
      Subscribe: ["/mig.v0_1.Events/Subscribe", false, true],
    });
    expect(shape("Control")).toEqual({
      Cancel: ["/mig.v0_1.Control/Cancel", false, false],
      Heartbeat: ["/mig.v0_1.Control/Heartbeat", false, false],
    });
  });

  it("keeps the standard's field numbers and types", () => {
    expect(field("MessageHeader", "deadline_ms")).toMatchObject({ number: 8, type: "TYPE_UINT32" });
    expect(field("MessageHeader", "timestamp")).toMatchObject({ number: 3, typeName: "google.protobuf.Timestamp" });
    expect(field("MessageHeader", "meta")).toMatchObject({ number: 9, typeName: "google.protobuf.Struct" });
    expect(field("StreamFrame", "error")).toMatchObject({ number: 7, type: "TYPE_MESSAGE", typeName: "MigError" });
    expect(field("EventMessage", "replay")).toMatchObject({ number: 7, type: "TYPE_BOOL" });
    expect(field("EventMessage", "published_at")).toMatchObject({ number: 6, typeName: "google.protobuf.Timestamp" });
    expect(field("EventMessage", "sequence")).toMatchObject({ number: 4, type: "TYPE_UINT64" });
    expect(field("QoSProfile", "max_payload_bytes")).toMatchObject({ number: 1, type: "TYPE_UINT64" });
    expect(field("HelloRequest", "requested_bindings")).toMatchObject({
      number: 3,
      label: "LABEL_REPEATED",
      type: "TYPE_ENUM",
      typeName: "BindingType",
    });
    expect(field("HeartbeatAck", "load_factor")).toMatchObject({ number: 3, type: "TYPE_DOUBLE" });
    expect(field("MigError", "details")).toMatchObject({ number: 4, typeName: "google.protobuf.Struct" });
  });

  it("keeps the standard's enum numbers", () => {
    expect(enumValues("MigErrorCode")).toMatchObject({
      MIG_ERROR_CODE_UNSPECIFIED: 0,
      MIG_INVALID_REQUEST: 1,
      MIG_INTERNAL: 11,
    });
    expect(enumValues("FrameKind")).toMatchObject({ FRAME_KIND_UNSPECIFIED: 0, FRAME_KIND_ERROR: 5 });
    expect(enumValues("BindingType")).toEqual({
      BINDING_TYPE_UNSPECIFIED: 0,
      BINDING_TYPE_GRPC: 1,
      BINDING_TYPE_NATS: 2,
      BINDING_TYPE_HTTP: 3,
    });
  });

  it("names the same fields as the JSON envelopes, message by message", () => {
    const defs = envelopes.$defs as Record<string, { properties?: Record<string, unknown> }>;
    const protoMessages = Object.keys(definition)
      .filter(
        (key) =>
          key.startsWith("mig.v0_1.") &&
          "format" in definition[key]! &&
          definition[key]!.format === "Protocol Buffer 3 DescriptorProto",
      )
      .map((key) => key.slice("mig.v0_1.".length));
    expect(protoMessages).toHaveLength(19);
    for (const name of protoMessages) {
      const jsonFields = Object.keys(defs[name]?.properties ?? {}).sort();
      expect({
        name,
        fields: message(name)
          .field.map((f) => f.name)
          .sort(),
      }).toEqual({ name, fields: jsonFields });
    }
  });

  it("has one proto enum value, besides UNSPECIFIED, for each JSON enum string", () => {
    const prefixes: Record<string, string> = {
      BindingType: "BINDING_TYPE_",
      InvocationMode: "INVOCATION_MODE_",
      StreamPreference: "STREAM_PREFERENCE_",
      DeliverySemantics: "DELIVERY_SEMANTICS_",
      FrameKind: "FRAME_KIND_",
      MigErrorCode: "",
    };
    const defs = envelopes.$defs as Record<string, { enum?: string[] }>;
    for (const [name, prefix] of Object.entries(prefixes)) {
      const protoNames = Object.entries(enumValues(name))
        .filter(([, n]) => n !== 0)
        .sort(([, a], [, b]) => a - b)
        .map(([value]) => value);
      const expected = (defs[name]?.enum ?? []).map((value) => prefix + value.toUpperCase());
      expect({ name, values: protoNames }).toEqual({ name, values: expected });
    }
  });
});
