// Events over a real runtime and nats-server: PUBLISH over HTTP into JetStream, SUBSCRIBE over SSE with replay from a
// cursor, the seam between replay and live, idempotent publish, durable consumers, Last-Event-ID and backpressure.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PublishAck } from "../runtime/ops/publish.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { topicRef } from "../runtime/store/events.ts";
import { validateEnvelope } from "../schemas/envelopes.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { type EventMessageLike, SseClient } from "./helpers/sse.ts";

let t: TestRuntime;
beforeAll(async () => {
  // Tens of thousands of events per topic, as fast as the bus takes them: above the default quotas (test/quotas.test.ts).
  t = await startTestRuntime({
    config: { tenantPublishRateLimit: { rate: 1e9, burst: 1e9 }, topicMaxBytes: 64 * 1024 * 1024 },
  });
});
afterAll(() => t?.stop());

const TENANT = { "x-tenant-id": "acme" };
const context = { principal: anonymousPrincipal(), tenant: "acme", binding: "http" as const };

/** Publishes `count` events through the runtime's PUBLISH operation, `concurrency` at a time (payload `{n}`, plus `text` if given); acks by sequence. */
async function publishMany(
  topic: string,
  count: number,
  concurrency = 200,
  from = 0,
  text?: string,
): Promise<Map<number, PublishAck>> {
  const acks = new Map<number, PublishAck>();
  let next = from;
  const end = from + count;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < end) {
        const n = next++;
        const ack = await t.runtime.publish(
          { header: { tenant_id: "acme" }, payload: text === undefined ? { n } : { n, text } },
          context,
          topic,
        );
        acks.set(ack.sequence, ack);
      }
    }),
  );
  return acks;
}

function subscribe(topic: string, query = "", headers: Record<string, string> = {}): Promise<SseClient> {
  return SseClient.open(`${t.http.url}/mig/v0.1/subscribe/${topic}${query ? `?${query}` : ""}`, {
    ...TENANT,
    ...headers,
  });
}

