// Quotas per tenant: topics per tenant and in all, bytes and events per topic, PUBLISH rate, and what the idempotency
// store keeps. Each test has one tenant reach a limit while another tenant's PUBLISH and INVOKE go on as before.

import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineCapability } from "../runtime/provider/provider.ts";
import { topicRef } from "../runtime/store/events.ts";
import { IDEMPOTENCY_BUCKET, IDEMPOTENCY_META_KEY, IdempotencyStore } from "../runtime/store/idempotency.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

/** Runs per tag; answers `size` bytes of output. */
const runs = new Map<string, number>();
const sized = defineCapability(
  anyDescriptor("test.quota.sized", ["unary"]),
  (payload) => {
    const tag = String(payload.tag);
    runs.set(tag, (runs.get(tag) ?? 0) + 1);
    return { tag, blob: "x".repeat(Number(payload.size ?? 0)) };
  },
  anySchemas,
);

const publishBody = (size = 10) => ({ payload: { blob: "p".repeat(size) } });
const invokeBody = (tag: string, size: number, key?: string) => ({
  header: key === undefined ? {} : { idempotency_key: key },
  payload: { tag, size },
});

let t: TestRuntime;
let peer: TestRuntime;

beforeAll(async () => {
  const config = {
    tenantMaxTopics: 3,
    topicMaxBytes: 10 * 1024,
    topicMaxMsgs: 1000,
    eventMaxPayloadBytes: 4096,
    tenantPublishRateLimit: { rate: 0.001, burst: 25 },
    idempotencyMaxRecordBytes: 1024,
    idempotencyTenantMaxBytes: 2000,
  };
  t = await startTestRuntime({ capabilities: [sized], config });
  // A second process on the same bus: quotas counted from JetStream hold for both.
  peer = await startTestRuntime({ capabilities: [sized], config: { ...config, natsUrl: t.runtime.natsUrl } });
});
afterAll(async () => {
  await peer?.stop();
  await t?.stop();
});

describe("topics per tenant", () => {
  it("refuses the topic past MIG_TENANT_MAX_TOPICS, in every process, while other tenants and existing topics go on", async () => {
    for (const topic of ["a.one", "a.two", "a.three"]) {
      expect((await t.post(`/mig/v0.1/publish/${topic}`, publishBody(), { "x-tenant-id": "acme" })).status).toBe(200);
    }
    const refused = await t.post("/mig/v0.1/publish/a.four", publishBody(), { "x-tenant-id": "acme" });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe("MIG_RATE_LIMITED");
    expect(refused.body.error.retryable).toBe(false);
    expect(refused.body.error.details).toMatchObject({ limit: 3, tenant: "acme" });
    expect(refused.body.error.details.retry_after_ms).toBeUndefined();
    expect(refused.body.error.message).toContain("MIG_TENANT_MAX_TOPICS");

    // The other process counts the same topics (from JetStream, not from its own memory).
    const elsewhere = await peer.post("/mig/v0.1/publish/a.five", publishBody(), { "x-tenant-id": "acme" });
    expect(elsewhere.body.error?.code).toBe("MIG_RATE_LIMITED");
    // A SUBSCRIBE that would create a topic counts too.
    const subscribe = await t.get("/mig/v0.1/subscribe/a.six?resume_cursor=0", { "x-tenant-id": "acme" });
    expect(subscribe.status).toBe(429);

    expect((await t.post("/mig/v0.1/publish/a.two", publishBody(), { "x-tenant-id": "acme" })).status).toBe(200);
    expect((await t.post("/mig/v0.1/publish/a.four", publishBody(), { "x-tenant-id": "globex" })).status).toBe(200);
    expect(
      (await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("g1", 10), { "x-tenant-id": "globex" })).status,
    ).toBe(200);
    const names: string[] = [];
    for await (const name of t.runtime.bus.jsm.streams.names("_MIG.ev.acme.>")) names.push(name);
    expect(names).toHaveLength(3);
  });
});

