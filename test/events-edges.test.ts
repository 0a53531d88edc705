// Events at the edges: bad input refused with nothing stored, replay quotas, dead letters, the NATS binding (no echo
// loop, credits as backpressure), and acked events surviving a SIGKILL of the embedded nats-server.

import { jetstream } from "@nats-io/jetstream";
import { connect, createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { PUBLISH_ADMISSION_CHUNK } from "../runtime/bus/chunked-admission.ts";
import { REAPER_IN_FLIGHT } from "../runtime/bus/consumer-reaper.ts";
import type { EventSink } from "../runtime/ops/subscribe.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { DEAD_LETTER_STREAM, ORIGIN_HEADER, topicRef } from "../runtime/store/events.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";

let t: TestRuntime;
let client: NatsConnection;
let natsEvents: NatsEventsBinding;
beforeAll(async () => {
  t = await startTestRuntime({ config: { replayMaxEvents: 50 } });
  natsEvents = startNatsEvents(t.runtime, new Authenticator("none"));
  client = await connect({ servers: t.runtime.natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
});
afterAll(async () => {
  await client?.close();
  await natsEvents?.close();
  await t?.stop();
});

const context = { principal: anonymousPrincipal(), tenant: "acme", binding: "http" as const };
const publishBody = { header: { tenant_id: "acme" }, payload: { ok: true } };

async function publishN(topic: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++)
    await t.runtime.publish({ header: { tenant_id: "acme" }, payload: { i } }, context, topic);
}

async function subscribeError(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  try {
    const sub = await SseClient.open(`${t.http.url}${path}`, { "x-tenant-id": "acme", ...headers });
    sub.close();
    throw new Error(`${path} was accepted`);
  } catch (err) {
    if (err instanceof Error) throw err;
    return err as { status: number; body: any };
  }
}

async function consumerCount(topic: string): Promise<number> {
  return (await t.runtime.bus.jsm.consumers.list(topicRef("acme", topic).stream).next()).length;
}

describe("bad input is refused with a clear MIG error and nothing stored", () => {
  const badTopics: [string, string][] = [
    ["nodot", "namespaced"],
    ["orders.*", "wildcard"],
    ["orders.%3E", "wildcard"],
    ["orders..created", "empty"],
    [".orders", "empty"],
    ["orders.", "empty"],
    ["orders%20x.created", "whitespace"],
    [`orders.${"x".repeat(200)}`, "longer than 200"],
  ];

  it.each(badTopics)("PUBLISH to topic %s", async (topic, why) => {
    const res = await t.post(`/mig/v0.1/publish/${topic}`, publishBody, { "x-tenant-id": "acme" });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain(why);
    expect(await t.runtime.events.exists(topicRef("acme", decodeURIComponent(topic)))).toBe(false);
  });

  it.each(badTopics)("SUBSCRIBE to topic %s", async (topic, why) => {
    const res = await subscribeError(`/mig/v0.1/subscribe/${topic}`);
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain(why);
  });

  it("refuses an oversized payload, a missing payload and a payload that is not an object, storing nothing", async () => {
    const big = await t.post("/mig/v0.1/publish/uploads.large", {
      header: { tenant_id: "acme" },
      payload: { blob: "x".repeat(1024 * 1024) },
    });
    expectError(big, 400, "MIG_INVALID_REQUEST");
    expect(big.body.error.details.max_payload_bytes).toBe(1024 * 1024);
    expectError(
      await t.post("/mig/v0.1/publish/uploads.large", { header: { tenant_id: "acme" } }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expectError(
      await t.post("/mig/v0.1/publish/uploads.large", { header: { tenant_id: "acme" }, payload: [1] }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expect(await t.runtime.events.exists(topicRef("acme", "uploads.large"))).toBe(false);
  });

  it("refuses bad cursors, a cursor past the end, bad max_inflight and bad consumer ids, creating no consumer", async () => {
    await publishN("orders.fine", 3);
    const cases: [string, Record<string, string>, string][] = [
      ["resume_cursor=-1", {}, "resume_cursor"],
      ["resume_cursor=abc", {}, "resume_cursor"],
      ["resume_cursor=1.5", {}, "resume_cursor"],
      ["resume_cursor=99999999999999999999", {}, "resume_cursor"],
      ["", { "last-event-id": "nope" }, "resume_cursor"],
      ["resume_cursor=4", {}, "past the end"],
      ["max_inflight=0", {}, "max_inflight"],
      ["max_inflight=abc", {}, "max_inflight"],
      ["max_inflight=-5", {}, "max_inflight"],
      ["max_inflight=10000001", {}, "max_inflight"],
      ["consumer_id=has.dot", {}, "consumer_id"],
      [`consumer_id=${"c".repeat(65)}`, {}, "consumer_id"],
    ];
    for (const [query, headers, mention] of cases) {
      const res = await subscribeError(`/mig/v0.1/subscribe/orders.fine?${query}`, headers);
      expectError(res, 400, "MIG_INVALID_REQUEST");
      expect(res.body.error.message, query).toContain(mention);
    }
    const past = await subscribeError("/mig/v0.1/subscribe/orders.fine?resume_cursor=4");
    expect(past.body.error.details.last_sequence).toBe(3);
    expect(await consumerCount("orders.fine")).toBe(0);
    expect(t.runtime.subscriptions.size).toBe(0);
  });
});

describe("replay quota", () => {
  it("refuses a replay further back than the cap with MIG_RATE_LIMITED, and serves one from the oldest allowed cursor", async () => {
    await publishN("history.long", 60);
    const refused = await subscribeError("/mig/v0.1/subscribe/history.long?resume_cursor=0");
    expectError(refused, 429, "MIG_RATE_LIMITED");
    expect(refused.body.error.retryable).toBe(false);
    expect(refused.body.error.details).toMatchObject({
      replay_max_events: 50,
      oldest_allowed_cursor: 10,
      last_sequence: 60,
    });
    expect(await consumerCount("history.long")).toBe(0);

    const sub = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/history.long?resume_cursor=10`, {
      "x-tenant-id": "acme",
    });
    const events = await sub.waitForEvents(50);
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: 50 }, (_, i) => 11 + i));
    sub.close();
  });
});

describe("dead letters", () => {
  it("moves a stored message that is not a MIG event to the dead-letter subject and delivers the rest", async () => {
    await publishN("ledger.entries", 1);
    const ref = topicRef("acme", "ledger.entries");
    await jetstream(client).publish(ref.subject, "not json at all");
    await publishN("ledger.entries", 1);

    const sub = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/ledger.entries?resume_cursor=0`, {
      "x-tenant-id": "acme",
    });
    await sub.waitForComment("live");
    expect(sub.events.map((e) => e.sequence)).toEqual([1, 3]);
    expect(sub.comments.some((c) => c.startsWith("dead_lettered sequence=2"))).toBe(true);
    sub.close();

    const dead = await t.runtime.bus.jsm.streams.getMessage(DEAD_LETTER_STREAM, {
      last_by_subj: ref.deadLetterSubject,
    });
    expect(dead!.string()).toBe("not json at all");
    expect(dead!.header.get("Mig-Sequence")).toBe("2");
    const metrics = (await t.get("/metrics")).text;
    expect(metrics).toContain('mig_events_dead_lettered_total{tenant="acme",topic="ledger.entries"} 1');
  });

  it("dead-letters an event the subscriber's transport keeps refusing, after the configured attempts, and keeps order", async () => {
    const topic = "ledger.refused";
    await t.runtime.publish({ header: { tenant_id: "acme" }, payload: { n: 1 } }, context, topic);
    await t.runtime.publish({ header: { tenant_id: "acme" }, payload: { n: 2, poison: true } }, context, topic);
    await t.runtime.publish({ header: { tenant_id: "acme" }, payload: { n: 3 } }, context, topic);
    const delivered: number[] = [];
    const notices: string[] = [];
    let attempts = 0;
    const sink: EventSink = {
      open: () => undefined,
      event: (sequence, json) => {
        if (JSON.parse(json).payload.poison) {
          attempts++;
          throw new Error("the transport refused this event");
        }
        delivered.push(sequence);
        return true;
      },
      notice: (kind, detail) => void notices.push(`${kind} ${JSON.stringify(detail)}`),
      drained: () => Promise.resolve(),
      close: () => undefined,
      bufferedBytes: 0,
    };
    const subscription = await t.runtime.subscribe(
      { header: { tenant_id: "acme" }, resume_cursor: 0 },
      context,
      topic,
      sink,
    );
    await waitFor("the live seam", () => notices.some((n) => n.startsWith("live")));
    expect(delivered).toEqual([1, 3]);
    expect(attempts).toBe(5);
    expect(notices).toContain('dead_lettered {"sequence":2}');
    const dead = await t.runtime.bus.jsm.streams.getMessage(DEAD_LETTER_STREAM, {
      last_by_subj: topicRef("acme", topic).deadLetterSubject,
    });
    expect(JSON.parse(dead!.string()).payload).toEqual({ n: 2, poison: true });
    expect(dead!.header.get("Mig-Dead-Letter-Reason")).toContain("refused it 5 times");
    subscription.close();
    await subscription.closed;
  });
});

describe("durable takeover", () => {
  it("closes the older connection of a consumer_id with a mig-error frame when a newer one subscribes", async () => {
    const topic = "sessions.events";
    const older = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/${topic}?consumer_id=desk`, {
      "x-tenant-id": "acme",
    });
    await older.waitForComment("live");
    const newer = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/${topic}?consumer_id=desk`, {
      "x-tenant-id": "acme",
    });
    await newer.waitForComment("live");
    await waitFor("the older stream to end", () => older.ended);
    expect((older.errors[0] as any).error.code).toBe("MIG_UNAVAILABLE");
    await publishN(topic, 2);
    expect((await newer.waitForEvents(2)).map((e) => e.sequence)).toEqual([1, 2]);
    expect(older.events).toEqual([]);
    newer.close();
  });
});

describe("many subscribers leaving at once", () => {
  it("removes every ephemeral consumer, a few deletions at a time", async () => {
    const topic = "crowd.leaving";
    const subs = await Promise.all(
      Array.from({ length: 40 }, () =>
        SseClient.open(`${t.http.url}/mig/v0.1/subscribe/${topic}`, { "x-tenant-id": "acme" }),
      ),
    );
    expect(await consumerCount(topic)).toBe(40);
    for (const sub of subs) sub.close();
    await waitFor(
      "the consumers of the closed subscriptions to be deleted",
      async () => (await consumerCount(topic)) === 0,
    );
    const reaper = t.runtime.subscriptions.reaper(t.runtime.bus);
    await reaper.idle();
    expect(reaper.peak).toBeGreaterThan(0);
    expect(reaper.peak).toBeLessThanOrEqual(REAPER_IN_FLIGHT);
  });
});

describe("NATS binding", () => {
  it("acknowledges PUBLISH requests, fans EventMessages out to plain subscribers, and never takes them for a PUBLISH", async () => {
    const subject = "mig.v0_1.acme.events.chat.messages";
    const seen: Msg[] = [];
    const plain = client.subscribe(subject, { callback: (_err, msg) => void seen.push(msg) });
    await client.flush();

    for (let i = 1; i <= 5; i++) {
      const reply = await client.request(subject, JSON.stringify({ header: { tenant_id: "acme" }, payload: { i } }), {
        timeout: 5_000,
      });
      const ack = reply.json<any>();
      expectEnvelope("PublishAck", ack);
      expect(ack.sequence).toBe(i);
    }
    // Had the runtime taken its own EventMessages for PUBLISH requests, they would have been stored before this one.
    const sixth = await client.request(subject, JSON.stringify({ header: { tenant_id: "acme" }, payload: { i: 6 } }), {
      timeout: 5_000,
    });
    expect(sixth.json<any>().sequence).toBe(6);

    const events = await waitFor("six EventMessages", () => {
      const marked = seen.filter((m) => m.headers?.get(ORIGIN_HEADER) === "runtime");
      return marked.length >= 6 ? marked : undefined;
    });
    const bodies = events.map((m) => m.json<any>());
    for (const body of bodies) expectEnvelope("EventMessage", body);
    expect(bodies.map((b) => b.sequence).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(bodies.every((b) => b.replay === false)).toBe(true);
    plain.unsubscribe();

    // A PUBLISH without a reply subject is stored too (fire and forget).
    client.publish(subject, JSON.stringify({ header: { tenant_id: "acme" }, payload: { i: 7 } }));
    await waitFor(
      "the fire-and-forget event",
      async () => (await t.runtime.events.state(topicRef("acme", "chat.messages"))).last === 7,
    );

    const bad = await client.request("mig.v0_1.acme.events.nodot", JSON.stringify({ payload: {} }), { timeout: 5_000 });
    expect(bad.json<any>().error.code).toBe("MIG_INVALID_REQUEST");
  });

  it("stores a burst of PUBLISH requests from one connection in the order sent, started a chunk per turn", async () => {
    const subject = "mig.v0_1.acme.events.chat.burst";
    const live: number[] = [];
    const plain = client.subscribe(subject, {
      callback: (_err, msg) => {
        if (msg.headers?.get(ORIGIN_HEADER) === "runtime") live.push(msg.json<any>().payload.n);
      },
    });
    await client.flush();
    // Sent in one turn, so one write: the binding reads them together and starts them PUBLISH_ADMISSION_CHUNK at a time.
    const count = 10 * PUBLISH_ADMISSION_CHUNK + 3;
    const replies = await Promise.all(
      Array.from({ length: count }, (_, n) =>
        client.request(subject, JSON.stringify({ header: { tenant_id: "acme" }, payload: { n } }), { timeout: 10_000 }),
      ),
    );
    const acks = replies.map((reply) => reply.json<any>());
    for (const ack of acks) expectEnvelope("PublishAck", ack);
    expect(acks.map((ack) => ack.sequence)).toEqual(Array.from({ length: count }, (_, n) => n + 1));
    // The live copies follow the stored order too.
    await waitFor("every live copy", () => live.length >= count);
    expect(live).toEqual(Array.from({ length: count }, (_, n) => n));
    plain.unsubscribe();
  });

  it("does not hand the runtime its own live EventMessages (the events connection has no echo)", async () => {
    const subject = "mig.v0_1.acme.events.chat.echo";
    const seen: Msg[] = [];
    const plain = client.subscribe(subject, { callback: (_err, msg) => void seen.push(msg) });
    await client.flush();
    const before = t.runtime.bus.events.stats().inMsgs;
    await publishN("chat.echo", 3);
    await waitFor("three EventMessages", () => seen.length >= 3);
    // The server queues anything it delivers to a connection before its answer to that connection's next PING.
    await t.runtime.bus.events.flush();
    // What arrives is JetStream's ack of each stored event (they share the connection), never the live copies.
    expect(t.runtime.bus.events.stats().inMsgs).toBe(before + 3);
    plain.unsubscribe();
  });

  it("subscribes with replay over NATS, with the subscriber's acks as the credits of max_inflight", async () => {
    const topic = "chat.rooms";
    await publishN(topic, 6);
    const inbox = createInbox();
    const received: Msg[] = [];
    const deliveries = client.subscribe(inbox, { callback: (_err, msg) => void received.push(msg) });
    const reply = await client.request(
      `mig.v0_1.acme.subscribe.${topic}`,
      JSON.stringify({ header: { tenant_id: "acme" }, resume_cursor: "2", max_inflight: 2, deliver_subject: inbox }),
      { timeout: 5_000 },
    );
    const opened = reply.json<any>();
    expect(opened).toMatchObject({ topic, start_sequence: 3, replay_until: 6, max_inflight: 2 });

    // Without acks the runtime stops at max_inflight events and pauses.
    await waitFor("two events", () => received.length >= 2);
    const subscription = t.runtime.subscriptions.list().find((s) => s.info.topic === topic);
    await waitFor("the subscription to pause", () => subscription!.stats().state === "paused");
    expect(received.length).toBe(2);

    // Each ack is a credit: acking as events arrive drains the replay, then live events follow.
    const acked = new Set<Msg>();
    const ackAll = () => {
      for (const m of received) if (!acked.has(m)) acked.add(m), m.respond();
    };
    ackAll();
    await waitFor("the replayed events", () => (ackAll(), received.length >= 4));
    await t.runtime.publish({ header: { tenant_id: "acme" }, payload: { live: true } }, context, topic);
    await waitFor("the live event", () => (ackAll(), received.length >= 5));
    const bodies = received.map((m) => m.json<any>());
    expect(bodies.map((b) => b.sequence)).toEqual([3, 4, 5, 6, 7]);
    expect(bodies.map((b) => b.replay)).toEqual([true, true, true, true, false]);

    const closed = await client.request(`mig.v0_1.acme.subscription.${opened.subscription_id}.close`, "", {
      timeout: 5_000,
    });
    expect(closed.json<any>().closed).toBe(true);
    await waitFor(
      "the subscription to close",
      () => !t.runtime.subscriptions.list().some((s) => s.info.topic === topic),
    );
    deliveries.unsubscribe();
  });
});

describe("durability", () => {
  it("recreates a subscription's consumer that disappeared, right after the last event delivered", async () => {
    const topic = "cart.updates";
    const sub = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/${topic}`, { "x-tenant-id": "acme" });
    await sub.waitForComment("live");
    await publishN(topic, 3);
    await sub.waitForEvents(3);
    const stream = topicRef("acme", topic).stream;
    const [consumer] = await t.runtime.bus.jsm.consumers.list(stream).next();
    await t.runtime.bus.jsm.consumers.delete(stream, consumer!.name);
    await publishN(topic, 2);
    const all = await sub.waitForEvents(5, 20_000);
    expect(all.map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5]);
    expect(all.every((e) => e.replay === false)).toBe(true);
    sub.close();
  });

  it("keeps every acknowledged event across a SIGKILL of the embedded nats-server", async () => {
    const acks = [];
    for (let i = 0; i < 40; i++) {
      const res = await t.post("/mig/v0.1/publish/audit.trail", { header: { tenant_id: "acme" }, payload: { i } });
      expect(res.status).toBe(200);
      acks.push(res.body);
    }
    const liveEphemeral = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/audit.trail`, {
      "x-tenant-id": "acme",
    });
    const liveDurable = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/audit.trail?consumer_id=auditor`, {
      "x-tenant-id": "acme",
    });
    await liveEphemeral.waitForComment("live");
    await liveDurable.waitForComment("live");
    const launcher = t.runtime.launcher!;
    const firstPid = launcher.pid!;
    process.kill(firstPid, "SIGKILL");
    await waitFor(
      "nats-server to come back with a new pid",
      () => launcher.pid !== undefined && launcher.pid !== firstPid,
      15_000,
    );
    const after = await waitFor(
      "a publish to succeed after the restart",
      async () => {
        const res = await t.post("/mig/v0.1/publish/audit.trail", {
          header: { tenant_id: "acme" },
          payload: { i: "after" },
        });
        return res.status === 200 ? res.body : undefined;
      },
      20_000,
    );
    expect(after.sequence).toBe(41);

    const sub = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/audit.trail?resume_cursor=0`, {
      "x-tenant-id": "acme",
    });
    const events = await sub.waitForEvents(41);
    expect(events.map((e) => e.event_id)).toEqual([...acks.map((a) => a.event_id), after.event_id]);
    expect(events.slice(0, 40).map((e) => e.payload)).toEqual(acks.map((_, i) => ({ i })));
    sub.close();

    // Subscriptions open across the crash carry on with the events published after it.
    expect((await liveEphemeral.waitForEvents(1, 30_000)).map((e) => e.sequence)).toEqual([41]);
    expect((await liveDurable.waitForEvents(1, 30_000)).map((e) => e.sequence)).toEqual([41]);
    liveEphemeral.close();
    liveDurable.close();
  }, 90_000);
});
