// One tenant floods, another measures: the victim tenant's INVOKE and PUBLISH latency over HTTP, alone and while an
// attacker tenant publishes to ever new topics, publishes to one topic as fast as it can, and invokes a capability
// with 500 KB outputs under fresh idempotency keys. Prints both and how the attacker's requests were answered.
//
//   node --import tsx test/bench/flood.ts [--seconds 4] [--concurrency 48] [--no-quotas]
//                                         [--kinds new_topics,one_topic,big_idempotent] [--tenant-rate-limit 50/100]
//                                         [--tenant-fair-inflight 2]
//   taskset -c 0 node --import tsx test/bench/flood.ts --attacker-cpus 1 --victim-cpus 1
//                                         (the clients on the other core, the runtime and nats-server on core 0)
//
// The runtime runs in this process (embedded nats-server on random ports, HTTP binding); the attacker and the victim
// each run in a child process, so that neither's client work shares the runtime's event loop: a victim measured from
// the runtime's own process would wait for that loop twice, once for its answer and once for its own callback.
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startHttpBinding } from "../../bindings/http/server.ts";
import { loadConfig, parseRateLimit, type RuntimeConfig, scratchDataDir } from "../../runtime/base/config.ts";
import { createLogger } from "../../runtime/base/logger.ts";
import { defineCapability } from "../../runtime/provider/provider.ts";
import { MigRuntime } from "../../runtime/runtime.ts";
import { anyDescriptor, anySchemas } from "../helpers/descriptors.ts";
import { ROOT } from "../helpers/process.ts";
import { Histogram } from "./histogram.ts";
import { Child, stopAllChildren } from "./processes.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "4" },
    concurrency: { type: "string", default: "48" },
    "no-quotas": { type: "boolean", default: false },
    attack: { type: "string" },
    victim: { type: "string" },
    "victim-cpus": { type: "string" },
    kinds: { type: "string", default: "new_topics,one_topic,big_idempotent" },
    "tenant-rate-limit": { type: "string" },
    "attacker-cpus": { type: "string" },
    "tenant-fair-inflight": { type: "string" },
  },
});
const seconds = Number(values.seconds);
const BIG_OUTPUT = "x".repeat(500 * 1024);

if (values.attack) {
  await attack(values.attack, seconds, Number(values.concurrency), values.kinds!.split(","));
  process.exit(0);
}
if (values.victim) await victimProcess(values.victim);

const echo = defineCapability(
  anyDescriptor("bench.flood.echo", ["unary"]),
  (payload) => ({ echo: payload }),
  anySchemas,
);
const big = defineCapability(anyDescriptor("bench.flood.big", ["unary"]), () => ({ blob: BIG_OUTPUT }), anySchemas);

const unlimited: Partial<RuntimeConfig> = values["no-quotas"]
  ? {
      tenantMaxTopics: 1_000_000,
      maxTopics: 1_000_000,
      topicMaxBytes: 64 * 1024 * 1024,
      tenantPublishRateLimit: { rate: 1e9, burst: 1e9 },
      idempotencyMaxRecordBytes: 64 * 1024 * 1024,
      idempotencyTenantMaxBytes: Number.MAX_SAFE_INTEGER,
    }
  : {};
const dataDir = scratchDataDir("flood");
const invokeLimit = values["tenant-rate-limit"]
  ? { tenantRateLimit: parseRateLimit("--tenant-rate-limit")(values["tenant-rate-limit"]) }
  : {};
const config = loadConfig(
  {
    natsPort: 0,
    natsMonitorPort: 0,
    dataDir,
    httpAddr: "127.0.0.1:0",
    logLevel: "silent",
    ...unlimited,
    ...invokeLimit,
    ...(values["tenant-fair-inflight"] ? { tenantFairInflight: Number(values["tenant-fair-inflight"]) } : {}),
  },
  {},
);
const runtime = await MigRuntime.start(config, { logger: createLogger("silent"), capabilities: [echo, big] });
const http = await startHttpBinding(runtime, runtime.authenticator, config.httpAddr);

const script = fileURLToPath(import.meta.url);
/** A child running this script in another role, under `taskset -c cpus` when given. */
function child(name: string, args: string[], cpus: string | undefined): Child {
  const argv = [process.execPath, "--import", "tsx", script, ...args];
  return cpus
    ? new Child(name, "taskset", ["-c", cpus, ...argv], { cwd: ROOT })
    : new Child(name, argv[0]!, argv.slice(1), { cwd: ROOT });
}
const json = (line: string) => (line.startsWith("{") ? line : undefined);
/** Generous: a child's start and a measured run take seconds, but on a loaded machine a little more. */
const slackMs = 60_000;

const victimChild = child("victim", ["--victim", http.url], values["victim-cpus"]);
/** One run of the victim child: `runSeconds` of requests, then its summary. */
async function victim(runSeconds = seconds) {
  const summary = victimChild.waitForLine(json, runSeconds * 1000 + slackMs);
  victimChild.proc.stdin!.write(`${runSeconds}\n`);
  return JSON.parse(await summary);
}

