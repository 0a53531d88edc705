// The attacks on every binding in auth mode jwt: one table of bad tokens and one of cross-tenant attempts,
// run over NATS, WebSocket, SSE and gRPC; each must be refused with the binding's form of MIG_UNAUTHORIZED or
// MIG_FORBIDDEN and leave a deny record in the audit log. (HTTP has the same cases in auth-*.test.ts and
// security-policy.test.ts.)
import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type GrpcBinding, startGrpcBinding } from "../bindings/grpc/server.ts";
import { type NatsEventsBinding, startNatsEvents } from "../bindings/nats/events.ts";
import { type NatsBinding, startNatsBinding } from "../bindings/nats/server.ts";
import type { StoredAuditRecord } from "../runtime/policy/audit.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { expectEnvelope, expectError } from "./helpers/envelopes.ts";
import { expectStatus, type MigClients, migClients, struct, unary } from "./helpers/grpc.ts";
import { runtimeBusClient } from "./helpers/nats.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";
import { StreamClient } from "./helpers/stream-client.ts";

const SECRET = "a-test-secret-that-is-long-enough-for-hs256";
const CAPABILITY = "observatory.models.infer";
const TOPIC = "orders.created";

let t: TestRuntime;
let nats: NatsBinding;
let natsEvents: NatsEventsBinding;
let grpc: GrpcBinding;
let grpcClients: MigClients;
let nc: NatsConnection;
let pem: string;
/** A slow invocation of tenant globex, in flight for the whole file: the target of the cancel attacks. */
let globexWork: { id: string; answer: Promise<unknown> };

const slow = defineCapability(
  {
    id: "test.slow",
    version: "1.0.0",
    modes: ["unary"],
    input_schema_uri: "schema://test/any",
    output_schema_uri: "schema://test/any",
    auth_scopes: [],
  },
  (_payload, { signal }) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve({}), 600_000);
      signal.addEventListener("abort", () => clearTimeout(timer));
    }),
);

const now = () => Math.floor(Date.now() / 1000);
function hs256(
  claims: JWTPayload,
  options: { secret?: string | Uint8Array; exp?: number; nbf?: number } = {},
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setExpirationTime(options.exp ?? now() + 300);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  const secret = options.secret ?? SECRET;
  return jwt.sign(typeof secret === "string" ? new TextEncoder().encode(secret) : secret);
}
const ACME = { tenant_id: "acme", scope: "capability:infer" };

/** Bad tokens: each is refused with MIG_UNAUTHORIZED, and the audit record's reason says why. */
const TOKEN_ATTACKS: [name: string, make: () => Promise<string>, reason: RegExp][] = [
  ["expired", () => hs256({ sub: "x", ...ACME }, { exp: now() - 120 }), /expired/],
  ["not yet valid", () => hs256({ sub: "x", ...ACME }, { nbf: now() + 120 }), /"nbf"/],
  [
    "with a wrong signature",
    () => hs256({ sub: "x", ...ACME }, { secret: "another-secret-another-secret-another" }),
    /signature/,
  ],
  [
    "with alg none",
    async () => {
      const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
      return `${part({ alg: "none", typ: "JWT" })}.${part({ sub: "x", ...ACME, exp: now() + 300 })}.`;
    },
    /"none"/,
  ],
  [
    "HS256 signed with the RS256 public key (algorithm confusion)",
    () => hs256({ sub: "x", ...ACME }, { secret: new TextEncoder().encode(pem) }),
    /signature/,
  ],
  ["without a tenant claim", () => hs256({ sub: "x", scope: "capability:infer" }), /tenant/],
  ["oversized", () => hs256({ sub: "x", ...ACME, padding: "x".repeat(9 * 1024) }), /larger than/],
];

/** A caller's credentials as each binding carries them: Authorization, X-Actor (to find its audit record), X-Tenant-ID. */
interface Auth {
  authorization: string;
  actor?: string;
  tenant?: string;
}
/** What a binding answered, already checked against the binding's wire form. */
type Outcome = { ok: true } | { ok: false; code: string };

/** A cross-tenant attempt by tenant acme's caller on globex; `target` is what the audit record names. */
interface TenancyAttack {
  run: (auth: Auth) => Promise<Outcome>;
  code: string;
  requestedTenant?: string;
  operation: string;
  target?: () => string;
  /** Why this refusal leaves no audit record, when it leaves none. */
  notAudited?: string;
  /** What the caller sees when it is not the refusal itself: a CANCEL of another tenant's id answers as for an unknown id. */
  seen?: Outcome;
}

