// Bad input on the WebSocket stream endpoint: each gets an error frame with the right code, and the other streams on the socket go on.
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectEnvelope } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { type Frame, StreamClient } from "./helpers/stream-client.ts";

const schemas = anySchemas;
const descriptor = anyDescriptor;

const aborts = new Map<string, unknown>();

const forever = defineStreamingCapability(
  descriptor("test.stream.forever", ["server_stream"]),
  async (payload, { emit, signal, header }) => {
    signal.addEventListener("abort", () => aborts.set(header.message_id, signal.reason));
    const pad = "x".repeat(Number(payload.pad ?? 0));
    for (let i = 0; ; i++) await emit({ i, pad });
  },
  schemas,
);

const echo = defineStreamingCapability(
  descriptor("test.stream.echo", ["bidi_stream"]),
  async (_payload, { emit, inbound, signal, header }) => {
    signal.addEventListener("abort", () => aborts.set(header.message_id, signal.reason));
    let n = 0;
    for await (const message of inbound) await emit({ n: n++, echo: message });
    return { received: n };
  },
  schemas,
);

const count = defineStreamingCapability(
  descriptor("test.stream.count", ["server_stream"]),
  async (payload, { emit }) => {
    for (let i = 0; i < Number(payload.count); i++) await emit({ i });
  },
  schemas,
);

const unary = defineCapability(descriptor("test.unary.only", ["unary"]), () => ({ ok: true }), schemas);

let t: TestRuntime;
let client: StreamClient;
/** A bidi stream kept open through every test: after each bad input it must still echo. */
let witness: string;
let echoes = 0;

beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [forever, echo, count, unary],
    config: { maxBodyBytes: 64 * 1024, streamWindow: 4, streamStallMs: 500 },
  });
  client = await StreamClient.open(t.http.url);
  witness = client.start("test.stream.echo", {}).streamId;
});
afterAll(async () => {
  client?.close();
  await t?.stop();
});

const header = { tenant_id: "acme" };

/** The witness stream still works: a message sent now comes back. */
async function witnessAlive(): Promise<void> {
  const n = echoes++;
  client.send({ header, stream_id: witness, capability: "test.stream.echo", kind: "request", payload: { n } });
  await client.until(`echo ${n}`, () => client.of(witness).some((f) => f.payload?.echo?.n === n));
  expect(client.done.has(witness)).toBe(false);
}

/** Sends one message and resolves with the next frame that is not the witness's. */
async function answerTo(message: unknown): Promise<Frame> {
  const before = client.all.length;
  client.send(message);
  await client.until("an answer", () => client.all.slice(before).some((f) => f.stream_id !== witness));
  return client.all.slice(before).find((f) => f.stream_id !== witness)!;
}

function expectErrorFrame(frame: Frame, code: string): void {
  expectEnvelope("StreamFrame", frame);
  expect(frame.kind).toBe("error");
  expect(frame.end_stream).toBe(true);
  expect(frame.error.code).toBe(code);
  expect(frame.error.message.length).toBeGreaterThan(10);
}

