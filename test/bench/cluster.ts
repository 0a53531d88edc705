// The cost of scale-out and the time to recover, on a 3-node JetStream cluster on this machine (run:
// node --import tsx test/bench/cluster.ts [--rounds 3] [--seconds 5] [--concurrency 32] [--json]):
//  1. unary INVOKE over HTTP of a worker-served capability (fleet.echo), one gateway + one worker against two
//     gateways + two workers (the load split over both gateways), alternating, with the CPU µs each process spent
//     per call (nats-server nodes summed): what a second pair costs and gives on two cores;
//  2. the outage a caller sees when a worker, a gateway or the NATS node leading a topic is SIGKILLed under steady
//     load: the longest time between two answered calls around the kill, for at_least_once invocations and acked
//     publishes (callers move to the other gateway on an error, keeping their idempotency key), over --rounds kills
//     of each kind, each part started again between rounds.
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { topicRef } from "../../runtime/store/events.ts";
import {
  type Cluster,
  type ClusterGateway,
  discoverIds,
  startCluster,
  startClusterGateway,
} from "../helpers/cluster.ts";
import { type MigProcess, ROOT, startMig } from "../helpers/process.ts";
import { cpuMicros } from "./cpu.ts";
import { median } from "./paired.ts";
import { spawnTs } from "./processes.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "32" },
    json: { type: "boolean", default: false },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const TOPIC = "bench.recovery";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
const workers = new Map<string, MigProcess>();
let gateways: ClusterGateway[] = [];

function startWorker(name: string): MigProcess {
  return startMig(["worker", "test/fixtures/fleet-provider.ts"], {
    MIG_NATS_URL: cluster.urls,
    MIG_JS_REPLICAS: "3",
    WORKER_NAME: name,
    WORKER_CAPABILITY: `fleet.only.${name}`,
  });
}

async function workersLive(names: string[]): Promise<void> {
  for (const gateway of gateways) {
    for (let tries = 0; ; tries++) {
      const ids = await discoverIds(gateway.url).catch((): string[] => []);
      if (["w1", "w2"].every((n) => ids.includes(`fleet.only.${n}`) === names.includes(n))) break;
      if (tries > 300) throw new Error(`DISCOVER did not converge to ${names.join(", ")}`);
      await sleep(100);
    }
  }
}

/** The nats-server processes this process started (the cluster's nodes). */
function nodePids(): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        return stat.includes("(nats-server)") && Number(stat.split(") ")[1]!.split(" ")[1]) === process.pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

// ── 1. throughput ────────────────────────────────────────────────────────────────────────────────────────────

interface Slice {
  setup: string;
  rps: number;
  errors: number;
  cpu_us_per_call: Record<string, number>;
}

/** Runs one loader process per gateway URL (the connections split evenly) for SECONDS; CPU per call of every part. */
async function loadSlice(setup: string, urls: string[], live: Record<string, number>): Promise<Slice> {
  const body = JSON.stringify({ header: { tenant_id: "acme" }, payload: { n: 1 } });
  const loaders = urls.map((url, i) =>
    spawnTs(`loader${i + 1}`, ROOT, "test/bench/load-http.ts", [
      "--url",
      `${url}/mig/v0.1/invoke/fleet.echo`,
      "--body",
      body,
      "--concurrency",
      String(Math.max(1, Math.round(CONCURRENCY / urls.length))),
      "--warmup-ms",
      "1000",
      "--duration-ms",
      String(SECONDS * 1000),
    ]),
  );
  // The loaders are left out: they exit as they print, before their CPU can be read.
  const pids: Record<string, number> = { ...live };
  const nodes = nodePids();
  await sleep(1000); // the warm-up
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMicros(pid)]));
  const nodesBefore = nodes.reduce((sum, pid) => sum + cpuMicros(pid), 0);
  const results = await Promise.all(
    loaders.map((l) =>
      l.waitForLine(
        (line) => {
          const parsed = line.startsWith("{") ? (JSON.parse(line) as { requests?: number; errors?: number }) : {};
          return parsed.requests === undefined ? undefined : { requests: parsed.requests, errors: parsed.errors ?? 0 };
        },
        (SECONDS + 30) * 1000,
      ),
    ),
  );
  const requests = results.reduce((sum, r) => sum + r.requests, 0);
  const errors = results.reduce((sum, r) => sum + r.errors, 0);
  const cpu: Record<string, number> = {};
  for (const [k, pid] of Object.entries(pids))
    cpu[k] = Math.round(((cpuMicros(pid) - before[k]!) / requests) * 10) / 10;
  cpu.nats_nodes =
    Math.round(((nodes.reduce((sum, pid) => sum + cpuMicros(pid), 0) - nodesBefore) / requests) * 10) / 10;
  return { setup, rps: Math.round(requests / SECONDS), errors, cpu_us_per_call: cpu };
}

async function throughput(): Promise<Slice[]> {
  const slices: Slice[] = [];
  for (let round = 0; round < 2; round++) {
    await workers.get("w2")!.stop("SIGTERM");
    workers.delete("w2");
    await workersLive(["w1"]);
    slices.push(
      await loadSlice("1 gateway + 1 worker", [gateways[0]!.url], {
        gateway1: gateways[0]!.process.child.pid!,
        worker1: workers.get("w1")!.child.pid!,
      }),
    );
    workers.set("w2", startWorker("w2"));
    await workersLive(["w1", "w2"]);
    slices.push(
      await loadSlice(
        "2 gateways + 2 workers",
        gateways.map((g) => g.url),
        {
          gateway1: gateways[0]!.process.child.pid!,
          gateway2: gateways[1]!.process.child.pid!,
          worker1: workers.get("w1")!.child.pid!,
          worker2: workers.get("w2")!.child.pid!,
        },
      ),
    );
  }
  return slices;
}

