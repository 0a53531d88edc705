// The admin registration routes against the standard's admin OpenAPI: schemas registered once and never changed,
// descriptors checked for semver and compatibility, bad input answered with a MIG error naming the field, and the
// registry serving what it had after each refusal.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { CapabilityDescriptor, JsonObject } from "../schemas/types.ts";
import { expectError } from "./helpers/envelopes.ts";
import { ROOT } from "./helpers/process.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const CAPABILITIES = "/admin/v0.1/capabilities";
const SCHEMAS = "/admin/v0.1/schemas";

// The standard's admin OpenAPI (test/fixtures/mig-admin-openapi-v0.1.yaml names its source and commit).
const openapi = parse(readFileSync(join(ROOT, "test/fixtures/mig-admin-openapi-v0.1.yaml"), "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema(openapi, "mig.admin.v0.1.yaml");
const pointer = (...parts: string[]) =>
  `mig.admin.v0.1.yaml#/${parts.map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/")}`;
const requestOf = (path: string): ValidateFunction =>
  ajv.getSchema(pointer("paths", path, "post", "requestBody", "content", "application/json", "schema"))!;
const descriptorSchema = ajv.getSchema(pointer("components", "schemas", "CapabilityDescriptor"))!;

function conforms(validate: ValidateFunction, value: unknown): void {
  expect(validate(value) ? [] : validate.errors, JSON.stringify(value).slice(0, 300)).toEqual([]);
}

/** Posts a registration whose request conforms to the OpenAPI (unless `raw`), and checks a success against it. */
async function register(t: TestRuntime, path: string, body: unknown, headers: Record<string, string> = {}) {
  if (typeof body !== "string") conforms(requestOf(path), body);
  const res = await t.post(path, body, headers);
  if (res.status < 300) {
    const declared = Object.keys(openapi.paths[path].post.responses);
    expect(declared).toContain(String(res.status));
    if (path === CAPABILITIES) conforms(descriptorSchema, res.body);
    else expect(res.body).toEqual({ uri: (body as { uri: string }).uri });
  }
  return res;
}

const IN_NAMED = "schema://admin-test/in/named";
const IN_OPTIONAL = "schema://admin-test/in/optional";
const IN_WIDE = "schema://admin-test/in/wide";
const IN_STRICT = "schema://admin-test/in/strict";
const OUT = "schema://admin-test/out/v1";
const schemas: Record<string, JsonObject> = {
  [IN_NAMED]: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
  [IN_OPTIONAL]: { type: "object", properties: { name: { type: "string" } } },
  [IN_WIDE]: { type: "object", properties: { name: { type: ["string", "integer"] } } },
  [IN_STRICT]: {
    type: "object",
    properties: { name: { type: "string" }, lang: { type: "string" } },
    required: ["lang"],
  },
  [OUT]: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
};

const descriptor = (
  version: string,
  input: string,
  extra: Partial<CapabilityDescriptor> = {},
): CapabilityDescriptor => ({
  id: "admin.greet",
  version,
  modes: ["unary"],
  input_schema_uri: input,
  output_schema_uri: OUT,
  auth_scopes: [],
  ...extra,
});

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(() => t?.stop());

async function versionsListed(): Promise<string[]> {
  const res = await t.post("/mig/v0.1/discover", { header: { tenant_id: "acme" }, query: "admin.greet" });
  return res.body.capabilities.map((d: CapabilityDescriptor) => d.version);
}

describe("POST /admin/v0.1/schemas", () => {
  it("registers each schema once (201, {uri}); the same body again is accepted", async () => {
    for (const [uri, schema] of Object.entries(schemas)) {
      expect((await register(t, SCHEMAS, { uri, schema })).status).toBe(201);
    }
    expect((await register(t, SCHEMAS, { uri: OUT, schema: schemas[OUT] })).status).toBe(201);
    expect(t.runtime.schemas.get(IN_STRICT)).toEqual(schemas[IN_STRICT]);
  });

  it("refuses another body under a registered URI, naming the URI and the first difference", async () => {
    const changed = { type: "object", properties: { name: { type: "integer" } }, required: ["name"] };
    const res = await register(t, SCHEMAS, { uri: IN_NAMED, schema: changed });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain(IN_NAMED);
    expect(res.body.error.details).toEqual({ uri: IN_NAMED, first_difference: "/properties/name/type" });
    expect(t.runtime.schemas.get(IN_NAMED)).toEqual(schemas[IN_NAMED]);
  });

  it("refuses bad schemas with a MIG error naming the problem, and keeps nothing of them", async () => {
    const bad: [string, unknown, RegExp][] = [
      ["schema://admin-test/bad/type", { type: "strnig" }, /not valid JSON Schema 2020-12: at \/type/],
      [
        "schema://admin-test/bad/ref",
        { properties: { a: { $ref: "schema://admin-test/nowhere" } } },
        /not a registered schema/,
      ],
      [
        "schema://admin-test/bad/loop",
        { $defs: { a: { $ref: "#/$defs/b" }, b: { $ref: "#/$defs/a" } }, $ref: "#/$defs/a" },
        /leads back to itself/,
      ],
      ["schema://admin-test/bad/self", { $ref: "#" }, /leads back to itself/],
      ["schema://admin-test/bad/dangling", { $ref: "#/$defs/missing" }, /points at nothing/],
      ["schema://admin-test/bad/pattern", { type: "string", pattern: "([a-z" }, /not a regular expression/],
    ];
    for (const [uri, schema, reason] of bad) {
      const res = await register(t, SCHEMAS, { uri, schema });
      expectError(res, 400, "MIG_INVALID_REQUEST");
      expect(res.body.error.message).toMatch(reason);
      expect(res.body.error.message).toContain(uri);
      expect(t.runtime.schemas.has(uri)).toBe(false);
    }
    const notUri = await register(t, SCHEMAS, { uri: "no uri", schema: {} });
    expectError(notUri, 400, "MIG_INVALID_REQUEST");
    expect(notUri.body.error.details.field).toBe("uri");
    const missing = await t.post(SCHEMAS, { uri: "schema://admin-test/x" });
    expectError(missing, 400, "MIG_INVALID_REQUEST");
    expect(missing.body.error.details.field).toBe("schema");
    const notObject = await t.post(SCHEMAS, { uri: "schema://admin-test/x", schema: [1] });
    expect(notObject.body.error.details.field).toBe("schema");
  });

  it("a $ref to a schema registered before resolves, and validates", async () => {
    const uri = "schema://admin-test/in/wrapped";
    expect((await register(t, SCHEMAS, { uri, schema: { properties: { inner: { $ref: IN_NAMED } } } })).status).toBe(
      201,
    );
    expect(t.runtime.schemas.check(uri, { inner: { name: "x" } })).toBeUndefined();
    expect(t.runtime.schemas.check(uri, { inner: {} })).toEqual(['payload.inner must have property "name"']);
  });

  it("refuses a schema of several MiB: over the schema bound (1 MiB), and over the body bound (MIG_MAX_BODY_BYTES)", async () => {
    const big = (bytes: number) => ({
      type: "object",
      properties: Object.fromEntries(
        Array.from({ length: Math.ceil(bytes / 40) }, (_, i) => [`p${String(i).padStart(8, "0")}`, { type: "string" }]),
      ),
    });
    const overSchema = await register(t, SCHEMAS, { uri: "schema://admin-test/big/1", schema: big(1.5 * 1024 * 1024) });
    expectError(overSchema, 400, "MIG_INVALID_REQUEST");
    expect(overSchema.body.error.details.max_schema_bytes).toBe(1024 * 1024);
    const overBody = await t.post(SCHEMAS, { uri: "schema://admin-test/big/2", schema: big(3 * 1024 * 1024) });
    expectError(overBody, 413, "MIG_INVALID_REQUEST");
    expect(t.runtime.schemas.has("schema://admin-test/big/1")).toBe(false);
    expect(t.runtime.schemas.has("schema://admin-test/big/2")).toBe(false);
  });
});

describe("POST /admin/v0.1/capabilities", () => {
  it("registers a descriptor (201 with the descriptor) that DISCOVER then lists", async () => {
    expect((await register(t, CAPABILITIES, { descriptor: descriptor("1.0.0", IN_NAMED) })).status).toBe(201);
    // A compatible minor: the input takes more than before.
    expect((await register(t, CAPABILITIES, { descriptor: descriptor("1.2.0", IN_OPTIONAL) })).status).toBe(201);
    expect(await versionsListed()).toEqual(["1.2.0", "1.0.0"]);
  });

  it("refuses an incompatible minor naming the breaking change, and takes the same contract as a new major", async () => {
    const res = await register(t, CAPABILITIES, { descriptor: descriptor("1.3.0", IN_STRICT) });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain("publish it as 2.0.0");
    expect(res.body.error.details).toMatchObject({
      capability: "admin.greet",
      version: "1.3.0",
      compared_with: "1.2.0",
    });
    expect(res.body.error.details.breaking).toContainEqual(
      expect.objectContaining({ direction: "input", path: "/properties/lang", rule: "required-added" }),
    );
    expect(await versionsListed()).toEqual(["1.2.0", "1.0.0"]);

    expect((await register(t, CAPABILITIES, { descriptor: descriptor("2.0.0", IN_STRICT) })).status).toBe(201);
    expect(await versionsListed()).toEqual(["2.0.0", "1.2.0", "1.0.0"]);
  });

  it("refuses a version going backwards: one the version above it does not keep working", async () => {
    // 1.1.0 would take integer names, which 1.2.0, above it, refuses.
    const res = await register(t, CAPABILITIES, { descriptor: descriptor("1.1.0", IN_WIDE) });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain("goes backwards");
    expect(res.body.error.details.compared_with).toBe("1.2.0");
    expect(res.body.error.details.breaking[0]).toMatchObject({ path: "/properties/name", rule: "type-narrowed" });
    // The same version with another contract is refused too.
    const again = await register(t, CAPABILITIES, { descriptor: descriptor("1.0.0", IN_OPTIONAL) });
    expectError(again, 400, "MIG_INVALID_REQUEST");
    expect(again.body.error.message).toContain("already registered with another contract");
    expect(await versionsListed()).toEqual(["2.0.0", "1.2.0", "1.0.0"]);
  });

  it("re-registers a version with the same contract to deprecate it, which DISCOVER then shows", async () => {
    const deprecated = descriptor("1.0.0", IN_NAMED, {
      lifecycle: { deprecated: "move to 2.x", sunset: "2999-12-31T23:59:59Z" },
    });
    expect((await register(t, CAPABILITIES, { descriptor: deprecated })).status).toBe(201);
    const res = await t.post("/mig/v0.1/discover", { header: { tenant_id: "acme" }, query: "admin.greet" });
    const listed = res.body.capabilities.find((d: CapabilityDescriptor) => d.version === "1.0.0");
    expect(listed.lifecycle).toEqual({ deprecated: "move to 2.x", sunset: "2999-12-31T23:59:59Z" });
  });

  it("refuses malformed descriptors with a MIG error naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ descriptor: descriptor("1.0", IN_NAMED) }, "descriptor.version"],
      [{ descriptor: descriptor("v1.4.0", IN_NAMED) }, "descriptor.version"],
      [
        { descriptor: descriptor("1.4.0", IN_NAMED, { lifecycle: { sunset: "next tuesday" } }) },
        "descriptor.lifecycle.sunset",
      ],
      [
        { descriptor: descriptor("1.4.0", IN_NAMED, { lifecycle: { deprecated: 3 as unknown as boolean } }) },
        "descriptor.lifecycle.deprecated",
      ],
      [{ descriptor: { ...descriptor("1.4.0", IN_NAMED), modes: "unary" } }, "descriptor.modes"],
      [{ descriptor: { id: "admin.greet" } }, "descriptor"],
      [{}, "descriptor"],
      [{ descriptor: descriptor("1.4.0", IN_NAMED), extra: true }, "extra"],
    ];
    for (const [body, field] of cases) {
      const res = await t.post(CAPABILITIES, body);
      expectError(res, 400, "MIG_INVALID_REQUEST");
      expect(res.body.error.details.field, JSON.stringify(res.body.error)).toBe(field);
    }
    expect(await versionsListed()).toEqual(["2.0.0", "1.2.0", "1.0.0"]);
  });

  it("answers GET and POST only on the admin paths", async () => {
    const res = await fetch(`${t.http.url}${CAPABILITIES}`, { method: "PUT" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, POST");
  });
});

describe("the admin scope", () => {
  const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
  let secured: TestRuntime;
  const bearer = async (scope: string) => ({
    authorization: `Bearer ${await new SignJWT({ sub: "ops", tenant_id: "acme", scope })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuedAt()
      .sign(new TextEncoder().encode(SECRET))}`,
  });
  beforeAll(async () => {
    secured = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  });
  afterAll(() => secured?.stop());

  it("needs a token with the cross-tenant admin scope: a registration is seen by every tenant", async () => {
    const body = { uri: "schema://admin-test/scoped", schema: { type: "object" } };
    expectError(await secured.post(SCHEMAS, body), 401, "MIG_UNAUTHORIZED");
    expectError(await secured.post(SCHEMAS, body, await bearer("mig:admin")), 403, "MIG_FORBIDDEN");
    expect((await register(secured, SCHEMAS, body, await bearer("mig:admin:global"))).status).toBe(201);
    const capability = { descriptor: { ...descriptor("1.0.0", "schema://admin-test/scoped"), id: "admin.scoped" } };
    expectError(await secured.post(CAPABILITIES, capability, await bearer("mig:admin")), 403, "MIG_FORBIDDEN");
    expect((await register(secured, CAPABILITIES, capability, await bearer("mig:admin:global"))).status).toBe(201);
  });
});
