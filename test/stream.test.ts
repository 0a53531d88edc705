// Streaming invocations over the WebSocket and SSE bindings: flow control, cancel, deadline, concurrency.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runConformance } from "../conformance/harness.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectEnvelope } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { type Frame, StreamClient } from "./helpers/stream-client.ts";

const schemas = anySchemas;
const descriptor = anyDescriptor;

/** Why each stream's provider signal fired, by message_id: proof that cancel reached the provider. */
const aborts = new Map<string, unknown>();

const count = defineStreamingCapability(
  descriptor("test.stream.count", ["server_stream"]),
  async (payload, { emit }) => {
    const n = Number(payload.count);
    const pad = "x".repeat(Number(payload.pad ?? 0));
    for (let i = 0; i < n; i++) await emit(pad ? { i, pad } : { i });
    return { result: "done", frames: n };
  },
  schemas,
);

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
  async (payload, { emit, inbound }) => {
    await emit({ hello: payload.name ?? "?" });
    let n = 0;
    for await (const message of inbound) await emit({ n: n++, echo: message });
    return { received: n };
  },
  schemas,
);

const unary = defineCapability(descriptor("test.unary.only", ["unary"]), () => ({ ok: true }), schemas);

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [count, forever, echo, unary],
    config: { streamWindow: 16, streamStallMs: 60_000 },
  });
});
afterAll(() => t?.stop());

function session(messageId: string): StreamSession {
  return t.runtime.work.streams.get(messageId) as StreamSession;
}

function data(frames: Frame[]): Frame[] {
  return frames.filter((f) => !f.end_stream);
}

describe("server_stream over WebSocket", () => {
  it("the demo provider streams the tokens of its input, then one terminal response frame", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId } = client.start("observatory.models.infer", { input: "the quick brown fox" });
    const frames = await client.ended(streamId);
    for (const f of frames) expectEnvelope("StreamFrame", f);
    expect(data(frames).map((f) => f.payload.token)).toEqual(["the", "quick", "brown", "fox"]);
    const last = frames.at(-1)!;
    expect(last).toMatchObject({ kind: "response", end_stream: true, payload: { result: "ok", tokens: 4 } });
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    client.close();
  });

  it("a 100,000-frame stream to a consumer that reads in bursts keeps at most window + 1 frames in the runtime", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId, messageId } = client.start(
      "test.stream.count",
      { count: 100_000, pad: 200 },
      { deadlineMs: 300_000 },
    );
    await waitFor("the stream to start", () => session(messageId));
    const s = session(messageId);
    let pauses = 0;
    let maxBuffered = 0;
    // Read in bursts: stop reading until the runtime has paused the provider, note what it holds, read on.
    while (!client.done.has(streamId)) {
      const before = client.of(streamId).length;
      client.ws.pause();
      const paused = await waitFor(
        "the provider to pause or the stream to end",
        () => s.isOver || t.runtime.metrics.streamsPaused.get().then((m) => m.values[0]!.value === 1),
      );
      if (paused && !s.isOver) {
        pauses++;
        maxBuffered = Math.max(
          maxBuffered,
          s.held,
          (await t.runtime.metrics.streamBufferedFrames.get()).values[0]!.value,
        );
      }
      client.ws.resume();
      await client.until(
        "more frames",
        () => client.done.has(streamId) || client.of(streamId).length > before + 20_000,
      );
    }
    const frames = await client.ended(streamId);
    expect(frames).toHaveLength(100_001);
    expect(data(frames).every((f, i) => f.payload.i === i)).toBe(true);
    expect(frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { frames: 100_000 } });
    expect(pauses).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThanOrEqual(16 + 1);
    expect(s.highWater).toBeLessThanOrEqual(16 + 1);
    expect((await t.runtime.metrics.streamsPaused.get()).values[0]!.value).toBe(0);
    expect((await t.runtime.metrics.streamBufferedFrames.get()).values[0]!.value).toBe(0);
    client.close();
  });

  it("200 concurrent streams on one WebSocket each get their own frames in order and one terminal frame", async () => {
    const client = await StreamClient.open(t.http.url);
    const ids = Array.from(
      { length: 200 },
      (_, k) => client.start("test.stream.count", { count: 20 + (k % 7) }).streamId,
    );
    await Promise.all(ids.map((id) => client.ended(id)));
    ids.forEach((id, k) => {
      const frames = client.of(id);
      expect(frames).toHaveLength(20 + (k % 7) + 1);
      expect(data(frames).map((f) => f.payload.i)).toEqual(Array.from({ length: 20 + (k % 7) }, (_, i) => i));
      expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
      expect(frames.at(-1)!.kind).toBe("response");
    });
    client.close();
  });
});

