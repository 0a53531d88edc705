// Streams over the public NATS subjects: start on mig.v0_1.<tenant>.control.stream, frames on mig.v0_1.<tenant>.stream.<stream_id> against credit.
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { count as remoteCount } from "./fixtures/stream-provider.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const ANY = "schema://test/any/v1";
const schemas = { [ANY]: { type: "object" } };
const descriptor = (id: string, modes: ("unary" | "server_stream" | "bidi_stream")[]) => ({
  id,
  version: "1.0.0",
  modes,
  input_schema_uri: ANY,
  output_schema_uri: ANY,
  auth_scopes: [],
});
const aborts = new Map<string, unknown>();

const count = defineStreamingCapability(
  descriptor("test.stream.count", ["server_stream"]),
  async (payload, { emit }) => {
    for (let i = 0; i < Number(payload.count); i++) await emit({ i });
    return { frames: Number(payload.count) };
  },
  schemas,
);
const forever = defineStreamingCapability(
  descriptor("test.stream.forever", ["server_stream"]),
  async (_p, { emit, signal, header }) => {
    signal.addEventListener("abort", () => aborts.set(header.message_id, signal.reason));
    for (let i = 0; ; i++) await emit({ i });
  },
  schemas,
);
const echo = defineStreamingCapability(
  descriptor("test.stream.echo", ["bidi_stream"]),
  async (_p, { emit, inbound }) => {
    let n = 0;
    for await (const message of inbound) await emit({ n: n++, echo: message });
    return { received: n };
  },
  schemas,
);
const unary = defineCapability(descriptor("test.unary.only", ["unary"]), () => ({ ok: true }), schemas);

let t: TestRuntime;
let binding: NatsBinding;
let nc: NatsConnection;
beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [count, forever, echo, unary],
    config: { streamWindow: 16, streamStallMs: 1_000 },
  });
  binding = await startNatsBinding(t.runtime, new Authenticator("none"));
  nc = await natsClient(t.runtime.natsUrl);
});
afterAll(async () => {
  await nc?.close();
  await binding?.close();
  await t?.stop();
});

type Frame = Record<string, any>;

/** A NATS consumer of one stream: subscribes first, starts it, grants `batch` credits each time it has read a batch. */
async function consume(
  capability: string,
  payload: unknown,
  options: { batch?: number; grant?: boolean; deadlineMs?: number; onFrame?: (f: Frame, n: number) => void } = {},
) {
  const streamId = `n-${randomUUID()}`;
  const messageId = randomUUID();
  const frames: Frame[] = [];
  const subject = `mig.v0_1.acme.stream.${streamId}`;
  const inbound = `${subject}.in`;
  const batch = options.batch ?? 16;
  let ended!: () => void;
  const done = new Promise<void>((r) => (ended = r));
  let read = 0;
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      const frame = msg.json<Frame>();
      frames.push(frame);
      options.onFrame?.(frame, frames.length);
      if (frame.end_stream) return ended();
      if (++read === batch && options.grant !== false) {
        read = 0;
        nc.publish(
          inbound,
          JSON.stringify({ kind: "control", stream_id: streamId, payload: { action: "credit", credit: batch } }),
        );
      }
    },
  });
  await nc.flush();
  const header: Frame = { tenant_id: "acme", message_id: messageId };
  if (options.deadlineMs) header.deadline_ms = options.deadlineMs;
  const answer = await natsRequest(nc, "mig.v0_1.acme.control.stream", {
    header,
    capability,
    payload,
    stream_id: streamId,
    stream_preference: capability.endsWith("echo") ? "bidi_stream" : "server_stream",
  });
  if (!answer.body.error && options.grant !== false)
    nc.publish(
      inbound,
      JSON.stringify({ kind: "control", stream_id: streamId, payload: { action: "credit", credit: batch } }),
    );
  return {
    streamId,
    messageId,
    frames,
    answer: answer.body,
    inbound,
    done: done.finally(() => sub.unsubscribe()),
    send: (f: Frame) => nc.publish(inbound, JSON.stringify(f)),
  };
}

const data = (frames: Frame[]) => frames.filter((f) => !f.end_stream);