// ── 2. recovery ──────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Callers in a closed loop (at_least_once invocations or acked publishes, a new idempotency key per call, kept on
 * retries), moving to the next gateway after an error; records when each call was answered.
 */
class Probe {
  readonly answered: number[] = [];
  private stopped = false;
  private next = 0;
  private readonly done: Promise<unknown>;

  constructor(
    private readonly kind: "invoke" | "publish",
    private readonly tag: string,
    width = 4,
  ) {
    this.done = Promise.all(Array.from({ length: width }, () => this.loop()));
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const n = this.next++;
      const key = `${this.tag}-${n}`;
      for (let attempt = 0; !this.stopped; attempt++) {
        const gateway = gateways[(n + attempt) % gateways.length]!;
        const path = this.kind === "invoke" ? "/mig/v0.1/invoke/fleet.record" : `/mig/v0.1/publish/${TOPIC}`;
        const ok = await fetch(`${gateway.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ header: { tenant_id: "acme", idempotency_key: key }, payload: { n } }),
          signal: AbortSignal.timeout(20_000),
        })
          .then(async (res) => (await res.arrayBuffer(), res.status === 200))
          .catch(() => false);
        if (ok) {
          this.answered.push(performance.now());
          break;
        }
        await sleep(20);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  /** The longest time without an answer from `from` on (ms). */
  outageSince(from: number): number {
    let last = from;
    let longest = 0;
    for (const at of this.answered) {
      if (at < from) continue;
      longest = Math.max(longest, at - last);
      last = at;
    }
    return Math.round(longest);
  }
}

interface Kill {
  kind: "worker" | "gateway" | "node";
  invoke_ms: number;
  publish_ms: number;
}

async function killOnce(kind: Kill["kind"], round: number): Promise<Kill> {
  const invokes = new Probe("invoke", `${kind}-${round}-call`);
  const publishes = new Probe("publish", `${kind}-${round}-event`);
  await sleep(2_000);
  const at = performance.now();
  let restore: () => Promise<void>;
  if (kind === "worker") {
    await workers.get("w1")!.stop("SIGKILL");
    restore = async () => {
      workers.set("w1", startWorker("w1"));
      await workersLive(["w1", "w2"]);
    };
  } else if (kind === "gateway") {
    const victim = gateways[0]!;
    gateways = gateways.slice(1);
    await victim.process.stop("SIGKILL");
    restore = async () => {
      gateways.push(await startClusterGateway(cluster, ["fleet.only.w1", "fleet.only.w2"]));
    };
  } else {
    const nc = await connect({ servers: cluster.urls });
    const leader = (await (await jetstreamManager(nc)).streams.info(topicRef("acme", TOPIC).stream)).cluster?.leader;
    await nc.close();
    const node = cluster.nodes.find((n) => n.name === leader)!;
    await node.kill("SIGKILL");
    restore = async () => {
      node.start();
      await sleep(3_000);
    };
  }
  await sleep(15_000);
  await Promise.all([invokes.stop(), publishes.stop()]);
  await restore();
  return { kind, invoke_ms: invokes.outageSince(at), publish_ms: publishes.outageSince(at) };
}

// ── run ──────────────────────────────────────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  cluster = await startCluster(3);
  for (const name of ["w1", "w2"]) workers.set(name, startWorker(name));
  for (const worker of workers.values()) await worker.waitForLog("worker serving", 90_000);
  for (let i = 0; i < 2; i++) gateways.push(await startClusterGateway(cluster, ["fleet.only.w1", "fleet.only.w2"]));
  // The topic's stream exists before the first kill.
  await fetch(`${gateways[0]!.url}/mig/v0.1/publish/${TOPIC}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ header: { tenant_id: "acme" }, payload: { n: -1 } }),
  });

  const slices = await throughput();
  const kills: Kill[] = [];
  for (const kind of ["worker", "gateway", "node"] as const) {
    for (let round = 0; round < ROUNDS; round++) kills.push(await killOnce(kind, round));
  }

  const summary = Object.fromEntries(
    (["worker", "gateway", "node"] as const).map((kind) => {
      const of = kills.filter((k) => k.kind === kind);
      const stat = (field: "invoke_ms" | "publish_ms") => ({
        p50: median(of.map((k) => k[field])),
        max: Math.max(...of.map((k) => k[field])),
      });
      return [kind, { invoke_ms: stat("invoke_ms"), publish_ms: stat("publish_ms") }];
    }),
  );
  const report = { throughput: slices, recovery: summary, kills };
  if (values.json) console.log(JSON.stringify({ cluster: report }));
  else {
    console.log("unary INVOKE over HTTP of a worker-served capability, on a 3-node cluster");
    for (const s of slices)
      console.log(
        `  ${s.setup}: ${s.rps} req/s, ${s.errors} errors · CPU µs/call ${JSON.stringify(s.cpu_us_per_call)}`,
      );
    console.log(`outage a caller sees after a SIGKILL (longest time without an answer), ${ROUNDS} rounds each`);
    for (const [kind, s] of Object.entries(summary))
      console.log(
        `  ${kind}: invoke p50 ${s.invoke_ms.p50} ms, max ${s.invoke_ms.max} ms · publish p50 ${s.publish_ms.p50} ms, max ${s.publish_ms.max} ms`,
      );
  }
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await Promise.all([...workers.values(), ...gateways.map((g) => g.process)].map((p) => p.stop("SIGKILL")));
    await cluster?.stop();
  });