describe("fairness", () => {
  it("a never-ending stream to a fast consumer leaves room for other callers: unary INVOKEs complete while it runs", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId, messageId } = client.start("test.stream.forever", {});
    await client.until("a frame", () => client.of(streamId).length > 0);
    const s = session(messageId);
    for (let k = 0; k < 10; k++) {
      const before = s.emitted;
      const res = await t.post("/mig/v0.1/invoke/observatory.models.infer", {
        header: { tenant_id: "acme" },
        payload: { input: "x" },
      });
      expect(res.status).toBe(200);
      // Counted in frames, not time: without the yield after each window, one INVOKE waited for ~10,000 frames.
      expect(s.emitted - before).toBeLessThan(5_000);
    }
    client.close();
  });
});

describe("cancel and deadline", () => {
  it("a control cancel in the middle aborts the provider's signal and yields one control terminal frame", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId, messageId } = client.start("test.stream.forever", {});
    await client.until("50 frames", () => client.of(streamId).length >= 50);
    client.send({
      header: { tenant_id: "acme" },
      stream_id: streamId,
      capability: "test.stream.forever",
      kind: "control",
      payload: { action: "cancel", reason: "enough" },
    });
    await client.ended(streamId);
    // A later stream on the same socket completes: any stray frame of the cancelled one would have arrived before its end.
    const { streamId: after } = client.start("test.stream.count", { count: 3 });
    await client.ended(after);
    const frames = client.of(streamId);
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    expect(frames.at(-1)).toMatchObject({
      kind: "control",
      end_stream: true,
      payload: { action: "cancel", status: "cancelled", reason: "enough" },
    });
    expect(aborts.get(messageId)).toMatchObject({ code: "MIG_TIMEOUT", details: { cancelled: true } });
    expect(t.runtime.work.streams.has(messageId)).toBe(false);
    client.close();
  });

  it("CANCEL of the stream's message_id over HTTP reaches the stream", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId, messageId } = client.start("test.stream.forever", {});
    await client.until("10 frames", () => client.of(streamId).length >= 10);
    const ack = await t.post(`/mig/v0.1/cancel/${messageId}`, { header: { tenant_id: "acme" } });
    expect(ack.body).toMatchObject({ accepted: true, status: "cancelled" });
    const frames = await client.ended(streamId);
    expect(frames.at(-1)).toMatchObject({ kind: "control", end_stream: true });
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    expect(aborts.has(messageId)).toBe(true);
    const again = await t.post(`/mig/v0.1/cancel/${messageId}`, { header: { tenant_id: "acme" } });
    expect(again.body).toMatchObject({ accepted: false, status: "already_completed" });
    client.close();
  });

  it("closing the WebSocket aborts the provider of every stream on it", async () => {
    const client = await StreamClient.open(t.http.url);
    const a = client.start("test.stream.forever", {});
    const b = client.start("test.stream.forever", {});
    await client.until("frames of both", () => client.of(a.streamId).length > 0 && client.of(b.streamId).length > 0);
    client.close();
    await waitFor("both providers aborted", () => aborts.has(a.messageId) && aborts.has(b.messageId));
    expect(aborts.get(a.messageId)).toMatchObject({ details: { cancelled: true, reason: "the WebSocket closed" } });
    expect(t.runtime.work.streams.has(a.messageId) || t.runtime.work.streams.has(b.messageId)).toBe(false);
  });

  it("a deadline ends a never-ending stream with one MIG_TIMEOUT error frame", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId, messageId } = client.start("test.stream.forever", {}, { deadlineMs: 300 });
    const frames = await client.ended(streamId);
    const last = frames.at(-1)!;
    expectEnvelope("StreamFrame", last);
    expect(last).toMatchObject({ kind: "error", end_stream: true, error: { code: "MIG_TIMEOUT", retryable: true } });
    expect(frames.filter((f) => f.end_stream)).toHaveLength(1);
    expect(aborts.get(messageId)).toMatchObject({ code: "MIG_TIMEOUT" });
    client.close();
  });
});

