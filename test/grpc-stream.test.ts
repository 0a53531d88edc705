// Invocation.StreamInvoke over a real port with a client generated from schemas/mig.proto: modes, flow control, cancel, bad frames.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import {
  type CallReader,
  type MigClients,
  migClients,
  rawStreamInvoke,
  streamInvoke,
  struct,
  unary,
} from "./helpers/grpc.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const WINDOW = 16;
const schemas = anySchemas;
const descriptor = anyDescriptor;

/** Why each stream's provider signal fired, by message_id: proof that a cancel reached the provider. */
const aborts = new Map<string, any>();

const count = defineStreamingCapability(
  descriptor("test.stream.count", ["server_stream"]),
  async (payload, { emit }) => {
    const n = Number(payload.count);
    const pad = "x".repeat(Number(payload.pad ?? 0));
    for (let i = 0; i < n; i++) await emit({ i, pad });
    return { result: "done", frames: n };
  },
  schemas,
);

const forever = defineStreamingCapability(
  descriptor("test.stream.forever", ["server_stream"]),
  async (_payload, { emit, signal, header }) => {
    signal.addEventListener("abort", () => aborts.set(header.message_id, signal.reason));
    for (let i = 0; ; i++) {
      await emit({ i });
      await new Promise((r) => setTimeout(r, 5));
    }
  },
  schemas,
);

const echo = defineStreamingCapability(
  descriptor("test.stream.echo", ["bidi_stream"]),
  async (payload, { emit, inbound }) => {
    await emit({ hello: payload.name ?? "?" });
    let n = 0;
    for await (const message of inbound) await emit({ n: n++, echo: message });
    return { received: n };
  },
  schemas,
);

/** Reads nothing until the test opens its gate, then echoes the count of what it read. */
let openGate: () => void = () => undefined;
const gated = defineStreamingCapability(
  descriptor("test.stream.gated", ["bidi_stream"]),
  async (_payload, { emit, inbound }) => {
    await emit({ ready: true });
    await new Promise<void>((resolve) => (openGate = resolve));
    let n = 0;
    let last = -1;
    for await (const message of inbound) {
      if (message.i !== last + 1) throw new Error(`frame ${String(message.i)} after ${last}`);
      last = Number(message.i);
      n++;
    }
    return { received: n };
  },
  schemas,
);

let t: TestRuntime;
let grpc: GrpcBinding;
let c: MigClients;
beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [count, forever, echo, gated],
    config: { streamWindow: WINDOW, streamStallMs: 60_000 },
  });
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  c = migClients(grpc.address);
});
afterAll(async () => {
  c?.close();
  await grpc?.close();
  await t?.stop();
});

const header = (extra: Record<string, unknown> = {}) => ({ tenant_id: "acme", mig_version: "0.1", ...extra });

/** The first frame of a stream. */
function request(
  capability: string,
  payload: object,
  extra: { header?: Record<string, unknown>; stream_id?: string; end_stream?: boolean } = {},
) {
  const { header: given, ...rest } = extra;
  return { header: header(given), capability, kind: "FRAME_KIND_REQUEST", payload, ...rest };
}

function session(messageId: string): StreamSession {
  return t.runtime.work.streams.get(messageId) as StreamSession;
}

/** The JSON value of a google.protobuf.Value as the client decoded it. */
function value(v: any): unknown {
  if (v.kind === "structValue")
    return Object.fromEntries(Object.entries(v.structValue.fields ?? {}).map(([k, x]) => [k, value(x)]));
  if (v.kind === "listValue") return (v.listValue.values ?? []).map(value);
  if (v.kind === "nullValue") return null;
  return v[v.kind];
}

function payloadOf(frame: any): Record<string, unknown> {
  return value({ kind: "structValue", structValue: frame.payload ?? { fields: {} } }) as Record<string, unknown>;
}

