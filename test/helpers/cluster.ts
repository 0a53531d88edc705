// Test helper: a real NATS JetStream cluster (three nodes by default) on random loopback ports, in a temporary
// directory. Nodes can be killed and started again on the same ports and store.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type NatsCluster, startNatsCluster } from "../../cli/nats-cluster.ts";

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