describe("bidi_stream over WebSocket", () => {
  it("the caller's frames after the request reach the provider in order; end_stream closes its half", async () => {
    const client = await StreamClient.open(t.http.url);
    const { streamId } = client.start("test.stream.echo", { name: "ada" });
    for (let i = 0; i < 100; i++)
      client.send({
        header: { tenant_id: "acme" },
        stream_id: streamId,
        capability: "test.stream.echo",
        kind: "request",
        payload: { i },
      });
    client.send({
      header: { tenant_id: "acme" },
      stream_id: streamId,
      capability: "test.stream.echo",
      kind: "request",
      end_stream: true,
    });
    const frames = await client.ended(streamId);
    expect(data(frames)[0]!.payload).toEqual({ hello: "ada" });
    expect(
      data(frames)
        .slice(1)
        .map((f) => f.payload.echo.i),
    ).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { received: 100 } });
    client.close();
  });

  it("frames come as text messages, and text beyond ASCII arrives as it was sent", async () => {
    const client = await StreamClient.open(t.http.url);
    const kinds: boolean[] = [];
    client.ws.on("message", (_data, isBinary) => kinds.push(isBinary));
    const words = ["naïve", "日本語", "emoji 🚀 ok", '\u0000 and "quotes" and \\'];
    const { streamId } = client.start("test.stream.echo", { name: "zoë" });
    for (const word of words)
      client.send({
        header: { tenant_id: "acme" },
        stream_id: streamId,
        capability: "test.stream.echo",
        kind: "request",
        payload: { word },
      });
    client.send({
      header: { tenant_id: "acme" },
      stream_id: streamId,
      capability: "test.stream.echo",
      kind: "request",
      end_stream: true,
    });
    const frames = await client.ended(streamId);
    expect(data(frames)[0]!.payload).toEqual({ hello: "zoë" });
    expect(
      data(frames)
        .slice(1)
        .map((f) => f.payload.echo.word),
    ).toEqual(words);
    expect(kinds).toHaveLength(frames.length);
    expect(kinds.every((binary) => binary === false)).toBe(true);
    client.close();
  });
});

describe("server_stream over SSE", () => {
  it("POST /invoke with stream_preference server_stream answers with one SSE event per frame", async () => {
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/observatory.models.infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        header: { tenant_id: "acme" },
        payload: { input: "one two three" },
        stream_preference: "server_stream",
      }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const events = (await res.text()).split("\n\n").filter(Boolean);
    const frames = events.map((e) => {
      const lines = e.split("\n");
      expect(lines[0]).toBe("event: mig-frame");
      return JSON.parse(lines[1]!.slice("data: ".length)) as Frame;
    });
    for (const f of frames) expectEnvelope("StreamFrame", f);
    expect(data(frames).map((f) => f.payload.token)).toEqual(["one", "two", "three"]);
    expect(frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { result: "ok" } });
  });

  it("a refused SSE stream is a JSON error envelope with the standard's status", async () => {
    const res = await t.post("/mig/v0.1/invoke/test.unary.only", {
      header: { tenant_id: "acme" },
      payload: {},
      stream_preference: "server_stream",
    });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    const bidi = await t.post("/mig/v0.1/invoke/test.stream.echo", {
      header: { tenant_id: "acme" },
      payload: {},
      stream_preference: "bidi_stream",
    });
    expect(bidi.status).toBe(400);
  });

  it("closing the SSE connection aborts the provider", async () => {
    const controller = new AbortController();
    const messageId = crypto.randomUUID();
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/test.stream.forever`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        header: { tenant_id: "acme", message_id: messageId },
        payload: {},
        stream_preference: "server_stream",
      }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await waitFor("the provider to be aborted", () => aborts.has(messageId));
    expect(aborts.get(messageId)).toMatchObject({ details: { reason: "the SSE connection closed" } });
  });
});

describe("conformance harness", () => {
  it("Streaming profile over HTTP: no check fails (WebSocket invoke, unknown kind, cancel)", async () => {
    const report = await runConformance({ http: t.http.url, profile: "streaming", tenant: "acme" });
    const failures = report.results.filter((r) => r.status === "fail").map((r) => `${r.id}: ${r.reason ?? ""}`);
    expect(failures).toEqual([]);
    expect(
      report.results.filter((r) => r.id.startsWith("STREAM-") && r.status === "pass").length,
    ).toBeGreaterThanOrEqual(3);
  });
});
