// GET /admin/v0.1/connections and GET /admin/v0.1/health/conformance against real runtimes: answers in the shape of the
// standard's admin OpenAPI, the admin scope in jwt mode, counts that follow streams and subscriptions as they open and
// close, and a conformance self-check that runs once at a time with a token of its own.
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { conformanceSelfCheck, SELF_CHECK_SUBJECT, SELF_CHECK_TENANT } from "../cli/self-check.ts";
import { demoFixtures } from "../runtime/provider/demo-provider.ts";
import { defineStreamingCapability } from "../runtime/provider/provider.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { expectError } from "./helpers/envelopes.ts";
import { type MigClients, migClients, streamInvoke, struct } from "./helpers/grpc.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";
import { StreamClient } from "./helpers/stream-client.ts";

const CONNECTIONS = "/admin/v0.1/connections";
const CONFORMANCE = "/admin/v0.1/health/conformance";

/** The response schemas of the two routes, from the standard's admin OpenAPI (the fixture names its source). */
const openapi = JSON.parse(readFileSync(new URL("./fixtures/admin-openapi-health.json", import.meta.url), "utf8"));
const ajv = new Ajv2020({ strict: true });
const schemaOf = (path: string) => openapi.paths[path].get.responses["200"].content["application/json"].schema;
const validators = {
  [CONNECTIONS]: ajv.compile(schemaOf(CONNECTIONS)),
  [CONFORMANCE]: ajv.compile(schemaOf(CONFORMANCE)),
};

function expectSchema(path: typeof CONNECTIONS | typeof CONFORMANCE, body: unknown): void {
  const validate = validators[path];
  expect(validate(body), JSON.stringify(validate.errors)).toBe(true);
}

/** A stream that sends one frame, then holds until it is cancelled: open for as long as the test wants. */
const held = defineStreamingCapability(
  anyDescriptor("test.admin.held", ["server_stream"]),
  async (_payload, { emit, signal }) => {
    await emit({ ready: true });
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    return {};
  },
  anySchemas,
);

async function getJson(t: TestRuntime, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${t.http.url}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as any };
}

interface Entry {
  id: string;
  protocol: string;
  kind: string;
  tenant_id?: string;
  actor?: string;
  remote_addr?: string;
  started_at?: string;
  meta?: Record<string, any>;
}

/** The connections of `kind` (of `tenant`, when given) that the route lists now. */
async function listed(t: TestRuntime, kind: string, tenant?: string, headers: Record<string, string> = {}) {
  const { status, body } = await getJson(
    t,
    `${CONNECTIONS}?kind=${kind}${tenant ? `&tenant_id=${tenant}` : ""}`,
    headers,
  );
  expect(status, JSON.stringify(body)).toBe(200);
  expectSchema(CONNECTIONS, body);
  return body.connections as Entry[];
}

const countIs = (t: TestRuntime, kind: string, n: number, tenant?: string, headers?: Record<string, string>) =>
  waitFor(`${n} ${kind} connections`, async () => (await listed(t, kind, tenant, headers)).length === n);

const cancelFrame = (streamId: string) => ({
  header: { tenant_id: "acme" },
  stream_id: streamId,
  capability: "test.admin.held",
  kind: "control",
  payload: { action: "cancel", reason: "the test is done with it" },
});

