// A `mig worker` serves its own /metrics on MIG_METRICS_ADDR: it has no HTTP binding, and what it counts (the
// invocations it ran, its actors) is not in any gateway's /metrics.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";

let gateway: MigProcess;
let worker: MigProcess;
let metricsUrl: string;

beforeAll(async () => {
  let busUrl: string;
  ({ gateway, busUrl } = await startGateway());
  worker = startMig(["worker", "test/fixtures/fleet-provider.ts"], {
    MIG_NATS_URL: busUrl,
    MIG_METRICS_ADDR: "127.0.0.1:0",
  });
  metricsUrl = String((await worker.waitForLog("metrics listener")).url);
  await worker.waitForLog("direct lane answering NATS invokes", 30_000);
  const nc = await natsClient(busUrl);
  try {
    for (let i = 0; i < 3; i++) {
      const answer = await natsRequest(nc, "mig.v0_1.acme.invoke.fleet.echo", { payload: { i } });
      expect(answer.body.payload.echo).toEqual({ i });
    }
  } finally {
    await nc.close();
  }
}, 60_000);

afterAll(async () => {
  await worker?.stop("SIGKILL");
  await gateway?.stop("SIGKILL");
});

describe("a worker's /metrics", () => {
  it("counts the invocations the worker ran itself", async () => {
    const res = await fetch(metricsUrl);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^mig_invocations_total\{capability="fleet\.echo",outcome="completed"\} 3$/m);
  });

  it("serves nothing else there", async () => {
    const res = await fetch(metricsUrl.replace(/\/metrics$/, "/admin/v0.1/actors"));
    expect(res.status).toBe(404);
  });
});
