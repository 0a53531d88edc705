// Parts of a fleet killed under steady load, on a 3-node JetStream cluster with real processes: two `mig start`
// gateways and two `mig worker`s. Callers invoke an at_least_once capability (an idempotency key each) and publish
// events (an idempotency key each), moving to another gateway when one fails them, while an SSE subscriber (resuming
// from its last event) and a NATS subscriber (durable consumer_id, heartbeats) read the topic. In turn: a worker,
// the gateway both subscribers are on, and the NATS node leading the topic are SIGKILLed, and every gateway is
// SIGTERMed and started again. After each: every call answered once with its own result (on the way only retryable
// errors, never a hang), each acked event stored once, both subscribers with every event so far, and DISCOVER
// listing the live workers.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, createInbox, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { topicRef } from "../runtime/store/events.ts";
import { HEARTBEAT_HEADER } from "../schemas/nats-headers.ts";
import {
  type Cluster,
  type ClusterGateway,
  discoverIds,
  startCluster,
  startClusterGateway,
} from "./helpers/cluster.ts";
import { natsRequest } from "./helpers/nats.ts";
import { type MigProcess, startMig } from "./helpers/process.ts";
import { waitFor } from "./helpers/runtime.ts";
import { SseClient } from "./helpers/sse.ts";

const log = join(mkdtempSync(join(tmpdir(), "mig-kills-")), "runs.log");
const TOPIC = "chaos.feed";
const DEADLINE_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
const workers = new Map<string, MigProcess>();
/** Gateways in the order callers try them; a killed one leaves the list. */
const gateways: ClusterGateway[] = [];
let nc: NatsConnection;

function startWorker(name: string): MigProcess {
  return startMig(["worker", "test/fixtures/fleet-provider.ts"], {
    MIG_NATS_URL: cluster.urls,
    MIG_JS_REPLICAS: "3",
    FLEET_LOG: log,
    WORKER_NAME: name,
    WORKER_CAPABILITY: `fleet.only.${name}`,
  });
}

const WORKER_CAPABILITIES = ["fleet.only.w1", "fleet.only.w2"];
const startGateway = () => startClusterGateway(cluster, WORKER_CAPABILITIES);

/** What callers saw: answers by call number, and anything a caller must never see. */
class Callers {
  readonly answers = new Map<number, Record<string, unknown>>();
  readonly duplicates: number[] = [];
  readonly refusals: unknown[] = [];
  readonly hangs: number[] = [];

  constructor(private readonly prefix: string) {}