async function endedOk(call: CallReader): Promise<any[]> {
  const frames = await call.end();
  expect({ code: call.code, error: call.error?.details }).toEqual({ code: status.OK, error: undefined });
  return frames;
}

describe("server_stream", () => {
  it("observatory.models.infer streams the tokens of its input, then one terminal response frame; every frame carries the stream_id", async () => {
    const call = streamInvoke(c);
    call.call.write(
      request("observatory.models.infer", struct({ input: "the quick brown fox" }), { stream_id: "infer-1" }),
    );
    call.call.end();
    const frames = await endedOk(call);
    expect(frames.map((f) => f.stream_id)).toEqual(Array(5).fill("infer-1"));
    expect(frames.slice(0, 4).map((f) => [f.kind, f.end_stream, payloadOf(f).token])).toEqual([
      ["FRAME_KIND_RESPONSE", false, "the"],
      ["FRAME_KIND_RESPONSE", false, "quick"],
      ["FRAME_KIND_RESPONSE", false, "brown"],
      ["FRAME_KIND_RESPONSE", false, "fox"],
    ]);
    expect(frames[4]).toMatchObject({
      kind: "FRAME_KIND_RESPONSE",
      end_stream: true,
      capability: "observatory.models.infer",
    });
    expect(payloadOf(frames[4])).toEqual({ result: "ok", tokens: 4 });
    expect(frames[0].header).toMatchObject({ tenant_id: "acme", mig_version: "0.1" });
    expect(frames[0].header.timestamp.seconds).toBeGreaterThan(0);
  });

  it("without a stream_id the stream is named stream-<message_id>", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c);
    call.call.write(request("observatory.models.infer", struct({ input: "a" }), { header: { message_id } }));
    const frames = await endedOk(call);
    expect(new Set(frames.map((f) => f.stream_id))).toEqual(new Set([`stream-${message_id}`]));
  });

  it("a 20,000-frame stream to a reader that stops and starts keeps at most window + 1 frames in the runtime", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c, { deadlineMs: 300_000 });
    call.call.write(
      request("test.stream.count", struct({ count: 20_000, pad: 200 }), {
        header: { message_id, deadline_ms: 300_000 },
      }),
    );
    await waitFor("the stream to start", () => session(message_id));
    const s = session(message_id);
    let pauses = 0;
    let maxHeld = 0;
    while (!call.ended) {
      const before = call.messages.length;
      call.call.pause();
      // HTTP/2 flow control fills up, write callbacks stop, credits run out and the provider is paused.
      const paused = await waitFor(
        "the provider to pause or the stream to end",
        () => s.isOver || t.runtime.metrics.streamsPaused.get().then((m) => m.values[0]!.value === 1),
      );
      if (paused && !s.isOver) {
        pauses++;
        maxHeld = Math.max(maxHeld, s.held, (await t.runtime.metrics.streamBufferedFrames.get()).values[0]!.value);
      }
      call.call.resume();
      await call.until("more frames", () => call.ended || call.messages.length > before + 4_000).catch(() => undefined);
    }
    const frames = await endedOk(call);
    expect(frames).toHaveLength(20_001);
    expect(frames.slice(0, -1).every((f, i) => payloadOf(f).i === i)).toBe(true);
    expect(payloadOf(frames.at(-1))).toEqual({ result: "done", frames: 20_000 });
    expect(pauses).toBeGreaterThan(0);
    expect(maxHeld).toBeLessThanOrEqual(WINDOW + 1);
    expect(s.highWater).toBeLessThanOrEqual(WINDOW + 1);
    expect((await t.runtime.metrics.streamsPaused.get()).values[0]!.value).toBe(0);
    expect((await t.runtime.metrics.streamBufferedFrames.get()).values[0]!.value).toBe(0);
  });
});

