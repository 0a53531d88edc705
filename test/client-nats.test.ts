// The client over NATS: every operation on the binding's subjects, streams paced by the reader, subscriptions that
// outlive their gateway, and the failures a caller can meet (nobody listening, nobody answering, bad input).
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { connect, type MigClient, MigError } from "../client/index.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import type { StreamSession } from "../runtime/flow/stream-session.ts";
import { defineCapability, defineStreamingCapability } from "../runtime/provider/provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { freePort } from "./helpers/cluster.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { type MigProcess, startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const WINDOW = 16;
const started = new Set<string>();
const aborted = new Map<string, unknown>();

/** Runs until its deadline, a CANCEL or the caller's going away; says when it started and why it stopped. */
const slow = defineCapability(
  anyDescriptor("test.client.slow", ["unary"]),
  (_payload, { signal, header }) => {
    started.add(header.message_id);
    return new Promise((_resolve, reject) => {
      signal.addEventListener(
        "abort",
        () => {
          aborted.set(header.message_id, signal.reason);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  },
  anySchemas,
);
const echo = defineCapability(
  anyDescriptor("test.client.echo", ["unary"]),
  (payload) => ({ echo: payload }),
  anySchemas,
);
const count = defineStreamingCapability(
  anyDescriptor("test.client.count", ["server_stream"]),
  async (payload, { emit }) => {
    for (let i = 0; i < Number(payload.count); i++) await emit({ i });
    return { frames: Number(payload.count) };
  },
  anySchemas,
);
const forever = defineStreamingCapability(
  anyDescriptor("test.client.forever", ["server_stream"]),
  async (_payload, { emit, signal, header }) => {
    signal.addEventListener("abort", () => aborted.set(header.message_id, signal.reason), { once: true });
    for (let i = 0; ; i++) await emit({ i });
  },
  anySchemas,
);
const chat = defineStreamingCapability(
  anyDescriptor("test.client.chat", ["bidi_stream"]),
  async (_payload, { emit, inbound }) => {
    let n = 0;
    for await (const message of inbound) await emit({ n: n++, echo: message });
    return { received: n };
  },
  anySchemas,
);

let t: TestRuntime;
let binding: NatsBinding;
let events: NatsEventsBinding;
let client: MigClient;
beforeAll(async () => {
  t = await startTestRuntime({ capabilities: [slow, echo, count, forever, chat], config: { streamWindow: WINDOW } });
  binding = await startNatsBinding(t.runtime, t.runtime.authenticator);
  events = startNatsEvents(t.runtime, t.runtime.authenticator);
  client = await connect(t.runtime.natsUrl, { tenant: "acme" });
});
afterAll(async () => {
  await client?.close();
  await events?.close();
  await binding?.close();
  await t?.stop();
});

const streamsPaused = async () => (await t.runtime.metrics.streamsPaused.get()).values[0]?.value ?? 0;

describe("the client over NATS", () => {
  it("says hello on the nats binding, discovers, invokes, publishes and beats", async () => {
    expect(client.transport.kind).toBe("nats");
    const hello = await client.hello();
    expect(hello).toMatchObject({ selected_binding: "nats", selected_version: "0.1" });

    const discovered = await client.discover();
    expect(discovered.capabilities.map((c) => c.id)).toEqual(
      expect.arrayContaining(["test.client.echo", "test.client.count", "test.client.chat"]),
    );

    const messageId = randomUUID();
    const invoked = await client.invoke("test.client.echo", { word: "hi" }, { messageId });
    expect(invoked).toMatchObject({
      header: { message_id: messageId, tenant_id: "acme" },
      payload: { echo: { word: "hi" } },
    });

    const published = await client.publish("client.ops", { n: 1 }, { key: "k-1" });
    expect(published).toMatchObject({ topic: "client.ops", sequence: 1, accepted: true });

    const beat = await client.heartbeat({ intervalMs: 5_000 });
    expect(typeof beat.suggested_interval_ms).toBe("number");
  });

  it("cancels a running invocation: the provider's signal fires and the invoke ends with the cancel", async () => {
    const messageId = randomUUID();
    const running = client.invoke("test.client.slow", {}, { messageId, retry: false });
    running.catch(() => undefined);
    await waitFor("the capability to start", () => started.has(messageId));

    const ack = await client.cancel(messageId, { reason: "changed my mind" });
    expect(ack).toMatchObject({ target_message_id: messageId, accepted: true, status: "cancelled" });
    const failure = await running.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(MigError);
    expect(aborted.has(messageId)).toBe(true);
  });

  it("streams a server stream's frames in order, then its result", async () => {
    const stream = client.stream("test.client.count", { count: 600 });
    const seen: number[] = [];
    for await (const frame of stream) seen.push(frame.payload!.i as number);
    expect(seen).toEqual(Array.from({ length: 600 }, (_, i) => i));
    expect(await stream.result).toEqual({ frames: 600 });
  });

  it("carries a bidi stream both ways: each message sent is echoed, end() ends the caller's half", async () => {
    const stream = client.stream("test.client.chat", {}, { mode: "bidi_stream" });
    const echoes: unknown[] = [];
    stream.send({ word: "one" });
    for await (const frame of stream) {
      echoes.push(frame.payload);
      if (echoes.length === 1) stream.send({ word: "two" });
      if (echoes.length === 2) stream.end();
    }
    expect(echoes).toEqual([
      { n: 0, echo: { word: "one" } },
      { n: 1, echo: { word: "two" } },
    ]);
    expect(await stream.result).toEqual({ received: 2 });
  });

  it("subscribes from the first event: the stored ones replayed, then live ones, each once and in order", async () => {
    const topic = "client.orders";
    for (let n = 1; n <= 3; n++) await client.publish(topic, { n });
    const subscription = client.subscribe(topic, { resumeCursor: 0 });
    const seen: { sequence: number; replay: boolean; n: unknown }[] = [];
    for await (const event of subscription) {
      seen.push({ sequence: event.sequence, replay: event.replay, n: event.payload.n });
      if (seen.length === 3) for (let n = 4; n <= 5; n++) await client.publish(topic, { n });
      if (seen.length === 5) break;
    }
    expect(seen).toEqual([
      { sequence: 1, replay: true, n: 1 },
      { sequence: 2, replay: true, n: 2 },
      { sequence: 3, replay: true, n: 3 },
      { sequence: 4, replay: false, n: 4 },
      { sequence: 5, replay: false, n: 5 },
    ]);
    expect(subscription.reconnects).toBe(0);
  });

  it("a subscription the server ends for good (its consumer_id taken over) ends the loop with the server's error", async () => {
    const topic = "client.takeover";
    await client.publish(topic, { n: 1 });
    const first = client.subscribe(topic, { consumerId: "client-takeover", resumeCursor: 0 });
    const reading = (async () => {
      for await (const _event of first) {
        // Reads until the subscription ends.
      }
    })();
    // It ends while the second subscription opens, before anything awaits it.
    reading.catch(() => undefined);
    await first.ready();
    const second = client.subscribe(topic, { consumerId: "client-takeover" });
    await second.ready();
    await expect(reading).rejects.toMatchObject({ code: "MIG_UNAVAILABLE", message: /took over/ });
    await second.close();
  });

  it("a slow reader of a 100,000-frame stream holds its provider back: the runtime keeps at most window + 1 frames", async () => {
    const stream = client.stream("test.client.count", { count: 100_000 }, { deadlineMs: 120_000 });
    let session: StreamSession | undefined;
    let next = 0;
    let outOfOrder = 0;
    let pauses = 0;
    for await (const frame of stream) {
      if (frame.payload!.i !== next) outOfOrder++;
      next++;
      if (next === 1)
        session = [...t.runtime.work.streams.values()].find(
          (s) => (s as StreamSession).messageId === stream.messageId,
        ) as StreamSession;
      // Every 10,000 frames the reader stops until the runtime has paused the provider for want of credit.
      if (next % 10_000 === 0 && next < 100_000) {
        await waitFor("the provider to pause", async () => (await streamsPaused()) === 1 || undefined);
        pauses++;
      }
    }
    expect(await stream.result).toEqual({ frames: 100_000 });
    expect(next).toBe(100_000);
    expect(outOfOrder).toBe(0);
    expect(pauses).toBe(9);
    expect(session).toBeDefined();
    expect(session!.highWater).toBeLessThanOrEqual(WINDOW + 1);
  }, 60_000);

  it("breaking out of a stream's loop cancels it: the provider's signal fires", async () => {
    const stream = client.stream("test.client.forever", {});
    let frames = 0;
    for await (const _frame of stream) if (++frames === 3) break;
    expect(frames).toBe(3);
    await waitFor("the provider's signal", () => aborted.get(stream.messageId));
    await waitFor("the stream to end in the runtime", async () => (await streamsPaused()) === 0 || undefined);
  });
});

describe("bad input and failures over NATS", () => {
  it("a nats:// URL nobody listens on: connect rejects with MIG_UNAVAILABLE naming the URL", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const failure = await connect(url, { tenant: "acme", nats: { connectTimeoutMs: 1_000 } }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(MigError);
    expect(failure).toMatchObject({ code: "MIG_UNAVAILABLE", retryable: true });
    expect((failure as MigError).message).toContain(url);
  });

  it("a capability nobody serves is MIG_UNSUPPORTED_CAPABILITY, unary and streamed", async () => {
    await expect(client.invoke("test.client.nothing", {})).rejects.toMatchObject({
      code: "MIG_UNSUPPORTED_CAPABILITY",
    });
    const stream = client.stream("test.client.nothing", {});
    const reading = (async () => {
      for await (const _frame of stream) {
        // No frame comes.
      }
    })();
    await expect(reading).rejects.toMatchObject({ code: "MIG_UNSUPPORTED_CAPABILITY" });
    await expect(stream.result).rejects.toMatchObject({ code: "MIG_UNSUPPORTED_CAPABILITY" });
  });

  it("a signal already aborted rejects with a MigError; one aborted mid-call also cancels the invocation", async () => {
    await expect(client.invoke("test.client.echo", {}, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(
      MigError,
    );

    const controller = new AbortController();
    const messageId = randomUUID();
    const running = client.invoke("test.client.slow", {}, { messageId, signal: controller.signal });
    running.catch(() => undefined);
    await waitFor("the capability to start", () => started.has(messageId));
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(MigError);
    // The runtime learns it only from the CANCEL the transport sends after the abort.
    await waitFor("the provider's signal", () => aborted.has(messageId));
  });

  it("a deadline shorter than the capability: MIG_TIMEOUT", async () => {
    await expect(client.invoke("test.client.slow", {}, { deadlineMs: 300, retry: false })).rejects.toMatchObject({
      code: "MIG_TIMEOUT",
    });
  });

  it("a topic or tenant no subject can carry is refused before it is sent", async () => {
    await expect(client.publish("orders.*", {})).rejects.toMatchObject({ code: "MIG_INVALID_REQUEST" });
    const elsewhere = await connect(t.runtime.natsUrl, { tenant: "acme.other" });
    try {
      await expect(elsewhere.hello()).rejects.toMatchObject({ code: "MIG_INVALID_REQUEST", message: /tenant/ });
    } finally {
      await elsewhere.close();
    }
  });
});

/**
 * A bus with no NATS binding on it (its own runtime serves only HTTP), and gateways that serve the NATS events
 * binding on it: the first a `mig start` process that is killed, the second started in this process after it.
 */
describe("a subscription over NATS outlives its gateway", () => {
  let hub: TestRuntime;
  let hubStopped = false;
  let hubClient: MigClient;
  let first: MigProcess | undefined;
  let second: MigRuntime | undefined;
  let secondEvents: NatsEventsBinding | undefined;
  const secondDir = mkdtempSync(join(tmpdir(), "mig-client-nats-"));

  beforeAll(async () => {
    hub = await startTestRuntime();
    hubClient = await connect(hub.runtime.natsUrl, { tenant: "acme" });
  });
  afterAll(async () => {
    await hubClient?.close();
    await first?.stop("SIGKILL");
    await secondEvents?.close();
    await second?.stop();
    if (!hubStopped) await hub?.stop();
    rmSync(secondDir, { recursive: true, force: true });
  });

  it("a bus where no runtime answers: MIG_UNAVAILABLE (no responders) at once, not at the deadline", async () => {
    const failure = await hubClient.hello({ deadlineMs: 20_000, retry: false }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toMatchObject({ code: "MIG_UNAVAILABLE", retryable: true });
    expect((failure as MigError).message).toMatch(/no MIG runtime answers on mig\.v0_1\.acme\.hello/);
  });

  it("its gateway is killed while events are published: the loop gets every sequence once, in order", async () => {
    const topic = "client.survivor";
    const total = 60;
    first = startMig(["start"], { MIG_NATS_URL: hub.runtime.natsUrl, MIG_LOG_LEVEL: "info" });
    // The subscribe subject is the events binding's, which starts after the NATS binding.
    await first.waitForLog("NATS events binding listening", 30_000);

    const publish = async (n: number) => {
      const answer = await hub.post(`/mig/v0.1/publish/${topic}`, { header: { tenant_id: "acme" }, payload: { n } });
      expect(answer.status).toBe(200);
    };
    const subscription = hubClient.subscribe(topic, { resumeCursor: 0, retry: { maxDelayMs: 500 } });
    await subscription.ready();
    const publishing = (async () => {
      for (let n = 1; n <= total; n++) {
        await publish(n);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();

    const sequences: number[] = [];
    for await (const event of subscription) {
      sequences.push(event.sequence);
      if (sequences.length === 10) {
        // The gateway vanishes without a word: only its missing heartbeats tell.
        await first.stop("SIGKILL");
        const config = loadConfig({ natsUrl: hub.runtime.natsUrl, dataDir: secondDir, logLevel: "silent" }, {});
        second = await MigRuntime.start(config, { logger: createLogger("silent") });
        secondEvents = startNatsEvents(second, second.authenticator);
      }
      if (sequences.length === total) break;
    }
    await publishing;
    expect(sequences).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(subscription.reconnects).toBeGreaterThanOrEqual(1);
  }, 40_000);

  it("a runtime that stops under its callers: MIG_UNAVAILABLE, not a wait for the deadline", async () => {
    await secondEvents?.close();
    await second?.stop();
    second = undefined;
    secondEvents = undefined;
    await hub.stop();
    hubStopped = true;
    const failure = await hubClient.hello({ deadlineMs: 20_000, retry: false }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toMatchObject({ code: "MIG_UNAVAILABLE", retryable: true });
  });
});
