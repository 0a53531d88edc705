// The client over HTTP against a real runtime: every operation, a stream's flow control reaching the provider, a
// subscription that outlives its connection, and each bad input a caller can meet (retries: client-retry.test.ts).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { type HttpBinding, startHttpBinding } from "../bindings/http/server.ts";
import type { MigClient } from "../client/client.ts";
import { connect, MigError } from "../client/index.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import type { JsonObject, StreamFrame } from "../schemas/types.ts";
import { anyDescriptor as descriptor, anySchemas as schemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const WINDOW = 16;

/** Why each provider's signal fired, by the request's message_id: proof that a cancel reached the provider. */
const aborts = new Map<string, unknown>();
/** Message ids whose handler has started. */
const started = new Set<string>();

const slow = defineCapability(
  descriptor("test.slow", ["unary"]),
  (payload, { signal, header }) =>
    new Promise<JsonObject>((resolve, reject) => {
      started.add(header.message_id);
      const timer = setTimeout(() => resolve({ slept: true }), Number(payload.ms ?? 60_000));
      signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          aborts.set(header.message_id, signal.reason);
          reject(signal.reason);
        },
        { once: true },
      );
    }),
  schemas,
);

const count = defineStreamingCapability(
  descriptor("test.stream.count", ["server_stream"]),
  async (payload, { emit }) => {
    const n = Number(payload.count);
    for (let i = 0; i < n; i++) await emit({ i });
    return { frames: n };
  },
  schemas,
);

const forever = defineStreamingCapability(
  descriptor("test.stream.forever", ["server_stream"]),
  async (_payload, { emit, signal, header }) => {
    signal.addEventListener("abort", () => aborts.set(header.message_id, signal.reason));
    for (let i = 0; ; i++) await emit({ i });
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

/** A bidi provider that says nothing until the caller has: the stream must open without a frame from it. */
const listener = defineStreamingCapability(
  descriptor("test.stream.listener", ["bidi_stream"]),
  async (_payload, { emit, inbound }) => {
    for await (const message of inbound) await emit({ heard: message });
    return {};
  },
  schemas,
);

let t: TestRuntime;
let client: MigClient;
beforeAll(async () => {
  t = await startTestRuntime({
    capabilities: [slow, count, forever, echo, listener],
    config: { streamWindow: WINDOW, streamStallMs: 60_000 },
  });
  client = await connect(t.http.url, { tenant: "acme" });
});
afterAll(async () => {
  await client?.close();
  await t?.stop();
});

function session(messageId: string): StreamSession | undefined {
  return t.runtime.work.streams.get(messageId) as StreamSession | undefined;
}

/** What a promise rejected with; fails the test if it resolved. */
async function failure(promise: Promise<unknown>): Promise<MigError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MigError);
    return err as MigError;
  }
  throw new Error("expected a rejection");
}

async function collect(iterable: AsyncIterable<StreamFrame>): Promise<StreamFrame[]> {
  const frames: StreamFrame[] = [];
  for await (const frame of iterable) frames.push(frame);
  return frames;
}

