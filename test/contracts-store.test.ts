// The schema store on the bus: bodies registered on one gateway are the other's too (two runtimes on one bus), a URI
// keeps its first body across the fleet, and the bodies survive a restart of the runtime and its embedded bus.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type HttpBinding, startHttpBinding } from "../bindings/http/server.ts";
import { loadConfig, type RuntimeConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import type { CapabilityDescriptor } from "../schemas/types.ts";
import { expectError } from "./helpers/envelopes.ts";
import { waitFor } from "./helpers/runtime.ts";

interface Gateway {
  runtime: MigRuntime;
  http: HttpBinding;
  post(path: string, body: unknown): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mig-contracts-store-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function startGateway(
  config: Partial<RuntimeConfig>,
  capabilities = [] as ReturnType<typeof defineCapability>[],
) {
  const full = loadConfig(
    { natsPort: 0, natsMonitorPort: 0, httpAddr: "127.0.0.1:0", logLevel: "silent", tenantFairInflight: 0, ...config },
    {},
  );
  const runtime = await MigRuntime.start(full, { logger: createLogger(full.logLevel), capabilities });
  const http = await startHttpBinding(runtime, runtime.authenticator, full.httpAddr);
  let stopped = false;
  const gateway: Gateway = {
    runtime,
    http,
    async post(path, body) {
      const res = await fetch(`${http.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await http.close();
      await runtime.stop();
    },
  };
  cleanups.push(() => gateway.stop());
  return gateway;
}

const URI = "schema://store-test/order/v1";
const ORDER = { type: "object", properties: { id: { type: "string" } }, required: ["id"] };

describe("the fleet's schema store", () => {
  it("shares bodies between two gateways on one bus, both ways, and keeps each URI's first body", async () => {
    const first = await startGateway({ dataDir: tempDir() });
    const second = await startGateway({ dataDir: tempDir(), natsUrl: first.runtime.natsUrl });

    expect((await first.post("/admin/v0.1/schemas", { uri: URI, schema: ORDER })).status).toBe(201);
    await waitFor("the second gateway to see the body", () => second.runtime.schemas.get(URI));
    expect(second.runtime.schemas.get(URI)).toEqual(ORDER);
    expect(second.runtime.schemas.check(URI, {})).toEqual(['payload must have property "id"']);

    const other = "schema://store-test/line/v1";
    expect((await second.post("/admin/v0.1/schemas", { uri: other, schema: { type: "array" } })).status).toBe(201);
    await waitFor("the first gateway to see the second's body", () => first.runtime.schemas.get(other));

    // The second gateway refuses another body under the URI the first one registered.
    const changed = { ...ORDER, required: ["id", "total"] };
    const res = await second.post("/admin/v0.1/schemas", { uri: URI, schema: changed });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.details).toEqual({ uri: URI, first_difference: "/required/1" });
  });

  it("a gateway that defines a capability on another body of a stored URI gives way to the stored body and refuses the capability", async () => {
    const first = await startGateway({ dataDir: tempDir() });
    expect((await first.post("/admin/v0.1/schemas", { uri: URI, schema: ORDER })).status).toBe(201);
    const descriptor: CapabilityDescriptor = {
      id: "store.orders",
      version: "1.0.0",
      modes: ["unary"],
      input_schema_uri: URI,
      output_schema_uri: URI,
      auth_scopes: [],
    };
    const drifting = defineCapability(descriptor, () => ({ id: "x" }), { [URI]: { type: "object" } });
    const second = await startGateway({ dataDir: tempDir(), natsUrl: first.runtime.natsUrl }, [drifting]);
    expect(second.runtime.schemas.get(URI)).toEqual(ORDER);
    expect(second.runtime.capabilities.get("store.orders")).toBeUndefined();
  });

  it("keeps the bodies across a restart of the runtime and its embedded bus", async () => {
    const dataDir = tempDir();
    const before = await startGateway({ dataDir });
    expect((await before.post("/admin/v0.1/schemas", { uri: URI, schema: ORDER })).status).toBe(201);
    await before.stop();

    const after = await startGateway({ dataDir });
    expect(after.runtime.schemas.get(URI)).toEqual(ORDER);
    const res = await after.post("/admin/v0.1/schemas", { uri: URI, schema: { type: "object" } });
    expectError(res, 400, "MIG_INVALID_REQUEST");
    expect(res.body.error.details.first_difference).toBe("/properties");
    expect((await after.post("/admin/v0.1/schemas", { uri: URI, schema: ORDER })).status).toBe(201);
  });
});
