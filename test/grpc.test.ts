// The gRPC binding over a real port with a client generated from schemas/mig.proto: operations, deadlines, cancellation, bad input.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import type { CapabilityDescriptor } from "../schemas/types.ts";
import { expectStatus, type MigClients, migClients, rawCall, startCall, struct, unary } from "./helpers/grpc.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const MAX_RECEIVE = 64 * 1024;
const slowSeen: { deadline_ms: number; reason?: any }[] = [];

function descriptor(id: string): CapabilityDescriptor {
  return {
    id,
    version: "1.0.0",
    modes: ["unary"],
    input_schema_uri: "schema://test/any",
    output_schema_uri: "schema://test/any",
    auth_scopes: [],
  };
}

const capabilities = [
  // Answers after a minute unless its signal fires; records the deadline it got and why it was stopped.
  defineCapability(descriptor("test.slow"), (_p, { header, signal }) => {
    const seen: { deadline_ms: number; reason?: any } = { deadline_ms: header.deadline_ms };
    slowSeen.push(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve({ result: "late" }), 60_000);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        seen.reason = signal.reason;
        reject(signal.reason);
      });
    });
  }),
  defineCapability(descriptor("test.echo"), (payload, { header }) => ({ payload, header: { ...header } })),
];

let t: TestRuntime;
let grpc: GrpcBinding;
let c: MigClients;
beforeAll(async () => {
  t = await startTestRuntime({ capabilities });
  t.runtime.schemas.register("schema://test/any", { type: "object" });
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0", { maxReceiveBytes: MAX_RECEIVE });
  c = migClients(grpc.address);
});
afterAll(async () => {
  c?.close();
  await grpc?.close();
  await t?.stop();
});

const header = (extra: Record<string, unknown> = {}) => ({ tenant_id: "acme", mig_version: "0.1", ...extra });

describe("the standard's gRPC smoke checks", () => {
  it("Hello with version 0.1 and binding GRPC → selected version 0.1 and binding GRPC", async () => {
    const res = await unary(c.discovery, "Hello", {
      header: header(),
      supported_versions: ["0.1"],
      requested_bindings: ["BINDING_TYPE_GRPC"],
    });
    expect(res.selected_version).toBe("0.1");
    expect(res.selected_binding).toBe("BINDING_TYPE_GRPC");
    expect(res.server_id).toBe(t.runtime.serverId);
    expect(res.enabled_features).toContain("core");
    expect(res.header).toMatchObject({ mig_version: "0.1", tenant_id: "acme", deadline_ms: 30000 });
    expect(res.header.message_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Math.abs(res.header.timestamp.seconds - Date.now() / 1000)).toBeLessThan(60);
  });

  it("Discover is non-empty, with enums as proto names and QoS as a message", async () => {
    const res = await unary(c.discovery, "Discover", { header: header() });
    const infer = res.capabilities.find((d: any) => d.id === "observatory.models.infer");
    expect(infer).toMatchObject({
      version: "1.0.0",
      modes: ["INVOCATION_MODE_UNARY", "INVOCATION_MODE_SERVER_STREAM"],
      input_schema_uri: "schema://observatory/models/infer-input/v1",
      auth_scopes: ["capability:infer"],
      qos: {
        max_payload_bytes: 1048576,
        supports_replay: true,
        delivery_semantics: "DELIVERY_SEMANTICS_AT_LEAST_ONCE",
        supports_ordering: true,
      },
    });
  });

  it('Invoke observatory.models.infer with {"input":"health-check"}', async () => {
    const res = await unary(c.invocation, "Invoke", {
      header: header(),
      capability: "observatory.models.infer",
      payload: struct({ input: "health-check" }),
    });
    expect(res.capability).toBe("observatory.models.infer");
    expect(res.result_schema_uri).toBe("schema://observatory/models/infer-output/v1");
    expect(res.payload.fields.result).toMatchObject({ stringValue: "ok" });
    expect(res.payload.fields.echo.structValue.fields.input).toMatchObject({ stringValue: "health-check" });
  });

  it("works with the tenant in x-tenant-id metadata only, as the standard's smoke client may send it", async () => {
    const res = await unary(
      c.discovery,
      "Hello",
      { supported_versions: ["0.1"] },
      { metadata: { "x-tenant-id": "acme" } },
    );
    expect(res.header.tenant_id).toBe("acme");
  });
});

