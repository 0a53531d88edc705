// A rolling restart of the gateways under load, on a 3-node JetStream cluster with real `mig start` and `mig worker`
// processes: each gateway in turn gets SIGTERM (it drains) and starts again, while callers keep invoking an
// at_least_once capability, moving to another gateway (same idempotency key) when one refuses them. Every call is
// answered once, with its own result, and none is lost.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, type ClusterGateway, startCluster, startClusterGateway } from "./helpers/cluster.ts";
import { type MigProcess, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const log = join(mkdtempSync(join(tmpdir(), "mig-rolling-")), "runs.log");
let cluster: Cluster;
const gateways: ClusterGateway[] = [];
let worker: MigProcess;

const startGateway = () => startClusterGateway(cluster, ["fleet.record"]);

beforeAll(async () => {
  cluster = await startCluster(3);
  worker = startMig(["worker", "test/fixtures/fleet-provider.ts"], {
    MIG_NATS_URL: cluster.urls,
    MIG_JS_REPLICAS: "3",
    FLEET_LOG: log,
    WORKER_NAME: "w1",
  });
  const first = startGateway();
  await worker.waitForLog("worker serving", 90_000);
  gateways.push(await first, await startGateway());
}, 180_000);
afterAll(async () => {
  await Promise.all([worker, ...gateways.map((g) => g.process)].map((p) => p?.stop("SIGKILL")));
  await cluster?.stop();
});

describe("a rolling restart of the gateways under load", () => {
  it("answers every one of 160 at_least_once calls once, with its own result; callers only retry on another gateway", async () => {
    const total = 160;
    const answers = new Map<number, unknown>();
    let next = 0;
    const call = async (n: number) => {
      for (let attempt = 0; ; attempt++) {
        const live = gateways[(n + attempt) % gateways.length]!;
        try {
          const res = await fetch(`${live.url}/mig/v0.1/invoke/fleet.record`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ header: { tenant_id: "acme", idempotency_key: `call-${n}` }, payload: { n } }),
          });
          const body = (await res.json()) as { payload?: unknown; error?: { retryable?: boolean } };
          if (res.status === 200) {
            expect(answers.has(n)).toBe(false);
            answers.set(n, body.payload);
            return;
          }
          // A refusal a caller may not retry would be a lost call.
          expect(body.error?.retryable).toBe(true);
        } catch {
          // The gateway closed its listener (draining) or is gone: another one takes the call.
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const callers = Array.from({ length: 8 }, async () => {
      while (next < total) await call(next++);
    });
    const restarts = (async () => {
      for (const at of [0, 1]) {
        await waitFor("calls to flow", () => answers.size >= 40 + at * 50, 60_000);
        const old = gateways[at]!;
        const stopped = old.process.stop("SIGTERM");
        gateways[at] = await startGateway();
        expect(await stopped).toBe(0);
      }
    })();
    await Promise.all([...callers, restarts]);

    expect(answers.size).toBe(total);
    for (const [n, payload] of answers) expect(payload).toMatchObject({ n });
    const ran = new Set(
      readFileSync(log, "utf8")
        .split("\n")
        .filter((line) => line.startsWith("ran call-"))
        .map((line) => line.split(" ")[1]),
    );
    expect(ran.size).toBe(total);
  }, 240_000);

  it("a gateway SIGKILLed while it holds an idempotency key frees it once the fleet sees it gone: the retry on another gateway runs, long before the key's lease ends", async () => {
    const [victim, survivor] = [gateways[0]!, gateways[1]!];
    const body = JSON.stringify({
      // A lease of 120 s: the retry below gives up at 60 s, so only a takeover before the lease can answer it.
      header: { tenant_id: "acme", idempotency_key: "held-by-the-dead", deadline_ms: 120_000 },
      payload: { n: 9_999, sleep_ms: 2_000 },
    });
    const post = (url: string, signal?: AbortSignal) =>
      fetch(`${url}/mig/v0.1/invoke/fleet.record`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        ...(signal ? { signal } : {}),
      });
    const first = post(victim.url).catch(() => undefined);
    await waitFor(
      "the worker to run the first call",
      () => existsSync(log) && readFileSync(log, "utf8").includes("running held-by-the-dead"),
    );
    expect(await victim.process.stop("SIGKILL")).toBe(null);
    await first;
    const retry = await post(survivor.url, AbortSignal.timeout(60_000));
    expect(retry.status).toBe(200);
    expect(await retry.json()).toMatchObject({ payload: { n: 9_999 } });
  }, 120_000);
});