describe("bidi_stream", () => {
  it("later request frames reach the provider in order; the client's half-close ends its input", async () => {
    const call = streamInvoke(c);
    call.call.write(request("test.stream.echo", struct({ name: "ada" }), { stream_id: "echo-1" }));
    for (let i = 0; i < 50; i++)
      call.call.write({ stream_id: "echo-1", kind: "FRAME_KIND_REQUEST", payload: struct({ i }) });
    call.call.end();
    const frames = await endedOk(call);
    expect(payloadOf(frames[0])).toEqual({ hello: "ada" });
    expect(frames.slice(1, -1).map((f) => payloadOf(f))).toEqual(
      Array.from({ length: 50 }, (_, n) => ({ n, echo: { i: n } })),
    );
    expect(frames.at(-1)).toMatchObject({ stream_id: "echo-1", end_stream: true, kind: "FRAME_KIND_RESPONSE" });
    expect(payloadOf(frames.at(-1))).toEqual({ received: 50 });
  });

  it("a provider that reads nothing pauses the call: 5,000 frames wait in HTTP/2, not in the runtime, and all arrive in order", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c);
    call.call.write(request("test.stream.gated", struct({}), { header: { message_id } }));
    await call.until("the ready frame", () => call.messages.length > 0);
    // Far more than the runtime's hard bound on unread frames (max(1024, 32 x window)): without the
    // pause the stream would end with MIG_BACKPRESSURE.
    for (let i = 0; i < 5_000; i++) call.call.write({ kind: "FRAME_KIND_REQUEST", payload: struct({ i }) });
    call.call.end();
    const s = session(message_id);
    await waitFor("the binding to stop reading", () => (s as any).inboundFull === true);
    expect((s as any).inbound.size).toBeLessThanOrEqual(WINDOW + 16);
    openGate();
    const frames = await endedOk(call);
    expect(payloadOf(frames.at(-1))).toEqual({ received: 5_000 });
  });

  it("end_stream on a later request frame ends the input too", async () => {
    const call = streamInvoke(c);
    call.call.write(request("test.stream.echo", struct({}), { stream_id: "echo-2" }));
    call.call.write({ kind: "FRAME_KIND_REQUEST", payload: struct({ last: true }), end_stream: true });
    const frames = await endedOk(call);
    expect(payloadOf(frames.at(-1))).toEqual({ received: 1 });
  });
});

describe("cancellation", () => {
  it("a control cancel frame reaches the provider's signal; the terminal frame is a control frame with end_stream", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c);
    call.call.write(request("test.stream.forever", struct({}), { header: { message_id }, stream_id: "f-1" }));
    await call.until("a frame", () => call.messages.length > 0);
    call.call.write({
      stream_id: "f-1",
      kind: "FRAME_KIND_CONTROL",
      payload: struct({ action: "cancel", reason: "user pressed stop" }),
    });
    const frames = await endedOk(call);
    const last = frames.at(-1);
    expect(last).toMatchObject({ stream_id: "f-1", kind: "FRAME_KIND_CONTROL", end_stream: true });
    expect(payloadOf(last)).toMatchObject({
      action: "cancel",
      accepted: true,
      status: "cancelled",
      reason: "user pressed stop",
    });
    const reason = await waitFor("the provider's signal", () => aborts.get(message_id));
    expect(reason).toMatchObject({ code: "MIG_TIMEOUT", details: { cancelled: true, reason: "user pressed stop" } });
  });

  it("a client cancelling the call cancels the stream; the provider's signal says so", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c);
    call.call.write(request("test.stream.forever", struct({}), { header: { message_id } }));
    await call.until("a frame", () => call.messages.length > 0);
    call.call.cancel();
    await call.end();
    expect(call.code).toBe(status.CANCELLED);
    const reason = await waitFor("the provider's signal", () => aborts.get(message_id));
    expect(reason).toMatchObject({
      code: "MIG_TIMEOUT",
      details: { cancelled: true, reason: "the gRPC client cancelled the call" },
    });
    await waitFor("the stream to end", () => !t.runtime.work.streams.has(message_id));
  });

  it("the call's deadline becomes the stream's: it ends with MIG_TIMEOUT at the provider", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c, { deadlineMs: 500 });
    call.call.write(request("test.stream.forever", struct({}), { header: { message_id, deadline_ms: 20_000 } }));
    await call.end();
    expect(call.code).toBe(status.DEADLINE_EXCEEDED);
    const reason = await waitFor("the provider's signal", () => aborts.get(message_id));
    expect(reason.code).toBe("MIG_TIMEOUT");
    expect(reason.details.deadline_ms).toBeLessThanOrEqual(500);
  });
});

