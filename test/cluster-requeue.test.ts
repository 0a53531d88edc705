// An at_least_once invocation with an idempotency key outlives the gateway's move to another NATS node: the node it
// is connected to is SIGKILLed while a worker runs the call, and when the connection is back (a fraction of a second
// later, on another node) the gateway puts the work on the queue again instead of answering MIG_UNAVAILABLE. The
// caller gets its result.
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { WORK_STREAM } from "../runtime/protocol/provider-protocol.ts";
import { defineCapability } from "../runtime/provider/provider.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { type Cluster, startCluster } from "./helpers/cluster.ts";
import { anySchemas } from "./helpers/descriptors.ts";
import { startTestRuntime, type TestRuntime, waitFor } from "./helpers/runtime.ts";

const OPEN = "schema://test/open/v1";
let runs = 0;
const slow = defineCapability(
  {
    id: "test.requeue.slow",
    version: "1.0.0",
    modes: ["unary"],
    input_schema_uri: OPEN,
    output_schema_uri: OPEN,
    auth_scopes: [],
    qos: { delivery_semantics: "at_least_once" },
  },
  async (payload) => {
    runs++;
    await new Promise((r) => setTimeout(r, 1_500));
    return { n: payload.n ?? null };
  },
  { [OPEN]: { type: "object" }, ...anySchemas },
);

let cluster: Cluster;
let gateway: TestRuntime;
let workerRuntime: MigRuntime;
let host: WorkerHost;

beforeAll(async () => {
  cluster = await startCluster(3);
  gateway = await startTestRuntime({ config: { natsUrl: cluster.urls, jsReplicas: 3 } });
  const config = loadConfig({ natsUrl: cluster.urls, dataDir: gateway.dataDir, logLevel: "silent", jsReplicas: 3 }, {});
  workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent"), fleet: false });
  host = await WorkerHost.start(workerRuntime, [slow], { heartbeatMs: 500, direct: false });
  await waitFor("the gateway to see the worker", () => gateway.runtime.capabilities.get("test.requeue.slow"), 30_000);
}, 90_000);
afterAll(async () => {
  await host?.stop();
  await workerRuntime?.stop();
  await gateway?.stop();
  await cluster?.stop();
});

describe("a queued invocation over a gateway's move to another node", () => {
  it("is queued again once the connection is back, and its caller gets the result", async () => {
    const { nc, jsm } = gateway.runtime.bus;
    const victim = cluster.nodes.find((node) => node.name === nc.info?.server_name)!;
    expect(victim).toBeDefined();
    // The work queue must keep its leader: a leader election would refuse the second put for seconds.
    for (let tries = 0; (await jsm.streams.info(WORK_STREAM)).cluster?.leader === victim.name; tries++) {
      expect(tries).toBeLessThan(20);
      await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${WORK_STREAM}`, "", { timeout: 5_000, headers: natsHeaders() });
      await new Promise((r) => setTimeout(r, 500));
    }

    const invoking = gateway.post("/mig/v0.1/invoke/test.requeue.slow", {
      header: { tenant_id: "acme", idempotency_key: "moved-1", deadline_ms: 30_000 },
      payload: { n: 7 },
    });
    await waitFor("the worker to run the call", () => runs >= 1);
    await victim.kill("SIGKILL");

    const answer = await invoking;
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.payload).toEqual({ n: 7 });
    const metrics = await gateway.runtime.metrics.registry.metrics();
    expect(metrics).toMatch(/mig_invocations_requeued_total 1/);
    victim.start();
  }, 90_000);
});