describe("translation", () => {
  it("a Struct of every JSON kind and the header's fields round-trip through the runtime unchanged", async () => {
    const message_id = randomUUID();
    const payload = {
      fields: {
        s: { stringValue: "héllo ✓" },
        n: { numberValue: 1.5 },
        b: { boolValue: false },
        z: { nullValue: "NULL_VALUE" },
        l: { listValue: { values: [{ numberValue: 1 }, { structValue: { fields: { deep: { boolValue: true } } } }] } },
      },
    };
    const res = await unary(c.invocation, "Invoke", {
      header: header({
        message_id,
        timestamp: { seconds: 1_700_000_000, nanos: 123_456_789 },
        session_id: "s-1",
        meta: { fields: { "x.trace": { stringValue: "on" } } },
      }),
      capability: "test.echo",
      payload,
    });
    const echoed = res.payload.fields;
    expect(echoed.payload.structValue).toMatchObject(payload);
    // The handler saw the header as JSON: an RFC 3339 timestamp with every digit, meta as an object.
    expect(echoed.header.structValue.fields.timestamp.stringValue).toBe("2023-11-14T22:13:20.123456789Z");
    expect(echoed.header.structValue.fields.meta.structValue.fields["x.trace"].stringValue).toBe("on");
    expect(res.header).toMatchObject({
      message_id,
      session_id: "s-1",
      timestamp: { seconds: 1_700_000_000, nanos: 123_456_789 },
    });
  });

  it("MIG header fields mirrored in metadata fill the header when the message leaves them unset", async () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const res = await unary(
      c.invocation,
      "Invoke",
      { header: header(), capability: "test.echo", payload: struct({}) },
      { metadata: { traceparent, "x-session-id": "sess-9", "idempotency-key": `k-${randomUUID()}` } },
    );
    expect(res.header).toMatchObject({ traceparent, session_id: "sess-9" });
    expect(res.header.idempotency_key).toMatch(/^k-/);
  });
});

describe("Control", () => {
  it("Heartbeat answers a bounded interval and the load factor", async () => {
    const res = await unary(c.control, "Heartbeat", { header: header(), interval_ms: 5000 });
    expect(res.suggested_interval_ms).toBe(5000);
    expect(res.load_factor).toBeGreaterThanOrEqual(0);
    expect(res.load_factor).toBeLessThanOrEqual(1);
  });

  it("Cancel stops an in-flight invocation; its caller gets DEADLINE_EXCEEDED with the MIG error in trailers", async () => {
    const message_id = randomUUID();
    const pending = unary(c.invocation, "Invoke", {
      header: header({ message_id }),
      capability: "test.slow",
      payload: struct({}),
    });
    pending.catch(() => undefined);
    await waitFor("the invocation to be in flight", () => t.runtime.work.invocations.has(message_id));
    const ack = await unary(c.control, "Cancel", {
      header: header(),
      target_message_id: message_id,
      reason: "user pressed stop",
    });
    expect(ack).toMatchObject({ target_message_id: message_id, accepted: true, status: "cancelled" });
    const err = await expectStatus(pending, status.DEADLINE_EXCEEDED, "MIG_TIMEOUT");
    expect(err.metadata.get("mig-error-retryable")).toEqual(["false"]);
    expect(JSON.parse(err.metadata.get("mig-error-details")[0] as string)).toEqual({
      cancelled: true,
      reason: "user pressed stop",
    });
    expect(err.metadata.get("mig-message-id")).toEqual([message_id]);

    const again = await unary(c.control, "Cancel", { header: header(), target_message_id: message_id });
    expect(again).toMatchObject({ accepted: false, status: "already_completed" });
  });
});

