// The live console's API (docs/console.md) on real runtimes: the page's files, the snapshot's aggregates as work comes
// and goes, the live feed, the admin guard in jwt mode (and what a tenant's admin sees), and refused queries.
import { connect, createInbox, type NatsConnection } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { Authenticator } from "../runtime/policy/auth.ts";
import { anonymousPrincipal } from "../runtime/protocol/principal.ts";
import { demoFixtures, observatoryInfer } from "../runtime/provider/demo-provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { expectError } from "./helpers/envelopes.ts";
import { natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";

const SNAPSHOT = "/admin/v0.1/console/snapshot";
const FEED = "/admin/v0.1/console/events";

async function snapshotOf(t: TestRuntime, query = "", headers: Record<string, string> = {}) {
  const res = await fetch(`${t.http.url}${SNAPSHOT}${query}`, { headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

describe("the console in auth mode none", () => {
  let t: TestRuntime;
  let natsEvents: NatsEventsBinding;
  let nc: NatsConnection;
  beforeAll(async () => {
    t = await startTestRuntime({ capabilities: demoFixtures(), config: { capacity: 4096 } });
    natsEvents = startNatsEvents(t.runtime, new Authenticator("none"));
    nc = await connect({ servers: t.runtime.natsUrl });
  });
  afterAll(async () => {
    await nc?.close();
    await natsEvents?.close();
    await t?.stop();
  });

  it("serves the page, its script and its style sheet from the repository, each with its type and a strict policy", async () => {
    const wanted: [string, RegExp][] = [
      ["/console", /^text\/html/],
      ["/console/console.js", /^text\/javascript/],
      ["/console/console.css", /^text\/css/],
    ];
    for (const [path, type] of wanted) {
      const res = await fetch(`${t.http.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type")).toMatch(type);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      const policy = res.headers.get("content-security-policy")!;
      expect(policy).toContain("default-src 'none'");
      expect(policy).toContain("script-src 'self'");
      expect(policy).toContain("connect-src 'self'");
      expect(policy).toContain("frame-ancestors 'none'");
      const text = await res.text();
      // No data in the shell, nothing from another host.
      expect(text).not.toContain(t.runtime.serverId);
      expect(text).not.toMatch(/https?:\/\//);
    }
    const html = await (await fetch(`${t.http.url}/console`)).text();
    expect(html).toContain('src="/console/console.js"');
    expect(html).toContain('href="/console/console.css"');
    expect(html).not.toMatch(/<script>|<style>|style="/);
    const missing = await t.get("/console/other.js");
    expectError({ status: missing.status, body: JSON.parse(missing.text) }, 404, "MIG_NOT_FOUND");
  });

  it("shows the capabilities with who serves them and their health, and the process's work", async () => {
    const { status, body } = await snapshotOf(t);
    expect(status).toBe(200);
    expect(body.server_id).toBe(t.runtime.serverId);
    expect(body.scope).toEqual({ tenant_id: null, every_tenant: true, operator: true });
    expect(body.limit).toBe(50);
    const infer = body.capabilities.find((c: any) => c.id === "observatory.models.infer");
    expect(infer).toMatchObject({ version: "1.0.0", health: "ok", in_flight: 0 });
    expect(infer.providers).toEqual([{ provider_id: t.runtime.serverId, kind: "local", silent_ms: 0, health: "live" }]);
    expect(body.capabilities.map((c: any) => c.id)).toContain("mig.fixture.slow");
    expect(body.work).toMatchObject({ capacity: t.runtime.config.capacity, streams: 0, subscriptions: 0 });
    expect(body.actors.shown).toBe(true);
    expect(body.errors.shown).toBe(true);
    expect(Array.isArray(body.audit.records)).toBe(true);
  });

  it("counts invocations in flight by kind and state, then keeps their final states among the recently finished", async () => {
    const finishedBefore = (await snapshotOf(t)).body.actors.recently_finished.by_state.find(
      (f: any) => f.kind === "invocation" && f.state === "completed",
    );
    const calls = [1, 2, 3].map((n) =>
      t.post("/mig/v0.1/invoke/mig.fixture.slow", {
        header: { tenant_id: "acme" },
        payload: { delay_ms: 1500, tag: `slow-${n}` },
      }),
    );
    const during = await waitFor("three invocations in flight", async () => {
      const { body } = await snapshotOf(t);
      return body.work.invocations_in_flight === 3 ? body : undefined;
    });
    expect(during.capabilities.find((c: any) => c.id === "mig.fixture.slow").in_flight).toBe(3);
    const liveInvocations = during.actors.by_state
      .filter((s: any) => s.kind === "invocation")
      .reduce((sum: number, s: any) => sum + s.live, 0);
    expect(liveInvocations).toBe(3);
    expect(during.actors.oldest.filter((a: any) => a.kind === "invocation")).toHaveLength(3);

    for (const res of await Promise.all(calls)) expect(res.status).toBe(200);
    const after = await waitFor("the invocations among the finished", async () => {
      const { body } = await snapshotOf(t);
      const completed = body.actors.recently_finished.by_state.find(
        (f: any) => f.kind === "invocation" && f.state === "completed",
      );
      return completed && completed.count >= (finishedBefore?.count ?? 0) + 3 ? body : undefined;
    });
    expect(after.work.invocations_in_flight).toBe(0);
    expect(after.actors.by_state.filter((s: any) => s.kind === "invocation" && s.live > 0)).toEqual([]);
    const newest = after.actors.recently_finished.newest.filter((f: any) => f.kind === "invocation").slice(0, 3);
    expect(newest.map((f: any) => f.state)).toEqual(["completed", "completed", "completed"]);
    for (const f of newest) expect(f.lived_ms).toBeGreaterThan(0);
  });

  it("stays a few rows with thousands of live actors: counts by kind and state, ten oldest, bounded lists", async () => {
    const LIVE = 2000;
    const context = { principal: anonymousPrincipal(), tenant: "acme", binding: "http" as const };
    const calls = Array.from({ length: LIVE }, (_, n) =>
      t.runtime.invoke(
        { header: { tenant_id: "acme" }, payload: { delay_ms: 5000, tag: `many-${n}` } },
        context,
        "mig.fixture.slow",
      ),
    );
    const during = await waitFor("the invocations live", async () => {
      const { body } = await snapshotOf(t);
      return body.work.invocations_in_flight === LIVE ? body : undefined;
    });
    expect(during.actors.live).toBeGreaterThanOrEqual(LIVE);
    const liveRows = during.actors.by_state.filter((s: any) => s.kind === "invocation" && s.live > 0);
    expect(liveRows.reduce((sum: number, s: any) => sum + s.live, 0)).toBe(LIVE);
    // A row per state, not per actor: the invocation actor has six states.
    expect(during.actors.by_state.filter((s: any) => s.kind === "invocation").length).toBeLessThanOrEqual(6);
    expect(during.actors.oldest).toHaveLength(10);
    expect(during.capabilities.find((c: any) => c.id === "mig.fixture.slow").in_flight).toBe(LIVE);
    // The whole snapshot stays small whatever the number of actors (its audit records are the largest part).
    expect(JSON.stringify(during).length).toBeLessThan(64 * 1024);
    const answers = await Promise.all(calls);
    expect(answers.every((a) => a.payload.slept_ms === 5000)).toBe(true);
    const after = await waitFor("the invocations finished", async () => {
      const { body } = await snapshotOf(t);
      return body.work.invocations_in_flight === 0 ? body : undefined;
    });
    // The ring keeps the last 256 ends, not all of them.
    expect(after.actors.recently_finished.count).toBe(256);
  });

  it("shows an open stream with its credit and state", async () => {
    const controller = new AbortController();
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/mig.fixture.count`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        header: { tenant_id: "acme" },
        payload: { count: 3, interval_ms: 10_000 },
        stream_preference: "server_stream",
      }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    try {
      const streams = await waitFor("the stream", async () => {
        const { body } = await snapshotOf(t);
        return body.streams.total === 1 ? body.streams : undefined;
      });
      expect(streams.paused).toBe(0);
      expect(streams.list).toHaveLength(1);
      expect(streams.list[0]).toMatchObject({
        tenant_id: "acme",
        capability: "mig.fixture.count",
        runs_here: true,
        paused: false,
        window: t.runtime.config.streamWindow,
        credit: t.runtime.config.streamWindow,
      });
      expect(typeof streams.list[0].state).toBe("string");
    } finally {
      controller.abort();
    }
    await waitFor("the stream gone", async () => (await snapshotOf(t)).body.streams.total === 0);
  });

  it("shows a subscription's lag grow while its subscriber gives no credit, and counts error codes", async () => {
    const topic = "console.lag";
    const inbox = createInbox();
    const delivered: unknown[] = [];
    const deliveries = nc.subscribe(inbox, { callback: (_e, msg) => void delivered.push(msg) });
    await nc.flush();
    // max_inflight 1 and no ack: after the first event the subscriber has no credit left, and the rest wait.
    const opened = await natsRequest(nc, `mig.v0_1.acme.subscribe.${topic}`, {
      header: { tenant_id: "acme" },
      deliver_subject: inbox,
      max_inflight: 1,
    });
    expect(opened.body.error).toBeUndefined();
    const id = opened.body.subscription_id as string;
    const publish = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const ack = await t.post(`/mig/v0.1/publish/${topic}`, { header: { tenant_id: "acme" }, payload: { i } });
        expect(ack.status).toBe(200);
      }
    };
    const rowOf = async () => (await snapshotOf(t)).body.subscriptions.list.find((s: any) => s.subscription_id === id);

    await publish(3);
    const first = await waitFor("a lag of 2", async () => {
      const row = await rowOf();
      return row?.lag === 2 && row.state === "paused" ? row : undefined;
    });
    expect(first).toMatchObject({
      tenant_id: "acme",
      topic,
      last_sequence: 1,
      topic_last_sequence: 3,
      max_inflight: 1,
    });
    await publish(4);
    const second = await waitFor("a lag of 6", async () => {
      const row = await rowOf();
      return row?.lag === 6 ? row : undefined;
    });
    expect(second).toMatchObject({ state: "paused", last_sequence: 1, topic_last_sequence: 7 });
    const { body } = await snapshotOf(t);
    expect(body.subscriptions).toMatchObject({ total: 1, paused: 1, lag_total: 6 });
    expect(delivered).toHaveLength(1);

    // An error answered is counted under its code.
    const refused = await t.post("/mig/v0.1/invoke/no.such.capability", { header: { tenant_id: "acme" }, payload: {} });
    expect(refused.status).toBe(404);
    const unsupported = await waitFor("the error counted", async () =>
      (await snapshotOf(t)).body.errors.by_code.find((e: any) => e.code === refused.body.error.code),
    );
    expect(unsupported.total).toBeGreaterThanOrEqual(1);
    expect(unsupported.by_operation.invoke).toBeGreaterThanOrEqual(1);

    await natsRequest(nc, `mig.v0_1.acme.subscription.${id}.close`, {});
    deliveries.unsubscribe();
    await waitFor("the subscription gone", async () => (await snapshotOf(t)).body.subscriptions.total === 0);
  });

  it("lists at most `limit` rows and says how many there are", async () => {
    const subscribers = await Promise.all(
      [1, 2, 3].map(() => SseClient.open(`${t.http.url}/mig/v0.1/subscribe/console.many?tenant_id=acme`)),
    );
    try {
      const subscriptions = await waitFor("three subscriptions", async () => {
        const { body } = await snapshotOf(t, "?limit=2");
        return body.subscriptions.total === 3 ? body.subscriptions : undefined;
      });
      expect(subscriptions.list).toHaveLength(2);
      expect(subscriptions.truncated).toBe(true);
    } finally {
      for (const s of subscribers) s.close();
    }
  });

  it("pushes the snapshot as SSE, one snapshot per round shared by every listener of one scope", async () => {
    const a = await SseClient.open(`${t.http.url}${FEED}`);
    const b = await SseClient.open(`${t.http.url}${FEED}`);
    try {
      const snapshots = (client: SseClient) => client.frames.filter((f) => f.event === "snapshot");
      await waitFor(
        "four snapshots to the first, two to the second",
        () => snapshots(a).length >= 4 && snapshots(b).length >= 2,
      );
      const stamps = (client: SseClient) => snapshots(client).map((f) => JSON.parse(f.data!).generated_at as string);
      const first = stamps(a);
      // Each snapshot is newer than the one before, and the second listener was sent the first one's, not its own.
      expect([...first].sort()).toEqual(first);
      expect(new Set(first).size).toBe(first.length);
      for (const stamp of stamps(b).slice(0, 2)) expect(first).toContain(stamp);
      const body = JSON.parse(snapshots(a)[0]!.data!);
      expect(body.server_id).toBe(t.runtime.serverId);
    } finally {
      a.close();
      b.close();
    }
  });

  it("refuses unknown query parameters and values out of range with a sentence, on both routes", async () => {
    const bad = [
      ["?tenant=acme", /unknown query parameter "tenant"/],
      ["?limit=0", /limit must be an integer between 1 and 500/],
      ["?limit=501", /limit must be an integer between 1 and 500/],
      ["?limit=ten", /limit must be an integer/],
      ["?limit=2&limit=3", /given more than once/],
      ["?tenant_id=no%20spaces", /tenant_id/],
    ] as const;
    for (const [query, message] of bad) {
      for (const path of [SNAPSHOT, FEED]) {
        const res = await fetch(`${t.http.url}${path}${query}`);
        const body = await res.json();
        expectError({ status: res.status, body }, 400, "MIG_INVALID_REQUEST");
        expect(body.error.message, `${path}${query}`).toMatch(message);
      }
    }
    const post = await t.post(SNAPSHOT, {});
    expectError(post, 405, "MIG_INVALID_REQUEST");
  });
});

describe("a capability a worker serves", () => {
  let gateway: TestRuntime;
  let workerRuntime: MigRuntime;
  let host: WorkerHost;
  const ID = "console.worker.infer";
  beforeAll(async () => {
    gateway = await startTestRuntime();
    const config = loadConfig({ natsUrl: gateway.runtime.natsUrl, dataDir: gateway.dataDir, logLevel: "silent" }, {});
    workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
    host = await WorkerHost.start(
      workerRuntime,
      [{ ...observatoryInfer, descriptor: { ...observatoryInfer.descriptor, id: ID } }],
      { heartbeatMs: 500 },
    );
  });
  afterAll(async () => {
    await host?.stop();
    await workerRuntime?.stop();
    await gateway?.stop();
  });

  it("shows the worker as its live provider, and the capability gone once the worker leaves", async () => {
    const capability = await waitFor("the worker's capability", async () =>
      (await snapshotOf(gateway)).body.capabilities.find((c: any) => c.id === ID),
    );
    expect(capability.health).toBe("ok");
    expect(capability.providers).toHaveLength(1);
    expect(capability.providers[0]).toMatchObject({ kind: "worker", health: "live" });
    expect(capability.providers[0].provider_id).toEqual(expect.any(String));
    // The gateway's own capability is served here, not by the worker.
    const local = (await snapshotOf(gateway)).body.capabilities.find((c: any) => c.id === "observatory.models.infer");
    expect(local.providers.map((p: any) => p.kind)).toEqual(["local"]);

    await host.stop();
    await waitFor("the capability gone", async () =>
      (await snapshotOf(gateway)).body.capabilities.every((c: any) => c.id !== ID),
    );
  });
});

describe("the console in auth mode jwt", () => {
  const SECRET = "a-console-test-secret-long-enough-for-hs256";
  let t: TestRuntime;
  const open: SseClient[] = [];
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .setIssuedAt()
      .setExpirationTime("10 minutes")
      .sign(new TextEncoder().encode(SECRET));
  const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` });

  beforeAll(async () => {
    t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
    // One subscription of each tenant, over SSE with each tenant's token.
    for (const tenant of ["acme", "globex"]) {
      const jwt = await token({ sub: `${tenant}-reader`, tenant_id: tenant, scope: "events:subscribe" });
      open.push(await SseClient.open(`${t.http.url}/mig/v0.1/subscribe/console.jwt`, bearer(jwt)));
    }
  });
  afterAll(async () => {
    for (const s of open) s.close();
    await t?.stop();
  });

  it("serves the page without a token: it holds no data", async () => {
    const res = await fetch(`${t.http.url}/console`);
    expect(res.status).toBe(200);
  });

  it("refuses a caller without a token (401) and one without the admin scope (403), on both routes", async () => {
    const plain = await token({ sub: "alice", tenant_id: "acme", scope: "capability:infer" });
    for (const path of [SNAPSHOT, FEED]) {
      const none = await fetch(`${t.http.url}${path}`);
      expectError({ status: none.status, body: await none.json() }, 401, "MIG_UNAUTHORIZED");
      const forbidden = await fetch(`${t.http.url}${path}`, { headers: bearer(plain) });
      const body = await forbidden.json();
      expectError({ status: forbidden.status, body }, 403, "MIG_FORBIDDEN");
      expect(body.error.message).toContain(t.runtime.config.adminScope);
    }
  });

  it("shows a tenant's admin its own tenant only: no actors, no process-wide errors, its subscriptions and records", async () => {
    const admin = await token({ sub: "acme-admin", tenant_id: "acme", scope: t.runtime.config.adminScope });
    const { status, body } = await waitFor("both subscriptions open", async () => {
      const answer = await snapshotOf(t, "", bearer(admin));
      return answer.body.subscriptions?.total === 1 ? answer : undefined;
    });
    expect(status).toBe(200);
    expect(body.scope).toEqual({ tenant_id: "acme", every_tenant: false, operator: false });
    expect(body.actors.shown).toBe(false);
    expect(body.actors.reason).toContain(t.runtime.config.adminGlobalScope);
    expect(body.errors.shown).toBe(false);
    expect(body.subscriptions.list.map((s: any) => s.tenant_id)).toEqual(["acme"]);
    expect(body.audit.records.length).toBeGreaterThan(0);
    for (const record of body.audit.records) expect(record.tenant).toBe("acme");

    const other = await snapshotOf(t, "?tenant_id=globex", bearer(admin));
    expectError({ status: other.status, body: other.body }, 403, "MIG_FORBIDDEN");
    const own = await snapshotOf(t, "?tenant_id=acme", bearer(admin));
    expect(own.status).toBe(200);
  });

  it("shows the cross-tenant admin every tenant, the actors and the errors", async () => {
    const operator = await token({ sub: "ops", tenant_id: "acme", scope: t.runtime.config.adminGlobalScope });
    const { status, body } = await waitFor("both subscriptions", async () => {
      const answer = await snapshotOf(t, "", bearer(operator));
      return answer.body.subscriptions?.total === 2 ? answer : undefined;
    });
    expect(status).toBe(200);
    expect(body.scope).toEqual({ tenant_id: null, every_tenant: true, operator: true });
    expect(body.actors.shown).toBe(true);
    expect(body.actors.by_state.some((s: any) => s.kind === "subscription" && s.live >= 2)).toBe(true);
    expect(body.errors.shown).toBe(true);
    // The refusals of the test before are counted.
    expect(body.errors.by_code.find((e: any) => e.code === "MIG_FORBIDDEN").total).toBeGreaterThanOrEqual(1);
    expect(new Set(body.subscriptions.list.map((s: any) => s.tenant_id))).toEqual(new Set(["acme", "globex"]));
    const one = await snapshotOf(t, "?tenant_id=globex", bearer(operator));
    expect(one.body.subscriptions.list.map((s: any) => s.tenant_id)).toEqual(["globex"]);
  });
});