  /** POSTs until a gateway answers 200; moves to the next gateway after a retryable error or a lost connection. */
  async call(n: number, path: string, body: Record<string, unknown>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const live = gateways[(n + attempt) % gateways.length]!;
      try {
        const res = await fetch(`${live.url}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(DEADLINE_MS + 10_000),
        });
        const answer = (await res.json()) as { error?: { retryable?: boolean } } & Record<string, unknown>;
        if (res.status === 200) {
          if (this.answers.has(n)) this.duplicates.push(n);
          this.answers.set(n, answer);
          return;
        }
        if (answer.error?.retryable !== true) {
          this.refusals.push(answer);
          return;
        }
      } catch (err) {
        // A gateway that was killed refuses or drops the connection; one that hangs past the deadline is a defect.
        if ((err as Error).name === "TimeoutError") {
          this.hangs.push(n);
          return;
        }
      }
      await sleep(50);
    }
  }

  invoke(n: number): Promise<void> {
    return this.call(n, "/mig/v0.1/invoke/fleet.record", {
      header: { tenant_id: "acme", idempotency_key: `${this.prefix}-${n}`, deadline_ms: DEADLINE_MS },
      payload: { n, sleep_ms: 30 },
    });
  }

  publish(n: number): Promise<void> {
    return this.call(n, `/mig/v0.1/publish/${TOPIC}`, {
      header: { tenant_id: "acme", idempotency_key: `${this.prefix}-${n}` },
      payload: { n },
    });
  }

  /** Runs `total` calls of `what` on `width` concurrent callers. */
  async run(total: number, width: number, what: (n: number) => Promise<void>): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: width }, async () => {
        while (next < total) await what(next++);
      }),
    );
  }
}

/** Keys the workers ran (FLEET_LOG), with their prefix. */
function ranKeys(prefix: string): Set<string> {
  return new Set(
    readFileSync(log, "utf8")
      .split("\n")
      .filter((line) => line.startsWith(`ran ${prefix}-`))
      .map((line) => line.split(" ")[1]!),
  );
}

/** An SSE subscriber that opens again from the last event it saw (resume_cursor) when its connection ends. */
class SseFollower {
  readonly seen = new Set<number>();
  reopened = 0;
  private last = 0;
  private stopped = false;
  private client: SseClient | undefined;
  readonly done: Promise<void>;

  constructor(first: string) {
    this.done = this.follow(first);
  }

  private async follow(first: string): Promise<void> {
    let url = first;
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        this.client = await SseClient.open(`${url}/mig/v0.1/subscribe/${TOPIC}?resume_cursor=${this.last}`, {
          "x-tenant-id": "acme",
        });
      } catch {
        url = gateways[attempt % gateways.length]!.url;
        await sleep(200);
        continue;
      }
      let read = 0;
      for (;;) {
        const events = this.client.events;
        for (; read < events.length; read++) {
          this.seen.add(events[read]!.sequence);
          this.last = Math.max(this.last, events[read]!.sequence);
        }
        if (this.client.ended || this.stopped) break;
        await sleep(50);
      }
      if (this.stopped) break;
      this.reopened++;
      url = gateways[attempt % gateways.length]!.url;
    }
    this.client?.close();
  }

  stop(): Promise<void> {
    this.stopped = true;
    return this.done;
  }
}

/**
 * A NATS subscriber with a durable consumer_id and heartbeats: when the heartbeats stop (its gateway is gone), the
 * runtime ends its subscription, or its own connection moves to another node, it subscribes again, on whichever
 * gateway answers, from the last event it saw.
 */
class NatsFollower {
  readonly seen = new Set<number>();
  reopened = 0;
  private last = 0;
  private heardAt = Date.now();
  private lost = false;
  private inbox: Subscription | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private opening = false;

  async open(): Promise<void> {
    this.opening = true;
    try {
      for (;;) {
        this.inbox?.unsubscribe();
        const subject = createInbox();
        this.inbox = nc.subscribe(subject, {
          callback: (_err, msg) => {
            this.heardAt = Date.now();
            if (msg.headers?.get(HEARTBEAT_HEADER)) return;
            if (msg.headers?.get("mig_error_code")) {
              this.lost = true;
              return;
            }
            const event = JSON.parse(msg.string()) as { sequence: number };
            this.seen.add(event.sequence);
            this.last = Math.max(this.last, event.sequence);
            msg.respond();
          },
        });
        await nc.flush();
        const opened = await natsRequest(
          nc,
          `mig.v0_1.acme.subscribe.${TOPIC}`,
          {
            header: { tenant_id: "acme" },
            deliver_subject: subject,
            consumer_id: "chaos-nats",
            resume_cursor: String(this.last),
            heartbeat_ms: 250,
          },
          {},
          5_000,
        ).catch(() => undefined);
        if (opened && opened.body.error === undefined) break;
        await sleep(200);
      }
      this.heardAt = Date.now();
      this.lost = false;
    } finally {
      this.opening = false;
    }
    this.watchdog ??= setInterval(() => {
      // Twelve heartbeats missed: generous, so that a busy machine's pause is not taken for a dead gateway.
      if (this.opening || (!this.lost && Date.now() - this.heardAt < 3_000)) return;
      this.reopened++;
      void this.open();
    }, 200);
  }

  /** Its own connection moved to another node: what was published to it meanwhile is lost, so it subscribes again. */
  reconnected(): void {
    this.lost = true;
  }

  stop(): void {
    clearInterval(this.watchdog);
    this.inbox?.unsubscribe();
  }
}

let sse: SseFollower;
let natsFollower: NatsFollower;

beforeAll(async () => {
  cluster = await startCluster(3);
  nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  void (async () => {
    for await (const status of nc.status()) if (status.type === "reconnect") natsFollower?.reconnected();
  })();
  for (const name of ["w1", "w2"]) workers.set(name, startWorker(name));
  const first = startGateway();
  for (const worker of workers.values()) await worker.waitForLog("worker serving", 90_000);
  gateways.push(await first);
  // Both subscribers start while the first gateway is the only one: theirs is the gateway killed below.
  sse = new SseFollower(gateways[0]!.url);
  natsFollower = new NatsFollower();
  await natsFollower.open();
  gateways.push(await startGateway());
}, 240_000);
afterAll(async () => {
  natsFollower?.stop();
  await sse?.stop();
  await nc?.close();
  await Promise.all([...workers.values(), ...gateways.map((g) => g.process)].map((p) => p.stop("SIGKILL")));
  await cluster?.stop();
});

/** The topic's stream as JetStream reports it, asked again while the cluster is electing leaders. */
function topicInfo() {
  return waitFor(
    "the topic's stream info",
    async () => {
      try {
        return await (await jetstreamManager(nc)).streams.info(topicRef("acme", TOPIC).stream);
      } catch {
        return undefined; // no JetStream leader yet
      }
    },
    30_000,
  );
}
const topicState = async () => (await topicInfo()).state;

/** On a failure: what went wrong, and the gateways' warnings and fleet changes, to read in the test's output. */
function explain(what: string): void {
  console.error(what);
  for (const gateway of gateways) {
    const lines = gateway.process.logs.filter(
      (line) => Number(line.level) >= 40 || /provider|registry|consumer|bus /.test(String(line.msg)),
    );
    console.error(gateway.url, lines.map((line) => JSON.stringify(line)).join("\n"));
  }
}

/** Events stored in the topic so far: each phase adds its publishes, numbered on from the last. */
let stored = 0;

interface Phase {
  invokes: Callers;
  publishes: Callers;
}

/**
 * Runs steady load (at_least_once invocations and acked publishes on every gateway, moving on when one fails them),
 * calls `disrupt` once both flow, and checks what callers and subscribers got: each call answered once with its own
 * result and only retryable errors on the way, each event stored once, and both subscribers with every event so far.
 */
async function underLoad(name: string, disrupt: () => Promise<void>): Promise<Phase> {
  const invokes = new Callers(`${name}-call`);
  const publishes = new Callers(`${name}-event`);
  const calls = 100;
  const events = 100;
  const load = Promise.all([
    invokes.run(calls, 4, (n) => invokes.invoke(n)),
    publishes.run(events, 2, (n) => publishes.publish(n)),
  ]);
  await waitFor(
    "calls and publishes to flow",
    () => invokes.answers.size >= 20 && publishes.answers.size >= 20,
    60_000,
  );
  await disrupt();
  await load;

  for (const callers of [invokes, publishes]) {
    if (callers.refusals.length > 0) explain(`${name}: ${JSON.stringify(callers.refusals.slice(0, 3))}`);
    expect({ refusals: callers.refusals, hangs: callers.hangs, duplicates: callers.duplicates }).toEqual({
      refusals: [],
      hangs: [],
      duplicates: [],
    });
  }
  expect(invokes.answers.size).toBe(calls);
  for (const [n, answer] of invokes.answers) expect(answer.payload).toMatchObject({ n });
  expect(ranKeys(`${name}-call`).size).toBe(calls);

  // Each acked event stored once: the topic holds one message per publish, numbered without a hole.
  expect(publishes.answers.size).toBe(events);
  stored += events;
  const acked = new Set([...publishes.answers.values()].map((ack) => ack.sequence as number));
  expect(acked.size).toBe(events);
  const state = await topicState();
  expect({ messages: state.messages, last: state.last_seq }).toEqual({ messages: stored, last: stored });

  const every = Array.from({ length: stored }, (_, i) => i + 1);
  const missing = (seen: Set<number>) => every.filter((n) => !seen.has(n)).slice(0, 20);
  await waitFor("the SSE subscriber to have every event", () => sse.seen.size >= stored, 60_000).catch((err) => {
    explain(`SSE subscriber: reopened ${sse.reopened}, missing ${missing(sse.seen)}`);
    throw err;
  });
  await waitFor("the NATS subscriber to have every event", () => natsFollower.seen.size >= stored, 60_000).catch(
    (err) => {
      explain(`NATS subscriber: reopened ${natsFollower.reopened}, missing ${missing(natsFollower.seen)}`);
      throw err;
    },
  );
  expect([...sse.seen].sort((a, b) => a - b)).toEqual(every);
  expect([...natsFollower.seen].sort((a, b) => a - b)).toEqual(every);
  return { invokes, publishes };
}

/** Waits until every gateway's DISCOVER lists the capabilities of exactly the workers named. */
async function discoverConverges(live: string[]): Promise<void> {
  for (const gateway of gateways) {
    await waitFor(
      `DISCOVER to list the workers ${live.join(", ")}`,
      async () => {
        const ids = await discoverIds(gateway.url);
        return WORKER_CAPABILITIES.every((id) => ids.includes(id) === live.some((name) => id === `fleet.only.${name}`));
      },
      30_000,
    );
  }
}

describe("killing parts of a fleet under load", () => {
  it("SIGKILL of a worker: nothing lost, DISCOVER drops it, and lists it again once it is back", async () => {
    await underLoad("worker-kill", async () => {
      expect(await workers.get("w1")!.stop("SIGKILL")).toBe(null);
      workers.delete("w1");
    });
    await discoverConverges(["w2"]);
    workers.set("w1", startWorker("w1"));
    await workers.get("w1")!.waitForLog("worker serving", 90_000);
    await discoverConverges(["w1", "w2"]);
  }, 240_000);

  it("SIGKILL of the gateway both subscribers are on: they resume on the other from their last event, nothing lost", async () => {
    const before = { sse: sse.reopened, nats: natsFollower.reopened };
    const [victim] = gateways;
    await underLoad("gateway-kill", async () => {
      expect(await victim!.process.stop("SIGKILL")).toBe(null);
      gateways.splice(gateways.indexOf(victim!), 1);
    });
    expect(sse.reopened).toBeGreaterThan(before.sse);
    expect(natsFollower.reopened).toBeGreaterThan(before.nats);
    gateways.push(await startGateway());
  }, 240_000);

  it("SIGKILL of the NATS node that leads the topic: nothing lost, nothing stored twice", async () => {
    const leader = (await topicInfo()).cluster?.leader;
    const node = cluster.nodes.find((n) => n.name === leader);
    expect(node).toBeDefined();
    await underLoad("node-kill", async () => {
      await node!.kill("SIGKILL");
      expect(node!.running()).toBe(false);
    });
    node!.start();
    await discoverConverges(["w1", "w2"]);
  }, 240_000);

  it("SIGTERM and restart of each gateway in turn: every subscriber moves on with every event, nothing lost", async () => {
    const before = { sse: sse.reopened, nats: natsFollower.reopened };
    await underLoad("rolling", async () => {
      for (const old of [...gateways]) {
        const stopped = old.process.stop("SIGTERM");
        gateways.splice(gateways.indexOf(old), 1);
        expect(await stopped).toBe(0);
        gateways.push(await startGateway());
      }
    });
    expect(sse.reopened).toBeGreaterThan(before.sse);
    expect(natsFollower.reopened).toBeGreaterThan(before.nats);
    await discoverConverges(["w1", "w2"]);
  }, 240_000);
});