/** A plain HTTP server on a free port; closed with `stop`. */
async function plainServer(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe("each operation", () => {
  it("hello selects the http binding; discover lists the demo capability", async () => {
    const hello = await client.hello();
    expect(hello.selected_binding).toBe("http");
    expect(hello.selected_version).toBe("0.1");
    const found = await client.discover();
    expect(found.capabilities.map((c) => c.id)).toContain("observatory.models.infer");
  });

  it("invoke answers the demo capability's response", async () => {
    const answer = await client.invoke("observatory.models.infer", { input: "hello" });
    expect(answer.capability).toBe("observatory.models.infer");
    expect(answer.header.tenant_id).toBe("acme");
    expect(answer.payload).toBeTypeOf("object");
  });

  it("a gateway's path prefix in the base URL is kept", async () => {
    // A proxy that serves the MIG routes under /gw/ and forwards them without the prefix.
    const { server, url } = await plainServer(async (req, res) => {
      if (!req.url?.startsWith("/gw/")) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not under /gw/");
        return;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const upstream = await fetch(`${t.http.url}${req.url.slice(3)}`, {
        method: req.method ?? "POST",
        headers: { "content-type": "application/json", "x-tenant-id": String(req.headers["x-tenant-id"]) },
        body: Buffer.concat(chunks),
      });
      res.writeHead(upstream.status, { "content-type": "application/json" }).end(await upstream.text());
    });
    const prefixed = await connect(`${url}/gw/`, { tenant: "acme", retry: false });
    expect((await prefixed.heartbeat()).load_factor).toBeTypeOf("number");
    await prefixed.close();
    await stop(server);
  });

  it("cancel of a running invocation fires its provider's signal and is acked cancelled", async () => {
    const messageId = crypto.randomUUID();
    const running = client.invoke("test.slow", {}, { messageId, retry: false });
    running.catch(() => undefined);
    await waitFor("the handler to start", () => started.has(messageId));
    const ack = await client.cancel(messageId, { reason: "no longer needed" });
    expect(ack).toMatchObject({ target_message_id: messageId, accepted: true, status: "cancelled" });
    await waitFor("the provider's signal", () => aborts.has(messageId));
    const err = await failure(running);
    expect(err.code).toBe("MIG_TIMEOUT");
  });

  it("publish answers sequences 1 and 2 of a new topic; heartbeat answers a load factor", async () => {
    const first = await client.publish("client.orders", { n: 1 });
    const second = await client.publish("client.orders", { n: 2 });
    expect([first.sequence, second.sequence]).toEqual([1, 2]);
    expect(first.accepted && second.accepted).toBe(true);
    const beat = await client.heartbeat();
    expect(beat.load_factor).toBeGreaterThanOrEqual(0);
    expect(beat.suggested_interval_ms).toBeGreaterThan(0);
  });

  it("a stream yields its frames, then its result", async () => {
    const stream = client.stream("observatory.models.infer", { input: "the quick brown fox" });
    const frames = await collect(stream);
    expect(frames.map((f) => f.payload?.token)).toEqual(["the", "quick", "brown", "fox"]);
    expect(await stream.result).toMatchObject({ result: "ok", tokens: 4 });
  });

  it("a bidi stream carries the caller's messages and its end", async () => {
    const stream = client.stream("test.stream.echo", { name: "ada" }, { mode: "bidi_stream" });
    stream.send({ word: "one" });
    stream.send({ word: "two" });
    stream.end();
    const frames = await collect(stream);
    expect(frames.map((f) => f.payload)).toEqual([
      { hello: "ada" },
      { n: 0, echo: { word: "one" } },
      { n: 1, echo: { word: "two" } },
    ]);
    expect(await stream.result).toEqual({ received: 2 });
  });

  it("a bidi stream whose provider waits for the caller's first message opens", async () => {
    const stream = client.stream("test.stream.listener", {}, { mode: "bidi_stream" });
    stream.send({ word: "first" });
    stream.end();
    expect((await collect(stream)).map((f) => f.payload)).toEqual([{ heard: { word: "first" } }]);
  });

  it("subscribe replays from 0, then delivers a live event", async () => {
    await client.publish("client.feed", { n: 1 });
    await client.publish("client.feed", { n: 2 });
    const subscription = client.subscribe("client.feed", { resumeCursor: 0 });
    const seen: { sequence: number; replay: boolean; n: unknown }[] = [];
    for await (const event of subscription) {
      seen.push({ sequence: event.sequence, replay: event.replay, n: event.payload.n });
      if (seen.length === 2) await client.publish("client.feed", { n: 3 });
      if (seen.length === 3) break;
    }
    expect(seen).toEqual([
      { sequence: 1, replay: true, n: 1 },
      { sequence: 2, replay: true, n: 2 },
      { sequence: 3, replay: false, n: 3 },
    ]);
  });
});

describe("flow control and cancel of streams", () => {
  it("a slow consumer of 100,000 frames holds the provider within its window, and gets every frame in order", async () => {
    const stream = client.stream("test.stream.count", { count: 100_000 }, { deadlineMs: 120_000 });
    const s = await waitFor("the stream to start", () => session(stream.messageId));
    let next = 0;
    let outOfOrder = 0;
    let pauses = 0;
    for await (const frame of stream) {
      if (frame.payload?.i !== next) outOfOrder++;
      next++;
      if (next % 20_000 === 0) {
        // Stop reading until the runtime has paused the provider (or sent everything), then read on.
        await waitFor(
          "the provider to pause or the stream to end",
          async () => s.isOver || (await t.runtime.metrics.streamsPaused.get()).values[0]!.value === 1,
        );
        if (!s.isOver) pauses++;
      }
    }
    expect(next).toBe(100_000);
    expect(outOfOrder).toBe(0);
    expect(await stream.result).toEqual({ frames: 100_000 });
    expect(pauses).toBeGreaterThan(0);
    expect(s.highWater).toBeLessThanOrEqual(WINDOW + 1);
  });

  it("break out of a for await cancels the stream: the provider's signal fires", async () => {
    const stream = client.stream("test.stream.forever", {});
    let frames = 0;
    for await (const _ of stream) if (++frames === 10) break;
    await waitFor("the provider's signal", () => aborts.has(stream.messageId));
    expect(aborts.get(stream.messageId)).toMatchObject({ code: "MIG_TIMEOUT" });
    await waitFor("the stream to leave the runtime", () => !t.runtime.work.streams.has(stream.messageId));
  });
});

describe("a subscription that loses its connection", () => {
  it("resubscribes from its last sequence: every event once, in order, no gap", async () => {
    // Publishing goes through a second listener of the same runtime, which stays up while the first one restarts.
    const publishing = await startHttpBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
    const publisher = await connect(publishing.url, { tenant: "acme" });
    let listening: HttpBinding | undefined = await startHttpBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
    const addr = listening.url.replace("http://", "");
    const subscriber = await connect(listening.url, { tenant: "acme" });
    const subscription = subscriber.subscribe("client.restart", {
      resumeCursor: 0,
      retry: { baseDelayMs: 20, maxDelayMs: 100 },
    });
    const seen: number[] = [];
    const reading = (async () => {
      for await (const event of subscription) {
        seen.push(event.sequence);
        if (seen.length === 60) break;
      }
    })();
    try {
      for (let n = 1; n <= 20; n++) await publisher.publish("client.restart", { n });
      await waitFor("the first 20 events", () => seen.length >= 20);
      await listening.close();
      listening = undefined;
      for (let n = 21; n <= 40; n++) await publisher.publish("client.restart", { n });
      listening = await startHttpBinding(t.runtime, t.runtime.authenticator, addr);
      for (let n = 41; n <= 60; n++) await publisher.publish("client.restart", { n });
      await reading;
    } finally {
      await subscription.close();
      await subscriber.close();
      await publisher.close();
      await listening?.close();
      await publishing.close();
    }
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(subscription.reconnects).toBeGreaterThanOrEqual(1);
  });
});

describe("bad input", () => {
  it("a URL nobody listens on → MIG_UNAVAILABLE naming the URL", async () => {
    const { server, url } = await plainServer(() => undefined);
    await stop(server);
    const nobody = await connect(url, { tenant: "acme", retry: false });
    const err = await failure(nobody.hello());
    expect(err.code).toBe("MIG_UNAVAILABLE");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(url);
    const streamErr = await failure(nobody.stream("observatory.models.infer", { input: "x" }).result);
    expect(streamErr.code).toBe("MIG_UNAVAILABLE");
    expect(streamErr.message).toContain(url);
    await nobody.close();
  });

  it("a server that answers an HTML page → MIG_INTERNAL; a proxy's HTML 502 → MIG_UNAVAILABLE", async () => {
    const page = await plainServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" }).end("<html><body>welcome</body></html>");
    });
    const proxy = await plainServer((_req, res) => {
      res.writeHead(502, { "content-type": "text/html" }).end("<html>Bad Gateway</html>");
    });
    const toPage = await connect(page.url, { tenant: "acme", retry: false });
    const toProxy = await connect(proxy.url, { tenant: "acme", retry: false });
    const pageErr = await failure(toPage.invoke("observatory.models.infer", { input: "x" }));
    expect(pageErr.code).toBe("MIG_INTERNAL");
    expect(pageErr.message).toContain(page.url);
    const proxyErr = await failure(toProxy.invoke("observatory.models.infer", { input: "x" }));
    expect(proxyErr.code).toBe("MIG_UNAVAILABLE");
    expect(proxyErr.retryable).toBe(true);
    // The page is not a WebSocket endpoint, nor a subscription.
    expect((await failure(toPage.stream("observatory.models.infer", {}).result)).code).toBe("MIG_INTERNAL");
    const subscription = toPage.subscribe("client.feed", { resumeCursor: 0 });
    expect((await failure(subscription.ready())).code).toBe("MIG_INTERNAL");
    await Promise.all([toPage.close(), toProxy.close(), stop(page.server), stop(proxy.server)]);
  });

  it("a call's HTTP headers carry the tenant, the token, and the body's trace context and idempotency key", async () => {
    let seen: { path: string | undefined; headers: Record<string, unknown> } | undefined;
    const { server, url } = await plainServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      seen = { path: req.url, headers: req.headers };
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ header: body.header, topic: body.topic, event_id: "e-1", sequence: 7, accepted: true }));
    });
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const recording = await connect(url, { tenant: "acme", token: "an-opaque-token", retry: false });
    const ack = await recording.publish("a topic/with slash", { n: 1 }, { idempotencyKey: "key-1", traceparent });
    expect(ack.sequence).toBe(7);
    expect(seen?.path).toBe("/mig/v0.1/publish/a%20topic%2Fwith%20slash");
    expect(seen?.headers).toMatchObject({
      "content-type": "application/json",
      "x-tenant-id": "acme",
      authorization: "Bearer an-opaque-token",
      traceparent,
      "idempotency-key": "key-1",
    });
    await recording.close();
    await stop(server);
  });

  it("Retry-After of an error envelope becomes details.retry_after_ms", async () => {
    const { server, url } = await plainServer((_req, res) => {
      const error = { code: "MIG_RATE_LIMITED", message: "slow down", retryable: true };
      res
        .writeHead(429, { "content-type": "application/json", "retry-after": "3" })
        .end(JSON.stringify({ header: { tenant_id: "acme" }, error }));
    });
    const limited = await connect(url, { tenant: "acme", retry: false });
    const err = await failure(limited.heartbeat());
    expect(err.code).toBe("MIG_RATE_LIMITED");
    expect(err.details?.retry_after_ms).toBe(3000);
    await limited.close();
    await stop(server);
  });

  it("SSE with CRLF lines cut between chunks: the event arrives, then the mig-error ends the subscription", async () => {
    const event = {
      header: { mig_version: "0.1", message_id: crypto.randomUUID(), tenant_id: "acme" },
      topic: "x",
      event_id: "e-1",
      sequence: 1,
      replay: true,
      payload: { n: 1 },
      published_at: new Date().toISOString(),
    };
    const error = { code: "MIG_FORBIDDEN", message: "another connection took the consumer over", retryable: false };
    const text =
      "retry: 1000\r\n: subscribed topic=x subscription_id=sub-1 start_sequence=1 replay_until=1\r\n\r\n" +
      `id: 1\r\nevent: mig-event\r\ndata: ${JSON.stringify(event)}\r\n\r\n: keepalive\r\n\r\n` +
      `event: mig-error\r\ndata: ${JSON.stringify({ header: event.header, error })}\r\n\r\n`;
    const { server, url } = await plainServer(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      // Every piece ends in a CR whose LF starts the next piece.
      for (const piece of text.split(/(?<=\r)/)) {
        res.write(piece);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      res.end();
    });
    const sse = await connect(url, { tenant: "acme" });
    const subscription = sse.subscribe("x", { resumeCursor: 0 });
    const sequences: number[] = [];
    const err = await failure(
      (async () => {
        for await (const e of subscription) sequences.push(e.sequence);
      })(),
    );
    expect(sequences).toEqual([1]);
    expect(err.code).toBe("MIG_FORBIDDEN");
    await sse.close();
    await stop(server);
  });

  it("a server that accepts the WebSocket and closes it mid-stream → the iterator throws MIG_UNAVAILABLE", async () => {
    const { server, url } = await plainServer(() => undefined);
    const wss = new WebSocketServer({ server });
    wss.on("connection", (ws) => {
      ws.on("message", (data) => {
        const request = JSON.parse(data.toString());
        for (let i = 0; i < 3; i++) {
          ws.send(JSON.stringify({ ...request, kind: "response", payload: { i }, end_stream: false }));
        }
        ws.close();
      });
    });
    const closing = await connect(url, { tenant: "acme" });
    const frames: StreamFrame[] = [];
    const err = await failure(
      (async () => {
        for await (const frame of closing.stream("anything.at.all", {})) frames.push(frame);
      })(),
    );
    expect(frames.map((f) => f.payload)).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    expect(err.code).toBe("MIG_UNAVAILABLE");
    expect(err.message).toContain("last frame");
    await closing.close();
    wss.close();
    await stop(server);
  });

  it("the runtime's socket destroyed mid-stream → the iterator throws MIG_UNAVAILABLE", async () => {
    const sockets: Duplex[] = [];
    const record = (_req: unknown, socket: Duplex) => sockets.push(socket);
    t.http.server.on("upgrade", record);
    try {
      const stream = client.stream("test.stream.forever", {});
      let frames = 0;
      const err = await failure(
        (async () => {
          for await (const _ of stream) if (++frames === 50) for (const socket of sockets) socket.destroy();
        })(),
      );
      expect(frames).toBeGreaterThanOrEqual(50);
      expect(err.code).toBe("MIG_UNAVAILABLE");
      await waitFor("the provider's signal", () => aborts.has(stream.messageId));
    } finally {
      t.http.server.off("upgrade", record);
    }
  });

  it("a capability that does not exist → MIG_UNSUPPORTED_CAPABILITY, unary and stream", async () => {
    expect((await failure(client.invoke("test.no.such", {}))).code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    const stream = client.stream("test.no.such", {});
    expect((await failure(collect(stream))).code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    expect((await failure(stream.result)).code).toBe("MIG_UNSUPPORTED_CAPABILITY");
  });

  it("an aborted signal stops the call with a MigError; the provider's signal fires", async () => {
    const controller = new AbortController();
    const messageId = crypto.randomUUID();
    const call = client.invoke("test.slow", {}, { messageId, signal: controller.signal });
    await waitFor("the handler to start", () => started.has(messageId));
    controller.abort();
    expect((await failure(call)).code).toBe("MIG_TIMEOUT");
    // The closed connection cancels the invocation on the server.
    await waitFor("the provider's signal", () => aborts.has(messageId));
    const already = AbortSignal.abort();
    expect((await failure(client.hello({ signal: already }))).code).toBe("MIG_TIMEOUT");
    expect((await failure(client.stream("test.stream.forever", {}, { signal: already }).result)).code).toBe(
      "MIG_TIMEOUT",
    );
  });

  it("a deadline shorter than a slow capability → MIG_TIMEOUT", async () => {
    const err = await failure(client.invoke("test.slow", { ms: 10_000 }, { deadlineMs: 200 }));
    expect(err.code).toBe("MIG_TIMEOUT");
  });
});