try {
  await victimChild.waitForLine((line) => (line === "ready" ? true : undefined), slackMs);
  // Not measured: the first calls compile the runtime's paths.
  await victim(1);
  const alone = await victim();
  // With --attacker-cpus (a taskset list, e.g. "1" while this process runs under `taskset -c 0`), the attacker's
  // client work stays off the runtime's cores, so what the victim feels is the runtime's own share of the flood.
  const attackerArgs = ["--attack", http.url, "--seconds", String(seconds + 1), "--concurrency", values.concurrency!];
  const attackerChild = child("attacker", [...attackerArgs, "--kinds", values.kinds!], values["attacker-cpus"]);
  const answers = attackerChild.waitForLine(json, (seconds + 1) * 1000 + 2 * slackMs);
  await attackerChild.waitForLine((line) => (line === "started" ? true : undefined), slackMs);
  const flooded = await victim();
  const attacker = JSON.parse(await answers);
  const streams = await countStreams();
  const fairTurns = Object.fromEntries(
    (await runtime.metrics.fairShareWaits.get()).values.map((v) => [String(v.labels.outcome), v.value]),
  );
  console.log(
    JSON.stringify(
      {
        quotas: !values["no-quotas"],
        kinds: values.kinds,
        tenant_rate_limit: values["tenant-rate-limit"] ?? "off",
        seconds,
        alone,
        flooded,
        attacker,
        fair_turn_waits: fairTurns,
        event_streams: streams,
      },
      null,
      1,
    ),
  );
} finally {
  await stopAllChildren();
  await http.close();
  await runtime.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
// fetch's keep-alive sockets would hold the process a while longer.
process.exit(0);

async function countStreams(): Promise<number> {
  let n = 0;
  for await (const _ of runtime.bus.jsm.streams.names("_MIG.ev.>")) n++;
  return n;
}

/** The victim child: a run per line on stdin (its length in seconds), its summary as one line of JSON; ends with stdin. */
async function victimProcess(url: string): Promise<never> {
  process.stdout.write("ready\n");
  let pending = "";
  for await (const chunk of process.stdin) {
    pending += String(chunk);
    while (pending.includes("\n")) {
      const runSeconds = Number(pending.slice(0, pending.indexOf("\n")));
      pending = pending.slice(pending.indexOf("\n") + 1);
      process.stdout.write(`${JSON.stringify(await victimRun(url, runSeconds))}\n`);
    }
  }
  process.exit(0);
}

/** One request at a time, INVOKE and PUBLISH in turn, for `seconds`: p50 and p99 of each in ms. */
async function victimRun(url: string, seconds: number) {
  const invoke = new Histogram();
  const publish = new Histogram();
  const failures: Record<string, number> = {};
  const until = performance.now() + seconds * 1000;
  let i = 0;
  while (performance.now() < until) {
    const isInvoke = i++ % 2 === 0;
    const path = isInvoke ? "/mig/v0.1/invoke/bench.flood.echo" : "/mig/v0.1/publish/victim.orders";
    const started = performance.now();
    const res = await fetch(url + path, {
      method: "POST",
      headers: { "content-type": "application/json", "x-tenant-id": "victim" },
      body: JSON.stringify({ payload: { n: i } }),
    });
    const text = await res.text();
    (isInvoke ? invoke : publish).recordMs(performance.now() - started);
    if (res.status !== 200) {
      const code = JSON.parse(text).error?.code ?? res.status;
      failures[code] = (failures[code] ?? 0) + 1;
    }
  }
  const summary = (h: Histogram) => ({
    n: h.count,
    p50_ms: round(h.percentileMs(50)),
    p99_ms: round(h.percentileMs(99)),
  });
  return { invoke: summary(invoke), publish: summary(publish), failures };
}

/** The attacker: `concurrency` loops split over three kinds of abuse, answers counted by kind and code. */
async function attack(url: string, seconds: number, concurrency: number, kinds: string[]): Promise<void> {
  const answers: Record<string, Record<string, number>> = { new_topics: {}, one_topic: {}, big_idempotent: {} };
  let topic = 0;
  let key = 0;
  const until = performance.now() + seconds * 1000;
  process.stdout.write("started\n");
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      const kind = kinds[worker % kinds.length]!;
      while (performance.now() < until) {
        const path =
          kind === "new_topics"
            ? `/mig/v0.1/publish/flood.t${topic++}`
            : kind === "one_topic"
              ? "/mig/v0.1/publish/flood.one"
              : "/mig/v0.1/invoke/bench.flood.big";
        const body =
          kind === "big_idempotent"
            ? { header: { idempotency_key: `k${key++}` }, payload: {} }
            : { payload: { blob: "a".repeat(512) } };
        let code: string;
        try {
          const res = await fetch(url + path, {
            method: "POST",
            headers: { "content-type": "application/json", "x-tenant-id": "attacker" },
            body: JSON.stringify(body),
          });
          const text = await res.text();
          code = res.status === 200 ? "ok" : (JSON.parse(text).error?.code ?? String(res.status));
        } catch (err) {
          code = `client:${(err as Error).message}`;
        }
        answers[kind]![code] = (answers[kind]![code] ?? 0) + 1;
      }
    }),
  );
  process.stdout.write(`${JSON.stringify(answers)}\n`);
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