describe("bytes and events per topic", () => {
  it("keeps a topic within MIG_TOPIC_MAX_BYTES by dropping its oldest events", async () => {
    for (let i = 0; i < 15; i++) {
      const ack = await t.post("/mig/v0.1/publish/b.full", publishBody(1500), { "x-tenant-id": "bytes" });
      expect(ack.status).toBe(200);
      expect(ack.body.sequence).toBe(i + 1);
    }
    const info = await t.runtime.bus.jsm.streams.info(topicRef("bytes", "b.full").stream);
    expect(info.config.max_bytes).toBe(10 * 1024);
    expect(info.config.max_msgs).toBe(1000);
    expect(info.state.bytes).toBeLessThanOrEqual(10 * 1024);
    expect(info.state.last_seq).toBe(15);
    expect(info.state.first_seq).toBeGreaterThan(1);
    expect((await t.post("/mig/v0.1/publish/b.other", publishBody(), { "x-tenant-id": "globex" })).status).toBe(200);
  });

  it("gives a topic made without limits the configured ones when it is opened", async () => {
    const ref = topicRef("legacy", "old.topic");
    await t.runtime.bus.jsm.streams.add({
      name: ref.stream,
      subjects: [ref.subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
    });
    expect((await t.post("/mig/v0.1/publish/old.topic", publishBody(), { "x-tenant-id": "legacy" })).status).toBe(200);
    const info = await t.runtime.bus.jsm.streams.info(ref.stream);
    expect(info.config.max_bytes).toBe(10 * 1024);
    expect(info.config.max_msgs).toBe(1000);
    expect(info.config.discard).toBe(DiscardPolicy.Old);
  });
});

describe("PUBLISH rate per tenant", () => {
  it("answers MIG_RATE_LIMITED with retry_after_ms past the burst, and the other tenant publishes on", async () => {
    let accepted = 0;
    let refused: { status: number; body: any; headers: Headers } | undefined;
    for (let i = 0; i < 30 && !refused; i++) {
      const answer = await t.post("/mig/v0.1/publish/r.fast", publishBody(), { "x-tenant-id": "flood" });
      if (answer.status === 200) accepted++;
      else refused = answer;
    }
    expect(accepted).toBe(25);
    expect(refused!.status).toBe(429);
    expect(refused!.body.error).toMatchObject({ code: "MIG_RATE_LIMITED", retryable: true });
    expect(refused!.body.error.details).toMatchObject({ limit_scope: "tenant_publish", tenant: "flood", burst: 25 });
    expect(refused!.body.error.details.retry_after_ms).toBeGreaterThan(0);
    expect(refused!.headers.get("retry-after")).not.toBeNull();
    expect((await t.post("/mig/v0.1/publish/r.fast", publishBody(), { "x-tenant-id": "calm" })).status).toBe(200);
    expect(
      (await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("calm", 10), { "x-tenant-id": "flood" })).status,
    ).toBe(200);
  });
});

describe("idempotency records", () => {
  it("answers a result over MIG_IDEMPOTENCY_MAX_RECORD_BYTES without keeping it, says so in meta, and a repeat runs again", async () => {
    const first = await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("big", 4096, "big-1"), {
      "x-tenant-id": "idem",
    });
    expect(first.status).toBe(200);
    expect(first.body.payload.blob).toHaveLength(4096);
    expect(first.body.header.meta[IDEMPOTENCY_META_KEY]).toMatch(/^not_stored: .*MIG_IDEMPOTENCY_MAX_RECORD_BYTES/);
    const repeat = await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("big", 4096, "big-1"), {
      "x-tenant-id": "idem",
    });
    expect(repeat.status).toBe(200);
    expect(runs.get("big")).toBe(2);
    // Nothing is left behind for the key: no pending claim for a retry to wait on.
    const kv = await t.runtime.bus.kvm.open(IDEMPOTENCY_BUCKET);
    const entry = await kv.get(IdempotencyStore.keyOf("idem", "test.quota.sized", "big-1"));
    expect(entry === null || entry.operation !== "PUT").toBe(true);

    const small = await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("small", 10, "small-1"), {
      "x-tenant-id": "idem",
    });
    expect(small.body.header.meta?.[IDEMPOTENCY_META_KEY]).toBeUndefined();
    await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("small", 10, "small-1"), { "x-tenant-id": "idem" });
    expect(runs.get("small")).toBe(1);
  });

  it("stops keeping a tenant's results past MIG_IDEMPOTENCY_TENANT_MAX_BYTES, and keeps another tenant's", async () => {
    const metas: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const answer = await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody(`budget-${i}`, 700, `budget-${i}`), {
        "x-tenant-id": "spender",
      });
      expect(answer.status).toBe(200);
      metas.push(answer.body.header.meta?.[IDEMPOTENCY_META_KEY]);
    }
    expect(metas.slice(0, 2)).toEqual([undefined, undefined]);
    expect(metas[2]).toMatch(/^not_stored: .*MIG_IDEMPOTENCY_TENANT_MAX_BYTES/);
    expect(metas[3]).toMatch(/^not_stored: /);

    const other = await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("saver", 700, "saver-1"), {
      "x-tenant-id": "saver",
    });
    expect(other.body.header.meta?.[IDEMPOTENCY_META_KEY]).toBeUndefined();
    await t.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("saver", 700, "saver-1"), { "x-tenant-id": "saver" });
    expect(runs.get("saver")).toBe(1);
  });
});

