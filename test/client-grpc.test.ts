// The client library over grpc:// against a real runtime and gRPC binding: every operation, flow control, cancel,
// a subscription that outlives a binding restart, and the bad inputs a user meets (nobody there, the wrong server).
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { type ConnectOptions, connect, type MigClient } from "../client/index.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { MigError } from "../schemas/errors.ts";
import type { JsonObject } from "../schemas/types.ts";
import { count, echo } from "./fixtures/stream-provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const WINDOW = 8;

/** Why each provider's signal fired, by message_id: proof that a cancel reached the provider. */
const aborts = new Map<string, unknown>();
/** The message_ids of the slow invocations that have started. */
const started = new Set<string>();

const capabilities = [
  defineCapability(
    anyDescriptor("test.client.add", ["unary"]),
    (payload) => ({
      sum: Number(payload.a) + Number(payload.b),
    }),
    anySchemas,
  ),
  // Answers after a minute unless its signal fires.
  defineCapability(
    anyDescriptor("test.client.slow", ["unary"]),
    (_payload, { header, signal }) => {
      started.add(header.message_id);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => resolve({ late: true }), 60_000);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          aborts.set(header.message_id, signal.reason);
          reject(signal.reason);
        });
      });
    },
    anySchemas,
  ),
  defineStreamingCapability(
    anyDescriptor("test.client.forever", ["server_stream"]),
    async (_payload, { emit, signal, header }) => {
      signal.addEventListener("abort", () => aborts.set(header.message_id, signal.reason));
      for (let i = 0; ; i++) {
        await emit({ i });
        await new Promise((r) => setTimeout(r, 2));
      }
    },
    anySchemas,
  ),
  // Counts to payload.count; and a bidi echo that says nothing before the caller does.
  count,
  echo,
];

let t: TestRuntime;
let grpc: GrpcBinding;
let client: MigClient;
beforeAll(async () => {
  t = await startTestRuntime({
    capabilities,
    config: { streamWindow: WINDOW, streamStallMs: 60_000, replayRatePerSec: 0 },
  });
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  client = await clientFor(`grpc://127.0.0.1:${grpc.port}`);
});
afterAll(async () => {
  await client?.close();
  await grpc?.close();
  await t?.stop();
});

function clientFor(url: string, options: ConnectOptions = {}): Promise<MigClient> {
  return connect(url, { tenant: "acme", ...options });
}

/** The MigError a promise rejects with (fails the test when it resolves, or rejects with anything else). */
async function migErrorOf(pending: Promise<unknown>): Promise<MigError> {
  const outcome = await pending.then(
    (value) => new Error(`expected a MigError, got ${JSON.stringify(value).slice(0, 200)}`),
    (err: unknown) => err,
  );
  if (!(outcome instanceof MigError)) throw outcome;
  return outcome;
}

const context = { principal: anonymousPrincipal(), tenant: "acme", binding: "http" as const };
let topics = 0;
const newTopic = () => `client.grpc.t${++topics}`;

function publishDirect(topic: string, payload: JsonObject) {
  return t.runtime.publish({ header: { tenant_id: "acme" }, payload }, context, topic);
}