/** One small adapter per binding: an ordinary call for the token table, and the tenancy attacks it can carry. */
interface BindingAdapter {
  name: string;
  /** The `binding` of its audit records. */
  binding: string;
  /** The operation its audit records of refused credentials name. */
  operation: string;
  call: (auth: Auth) => Promise<Outcome>;
  tenancy: Record<string, TenancyAttack>;
}

// ---- NATS: bearer token in the Authorization header, tenant in the subject token ----

async function natsRequest(
  subject: string,
  body: unknown,
  auth: Auth,
  extra: Record<string, string> = {},
): Promise<Outcome> {
  const h = natsHeaders();
  h.set("Authorization", auth.authorization);
  if (auth.actor) h.set("X-Actor", auth.actor);
  for (const [k, v] of Object.entries(extra)) h.set(k, v);
  const reply = await nc.request(subject, JSON.stringify(body), { timeout: 5_000, headers: h });
  const answer = reply.json<any>();
  if (!answer.error) return { ok: true };
  expectEnvelope("ErrorEnvelope", answer);
  // The unary subjects also name the code in a NATS header.
  if (reply.headers?.get("mig_error_code")) expect(reply.headers.get("mig_error_code")).toBe(answer.error.code);
  return { ok: false, code: answer.error.code };
}

const natsAdapter: BindingAdapter = {
  name: "NATS",
  binding: "nats",
  operation: "invoke",
  call: (auth) =>
    natsRequest(`mig.v0_1.${auth.tenant ?? "acme"}.invoke.${CAPABILITY}`, { payload: { input: "x" } }, auth),
  tenancy: {
    "tenant B in a NATS header": {
      run: (auth) =>
        natsRequest(`mig.v0_1.acme.invoke.${CAPABILITY}`, { payload: { input: "x" } }, auth, { tenant_id: "globex" }),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "invoke",
    },
    "tenant B in the subject": {
      run: (auth) => natsRequest(`mig.v0_1.globex.invoke.${CAPABILITY}`, { payload: { input: "x" } }, auth),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "invoke",
    },
    "tenant B in the body": {
      run: (auth) =>
        natsRequest(
          `mig.v0_1.acme.invoke.${CAPABILITY}`,
          { header: { tenant_id: "globex" }, payload: { input: "x" } },
          auth,
        ),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "invoke",
    },
    "cancelling tenant B's invocation": {
      run: (auth) => natsRequest(`mig.v0_1.acme.control.cancel.${globexWork.id}`, {}, auth),
      code: "MIG_FORBIDDEN",
      seen: { ok: true },
      operation: "cancel",
      target: () => globexWork.id,
    },
    "cancelling on tenant B's subject": {
      run: (auth) => natsRequest(`mig.v0_1.globex.control.cancel.${globexWork.id}`, {}, auth),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "cancel",
      target: () => globexWork.id,
    },
    "subscribing to tenant B's topic (subject)": {
      run: (auth) =>
        natsRequest(`mig.v0_1.globex.subscribe.${TOPIC}`, { deliver_subject: `_INBOX.${randomUUID()}` }, auth),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "subscribe",
      target: () => TOPIC,
    },
    "subscribing to tenant B's topic (body)": {
      run: (auth) =>
        natsRequest(
          `mig.v0_1.acme.subscribe.${TOPIC}`,
          { header: { tenant_id: "globex" }, deliver_subject: `_INBOX.${randomUUID()}` },
          auth,
        ),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "subscribe",
      target: () => TOPIC,
    },
    "making the runtime deliver its events into tenant B's audit stream (deliver_subject)": {
      run: (auth) => natsRequest(`mig.v0_1.acme.subscribe.${TOPIC}`, { deliver_subject: "_MIG.audit.t.globex" }, auth),
      code: "MIG_FORBIDDEN",
      operation: "subscribe",
      target: () => TOPIC,
    },
    "starting a stream on tenant B's subject": {
      run: (auth) =>
        natsRequest("mig.v0_1.globex.control.stream", { capability: CAPABILITY, payload: { input: "x" } }, auth),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "stream",
      target: () => CAPABILITY,
    },
    "publishing to tenant B's topic": {
      run: (auth) => natsRequest(`mig.v0_1.globex.events.${TOPIC}`, { payload: {} }, auth),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "publish",
      target: () => TOPIC,
    },
  },
};

