// Versions side by side in one runtime, over every binding: the default version, pins in the header's meta (exact and
// ranges), pins nothing satisfies, deprecation headers and meta, and the refusal after a sunset.
import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import type { CapabilityDescriptor, JsonObject } from "../schemas/types.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { expectStatus, type MigClients, migClients, unary } from "./helpers/grpc.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";
import { StreamClient } from "./helpers/stream-client.ts";

const ANY = "schema://contracts-test/any/v1";
const SUNSET_AHEAD = "2999-01-31T00:00:00Z";
const SUNSET_PAST = "2001-01-01T00:00:00Z";

function version(id: string, v: string, lifecycle?: CapabilityDescriptor["lifecycle"]) {
  const descriptor: CapabilityDescriptor = {
    id,
    version: v,
    modes: ["unary", "server_stream"],
    input_schema_uri: ANY,
    output_schema_uri: ANY,
    auth_scopes: [],
  };
  if (lifecycle) descriptor.lifecycle = lifecycle;
  return defineCapability(
    descriptor,
    () => ({ served_version: v }),
    { [ANY]: { type: "object" } },
    async (_payload, { emit }) => {
      await emit({ served_version: v });
      return { served_version: v };
    },
  );
}

const capabilities = [
  version("contracts.side", "1.0.0"),
  version("contracts.side", "1.2.0"),
  version("contracts.side", "2.0.0"),
  version("contracts.side", "3.0.0-beta.1"),
  version("contracts.aging", "0.9.0", { deprecated: "use 2.x", sunset: SUNSET_PAST }),
  version("contracts.aging", "1.0.0", { deprecated: "use 2.x", sunset: SUNSET_AHEAD }),
  version("contracts.aging", "2.0.0"),
  version("contracts.gone", "1.0.0", { deprecated: true, sunset: SUNSET_PAST }),
];

const PIN = "mig.capability_version";
let t: TestRuntime;
let nats: NatsBinding;
let grpc: GrpcBinding;
let nc: NatsConnection;
let c: MigClients;

beforeAll(async () => {
  t = await startTestRuntime({ capabilities });
  nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  nc = await natsClient(t.runtime.natsUrl);
  c = migClients(grpc.address);
});
afterAll(async () => {
  c?.close();
  await nc?.close();
  await grpc?.close();
  await nats?.close();
  await t?.stop();
});

const header = (pin?: string): JsonObject => ({
  tenant_id: "acme",
  ...(pin === undefined ? {} : { meta: { [PIN]: pin } }),
});
const httpInvoke = (id: string, pin?: string) => t.post(`/mig/v0.1/invoke/${id}`, { header: header(pin), payload: {} });
const natsInvoke = (id: string, pin?: string) =>
  natsRequest(nc, `mig.v0_1.acme.invoke.${id}`, { header: header(pin), payload: {} }).then((a) => a.body);

describe("versions side by side", () => {
  it("DISCOVER lists every version, highest first, with its lifecycle", async () => {
    const res = await t.post("/mig/v0.1/discover", { header: { tenant_id: "acme" }, query: "contracts." });
    expectEnvelope("DiscoverResponse", res.body);
    const listed = res.body.capabilities.map((d: CapabilityDescriptor) => `${d.id} ${d.version}`);
    expect(listed).toEqual([
      "contracts.aging 2.0.0",
      "contracts.aging 1.0.0",
      "contracts.aging 0.9.0",
      "contracts.gone 1.0.0",
      "contracts.side 3.0.0-beta.1",
      "contracts.side 2.0.0",
      "contracts.side 1.2.0",
      "contracts.side 1.0.0",
    ]);
    const aging = res.body.capabilities.find(
      (d: CapabilityDescriptor) => d.version === "1.0.0" && d.id === "contracts.aging",
    );
    expect(aging.lifecycle).toEqual({ deprecated: "use 2.x", sunset: SUNSET_AHEAD });
  });

  it("without a pin, a call gets the highest stable version; a pin gets the highest version it matches (HTTP)", async () => {
    const cases: [string | undefined, string][] = [
      [undefined, "2.0.0"],
      ["", "2.0.0"],
      ["1.0.0", "1.0.0"],
      ["^1.0", "1.2.0"],
      ["~1.0.0", "1.0.0"],
      ["1.x", "1.2.0"],
      [">=1.1.0 <2.0.0", "1.2.0"],
      ["3.0.0-beta.1", "3.0.0-beta.1"],
      ["2", "2.0.0"],
    ];
    for (const [pin, served] of cases) {
      const res = await httpInvoke("contracts.side", pin);
      expect(res.status, `${pin}: ${JSON.stringify(res.body)}`).toBe(200);
      expectEnvelope("InvokeResponse", res.body);
      expect(res.body.payload.served_version, String(pin)).toBe(served);
      // A pinned call's answer says which version served it; an unpinned one's header is left as it was.
      expect(res.body.header.meta?.[PIN]).toBe(pin ? served : pin);
    }
  });

  it("carries the pin the same way over NATS, gRPC and the WebSocket stream", async () => {
    expect((await natsInvoke("contracts.side", "^1")).payload.served_version).toBe("1.2.0");
    expect((await natsInvoke("contracts.side")).payload.served_version).toBe("2.0.0");

    const grpcAnswer = await unary(c.invocation, "Invoke", {
      header: { tenant_id: "acme", mig_version: "0.1", meta: { fields: { [PIN]: { stringValue: "1.0.0" } } } },
      capability: "contracts.side",
      payload: { fields: {} },
    });
    expect(grpcAnswer.payload.fields.served_version.stringValue).toBe("1.0.0");
    expect(grpcAnswer.header.meta.fields[PIN].stringValue).toBe("1.0.0");

    const ws = await StreamClient.open(t.http.url);
    try {
      const streamId = `s-${randomUUID()}`;
      ws.send({
        header: { tenant_id: "acme", message_id: randomUUID(), meta: { [PIN]: "~1.2" } },
        stream_id: streamId,
        capability: "contracts.side",
        kind: "request",
        payload: {},
        stream_preference: "server_stream",
      });
      await ws.until("the stream's end", () => ws.done.has(streamId));
      const frames = ws.of(streamId);
      expect(frames.map((f) => f.payload?.served_version)).toEqual(["1.2.0", "1.2.0"]);
      expect(frames.every((f) => f.header.meta[PIN] === "1.2.0")).toBe(true);
    } finally {
      ws.ws.close();
    }
  });

  it("a pin nothing satisfies is MIG_UNSUPPORTED_CAPABILITY listing the versions; a malformed pin names the field", async () => {
    const none = await httpInvoke("contracts.side", "^4");
    expectError(none, 404, "MIG_UNSUPPORTED_CAPABILITY");
    expect(none.body.error.details).toEqual({
      capability: "contracts.side",
      requested_version: "^4",
      available_versions: ["3.0.0-beta.1", "2.0.0", "1.2.0", "1.0.0"],
    });
    expect((await natsInvoke("contracts.side", "1.1.0")).error.code).toBe("MIG_UNSUPPORTED_CAPABILITY");
    await expectStatus(
      unary(c.invocation, "Invoke", {
        header: { tenant_id: "acme", mig_version: "0.1", meta: { fields: { [PIN]: { stringValue: ">=5" } } } },
        capability: "contracts.side",
        payload: { fields: {} },
      }),
      5,
      "MIG_UNSUPPORTED_CAPABILITY",
    );

    for (const bad of ["one.two", "1.0.0.0", "latest", "v1..2"]) {
      const res = await httpInvoke("contracts.side", bad);
      expectError(res, 400, "MIG_INVALID_REQUEST");
      expect(res.body.error.message).toContain(`header.meta["${PIN}"]`);
      expect(res.body.error.details.field).toBe(`header.meta["${PIN}"]`);
    }
    const notString = await t.post("/mig/v0.1/invoke/contracts.side", {
      header: { tenant_id: "acme", meta: { [PIN]: 1 } },
      payload: {},
    });
    expectError(notString, 400, "MIG_INVALID_REQUEST");
  });
});

