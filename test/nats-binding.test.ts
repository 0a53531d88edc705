// The public NATS binding: the standard's smoke checks against `mig start`, tenancy, auth and bad input over real subjects.
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { ADMISSION_CHUNK } from "../runtime/bus/chunked-admission.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { expectEnvelope } from "./helpers/envelopes.ts";
import { natsClient, natsRequest, rawRequest, runtimeBusClient } from "./helpers/nats.ts";
import { type MigProcess, startMig } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

/** An open schema, and a unary descriptor using it, for the tests' own capabilities. */
const openSchema = { "schema://test/open/v1": { type: "object" } };
const openDescriptor = (id: string) => ({
  id,
  version: "1.0.0",
  modes: ["unary" as const],
  input_schema_uri: "schema://test/open/v1",
  output_schema_uri: "schema://test/open/v1",
  auth_scopes: [],
});

describe("the standard's NATS smoke checks against `mig start`", () => {
  let mig: MigProcess;
  let nc: NatsConnection;
  beforeAll(async () => {
    mig = startMig(["start"]);
    const line = await mig.waitForLog("NATS binding listening");
    expect(line.subjects).toContain("mig.v0_1.*.invoke.>");
    nc = await natsClient(String(line.url));
  });
  afterAll(async () => {
    await nc?.close();
    await mig?.stop("SIGTERM");
  });

  it("answers hello, discover and invoke of observatory.models.infer without an error key", async () => {
    const checks: [string, unknown][] = [
      [
        "mig.v0_1.acme.hello",
        { header: { tenant_id: "acme" }, supported_versions: ["0.1"], requested_bindings: ["nats"] },
      ],
      ["mig.v0_1.acme.discover", { header: { tenant_id: "acme" } }],
      [
        "mig.v0_1.acme.invoke.observatory.models.infer",
        { header: { tenant_id: "acme" }, payload: { input: "health-check" } },
      ],
    ];
    const answers = [];
    for (const [subject, body] of checks) answers.push(await natsRequest(nc, subject, body));
    for (const answer of answers) expect(answer.body.error, JSON.stringify(answer.body)).toBeUndefined();
    const [hello, discover, invoke] = answers;
    expect(hello!.body.selected_binding).toBe("nats");
    expect(discover!.body.capabilities.map((c: { id: string }) => c.id)).toContain("observatory.models.infer");
    expect(invoke!.body.payload.result).toBe("ok");
    // MIG header fields are mirrored into the NATS headers of the reply.
    expect(invoke!.headers.message_id).toBe(invoke!.body.header.message_id);
    expect(invoke!.headers.tenant_id).toBe("acme");
    expect(invoke!.headers.mig_version).toBe("0.1");
  });
});