describe("GET /admin/v0.1/connections (auth mode none)", () => {
  let t: TestRuntime;
  let grpc: GrpcBinding;
  let clients: MigClients;
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities: [held] });
    grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
    clients = migClients(grpc.address);
  });
  afterAll(async () => {
    clients?.close();
    await grpc?.close();
    await t?.stop();
  });

  it("answers in the standard's shape; the socket it is asked on is an HTTP connection being answered", async () => {
    const { status, body } = await getJson(t, CONNECTIONS);
    expect(status).toBe(200);
    expectSchema(CONNECTIONS, body);
    expect(Date.parse(body.generated_at)).not.toBeNaN();
    expect(body.summary.total).toBe(body.connections.length);
    const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
    expect(sum(body.summary.by_kind)).toBe(body.summary.total);
    expect(sum(body.summary.by_protocol)).toBe(body.summary.total);
    // No composition root told this binding of a NATS binding.
    expect(body.summary.nats_binding_active).toBe(false);
    const asking = (body.connections as Entry[]).filter((c) => c.kind === "http_connection" && c.meta?.answering);
    expect(asking).toHaveLength(1);
    expect(asking[0]).toMatchObject({ protocol: "http", remote_addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(asking[0]!.tenant_id).toBeUndefined();
  });

  it("a WebSocket and a stream on it are listed while open, and no longer once each has ended", async () => {
    const ws = await StreamClient.open(t.http.url, { "x-tenant-id": "acme", "x-actor": "ada" });
    try {
      await countIs(t, "websocket", 1, "acme");
      const { streamId, messageId } = ws.start("test.admin.held", {});
      await ws.until("the first frame", () => ws.of(streamId).length > 0);
      const [socket] = await listed(t, "websocket");
      const streams = await listed(t, "ws_stream", "acme");
      expect(streams).toEqual([
        {
          id: expect.any(String),
          protocol: "http",
          kind: "ws_stream",
          tenant_id: "acme",
          actor: "ada",
          remote_addr: socket!.remote_addr,
          started_at: expect.any(String),
          meta: {
            stream_id: streamId,
            message_id: messageId,
            capability: "test.admin.held",
            mode: "server_stream",
            connection_id: socket!.meta!.connection_id,
          },
        },
      ]);
      // The upgraded socket is the WebSocket entry, not an HTTP connection too; the stream is not another binding's.
      const http = await listed(t, "http_connection");
      expect(http.map((c) => c.id)).not.toContain(socket!.meta!.connection_id);
      expect(await listed(t, "stream")).toEqual([]);

      ws.send(cancelFrame(streamId));
      await ws.ended(streamId);
      await countIs(t, "ws_stream", 0);
      expect(await listed(t, "websocket", "acme")).toHaveLength(1);
    } finally {
      ws.close();
    }
    await countIs(t, "websocket", 0);
  });

  it("an SSE subscription is listed under its tenant while open, and no longer once its client has gone", async () => {
    const sse = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/admin.connections.topic?tenant_id=globex`);
    try {
      await countIs(t, "sse_subscribe", 1, "globex");
      const [subscription] = await listed(t, "sse_subscribe");
      expect(subscription).toMatchObject({
        protocol: "http",
        tenant_id: "globex",
        meta: { topic: "admin.connections.topic", subscription_id: expect.any(String) },
      });
      expect(await listed(t, "sse_subscribe", "acme")).toEqual([]);
      // The runtime's own table holds it too; it is listed once, as the HTTP binding's.
      expect(t.runtime.subscriptions.list().map((s) => s.info.subscription_id)).toContain(
        subscription!.meta!.subscription_id,
      );
      expect(await listed(t, "subscription")).toEqual([]);
    } finally {
      sse.close();
    }
    await countIs(t, "sse_subscribe", 0);
  });

  it("a streaming INVOKE answered as SSE is listed while its client reads, and no longer once it has gone", async () => {
    const gone = new AbortController();
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/test.admin.held`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-tenant-id": "acme" },
      body: JSON.stringify({ payload: {}, stream_preference: "server_stream" }),
      signal: gone.signal,
    });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("event: mig-frame");
    const [stream] = await listed(t, "sse_stream", "acme");
    expect(stream).toMatchObject({ protocol: "http", meta: { capability: "test.admin.held", mode: "server_stream" } });
    expect(await listed(t, "stream")).toEqual([]);
    gone.abort();
    await countIs(t, "sse_stream", 0);
    await waitFor("the stream to end", () => t.runtime.work.streams.size === 0);
  });

  it("a gRPC stream is listed from the runtime's table, under its tenant, by a binding name that says it is not known which", async () => {
    const call = streamInvoke(clients);
    call.call.write({
      header: { tenant_id: "globex", mig_version: "0.1" },
      capability: "test.admin.held",
      kind: "FRAME_KIND_REQUEST",
      payload: struct({}),
    });
    await call.until("the first frame", () => call.messages.length > 0);
    const [stream] = await listed(t, "stream", "globex");
    expect(stream).toMatchObject({ protocol: "nats_or_grpc", kind: "stream", tenant_id: "globex" });
    expect(t.runtime.work.streams.has(stream!.meta!.message_id)).toBe(true);
    call.call.cancel();
    await countIs(t, "stream", 0);
  });

  it("filters by protocol and kind", async () => {
    const ws = await StreamClient.open(t.http.url, { "x-tenant-id": "acme" });
    try {
      await countIs(t, "websocket", 1);
      const { body } = await getJson(t, `${CONNECTIONS}?protocol=http&kind=websocket`);
      expect(body.connections.map((c: Entry) => c.kind)).toEqual(["websocket"]);
      expect(body.summary).toMatchObject({ total: 1, by_kind: { websocket: 1 }, by_protocol: { http: 1 } });
      expect((await getJson(t, `${CONNECTIONS}?protocol=nats`)).body.summary.total).toBe(0);
    } finally {
      ws.close();
    }
  });

  it("GET /admin/v0.1/health/conformance is 404 where no self-check was wired", async () => {
    expectError(await getJson(t, CONFORMANCE), 404, "MIG_NOT_FOUND");
  });
});

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";