describe("streams over NATS", () => {
  it("the start reply names the stream's subjects; 10,000 frames arrive in order as the consumer grants credit", async () => {
    let session: StreamSession | undefined;
    const s = await consume(
      "test.stream.count",
      { count: 10_000 },
      {
        batch: 64,
        onFrame: (_f, n) => {
          if (n === 1)
            session = [...t.runtime.work.streams.values()].find(
              (x) => (x as StreamSession).capability === "test.stream.count",
            ) as StreamSession;
        },
      },
    );
    expect(s.answer).toMatchObject({
      stream_id: s.streamId,
      subject: `mig.v0_1.acme.stream.${s.streamId}`,
      inbound_subject: s.inbound,
    });
    await s.done;
    expect(s.frames).toHaveLength(10_001);
    expect(data(s.frames).every((f, i) => f.payload.i === i)).toBe(true);
    expect(s.frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { frames: 10_000 } });
    expect(session!.highWater).toBeLessThanOrEqual(17);
  });

  it("a 100,000-frame stream to a consumer that reads slowly keeps at most window + 1 frames in the runtime", async () => {
    const paused = async () => (await t.runtime.metrics.streamsPaused.get()).values[0]?.value ?? 0;
    let session: StreamSession | undefined;
    let pauses = 0;
    let s!: Awaited<ReturnType<typeof consume>>;
    const grant = () => s.send({ kind: "control", payload: { action: "credit", credit: 64 } });
    s = await consume(
      "test.stream.count",
      { count: 100_000 },
      {
        grant: false,
        onFrame: (frame, n) => {
          if (n === 1)
            session = [...t.runtime.work.streams.values()].find(
              (x) => (x as StreamSession).capability === "test.stream.count",
            ) as StreamSession;
          if (frame.end_stream || n % 64 !== 0) return;
          // Every 9,600 frames the reader stops granting until the runtime has paused the provider for want of credit.
          if ((n / 64) % 150 === 0)
            void waitFor("the provider to pause", async () => (await paused()) === 1 || undefined).then(
              () => (pauses++, grant()),
            );
          else grant();
        },
      },
    );
    grant();
    await s.done;
    expect(s.frames).toHaveLength(100_001);
    expect(data(s.frames).every((f, i) => f.payload.i === i)).toBe(true);
    expect(s.frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { frames: 100_000 } });
    expect(pauses).toBe(10);
    expect(session!.highWater).toBeLessThanOrEqual(17);
  }, 60_000); // seconds on this machine; room for a slower one

  it("200 concurrent streams each get their own frames, in order, and one terminal frame", async () => {
    const lengthOf = (k: number) => 40 + (k % 7);
    const streams = await Promise.all(
      Array.from({ length: 200 }, (_, k) => consume("test.stream.count", { count: lengthOf(k) })),
    );
    await Promise.all(streams.map((s) => s.done));
    for (const [k, s] of streams.entries()) {
      expect(s.frames).toHaveLength(lengthOf(k) + 1);
      expect(s.frames.every((f) => f.stream_id === s.streamId)).toBe(true);
      expect(data(s.frames).map((f) => f.payload.i)).toEqual(Array.from({ length: lengthOf(k) }, (_, i) => i));
      expect(s.frames.filter((f) => f.end_stream)).toHaveLength(1);
      expect(s.frames.at(-1)).toMatchObject({ kind: "response", end_stream: true, payload: { frames: lengthOf(k) } });
    }
  });

  it("a consumer that grants no credit gets nothing, and the stream ends with MIG_BACKPRESSURE after the stall bound", async () => {
    const s = await consume("test.stream.forever", {}, { grant: false });
    await s.done;
    expect(s.frames).toHaveLength(1);
    expect(s.frames[0]).toMatchObject({
      kind: "error",
      end_stream: true,
      error: { code: "MIG_BACKPRESSURE", retryable: true },
    });
    expect(aborts.get(s.messageId)).toMatchObject({ code: "MIG_BACKPRESSURE" });
  });

  it("a consumer that trickles credit for longer than the stall bound keeps its stream: the bound counts from the last credit", async () => {
    const s = await consume("test.stream.forever", {}, { grant: false });
    // One credit each quarter of the bound, for three bounds (1,000 ms): the provider is paused throughout.
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 250));
      s.send({ kind: "control", payload: { action: "credit", credit: 1 } });
    }
    await waitFor("12 frames", () => s.frames.length >= 12 || undefined);
    expect(s.frames.filter((f) => f.end_stream)).toHaveLength(0);
    await s.done; // no more credit: now it stalls
    expect(data(s.frames)).toHaveLength(12);
    expect(s.frames.at(-1)).toMatchObject({ kind: "error", end_stream: true, error: { code: "MIG_BACKPRESSURE" } });
  });

  it("a paused stream that then gets plenty of credit counts as flowing again while it runs", async () => {
    const paused = async () => (await t.runtime.metrics.streamsPaused.get()).values[0]?.value ?? 0;
    const s = await consume("test.stream.forever", {}, { grant: false });
    await waitFor("the stream to pause", async () => (await paused()) === 1 || undefined);
    s.send({ kind: "control", payload: { action: "credit", credit: 1_000_000 } });
    await waitFor("the stream to flow", async () => (await paused()) === 0 || undefined);
    expect(s.frames.filter((f) => f.end_stream)).toHaveLength(0);
    s.send({ kind: "control", payload: { action: "cancel" } });
    await s.done;
    expect(s.frames.at(-1)).toMatchObject({ kind: "control", end_stream: true });
  });

  it("a cancel frame on the inbound subject aborts the provider; one control terminal frame", async () => {
    let cancelled = false;
    const s = await consume(
      "test.stream.forever",
      {},
      {
        onFrame: (_f, n) => {
          if (n >= 100 && !cancelled) {
            cancelled = true;
            nc.publish(
              `mig.v0_1.acme.stream.${s.streamId}.in`,
              JSON.stringify({ kind: "control", payload: { action: "cancel", reason: "enough" } }),
            );
          }
        },
      },
    );
    await s.done;
    expect(s.frames.filter((f) => f.end_stream)).toHaveLength(1);
    expect(s.frames.at(-1)).toMatchObject({
      kind: "control",
      end_stream: true,
      payload: { status: "cancelled", reason: "enough" },
    });
    expect(aborts.get(s.messageId)).toMatchObject({ details: { cancelled: true } });
  });

  it("a deadline ends a never-ending stream with MIG_TIMEOUT", async () => {
    const s = await consume("test.stream.forever", {}, { deadlineMs: 300 });
    await s.done;
    expect(s.frames.at(-1)).toMatchObject({ kind: "error", end_stream: true, error: { code: "MIG_TIMEOUT" } });
  });

  it("bidi: request frames on the inbound subject reach the provider in order", async () => {
    const s = await consume("test.stream.echo", {});
    for (let i = 0; i < 50; i++) s.send({ kind: "request", payload: { i } });
    s.send({ kind: "request", end_stream: true });
    await s.done;
    expect(data(s.frames).map((f) => f.payload.echo.i)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(s.frames.at(-1)).toMatchObject({ kind: "response", payload: { received: 50 } });
  });

  it("payloads beyond ASCII arrive intact (frames are encoded to UTF-8 bytes by the sink itself)", async () => {
    const texts = ["héllo", "✓ done", "🚀 emoji, a surrogate pair", '\u0000 and "quotes"', "日本語"];
    const s = await consume("test.stream.echo", {});
    for (const text of texts) s.send({ kind: "request", payload: { text } });
    s.send({ kind: "request", end_stream: true });
    await s.done;
    expect(data(s.frames).map((f) => f.payload.echo.text)).toEqual(texts);
  });

  it("a refused start is an error envelope with its code in the mig_error_code header: unary-only capability, bad stream_id, another tenant", async () => {
    const a = await natsRequest(nc, "mig.v0_1.acme.control.stream", {
      header: { tenant_id: "acme" },
      capability: "test.unary.only",
      payload: {},
    });
    expect(a.body.error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    expect(a.headers.mig_error_code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    const b = await natsRequest(nc, "mig.v0_1.acme.control.stream", {
      header: { tenant_id: "acme" },
      capability: "test.stream.count",
      payload: { count: 1 },
      stream_id: "a.b",
    });
    expect(b.body.error.code).toBe("MIG_INVALID_REQUEST");
    const c = await natsRequest(nc, "mig.v0_1.acme.control.stream", {
      header: { tenant_id: "globex" },
      capability: "test.stream.count",
      payload: { count: 1 },
    });
    expect(c.body.error.code).toBe("MIG_FORBIDDEN");
    expect([b.headers.mig_error_code, c.headers.mig_error_code]).toEqual(["MIG_INVALID_REQUEST", "MIG_FORBIDDEN"]);
  });

  it("from a remote worker: a NATS consumer's stream is served by a worker behind the gateway", async () => {
    const config = loadConfig(
      { natsUrl: t.runtime.natsUrl, dataDir: t.dataDir, logLevel: "silent", streamWindow: 16 },
      {},
    );
    const workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
    const host = await WorkerHost.start(workerRuntime, [remoteCount], { heartbeatMs: 500 });
    try {
      await waitFor("the gateway to see the worker", () => t.runtime.capabilities.get("remote.stream.count")?.stream);
      const s = await consume("remote.stream.count", { count: 3_000 });
      await s.done;
      expect(data(s.frames).map((f) => f.payload.i)).toEqual(Array.from({ length: 3_000 }, (_, i) => i));
      expect(s.frames.at(-1)).toMatchObject({ kind: "response", payload: { frames: 3_000 } });
    } finally {
      await host.stop();
      await workerRuntime.stop();
    }
  });
});