describe("the NATS binding of one runtime", () => {
  let rt: TestRuntime;
  let binding: NatsBinding;
  let nc: NatsConnection;
  /** test.counted's calls, in the order they ran: the request's number and how many messages the runtime had handed to the bus. */
  const counted: { n: number; sent: number }[] = [];
  beforeAll(async () => {
    const countedCapability = defineCapability(
      openDescriptor("test.counted"),
      (payload) => {
        counted.push({ n: Number(payload.n), sent: rt.runtime.bus.nc.stats().outMsgs });
        return { n: payload.n };
      },
      openSchema,
    );
    rt = await startTestRuntime({ capabilities: [countedCapability] });
    binding = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
    nc = await natsClient(rt.runtime.natsUrl);
  });
  afterAll(async () => {
    await nc?.close();
    await binding?.close();
    await rt?.stop();
  });

  const infer = "mig.v0_1.acme.invoke.observatory.models.infer";

  it("takes the tenant from the subject and refuses a header that names another one", async () => {
    const ok = await natsRequest(nc, infer, { payload: { input: "x" } });
    expect(ok.body.header.tenant_id).toBe("acme");
    const other = await natsRequest(nc, infer, { header: { tenant_id: "globex" }, payload: { input: "x" } });
    expectEnvelope("ErrorEnvelope", other.body);
    expect(other.body.error.code).toBe("MIG_FORBIDDEN");
    expect(other.headers.mig_error_code).toBe("MIG_FORBIDDEN");
  });

  it("reads MIG header fields from NATS headers and mirrors them back", async () => {
    const id = randomUUID();
    const answer = await natsRequest(nc, infer, { payload: { input: "x" } }, { message_id: id, session_id: "s-1" });
    expect(answer.body.header.message_id).toBe(id);
    expect(answer.headers.message_id).toBe(id);
    expect(answer.headers.session_id).toBe("s-1");
  });

  it("answers a request whose header value cannot be a NATS header line, leaving that value out of the NATS headers", async () => {
    const answer = await natsRequest(nc, infer, {
      header: { tenant_id: "acme", session_id: "two\r\nlines" },
      payload: { input: "x" },
    });
    expect(answer.body.header.session_id).toBe("two\r\nlines");
    expect(answer.headers.session_id).toBeUndefined();
    expect(answer.headers.message_id).toBe(answer.body.header.message_id);
    const failed = await natsRequest(nc, "mig.v0_1.acme.invoke.no.such.capability", {
      header: { tenant_id: "acme", idempotency_key: "k\n1" },
      payload: {},
    });
    expect(failed.headers.mig_error_code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    expect(failed.headers.idempotency_key).toBeUndefined();
  });

  it("answers heartbeat and cancel", async () => {
    const beat = await natsRequest(nc, "mig.v0_1.acme.control.heartbeat", { interval_ms: 5000 });
    expect(beat.body.suggested_interval_ms).toBe(5000);
    const target = randomUUID();
    const cancel = await natsRequest(nc, `mig.v0_1.acme.control.cancel.${target}`, {});
    expect(cancel.body).toMatchObject({ target_message_id: target, accepted: false, status: "not_found" });
  });

  it("answers a capability nobody serves with an error envelope, not silence", async () => {
    const answer = await natsRequest(nc, "mig.v0_1.acme.invoke.nobody.serves.this", { payload: {} });
    expect(answer.body.error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
  });

  it("answers bad bodies with MIG_INVALID_REQUEST envelopes", async () => {
    const bodies: unknown[] = [
      "{not json",
      "[1,2]",
      '"text"',
      { payload: "not an object" },
      { header: "nope", payload: {} },
      { header: { deadline_ms: -5 }, payload: {} },
    ];
    for (const body of bodies) {
      const answer = await natsRequest(nc, infer, body);
      expectEnvelope("ErrorEnvelope", answer.body);
      expect(answer.body.error.code, JSON.stringify(body)).toBe("MIG_INVALID_REQUEST");
      expect(answer.body.header.tenant_id).toBe("acme");
    }
  });

  it("refuses wildcard and over-long subject tokens", async () => {
    const url = rt.runtime.natsUrl;
    const long = "t".repeat(65);
    const answers = [
      await rawRequest(url, "mig.v0_1.*.hello", "{}").then((a) => a.body),
      await rawRequest(url, "mig.v0_1.acme.invoke.observatory.*.infer", '{"payload":{"input":"x"}}').then(
        (a) => a.body,
      ),
      await rawRequest(url, "mig.v0_1.acme.invoke.>", '{"payload":{"input":"x"}}').then((a) => a.body),
      await rawRequest(url, "mig.v0_1.acme.control.cancel.*", "{}").then((a) => a.body),
      await natsRequest(nc, `mig.v0_1.${long}.hello`, {}).then((a) => a.body),
      await natsRequest(nc, `mig.v0_1.acme.invoke.${"c".repeat(201)}.x`, { payload: {} }).then((a) => a.body),
      await natsRequest(nc, "mig.v0_1.acme.control.cancel.not-a-uuid", {}).then((a) => a.body),
    ];
    for (const answer of answers) {
      expectEnvelope("ErrorEnvelope", answer);
      expect(answer.error.code, JSON.stringify(answer)).toBe("MIG_INVALID_REQUEST");
    }
  });

  it("leaves an empty token to the server, which answers at once that nobody serves it", async () => {
    // nats-server does not route a subject with an empty token to any subscriber: the requester gets
    // the no-responders status (503) immediately rather than a silent wait.
    for (const subject of ["mig.v0_1.acme.invoke.observatory..infer", "mig.v0_1..hello"]) {
      const answer = await rawRequest(rt.runtime.natsUrl, subject, "{}");
      expect(answer.status, subject).toBe(503);
    }
  });

  it("counts and drops a request without a reply subject or with one outside the inboxes, and keeps serving", async () => {
    const before = await dropped(rt);
    nc.publish(infer, JSON.stringify({ payload: { input: "x" } }));
    // A reply-to on an internal subject would make the runtime publish there for the caller: never answered.
    nc.publish(infer, JSON.stringify({ payload: { input: "x" } }), { reply: "_MIG.work.observatory.models.infer" });
    nc.publish(infer, JSON.stringify({ payload: { input: "x" } }), { reply: "_INBOX_globex.stolen" });
    await waitFor("the drops to be counted", async () => (await dropped(rt)) === before + 3);
    const after = await natsRequest(nc, infer, { payload: { input: "still here" } });
    expect(after.body.payload.echo.input).toBe("still here");
  });

  it("answers a burst of 200 in the order sent, handing each chunk's answers to the bus before the next chunk starts", async () => {
    const count = 200;
    const before = rt.runtime.bus.nc.stats().outMsgs;
    // One caller's requests, flushed together: nats-server delivers them in this order.
    const answers = await Promise.all(
      Array.from({ length: count }, (_, n) => natsRequest(nc, "mig.v0_1.acme.invoke.test.counted", { payload: { n } })),
    );
    answers.forEach((answer, n) => {
      expect(answer.body.error, JSON.stringify(answer.body)).toBeUndefined();
      expect(answer.body.payload.n).toBe(n);
    });
    expect(counted.map((c) => c.n)).toEqual(Array.from({ length: count }, (_, n) => n));
    // Without chunks all 200 would run before the first answer left. With them, only the requests started in the
    // same turn (at most one chunk) can still be waiting for their answers to be handed to the bus.
    for (const { n, sent } of counted)
      expect(sent - before, `request ${n}`).toBeGreaterThanOrEqual(n - ADMISSION_CHUNK);
  });
});

/** A runtime of its own with `capabilities` and its NATS binding, for one test; stopped afterwards. */
async function withOwnRuntime(
  options: Parameters<typeof startTestRuntime>[0],
  test: (nc: NatsConnection) => Promise<void>,
): Promise<void> {
  const rt = await startTestRuntime(options);
  const binding = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
  const nc = await natsClient(rt.runtime.natsUrl);
  try {
    await test(nc);
  } finally {
    await nc.close();
    await binding.close();
    await rt.stop();
  }
}

describe("the NATS binding with an answer larger than the bus carries", () => {
  it("answers MIG_INTERNAL naming the sizes, and keeps serving", async () => {
    const big = defineCapability(
      openDescriptor("test.big"),
      (payload) => ({ blob: "x".repeat(Number(payload.bytes)) }),
      openSchema,
    );
    await withOwnRuntime({ capabilities: [big] }, async (nc) => {
      const subject = "mig.v0_1.acme.invoke.test.big";
      const tooBig = await natsRequest(nc, subject, {
        header: { tenant_id: "acme" },
        payload: { bytes: 9 * 1024 * 1024 },
      });
      expect(tooBig.headers.mig_error_code).toBe("MIG_INTERNAL");
      expect(tooBig.body.error.message).toMatch(/max_payload/);
      expect(tooBig.body.error.details.answer_bytes).toBeGreaterThan(9 * 1024 * 1024);
      const fine = await natsRequest(nc, subject, { header: { tenant_id: "acme" }, payload: { bytes: 1024 } });
      expect(fine.body.payload.blob).toHaveLength(1024);
    });
  });
});

describe("the NATS binding under a flood past its capacity", () => {
  it("answers every request, the excess with MIG_BACKPRESSURE, never more in flight than the capacity, and serves again after", async () => {
    let running = 0;
    let most = 0;
    const slow = defineCapability(
      openDescriptor("test.slow"),
      async () => {
        most = Math.max(most, ++running);
        // Long enough that all 300 arrive while the first ones still run, even on a slow machine.
        await new Promise((resolve) => setTimeout(resolve, 300));
        running--;
        return { done: true };
      },
      openSchema,
    );
    await withOwnRuntime({ config: { capacity: 40, tenantMaxInflight: 40 }, capabilities: [slow] }, async (nc) => {
      const subject = "mig.v0_1.acme.invoke.test.slow";
      // 300 at once: more than the capacity wait to start, so all of them start together and the excess is shed.
      const answers = await Promise.all(Array.from({ length: 300 }, () => natsRequest(nc, subject, { payload: {} })));
      const done = answers.filter((a) => a.body.payload?.done === true).length;
      const shed = answers.filter((a) => a.body.error?.code === "MIG_BACKPRESSURE").length;
      expect(done + shed).toBe(300);
      expect(done).toBeGreaterThanOrEqual(40);
      expect(shed).toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(40);
      expect((await natsRequest(nc, subject, { payload: {} })).body.payload.done).toBe(true);
    });
  });
});

describe("the NATS binding with jwt auth", () => {
  const secret = "nats-binding-test-secret-0123456789";
  let rt: TestRuntime;
  let binding: NatsBinding;
  let nc: NatsConnection;
  beforeAll(async () => {
    rt = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: secret } });
    binding = await startNatsBinding(rt.runtime, rt.runtime.authenticator);
    nc = await runtimeBusClient(rt.runtime);
  });
  afterAll(async () => {
    await nc?.close();
    await binding?.close();
    await rt?.stop();
  });

  const token = (tenant: string) =>
    new SignJWT({ tenant_id: tenant, scope: "capability:infer" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("alice")
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(secret));

  it("reads the bearer token from the Authorization header and holds the subject's tenant to it", async () => {
    const body = { payload: { input: "x" } };
    const none = await natsRequest(nc, "mig.v0_1.acme.invoke.observatory.models.infer", body);
    expect(none.body.error.code).toBe("MIG_UNAUTHORIZED");
    const ok = await natsRequest(nc, "mig.v0_1.acme.invoke.observatory.models.infer", body, {
      Authorization: `Bearer ${await token("acme")}`,
    });
    expect(ok.body.payload.result).toBe("ok");
    const elsewhere = await natsRequest(nc, "mig.v0_1.globex.invoke.observatory.models.infer", body, {
      Authorization: `Bearer ${await token("acme")}`,
    });
    expect(elsewhere.body.error.code).toBe("MIG_FORBIDDEN");
  });
});

async function dropped(rt: TestRuntime): Promise<number> {
  const metric = await rt.runtime.metrics.natsDropped.get();
  return metric.values.reduce((sum, v) => sum + v.value, 0);
}