function hsToken(sub: string, tenant: string, scope: string): Promise<string> {
  return new SignJWT({ sub, tenant_id: tenant, scope })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(SECRET));
}

const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` });

describe("auth mode jwt with an HS256 secret, wired as `mig start` wires it", () => {
  let t: TestRuntime;
  let grpc: GrpcBinding;
  let nats: NatsBinding;
  let events: NatsEventsBinding;
  const tokens: Record<string, Record<string, string>> = {};
  beforeAll(async () => {
    t = await startTestRuntime({
      capabilities: [held, ...demoFixtures()],
      config: { authMode: "jwt", jwtHs256Secret: SECRET },
    });
    nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
    events = startNatsEvents(t.runtime, t.runtime.authenticator);
    grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
    t.http.setAdminHooks({
      selfCheck: conformanceSelfCheck(t.runtime, { http: t.http.url, grpc: grpc.address, nats: true }),
      natsBinding: true,
    });
    tokens.acmeAdmin = bearer(await hsToken("acme-admin", "acme", "mig:admin"));
    tokens.operator = bearer(await hsToken("root", "ops", "mig:admin:global"));
    tokens.acme = bearer(await hsToken("ada", "acme", "capability:infer"));
    tokens.globex = bearer(await hsToken("grace", "globex", "capability:infer"));
  });
  afterAll(async () => {
    await grpc?.close();
    await events?.close();
    await nats?.close();
    await t?.stop();
  });

  it("both routes: 401 without a token, 403 without the admin scope", async () => {
    for (const path of [CONNECTIONS, CONFORMANCE, `${CONFORMANCE}?run=true`]) {
      expectError(await getJson(t, path), 401, "MIG_UNAUTHORIZED");
      expectError(await getJson(t, path, tokens.acme), 403, "MIG_FORBIDDEN");
    }
    // Refused before anything ran.
    expect((await getJson(t, CONFORMANCE, tokens.operator)).body.status).toBe("not_run");
  });

  it("a tenant's admin sees its tenant's connections and may name no other; the cross-tenant scope sees every tenant", async () => {
    const ws = await StreamClient.open(t.http.url, tokens.acme!);
    const sse = await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/admin.scoped.topic`, tokens.globex);
    try {
      const { streamId } = ws.start("test.admin.held", {});
      await ws.until("the first frame", () => ws.of(streamId).length > 0);
      await countIs(t, "sse_subscribe", 1, undefined, tokens.operator);

      const own = await getJson(t, CONNECTIONS, tokens.acmeAdmin);
      expect(own.status).toBe(200);
      expectSchema(CONNECTIONS, own.body);
      expect(own.body.summary.by_tenant).toEqual({ acme: 2 });
      expect(own.body.connections.map((c: Entry) => [c.kind, c.tenant_id, c.actor])).toEqual(
        expect.arrayContaining([
          ["websocket", "acme", "ada"],
          ["ws_stream", "acme", "ada"],
        ]),
      );
      expect(own.body.connections).toHaveLength(2);
      expectError(await getJson(t, `${CONNECTIONS}?tenant_id=globex`, tokens.acmeAdmin), 403, "MIG_FORBIDDEN");

      const all = await getJson(t, CONNECTIONS, tokens.operator);
      expect(all.body.summary).toMatchObject({ by_tenant: { acme: 2, globex: 1 }, nats_binding_active: true });
      expect(all.body.connections.filter((c: Entry) => c.kind === "sse_subscribe")).toEqual([
        expect.objectContaining({ tenant_id: "globex", actor: "grace" }),
      ]);
      ws.send(cancelFrame(streamId));
      await ws.ended(streamId);
    } finally {
      ws.close();
      sse.close();
    }
    await countIs(t, "websocket", 0, undefined, tokens.operator);
    await countIs(t, "sse_subscribe", 0, undefined, tokens.operator);
  });

  it("the self-check: not_run, then one run at a time, passing the Core profile with tokens the runtime signed for itself", async () => {
    const before = await getJson(t, CONFORMANCE, tokens.acmeAdmin);
    expect(before).toEqual({ status: 200, body: { status: "not_run" } });
    expectSchema(CONFORMANCE, before.body);

    const first = getJson(t, `${CONFORMANCE}?run=true`, tokens.acmeAdmin);
    await waitFor(
      "the run to start",
      async () => (await getJson(t, CONFORMANCE, tokens.acmeAdmin)).body.status === "running",
    );
    const second = await getJson(t, `${CONFORMANCE}?run=true`, tokens.operator);
    expect(second.status).toBe(202);
    expect(second.body).toEqual({ status: "running", running_since: expect.any(String) });

    const done = await first;
    expect(done.status).toBe(200);
    expectSchema(CONFORMANCE, done.body);
    const run = done.body.last_run;
    const failures = run.results.filter((r: any) => r.status === "fail" && !r.convention);
    expect(failures).toEqual([]);
    expect(done.body).toMatchObject({ status: "passed", core: true });
    expect(done.body.running_since).toBeUndefined();
    expect(run).toMatchObject({
      profile: "core",
      auth: "minted_token",
      bindings: ["http", "grpc", "nats"],
      failed: 0,
      // Every Core check ran, over all three bindings.
      skipped: 0,
      started_at: expect.any(String),
      finished_at: expect.any(String),
    });
    expect(run.passed).toBeGreaterThan(15);
    // The two tokens it signed carry what scoped DISCOVER needs: the check ran rather than skipped.
    expect(run.results.find((r: any) => r.id === "CORE-2.http.discover-scoped")?.status).toBe("pass");
    // One run: the second request started none.
    expect(run.results.filter((r: any) => r.id === "CORE-1.http.hello-negotiates")).toHaveLength(1);

    // It ran as its own tenant and subject, not with the token of the admin who asked.
    const audit = await waitFor("the self-check's audit records", async () => {
      const res = await getJson(t, `/admin/v0.1/audit?tenant=${SELF_CHECK_TENANT}&limit=1000`, tokens.operator);
      return res.body.records?.length > 0 ? (res.body.records as { actor: string }[]) : undefined;
    });
    const actors = new Set(audit.map((r) => r.actor));
    expect(actors).toContain(SELF_CHECK_SUBJECT);
    expect(actors).not.toContain("acme-admin");

    // The result stays until the next run.
    expect((await getJson(t, CONFORMANCE, tokens.acmeAdmin)).body).toEqual(done.body);
  }, 180_000);

  it("run must be true or false", async () => {
    expectError(await getJson(t, `${CONFORMANCE}?run=yes`, tokens.acmeAdmin), 400, "MIG_INVALID_REQUEST");
  });
});