describe("deadlines and cancellation of the call", () => {
  it("a gRPC deadline shorter than deadline_ms becomes the invocation's deadline: DEADLINE_EXCEEDED, and the provider's signal fires", async () => {
    const before = slowSeen.length;
    const started = startCall(
      c.invocation,
      "Invoke",
      { header: header({ deadline_ms: 20_000 }), capability: "test.slow", payload: struct({}) },
      { deadlineMs: 400 },
    );
    const err = await started.result.catch((e) => e);
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    const seen = await waitFor("the provider's signal to fire", () =>
      slowSeen.length > before && slowSeen.at(-1)!.reason ? slowSeen.at(-1) : undefined,
    );
    expect(seen.deadline_ms).toBeLessThanOrEqual(400);
    // The runtime's own deadline ended it: a deadline, not a cancel.
    expect(seen.reason.code).toBe("MIG_TIMEOUT");
    expect(seen.reason.details).toEqual({ deadline_ms: seen.deadline_ms });
    await waitFor("no invocation in flight", () => t.runtime.work.invocations.size === 0);
    const metrics = await t.runtime.metrics.registry.metrics();
    expect(metrics).toMatch(/mig_invocations_total\{capability="test.slow",outcome="timed_out"\} 1/);
  });

  it("a client cancelling the call cancels the invocation; the provider's signal says so", async () => {
    const message_id = randomUUID();
    const started = startCall(c.invocation, "Invoke", {
      header: header({ message_id }),
      capability: "test.slow",
      payload: struct({}),
    });
    await waitFor("the invocation to be in flight", () => t.runtime.work.invocations.has(message_id));
    const seen = slowSeen.at(-1)!;
    started.cancel();
    expect((await started.result.catch((e) => e)).code).toBe(status.CANCELLED);
    await waitFor("the provider's signal to fire", () => seen.reason);
    expect(seen.reason.code).toBe("MIG_TIMEOUT");
    expect(seen.reason.details).toEqual({ cancelled: true, reason: "the gRPC client cancelled the call" });
    await waitFor("the invocation to end", () => !t.runtime.work.invocations.has(message_id));
  });
});

