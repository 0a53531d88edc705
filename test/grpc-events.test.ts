// Events.Publish and Events.Subscribe over a real port with a client generated from schemas/mig.proto: replay, order, backpressure.
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import type { Subscription } from "../runtime/ops/subscribe.ts";
import { expectStatus, type MigClients, migClients, struct, subscribeCall, unary } from "./helpers/grpc.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let t: TestRuntime;
let grpc: GrpcBinding;
let c: MigClients;
beforeAll(async () => {
  // Replay unthrottled, so that a large replay is bounded only by the subscriber.
  t = await startTestRuntime({ config: { replayRatePerSec: 0 } });
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  c = migClients(grpc.address);
});
afterAll(async () => {
  c?.close();
  await grpc?.close();
  await t?.stop();
});

const header = (extra: Record<string, unknown> = {}) => ({ tenant_id: "acme", mig_version: "0.1", ...extra });
let topics = 0;
const newTopic = () => `grpc.test.t${++topics}`;

function publish(topic: string, payload: Record<string, string | number | boolean>) {
  return unary(c.events, "Publish", { header: header(), topic, payload: struct(payload) });
}

function subscription(topic: string): Subscription | undefined {
  return t.runtime.subscriptions.list().find((s) => s.info.topic === topic);
}

describe("Events.Publish", () => {
  it("answers a PublishAck: the event's sequence in its topic, 1, 2, 3", async () => {
    const topic = newTopic();
    const acks = [];
    for (let n = 1; n <= 3; n++) acks.push(await publish(topic, { n }));
    expect(acks.map((a) => [a.topic, a.sequence, a.accepted])).toEqual([
      [topic, 1, true],
      [topic, 2, true],
      [topic, 3, true],
    ]);
    expect(new Set(acks.map((a) => a.event_id)).size).toBe(3);
    expect(acks[0].header).toMatchObject({ tenant_id: "acme", mig_version: "0.1" });
  });

  it("refuses what the runtime refuses: no payload, a bad topic", async () => {
    await expectStatus(
      unary(c.events, "Publish", { header: header(), topic: newTopic() }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
    await expectStatus(
      unary(c.events, "Publish", { header: header(), topic: "bad topic", payload: struct({}) }),
      status.INVALID_ARGUMENT,
      "MIG_INVALID_REQUEST",
    );
  });
});

describe("Events.Subscribe", () => {
  it("from a cursor: the events after it, in order, flagged replay; then live events, not flagged", async () => {
    const topic = newTopic();
    for (let n = 1; n <= 4; n++) await publish(topic, { n });
    const sub = subscribeCall(c, { header: header(), topic, resume_cursor: "1" });
    await sub.until("the replayed events", () => sub.messages.length >= 3);
    expect(sub.metadata!.get("mig-start-sequence")).toEqual(["2"]);
    expect(sub.metadata!.get("mig-replay-until")).toEqual(["4"]);
    await publish(topic, { n: 5 });
    await sub.until("the live event", () => sub.messages.length >= 4);
    expect(sub.messages.map((m) => [m.sequence, m.replay, m.payload.fields.n.numberValue])).toEqual([
      [2, true, 2],
      [3, true, 3],
      [4, true, 4],
      [5, false, 5],
    ]);
    const first = sub.messages[0];
    expect(first).toMatchObject({ topic, header: { tenant_id: "acme" } });
    expect(first.event_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Math.abs(Number(first.published_at.seconds) - Date.now() / 1000)).toBeLessThan(60);

    // A cancelled call closes the subscription (and its JetStream consumer).
    const open = await waitFor("the subscription", () => subscription(topic));
    sub.call.cancel();
    await open.closed;
    expect(subscription(topic)).toBeUndefined();
  });

  it("without a cursor a subscription starts live", async () => {
    const topic = newTopic();
    await publish(topic, { n: 1 });
    const sub = subscribeCall(c, { header: header(), topic });
    await waitFor("the subscription", () => subscription(topic));
    await publish(topic, { n: 2 });
    await sub.until("the live event", () => sub.messages.length >= 1);
    expect(sub.messages.map((m) => [m.sequence, m.replay])).toEqual([[2, false]]);
    const open = subscription(topic)!;
    sub.call.cancel();
    await open.closed;
  });

  it("a reader that stops pauses the subscription: the runtime holds at most max_inflight events, and every event arrives in order", async () => {
    const topic = newTopic();
    const total = 400;
    const pad = "x".repeat(4000);
    for (let n = 1; n <= total; n++) await publish(topic, { n, pad });
    const maxInflight = 8;
    const sub = subscribeCall(c, { header: header(), topic, resume_cursor: "0", max_inflight: maxInflight });
    sub.call.pause(); // read nothing: HTTP/2 flow control fills, writes stop completing
    const open = await waitFor("the subscription", () => subscription(topic));
    await waitFor("the subscription to pause", () => open.stats().pauses > 0 && open.stats().state === "paused");
    const stalled = open.stats();
    expect(stalled.delivered).toBeLessThan(total);
    sub.call.resume();
    await sub.until("every event", () => sub.messages.length >= total);
    expect(sub.messages.map((m) => m.sequence)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(sub.messages.every((m) => m.replay === true)).toBe(true);
    const stats = open.stats();
    expect(stats.max_buffered_events).toBeLessThanOrEqual(maxInflight);
    // The transport side: never more than max_inflight events (each under 5 KB: the pad, the header) written and not yet taken by HTTP/2.
    expect(stats.max_buffered_bytes).toBeLessThanOrEqual(maxInflight * 5000);
    sub.call.cancel();
    await open.closed;
  });

  it("refuses a bad request with a clean status: a cursor past the end, max_inflight out of range", async () => {
    const topic = newTopic();
    await publish(topic, { n: 1 });
    const past = subscribeCall(c, { header: header(), topic, resume_cursor: "9" });
    await past.end();
    expect(past.code).toBe(status.INVALID_ARGUMENT);
    expect(past.error!.metadata.get("mig-error-code")).toEqual(["MIG_INVALID_REQUEST"]);
    expect(past.error!.details).toContain("past the end");

    const notNumber = subscribeCall(c, { header: header(), topic, resume_cursor: "abc" });
    await notNumber.end();
    expect(notNumber.code).toBe(status.INVALID_ARGUMENT);

    const tooMany = subscribeCall(c, { header: header(), topic, max_inflight: 1_000_000 });
    await tooMany.end();
    expect(tooMany.code).toBe(status.INVALID_ARGUMENT);
    expect(tooMany.error!.details).toContain("max_inflight");
  });

  it("a subscription the runtime ends (takeover of its consumer_id) ends the call with the MIG error", async () => {
    const topic = newTopic();
    await publish(topic, { n: 1 });
    const first = subscribeCall(c, { header: header(), topic, consumer_id: "billing" });
    await waitFor("the first subscription", () => subscription(topic));
    const second = subscribeCall(c, { header: header(), topic, consumer_id: "billing" });
    await first.end();
    expect(first.code).toBe(status.UNAVAILABLE);
    expect(first.error!.metadata.get("mig-error-code")).toEqual(["MIG_UNAVAILABLE"]);
    await waitFor("the second subscription", () => second.metadata);
    expect(second.metadata!.get("mig-consumer-id")).toEqual(["billing"]);
    second.call.cancel();
    await waitFor("no subscription left", () => subscription(topic) === undefined);
  });
});
