// A worker's own NATS micro service with real processes: a `mig worker` behind `mig start` answers `$SRV.PING`,
// `$SRV.INFO` and `$SRV.STATS`, read with the `@nats-io/services` client, with the calls it ran on each path.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type NamedEndpointStats, Svcm } from "@nats-io/services";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../runtime/base/config.ts";
import { createLogger } from "../runtime/base/logger.ts";
import { MICRO_DISCOVERY_INTERVAL_MS, providerFromInfo } from "../runtime/fleet/micro-attach.ts";
import { MigRuntime } from "../runtime/runtime.ts";
import { WorkerHost } from "../worker/host.ts";
import { WORKER_MICRO_KEYS, WORKER_SERVICE_NAME } from "../worker/micro-stats.ts";
import definitions from "./fixtures/micro-stats-provider.ts";
import { natsClient, natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startGateway, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";

const FIXTURE = "test/fixtures/micro-stats-provider.ts";
const processes: MigProcess[] = [];

let gateway: MigProcess;
let busUrl: string;
let httpUrl: string;
let nc: NatsConnection;
let providerId: string;

/** The services library, on the test's connection (it brings its own copy of the NATS core types). */
const micro = () => new Svcm(nc as never);

async function all<T>(answers: Promise<AsyncIterable<T>>): Promise<T[]> {
  const list: T[] = [];
  for await (const answer of await answers) list.push(answer);
  return list;
}

function invokeNats(capability: string, payload: unknown) {
  return natsRequest(
    nc,
    `mig.v0_1.acme.invoke.${capability}`,
    { header: { tenant_id: "acme" }, payload },
    {},
    10_000,
  ).then((a) => a.body);
}

async function invokeHttp(capability: string, payload: unknown) {
  const res = await fetch(`${httpUrl}/mig/v0.1/invoke/${capability}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme" }, payload }),
  });
  return (await res.json()) as any;
}

async function discoverIds(): Promise<string[]> {
  const answer = await natsRequest(nc, "mig.v0_1.acme.discover", {});
  return answer.body.capabilities.map((c: { id: string }) => c.id);
}

/** Pauses the gateway process (its nats-server runs in a process of its own) while `body` runs. */
async function withGatewayPaused<T>(body: () => Promise<T>): Promise<T> {
  process.kill(gateway.child.pid!, "SIGSTOP");
  try {
    return await body();
  } finally {
    process.kill(gateway.child.pid!, "SIGCONT");
  }
}

beforeAll(async () => {
  ({ gateway, busUrl, httpUrl } = await startGateway());
  processes.push(gateway);
  nc = await natsClient(busUrl);
  const worker = startMig(["worker", FIXTURE], { MIG_NATS_URL: busUrl });
  processes.push(worker);
  providerId = String((await worker.waitForLog("worker serving")).provider_id);
  await worker.waitForLog("NATS micro stats answering");
  // best_effort NATS invokes are the worker's own from its lane's switch instant (docs/bindings/provider-protocol.md §9).
  await worker.waitForLog("direct lane answering NATS invokes");
  await waitFor("the worker's capabilities in DISCOVER", async () => (await discoverIds()).includes("stats.record"));
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
});

describe("a worker's own NATS micro service", () => {
  it("answers $SRV.PING, INFO and STATS with the requests, errors and processing time of the calls it ran", async () => {
    // The direct lane: with the gateway stopped, only the worker can answer these.
    const direct = await withGatewayPaused(async () => [
      await invokeNats("stats.echo", { i: 1 }),
      await invokeNats("stats.echo", { i: 2 }),
      await invokeNats("stats.echo", { i: 3 }),
      await invokeNats("stats.echo", { fail: "crash" }),
      await invokeNats("stats.echo", { fail: "mig" }),
    ]);
    expect(direct.map((a) => a.error?.code ?? "ok")).toEqual(["ok", "ok", "ok", "MIG_INTERNAL", "MIG_INVALID_REQUEST"]);
    // Through the gateway and the core work subject (HTTP invokes never take the lane).
    const viaGateway = [
      await invokeHttp("stats.echo", { i: 4 }),
      await invokeHttp("stats.echo", { i: 5 }),
      await invokeHttp("stats.echo", { fail: "mig" }),
    ];
    expect(viaGateway.map((a) => a.error?.code ?? "ok")).toEqual(["ok", "ok", "MIG_INVALID_REQUEST"]);
    // at_least_once: through the gateway and the MIG_WORK work queue.
    const queued = [
      await invokeNats("stats.record", { i: 1 }),
      await invokeNats("stats.record", { fail: "mig" }),
      await invokeNats("stats.record", { i: 2 }),
      await invokeNats("stats.record", { i: 3 }),
      await invokeNats("stats.record", { fail: "crash" }),
    ];
    expect(queued.map((a) => a.error?.code ?? "ok")).toEqual(["ok", "MIG_INVALID_REQUEST", "ok", "ok", "MIG_INTERNAL"]);

    const client = micro().client();
    // The bare verbs reach every service on the bus; the worker is among them, under its provider id.
    const pings = await all(client.ping());
    const ping = pings.find((p) => p.name === WORKER_SERVICE_NAME && p.id === providerId);
    expect(ping?.type).toBe("io.nats.micro.v1.ping_response");
    expect(ping?.metadata).toEqual({ [WORKER_MICRO_KEYS.provider]: providerId });

    const [info] = await all(client.info(WORKER_SERVICE_NAME, providerId));
    expect(info?.type).toBe("io.nats.micro.v1.info_response");
    expect(info?.metadata).toEqual({ [WORKER_MICRO_KEYS.provider]: providerId });
    expect([...info!.endpoints].sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      endpointInfo("stats.echo"),
      endpointInfo("stats.idle"),
      endpointInfo("stats.record"),
    ]);

    const [stats] = await all(client.stats(WORKER_SERVICE_NAME, providerId));
    expect(stats?.type).toBe("io.nats.micro.v1.stats_response");
    expect(stats?.id).toBe(providerId);
    const byName = new Map((stats?.endpoints ?? []).map((e) => [e.name, e]));
    expect(byName.size).toBe(3);
    const echo = byName.get("stats_echo")!;
    expect(counts(echo)).toEqual({ subject: "mig.v0_1.*.invoke.stats.echo", num_requests: 8, num_errors: 3 });
    expect(echo.last_error).toContain("MIG_INVALID_REQUEST: asked to fail");
    const record = byName.get("stats_record")!;
    expect(counts(record)).toEqual({ subject: "mig.v0_1.*.invoke.stats.record", num_requests: 5, num_errors: 2 });
    expect(record.last_error).toContain("MIG_INTERNAL: capability stats.record failed inside its provider");
    for (const ran of [echo, record]) {
      expect(ran.processing_time).toBeGreaterThan(0);
      expect(ran.average_processing_time).toBeGreaterThan(0);
      expect(ran.average_processing_time).toBe(Math.round(ran.processing_time / ran.num_requests));
    }
    expect(byName.get("stats_idle")).toMatchObject({
      num_requests: 0,
      num_errors: 0,
      last_error: "",
      processing_time: 0,
      average_processing_time: 0,
    });
  }, 60_000);

  it("is not attached as a MIG provider: DISCOVER of the gateway lists each capability once", async () => {
    // A micro service that does ask to be attached: once the gateway lists it, it has run a discovery round
    // ($SRV.INFO) in which the worker answered too.
    const control = await micro().add({ name: "control", version: "1.0.0" });
    try {
      control.addEndpoint("control", {
        subject: "test.micro-stats.control",
        metadata: { "mig.capability": "stats.control" },
        handler: (_err, msg) => msg.respond(JSON.stringify({ ok: true })),
      });
      await waitFor("the control micro service in DISCOVER", async () =>
        (await discoverIds()).includes("stats.control"),
      );
      const ids = (await discoverIds()).filter((id) => id.startsWith("stats."));
      // The worker's service version (0.1.0) is not its capabilities' (1.0.0): attached, they would be listed twice.
      expect(ids.sort()).toEqual(["stats.control", "stats.echo", "stats.idle", "stats.record"]);
      // And the attach logic itself finds nothing to attach in the worker's answer.
      const [info] = await all(micro().client().info(WORKER_SERVICE_NAME, providerId));
      expect(providerFromInfo(nc, info!, Date.now(), MICRO_DISCOVERY_INTERVAL_MS)).toBeUndefined();
    } finally {
      await control.stop();
    }
  }, 30_000);

  it("stops answering when its worker stops", async () => {
    const config = loadConfig(
      { natsUrl: busUrl, dataDir: mkdtempSync(join(tmpdir(), "mig-micro-stats-")), logLevel: "silent" },
      {},
    );
    const runtime = await MigRuntime.start(config, { logger: createLogger("silent") });
    try {
      const idle = definitions.filter((d) => d.descriptor.id === "stats.idle");
      const host = await WorkerHost.start(runtime, idle, { direct: false });
      const client = micro().client();
      const answering = async () => (await all(client.ping(WORKER_SERVICE_NAME))).map((p) => p.id);
      expect(await answering()).toContain(host.providerId);
      await host.stop();
      // Its runtime is still connected: only the worker's service went.
      const after = await answering();
      expect(after).not.toContain(host.providerId);
      expect(after).toContain(providerId);
    } finally {
      await runtime.stop();
    }
  }, 30_000);
});

function endpointInfo(capability: string) {
  return {
    name: capability.replaceAll(".", "_"),
    subject: `mig.v0_1.*.invoke.${capability}`,
    metadata: { [WORKER_MICRO_KEYS.capability]: capability, [WORKER_MICRO_KEYS.version]: "1.0.0" },
  };
}

function counts({ subject, num_requests, num_errors }: NamedEndpointStats) {
  return { subject, num_requests, num_errors };
}
