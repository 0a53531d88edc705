// HELLO, DISCOVER, INVOKE, CANCEL and HEARTBEAT over a real HTTP listener, each answer checked against the schemas.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

let t: TestRuntime;
beforeAll(async () => {
  t = await startTestRuntime();
});
afterAll(() => t?.stop());

const header = { tenant_id: "acme" };

describe("HELLO", () => {
  it("selects 0.1, the binding it arrived on, and reports a server id", async () => {
    const res = await t.post("/mig/v0.1/hello", { header, supported_versions: ["0.1"], requested_bindings: ["http"] });
    expect(res.status).toBe(200);
    expectEnvelope("HelloResponse", res.body);
    expect(res.body.selected_version).toBe("0.1");
    expect(res.body.selected_binding).toBe("http");
    expect(res.body.server_id).toBe(t.runtime.serverId);
    expect(res.body.enabled_features).toContain("core");
  });

  it("chooses the highest common version whatever the order offered", async () => {
    const a = await t.post("/mig/v0.1/hello", { header, supported_versions: ["0.0", "0.1", "0.9"] });
    const b = await t.post("/mig/v0.1/hello", { header, supported_versions: ["0.9", "0.1", "0.0"] });
    expect(a.body.selected_version).toBe("0.1");
    expect(b.body.selected_version).toBe("0.1");
  });

  it("refuses an unknown major version with MIG_VERSION_MISMATCH", async () => {
    const res = await t.post("/mig/v0.1/hello", { header, supported_versions: ["1.0", "2.3"] });
    expectError(res, 400, "MIG_VERSION_MISMATCH");
    expect(res.body.error.details.supported_versions).toEqual(["0.1"]);
  });

  it("enables only the requested features it offers, and picks a requested binding", async () => {
    const res = await t.post("/mig/v0.1/hello", {
      header,
      requested_features: ["idempotency", "teleport"],
      requested_bindings: ["nats"],
    });
    expect(res.body.enabled_features).toEqual(["idempotency"]);
    expect(res.body.selected_binding).toBe("nats");
  });

  it("takes the tenant from X-Tenant-ID when the body has none", async () => {
    const res = await t.post("/mig/v0.1/hello", {}, { "x-tenant-id": "globex" });
    expect(res.status).toBe(200);
    expect(res.body.header.tenant_id).toBe("globex");
  });
});

describe("DISCOVER", () => {
  it("lists the demo capability with schema refs and QoS", async () => {
    const res = await t.post("/mig/v0.1/discover", { header });
    expect(res.status).toBe(200);
    expectEnvelope("DiscoverResponse", res.body);
    const infer = res.body.capabilities.find((c: any) => c.id === "observatory.models.infer");
    expect(infer).toMatchObject({
      version: "1.0.0",
      modes: ["unary", "server_stream"],
      input_schema_uri: "schema://observatory/models/infer-input/v1",
      output_schema_uri: "schema://observatory/models/infer-output/v1",
      auth_scopes: ["capability:infer"],
      qos: {
        max_payload_bytes: 1048576,
        delivery_semantics: "at_least_once",
        supports_replay: true,
        supports_ordering: true,
      },
    });
  });

  it("filters by query and honours include_schema_refs / include_qos", async () => {
    const none = await t.post("/mig/v0.1/discover", { header, query: "nothing-like-this" });
    expect(none.body.capabilities).toEqual([]);
    const lean = await t.post("/mig/v0.1/discover", {
      header,
      query: "MODELS",
      include_schema_refs: false,
      include_qos: false,
    });
    expect(lean.body.capabilities).toHaveLength(1);
    expect(lean.body.capabilities[0]).not.toHaveProperty("qos");
    expect(lean.body.capabilities[0]).not.toHaveProperty("input_schema_uri");
  });
});

describe("INVOKE", () => {
  it("runs observatory.models.infer and echoes the request's message id", async () => {
    const message_id = randomUUID();
    const res = await t.post("/mig/v0.1/invoke/observatory.models.infer", {
      header: { ...header, message_id },
      payload: { input: "hello" },
    });
    expect(res.status).toBe(200);
    expectEnvelope("InvokeResponse", res.body);
    expect(res.body.header.message_id).toBe(message_id);
    expect(res.body.capability).toBe("observatory.models.infer");
    expect(res.body.payload).toMatchObject({ result: "ok", echo: { input: "hello" } });
    expect(res.body.result_schema_uri).toBe("schema://observatory/models/infer-output/v1");
  });

  it("answers an unknown capability with MIG_UNSUPPORTED_CAPABILITY / 404", async () => {
    const res = await t.post("/mig/v0.1/invoke/observatory.models.nope", { header, payload: {} });
    expectError(res, 404, "MIG_UNSUPPORTED_CAPABILITY");
  });

  it("refuses a payload that fails the input schema, listing the problems", async () => {
    const res = await t.post("/mig/v0.1/invoke/observatory.models.infer", { header, payload: { input: 42 } });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.details.errors).toEqual(["payload.input must be string"]);
  });
});

describe("CANCEL and HEARTBEAT", () => {
  it("says not_found for an unknown target and already_completed for a finished one", async () => {
    const unknown = await t.post(`/mig/v0.1/cancel/${randomUUID()}`, { header });
    expect(unknown.status).toBe(200);
    expectEnvelope("CancelAck", unknown.body);
    expect(unknown.body).toMatchObject({ accepted: false, status: "not_found" });

    const message_id = randomUUID();
    await t.post("/mig/v0.1/invoke/observatory.models.infer", {
      header: { ...header, message_id },
      payload: { input: "x" },
    });
    const done = await t.post(`/mig/v0.1/cancel/${message_id}`, { header });
    expect(done.body).toMatchObject({ accepted: false, status: "already_completed", target_message_id: message_id });
  });

  it("echoes the interval within bounds and reports a load factor", async () => {
    const res = await t.post("/mig/v0.1/heartbeat", { header, interval_ms: 5000 });
    expect(res.status).toBe(200);
    expectEnvelope("HeartbeatAck", res.body);
    expect(res.body.suggested_interval_ms).toBe(5000);
    expect(res.body.load_factor).toBeGreaterThanOrEqual(0);
    const tooFast = await t.post("/mig/v0.1/heartbeat", { header, interval_ms: 1 });
    expect(tooFast.body.suggested_interval_ms).toBe(1000);
  });
});

describe("admin and metrics", () => {
  it("lists capabilities with their schemas", async () => {
    const res = await t.get("/admin/v0.1/capabilities");
    expect(res.status).toBe(200);
    const body = JSON.parse(res.text);
    expect(body.capabilities.map((c: any) => c.id)).toContain("observatory.models.infer");
    expect(body.schemas.map((s: any) => s.uri)).toContain("schema://observatory/models/infer-input/v1");
  });
});
