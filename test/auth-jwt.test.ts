// Auth mode jwt over HTTP: HS256 tokens, tenant agreement, scope filtering of DISCOVER and INVOKE.
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
let t: TestRuntime;

async function token(
  claims: Record<string, unknown>,
  options: { secret?: string; expiresIn?: string; notBefore?: string } = {},
) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (options.expiresIn) jwt = jwt.setExpirationTime(options.expiresIn);
  if (options.notBefore) jwt = jwt.setNotBefore(options.notBefore);
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

beforeAll(async () => {
  t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
});
afterAll(() => t?.stop());

const INVOKE = "/mig/v0.1/invoke/observatory.models.infer";
const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` });

describe("authentication", () => {
  it("a call without a token → 401", async () => {
    expectError(
      await t.post(INVOKE, { header: { tenant_id: "acme" }, payload: { input: "x" } }),
      401,
      "MIG_UNAUTHORIZED",
    );
  });

  it("expired, not-yet-valid, wrongly signed, unsigned and tenant-less tokens → 401", async () => {
    const alg_none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from('{"sub":"x","tenant_id":"acme"}').toString("base64url")}.`;
    const bad = [
      await token({ sub: "u", tenant_id: "acme" }, { expiresIn: "-5 minutes" }),
      await token({ sub: "u", tenant_id: "acme" }, { notBefore: "10 minutes" }),
      await token({ sub: "u", tenant_id: "acme" }, { secret: "some-other-secret-some-other-secret" }),
      alg_none,
      await token({ sub: "u", scope: "capability:infer" }),
      "not.a.jwt",
    ];
    for (const jwt of bad) {
      expectError(
        await t.post(INVOKE, { header: { tenant_id: "acme" }, payload: { input: "x" } }, bearer(jwt)),
        401,
        "MIG_UNAUTHORIZED",
      );
    }
    expectError(await t.post(INVOKE, {}, { authorization: "Basic dXNlcjpwYXNz" }), 401, "MIG_UNAUTHORIZED");
  });

  it("a valid token with the scope invokes; the tenant comes from the token", async () => {
    const jwt = await token(
      { sub: "alice", tenant_id: "acme", scope: "capability:infer other:scope" },
      { expiresIn: "5 minutes" },
    );
    const res = await t.post(INVOKE, { payload: { input: "x" } }, bearer(jwt));
    expect(res.status).toBe(200);
    expectEnvelope("InvokeResponse", res.body);
    expect(res.body.header.tenant_id).toBe("acme");
  });
});

describe("tenancy and scopes", () => {
  it("a tenant-A token naming tenant B in the body or in X-Tenant-ID → 403", async () => {
    const jwt = await token({ sub: "alice", tenant: "acme", scopes: ["capability:infer"] });
    expectError(
      await t.post(INVOKE, { header: { tenant_id: "globex" }, payload: { input: "x" } }, bearer(jwt)),
      403,
      "MIG_FORBIDDEN",
    );
    expectError(
      await t.post(INVOKE, { payload: { input: "x" } }, { ...bearer(jwt), "x-tenant-id": "globex" }),
      403,
      "MIG_FORBIDDEN",
    );
  });

  it("DISCOVER hides capabilities whose scopes the principal lacks; INVOKE refuses them", async () => {
    const without = await token({ sub: "bob", tenant_id: "acme", scope: "something:else" });
    const seen = await t.post("/mig/v0.1/discover", {}, bearer(without));
    expect(seen.status).toBe(200);
    expect(seen.body.capabilities).toEqual([]);
    expectError(await t.post(INVOKE, { payload: { input: "x" } }, bearer(without)), 403, "MIG_FORBIDDEN");

    const withScope = await token({ sub: "bob", tenant_id: "acme", scopes: ["capability:infer"] });
    const shown = await t.post("/mig/v0.1/discover", {}, bearer(withScope));
    expect(shown.body.capabilities.map((c: any) => c.id)).toEqual(["observatory.models.infer"]);
  });
});