describe("shutdown", () => {
  it("closing the binding cancels its open streams: a terminal cancel frame, status OK, then the server stops", async () => {
    const other = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
    const clients = migClients(other.address);
    const message_id = randomUUID();
    const call = streamInvoke(clients);
    call.call.write(request("test.stream.forever", struct({}), { header: { message_id } }));
    await call.until("a frame", () => call.messages.length > 0);
    await other.close(30_000);
    const frames = await endedOk(call);
    expect(frames.at(-1)).toMatchObject({ kind: "FRAME_KIND_CONTROL", end_stream: true });
    expect(payloadOf(frames.at(-1))).toMatchObject({ status: "cancelled", reason: "the server is shutting down" });
    expect(aborts.get(message_id)).toMatchObject({
      details: { cancelled: true, reason: "the server is shutting down" },
    });
    clients.close();
  });
});

describe("bad frames", () => {
  async function refused(call: CallReader, grpcCode: number, fragment: string): Promise<void> {
    await call.end();
    expect(call.code).toBe(grpcCode);
    expect(call.error!.details).toContain(fragment);
    expect(call.error!.metadata.get("mig-error-code")).toEqual(["MIG_INVALID_REQUEST"]);
  }

  async function failedWith(call: CallReader, fragment: string): Promise<any> {
    const frames = await endedOk(call);
    const last = frames.at(-1);
    expect(last).toMatchObject({ kind: "FRAME_KIND_ERROR", end_stream: true, error: { code: "MIG_INVALID_REQUEST" } });
    expect(last.error.message).toContain(fragment);
    return last;
  }

  it("a first frame that is not a request, or no frame at all → INVALID_ARGUMENT", async () => {
    const response = streamInvoke(c);
    response.call.write({
      header: header(),
      capability: "test.stream.echo",
      kind: "FRAME_KIND_RESPONSE",
      payload: struct({}),
    });
    await refused(response, status.INVALID_ARGUMENT, "come from the server");

    const control = streamInvoke(c);
    control.call.write({ kind: "FRAME_KIND_CONTROL", payload: struct({ action: "cancel" }) });
    await refused(control, status.INVALID_ARGUMENT, "first frame must be a request");

    const unspecified = streamInvoke(c);
    unspecified.call.write({ header: header(), capability: "test.stream.echo", payload: struct({}) });
    await refused(unspecified, status.INVALID_ARGUMENT, "FRAME_KIND_REQUEST");

    const nothing = streamInvoke(c);
    nothing.call.end();
    await refused(nothing, status.INVALID_ARGUMENT, "without a request frame");
  });

  it("a request the runtime refuses → its status: unknown capability, unary-only capability, bad stream_id, unknown enum", async () => {
    const unknown = streamInvoke(c);
    unknown.call.write(request("no.such.thing", struct({})));
    await unknown.end();
    expect(unknown.code).toBe(status.NOT_FOUND);

    const badId = streamInvoke(c);
    badId.call.write(request("test.stream.echo", struct({}), { stream_id: "has spaces" }));
    await refused(badId, status.INVALID_ARGUMENT, "stream_id");

    const enumNumber = streamInvoke(c);
    enumNumber.call.write({ header: header(), capability: "test.stream.echo", kind: 9, payload: struct({}) });
    await refused(enumNumber, status.INVALID_ARGUMENT, "kind: 9 is not a FrameKind");
  });

  it("bytes that are not a StreamFrame, first or later → a clean status, then an error frame", async () => {
    const first = rawStreamInvoke(c);
    first.call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
    await refused(first, status.INVALID_ARGUMENT, "not a valid mig.v0_1.StreamFrame");

    // A valid first frame, by hand: StreamFrame{header: {tenant_id: "acme"}, capability: "test.stream.echo", kind: REQUEST, payload: {}}.
    const later = rawStreamInvoke(c);
    later.call.write(
      Buffer.concat([
        field(1, field(4, Buffer.from("acme"))),
        field(3, Buffer.from("test.stream.echo")),
        Buffer.from([0x20, 0x01]),
        field(5, Buffer.alloc(0)),
      ]),
    );
    await later.until("the hello frame", () => later.messages.length > 0);
    later.call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
    await failedWith(later, "not a valid mig.v0_1.StreamFrame");
  });

  it("on a live stream: server-side kinds, an unknown control action, another stream_id, a frame after end_stream → an error frame", async () => {
    const cases: [object, string][] = [
      [{ kind: "FRAME_KIND_EVENT", payload: struct({}) }, "come from the server"],
      [{ kind: "FRAME_KIND_CONTROL", payload: struct({ action: "pause" }) }, 'control action "pause" is unknown'],
      [{ stream_id: "other", kind: "FRAME_KIND_REQUEST", payload: struct({}) }, "this call carries stream"],
    ];
    for (const [frame, fragment] of cases) {
      const call = streamInvoke(c);
      call.call.write(request("test.stream.echo", struct({}), { stream_id: "live-1" }));
      await call.until("the hello frame", () => call.messages.length > 0);
      call.call.write(frame);
      const last = await failedWith(call, fragment);
      expect(last.stream_id).toBe("live-1");
    }
    const after = streamInvoke(c);
    after.call.write(request("test.stream.echo", struct({}), { end_stream: true, stream_id: "live-2" }));
    after.call.write({ kind: "FRAME_KIND_REQUEST", payload: struct({ late: true }) });
    const frames = await after.end();
    // The input was closed by the first frame: the stream may already have completed, else the late frame fails it.
    expect(["FRAME_KIND_RESPONSE", "FRAME_KIND_ERROR"]).toContain(frames.at(-1).kind);
    expect(frames.at(-1).end_stream).toBe(true);
  });

  it("a server_stream takes no request frames after its first", async () => {
    const call = streamInvoke(c);
    call.call.write(request("test.stream.forever", struct({}), { stream_id: "s-1" }));
    await call.until("a frame", () => call.messages.length > 0);
    call.call.write({ kind: "FRAME_KIND_REQUEST", payload: struct({ more: 1 }) });
    await failedWith(call, "is a server_stream");
  });

  it("a frame over the max receive size → RESOURCE_EXHAUSTED, and the stream it was for is cancelled", async () => {
    const message_id = randomUUID();
    const call = streamInvoke(c);
    call.call.write(request("test.stream.forever", struct({}), { header: { message_id } }));
    await call.until("a frame", () => call.messages.length > 0);
    call.call.write({
      kind: "FRAME_KIND_REQUEST",
      payload: struct({ big: "x".repeat(t.runtime.config.maxBodyBytes + 1) }),
    });
    await call.end();
    expect(call.code).toBe(status.RESOURCE_EXHAUSTED);
    await waitFor("the provider's signal", () => aborts.get(message_id));
    await waitFor("the stream to end", () => !t.runtime.work.streams.has(message_id));
  });

  it("after all that the server still serves", async () => {
    const res = await unary(c.discovery, "Hello", { header: header(), supported_versions: ["0.1"] });
    expect(res.selected_version).toBe("0.1");
    await waitFor("every stream to end", () => t.runtime.work.streams.size === 0);
  });
});

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 127) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

function field(number: number, bytes: Buffer): Buffer {
  return Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);
}
