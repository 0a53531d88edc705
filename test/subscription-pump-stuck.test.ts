// A subscription's pump whose consumer answers pulls but delivers nothing while the topic holds events (a consumer
// left stuck by a failover, or starved by lost acks) places a new consumer after the last event it delivered. Real
// JetStream: the pump is given a consumer that starts far past the topic's end.
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EventSink, SubscriptionInfo } from "../runtime/flow/event-sink.ts";
import { Pump } from "../runtime/flow/subscription-pump.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { topicRef } from "../runtime/store/events.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(async () => {
  await t?.stop();
});

/** A sink that takes every event at once and keeps their sequences. */
function collectingSink(): EventSink & { sequences: number[] } {
  const sequences: number[] = [];
  return {
    sequences,
    bufferedBytes: 0,
    open: () => undefined,
    event: (sequence) => {
      sequences.push(sequence);
      return true;
    },
    notice: () => undefined,
    drained: () => Promise.resolve(),
    close: () => undefined,
  };
}

describe("a subscription pump with a consumer that delivers nothing", () => {
  it("places a new consumer after the last event delivered, and delivers the rest in order", async () => {
    const topic = "pump.stuck";
    for (let n = 1; n <= 4; n++) {
      await t.runtime.publish(
        { header: { tenant_id: "acme" }, payload: { n } },
        { principal: anonymousPrincipal(), tenant: "acme", binding: "http" },
        topic,
      );
    }
    const ref = topicRef("acme", topic);
    const { jsm } = t.runtime.bus;
    const consumer = (name: string, start: number) =>
      jsm.consumers.add(ref.stream, {
        durable_name: name,
        ack_policy: AckPolicy.All,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: start,
        inactive_threshold: 60_000_000_000,
      });
    const stuck = await consumer("stuck", 1_000_000);
    const placed: number[] = [];
    const place = async (start: number) => {
      placed.push(start);
      return (await consumer(`placed-${start}`, start)).name;
    };
    const sink = collectingSink();
    const info: SubscriptionInfo = {
      header: {
        mig_version: "0.1",
        message_id: "m",
        timestamp: new Date().toISOString(),
        tenant_id: "acme",
        deadline_ms: 30_000,
      },
      subscription_id: "s-stuck",
      topic,
      consumer_id: undefined,
      start_sequence: 1,
      replay_until: 0,
      max_inflight: 8,
    };
    const pump = new Pump(
      t.runtime,
      ref,
      stuck.name,
      place,
      sink,
      info,
      { tenant: "acme", topic, consumer: "s-stuck" },
      "http",
    );
    const closed: unknown[] = [];
    pump.run((event) => {
      if (event.type === "CLOSE") closed.push(event);
    });
    try {
      // Two pulls expire empty (5 s, then 10 s) while the topic holds events 1 to 4.
      await waitFor("the events, from a consumer placed again", () => sink.sequences.length >= 4, 40_000);
      expect(sink.sequences).toEqual([1, 2, 3, 4]);
      expect(placed).toEqual([1]);
      expect(closed).toEqual([]);
    } finally {
      pump.stop();
    }
  }, 60_000);
});
