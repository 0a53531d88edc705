// Auth mode jwt over gRPC metadata: the same Authenticator and tenant rules as HTTP, as gRPC statuses.

import { status } from "@grpc/grpc-js";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import {
  type CallReader,
  expectStatus,
  type MigClients,
  migClients,
  streamInvoke,
  struct,
  subscribeCall,
  unary,
} from "./helpers/grpc.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
let t: TestRuntime;
let grpc: GrpcBinding;
let c: MigClients;

beforeAll(async () => {
  t = await startTestRuntime({ config: { authMode: "jwt", jwtHs256Secret: SECRET } });
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  c = migClients(grpc.address);
});
afterAll(async () => {
  c?.close();
  await grpc?.close();
  await t?.stop();
});

function token(claims: Record<string, unknown>, secret = SECRET): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime("5 minutes")
    .sign(new TextEncoder().encode(secret));
}
const bearer = async (claims: Record<string, unknown>, secret?: string) => ({
  authorization: `Bearer ${await token(claims, secret)}`,
});
const invoke = (metadata: Record<string, string>, tenant?: string) =>
  unary(
    c.invocation,
    "Invoke",
    {
      header: tenant ? { tenant_id: tenant } : {},
      capability: "observatory.models.infer",
      payload: struct({ input: "x" }),
    },
    { metadata },
  );

describe("authentication from metadata", () => {
  it("a call without a token → UNAUTHENTICATED (MIG_UNAUTHORIZED), on every service", async () => {
    await expectStatus(invoke({}, "acme"), status.UNAUTHENTICATED, "MIG_UNAUTHORIZED");
    await expectStatus(
      unary(c.discovery, "Hello", { header: { tenant_id: "acme" } }),
      status.UNAUTHENTICATED,
      "MIG_UNAUTHORIZED",
    );
    await expectStatus(
      unary(c.control, "Heartbeat", { header: { tenant_id: "acme" } }),
      status.UNAUTHENTICATED,
      "MIG_UNAUTHORIZED",
    );
  });

  it("a wrongly signed token, or a non-Bearer authorization → UNAUTHENTICATED", async () => {
    await expectStatus(
      invoke(await bearer({ sub: "u", tenant_id: "acme" }, "another-secret-another-secret-another")),
      status.UNAUTHENTICATED,
      "MIG_UNAUTHORIZED",
    );
    await expectStatus(invoke({ authorization: "Basic dXNlcjpwYXNz" }), status.UNAUTHENTICATED, "MIG_UNAUTHORIZED");
  });

  it("a valid token with the scope invokes; the tenant comes from the token", async () => {
    const res = await invoke(await bearer({ sub: "alice", tenant_id: "acme", scope: "capability:infer" }));
    expect(res.header.tenant_id).toBe("acme");
    expect(res.payload.fields.result.stringValue).toBe("ok");
  });
});

describe("tenancy and scopes", () => {
  it("a tenant-A token naming tenant B in the header or in x-tenant-id → PERMISSION_DENIED (MIG_FORBIDDEN)", async () => {
    const acme = await bearer({ sub: "alice", tenant_id: "acme", scope: "capability:infer" });
    await expectStatus(invoke(acme, "globex"), status.PERMISSION_DENIED, "MIG_FORBIDDEN");
    await expectStatus(invoke({ ...acme, "x-tenant-id": "globex" }), status.PERMISSION_DENIED, "MIG_FORBIDDEN");
  });

  it("Discover hides what the token's scopes do not allow; Invoke refuses it", async () => {
    const without = await bearer({ sub: "bob", tenant_id: "acme", scope: "something:else" });
    expect((await unary(c.discovery, "Discover", {}, { metadata: without })).capabilities).toEqual([]);
    await expectStatus(invoke(without), status.PERMISSION_DENIED, "MIG_FORBIDDEN");
  });
});

describe("streams and events", () => {
  const inferFrame = (tenant?: string) => ({
    header: tenant ? { tenant_id: tenant } : {},
    capability: "observatory.models.infer",
    kind: "FRAME_KIND_REQUEST",
    payload: struct({ input: "a b" }),
  });

  async function endedWith(call: CallReader, grpcCode: number, migCode: string): Promise<void> {
    await call.end();
    expect(call.code).toBe(grpcCode);
    expect(call.error!.metadata.get("mig-error-code")).toEqual([migCode]);
  }

  it("StreamInvoke, Publish and Subscribe without a token → UNAUTHENTICATED", async () => {
    const stream = streamInvoke(c, { metadata: { "x-tenant-id": "acme" } });
    stream.call.write(inferFrame());
    await endedWith(stream, status.UNAUTHENTICATED, "MIG_UNAUTHORIZED");
    await expectStatus(
      unary(c.events, "Publish", { header: { tenant_id: "acme" }, topic: "a.b", payload: struct({}) }),
      status.UNAUTHENTICATED,
      "MIG_UNAUTHORIZED",
    );
    await endedWith(
      subscribeCall(c, { header: { tenant_id: "acme" }, topic: "a.b" }),
      status.UNAUTHENTICATED,
      "MIG_UNAUTHORIZED",
    );
  });

  it("a tenant-A token naming tenant B → PERMISSION_DENIED on StreamInvoke, Publish and Subscribe", async () => {
    const acme = await bearer({ sub: "alice", tenant_id: "acme", scope: "capability:infer" });
    const stream = streamInvoke(c, { metadata: acme });
    stream.call.write(inferFrame("globex"));
    await endedWith(stream, status.PERMISSION_DENIED, "MIG_FORBIDDEN");
    await expectStatus(
      unary(
        c.events,
        "Publish",
        { header: { tenant_id: "globex" }, topic: "a.b", payload: struct({}) },
        { metadata: acme },
      ),
      status.PERMISSION_DENIED,
      "MIG_FORBIDDEN",
    );
    await endedWith(
      subscribeCall(c, { topic: "a.b" }, { metadata: { ...acme, "x-tenant-id": "globex" } }),
      status.PERMISSION_DENIED,
      "MIG_FORBIDDEN",
    );
  });

  it("with a valid token a stream runs in the token's tenant", async () => {
    const stream = streamInvoke(c, {
      metadata: await bearer({ sub: "alice", tenant_id: "acme", scope: "capability:infer" }),
    });
    stream.call.write(inferFrame());
    stream.call.end();
    const frames = await stream.end();
    expect(stream.code).toBe(status.OK);
    expect(frames).toHaveLength(3);
    expect(frames.every((f) => f.header.tenant_id === "acme")).toBe(true);
  });
});