describe("every operation over grpc://", () => {
  it("hello selects the gRPC binding; discover lists the capabilities with their modes as JSON strings", async () => {
    const hello = await client.hello();
    expect(hello).toMatchObject({ selected_version: "0.1", selected_binding: "grpc" });
    expect(Array.isArray(hello.enabled_features)).toBe(true);
    expect(hello.header.tenant_id).toBe("acme");
    expect(Number.isNaN(Date.parse(hello.header.timestamp))).toBe(false);

    const { capabilities: found } = await client.discover();
    const byId = new Map(found.map((c) => [c.id, c]));
    expect(byId.get("test.client.add")?.modes).toEqual(["unary"]);
    expect(byId.get("remote.stream.echo")?.modes).toEqual(["bidi_stream"]);
  });

  it("invoke answers the provider's result as a plain JSON object", async () => {
    const answer = await client.invoke("test.client.add", { a: 2, b: 40 });
    expect(answer).toMatchObject({ capability: "test.client.add", payload: { sum: 42 } });
  });

  it("cancel stops a running invocation: the provider's signal fires and the invoke ends with MIG_TIMEOUT", async () => {
    const messageId = crypto.randomUUID();
    const running = migErrorOf(client.invoke("test.client.slow", {}, { messageId, retry: false }));
    await waitFor("the slow invocation to start", () => started.has(messageId));
    const ack = await client.cancel(messageId, { reason: "no longer needed" });
    expect(ack).toMatchObject({ target_message_id: messageId, accepted: true, status: "cancelled" });
    expect((await running).code).toBe("MIG_TIMEOUT");
    expect(aborts.get(messageId)).toMatchObject({ code: "MIG_TIMEOUT", details: { cancelled: true } });
  });

  it("publish answers the event's sequence; heartbeat answers a suggested interval", async () => {
    const topic = newTopic();
    const first = await client.publish(topic, { n: 1 });
    const second = await client.publish(topic, { n: 2 });
    expect([first, second].map((a) => [a.topic, a.sequence, a.accepted])).toEqual([
      [topic, 1, true],
      [topic, 2, true],
    ]);
    const ack = await client.heartbeat({ intervalMs: 5_000 });
    expect(ack.suggested_interval_ms).toBeGreaterThan(0);
    expect(typeof ack.load_factor).toBe("number");
  });

  it("a server stream yields its frames in order, then its result", async () => {
    const stream = client.stream("remote.stream.count", { count: 5 });
    const seen: unknown[] = [];
    for await (const frame of stream) seen.push(frame.payload?.i);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(await stream.result).toEqual({ frames: 5 });
  });

  it("a bidi stream to a provider that waits for the caller: send, end, every echo, then the result", async () => {
    const stream = client.stream("remote.stream.echo", {}, { mode: "bidi_stream" });
    stream.send({ word: "one" });
    stream.send({ word: "two" });
    stream.end();
    const echoes: unknown[] = [];
    for await (const frame of stream) echoes.push(frame.payload);
    expect(echoes).toEqual([
      { n: 0, echo: { word: "one" } },
      { n: 1, echo: { word: "two" } },
    ]);
    expect(await stream.result).toEqual({ received: 2 });
  });

  it("subscribe from 0 replays the stored events, then delivers live ones", async () => {
    const topic = newTopic();
    for (let n = 1; n <= 3; n++) await client.publish(topic, { n });
    const subscription = client.subscribe(topic, { resumeCursor: 0 });
    await subscription.ready();
    const got: [number, unknown, boolean][] = [];
    for await (const event of subscription) {
      got.push([event.sequence, event.payload.n, event.replay]);
      expect(Number.isNaN(Date.parse(event.published_at))).toBe(false);
      if (got.length === 3) await client.publish(topic, { n: 4 });
      if (got.length === 4) break;
    }
    expect(got).toEqual([
      [1, 1, true],
      [2, 2, true],
      [3, 3, true],
      [4, 4, false],
    ]);
  });
});

describe("flow control and cancel", () => {
  it("a slow consumer of a 100,000-frame stream keeps the runtime within its window; every frame arrives in order", async () => {
    const total = 100_000;
    const stream = client.stream("remote.stream.count", { count: total }, { deadlineMs: 120_000 });
    let session: StreamSession | undefined;
    let expected = 0;
    let pauses = 0;
    for await (const frame of stream) {
      expect(frame.payload?.i).toBe(expected);
      expected++;
      session ??= t.runtime.work.streams.get(stream.messageId) as StreamSession;
      if (expected % 25_000 === 1) {
        // The consumer stops reading: the call pauses, HTTP/2's window fills, and the runtime runs out of credit.
        const paused = await waitFor(
          "the provider to be held back",
          async () => session!.isOver || (await t.runtime.metrics.streamsPaused.get()).values[0]!.value === 1,
        );
        if (paused && !session.isOver) pauses++;
      }
    }
    expect(expected).toBe(total);
    expect(await stream.result).toEqual({ frames: total });
    expect(pauses).toBeGreaterThan(0);
    expect(session!.highWater).toBeLessThanOrEqual(WINDOW + 1);
  }, 60_000);

  it("break out of a stream loop cancels it: the provider's signal fires", async () => {
    const stream = client.stream("test.client.forever", {});
    let n = 0;
    for await (const _frame of stream) if (++n === 3) break;
    await waitFor("the provider's signal", () => aborts.get(stream.messageId));
    expect(aborts.get(stream.messageId)).toMatchObject({ code: "MIG_TIMEOUT", details: { cancelled: true } });
  });
});

