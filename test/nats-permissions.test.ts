// The bus is not a back door: a real nats-server with nats-server.secure.conf refuses tenant clients and
// providers everything outside their subjects, while the runtime (with its own credential) works as usual.

import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONF } from "../runtime/bus/nats-launcher.ts";
import { replySubjectAllowed } from "../runtime/policy/policy.ts";
import {
  consumerName,
  decode,
  encode,
  leaveSubject,
  registerSubject,
  WORK_STREAM,
  workSubject,
} from "../runtime/protocol/provider-protocol.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const PASSWORDS = {
  MIG_NATS_RUNTIME_PASSWORD: "runtime-pw-for-tests",
  MIG_NATS_PROVIDER_PASSWORD: "provider-pw-for-tests",
  MIG_NATS_TENANT_ACME_PASSWORD: "acme-pw-for-tests",
  MIG_NATS_TENANT_GLOBEX_PASSWORD: "globex-pw-for-tests",
};

let t: TestRuntime;
const open: NatsConnection[] = [];

interface Client {
  nc: NatsConnection;
  violations: string[];
}

async function client(user: string, password: string, inboxPrefix?: string): Promise<Client> {
  const nc = await connect({
    servers: t.runtime.natsUrl,
    user,
    pass: password,
    ...(inboxPrefix ? { inboxPrefix } : {}),
  });
  open.push(nc);
  const violations: string[] = [];
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "error") violations.push(String(status.error.message));
    }
  })();
  return { nc, violations };
}

/** Publishes and waits for the server's verdict: a permissions violation naming the subject, or none. */
async function refusedPublish(c: Client, subject: string): Promise<boolean> {
  c.nc.publish(subject, "{}");
  await c.nc.flush();
  await c.nc.flush();
  return c.violations.some((v) => /permissions violation for publish/i.test(v) && v.includes(subject));
}

/** Subscribes and waits for the server's verdict: refused (a violation naming the subject), or not within 1 s. */
async function refusedSubscribe(c: Client, subject: string): Promise<boolean> {
  c.nc.subscribe(subject);
  const refused = () =>
    c.violations.some((v) => /permissions violation for subscription/i.test(v) && v.includes(subject));
  return waitFor(
    `the verdict on subscribing to ${subject}`,
    async () => {
      await c.nc.flush();
      return refused();
    },
    1_000,
  ).then(
    () => true,
    () => false,
  );
}

beforeAll(async () => {
  Object.assign(process.env, PASSWORDS);
  t = await startTestRuntime({
    config: {
      natsConf: join(DEFAULT_CONF, "..", "nats-server.secure.conf"),
      natsUser: "runtime",
      natsPassword: PASSWORDS.MIG_NATS_RUNTIME_PASSWORD,
    },
  });
});
afterAll(async () => {
  for (const nc of open) await nc.close().catch(() => undefined);
  await t?.stop();
});

