// Pins the NATS and JetStream behaviour the runtime relies on below nats.js's API (runtime/bus/jetstream-wire.ts,
// runtime/bus/nats-header-block.ts), against the real nats-server: an upgrade that changes it fails here first.
import { AckPolicy } from "@nats-io/jetstream";
import { createInbox, type Msg } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACK, readAckSubject, requestBatch, TERM } from "../runtime/bus/jetstream-wire.ts";
import { HeaderBlock } from "../runtime/bus/nats-header-block.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
  const { jsm } = t.runtime.bus;
  await jsm.streams.add({ name: "WIRE", subjects: ["wire.>"] });
  await jsm.consumers.add("WIRE", { durable_name: "reader", ack_policy: AckPolicy.Explicit, ack_wait: 60e9 });
  for (let i = 1; i <= 3; i++) await t.runtime.bus.js.publish(`wire.${i}`, JSON.stringify({ i }));
});
afterAll(async () => {
  await t?.stop();
});

/** Subscribes an inbox and asks the consumer for a batch on it; resolves with what arrives until `until` holds. */
async function pull(batch: number, expiresMs: number, until: (got: Msg[]) => boolean): Promise<Msg[]> {
  const { nc } = t.runtime.bus;
  const inbox = createInbox();
  const got: Msg[] = [];
  const sub = nc.subscribe(inbox, { callback: (_err, msg) => void got.push(msg) });
  requestBatch(nc, "WIRE", "reader", { batch, expiresMs, replyTo: inbox });
  await waitFor("the pulled messages", () => until(got));
  sub.unsubscribe();
  return got;
}

describe("JetStream below nats.js's API", () => {
  it("a batch request delivers the messages, each with a $JS.ACK reply subject naming its sequence, its delivery count and what is left", async () => {
    const got = await pull(3, 5_000, (msgs) => msgs.length === 3);
    expect(got.map((m) => m.json())).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    expect(got.map((m) => readAckSubject(m.reply))).toEqual([
      { consumer: "reader", deliveryCount: 1, seq: 1, pending: 2 },
      { consumer: "reader", deliveryCount: 1, seq: 2, pending: 1 },
      { consumer: "reader", deliveryCount: 1, seq: 3, pending: 0 },
    ]);
    // +ACK on the reply subject acks; the consumer's ack floor moves.
    const { nc, jsm } = t.runtime.bus;
    nc.publish(got[0]!.reply!, ACK);
    nc.publish(got[1]!.reply!, ACK);
    await waitFor(
      "the ack floor at 2",
      async () => (await jsm.consumers.info("WIRE", "reader")).ack_floor.stream_seq === 2,
    );
    // +TERM ends the third's deliveries: nothing is pending or waiting for an ack afterwards.
    nc.publish(got[2]!.reply!, TERM);
    await waitFor("no message left to ack", async () => {
      const info = await jsm.consumers.info("WIRE", "reader");
      return info.num_ack_pending === 0 && info.num_pending === 0;
    });
  });

  it("a batch request with nothing to deliver ends, once it expires, in a status message with code 408 and no reply subject", async () => {
    const [status] = await pull(1, 200, (msgs) => msgs.length > 0);
    expect(status!.data.length).toBe(0);
    expect(status!.headers?.code).toBe(408);
    expect(readAckSubject(status!.reply)).toBeUndefined();
  });

  it("reads the longer reply subject with domain and account hash, and nothing else", () => {
    expect(readAckSubject("$JS.ACK.hub.ACCHASH.WIRE.reader.2.41.40.1700000000000000000.7.token")).toEqual({
      consumer: "reader",
      deliveryCount: 2,
      seq: 41,
      pending: 7,
    });
    expect(readAckSubject("_INBOX.abc")).toBeUndefined();
    expect(readAckSubject("$JS.ACK.WIRE.reader.1")).toBeUndefined();
    expect(readAckSubject(undefined)).toBeUndefined();
  });
});

describe("a HeaderBlock given to nats.js's publish", () => {
  it("arrives as the headers a subscriber reads with nats.js's own MsgHdrs, a value with a line break left out", async () => {
    const { nc } = t.runtime.bus;
    const subject = createInbox();
    let received: Msg | undefined;
    nc.subscribe(subject, { callback: (_err, msg) => void (received = msg) });
    const block = new HeaderBlock().add("Mig-Code", "MIG_TIMEOUT").add("Nats-Msg-Id", "k:1").add("Bad", "a\r\nb");
    nc.publish(subject, "{}", { headers: block.forPublish });
    await waitFor("the message", () => received);
    expect(received!.headers?.get("Mig-Code")).toBe("MIG_TIMEOUT");
    expect(received!.headers?.get("Nats-Msg-Id")).toBe("k:1");
    expect(received!.headers?.has("Bad")).toBe(false);
  });
});
