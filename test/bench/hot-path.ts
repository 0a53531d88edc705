// Micro-benchmark of the hot paths, in one process (run: node --import tsx test/bench/hot-path.ts [--rounds 5] [--n 20000]):
//  1. the invocation machine alone (createActor + start + DISPATCHED + RESULT);
//  2. in-process runtime.invoke() of the demo capability;
//  3. INVOKE over the NATS binding to a WorkerHost in this process (64 requests in flight);
//  4. frames of one server_stream from that worker, relayed by the gateway to a NATS consumer.
// Each figure is µs of wall time and µs of this process's CPU (user+system) per operation, over
// several rounds: the CPU figure is the steadier one on a loaded machine. The nats-server is a
// separate process and is not in the CPU figure.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createActor } from "xstate";
import { invocationLogic } from "../../actors/invocation.ts";
import { startNatsBinding } from "../../bindings/nats/server.ts";
import { loadConfig } from "../../runtime/base/config.ts";
import { createLogger } from "../../runtime/base/logger.ts";
import { anonymousPrincipal } from "../../runtime/protocol/principal.ts";
import { MigRuntime } from "../../runtime/runtime.ts";
import { WorkerHost } from "../../worker/host.ts";
import { count } from "../fixtures/stream-provider.ts";
import { startTestRuntime } from "../helpers/runtime.ts";
import { benchEcho } from "./echo-provider.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    n: { type: "string", default: "20000" },
    frames: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "64" },
    only: { type: "string" },
  },
});
const ROUNDS = Number(values.rounds);
const N = Number(values.n);
const FRAMES = Number(values.frames);
const CONCURRENCY = Number(values.concurrency);
const CREDIT = 64;

interface Sample {
  wall: number;
  cpu: number;
}

async function measure(ops: number, run: () => Promise<void>): Promise<Sample> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run();
  const wall = ((performance.now() - t0) * 1000) / ops;
  const cpu = process.cpuUsage(cpu0);
  return { wall, cpu: (cpu.user + cpu.system) / ops };
}

async function rounds(name: string, ops: number, run: () => Promise<void>): Promise<void> {
  if (values.only && !name.includes(values.only)) return;
  await run(); // warm-up
  const samples: Sample[] = [];
  for (let i = 0; i < ROUNDS; i++) samples.push(await measure(ops, run));
  const show = (pick: (s: Sample) => number) => {
    const sorted = samples.map(pick).sort((a, b) => a - b);
    return `${sorted[Math.floor(sorted.length / 2)]!.toFixed(1).padStart(7)} (${sorted[0]!.toFixed(1)}–${sorted.at(-1)!.toFixed(1)})`;
  };
  console.log(`${name.padEnd(34)} wall µs/op ${show((s) => s.wall)}   cpu µs/op ${show((s) => s.cpu)}`);
}

