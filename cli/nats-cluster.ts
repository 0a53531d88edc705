// A NATS JetStream cluster of local nats-server processes, routed to each other on loopback, each node with its own
// store: what `mig dev cluster` runs, and what the cluster tests kill and restart.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

export interface ClusterNode {
  name: string;
  /** The client URL of this node. */
  url: string;
  running(): boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the node (again) on its ports and store. */
  start(): void;
}

export interface NatsCluster {
  nodes: ClusterNode[];
  /** Every node's client URL, comma-separated, as MIG_NATS_URL takes them. */
  urls: string;
  /** Stops every node (SIGTERM: each flushes its store). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface ClusterPorts {
  client: number[];
  route: number[];
}

/**
 * Starts one node per client port, routed to each other, and resolves once JetStream can place a stream on every
 * node: a meta leader alone is not enough, since for a moment after its election it may not yet count the other
 * nodes as peers, and a stream of as many copies as nodes is then refused ("no suitable peers").
 */
export async function startNatsCluster(dir: string, ports: ClusterPorts, readyMs = 60_000): Promise<NatsCluster> {
  const routes = ports.route.map((port) => `nats://127.0.0.1:${port}`).join(",");
  const bin = process.env.NATS_SERVER_BIN ?? "nats-server";
  const nodes = ports.client.map((clientPort, i): ClusterNode => {
    const name = `n${i + 1}`;
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    const node: ClusterNode = {
      name,
      url: `nats://127.0.0.1:${clientPort}`,
      running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
      start() {
        const started = spawn(
          bin,
          ["-a", "127.0.0.1", "-p", String(clientPort), "-n", name, "-js", "-sd", join(dir, name)].concat([
            "--cluster_name",
            "mig",
            "--cluster",
            `nats://127.0.0.1:${ports.route[i]}`,
            "--routes",
            routes,
          ]),
          { stdio: "ignore" },
        );
        child = started;
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
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(","),
    async stop(signal = "SIGTERM") {
      await Promise.all(nodes.map((n) => n.kill(signal)));
    },
  };
  try {
    await untilEveryNodeTakesACopy(nodes[0]!.url, nodes.length, readyMs);
  } catch (err) {
    await cluster.stop("SIGKILL");
    throw err;
  }
  return cluster;
}

/** Creates and deletes a small stream of `replicas` copies, stored on disk as the runtime's are, until that succeeds. */
async function untilEveryNodeTakesACopy(url: string, replicas: number, limitMs: number): Promise<void> {
  const until = Date.now() + limitMs;
  const probe = "MIG_CLUSTER_READY";
  for (;;) {
    try {
      const nc = await connect({ servers: url, timeout: 1_000 });
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.streams.add({ name: probe, subjects: [], storage: StorageType.File, num_replicas: replicas });
        await jsm.streams.delete(probe);
        return;
      } finally {
        await nc.close();
      }
    } catch (err) {
      if (Date.now() > until)
        throw new Error(`the cluster's JetStream could not place ${replicas} copies within ${limitMs} ms: ${err}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
