// Authorization over real HTTP in jwt mode: cross-tenant attempts, cancel rules, capability tenant allow
// lists, rate limits (429 with Retry-After), and the audit log of allows and denies read through the admin route.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability } from "../runtime/provider/provider.ts";
import type { CapabilityDescriptor } from "../schemas/types.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const dir = mkdtempSync(join(tmpdir(), "mig-policy-"));
const auditFile = join(dir, "audit.jsonl");

function descriptor(id: string): CapabilityDescriptor {
  return {
    id,
    version: "1.0.0",
    modes: ["unary"],
    input_schema_uri: "schema://test/any",
    output_schema_uri: "schema://test/out",
    auth_scopes: [],
  };
}

const capabilities = [
  defineCapability(
    descriptor("test.slow"),
    (_p, { signal }) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ result: "late" }), 30_000);
        signal.addEventListener("abort", () => clearTimeout(timer));
      }),
  ),
  defineCapability(descriptor("acme.reports.run"), () => ({ result: "report" })),
  defineCapability(descriptor("test.metered"), () => ({ result: "ok" })),
];

let t: TestRuntime;
async function token(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("5 minutes")
    .sign(new TextEncoder().encode(SECRET));
}
const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` });
let alice: Record<string, string>; // tenant acme
let aliceTwin: Record<string, string>; // tenant acme, another subject
let bob: Record<string, string>; // tenant globex
let admin: Record<string, string>; // tenant ops, the cross-tenant admin scope (an operator)
let acmeAdmin: Record<string, string>; // tenant acme, the admin scope only

beforeAll(async () => {
  const policyFile = join(dir, "policy.yaml");
  writeFileSync(
    policyFile,
    [
      "tenants:",
      "  throttled: { rate_limit: 1/2 }",
      "capabilities:",
      "  acme.reports.run: { tenants: [acme] }",
      "  test.metered: { rate_limit: { rate: 0.5, burst: 3 } }",
    ].join("\n"),
  );
  t = await startTestRuntime({
    capabilities,
    config: { authMode: "jwt", jwtHs256Secret: SECRET, policyFile, cancelSameSubject: true, auditFile },
  });
  t.runtime.schemas.register("schema://test/any", { type: "object" });
  t.runtime.schemas.register("schema://test/out", { type: "object", required: ["result"] });
  alice = bearer(await token({ sub: "alice", tenant_id: "acme", scope: "capability:infer" }));
  aliceTwin = bearer(await token({ sub: "mallory", tenant_id: "acme", scope: "capability:infer" }));
  bob = bearer(await token({ sub: "bob", tenant_id: "globex", scope: "capability:infer" }));
  admin = bearer(await token({ sub: "root", tenant_id: "ops", scope: "mig:admin:global" }));
  acmeAdmin = bearer(await token({ sub: "acme-admin", tenant_id: "acme", scope: "mig:admin" }));
});
afterAll(() => t?.stop());

async function getJson(path: string, headers: Record<string, string>) {
  const res = await fetch(`${t.http.url}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

/** Starts a slow invocation as `who` and waits until it is in flight; resolves its HTTP answer later. */
async function startSlow(who: Record<string, string>) {
  const id = randomUUID();
  const answer = t.post("/mig/v0.1/invoke/test.slow", { header: { message_id: id }, payload: {} }, who);
  await waitFor("the slow invocation to be in flight", () => t.runtime.work.invocations.has(id));
  return { id, answer };
}