describe("deprecation and sunset", () => {
  it("a call to a deprecated version gets Deprecation and Sunset headers over HTTP and a meta entry on every binding", async () => {
    const res = await fetch(`${t.http.url}/mig/v0.1/invoke/contracts.aging`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: header("1.0.0"), payload: {} }),
    });
    const body = (await res.json()) as any;
    expect(res.status).toBe(200);
    expect(body.payload.served_version).toBe("1.0.0");
    expect(res.headers.get("deprecation")).toMatch(/^@\d+$/);
    expect(res.headers.get("sunset")).toBe(new Date(SUNSET_AHEAD).toUTCString());
    const meta = { version: "1.0.0", deprecated: "use 2.x", sunset: SUNSET_AHEAD, replacement_version: "2.0.0" };
    expect(body.header.meta["mig.deprecation"]).toEqual(meta);

    expect((await natsInvoke("contracts.aging", "^1")).header.meta["mig.deprecation"]).toEqual(meta);
    const grpcAnswer = await unary(c.invocation, "Invoke", {
      header: { tenant_id: "acme", mig_version: "0.1", meta: { fields: { [PIN]: { stringValue: "1.0.0" } } } },
      capability: "contracts.aging",
      payload: { fields: {} },
    });
    expect(grpcAnswer.header.meta.fields["mig.deprecation"].structValue.fields.replacement_version.stringValue).toBe(
      "2.0.0",
    );

    // The version in good standing answers without either.
    const current = await fetch(`${t.http.url}/mig/v0.1/invoke/contracts.aging`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ header: header(), payload: {} }),
    });
    expect(current.headers.get("deprecation")).toBeNull();
    expect(((await current.json()) as any).header.meta).toBeUndefined();
  });

  it("after its sunset a version answers MIG_UNSUPPORTED_CAPABILITY naming the replacement, and a range skips it", async () => {
    const res = await httpInvoke("contracts.aging", "0.9.0");
    expectError(res, 404, "MIG_UNSUPPORTED_CAPABILITY");
    expect(res.body.error.message).toContain("use 2.0.0");
    expect(res.body.error.details).toMatchObject({
      capability: "contracts.aging",
      version: "0.9.0",
      sunset: SUNSET_PAST,
      replacement_version: "2.0.0",
    });
    expect((await natsInvoke("contracts.aging", "0.9.0")).error.details.replacement_version).toBe("2.0.0");
    // A range that also matches a live version gets that one.
    expect((await httpInvoke("contracts.aging", "<2.0.0")).body.payload.served_version).toBe("1.0.0");

    const gone = await httpInvoke("contracts.gone");
    expectError(gone, 404, "MIG_UNSUPPORTED_CAPABILITY");
    expect(gone.body.error.message).toContain("no replacement version is registered");
    expect(gone.body.error.details.replacement_version).toBeUndefined();
  });

  it("counts calls per capability version, deprecated or not", async () => {
    await httpInvoke("contracts.aging", "1.0.0");
    const text = (await t.get("/metrics")).text;
    expect(text).toMatch(
      /mig_capability_version_calls_total\{capability="contracts\.aging",version="1\.0\.0",deprecated="true"\} [1-9]/,
    );
    expect(text).toMatch(
      /mig_capability_version_calls_total\{capability="contracts\.side",version="1\.2\.0",deprecated="false"\} [1-9]/,
    );
  });
});