describe("errors", () => {
  it("an unknown capability → NOT_FOUND (MIG_UNSUPPORTED_CAPABILITY)", async () => {
    await expectStatus(
      unary(c.invocation, "Invoke", { header: header(), capability: "no.such.thing", payload: struct({}) }),
      status.NOT_FOUND,
      "MIG_UNSUPPORTED_CAPABILITY",
    );
  });

  it("a payload that fails the input schema → INVALID_ARGUMENT with the schema errors in mig-error-details", async () => {
    const err = await expectStatus(
      unary(c.invocation, "Invoke", {
        header: header(),
        capability: "observatory.models.infer",
        payload: struct({ wrong: 1 }),
      }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    expect(JSON.parse(err.metadata.get("mig-error-details")[0] as string).schema_uri).toBe(
      "schema://observatory/models/infer-input/v1",
    );
  });

  it("an unsupported version → FAILED_PRECONDITION (MIG_VERSION_MISMATCH)", async () => {
    await expectStatus(
      unary(c.discovery, "Hello", { header: header(), supported_versions: ["7.0"] }),
      status.FAILED_PRECONDITION,
      "MIG_VERSION_MISMATCH",
    );
  });
});

describe("bad input", () => {
  const hello = { header: header(), supported_versions: ["0.1"] };

  it("bytes that are not a message → INVALID_ARGUMENT, and the server keeps serving", async () => {
    const err = await expectStatus(
      rawCall(c, "/mig.v0_1.Invocation/Invoke", Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    expect(err.details).toContain("not a valid mig.v0_1.InvokeRequest message");
    expect((await unary(c.discovery, "Hello", hello)).selected_version).toBe("0.1");
  });

  it("another message's bytes, and wrong field types → clean statuses", async () => {
    // HeartbeatRequest{interval_ms: 5} sent to Invoke: field 2 is a varint where a string is expected.
    const wrongType = rawCall(c, "/mig.v0_1.Invocation/Invoke", Buffer.from([0x10, 0x05]));
    const err = await wrongType.catch((e) => e);
    expect([status.INVALID_ARGUMENT]).toContain(err.code);
    expect(err.metadata.get("mig-error-code")).toEqual(["MIG_INVALID_REQUEST"]);
    await expectStatus(
      rawCall(c, "/mig.v0_1.Discovery/Hello", Buffer.from([0x1a, 0x03, 0x01, 0x02])),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
  });

  it("unknown enum numbers → INVALID_ARGUMENT naming the field", async () => {
    const err = await expectStatus(
      unary(c.discovery, "Hello", { ...hello, requested_bindings: [7] }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    expect(err.details).toContain("requested_bindings[0]: 7 is not a BindingType");
    await expectStatus(
      unary(c.invocation, "Invoke", {
        header: header(),
        capability: "test.echo",
        payload: struct({}),
        stream_preference: 9,
      }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
  });

  it("header values the runtime refuses → INVALID_ARGUMENT (bad tenant, bad message id, bad timestamp)", async () => {
    await expectStatus(
      unary(c.discovery, "Hello", { header: header({ tenant_id: "ac*me" }) }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    await expectStatus(
      unary(c.discovery, "Hello", { header: header({ message_id: "not-a-uuid" }) }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    await expectStatus(
      unary(c.discovery, "Hello", { header: header({ timestamp: { seconds: 1, nanos: -5 } }) }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    await expectStatus(
      unary(c.discovery, "Hello", { supported_versions: ["0.1"] }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
  });

  it("a Struct nested deeper than protobuf's recursion limit → INVALID_ARGUMENT; 40 levels pass", async () => {
    const deep = (levels: number) => {
      let value: any = { stringValue: "bottom" };
      for (let i = 0; i < levels; i++) value = { structValue: { fields: { d: value } } };
      return { fields: { d: value } };
    };
    const res = await unary(c.invocation, "Invoke", { header: header(), capability: "test.echo", payload: deep(40) });
    expect(JSON.stringify(res.payload)).toContain("bottom");
    // A protobuf client refuses to encode 60 levels itself, so the bytes are written by hand.
    const err = await expectStatus(
      rawCall(c, "/mig.v0_1.Invocation/Invoke", invokeBytes(deepStructBytes(60))),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    expect(err.details).toContain("nesting depth");
  });

  it("a number JSON cannot carry (NaN, Infinity) → INVALID_ARGUMENT", async () => {
    for (const n of [NaN, Infinity]) {
      await expectStatus(
        unary(c.invocation, "Invoke", {
          header: header(),
          capability: "test.echo",
          payload: { fields: { n: { numberValue: n } } },
        }),
        status.INVALID_ARGUMENT,
        "MIG_INVALID_REQUEST",
      );
    }
  });

  it("a message over the configured max receive size → RESOURCE_EXHAUSTED, and the server keeps serving", async () => {
    const err = await unary(c.invocation, "Invoke", {
      header: header(),
      capability: "observatory.models.infer",
      payload: struct({ input: "x".repeat(MAX_RECEIVE + 1) }),
    }).catch((e) => e);
    expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    expect((await unary(c.discovery, "Hello", hello)).selected_version).toBe("0.1");
    const res = await unary(c.invocation, "Invoke", {
      header: header(),
      capability: "observatory.models.infer",
      payload: struct({ input: "fine" }),
    });
    expect(res.payload.fields.result.stringValue).toBe("ok");
  });
});

// ---- hand-written protobuf bytes, for input a generated client would refuse to send ----

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 127) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/** A length-delimited field. */
function field(number: number, bytes: Buffer): Buffer {
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}

/** google.protobuf.Struct {"d": {"d": … "bottom"}} nested `levels` deep. */
function deepStructBytes(levels: number): Buffer {
  let value = field(3, Buffer.from("bottom")); // Value.string_value
  for (let i = 0; i < levels; i++) {
    const entry = Buffer.concat([field(1, Buffer.from("d")), field(2, value)]); // map entry: key, value
    value = field(5, field(1, entry)); // Value.struct_value = Struct{fields: [entry]}
  }
  return field(1, Buffer.concat([field(1, Buffer.from("d")), field(2, value)]));
}

/** InvokeRequest{header: {tenant_id: "acme"}, capability: "test.echo", payload}. */
function invokeBytes(payload: Buffer): Buffer {
  return Buffer.concat([
    field(1, field(4, Buffer.from("acme"))),
    field(2, Buffer.from("test.echo")),
    field(3, payload),
  ]);
}
