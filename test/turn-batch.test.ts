// Publishes of one event-loop turn leave together: in order, and one message nats.js refuses (here, larger than the
// server's max_payload) is reported to its own callback without keeping the rest of the turn from their subscribers.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TurnBatch } from "../runtime/bus/turn-batch.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
let nc: NatsConnection;
beforeAll(async () => {
  t = await startTestRuntime();
  nc = await connect({ servers: t.runtime.natsUrl });
});
afterAll(async () => {
  await nc?.close();
  await t?.stop();
});

function collect(subject: string, count: number): Promise<string[]> {
  const seen: string[] = [];
  return new Promise((resolve) => {
    nc.subscribe(subject, {
      callback: (_err, msg) => {
        seen.push(msg.string());
        if (seen.length === count) resolve(seen);
      },
    });
  });
}

describe("TurnBatch", () => {
  it("delivers a turn's messages in the order they were queued, none before the turn ends", async () => {
    const arrived = collect("batch.order", 100);
    await nc.flush();
    const batch = new TurnBatch(nc, () => undefined);
    for (let i = 0; i < 100; i++) batch.publish("batch.order", String(i));
    // Nothing is handed to nats.js until the turn's setImmediate: the connection's buffer is still empty.
    expect(nc.stats().outMsgs).toBe(0);
    expect(await arrived).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
  });

  it("reports a refused message to its own callback and still sends the rest of the turn", async () => {
    const arrived = collect("batch.rest", 2);
    await nc.flush();
    const logged: string[] = [];
    const batch = new TurnBatch(nc, (_err, subject) => logged.push(subject));
    const tooBig = new Uint8Array(nc.info!.max_payload + 1);
    let refused: unknown;
    batch.publish("batch.rest", "before");
    batch.publish("batch.rest", tooBig, undefined, (err) => (refused = err));
    batch.publish("batch.big", tooBig);
    batch.publish("batch.rest", "after");
    expect(await arrived).toEqual(["before", "after"]);
    expect(refused).toBeInstanceOf(Error);
    expect(logged).toEqual(["batch.big"]);
  });
});
