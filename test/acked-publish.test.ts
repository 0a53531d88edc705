// Acked JetStream publishes through one reply subscription: the stream's sequence, dedup by message id, and a
// clear refusal when no stream takes the subject or nothing answers in time. Real nats-server (the runtime's).
import { connect, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AckError, AckedPublisher } from "../runtime/bus/acked-publish.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
let nc: NatsConnection;
beforeAll(async () => {
  t = await startTestRuntime();
  nc = await connect({ servers: t.runtime.natsUrl });
  await t.runtime.bus.jsm.streams.add({ name: "ACKED_TEST", subjects: ["acked.test"], duplicate_window: 60 * 1e9 });
});
afterAll(async () => {
  await nc?.close();
  await t?.stop();
});

function withId(id: string) {
  const h = natsHeaders();
  h.set("Nats-Msg-Id", id);
  return h;
}

describe("AckedPublisher", () => {
  it("resolves with the stream's sequence once stored, and reports a repeated message id as a duplicate", async () => {
    const publisher = new AckedPublisher(nc, 5_000);
    const acks = await Promise.all(
      [1, 2, 3].map((i) => publisher.publish("acked.test", JSON.stringify({ i }), withId(`m-${i}`))),
    );
    expect(acks.map((a) => a.seq).sort()).toEqual([1, 2, 3]);
    expect(acks.every((a) => !a.duplicate)).toBe(true);
    const again = await publisher.publish("acked.test", "{}", withId("m-2"));
    expect(again).toEqual({ seq: acks[1]!.seq, duplicate: true });
    expect((await t.runtime.bus.jsm.streams.info("ACKED_TEST")).state.messages).toBe(3);
  });

  it("rejects when no stream takes the subject", async () => {
    const publisher = new AckedPublisher(nc, 5_000);
    await expect(publisher.publish("acked.nowhere", "{}", withId("x"))).rejects.toThrow(AckError);
  });

  it("rejects a message the client refuses to send, and keeps serving the others", async () => {
    const publisher = new AckedPublisher(nc, 5_000);
    const tooBig = new Uint8Array(nc.info!.max_payload + 1);
    const [big, small] = await Promise.allSettled([
      publisher.publish("acked.test", tooBig, withId("big")),
      publisher.publish("acked.test", "{}", withId("small")),
    ]);
    expect(big.status).toBe("rejected");
    expect((big as PromiseRejectedResult).reason).toBeInstanceOf(AckError);
    expect((big as PromiseRejectedResult).reason.message).toMatch(/could not be sent/);
    expect(small.status).toBe("fulfilled");
  });

  it("rejects what is not answered within its timeout", async () => {
    // A plain subscriber takes the message and never answers: no ack comes.
    const silent = nc.subscribe("acked.silent");
    await nc.flush();
    const publisher = new AckedPublisher(nc, 200);
    await expect(publisher.publish("acked.silent", "{}", withId("y"))).rejects.toThrow(
      /no ack from the stream within 200 ms/,
    );
    silent.unsubscribe();
  });
});