function sequences(events: EventMessageLike[]): number[] {
  return events.map((e) => e.sequence);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

async function storedCount(tenant: string, topic: string): Promise<number> {
  const info = await t.runtime.bus.jsm.streams.info(topicRef(tenant, topic).stream);
  return info.state.messages;
}

describe("PUBLISH over HTTP", () => {
  it("persists the event and acknowledges it with an event_id and a sequence that grows per topic", async () => {
    const first = await t.post("/mig/v0.1/publish/orders.created", {
      header: { tenant_id: "acme" },
      key: "order-1",
      payload: { id: 1 },
    });
    expect(first.status).toBe(200);
    expectEnvelope("PublishAck", first.body);
    expect(first.body).toMatchObject({ topic: "orders.created", sequence: 1, accepted: true });
    const second = await t.post("/mig/v0.1/publish/orders.created", {
      header: { tenant_id: "acme" },
      payload: { id: 2 },
    });
    expect(second.body.sequence).toBe(2);
    expect(second.body.event_id).not.toBe(first.body.event_id);
    // Another topic, and the same topic of another tenant, count on their own.
    const other = await t.post("/mig/v0.1/publish/orders.shipped", { header: { tenant_id: "acme" }, payload: {} });
    expect(other.body.sequence).toBe(1);
    const otherTenant = await t.post("/mig/v0.1/publish/orders.created", {
      header: { tenant_id: "globex" },
      payload: {},
    });
    expect(otherTenant.body.sequence).toBe(1);
    expect(await storedCount("acme", "orders.created")).toBe(2);
  });

  it("stores one event for five publishes with the same idempotency key, and answers each with the first ack", async () => {
    const acks = [];
    for (let i = 0; i < 5; i++) {
      const res = await t.post("/mig/v0.1/publish/payments.captured", {
        header: { tenant_id: "acme", idempotency_key: "pay-42" },
        payload: { attempt: i },
      });
      expect(res.status).toBe(200);
      acks.push(res.body);
    }
    expect(new Set(acks.map((a) => a.event_id)).size).toBe(1);
    expect(new Set(acks.map((a) => a.sequence))).toEqual(new Set([1]));
    expect(await storedCount("acme", "payments.captured")).toBe(1);

    const sub = await subscribe("payments.captured", "resume_cursor=0");
    const [event] = await sub.waitForEvents(1);
    expect(event!.payload).toEqual({ attempt: 0 });
    sub.close();
    await waitFor("the subscription to close", () => t.runtime.subscriptions.size === 0);
    const metrics = (await t.get("/metrics")).text;
    expect(metrics).toContain('mig_events_deduplicated_total{tenant="acme",topic="payments.captured"} 4');
    expect(metrics).toContain('mig_events_published_total{tenant="acme",topic="payments.captured"} 1');
  });

  it("dedups by an explicit event_id too, and carries the ordering key to subscribers", async () => {
    const event_id = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    const first = await t.post("/mig/v0.1/publish/returns.requested", {
      header: { tenant_id: "acme" },
      event_id,
      key: "customer-7",
      payload: { n: 1 },
    });
    const again = await t.post("/mig/v0.1/publish/returns.requested", {
      header: { tenant_id: "acme" },
      event_id,
      key: "customer-7",
      payload: { n: 1 },
    });
    expect(first.body).toMatchObject({ event_id, sequence: 1 });
    expect(again.body).toMatchObject({ event_id, sequence: 1 });
    expect(await storedCount("acme", "returns.requested")).toBe(1);
    expectError(
      await t.post("/mig/v0.1/publish/returns.requested", {
        header: { tenant_id: "acme" },
        event_id: "not-a-uuid",
        payload: {},
      }),
      400,
      "MIG_INVALID_REQUEST",
    );

    const sub = await subscribe("returns.requested", "resume_cursor=0");
    const [event] = await sub.waitForEvents(1);
    expect(event).toMatchObject({ event_id, key: "customer-7", replay: true, sequence: 1 });
    expect((await t.get("/metrics")).text).toContain('mig_subscriptions_active{binding="http"} 1');
    sub.close();
    await waitFor("the subscription to close", () => t.runtime.subscriptions.size === 0);
  });
});

describe("SUBSCRIBE over SSE", () => {
  it("replays exactly the events after cursor 5000 of 10000 in order, then goes live with no gap or duplicate", async () => {
    const acks = await publishMany("telemetry.readings", 10_000);
    expect([...acks.keys()].sort((a, b) => a - b)).toEqual(range(1, 10_000));

    const sub = await subscribe("telemetry.readings", "resume_cursor=5000");
    const replayed = await sub.waitForEvents(5_000);
    expect(sequences(replayed)).toEqual(range(5_001, 10_000));
    expect(replayed.every((e) => e.replay === true)).toBe(true);
    expect(replayed.map((e) => e.event_id)).toEqual(range(5_001, 10_000).map((s) => acks.get(s)!.event_id));
    expect(validateEnvelope("EventMessage", replayed[0])).toEqual({ ok: true });
    await sub.waitForComment("live after_sequence=10000");

    // Live events, published one after another so that their order is known.
    const live: PublishAck[] = [];
    for (let i = 0; i < 100; i++)
      live.push(
        await t.runtime.publish({ header: { tenant_id: "acme" }, payload: { live: i } }, context, "telemetry.readings"),
      );
    const all = await sub.waitForEvents(5_100);
    expect(sequences(all)).toEqual(range(5_001, 10_100));
    expect(all.slice(5_000).every((e) => e.replay === false)).toBe(true);
    expect(all.slice(5_000).map((e) => e.payload)).toEqual(range(0, 99).map((i) => ({ live: i })));
    expect(sub.frames.slice(0, 3).map((f) => f.id)).toEqual(["5001", "5002", "5003"]);
    expectEnvelope("EventMessage", all[5_050]);

    expect(t.runtime.subscriptions.list().map((s) => s.stats().state)).toEqual(["live"]);
    const actors = t.runtime.supervisor.list().filter((a) => a.kind === "subscription");
    expect(actors.map((a) => a.state)).toEqual(["live"]);
    sub.close();
    await waitFor("the subscription to close", () => t.runtime.subscriptions.size === 0);
  });

  it("starts live when no cursor is given", async () => {
    await publishMany("inventory.adjusted", 3, 1);
    const sub = await subscribe("inventory.adjusted");
    await sub.waitForComment("live");
    await t.post("/mig/v0.1/publish/inventory.adjusted", { header: { tenant_id: "acme" }, payload: { n: "after" } });
    const [event] = await sub.waitForEvents(1);
    expect(event).toMatchObject({ sequence: 4, replay: false, payload: { n: "after" } });
    sub.close();
  });

  it("resumes a durable consumer_id after a disconnect without losing what was published meanwhile", async () => {
    const first = await subscribe("shipments.updated", "consumer_id=billing");
    await first.waitForComment("live");
    await publishMany("shipments.updated", 50, 1);
    const seen = await first.waitForEvents(50);
    expect(sequences(seen)).toEqual(range(1, 50));
    first.close();
    await waitFor("the first subscription to close", () => t.runtime.subscriptions.size === 0);

    await publishMany("shipments.updated", 50, 1, 50);
    const again = await subscribe("shipments.updated", "consumer_id=billing");
    const resumed = await again.waitForEvents(50);
    expect(sequences(resumed)).toEqual(range(51, 100));
    expect(resumed.every((e) => e.replay)).toBe(true);
    await publishMany("shipments.updated", 1, 1, 100);
    expect(sequences(await again.waitForEvents(51))).toEqual(range(51, 101));
    again.close();
  });

  it("hands a durable consumer_id over in the middle of a replay: the two connections together get every event once, in order", async () => {
    // Events of about 1 KiB, so that a reader that stops reading backs the replay up well before its end.
    const bulk = "x".repeat(1_000);
    await publishMany("ledger.entries", 20_000, 200, 0, bulk);
    const older = await subscribe("ledger.entries", "resume_cursor=0&consumer_id=ledger&max_inflight=64");
    await older.waitForEvents(1_000);
    older.pause();
    const subscription = t.runtime.subscriptions.list().find((s) => s.info.topic === "ledger.entries")!;
    await waitFor("the older replay to pause", () => subscription.stats().state === "paused", 30_000);

    const newer = await subscribe("ledger.entries", "consumer_id=ledger");
    older.resume();
    await waitFor("the older stream to end", () => older.ended);
    expect((older.errors[0] as { error: { code: string } }).error.code).toBe("MIG_UNAVAILABLE");
    const handedOver = older.events.length;
    expect(handedOver).toBe(subscription.stats().last_sequence);
    expect(handedOver).toBeLessThan(20_000);
    const rest = await newer.waitForEvents(20_000 - handedOver, 60_000);
    expect(sequences([...older.events, ...rest])).toEqual(range(1, 20_000));
    newer.close();
  }, 120_000);

  it("resumes a durable consumer_id right after the last event written when its connection drops mid-replay", async () => {
    await publishMany("ledger.audits", 20_000, 200, 0, "y".repeat(1_000));
    const first = await subscribe("ledger.audits", "resume_cursor=0&consumer_id=auditor&max_inflight=64");
    await first.waitForEvents(1_000);
    first.pause();
    const subscription = t.runtime.subscriptions.list().find((s) => s.info.topic === "ledger.audits")!;
    await waitFor("the replay to pause", () => subscription.stats().state === "paused", 30_000);
    first.close();
    await subscription.closed;
    const written = subscription.stats().last_sequence;
    expect(written).toBeLessThan(20_000);
    // Every event written was acknowledged before the subscription counted as closed: its ack floor is the resume point.
    const consumer = await t.runtime.bus.jsm.consumers.info(topicRef("acme", "ledger.audits").stream, "auditor");
    expect(consumer.ack_floor.stream_seq).toBe(written);

    const again = await subscribe("ledger.audits", "consumer_id=auditor");
    const resumed = await again.waitForEvents(20_000 - written, 60_000);
    expect(sequences(resumed)).toEqual(range(written + 1, 20_000));
    expect(resumed.every((e) => e.replay)).toBe(true);
    again.close();
  }, 120_000);

  it("resumes exactly after Last-Event-ID on reconnect, even over the original query's cursor", async () => {
    await publishMany("tickets.opened", 20, 1);
    const first = await subscribe("tickets.opened", "resume_cursor=0&consumer_id=ui");
    const got = await first.waitForEvents(20);
    first.close();
    await waitFor("the first subscription to close", () => t.runtime.subscriptions.size === 0);

    // The client handled only the first 10 events before the connection dropped.
    const lastSeen = got[9]!.sequence;
    const again = await subscribe("tickets.opened", "resume_cursor=0&consumer_id=ui", {
      "last-event-id": String(lastSeen),
    });
    const resumed = await again.waitForEvents(10);
    await publishMany("tickets.opened", 5, 1, 20);
    const all = await again.waitForEvents(15);
    const combined = [...got.slice(0, 10), ...all];
    expect(sequences(combined)).toEqual(range(1, 25));
    expect(new Set(combined.map((e) => e.event_id)).size).toBe(25);
    expect(resumed[0]!.sequence).toBe(11);
    again.close();
  });

  it("counts a paused subscription's lag up as events are published while it is paused", async () => {
    const sub = await subscribe("metrics.lagging", "max_inflight=8");
    await sub.waitForComment("live");
    sub.pause();
    const text = "x".repeat(16 * 1024); // a few hundred fill the kernel's socket buffers
    await publishMany("metrics.lagging", 600, 50, 0, text);
    const subscription = t.runtime.subscriptions.list().find((s) => s.info.topic === "metrics.lagging");
    await waitFor("the subscription to pause", () => subscription!.stats().state === "paused", 30_000);
    const lagOf = async () => {
      const line = (await t.get("/metrics")).text.match(
        /^mig_subscription_lag_events\{[^}]*topic="metrics\.lagging"[^}]*\} (\d+)$/m,
      );
      return Number(line?.[1] ?? Number.NaN);
    };
    const before = await lagOf();
    await publishMany("metrics.lagging", 300, 50, 600, text);
    // No delivery happens while paused; the lag is read from the topic now and then.
    await waitFor("the lag to take in the new events", async () => (await lagOf()) >= before + 300, 20_000);
    sub.resume();
    expect(sequences(await sub.waitForEvents(900, 60_000))).toEqual(range(1, 900));
    sub.close();
  }, 120_000);

  it("keeps a slow subscriber's buffered events bounded while 50,000 events are published, then delivers all in order", async () => {
    const sub = await subscribe("metrics.samples", "max_inflight=64");
    await sub.waitForComment("live");
    sub.pause();
    await publishMany("metrics.samples", 50_000, 400);

    const subscription = t.runtime.subscriptions.list().find((s) => s.info.topic === "metrics.samples");
    // The kernel's socket buffers take a few MB first; then the runtime pauses for good.
    const paused = await waitFor(
      "the subscription to stay paused",
      () => {
        const stats = subscription!.stats();
        return stats.state === "paused" && stats.pauses > 0 ? stats : undefined;
      },
      30_000,
    );
    expect(paused.max_buffered_events).toBeLessThanOrEqual(64);
    // What the transport holds: Node's writable buffer stops at its high-water mark plus one frame and one notice.
    expect(paused.max_buffered_bytes).toBeLessThan(16 * 1024 + 4 * 1024);
    expect(paused.delivered).toBeLessThan(50_000);
    const metrics = (await t.get("/metrics")).text;
    expect(metrics).toMatch(/mig_subscription_pauses_total\{binding="http"\} [1-9]/);
    expect(metrics).toMatch(
      /mig_subscription_lag_events\{tenant="acme",topic="metrics.samples",consumer="ephemeral-[0-9a-f]+"\} [1-9]/,
    );

    sub.resume();
    const all = await sub.waitForEvents(50_000, 60_000);
    expect(sequences(all)).toEqual(range(1, 50_000));
    expect(sub.comments.some((c) => c.startsWith("paused"))).toBe(true);
    expect(sub.comments.some((c) => c.startsWith("resumed"))).toBe(true);
    const done = subscription!.stats();
    expect(done.max_buffered_events).toBeLessThanOrEqual(64);
    expect(done.max_buffered_bytes).toBeLessThan(16 * 1024 + 4 * 1024);
    sub.close();
  }, 120_000);
});
