// Test helper: a real NATS JetStream cluster (three nodes by default) on random loopback ports, each node with its
// own store in a temporary directory. Nodes can be killed and started again on the same ports and store.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

export interface ClusterNode {
  name: string;
  /** The client URL of this node. */
  url: string;
  running(): boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the node again on its ports and store. */
  start(): void;
}

export interface Cluster {
  nodes: ClusterNode[];
  /** Every node's client URL, comma-separated, as MIG_NATS_URL takes them. */
  urls: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts `size` nodes routed to each other and resolves once JetStream answers (a meta leader is elected). */
export async function startCluster(size = 3): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "mig-cluster-"));
  const clientPorts = await Promise.all(Array.from({ length: size }, freePort));
  const routePorts = await Promise.all(Array.from({ length: size }, freePort));
  const routes = routePorts.map((port) => `nats://127.0.0.1:${port}`).join(",");
  const bin = process.env.NATS_SERVER_BIN ?? "nats-server";
  const nodes: ClusterNode[] = clientPorts.map((clientPort, i) => {
    const name = `n${i + 1}`;
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    const node: ClusterNode = {
      name,
      url: `nats://127.0.0.1:${clientPort}`,
      running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
      start() {
        child = spawn(
          bin,
          [
            "-a",
            "127.0.0.1",
            "-p",
            String(clientPort),
            "-n",
            name,
            "-js",
            "-sd",
            join(dir, name),
            "--cluster_name",
            "mig-test",
            "--cluster",
            `nats://127.0.0.1:${routePorts[i]}`,
            "--routes",
            routes,
          ],
          { stdio: "ignore" },
        );
        const started = child;
        exited = new Promise((resolve) => started.once("exit", () => resolve()));
      },
      async kill(signal = "SIGKILL") {
        if (node.running()) child!.kill(signal);
        await exited;
      },
    };
    return node;
  });
  for (const node of nodes) node.start();
  const cluster: Cluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(","),
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await untilJetStreamAnswers(nodes[0]!.url);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

async function untilJetStreamAnswers(url: string, limitMs = 20_000): Promise<void> {
  const until = Date.now() + limitMs;
  for (;;) {
    try {
      const nc = await connect({ servers: url, timeout: 1_000 });
      try {
        await (await jetstreamManager(nc, { timeout: 1_000 })).getAccountInfo();
        return;
      } finally {
        await nc.close();
      }
    } catch (err) {
      if (Date.now() > until) throw new Error(`the cluster's JetStream did not answer within ${limitMs} ms: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