// ---- WebSocket: token at the upgrade of GET /mig/v0.1/stream; refusals are upgrade refusals or error frames ----

function wsHeaders(auth: Auth): Record<string, string> {
  return {
    authorization: auth.authorization,
    ...(auth.actor ? { "x-actor": auth.actor } : {}),
    ...(auth.tenant ? { "x-tenant-id": auth.tenant } : {}),
  };
}

/** Opens the stream endpoint; a refused upgrade resolves with its HTTP status and error envelope. */
function upgrade(auth: Auth): Promise<{ ws: WebSocket } | { status: number; body: any }> {
  const ws = new WebSocket(`${t.http.url.replace(/^http/, "ws")}/mig/v0.1/stream`, { headers: wsHeaders(auth) });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ws }));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
  });
}

async function wsUpgradeOutcome(auth: Auth, httpStatus: number): Promise<Outcome> {
  const answer = await upgrade(auth);
  if ("ws" in answer) {
    answer.ws.terminate();
    return { ok: true };
  }
  expectError(answer, httpStatus, answer.body.error?.code);
  return { ok: false, code: answer.body.error.code };
}

/** Sends one frame on an accepted socket and returns the error frame that answers it. */
async function wsFrameOutcome(auth: Auth, frame: Record<string, unknown>): Promise<Outcome> {
  const client = await StreamClient.open(t.http.url, wsHeaders(auth));
  try {
    client.send(frame);
    const frames = await client.ended(frame.stream_id as string);
    const last = frames.at(-1)!;
    if (last.kind !== "error") return { ok: true };
    expectEnvelope("StreamFrame", last);
    return { ok: false, code: last.error.code };
  } finally {
    client.close();
  }
}

const wsAdapter: BindingAdapter = {
  name: "WebSocket",
  binding: "http",
  operation: "stream",
  call: (auth) => wsUpgradeOutcome({ tenant: "acme", ...auth }, 401),
  tenancy: {
    "tenant B in X-Tenant-ID at the upgrade": {
      run: (auth) => wsUpgradeOutcome({ ...auth, tenant: "globex" }, 403),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "stream",
    },
    "tenant B in a request frame's header": {
      run: (auth) =>
        wsFrameOutcome(auth, {
          header: { tenant_id: "globex" },
          stream_id: `s-${randomUUID()}`,
          capability: CAPABILITY,
          kind: "request",
          payload: { input: "x" },
        }),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "stream",
    },
    "cancelling tenant B's invocation by its message_id in a control frame": {
      run: (auth) =>
        wsFrameOutcome(auth, {
          header: { message_id: globexWork.id },
          stream_id: `s-${randomUUID()}`,
          kind: "control",
          payload: { action: "cancel" },
        }),
      code: "MIG_NOT_FOUND",
      operation: "stream",
      notAudited:
        "control frames reach only the streams of their own connection, so another tenant's work cannot even be named",
    },
    // No SUBSCRIBE over the WebSocket endpoint.
  },
};

// ---- SSE: GET /mig/v0.1/subscribe/{topic}; a refusal is an HTTP status with an error envelope, before any event ----

async function sseOutcome(path: string, auth: Auth, httpStatus: number): Promise<Outcome> {
  let client: SseClient;
  try {
    client = await SseClient.open(`${t.http.url}${path}`, wsHeaders(auth));
  } catch (err) {
    const refused = err as { status: number; body: any };
    expectError(refused, httpStatus, refused.body?.error?.code);
    return { ok: false, code: refused.body.error.code };
  }
  client.close();
  return { ok: true };
}

const sseAdapter: BindingAdapter = {
  name: "SSE",
  binding: "http",
  operation: "subscribe",
  call: (auth) => sseOutcome(`/mig/v0.1/subscribe/${TOPIC}`, { tenant: "acme", ...auth }, 401),
  tenancy: {
    "subscribing with tenant B in X-Tenant-ID": {
      run: (auth) => sseOutcome(`/mig/v0.1/subscribe/${TOPIC}`, { ...auth, tenant: "globex" }, 403),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "subscribe",
      target: () => TOPIC,
    },
    "subscribing with tenant B in the query (the request's header)": {
      run: (auth) => sseOutcome(`/mig/v0.1/subscribe/${TOPIC}?tenant_id=globex`, auth, 403),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "subscribe",
      target: () => TOPIC,
    },
    // SSE has no CANCEL; the same attack over HTTP is in security-policy.test.ts.
  },
};