describe("tenancy", () => {
  it("a tenant-A token naming tenant B in the header, X-Tenant-ID or body → 403", async () => {
    const invoke = "/mig/v0.1/invoke/observatory.models.infer";
    expectError(
      await t.post(invoke, { header: { tenant_id: "globex" }, payload: { input: "x" } }, alice),
      403,
      "MIG_FORBIDDEN",
    );
    expectError(
      await t.post(invoke, { payload: { input: "x" } }, { ...alice, "x-tenant-id": "globex" }),
      403,
      "MIG_FORBIDDEN",
    );
    expectError(await t.post("/mig/v0.1/discover", {}, { ...alice, "x-tenant-id": "globex" }), 403, "MIG_FORBIDDEN");
  });

  it("tenant A cannot cancel tenant B's invocation; B's work runs on", async () => {
    const slow = await startSlow(bob);
    // Answered as for an id nobody holds: CANCEL tells no one that another tenant's id is live.
    const probe = await t.post(`/mig/v0.1/cancel/${slow.id}`, {}, alice);
    const unknown = await t.post(`/mig/v0.1/cancel/${randomUUID()}`, {}, alice);
    expect(probe.status).toBe(200);
    expect(probe.body).toMatchObject({ accepted: false, status: "not_found" });
    expect({ ...probe.body, header: undefined, target_message_id: undefined }).toEqual({
      ...unknown.body,
      header: undefined,
      target_message_id: undefined,
    });
    expectError(
      await t.post(`/mig/v0.1/cancel/${slow.id}`, {}, { ...alice, "x-tenant-id": "globex" }),
      403,
      "MIG_FORBIDDEN",
    );
    expect(t.runtime.work.invocations.has(slow.id)).toBe(true);
    const ack = await t.post(`/mig/v0.1/cancel/${slow.id}`, {}, bob);
    expect(ack.body).toMatchObject({ accepted: true, status: "cancelled" });
    expect((await slow.answer).body.error.details.cancelled).toBe(true);
  });

  it("with MIG_CANCEL_SAME_SUBJECT, another subject of the same tenant cannot cancel", async () => {
    const slow = await startSlow(alice);
    expectError(await t.post(`/mig/v0.1/cancel/${slow.id}`, {}, aliceTwin), 403, "MIG_FORBIDDEN");
    expect((await t.post(`/mig/v0.1/cancel/${slow.id}`, {}, alice)).body.status).toBe("cancelled");
    await slow.answer;
  });

  it("a capability limited to tenant acme is hidden from and refused to globex", async () => {
    const seen = (await t.post("/mig/v0.1/discover", {}, bob)).body.capabilities.map((c: any) => c.id);
    expect(seen).not.toContain("acme.reports.run");
    expect(seen).toContain("observatory.models.infer");
    expectError(await t.post("/mig/v0.1/invoke/acme.reports.run", { payload: {} }, bob), 403, "MIG_FORBIDDEN");
    const ok = await t.post("/mig/v0.1/invoke/acme.reports.run", { payload: {} }, alice);
    expect(ok.status).toBe(200);
    expect((await t.post("/mig/v0.1/discover", {}, alice)).body.capabilities.map((c: any) => c.id)).toContain(
      "acme.reports.run",
    );
  });
});

describe("rate limits", () => {
  it("a tenant over its quota gets 429 MIG_RATE_LIMITED, retryable, with retry_after_ms and Retry-After", async () => {
    const throttled = bearer(await token({ sub: "t", tenant_id: "throttled", scope: "capability:infer" }));
    const call = () => t.post("/mig/v0.1/invoke/observatory.models.infer", { payload: { input: "x" } }, throttled);
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    const limited = await call();
    expectError(limited, 429, "MIG_RATE_LIMITED");
    expectEnvelope("ErrorEnvelope", limited.body);
    expect(limited.body.error.retryable).toBe(true);
    expect(limited.body.error.details).toMatchObject({ limit_scope: "tenant", rate_per_second: 1, burst: 2 });
    expect(limited.body.error.details.retry_after_ms).toBeGreaterThan(0);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Another tenant is not affected.
    expect((await t.post("/mig/v0.1/invoke/observatory.models.infer", { payload: { input: "x" } }, bob)).status).toBe(
      200,
    );
  });

  it("a capability's limit applies per tenant", async () => {
    const codes = [];
    for (let i = 0; i < 4; i++)
      codes.push((await t.post("/mig/v0.1/invoke/test.metered", { payload: {} }, alice)).status);
    expect(codes).toEqual([200, 200, 200, 429]);
    expect((await t.post("/mig/v0.1/invoke/test.metered", { payload: {} }, bob)).status).toBe(200);
  });
});