describe("bad input on GET /mig/v0.1/stream", () => {
  it("a message that is not JSON → MIG_INVALID_REQUEST with an empty stream_id", async () => {
    const frame = await answerTo('{"kind": "request", "stream_id": "x"');
    expectErrorFrame(frame, "MIG_INVALID_REQUEST");
    expect(frame.stream_id).toBe("");
    expect(frame.error.message).toContain("not valid JSON");
    await witnessAlive();
  });

  it("a message over the size limit → MIG_INVALID_REQUEST naming the limit; the socket stays open", async () => {
    const big = JSON.stringify({
      header,
      stream_id: "big",
      capability: "test.stream.count",
      kind: "request",
      payload: { pad: "x".repeat(100 * 1024) },
    });
    const frame = await answerTo(big);
    expectErrorFrame(frame, "MIG_INVALID_REQUEST");
    expect(frame.error.details.max_frame_bytes).toBe(64 * 1024);
    await witnessAlive();
  });

  it("a JSON message that is not an object → MIG_INVALID_REQUEST", async () => {
    expectErrorFrame(await answerTo("[1,2]"), "MIG_INVALID_REQUEST");
    await witnessAlive();
  });

  it("an unknown frame kind → MIG_INVALID_REQUEST for its stream_id", async () => {
    const frame = await answerTo({
      header,
      stream_id: "odd",
      capability: "test.stream.count",
      kind: "bogus",
      payload: {},
    });
    expectErrorFrame(frame, "MIG_INVALID_REQUEST");
    expect(frame.stream_id).toBe("odd");
    await witnessAlive();
  });

  it("a server's frame kind sent by the caller → MIG_INVALID_REQUEST", async () => {
    expectErrorFrame(
      await answerTo({ header, stream_id: "resp", capability: "test.stream.count", kind: "response", payload: {} }),
      "MIG_INVALID_REQUEST",
    );
    await witnessAlive();
  });

  it("a control frame for an unknown stream_id → MIG_NOT_FOUND", async () => {
    const frame = await answerTo({
      header,
      stream_id: "nobody",
      capability: "test.stream.count",
      kind: "control",
      payload: { action: "cancel" },
    });
    expectErrorFrame(frame, "MIG_NOT_FOUND");
    expect(frame.stream_id).toBe("nobody");
    await witnessAlive();
  });

  it("a request frame for a unary-only capability → MIG_UNSUPPORTED_CAPABILITY", async () => {
    const frame = await answerTo({
      header,
      stream_id: "u1",
      capability: "test.unary.only",
      kind: "request",
      payload: {},
    });
    expectErrorFrame(frame, "MIG_UNSUPPORTED_CAPABILITY");
    await witnessAlive();
  });

  it("a request frame INVOKE would refuse (unknown capability, bad tenant) → the same code as INVOKE", async () => {
    expectErrorFrame(
      await answerTo({ header, stream_id: "n1", capability: "no.such.thing", kind: "request", payload: {} }),
      "MIG_UNSUPPORTED_CAPABILITY",
    );
    expectErrorFrame(
      await answerTo({
        header: { tenant_id: "a*" },
        stream_id: "n2",
        capability: "test.stream.count",
        kind: "request",
        payload: {},
      }),
      "MIG_INVALID_REQUEST",
    );
    expectErrorFrame(
      await answerTo({ header, stream_id: "bad id!", capability: "test.stream.count", kind: "request", payload: {} }),
      "MIG_INVALID_REQUEST",
    );
    await witnessAlive();
  });

  it("frames after end_stream → MIG_INVALID_REQUEST", async () => {
    const { streamId } = client.start("test.stream.count", { count: 2 });
    await client.ended(streamId);
    const frame = await answerTo({
      header,
      stream_id: streamId,
      capability: "test.stream.count",
      kind: "request",
      payload: {},
    });
    expectErrorFrame(frame, "MIG_INVALID_REQUEST");
    expect(frame.error.message).toContain("has ended");
    // A cancel after the end is an outcome, not an error.
    const late = await answerTo({
      header,
      stream_id: streamId,
      capability: "test.stream.count",
      kind: "control",
      payload: { action: "cancel" },
    });
    expect(late).toMatchObject({
      kind: "control",
      end_stream: true,
      payload: { accepted: false, status: "already_completed" },
    });
    await witnessAlive();
  });

  it("a frame after the caller's own end_stream ends that bidi stream with MIG_INVALID_REQUEST", async () => {
    const { streamId, messageId } = client.start("test.stream.echo", {});
    client.send({
      header,
      stream_id: streamId,
      capability: "test.stream.echo",
      kind: "request",
      payload: { a: 1 },
      end_stream: true,
    });
    client.send({ header, stream_id: streamId, capability: "test.stream.echo", kind: "request", payload: { a: 2 } });
    const frames = await client.ended(streamId);
    // The provider may have finished between the two frames (then the second meets an ended stream): same code either way.
    const last = frames.at(-1)!;
    if (last.kind === "response") {
      const frame = await client
        .until("the late frame's error", () => client.of(streamId).filter((f) => f.end_stream).length === 2)
        .then(() => client.of(streamId).at(-1)!);
      expectErrorFrame(frame, "MIG_INVALID_REQUEST");
    } else {
      expectErrorFrame(last, "MIG_INVALID_REQUEST");
      expect(aborts.has(messageId)).toBe(true);
    }
    await witnessAlive();
  });

  it("a bidi frame to a server_stream capability ends that stream with MIG_INVALID_REQUEST and aborts its provider", async () => {
    const { streamId, messageId } = client.start("test.stream.forever", {});
    await client.until("a frame", () => client.of(streamId).length > 0);
    client.send({
      header,
      stream_id: streamId,
      capability: "test.stream.forever",
      kind: "request",
      payload: { more: true },
    });
    const frames = await client.ended(streamId);
    expectErrorFrame(frames.at(-1)!, "MIG_INVALID_REQUEST");
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    expect(aborts.get(messageId)).toMatchObject({ code: "MIG_INVALID_REQUEST" });
    await witnessAlive();
  });

  it("a control action other than cancel → MIG_INVALID_REQUEST", async () => {
    expectErrorFrame(
      await answerTo({
        header,
        stream_id: "ctl",
        capability: "test.stream.count",
        kind: "control",
        payload: { action: "pause" },
      }),
      "MIG_INVALID_REQUEST",
    );
    await witnessAlive();
  });

  it("bidi_stream asked of a server_stream capability → MIG_UNSUPPORTED_CAPABILITY", async () => {
    const frame = await answerTo({
      header,
      stream_id: "b1",
      capability: "test.stream.count",
      kind: "request",
      payload: { count: 1 },
      stream_preference: "bidi_stream",
    });
    expectErrorFrame(frame, "MIG_UNSUPPORTED_CAPABILITY");
    await witnessAlive();
  });
});

