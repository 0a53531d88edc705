// Events in auth mode jwt: the tenant comes from the token on HTTP, SSE and NATS alike, and a topic listed in a
// capability's event_topics needs that capability's scopes for PUBLISH and SUBSCRIBE.
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import { topicRef } from "../runtime/store/events.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { runtimeBusClient } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const SCOPED_TOPIC = "observatory.inference.completed";
let t: TestRuntime;
let client: NatsConnection;
let natsEvents: NatsEventsBinding;

function token(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("10 minutes")
    .sign(new TextEncoder().encode(SECRET));
}

beforeAll(async () => {
  t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  natsEvents = startNatsEvents(t.runtime, new Authenticator("jwt", SECRET));
  client = await runtimeBusClient(t.runtime);
});
afterAll(async () => {
  await client?.close();
  await natsEvents?.close();
  await t?.stop();
});

async function refusedSubscribe(path: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  try {
    (await SseClient.open(`${t.http.url}${path}`, headers)).close();
  } catch (err) {
    return err as { status: number; body: any };
  }
  throw new Error(`${path} was accepted`);
}

describe("events with jwt", () => {
  it("needs the capability's scope to publish to one of its event topics; other topics need only the tenant", async () => {
    const plain = { authorization: `Bearer ${await token({ sub: "u", tenant_id: "acme" })}` };
    const scoped = {
      authorization: `Bearer ${await token({ sub: "u", tenant_id: "acme", scope: "capability:infer" })}`,
    };
    expectError(await t.post(`/mig/v0.1/publish/${SCOPED_TOPIC}`, { payload: {} }), 401, "MIG_UNAUTHORIZED");
    expectError(await t.post(`/mig/v0.1/publish/${SCOPED_TOPIC}`, { payload: {} }, plain), 403, "MIG_FORBIDDEN");
    expect(await t.runtime.events.exists(topicRef("acme", SCOPED_TOPIC))).toBe(false);
    const ok = await t.post(`/mig/v0.1/publish/${SCOPED_TOPIC}`, { payload: { result: "x" } }, scoped);
    expect(ok.status).toBe(200);
    expect(ok.body.header.tenant_id).toBe("acme");
    expect((await t.post("/mig/v0.1/publish/orders.created", { payload: {} }, plain)).status).toBe(200);
    expectError(
      await t.post("/mig/v0.1/publish/orders.created", { payload: {} }, { ...plain, "x-tenant-id": "globex" }),
      403,
      "MIG_FORBIDDEN",
    );

    expectError(await refusedSubscribe(`/mig/v0.1/subscribe/${SCOPED_TOPIC}`, {}), 401, "MIG_UNAUTHORIZED");
    expectError(await refusedSubscribe(`/mig/v0.1/subscribe/${SCOPED_TOPIC}`, plain), 403, "MIG_FORBIDDEN");
    expectError(
      await refusedSubscribe("/mig/v0.1/subscribe/orders.created?tenant_id=globex", plain),
      403,
      "MIG_FORBIDDEN",
    );
    const sub = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/${SCOPED_TOPIC}?resume_cursor=0`, scoped);
    const [event] = await sub.waitForEvents(1);
    expect(event!.payload).toEqual({ result: "x" });
    sub.close();
  });

  it("authenticates NATS requests by their Authorization header and holds the subject's tenant to the token's", async () => {
    const body = JSON.stringify({ payload: { via: "nats" } });
    const none = await client.request("mig.v0_1.acme.events.orders.created", body, { timeout: 5_000 });
    expect(none.json<any>().error.code).toBe("MIG_UNAUTHORIZED");

    const h = headers();
    h.set("Authorization", `Bearer ${await token({ sub: "u", tenant_id: "acme" })}`);
    const ack = await client.request("mig.v0_1.acme.events.orders.created", body, { timeout: 5_000, headers: h });
    expectEnvelope("PublishAck", ack.json<any>());
    const other = await client.request("mig.v0_1.globex.events.orders.created", body, { timeout: 5_000, headers: h });
    expect(other.json<any>().error.code).toBe("MIG_FORBIDDEN");
  });
});