describe("nats-server.secure.conf", () => {
  it("the runtime runs on its credential: JetStream, the audit stream and HTTP invocations work", async () => {
    const res = await t.post("/mig/v0.1/invoke/observatory.models.infer", {
      header: { tenant_id: "acme" },
      payload: { input: "x" },
    });
    expect(res.status).toBe(200);
    expect((await t.runtime.bus.jsm.streams.info("MIG_AUDIT")).config.subjects).toEqual(["_MIG.audit.>"]);
  });

  it("refuses an unknown user and a wrong password", async () => {
    await expect(
      connect({ servers: t.runtime.natsUrl, user: "acme", pass: "wrong", reconnect: false }),
    ).rejects.toThrow(/auth/i);
    await expect(connect({ servers: t.runtime.natsUrl, reconnect: false })).rejects.toThrow(/auth/i);
  });

  it("a tenant client cannot publish on internal subjects, another tenant's subjects or the JetStream API", async () => {
    const acme = await client("acme", PASSWORDS.MIG_NATS_TENANT_ACME_PASSWORD, "_INBOX_acme");
    for (const subject of [
      "_MIG.work.observatory.models.infer",
      "_MIG.cancel.all",
      "_MIG.audit.t.acme",
      "_MIG.provider.register",
      "mig.v0_1.globex.invoke.observatory.models.infer",
      "$JS.API.STREAM.DELETE.MIG_AUDIT",
      "$KV.mig_idempotency.x",
    ]) {
      expect(await refusedPublish(acme, subject), subject).toBe(true);
    }
  });

  it("a tenant client cannot listen on other tenants' requests, internal subjects or another inbox", async () => {
    const acme = await client("acme", PASSWORDS.MIG_NATS_TENANT_ACME_PASSWORD, "_INBOX_acme");
    for (const subject of [
      "mig.v0_1.>",
      "mig.v0_1.globex.events.>",
      "mig.v0_1.acme.invoke.>",
      "_MIG.>",
      "_INBOX_globex.>",
      "_INBOX.>",
    ]) {
      expect(await refusedSubscribe(acme, subject), subject).toBe(true);
    }
    expect(await refusedSubscribe(acme, "mig.v0_1.acme.events.>")).toBe(false);
  });

  it("a tenant client reaches the runtime on its own subjects and gets replies in its own inbox", async () => {
    const served = t.runtime.bus.nc.subscribe("mig.v0_1.acme.test.echo", {
      callback: (_err, msg) => void msg.respond(msg.data),
    });
    await t.runtime.bus.nc.flush();
    const acme = await client("acme", PASSWORDS.MIG_NATS_TENANT_ACME_PASSWORD, "_INBOX_acme");
    const reply = await acme.nc.request("mig.v0_1.acme.test.echo", "ping", { timeout: 2_000 });
    expect(reply.string()).toBe("ping");
    expect(await refusedPublish(acme, "mig.v0_1.acme.hello")).toBe(false);
    served.unsubscribe();
  });

  it("a provider cannot impersonate the runtime: no dispatch, cancel, audit or public subjects", async () => {
    const provider = await client("provider", PASSWORDS.MIG_NATS_PROVIDER_PASSWORD, "_INBOX_provider");
    for (const subject of [
      "_MIG.work.observatory.models.infer",
      "_MIG.cancel.x",
      "_MIG.audit.t.acme",
      "mig.v0_1.acme.invoke.observatory.models.infer",
      "_INBOX_acme.abc",
    ]) {
      expect(await refusedPublish(provider, subject), subject).toBe(true);
    }
    for (const subject of ["mig.v0_1.>", "_MIG.audit.>", "_INBOX_acme.>"]) {
      expect(await refusedSubscribe(provider, subject), subject).toBe(true);
    }
    expect(await refusedPublish(provider, "_MIG.provider.heartbeat")).toBe(false);
  });

  it("a provider may take stream opens, read its streams' control subjects and send frames to the gateway", async () => {
    const provider = await client("provider", PASSWORDS.MIG_NATS_PROVIDER_PASSWORD, "_INBOX_provider");
    for (const subject of ["_MIG.stream.remote.stream.count", "_MIG.swk.abc.1"]) {
      expect(await refusedSubscribe(provider, subject), subject).toBe(false);
    }
    expect(await refusedPublish(provider, "_MIG.sgw.gateway.1")).toBe(false);
    expect(await refusedPublish(provider, "_MIG.swk.abc.1"), "credits are the gateway's to send").toBe(true);
  });

  it("a provider may run a handed-off NATS stream: publish its frames, read its caller's inbound subject, and no more", async () => {
    const provider = await client("provider", PASSWORDS.MIG_NATS_PROVIDER_PASSWORD, "_INBOX_provider");
    expect(await refusedPublish(provider, "mig.v0_1.acme.stream.s-1")).toBe(false);
    expect(await refusedSubscribe(provider, "mig.v0_1.acme.stream.s-1.in")).toBe(false);
    // Not the caller's side: credits and cancels on the inbound subject, nor reading other streams' frames.
    expect(await refusedPublish(provider, "mig.v0_1.acme.stream.s-1.in")).toBe(true);
    expect(await refusedSubscribe(provider, "mig.v0_1.acme.stream.s-2")).toBe(true);
    expect(await refusedPublish(provider, "mig.v0_1.acme.control.stream")).toBe(true);
  });

  it("a tenant client reads its own tenant's stream frames, not another's", async () => {
    const acme = await client("acme", PASSWORDS.MIG_NATS_TENANT_ACME_PASSWORD, "_INBOX_acme");
    expect(await refusedSubscribe(acme, "mig.v0_1.acme.stream.s-1")).toBe(false);
    expect(await refusedSubscribe(acme, "mig.v0_1.globex.stream.s-1")).toBe(true);
  });

  it("a provider answers exactly the work it received (allow_responses)", async () => {
    const provider = await client("provider", PASSWORDS.MIG_NATS_PROVIDER_PASSWORD, "_INBOX_provider");
    provider.nc.subscribe("_MIG.work.test.echo", { callback: (_err, msg) => void msg.respond(msg.data) });
    await provider.nc.flush();
    const reply = await t.runtime.bus.nc.request("_MIG.work.test.echo", "work", { timeout: 2_000 });
    expect(reply.string()).toBe("work");
  });
});

