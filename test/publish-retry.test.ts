// A PUBLISH whose store gets no answer from a stream is sent again inside the runtime (the same Nats-Msg-Id, so it is
// stored at most once), instead of answering MIG_UNAVAILABLE: here the topic's stream is deleted behind the runtime's
// back, and the runtime makes it again within the same PUBLISH.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { topicRef } from "../runtime/store/events.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(async () => {
  await t?.stop();
});

const publish = (topic: string, n: number, key?: string) =>
  t.post(`/mig/v0.1/publish/${topic}`, {
    header: { tenant_id: "acme", ...(key ? { idempotency_key: key } : {}) },
    payload: { n },
  });

describe("a PUBLISH that no stream answers", () => {
  it("is stored once the runtime has made the deleted stream again, in the same call, and a repeat of its key stores nothing", async () => {
    const topic = "retry.deleted";
    expect((await publish(topic, 1)).status).toBe(200);
    const stream = topicRef("acme", topic).stream;
    await t.runtime.bus.jsm.streams.delete(stream);

    const stored = await publish(topic, 2, "after-delete");
    expect(stored.status, JSON.stringify(stored.body)).toBe(200);
    expect(stored.body).toMatchObject({ accepted: true, sequence: 1 });
    const repeated = await publish(topic, 2, "after-delete");
    expect(repeated.body).toMatchObject({ accepted: true, sequence: 1 });
    expect((await t.runtime.bus.jsm.streams.info(stream)).state.messages).toBe(1);
  });
});