// ---- gRPC: metadata `authorization` and `x-tenant-id`; refusals are UNAUTHENTICATED / PERMISSION_DENIED ----

const GRPC_STATUS: Record<string, number> = {
  MIG_UNAUTHORIZED: status.UNAUTHENTICATED,
  MIG_FORBIDDEN: status.PERMISSION_DENIED,
};

function grpcMetadata(auth: Auth): Record<string, string> {
  return {
    authorization: auth.authorization,
    ...(auth.actor ? { "x-actor": auth.actor } : {}),
    ...(auth.tenant ? { "x-tenant-id": auth.tenant } : {}),
  };
}

async function grpcOutcome(call: Promise<unknown>): Promise<Outcome> {
  try {
    await call;
    return { ok: true };
  } catch (err) {
    const code = (err as { metadata?: { get(k: string): unknown[] } }).metadata?.get("mig-error-code")[0];
    if (typeof code !== "string") throw err;
    await expectStatus(Promise.reject(err), GRPC_STATUS[code] ?? -1, code);
    return { ok: false, code };
  }
}

const grpcInvoke = (auth: Auth, header: Record<string, string> = {}) =>
  grpcOutcome(
    unary(
      grpcClients.invocation,
      "Invoke",
      { header, capability: CAPABILITY, payload: struct({ input: "x" }) },
      { metadata: grpcMetadata(auth) },
    ),
  );

const grpcAdapter: BindingAdapter = {
  name: "gRPC",
  binding: "grpc",
  // The gRPC binding does not tell the authenticator which method was called (bindings/grpc/server.ts).
  operation: "authenticate",
  call: (auth) => grpcInvoke({ tenant: "acme", ...auth }),
  tenancy: {
    "tenant B in x-tenant-id metadata": {
      run: (auth) => grpcInvoke({ ...auth, tenant: "globex" }),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "invoke",
    },
    "tenant B in the message header": {
      run: (auth) => grpcInvoke(auth, { tenant_id: "globex" }),
      code: "MIG_FORBIDDEN",
      requestedTenant: "globex",
      operation: "invoke",
    },
    "cancelling tenant B's invocation": {
      run: (auth) =>
        grpcOutcome(
          unary(
            grpcClients.control,
            "Cancel",
            { header: {}, target_message_id: globexWork.id },
            { metadata: grpcMetadata(auth) },
          ),
        ),
      code: "MIG_FORBIDDEN",
      seen: { ok: true },
      operation: "cancel",
      target: () => globexWork.id,
    },
    // Events.Subscribe and Publish answer UNIMPLEMENTED until the gRPC events binding lands; add their attacks then.
  },
};

const ADAPTERS = [natsAdapter, wsAdapter, sseAdapter, grpcAdapter];

/** The audit record of `actor`'s refusal, read back through the runtime's audit reader (the admin route's source). */
function auditedDeny(actor: string, code: string): Promise<StoredAuditRecord> {
  return waitFor(`the audit record of ${actor}`, async () => {
    const { records } = await t.runtime.audit!.query({ tenant: "acme", limit: 1000 });
    return records.find((r) => r.actor === actor && r.code === code);
  });
}

beforeAll(async () => {
  const keys = await generateKeyPair("RS256", { extractable: true });
  pem = await exportSPKI(keys.publicKey);
  const dir = mkdtempSync(join(tmpdir(), "mig-attacks-"));
  writeFileSync(join(dir, "rsa.pem"), pem);
  // HS256 and RS256 both accepted, so that an HS256 token "signed" with the RSA public key is a real confusion attempt.
  t = await startTestRuntime({
    capabilities: [slow],
    config: { authMode: "jwt", jwtHs256Secret: SECRET, jwtPublicKeyFile: join(dir, "rsa.pem") },
  });
  t.runtime.schemas.register("schema://test/any", { type: "object" });
  nats = await startNatsBinding(t.runtime, t.runtime.authenticator);
  natsEvents = startNatsEvents(t.runtime, t.runtime.authenticator);
  grpc = await startGrpcBinding(t.runtime, t.runtime.authenticator, "127.0.0.1:0");
  grpcClients = migClients(grpc.address);
  nc = await runtimeBusClient(t.runtime);

  const bob = { authorization: `Bearer ${await hs256({ sub: "bob", tenant_id: "globex" })}` };
  const id = randomUUID();
  const answer = t.post(
    "/mig/v0.1/invoke/test.slow",
    { header: { message_id: id, deadline_ms: 600_000 }, payload: {} },
    bob,
  );
  await waitFor("globex's invocation to be in flight", () => t.runtime.work.invocations.has(id));
  globexWork = { id, answer };
});