describe("auth mode jwt with only a public key", () => {
  let t: TestRuntime;
  let keyDir: string;
  let admin: Record<string, string>;
  beforeAll(async () => {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    keyDir = mkdtempSync(join(tmpdir(), "mig-admin-key-"));
    const keyFile = join(keyDir, "jwt.pub");
    writeFileSync(keyFile, publicKey.export({ type: "spki", format: "pem" }));
    t = await startTestRuntime({ config: { authMode: "jwt", jwtPublicKeyFile: keyFile } });
    t.http.setAdminHooks({ selfCheck: conformanceSelfCheck(t.runtime, { http: t.http.url }) });
    admin = bearer(
      await new SignJWT({ sub: "root", tenant_id: "ops", scope: "mig:admin:global" })
        .setProtectedHeader({ alg: "EdDSA" })
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(privateKey),
    );
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it("the self-check does not run: the runtime cannot sign a token for itself, and says so", async () => {
    const res = await getJson(t, `${CONFORMANCE}?run=true`, admin);
    expect(res.status).toBe(200);
    expectSchema(CONFORMANCE, res.body);
    expect(res.body).toEqual({
      status: "skipped",
      last_run: {
        started_at: expect.any(String),
        finished_at: expect.any(String),
        duration_ms: expect.any(Number),
        reason: expect.stringMatching(/MIG_JWT_HS256_SECRET.*mig conformance/),
      },
    });
  });
});
