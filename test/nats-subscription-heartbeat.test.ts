// heartbeat_ms of a NATS SUBSCRIBE: the gateway serving the subscription signals on deliver_subject, so a subscriber
// can tell that gateway is gone; heartbeats stop with the subscription, and a bad value is refused with a sentence.
import { connect, createInbox, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import { HEARTBEAT_HEADER } from "../schemas/nats-headers.ts";
import { natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

let t: TestRuntime;
let natsEvents: NatsEventsBinding;
let nc: NatsConnection;
beforeAll(async () => {
  t = await startTestRuntime();
  natsEvents = startNatsEvents(t.runtime, new Authenticator("none"));
  nc = await connect({ servers: t.runtime.natsUrl });
});
afterAll(async () => {
  await nc?.close();
  await natsEvents?.close();
  await t?.stop();
});

const TOPIC = "beats.feed";

async function subscribe(fields: Record<string, unknown>) {
  const inbox = createInbox();
  const received: Msg[] = [];
  const deliveries = nc.subscribe(inbox, { callback: (_e, msg) => void received.push(msg) });
  await nc.flush();
  const opened = await natsRequest(nc, `mig.v0_1.acme.subscribe.${TOPIC}`, {
    header: { tenant_id: "acme" },
    deliver_subject: inbox,
    ...fields,
  });
  const heartbeats = () => received.filter((msg) => msg.headers?.get(HEARTBEAT_HEADER));
  const events = () => received.filter((msg) => !msg.headers?.get(HEARTBEAT_HEADER));
  return { opened, received, heartbeats, events, done: () => deliveries.unsubscribe() };
}

describe("NATS subscription heartbeats", () => {
  it("come every heartbeat_ms with the subscription id and no body, beside the events, and stop with the subscription", async () => {
    const sub = await subscribe({ heartbeat_ms: 100 });
    expect(sub.opened.body.error).toBeUndefined();
    const id = sub.opened.body.subscription_id as string;
    await waitFor("three heartbeats", () => sub.heartbeats().length >= 3);
    for (const beat of sub.heartbeats()) {
      expect(beat.headers!.get(HEARTBEAT_HEADER)).toBe(id);
      expect(beat.data.length).toBe(0);
    }

    const ack = await natsRequest(nc, `mig.v0_1.acme.events.${TOPIC}`, { payload: { n: 1 } });
    expect(ack.body.error).toBeUndefined();
    await waitFor("the event", () => sub.events().length === 1);
    expect(JSON.parse(sub.events()[0]!.string())).toMatchObject({ sequence: ack.body.sequence, payload: { n: 1 } });

    const closed = await natsRequest(nc, `mig.v0_1.acme.subscription.${id}.close`, {});
    expect(closed.body).toMatchObject({ closed: true });
    // The close answer and the heartbeats leave the gateway on one connection, in order: none is on its way now.
    const atClose = sub.heartbeats().length;
    await new Promise((r) => setTimeout(r, 400));
    expect(sub.heartbeats().length).toBe(atClose);
    sub.done();
  });

  it("are not sent unless asked for", async () => {
    const sub = await subscribe({});
    expect(sub.opened.body.error).toBeUndefined();
    await natsRequest(nc, `mig.v0_1.acme.events.${TOPIC}`, { payload: { n: 2 } });
    await waitFor("the event", () => sub.events().length === 1);
    await natsRequest(nc, `mig.v0_1.acme.subscription.${sub.opened.body.subscription_id}.close`, {});
    expect(sub.heartbeats()).toEqual([]);
    sub.done();
  });

  it.each([
    ["a string", "500"],
    ["zero", 0],
    ["below the floor", 99],
    ["above the ceiling", 60_001],
    ["a fraction", 250.5],
    ["negative", -100],
    ["null", null],
    ["an object", { ms: 500 }],
  ])("heartbeat_ms %s is refused with MIG_INVALID_REQUEST, and opens nothing", async (_what, value) => {
    const before = t.runtime.subscriptions.list().length;
    const sub = await subscribe({ heartbeat_ms: value });
    expect(sub.opened.headers.mig_error_code).toBe("MIG_INVALID_REQUEST");
    expect(sub.opened.body.error).toMatchObject({ code: "MIG_INVALID_REQUEST" });
    expect(sub.opened.body.error.message).toMatch(
      /heartbeat_ms must be a whole number of milliseconds from 100 to 60000/,
    );
    expect(t.runtime.subscriptions.list().length).toBe(before);
    expect(sub.received).toEqual([]);
    sub.done();
  });
});
