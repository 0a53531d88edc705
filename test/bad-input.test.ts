// Bad input over real HTTP: each gets a MIG error envelope with the right status, and the process keeps serving.
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime({ config: { maxBodyBytes: 64 * 1024 } });
});
afterAll(() => t?.stop());

const INVOKE = "/mig/v0.1/invoke/observatory.models.infer";
const ok = { header: { tenant_id: "acme" }, payload: { input: "hello" } };

/** Sends raw bytes, so that bodies fetch would refuse to build can be tested too. */
function rawPost(
  path: string,
  body: Buffer | string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const url = new URL(t.http.url + path);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: "POST", headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("bad input", () => {
  it("malformed JSON → 400 envelope with a fresh UUID header", async () => {
    const res = await t.post(INVOKE, '{"header": {"tenant_id": "acme"', { "x-tenant-id": "acme" });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain("not valid JSON");
    expect(res.body.header.tenant_id).toBe("acme");
  });

  it("a JSON body that is not an object → 400", async () => {
    expectError(await t.post(INVOKE, "[1,2,3]"), 400, "MIG_INVALID_REQUEST");
    expectError(await t.post(INVOKE, "null"), 400, "MIG_INVALID_REQUEST");
  });

  it("a body over the size limit → 413 envelope, declared or streamed", async () => {
    const big = JSON.stringify({ header: { tenant_id: "acme" }, payload: { input: "x".repeat(100 * 1024) } });
    const res = await t.post(INVOKE, big);
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe("MIG_INVALID_REQUEST");
    const chunked = await rawPost(INVOKE, Buffer.from(big), { "transfer-encoding": "chunked" });
    expect(chunked.status).toBe(413);
  });

  it("a payload over the capability's max_payload_bytes → 400 with sizes in details", async () => {
    const roomy = await startTestRuntime({ config: { maxBodyBytes: 4 * 1024 * 1024 } });
    try {
      const res = await roomy.post(INVOKE, {
        header: { tenant_id: "acme" },
        payload: { input: "x".repeat(1024 * 1024 + 10) },
      });
      expectError(res, 400, "MIG_INVALID_REQUEST");
      expect(res.body.error.details.max_payload_bytes).toBe(1048576);
    } finally {
      await roomy.stop();
    }
  });

  it("a missing tenant → 400 saying where to put it", async () => {
    const res = await t.post(INVOKE, { payload: { input: "x" } });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.message).toContain("X-Tenant-ID");
  });

  it("a tenant with subject-breaking characters → 400", async () => {
    for (const tenant of ["ac.me", "a*", ">", "a b", "x".repeat(65)]) {
      expectError(
        await t.post(INVOKE, { header: { tenant_id: tenant }, payload: { input: "x" } }),
        400,
        "MIG_INVALID_REQUEST",
      );
    }
  });

  it("X-Tenant-ID and header.tenant_id that disagree → 403", async () => {
    expectError(await t.post(INVOKE, ok, { "x-tenant-id": "globex" }), 403, "MIG_FORBIDDEN");
  });

  it("an unknown mig_version → MIG_VERSION_MISMATCH / 400", async () => {
    const res = await t.post(INVOKE, { header: { tenant_id: "acme", mig_version: "0.2" }, payload: { input: "x" } });
    expectError(res, 400, "MIG_VERSION_MISMATCH");
  });

  it("capability ids with characters that are not allowed → 400", async () => {
    for (const id of ["observatory.*", "observatory..infer", "obs%20infer", "obs>", "%E0%A4%A"]) {
      expectError(await t.post(`/mig/v0.1/invoke/${id}`, ok), 400, "MIG_INVALID_REQUEST");
    }
  });

  it("a body capability that differs from the path → 400", async () => {
    expectError(await t.post(INVOKE, { ...ok, capability: "other.thing" }), 400, "MIG_INVALID_REQUEST");
  });

  it("message ids that are not UUIDs → 400, in the header or as a CANCEL target", async () => {
    expectError(
      await t.post(INVOKE, { header: { tenant_id: "acme", message_id: "abc.def" }, payload: { input: "x" } }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expectError(
      await t.post("/mig/v0.1/cancel/not-a-uuid", { header: { tenant_id: "acme" } }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expectError(await t.post("/mig/v0.1/cancel/a*b", { header: { tenant_id: "acme" } }), 400, "MIG_INVALID_REQUEST");
  });

  it("header fields of the wrong type → 400", async () => {
    for (const header of [
      { tenant_id: "acme", deadline_ms: -5 },
      { tenant_id: "acme", deadline_ms: "soon" },
      { tenant_id: "acme", meta: [1] },
      { tenant_id: 7 },
      { tenant_id: "acme", timestamp: "yesterday" },
    ]) {
      expectError(await t.post(INVOKE, { header, payload: { input: "x" } }), 400, "MIG_INVALID_REQUEST");
    }
    expectError(await t.post(INVOKE, { header: "acme", payload: {} }), 400, "MIG_INVALID_REQUEST");
  });

  it("a missing or non-object payload, or an unknown stream preference → 400", async () => {
    expectError(await t.post(INVOKE, { header: { tenant_id: "acme" } }), 400, "MIG_INVALID_REQUEST");
    expectError(await t.post(INVOKE, { header: { tenant_id: "acme" }, payload: "hello" }), 400, "MIG_INVALID_REQUEST");
    expectError(await t.post(INVOKE, { ...ok, stream_preference: "sideways" }), 400, "MIG_INVALID_REQUEST");
  });

  it("HELLO and DISCOVER fields of the wrong type → 400", async () => {
    expectError(
      await t.post("/mig/v0.1/hello", { header: { tenant_id: "acme" }, supported_versions: "0.1" }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expectError(
      await t.post("/mig/v0.1/hello", { header: { tenant_id: "acme" }, requested_bindings: ["carrier-pigeon"] }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expectError(
      await t.post("/mig/v0.1/discover", { header: { tenant_id: "acme" }, include_qos: "yes" }),
      400,
      "MIG_INVALID_REQUEST",
    );
    expectError(
      await t.post("/mig/v0.1/heartbeat", { header: { tenant_id: "acme" }, interval_ms: -1 }),
      400,
      "MIG_INVALID_REQUEST",
    );
  });

  it("unknown routes → 404 MIG_NOT_FOUND, wrong methods → 405", async () => {
    expectError(await t.post("/mig/v0.1/teleport", ok), 404, "MIG_NOT_FOUND");
    expectError(await t.post("/mig/v0.1/invoke", ok), 404, "MIG_NOT_FOUND");
    const res = await fetch(`${t.http.url}/mig/v0.1/hello`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
  });

  it("after all of that, the process still serves and has logged no crash", async () => {
    const res = await t.post(INVOKE, ok);
    expect(res.status).toBe(200);
    const metrics = (await t.get("/metrics")).text;
    expect(metrics).not.toMatch(/mig_actor_crashes_total\{[^}]*\} [1-9]/);
    expect(metrics).toMatch(/mig_errors_total\{code="MIG_INVALID_REQUEST",operation="invoke"\} [1-9]/);
  });
});
