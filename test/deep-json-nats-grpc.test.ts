// Deeply nested JSON on the NATS and gRPC bindings: refused before any capability runs, and the bindings keep serving.
import { status } from "@grpc/grpc-js";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectEnvelope } from "./helpers/envelopes.ts";
import {
  expectStatus,
  type MigClients,
  migClients,
  rawCall,
  rawStreamInvoke,
  streamInvoke,
  unary,
} from "./helpers/grpc.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const DEEP = 5_000;
let calls = 0;
let streamCalls = 0;

const counted = defineCapability(
  anyDescriptor("test.deep.count", ["unary"]),
  (payload) => {
    calls++;
    return { got: Object.keys(payload) };
  },
  anySchemas,
);
/** Returns an object `depth` levels deep: within the runtime's limit (64), beyond protobuf's (50) from 51 on. */
const nested = defineCapability(
  anyDescriptor("test.deep.answer", ["unary"]),
  (payload) => {
    let value: Record<string, unknown> = {};
    for (let i = 1; i < Number(payload.depth); i++) value = { a: value };
    return value;
  },
  anySchemas,
);
const streamed = defineStreamingCapability(
  anyDescriptor("test.deep.stream", ["server_stream"]),
  async (_payload, { emit }) => {
    streamCalls++;
    await emit({ n: 1 });
  },
  anySchemas,
);

/** `{"a":{"a":…{}…}}`, `levels` objects deep, as text: built as a value it could not be stringified. */
const deepObjectText = (levels: number) => `${'{"a":'.repeat(levels - 1)}{}${"}".repeat(levels - 1)}`;
const deepArrayText = (levels: number) => "[".repeat(levels) + "]".repeat(levels);

let t: TestRuntime;
let nats: NatsBinding;
let natsEvents: NatsEventsBinding;
let grpc: GrpcBinding;
let nc: NatsConnection;
let clients: MigClients;

beforeAll(async () => {
  t = await startTestRuntime({ capabilities: [counted, streamed, nested] });
  nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
  natsEvents = startNatsEvents(t.runtime, t.runtime.authenticator);
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  nc = await natsClient(t.runtime.natsUrl);
  clients = migClients(grpc.address);
});
afterAll(async () => {
  clients?.close();
  await nc?.close();
  await grpc?.close();
  await nats?.close();
  await natsEvents?.close();
  await t?.stop();
});

describe("NATS: every body is parsed behind the nesting limit", () => {
  const cases: [string, string][] = [
    ["invoke payload", `{"header":{"tenant_id":"acme"},"payload":{"x":${deepArrayText(DEEP)}}}`],
    [
      "hello header.meta",
      `{"header":{"tenant_id":"acme","meta":${deepObjectText(DEEP)}},"supported_versions":["0.1"]}`,
    ],
    ["discover", `{"header":{"tenant_id":"acme","meta":${deepObjectText(DEEP)}}}`],
    ["heartbeat", `{"header":{"tenant_id":"acme"},"x":${deepArrayText(DEEP)}}`],
    ["cancel", `{"header":{"tenant_id":"acme"},"reason":${deepArrayText(DEEP)}}`],
    ["publish payload", `{"header":{"tenant_id":"acme"},"payload":{"x":${deepArrayText(DEEP)}}}`],
    [
      "subscribe header.meta",
      `{"header":{"tenant_id":"acme","meta":${deepObjectText(DEEP)}},"deliver_subject":"_INBOX.deep"}`,
    ],
  ];
  const subjectOf: Record<string, string> = {
    "invoke payload": "mig.v0_1.acme.invoke.test.deep.count",
    "hello header.meta": "mig.v0_1.acme.hello",
    discover: "mig.v0_1.acme.discover",
    heartbeat: "mig.v0_1.acme.control.heartbeat",
    cancel: "mig.v0_1.acme.control.cancel.6f1c2a7e-4b7d-4f5e-9a51-0c9c1f9e2b11",
    "publish payload": "mig.v0_1.acme.events.deep.topic",
    "subscribe header.meta": "mig.v0_1.acme.subscribe.deep.topic",
  };

  it.each(cases)(
    "%s nested 5,000 levels is MIG_INVALID_REQUEST naming the limit, before the capability runs",
    async (name, body) => {
      const before = calls;
      const answer = await natsRequest(nc, subjectOf[name]!, body);
      expectEnvelope("ErrorEnvelope", answer.body);
      expect(answer.body.error.code).toBe("MIG_INVALID_REQUEST");
      expect(answer.body.error.message).toMatch(/deeper than 64 levels/);
      expect(answer.body.error.details).toEqual({ max_json_depth: 64 });
      expect(answer.headers.mig_error_code).toBe("MIG_INVALID_REQUEST");
      expect(calls).toBe(before);
    },
  );

  it("a stream start with a 5,000-level header.meta gets an error envelope and no stream runs", async () => {
    const body = `{"header":{"tenant_id":"acme","meta":${deepObjectText(DEEP)}},"capability":"test.deep.stream","stream_preference":"server_stream","payload":{}}`;
    const answer = await natsRequest(nc, "mig.v0_1.acme.control.stream", body);
    expectEnvelope("ErrorEnvelope", answer.body);
    expect(answer.body.error.code).toBe("MIG_INVALID_REQUEST");
    expect(answer.body.error.details).toEqual({ max_json_depth: 64 });
    expect(streamCalls).toBe(0);
  });

  it("keeps serving: 64 levels pass, and an invoke after the refusals runs once", async () => {
    const before = calls;
    const ok = await natsRequest(
      nc,
      "mig.v0_1.acme.invoke.test.deep.count",
      `{"header":{"tenant_id":"acme"},"payload":{"x":${deepArrayText(62)}}}`,
    );
    expect(ok.body.error, JSON.stringify(ok.body).slice(0, 300)).toBeUndefined();
    expect(ok.body.payload).toEqual({ got: ["x"] });
    expect(calls).toBe(before + 1);
  });
});

