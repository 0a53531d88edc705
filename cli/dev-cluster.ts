// `mig dev cluster`: a whole fleet on this machine for trying things out: a JetStream cluster of nats-server nodes,
// gateways (`mig start` on the cluster, MIG_JS_REPLICAS copies) and workers (`mig worker`), on fixed ports counted
// up from the usual ones. It prints where each part listens, and stops them all on Ctrl-C or SIGTERM: gateways
// and workers first (they drain), then the nodes. docs/operations.md, "A local cluster".
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { Logger } from "../runtime/base/logger.ts";
import { startNatsCluster } from "./nats-cluster.ts";

export interface DevClusterOptions {
  nodes: number;
  gateways: number;
  workers: number;
  /** Provider modules the workers host. */
  modules: string[];
  dataDir: string;
  /** The first node's client port (its route port is 2000 above); the others count up from it. */
  basePort: number;
  /** The first gateway's HTTP and gRPC ports; the others count up from them. */
  httpPort: number;
  grpcPort: number;
}

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const PROJECT_ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
/** How long a gateway or worker may take to say it serves. */
const READY_MS = 60_000;

/** One `mig` child process, and a promise of its first log line that contains `text`. */
function spawnMig(
  args: string[],
  env: Record<string, string>,
  ready: string,
): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const seen = new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`mig ${args[0]} did not log "${ready}" within ${READY_MS} ms`)),
      READY_MS,
    );
    child.once("exit", (code) => reject(new Error(`mig ${args[0]} exited (${code}) before it served`)));
    lines.on("line", (line) => {
      if (line.includes(ready)) {
        clearTimeout(timer);
        resolveReady();
      }
    });
  });
  return { child, ready: seen };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  child.kill("SIGTERM");
  await exited;
}

export async function devCluster(options: DevClusterOptions, logger: Logger): Promise<void> {
  const dir = join(resolve(options.dataDir), "dev-cluster");
  mkdirSync(dir, { recursive: true });
  const base = options.basePort;
  const cluster = await startNatsCluster(join(dir, "nats"), {
    client: Array.from({ length: options.nodes }, (_, i) => base + i),
    route: Array.from({ length: options.nodes }, (_, i) => base + 2000 + i),
  });
  const children: ChildProcess[] = [];
  const stopAll = async () => {
    await Promise.all(children.map(stopChild));
    await cluster.stop();
  };
  try {
    const replicas = String(Math.min(3, options.nodes));
    const gateways = Array.from({ length: options.gateways }, (_, i) => ({
      http: `127.0.0.1:${options.httpPort + i}`,
      grpc: `127.0.0.1:${options.grpcPort + i}`,
    }));
    const started = gateways.map((g, i) =>
      spawnMig(
        ["start"],
        {
          MIG_NATS_URL: cluster.urls,
          MIG_JS_REPLICAS: replicas,
          MIG_HTTP_ADDR: g.http,
          MIG_GRPC_ADDR: g.grpc,
          MIG_DATA_DIR: join(dir, `gateway-${i + 1}`),
        },
        "NATS binding listening",
      ),
    );
    // Workers after the gateways: they open their direct lane once a gateway has published its settings.
    for (const { child } of started) children.push(child);
    await Promise.all(started.map((s) => s.ready));
    const workers = Array.from({ length: options.workers }, () =>
      spawnMig(
        ["worker", ...options.modules],
        { MIG_NATS_URL: cluster.urls, MIG_JS_REPLICAS: replicas },
        "worker serving",
      ),
    );
    for (const { child } of workers) children.push(child);
    await Promise.all(workers.map((w) => w.ready));
    logger.info(
      {
        nats: cluster.urls,
        http: gateways.map((g) => `http://${g.http}`),
        grpc: gateways.map((g) => g.grpc),
        workers: options.workers,
        modules: options.modules,
        js_replicas: Number(replicas),
        data_dir: dir,
      },
      "dev cluster ready",
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping the dev cluster");
    await stopAll();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}
