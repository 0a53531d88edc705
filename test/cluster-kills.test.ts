// Parts of a fleet killed under steady load, on a 3-node JetStream cluster with real processes: two `mig start`
// gateways and two `mig worker`s. Callers invoke an at_least_once capability (an idempotency key each) and publish
// events (an idempotency key each), moving to another gateway when one fails them, while an SSE and a NATS
// subscriber that started on the first gateway read the topic. One worker, then that gateway, is SIGKILLed.
// After each kill every call is answered once with its own result (on the way only retryable errors, never a hang),
// DISCOVER lists the live workers, no acked event is missing or stored twice, and both subscribers, resuming on the
// surviving gateway from the last event they saw, have every event.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, createInbox, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEARTBEAT_HEADER } from "../bindings/nats/events.ts";
import { topicRef } from "../runtime/store/events.ts";
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
 * A NATS subscriber with a durable consumer_id and heartbeats: when the heartbeats stop (its gateway is gone) or the
 * runtime ends its subscription, it subscribes again, on whichever gateway answers, from the last event it saw.
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

describe("killing parts of a fleet under load", () => {
  it("SIGKILL of a worker: every at_least_once call is answered once with its result, and DISCOVER drops the worker", async () => {
    const callers = new Callers("worker-kill");
    const total = 120;
    const load = callers.run(total, 6, (n) => callers.invoke(n));
    await waitFor("calls to flow", () => callers.answers.size >= 30, 60_000);
    expect(await workers.get("w1")!.stop("SIGKILL")).toBe(null);
    workers.delete("w1");
    await load;

    expect({ refusals: callers.refusals, hangs: callers.hangs, duplicates: callers.duplicates }).toEqual({
      refusals: [],
      hangs: [],
      duplicates: [],
    });
    expect(callers.answers.size).toBe(total);
    for (const [n, answer] of callers.answers) expect(answer.payload).toMatchObject({ n });
    expect(ranKeys("worker-kill").size).toBe(total);

    for (const gateway of gateways) {
      await waitFor(
        "DISCOVER to list the live worker only",
        async () => {
          const ids = await discoverIds(gateway.url);
          return !ids.includes("fleet.only.w1") && ids.includes("fleet.only.w2");
        },
        30_000,
      );
    }
  }, 180_000);

  it("SIGKILL of a gateway: calls and publishes move to the other, no acked event is lost or stored twice, and both subscribers resume there with every event", async () => {
    const [victim] = gateways;
    const invokes = new Callers("gateway-kill");
    const publishes = new Callers("event");
    const totalCalls = 120;
    const totalEvents = 150;
    const load = Promise.all([
      invokes.run(totalCalls, 4, (n) => invokes.invoke(n)),
      publishes.run(totalEvents, 2, (n) => publishes.publish(n)),
    ]);
    await waitFor(
      "events to flow to both subscribers",
      () => sse.seen.size >= 30 && natsFollower.seen.size >= 30,
      60_000,
    );
    expect(await victim!.process.stop("SIGKILL")).toBe(null);
    gateways.splice(gateways.indexOf(victim!), 1);
    await load;

    for (const callers of [invokes, publishes]) {
      expect({ refusals: callers.refusals, hangs: callers.hangs, duplicates: callers.duplicates }).toEqual({
        refusals: [],
        hangs: [],
        duplicates: [],
      });
    }
    expect(invokes.answers.size).toBe(totalCalls);
    for (const [n, answer] of invokes.answers) expect(answer.payload).toMatchObject({ n });
    expect(ranKeys("gateway-kill").size).toBe(totalCalls);

    // Each acked event stored once: the topic holds exactly one message per publish, numbered 1..total.
    expect(publishes.answers.size).toBe(totalEvents);
    const jsm = await jetstreamManager(nc);
    const state = (await jsm.streams.info(topicRef("acme", TOPIC).stream)).state;
    expect({ messages: state.messages, last: state.last_seq }).toEqual({ messages: totalEvents, last: totalEvents });
    const acked = new Set([...publishes.answers.values()].map((ack) => ack.sequence as number));
    expect(acked.size).toBe(totalEvents);

    // Both subscribers were on the killed gateway, opened again on the survivor, and have every event.
    const every = Array.from({ length: totalEvents }, (_, i) => i + 1);
    await waitFor("the SSE subscriber to have every event", () => sse.seen.size >= totalEvents, 60_000);
    await waitFor("the NATS subscriber to have every event", () => natsFollower.seen.size >= totalEvents, 60_000);
    expect([...sse.seen].sort((a, b) => a - b)).toEqual(every);
    expect([...natsFollower.seen].sort((a, b) => a - b)).toEqual(every);
    expect(sse.reopened).toBeGreaterThanOrEqual(1);
    expect(natsFollower.reopened).toBeGreaterThanOrEqual(1);

    expect(await discoverIds(gateways[0]!.url)).toEqual(expect.arrayContaining(["fleet.only.w2", "fleet.record"]));
  }, 180_000);
});