describe("a provider on the provider credential", () => {
  it("runs the whole provider protocol: registers through the registrar, pulls and acks queued work, answers best_effort work", async () => {
    const provider = await client("provider", PASSWORDS.MIG_NATS_PROVIDER_PASSWORD, "_INBOX_provider");
    const schema = "schema://test/open/v1";
    const descriptor = (id: string, delivery: string) => ({
      id,
      version: "1.0.0",
      modes: ["unary"],
      input_schema_uri: schema,
      output_schema_uri: schema,
      auth_scopes: [],
      qos: { delivery_semantics: delivery },
    });
    const record = {
      v: 1,
      provider_id: "perm-1",
      heartbeat_ms: 60_000,
      started_at: new Date().toISOString(),
      capabilities: [
        { descriptor: descriptor("perm.queued", "at_least_once") },
        { descriptor: descriptor("perm.fast", "best_effort") },
      ],
    };
    provider.nc.subscribe(workSubject("perm.fast"), {
      queue: "mig-workers",
      callback: (_err, msg) =>
        void msg.respond(encode({ ok: true, payload: { fast: (decode(msg.data) as { payload: unknown }).payload } })),
    });
    provider.nc.publish(registerSubject("perm-1"), JSON.stringify(record));
    await waitFor("both capabilities in DISCOVER", async () => {
      const ids = (await t.post("/mig/v0.1/discover", { header: { tenant_id: "acme" } })).body.capabilities.map(
        (c: { id: string }) => c.id,
      );
      return ids.includes("perm.queued") && ids.includes("perm.fast");
    });

    const fast = await t.post("/mig/v0.1/invoke/perm.fast", { header: { tenant_id: "acme" }, payload: { n: 1 } });
    expect(fast.body.payload).toEqual({ fast: { n: 1 } });

    const queued = t.post("/mig/v0.1/invoke/perm.queued", { header: { tenant_id: "acme" }, payload: { n: 2 } });
    const consumer = await jetstream(provider.nc).consumers.get(WORK_STREAM, consumerName("perm.queued"));
    const batch = await consumer.fetch({ max_messages: 1, expires: 5_000 });
    for await (const msg of batch) {
      const request = decode(msg.data) as { payload: unknown; reply_to: string };
      provider.nc.publish(request.reply_to, encode({ ok: true, payload: { queued: request.payload } }));
      msg.ack();
    }
    expect((await queued).body.payload).toEqual({ queued: { n: 2 } });
    expect(provider.violations).toEqual([]);
    provider.nc.publish(leaveSubject("perm-1"));
  });
});

describe("reply subjects", () => {
  it("the runtime answers only into inboxes, and a tenant's prefixed inbox only for that tenant", () => {
    expect(replySubjectAllowed("_INBOX.abc.1", "acme")).toBe(true);
    expect(replySubjectAllowed("_INBOX_acme.abc", "acme")).toBe(true);
    for (const reply of [
      "_INBOX_globex.abc",
      "_MIG.work.x",
      "$JS.API.STREAM.DELETE.MIG_AUDIT",
      "mig.v0_1.acme.invoke.x",
      "_INBOX_acme2.x",
    ]) {
      expect(replySubjectAllowed(reply, "acme"), reply).toBe(false);
    }
  });
});