// ---- gRPC: protobuf bytes written by hand, as a client without protobufjs's encoder limit would send them ----

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
/** A length-delimited field. */
const field = (no: number, bytes: Buffer | number[]) =>
  Buffer.concat([Buffer.from([...varint((no << 3) | 2), ...varint(bytes.length)]), Buffer.from(bytes)]);
const text = (no: number, value: string) => field(no, Buffer.from(value));

/** google.protobuf.Value nested `levels` ListValues deep around an empty list. */
function deepValue(levels: number): Buffer {
  let value = field(6, []); // Value{list_value: {}}
  for (let i = 1; i < levels; i++) value = field(6, field(1, value)); // Value{list_value: {values: [value]}}
  return value;
}
/** google.protobuf.Struct {"x": value}. */
const structOf = (value: Buffer) => field(1, Buffer.concat([text(1, "x"), field(2, value)]));
const header = (meta?: Buffer) => field(1, Buffer.concat([text(4, "acme"), ...(meta ? [field(9, meta)] : [])]));

describe("gRPC: decoded Structs are held to the same nesting limit", () => {
  it("Invoke with a 5,000-level payload is INVALID_ARGUMENT / MIG_INVALID_REQUEST before the capability runs", async () => {
    const before = calls;
    const request = Buffer.concat([header(), text(2, "test.deep.count"), field(3, structOf(deepValue(DEEP)))]);
    await expectStatus(
      rawCall(clients, "/mig.v0_1.Invocation/Invoke", request, { metadata: { "x-tenant-id": "acme" } }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    expect(calls).toBe(before);
  });

  it("Hello with a 5,000-level header.meta is INVALID_ARGUMENT / MIG_INVALID_REQUEST", async () => {
    const request = header(structOf(deepValue(DEEP)));
    await expectStatus(
      rawCall(clients, "/mig.v0_1.Discovery/Hello", request, { metadata: { "x-tenant-id": "acme" } }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
  });

  it("a payload deeper than the configured limit but within protobuf's own is refused with the limit in details", async () => {
    // 40 JSON levels decode (protobuf allows 100 message levels, two per JSON level); the runtime's limit here is 64,
    // so a runtime configured lower must still refuse it: the limit is applied to the decoded value.
    const limited = await startTestRuntime({ capabilities: [counted], config: { maxJsonDepth: 16 } });
    const binding = await startGrpcBinding(limited.runtime, limited.runtime.authenticator, "127.0.0.1:0");
    const c = migClients(binding.address);
    try {
      const before = calls;
      const request = Buffer.concat([header(), text(2, "test.deep.count"), field(3, structOf(deepValue(40)))]);
      const err = await expectStatus(
        rawCall(c, "/mig.v0_1.Invocation/Invoke", request),
        status.INVALID_ARGUMENT,
        "MIG_INVALID_REQUEST",
      );
      expect(JSON.parse(String(err.metadata.get("mig-error-details")[0]))).toEqual({ max_json_depth: 16 });
      expect(calls).toBe(before);
    } finally {
      c.close();
      await binding.close();
      await limited.stop();
    }
  });

  it("StreamInvoke whose first frame has a 5,000-level header.meta ends with INVALID_ARGUMENT; no stream runs", async () => {
    const call = rawStreamInvoke(clients);
    const frame = Buffer.concat([
      header(structOf(deepValue(DEEP))),
      text(3, "test.deep.stream"),
      Buffer.from([0x20, 0x01]),
      field(5, structOf(field(3, Buffer.from("v")))),
    ]);
    call.call.write(frame);
    await call.end();
    expect(call.code).toBe(status.INVALID_ARGUMENT);
    expect(call.error?.metadata.get("mig-error-code")).toEqual(["MIG_INVALID_REQUEST"]);
    expect(streamCalls).toBe(0);
  });

  it("an answer deeper than protobuf encodes is INTERNAL with the MIG trailers, not a bare serialization failure", async () => {
    const invoke = (depth: number) =>
      unary(clients.invocation, "Invoke", {
        header: { tenant_id: "acme" },
        capability: "test.deep.answer",
        payload: { fields: { depth: { numberValue: depth } } },
      });
    expect((await invoke(50)).payload.fields.a).toBeDefined();
    const err = await expectStatus(invoke(51), status.INTERNAL, "MIG_INTERNAL");
    expect(err.details).toMatch(/deeper than gRPC's protobuf encoding carries/);
  });

  it("keeps serving: an Invoke and a stream after the refusals run", async () => {
    const before = calls;
    const answer = await unary(clients.invocation, "Invoke", {
      header: { tenant_id: "acme" },
      capability: "test.deep.count",
      payload: { fields: { y: { numberValue: 1 } } },
    });
    expect(answer.payload.fields.got.listValue.values).toEqual([expect.objectContaining({ stringValue: "y" })]);
    expect(calls).toBe(before + 1);
    const stream = streamInvoke(clients);
    stream.call.write({
      header: { tenant_id: "acme" },
      capability: "test.deep.stream",
      kind: "FRAME_KIND_REQUEST",
      payload: { fields: {} },
    });
    stream.call.end();
    const frames = await stream.end();
    expect(stream.code).toBe(status.OK);
    expect(frames.at(-1).end_stream).toBe(true);
    expect(streamCalls).toBe(1);
  });
});