describe("admin routes and the audit log", () => {
  it("admin routes and /metrics refuse no token (401) and a token without the admin scope (403)", async () => {
    for (const path of [
      "/admin/v0.1/audit?tenant=acme",
      "/admin/v0.1/capabilities",
      "/admin/v0.1/actors",
      "/metrics",
    ]) {
      expectError(await getJson(path, {}), 401, "MIG_UNAUTHORIZED");
      expectError(await getJson(path, alice), 403, "MIG_FORBIDDEN");
    }
    expect((await t.get("/metrics", admin)).status).toBe(200);
    expect((await getJson("/admin/v0.1/capabilities", admin)).status).toBe(200);
  });

  it("records allows and denies with actor, tenant, target, code, message id and traceparent, filtered by tenant", async () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const messageId = randomUUID();
    const ok = await t.post(
      "/mig/v0.1/invoke/observatory.models.infer",
      { header: { message_id: messageId, traceparent }, payload: { input: "x" } },
      alice,
    );
    expect(ok.status).toBe(200);
    const denied = await t.post("/mig/v0.1/invoke/acme.reports.run", { header: { traceparent }, payload: {} }, bob);
    expect(denied.status).toBe(403);
    await t.post(
      "/mig/v0.1/invoke/observatory.models.infer",
      { payload: { input: "x" } },
      { ...alice, "x-tenant-id": "globex" },
    );

    const acme = await waitFor("acme's audit records", async () => {
      const res = await getJson("/admin/v0.1/audit?tenant=acme&limit=1000", admin);
      return res.body.records?.some((r: any) => r.message_id === messageId && r.requested_tenant === undefined) &&
        res.body.records.some((r: any) => r.requested_tenant === "globex")
        ? res
        : undefined;
    });
    expect(acme.status).toBe(200);
    expect(acme.body.records.every((r: any) => r.tenant === "acme")).toBe(true);
    expect(acme.body.records.find((r: any) => r.message_id === messageId)).toMatchObject({
      kind: "operation",
      binding: "http",
      actor: "alice",
      authenticated: true,
      tenant: "acme",
      operation: "invoke",
      target: "observatory.models.infer",
      decision: "allow",
      outcome: "ok",
      traceparent,
    });
    expect(acme.body.records.find((r: any) => r.requested_tenant === "globex")).toMatchObject({
      actor: "alice",
      decision: "deny",
      outcome: "error",
      code: "MIG_FORBIDDEN",
    });

    const globex = await getJson("/admin/v0.1/audit?tenant=globex&limit=1000", admin);
    expect(globex.body.records.every((r: any) => r.tenant === "globex")).toBe(true);
    const refusal = globex.body.records.find(
      (r: any) => r.target === "acme.reports.run" && r.traceparent === traceparent,
    );
    expect(refusal).toMatchObject({ actor: "bob", decision: "deny", code: "MIG_FORBIDDEN", operation: "invoke" });
    expect(typeof refusal.ts).toBe("string");
    expect(typeof refusal.message_id).toBe("string");

    // The newest `limit` records, and paging forward from a cursor.
    const last = await getJson("/admin/v0.1/audit?tenant=acme&limit=2", admin);
    expect(last.body.records).toHaveLength(2);
    expect(last.body.records[1].seq).toBe(acme.body.last_seq);
    const first = acme.body.records[0].seq;
    const after = await getJson(`/admin/v0.1/audit?tenant=acme&limit=1&after=${first}`, admin);
    expect(after.body.records).toHaveLength(1);
    expect(after.body.records[0].seq).toBe(acme.body.records[1].seq);
  });

  it("records refused credentials and admin decisions, and writes the JSONL file too", async () => {
    await t.post(
      "/mig/v0.1/invoke/observatory.models.infer",
      { payload: { input: "x" } },
      { authorization: "Bearer not.a.jwt", "x-tenant-id": "acme" },
    );
    await getJson("/admin/v0.1/audit?tenant=acme", alice);
    const records = await waitFor("the refusals in the audit stream", async () => {
      const res = await getJson("/admin/v0.1/audit?tenant=acme&limit=1000", admin);
      const found = res.body.records.filter((r: any) => r.kind !== "operation");
      return found.length >= 2 ? found : undefined;
    });
    expect(records.find((r: any) => r.kind === "authentication")).toMatchObject({
      decision: "deny",
      code: "MIG_UNAUTHORIZED",
      operation: "invoke",
      authenticated: false,
    });
    expect(records.find((r: any) => r.kind === "admin")).toMatchObject({
      actor: "alice",
      decision: "deny",
      code: "MIG_FORBIDDEN",
      target: "GET /admin/v0.1/audit",
    });
    const adminAllows = (await getJson("/admin/v0.1/audit?tenant=ops&limit=1000", admin)).body.records;
    expect(adminAllows.some((r: any) => r.kind === "admin" && r.actor === "root" && r.decision === "allow")).toBe(true);

    const lines = await waitFor("the JSONL file", () => {
      const text = readFileSync(auditFile, "utf8");
      return text.includes("not a valid JWT") ? text.trim().split("\n") : undefined;
    });
    for (const line of lines) expect(JSON.parse(line)).toHaveProperty("decision");
  });

  it("an admin scoped to one tenant reads only that tenant's records, and not the routes that span tenants", async () => {
    await t.post("/mig/v0.1/invoke/observatory.models.infer", { payload: { input: "x" } }, bob);
    await waitFor("globex's record", async () =>
      (await getJson("/admin/v0.1/audit?tenant=globex&limit=1000", admin)).body.records.some(
        (r: any) => r.actor === "bob",
      ),
    );
    expectError(await getJson("/admin/v0.1/audit?tenant=globex", acmeAdmin), 403, "MIG_FORBIDDEN");
    const own = await getJson("/admin/v0.1/audit?limit=1000", acmeAdmin);
    expect(own.status).toBe(200);
    expect(own.body.records.length).toBeGreaterThan(0);
    expect(own.body.records.every((r: any) => r.tenant === "acme")).toBe(true);
    expect((await getJson("/admin/v0.1/audit?tenant=acme&limit=1", acmeAdmin)).status).toBe(200);
    for (const path of ["/admin/v0.1/actors", "/metrics"]) {
      const res = await getJson(path, acmeAdmin);
      expectError(res, 403, "MIG_FORBIDDEN");
      expect(res.body.error.details.required_scopes).toEqual(["mig:admin:global"]);
    }
    // The capability list follows the tenant allow lists: globex's admin would not see acme.reports.run.
    const globexAdmin = bearer(await token({ sub: "globex-admin", tenant_id: "globex", scope: "mig:admin" }));
    const ids = (await getJson("/admin/v0.1/capabilities", globexAdmin)).body.capabilities.map((c: any) => c.id);
    expect(ids).toContain("observatory.models.infer");
    expect(ids).not.toContain("acme.reports.run");
    expect((await getJson("/admin/v0.1/capabilities", acmeAdmin)).body.capabilities.map((c: any) => c.id)).toContain(
      "acme.reports.run",
    );
  });

  it("refuses a bad audit query with 400", async () => {
    expectError(await getJson("/admin/v0.1/audit?tenant=a.b", admin), 400, "MIG_INVALID_REQUEST");
    expectError(await getJson("/admin/v0.1/audit?limit=0", admin), 400, "MIG_INVALID_REQUEST");
  });
});