describe("a consumer that stops reading", () => {
  it("pauses the provider, then ends the stream with MIG_BACKPRESSURE (retryable) past the stall bound", async () => {
    const reader = await StreamClient.open(t.http.url);
    const { streamId, messageId } = reader.start("test.stream.forever", { pad: 16 * 1024 }, { deadlineMs: 120_000 });
    await reader.until("a frame", () => reader.of(streamId).length > 0);
    reader.ws.pause();
    await waitFor("the stream to end", () => !t.runtime.work.streams.has(messageId), 20_000);
    expect(aborts.get(messageId)).toMatchObject({ code: "MIG_BACKPRESSURE", retryable: true });
    reader.ws.resume();
    const frames = await reader.ended(streamId);
    expectErrorFrame(frames.at(-1)!, "MIG_BACKPRESSURE");
    expect(frames.at(-1)!.error.retryable).toBe(true);
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    const metrics = await t.get("/metrics");
    expect(metrics.text).toMatch(/mig_streams_total\{capability="test.stream.forever",outcome="failed"\} [1-9]/);
    expect(metrics.text).toMatch(/mig_streams_paused 0/);
    reader.close();
  });
});

describe("authentication at the upgrade", () => {
  const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
  let j: TestRuntime;
  beforeAll(async () => {
    j = await startTestRuntime({ capabilities: [count], config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  });
  afterAll(() => j?.stop());
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt().sign(new TextEncoder().encode(SECRET));

  it("no token → the upgrade is refused with 401; a token of another tenant than X-Tenant-ID → 403", async () => {
    await expect(StreamClient.open(j.http.url)).rejects.toMatchObject({ status: 401 });
    const jwt = await token({ sub: "u", tenant_id: "acme" });
    await expect(
      StreamClient.open(j.http.url, { authorization: `Bearer ${jwt}`, "x-tenant-id": "globex" }),
    ).rejects.toMatchObject({ status: 403 });
  });

  it("with a token, frames act for the token's tenant; a frame naming another tenant → MIG_FORBIDDEN", async () => {
    const jwt = await token({ sub: "u", tenant_id: "acme" });
    const c = await StreamClient.open(j.http.url, { authorization: `Bearer ${jwt}` });
    const ok = c.start("test.stream.count", { count: 3 });
    expect((await c.ended(ok.streamId)).map((f) => f.header.tenant_id)).toEqual(["acme", "acme", "acme", "acme"]);
    const other = c.start("test.stream.count", { count: 3 }, { tenant: "globex" });
    const frames = await c.ended(other.streamId);
    expectErrorFrame(frames[0]!, "MIG_FORBIDDEN");
    // The same policy as INVOKE: the demo capability needs the scope capability:infer, which this token lacks.
    const scoped = c.start("observatory.models.infer", { input: "a b" });
    expectErrorFrame((await c.ended(scoped.streamId))[0]!, "MIG_FORBIDDEN");
    c.close();
  });
});