describe("jwt mode", () => {
  const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
  let secured: TestRuntime;

  function token(secret = SECRET): Promise<string> {
    return new SignJWT({ sub: "alice", tenant_id: "acme", scope: "capability:infer" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuedAt()
      .setExpirationTime("5 minutes")
      .sign(new TextEncoder().encode(secret));
  }

  beforeAll(async () => {
    secured = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  });
  afterAll(() => secured?.stop());

  it("a refused token → MIG_UNAUTHORIZED, for unary calls and for a stream's upgrade", async () => {
    const refused = await connect(secured.http.url, { token: await token("another-secret-another-secret-another") });
    expect((await failure(refused.invoke("observatory.models.infer", { input: "x" }))).code).toBe("MIG_UNAUTHORIZED");
    const stream = refused.stream("observatory.models.infer", { input: "x" });
    expect((await failure(stream.result)).code).toBe("MIG_UNAUTHORIZED");
    await refused.close();
  });

  it("a token function that first gives a refused token is asked again, and the call succeeds", async () => {
    const given: string[] = [];
    const refreshing = await connect(secured.http.url, {
      token: async () => {
        const next = given.length === 0 ? await token("another-secret-another-secret-another") : await token();
        given.push(next);
        return next;
      },
    });
    const answer = await refreshing.invoke("observatory.models.infer", { input: "x" });
    expect(answer.header.tenant_id).toBe("acme");
    expect(given).toHaveLength(2);
    const frames = await collect(refreshing.stream("observatory.models.infer", { input: "a b" }));
    expect(frames).toHaveLength(2);
    await refreshing.close();
  });
});
