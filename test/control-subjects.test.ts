// Control subjects in auth mode jwt: a subscription's close and acks, and a stream's inbound subject (credit, cancel),
// act only for the principal that opened them, for streams run by the gateway and streams handed to a worker;
// a refused control message gets an error reply and changes nothing. The events binding's error replies carry mig_error_code.
import { randomUUID } from "node:crypto";
import { connect, createInbox, type Msg, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { defineStreamingCapability } from "../runtime/provider/provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { count } from "./fixtures/stream-provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { type NatsAnswer, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const SECRET = "control-subjects-test-secret";
const JWT = { authMode: "jwt" as const, jwtHs256Secret: SECRET };

const ticks = defineStreamingCapability(
  anyDescriptor("local.stream.ticks", ["server_stream"]),
  async (payload, { emit }) => {
    const n = Number(payload.count);
    for (let i = 0; i < n; i++) await emit({ i });
    return { frames: n };
  },
  anySchemas,
);

let gateway: TestRuntime;
let binding: NatsBinding;
let events: NatsEventsBinding;
let workerRuntime: MigRuntime;
let host: WorkerHost;
let nc: NatsConnection;

async function bearer(claims: Record<string, unknown>): Promise<Record<string, string>> {
  const now = Math.floor(Date.now() / 1000);
  // A jti of its own: two tokens of the same claims made in the same second are still two tokens.
  const jwt = await new SignJWT({ ...claims, jti: randomUUID() })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(new TextEncoder().encode(SECRET));
  return { Authorization: `Bearer ${jwt}` };
}

let alice: Record<string, string>;
let bob: Record<string, string>;
let globex: Record<string, string>;

/** A control message sent as a request, so that a refusal can answer it. */
async function control(subject: string, body: unknown, auth: Record<string, string> = {}): Promise<NatsAnswer> {
  return natsRequest(nc, subject, body, auth, 5_000);
}

function expectRefused(answer: NatsAnswer, code: string): void {
  expect(answer.body.error?.code, JSON.stringify(answer.body)).toBe(code);
  expect(answer.headers.mig_error_code).toBe(code);
}

beforeAll(async () => {
  gateway = await startTestRuntime({ config: { ...JWT, streamWindow: 16 }, capabilities: [ticks] });
  binding = await startNatsBinding(gateway.runtime, gateway.runtime.authenticator);
  events = startNatsEvents(gateway.runtime, gateway.runtime.authenticator);
  // In jwt mode the embedded bus has users: the worker and this test's client join as the runtime does.
  const { user, password } = gateway.runtime.busCredentials;
  const config = loadConfig(
    {
      natsUrl: gateway.runtime.natsUrl,
      natsUser: user,
      natsPassword: password,
      dataDir: gateway.dataDir,
      logLevel: "silent",
      streamWindow: 16,
      streamStallMs: 60_000,
      ...JWT,
    },
    {},
  );
  workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent") });
  host = await WorkerHost.start(workerRuntime, [count], { heartbeatMs: 500 });
  nc = await connect({
    servers: gateway.runtime.natsUrl,
    name: "control-subjects-test",
    ...(user ? { user, pass: password } : {}),
  });
  alice = await bearer({ sub: "alice", tenant_id: "acme" });
  bob = await bearer({ sub: "bob", tenant_id: "acme" });
  globex = await bearer({ sub: "mallory", tenant_id: "globex" });
  await waitFor(
    "the gateway to see the worker",
    () => gateway.runtime.capabilities.get("remote.stream.count")?.handOff,
  );
  // The worker verifies a refreshed token itself only under the gateways' settings, which it must have heard of.
  await waitFor(
    "the worker to hear the gateway's settings",
    () => (workerRuntime.fleet?.gatewayPolicies().length ?? 0) > 0,
  );
});

afterAll(async () => {
  await nc?.close();
  await host?.stop();
  await workerRuntime?.stop();
  await events?.close();
  await binding?.close();
  await gateway?.stop();
});

/** Publishes one event as alice and waits for its ack. */
async function publish(topic: string, payload: Record<string, unknown>): Promise<void> {
  const ack = await natsRequest(nc, `mig.v0_1.acme.events.${topic}`, { payload }, alice);
  expect(ack.body.error, JSON.stringify(ack.body)).toBeUndefined();
}

/** Alice subscribes to `topic` over NATS from its first event. */
async function subscribe(topic: string, maxInflight: number) {
  const inbox = createInbox();
  const received: Msg[] = [];
  const deliveries = nc.subscribe(inbox, { callback: (_e, msg) => void received.push(msg) });
  await nc.flush();
  const opened = await natsRequest(
    nc,
    `mig.v0_1.acme.subscribe.${topic}`,
    { resume_cursor: "0", max_inflight: maxInflight, deliver_subject: inbox },
    alice,
  );
  expect(opened.body.error, JSON.stringify(opened.body)).toBeUndefined();
  const prefix = `mig.v0_1.acme.subscription.${opened.body.subscription_id}`;
  const live = () =>
    gateway.runtime.subscriptions.list().some((s) => s.info.subscription_id === opened.body.subscription_id);
  return { received, prefix, live, done: () => deliveries.unsubscribe() };
}

describe("a NATS subscription's control subjects", () => {
  it("a close without the subscriber's token, or with another tenant's or subject's, is refused and the subscription keeps delivering", async () => {
    const topic = `orders.${randomUUID().slice(0, 8)}`;
    await publish(topic, { n: 1 });
    const sub = await subscribe(topic, 10);
    await waitFor("the first event", () => sub.received.length === 1);

    expectRefused(await control(`${sub.prefix}.close`, "", {}), "MIG_UNAUTHORIZED");
    expectRefused(await control(`${sub.prefix}.close`, "", globex), "MIG_FORBIDDEN");
    expectRefused(await control(`${sub.prefix}.close`, "", bob), "MIG_FORBIDDEN");
    expect(sub.live()).toBe(true);
    await publish(topic, { n: 2 });
    await waitFor("the second event", () => sub.received.length === 2);
    expect(sub.received.map((m) => m.json<any>().payload)).toEqual([{ n: 1 }, { n: 2 }]);

    // The subscriber itself, with a refreshed token (verified once, then known), still may.
    const closed = await control(`${sub.prefix}.close`, "", await bearer({ sub: "alice", tenant_id: "acme" }));
    expect(closed.body.closed).toBe(true);
    await waitFor("the subscription to close", () => !sub.live());
    sub.done();
  });

  it("an ack with another tenant's token, or none, is refused and gives no credit; the subscriber's own ack does", async () => {
    const topic = `orders.${randomUUID().slice(0, 8)}`;
    await publish(topic, { n: 1 });
    await publish(topic, { n: 2 });
    const sub = await subscribe(topic, 1);
    await waitFor("the first event", () => sub.received.length === 1);
    const first = sub.received[0]!;
    expect(first.reply).toBe(`${sub.prefix}.ack.1`);

    expectRefused(await control(first.reply!, "", globex), "MIG_FORBIDDEN");
    expectRefused(await control(first.reply!, "", {}), "MIG_UNAUTHORIZED");
    expect(sub.received).toHaveLength(1);

    const h = natsHeaders();
    h.set("Authorization", alice.Authorization!);
    first.respond(undefined, { headers: h });
    await waitFor("the second event", () => sub.received.length === 2);
    expect(sub.received[1]!.json<any>().payload).toEqual({ n: 2 });
    expect((await control(`${sub.prefix}.close`, "", alice)).body.closed).toBe(true);
    sub.done();
  });
});

type Frame = Record<string, any>;

/** Alice starts a stream of `capability` over NATS and grants no credit until told. */
async function stream(capability: string, frames: number) {
  const streamId = `c-${randomUUID()}`;
  const subject = `mig.v0_1.acme.stream.${streamId}`;
  const received: Frame[] = [];
  let ended!: () => void;
  const done = new Promise<void>((r) => (ended = r));
  const sub = nc.subscribe(subject, {
    callback: (_e, msg) => {
      const frame = msg.json<Frame>();
      received.push(frame);
      if (frame.end_stream) ended();
    },
  });
  await nc.flush();
  const answer = await natsRequest(
    nc,
    "mig.v0_1.acme.control.stream",
    { capability, payload: { count: frames }, stream_id: streamId, stream_preference: "server_stream" },
    alice,
  );
  expect(answer.body.error, JSON.stringify(answer.body)).toBeUndefined();
  return { inbound: `${subject}.in`, received, done, close: () => sub.unsubscribe() };
}

const credit = (n: number) => ({ kind: "control", payload: { action: "credit", credit: n } });
const cancel = { kind: "control", payload: { action: "cancel", reason: "not yours" } };

describe.each([
  ["run by the gateway", "local.stream.ticks"],
  ["handed to a worker", "remote.stream.count"],
])("a NATS stream's inbound subject, stream %s", (_where, capability) => {
  it("refuses cancel and credit without the opener's token, or with another tenant's or subject's; the stream goes on", async () => {
    const s = await stream(capability, 40);
    expectRefused(await control(s.inbound, cancel, {}), "MIG_UNAUTHORIZED");
    expectRefused(await control(s.inbound, cancel, globex), "MIG_FORBIDDEN");
    expectRefused(await control(s.inbound, cancel, bob), "MIG_FORBIDDEN");
    expectRefused(await control(s.inbound, credit(1_000), globex), "MIG_FORBIDDEN");
    expectRefused(await control(s.inbound, credit(1_000), {}), "MIG_UNAUTHORIZED");
    expect(s.received).toHaveLength(0); // no credit came from any of them

    // The opener's credit, then more with a refreshed token of the same subject: every frame, and the result.
    nc.publish(s.inbound, JSON.stringify(credit(20)), { headers: headersOf(alice) });
    await waitFor("twenty frames", () => s.received.length === 20);
    nc.publish(s.inbound, JSON.stringify(credit(1_000)), {
      headers: headersOf(await bearer({ sub: "alice", tenant_id: "acme" })),
    });
    await s.done;
    const data = s.received.filter((f) => !f.end_stream);
    expect(data.map((f) => f.payload.i)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(s.received.at(-1)).toMatchObject({ kind: "response", end_stream: true });
    s.close();
  });

  it("the opener's own cancel on the inbound subject still ends the stream", async () => {
    const s = await stream(capability, 1_000_000);
    nc.publish(s.inbound, JSON.stringify(cancel), { headers: headersOf(alice) });
    await s.done;
    expect(s.received.filter((f) => f.end_stream)).toHaveLength(1);
    expect(s.received.at(-1)).toMatchObject({
      kind: "control",
      end_stream: true,
      payload: { status: "cancelled", reason: "not yours" },
    });
    s.close();
  });
});

function headersOf(auth: Record<string, string>) {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(auth)) h.set(k, v);
  return h;
}

describe("error replies of the NATS events binding", () => {
  it("carry the mig_error_code header, for PUBLISH and SUBSCRIBE", async () => {
    expectRefused(await natsRequest(nc, "mig.v0_1.acme.events.orders.created", { payload: {} }), "MIG_UNAUTHORIZED");
    expectRefused(
      await natsRequest(nc, "mig.v0_1.acme.events.orders.created", "{not json", alice),
      "MIG_INVALID_REQUEST",
    );
    expectRefused(
      await natsRequest(nc, "mig.v0_1.globex.events.orders.created", { payload: {} }, alice),
      "MIG_FORBIDDEN",
    );
    expectRefused(
      await natsRequest(nc, "mig.v0_1.acme.subscribe.orders.created", { deliver_subject: "not valid *" }, alice),
      "MIG_INVALID_REQUEST",
    );
    expectRefused(
      await natsRequest(nc, "mig.v0_1.acme.subscribe.orders.created", { deliver_subject: createInbox() }),
      "MIG_UNAUTHORIZED",
    );
  });
});
