// The client over NATS in auth mode jwt, as a caller who holds only a tenant's bearer token uses it: the HTTP binding
// gives the tenant's bus user, the client connects with its inbox prefix, and every request, credit, ack and close
// carries the token (docs/bindings/nats.md, "Bus credentials in auth mode jwt").
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsEvents } from "../bindings/nats/events.ts";
import { startNatsBinding } from "../bindings/nats/server.ts";
import { connect, type MigClient, MigError } from "../client/index.ts";
import { defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const SECRET = "client-nats-jwt-test-secret-0123456789";

function token(tenant: string): Promise<string> {
  return new SignJWT({ tenant_id: tenant, scope: "capability:infer" })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("alice")
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(SECRET));
}

const count = defineStreamingCapability(
  anyDescriptor("test.jwt.count", ["server_stream"]),
  async (payload, { emit }) => {
    for (let i = 0; i < Number(payload.count); i++) await emit({ i });
    return { frames: Number(payload.count) };
  },
  anySchemas,
);

let t: TestRuntime;
let mig: MigClient;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  t = await startTestRuntime({ capabilities: [count], config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  const nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
  const events = startNatsEvents(t.runtime, t.runtime.authenticator);
  closers.push(
    () => events.close(),
    () => nats.close(),
  );
  const bearer = await token("acme");
  // The tenant's bus user, for the bearer token: the one way a caller with only a token gets onto this bus.
  const creds = await t.post("/mig/v0.1/nats/credentials", {}, { authorization: `Bearer ${bearer}` });
  expect(creds.status).toBe(200);
  mig = await connect(creds.body.url, {
    token: bearer,
    nats: { user: creds.body.user, pass: creds.body.password, inboxPrefix: creds.body.inbox_prefix },
  });
});

afterAll(async () => {
  await mig?.close();
  for (const close of closers) await close();
  await t?.stop();
});

describe("the client over NATS in auth mode jwt, with the tenant's bus user", () => {
  it("takes its tenant from the token and calls as that principal", async () => {
    expect((await mig.hello()).selected_binding).toBe("nats");
    const answer = await mig.invoke("observatory.models.infer", { input: "hello" });
    expect(answer.header.tenant_id).toBe("acme");
    expect(answer.payload).toMatchObject({ result: "ok" });
  });

  it("streams: its credits carry the opener's token, so every frame comes", async () => {
    const stream = mig.stream("test.jwt.count", { count: 600 });
    const seen: number[] = [];
    for await (const frame of stream) seen.push(Number(frame.payload?.i));
    expect(seen).toEqual(Array.from({ length: 600 }, (_, i) => i));
    expect(await stream.result).toEqual({ frames: 600 });
  });

  it("subscribes through its own inbox prefix and acknowledges with the token: more events than max_inflight arrive", async () => {
    for (let n = 1; n <= 12; n++) await mig.publish("jwt.orders", { n });
    const subscription = mig.subscribe("jwt.orders", { resumeCursor: 0, maxInflight: 4 });
    const seen: number[] = [];
    for await (const event of subscription) {
      seen.push(event.sequence);
      if (seen.length === 12) break;
    }
    expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  });

  it("bus credentials that are no bus user's: connect() refuses at once with MIG_UNAUTHORIZED", async () => {
    const other = await connect(t.runtime.natsUrl.replace("nats://", "nats://x:y@"), {
      token: await token("acme"),
    }).catch((err: unknown) => err);
    expect(other).toBeInstanceOf(MigError);
    expect((other as MigError).code).toBe("MIG_UNAUTHORIZED");
  });
});
