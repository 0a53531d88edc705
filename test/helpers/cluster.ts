// Test helper: a real NATS JetStream cluster (three nodes by default) on random loopback ports, in a temporary
// directory. Nodes can be killed and started again on the same ports and store. Gateways started on it.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type NatsCluster, startNatsCluster } from "../../cli/nats-cluster.ts";
import { type MigProcess, startMig } from "./process.ts";
import { waitFor } from "./runtime.ts";

export type Cluster = NatsCluster;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function startCluster(size = 3): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "mig-cluster-"));
  const ports = {
    client: await Promise.all(Array.from({ length: size }, freePort)),
    route: await Promise.all(Array.from({ length: size }, freePort)),
  };
  const cluster = await startNatsCluster(dir, ports).catch((err: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    ...cluster,
    async stop() {
      await cluster.stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The capability ids a gateway's DISCOVER lists for tenant acme. */
export async function discoverIds(url: string): Promise<string[]> {
  const res = await fetch(`${url}/mig/v0.1/discover`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme" } }),
  });
  const body = (await res.json()) as { capabilities?: { id: string }[] };
  return (body.capabilities ?? []).map((c) => c.id);
}

export interface ClusterGateway {
  process: MigProcess;
  /** Its HTTP binding. */
  url: string;
}

/**
 * Runs `mig start` on the cluster with 3 copies of every asset, and waits until its HTTP and NATS bindings are up
 * and its DISCOVER lists every capability in `serving` (the workers it must see before it takes calls).
 */
export async function startClusterGateway(
  cluster: Cluster,
  serving: string[],
  env: Record<string, string> = {},
): Promise<ClusterGateway> {
  const gateway = startMig(["start"], {
    MIG_NATS_URL: cluster.urls,
    MIG_JS_REPLICAS: "3",
    MIG_DRAIN_TIMEOUT_MS: "10000",
    ...env,
  });
  try {
    const url = String((await gateway.waitForLog("HTTP binding listening", 60_000)).url);
    await gateway.waitForLog("NATS binding listening", 60_000);
    await waitFor(
      "the gateway to see its workers",
      async () => {
        const ids = await discoverIds(url);
        return serving.every((id) => ids.includes(id));
      },
      30_000,
    );
    return { process: gateway, url };
  } catch (err) {
    await gateway.stop("SIGKILL");
    throw err;
  }
}
