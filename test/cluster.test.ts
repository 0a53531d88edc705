// The runtime on a real 3-node JetStream cluster: every asset it makes keeps MIG_JS_REPLICAS copies, a mismatch or
// an impossible placement stops it with a sentence, and killing the node that leads a topic loses no acked event.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_STREAM } from "../runtime/policy/audit.ts";
import { REGISTRY_BUCKET } from "../runtime/protocol/provider-protocol.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { DEAD_LETTER_STREAM, topicRef } from "../runtime/store/events.ts";
import { IDEMPOTENCY_BUCKET } from "../runtime/store/idempotency.ts";
import { type Cluster, startCluster } from "./helpers/cluster.ts";
import { anyDescriptor, anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime } from "./helpers/runtime.ts";

/** Runs per idempotency key, over every gateway of the test: the handler is the same object in both. */
const runs = new Map<string, number>();
const counted = defineCapability(
  anyDescriptor("test.cluster.counted", ["unary"]),
  async (payload) => {
    const key = String(payload.key);
    runs.set(key, (runs.get(key) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 50)); // long enough for the other gateway's call to find it running
    return { key, run: runs.get(key) };
  },
  anySchemas,
);

describe("MIG_JS_REPLICAS on a single server", () => {
  it("3 copies cannot be placed on the embedded server: the runtime refuses to start, naming the setting", async () => {
    await expect(startTestRuntime({ config: { jsReplicas: 3 } })).rejects.toThrow(
      /cannot keep 3 copies of .*MIG_JS_REPLICAS must not exceed the JetStream servers/,
    );
  });
});

describe("on a 3-node JetStream cluster", () => {
  let cluster: Cluster;
  let t: TestRuntime;
  beforeAll(async () => {
    cluster = await startCluster(3);
    t = await startTestRuntime({ config: { natsUrl: cluster.urls, jsReplicas: 3 }, capabilities: [counted] });
  }, 60_000);
  afterAll(async () => {
    await t?.stop();
    await cluster?.stop();
  });

  const publish = (n: number) =>
    t.post("/mig/v0.1/publish/orders.created", {
      header: { tenant_id: "acme", idempotency_key: `order-${n}` },
      payload: { n },
    });
  /** A caller that retries what it is told it may retry (a cluster placing a new stream's copies can be slow). */
  const publishUntilStored = async (n: number) => {
    for (;;) {
      const answer = await publish(n);
      if (answer.status === 200) return;
      // Anything else must be a MIG error the caller may retry, never a hang or a final refusal.
      expect(answer.body.error).toMatchObject({ retryable: true });
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const topic = topicRef("acme", "orders.created").stream;

  it("keeps 3 copies of every stream and bucket it makes: topics, dead letters, audit, idempotency, registry", async () => {
    await publishUntilStored(0);
    for (const name of [topic, DEAD_LETTER_STREAM, AUDIT_STREAM, `KV_${IDEMPOTENCY_BUCKET}`, `KV_${REGISTRY_BUCKET}`]) {
      const info = await t.runtime.bus.jsm.streams.info(name);
      expect({ name, replicas: info.config.num_replicas, copies: 1 + (info.cluster?.replicas?.length ?? 0) }).toEqual({
        name,
        replicas: 3,
        copies: 3,
      });
    }
  });

  it("a runtime asking for another number of copies than the cluster's assets keep refuses to start, naming both", async () => {
    await expect(startTestRuntime({ config: { natsUrl: cluster.urls, jsReplicas: 1 } })).rejects.toThrow(
      /keeps 3 copies but MIG_JS_REPLICAS asks for 1: set MIG_JS_REPLICAS=3/,
    );
  });

  it("idempotency holds across gateways: the same key sent to two gateways at once runs the handler once", async () => {
    const other = await startTestRuntime({
      config: { natsUrl: cluster.urls, jsReplicas: 3 },
      capabilities: [counted],
    });
    try {
      const call = (gateway: TestRuntime, key: string) =>
        gateway.post("/mig/v0.1/invoke/test.cluster.counted", {
          header: { tenant_id: "acme", idempotency_key: key },
          payload: { key },
        });
      const keys = Array.from({ length: 20 }, (_, i) => `same-${i}`);
      const answers = await Promise.all(keys.flatMap((key) => [call(t, key), call(other, key)]));
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      expect(keys.map((key) => runs.get(key))).toEqual(keys.map(() => 1));
      // Both callers of a key get the one result.
      for (let i = 0; i < keys.length; i++)
        expect(answers[2 * i]!.body.payload).toEqual(answers[2 * i + 1]!.body.payload);
    } finally {
      await other.stop();
    }
  });

  it("SIGKILL of the node leading a topic loses no acked event and stores none twice, when callers retry what is retryable", async () => {
    const leader = (await t.runtime.bus.jsm.streams.info(topic)).cluster?.leader;
    const node = cluster.nodes.find((n) => n.name === leader);
    expect(node).toBeDefined();
    const total = 120;
    for (let n = 1; n <= total; n++) {
      if (n === 40) {
        await node!.kill("SIGKILL");
        expect(node!.running()).toBe(false);
      }
      await publishUntilStored(n);
    }
    const state = (await t.runtime.bus.jsm.streams.info(topic)).state;
    // Event 0 from the first test and events 1..total: each once.
    expect(state.messages).toBe(total + 1);
    expect(state.last_seq).toBe(total + 1);
    node!.start();
  }, 120_000);
});