describe("a subscription outlives the gRPC binding", () => {
  it("restarted on the same port while events are published: every sequence once, in order, after a reconnect", async () => {
    const topic = newTopic();
    const total = 60;
    const subscription = client.subscribe(topic, { resumeCursor: 0, retry: { baseDelayMs: 50, maxDelayMs: 500 } });
    await subscription.ready();
    let publishing = true;
    const publisher = (async () => {
      for (let n = 1; n <= total; n++) {
        await publishDirect(topic, { n });
        await new Promise((r) => setTimeout(r, 5));
      }
      publishing = false;
    })();
    const sequences: number[] = [];
    for await (const event of subscription) {
      sequences.push(event.sequence);
      if (sequences.length === 10) {
        const { port } = grpc;
        await grpc.close(0);
        grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, `127.0.0.1:${port}`);
      }
      if (sequences.length === total) break;
    }
    await publisher;
    expect(publishing).toBe(false);
    expect(sequences).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(subscription.reconnects).toBeGreaterThanOrEqual(1);
  }, 30_000);
});

describe("bad input", () => {
  it("a port nobody listens on: MIG_UNAVAILABLE naming the URL", async () => {
    const port = await freePort();
    const nobody = await clientFor(`grpc://127.0.0.1:${port}`, { retry: false });
    try {
      const err = await migErrorOf(nobody.hello());
      expect(err.code).toBe("MIG_UNAVAILABLE");
      expect(err.retryable).toBe(true);
      expect(err.message).toContain(`grpc://127.0.0.1:${port}`);
    } finally {
      await nobody.close();
    }
  });

  it("an HTTP/1 server at the address: a MigError", async () => {
    const server = createHttpServer((_req, res) => res.end("hello from HTTP/1"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const wrong = await clientFor(`grpc://127.0.0.1:${port}`, { retry: false });
    try {
      const err = await migErrorOf(wrong.invoke("test.client.add", { a: 1, b: 2 }));
      expect(err.message).toContain(`grpc://127.0.0.1:${port}`);
    } finally {
      await wrong.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("a capability that does not exist: MIG_UNSUPPORTED_CAPABILITY, unary and stream", async () => {
    expect((await migErrorOf(client.invoke("test.client.missing", {}))).code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    const stream = client.stream("test.client.missing", {});
    const fromLoop = await migErrorOf(
      (async () => {
        for await (const _frame of stream);
      })(),
    );
    expect(fromLoop.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    expect((await migErrorOf(stream.result)).code).toBe("MIG_UNSUPPORTED_CAPABILITY");
  });

  it("a topic the server refuses: the subscription rejects with its MIG_INVALID_REQUEST, not retried", async () => {
    const subscription = client.subscribe("not a topic");
    const err = await migErrorOf(subscription.ready());
    expect(err.code).toBe("MIG_INVALID_REQUEST");
    expect(subscription.reconnects).toBe(0);
    await subscription.close();
  });

  it("an aborted signal: a MigError; aborted mid-call, the provider's signal fires too", async () => {
    expect(
      await migErrorOf(client.invoke("test.client.add", { a: 1, b: 1 }, { signal: AbortSignal.abort() })),
    ).toBeInstanceOf(MigError);
    const controller = new AbortController();
    const messageId = crypto.randomUUID();
    const running = migErrorOf(client.invoke("test.client.slow", {}, { messageId, signal: controller.signal }));
    await waitFor("the slow invocation to start", () => started.has(messageId));
    controller.abort();
    expect((await running).details).toMatchObject({ cancelled: true });
    await waitFor("the provider's signal", () => aborts.get(messageId));
  });

  it("a deadline shorter than the capability: MIG_TIMEOUT", async () => {
    const err = await migErrorOf(client.invoke("test.client.slow", {}, { deadlineMs: 300, retry: false }));
    expect(err.code).toBe("MIG_TIMEOUT");
  });
});

/** A port that was free a moment ago: nothing listens on it. */
async function freePort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