describe("a full topic with discard new, all topics, and a full idempotency bucket", () => {
  let s: TestRuntime;
  beforeAll(async () => {
    s = await startTestRuntime({
      capabilities: [sized],
      config: {
        topicDiscard: "new",
        topicMaxMsgs: 5,
        maxTopics: 2,
        idempotencyMaxBytes: 64 * 1024,
        idempotencyMaxRecordBytes: 16 * 1024,
      },
    });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it("refuses an event to a full topic with MIG_BACKPRESSURE and retry_after_ms; another tenant's topic takes events", async () => {
    for (let i = 0; i < 5; i++)
      expect((await s.post("/mig/v0.1/publish/n.full", publishBody(), { "x-tenant-id": "acme" })).status).toBe(200);
    const refused = await s.post("/mig/v0.1/publish/n.full", publishBody(), { "x-tenant-id": "acme" });
    expect(refused.status).toBe(503);
    expect(refused.body.error).toMatchObject({ code: "MIG_BACKPRESSURE", retryable: true });
    expect(refused.body.error.details.retry_after_ms).toBeGreaterThan(0);
    expect(refused.body.error.message).toContain("MIG_TOPIC_MAX_MSGS");
    expect((await s.post("/mig/v0.1/publish/n.full", publishBody(), { "x-tenant-id": "globex" })).status).toBe(200);
  });

  it("refuses a topic past MIG_MAX_TOPICS for any tenant", async () => {
    const refused = await s.post("/mig/v0.1/publish/n.third", publishBody(), { "x-tenant-id": "initech" });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: "MIG_RATE_LIMITED", retryable: false });
    expect(refused.body.error.details).toMatchObject({ limit: 2, tenant: "initech", limit_scope: "server_topics" });
    expect((await s.post("/mig/v0.1/publish/n.full", publishBody(), { "x-tenant-id": "globex" })).status).toBe(200);
  });

  it("answers every INVOKE once MIG_IDEMPOTENCY_MAX_BYTES is full, keeping nothing more and leaving no pending record", async () => {
    const notKept: string[] = [];
    for (let i = 0; i < 12; i++) {
      const answer = await s.post(
        "/mig/v0.1/invoke/test.quota.sized",
        invokeBody(`fill-${i}`, 12 * 1024, `fill-${i}`),
        { "x-tenant-id": "filler" },
      );
      expect(answer.status).toBe(200);
      const meta = answer.body.header.meta?.[IDEMPOTENCY_META_KEY];
      if (meta !== undefined) notKept.push(meta);
    }
    expect(notKept.length).toBeGreaterThan(0);
    expect(notKept.at(-1)).toMatch(/^not_stored: .*MIG_IDEMPOTENCY_MAX_BYTES/);
    // Another tenant's call still runs and answers; a repeat of an unkept key runs again at once.
    const other = await s.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("bystander", 10, "by-1"), {
      "x-tenant-id": "globex",
    });
    expect(other.status).toBe(200);
    const repeat = await s.post("/mig/v0.1/invoke/test.quota.sized", invokeBody("fill-11", 12 * 1024, "fill-11"), {
      "x-tenant-id": "filler",
    });
    expect(repeat.status).toBe(200);
    expect(runs.get("fill-11")).toBe(2);
    const kv = await s.runtime.bus.kvm.open(IDEMPOTENCY_BUCKET);
    for (const key of await kv.keys().then(async (it) => {
      const all: string[] = [];
      for await (const k of it) all.push(k);
      return all;
    })) {
      const entry = await kv.get(key);
      if (entry?.operation === "PUT") expect(entry.json<{ state: string }>().state).toBe("done");
    }
  });
});