/** Runs `total` calls of `call`, `concurrency` at a time; yields to I/O now and then, so heartbeats go on. */
async function inFlight(total: number, concurrency: number, call: () => Promise<unknown>): Promise<void> {
  let started = 0;
  const lane = async () => {
    while (started < total) {
      if (++started % 512 === 0) await new Promise((r) => setImmediate(r));
      await call();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
}

async function main(): Promise<void> {
  console.log(
    `hot-path bench: ${ROUNDS} rounds, median (min–max); load average ${(await import("node:os"))
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );

  await rounds("invocation actor alone (+ deadline timer)", N, async () => {
    const settle = () => undefined;
    for (let i = 0; i < N; i++) {
      // As runtime/ops/invoke.ts runs it: with its deadline timer, started and cleared.
      const actor = createActor(invocationLogic, {
        input: { deadlineMs: 30_000, controller: new AbortController(), settle },
      });
      actor.start();
      const deadline = setTimeout(() => actor.send({ type: "DEADLINE" }), 30_000);
      actor.send({ type: "DISPATCHED" });
      actor.send({ type: "RESULT", payload: {} });
      clearTimeout(deadline);
    }
  });

  const gateway = await startTestRuntime();
  const { runtime } = gateway;
  const nats = await startNatsBinding(runtime, runtime.authenticator);
  const config = loadConfig(
    {
      natsUrl: runtime.natsUrl,
      dataDir: gateway.dataDir,
      logLevel: "silent",
      streamWindow: CREDIT,
      streamStallMs: 60_000,
    },
    {},
  );
  const workerRuntime = await MigRuntime.start(config, { logger: createLogger("silent") }); // with its fleet view: the direct lane needs it
  const host = await WorkerHost.start(workerRuntime, [benchEcho, count], { heartbeatMs: 1000 });
  const nc = await connect({ servers: runtime.natsUrl, name: "bench-client" });
  try {
    await seen(runtime, "bench.echo");
    await seen(runtime, "remote.stream.count");

    const context = () => ({ principal: anonymousPrincipal(), binding: "http" as const, tenant: "bench" });
    await rounds(`in-process invoke (${CONCURRENCY} in flight)`, N, () =>
      inFlight(N, CONCURRENCY, () =>
        runtime.invoke({ capability: "observatory.models.infer", payload: { input: "hello" } }, context()),
      ),
    );
    await rounds("in-process invoke (1 in flight)", N, () =>
      inFlight(N, 1, () =>
        runtime.invoke({ capability: "observatory.models.infer", payload: { input: "hello" } }, context()),
      ),
    );

    await seen(runtime, "bench.echo");
    const body = JSON.stringify({ payload: { input: "hello" } });
    const natsOps = Math.max(1000, Math.floor(N / 4));
    await rounds(`NATS invoke → worker (${CONCURRENCY} in flight)`, natsOps, () =>
      inFlight(natsOps, CONCURRENCY, async () => {
        const msg = await nc.request("mig.v0_1.bench.invoke.bench.echo", body, { timeout: 30_000 });
        if (msg.headers?.get("mig_error_code")) throw new Error(`invoke failed: ${msg.string()}`);
      }),
    );
    await rounds("raw NATS request/reply (same conn)", natsOps, async () => {
      const sub = nc.subscribe("bench.raw.echo", { callback: (_e, m) => void m.respond(m.data) });
      await inFlight(natsOps, CONCURRENCY, () => nc.request("bench.raw.echo", body, { timeout: 30_000 }));
      sub.unsubscribe();
    });

    await rounds("stream frame worker → gateway → NATS", FRAMES, () => runStream(nc, FRAMES));
  } finally {
    await nc.close();
    await host.stop();
    await workerRuntime.stop();
    await nats.close();
    await gateway.stop();
  }
}

async function seen(runtime: MigRuntime, capability: string): Promise<void> {
  for (let i = 0; !runtime.capabilities.get(capability); i++) {
    if (i > 200) throw new Error(`the gateway never saw the worker's capability ${capability}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function runStream(nc: NatsConnection, frames: number): Promise<void> {
  const streamId = `b-${randomUUID()}`;
  const subject = `mig.v0_1.bench.stream.${streamId}`;
  let read = 0;
  let failed: unknown;
  const sub = nc.subscribe(subject, {
    callback: (_e, msg) => {
      const frame = msg.json<{ end_stream?: boolean; kind: string }>();
      if (frame.end_stream) {
        if (frame.kind !== "response") failed = msg.string();
        sub.unsubscribe();
        return;
      }
      if (++read % (CREDIT / 2) === 0)
        nc.publish(
          `${subject}.in`,
          JSON.stringify({ kind: "control", payload: { action: "credit", credit: CREDIT / 2 } }),
        );
    },
  });
  await nc.flush();
  await nc.request(
    "mig.v0_1.bench.control.stream",
    JSON.stringify({
      capability: "remote.stream.count",
      payload: { count: frames },
      stream_id: streamId,
      stream_preference: "server_stream",
      header: { deadline_ms: 600_000 },
    }),
  );
  nc.publish(`${subject}.in`, JSON.stringify({ kind: "control", payload: { action: "credit", credit: CREDIT } }));
  await sub.closed;
  if (failed) throw new Error(`stream failed: ${String(failed)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