afterAll(async () => {
  if (globexWork) {
    const bob = { authorization: `Bearer ${await hs256({ sub: "bob", tenant_id: "globex" })}` };
    await t.post(`/mig/v0.1/cancel/${globexWork.id}`, {}, bob);
    await globexWork.answer;
  }
  grpcClients?.close();
  await nc?.close();
  await natsEvents?.close();
  await nats?.close();
  await grpc?.close();
  await t?.stop();
});

for (const adapter of ADAPTERS) {
  describe(adapter.name, () => {
    it("serves a valid tenant-A token (so that the refusals below are the token's doing)", async () => {
      const outcome = await adapter.call({ authorization: `Bearer ${await hs256({ sub: "alice", ...ACME })}` });
      expect(outcome).toEqual({ ok: true });
    });

    for (const [name, make, reason] of TOKEN_ATTACKS) {
      it(`refuses a token ${name}: MIG_UNAUTHORIZED, audited`, async () => {
        const actor = `attacker-${adapter.binding}-${adapter.operation}-${TOKEN_ATTACKS.findIndex(([n]) => n === name)}`;
        expect(await adapter.call({ authorization: `Bearer ${await make()}`, actor })).toEqual({
          ok: false,
          code: "MIG_UNAUTHORIZED",
        });
        expect(await auditedDeny(actor, "MIG_UNAUTHORIZED")).toMatchObject({
          kind: "authentication",
          binding: adapter.binding,
          operation: adapter.operation,
          tenant: "acme",
          authenticated: false,
          decision: "deny",
          outcome: "error",
          reason: expect.stringMatching(reason),
        });
      });
    }

    for (const [name, attack] of Object.entries(adapter.tenancy)) {
      it(`refuses a tenant-A token ${name}: ${attack.seen ? "answered as unknown" : attack.code}, audited as ${attack.code}`, async () => {
        const sub = `alice-${randomUUID()}`;
        const outcome = await attack.run({ authorization: `Bearer ${await hs256({ sub, ...ACME })}` });
        // Nothing of globex's was touched: its invocation runs on.
        expect(outcome).toEqual(attack.seen ?? { ok: false, code: attack.code });
        expect(t.runtime.work.invocations.has(globexWork.id)).toBe(true);
        if (attack.notAudited) return;
        const record = await auditedDeny(sub, attack.code);
        expect(record).toMatchObject({
          kind: "operation",
          binding: adapter.binding,
          operation: attack.operation,
          tenant: "acme",
          authenticated: true,
          decision: "deny",
        });
        expect(record.requested_tenant).toBe(attack.requestedTenant);
        if (attack.target) expect(record.target).toBe(attack.target());
      });
    }
  });
}

describe("NATS replies", () => {
  it("a PUBLISH or SUBSCRIBE naming tenant B's audit stream as reply-to is dropped, not answered there", async () => {
    const dropped = async () =>
      (await t.runtime.metrics.natsDropped.get()).values.find((v) => v.labels.reason === "reply_subject_refused")
        ?.value ?? 0;
    const before = await dropped();
    const spy = nc.subscribe("_MIG.audit.t.globex");
    const h = natsHeaders();
    h.set("Authorization", `Bearer ${await hs256({ sub: "mallory", ...ACME })}`);
    const reply = "_MIG.audit.t.globex";
    nc.publish(`mig.v0_1.acme.events.${TOPIC}`, JSON.stringify({ payload: {} }), { reply, headers: h });
    nc.publish(`mig.v0_1.acme.subscribe.${TOPIC}`, JSON.stringify({ deliver_subject: `_INBOX.${randomUUID()}` }), {
      reply,
      headers: h,
    });
    await waitFor("both requests dropped", async () => (await dropped()) >= before + 2);
    await nc.flush();
    expect(spy.getProcessed()).toBe(0);
    spy.unsubscribe();
  });
});
