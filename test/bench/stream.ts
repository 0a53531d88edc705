// Streaming benchmarks (run: node --import tsx test/bench/stream.ts):
//  1. frames per second of one server_stream from a `mig worker` process, through a `mig start` gateway's
//     NATS stream subjects, to a NATS consumer granting credit, against raw NATS publish/subscribe of
//     the same payload (the stream's first frame, as the consumer received it) from a plain publisher
//     process in the same run, in alternating rounds (--rounds, the ratio their paired median), with the CPU
//     time each process spent per frame on both paths (from /proc, Linux; median over the rounds): on a
//     loaded machine the steadier figure;
//  2. time from CANCEL (NATS control.cancel request, HTTP POST /mig/v0.1/cancel/{id}) and from a WebSocket
//     cancel frame to the provider's AbortSignal, with the provider in the gateway's process, after
//     warm-up rounds whose times are reported apart; with --breakdown, where each cancel's time went.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { monitorEventLoopDelay, PerformanceObserver, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import WebSocket from "ws";
import { startNatsBinding } from "../../bindings/nats/server.ts";
import type { StreamSession } from "../../runtime/flow/stream-session.ts";
import { Authenticator } from "../../runtime/policy/auth.ts";
import { defineStreamingCapability } from "../../runtime/provider/provider.ts";
import { startMig } from "../helpers/process.ts";
import { startTestRuntime } from "../helpers/runtime.ts";
import { cpuMicros, medianPerKey, natsServerPid } from "./cpu.ts";
import { Histogram } from "./histogram.ts";
import { alternate, median, pairedMedianRatio } from "./paired.ts";
import { spawnTs } from "./processes.ts";

// --only stream|cancel measures one of the two; --json prints the report as one line (the bench table reads it).
const { values } = parseArgs({
  options: {
    frames: { type: "string", default: "100000" },
    cancels: { type: "string", default: "1000" },
    // Rounds (one cancel of each way) run before the measured ones, as every loader row warms up: the first few
    // hundred cancels of a fresh process run code V8 has not optimized yet, and their tail was the p99 of a short
    // run (docs/streaming.md, "Where the cancel tail comes from"). Their times are reported apart, as `warmup`.
    "cancel-warmup": { type: "string", default: "300" },
    // The runtime's window (MIG_STREAM_WINDOW in both processes: frames it holds per stream) and the
    // consumer's credit (frames it lets be in flight toward it: its receive buffer) are separate choices. A
    // credit covering a round trip's worth of frames keeps the pipe full (docs/streaming.md, NATS, "Credit and
    // window are two numbers").
    window: { type: "string", default: "64" },
    credit: { type: "string", default: "512" },
    // Rounds of the stream and of raw pub/sub, alternating (MIG, raw, raw, MIG, …); the ratio is the median over
    // pairs of neighbouring rounds (paired.ts), as the loader rows measure theirs.
    rounds: { type: "string", default: "3" },
    only: { type: "string" },
    json: { type: "boolean", default: false },
    // Off by default: its probes (a GC observer, a 1 ms event-loop monitor, a wrapper per session) run in
    // the measured process, so the default figure is measured as before them.
    breakdown: { type: "boolean", default: false },
  },
});
if (values.only !== undefined && values.only !== "stream" && values.only !== "cancel")
  throw new Error("--only: stream or cancel");
const FRAMES = Number(values.frames);
const CANCELS = Number(values.cancels);
const CANCEL_WARMUP = Number(values["cancel-warmup"]);
if (!Number.isInteger(CANCELS) || CANCELS < 1) throw new Error("--cancels: a positive number of rounds");
if (!Number.isInteger(CANCEL_WARMUP) || CANCEL_WARMUP < 0)
  throw new Error("--cancel-warmup: a number of rounds, 0 or more");
const WINDOW = Number(values.window);
const CREDIT = Number(values.credit);
if (!Number.isInteger(WINDOW) || WINDOW < 1) throw new Error("--window: a positive number of frames");
if (!Number.isInteger(CREDIT) || CREDIT < 2 || CREDIT % 2 !== 0)
  throw new Error("--credit: an even number of frames, at least 2 (granted in halves)");
const ROUNDS = Number(values.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error("--rounds: a positive number");
const BREAKDOWN = values.breakdown;
const ROOT = new URL("../..", import.meta.url).pathname;

type CpuPerFrame = Record<"gateway" | "worker" | "nats_server" | "consumer", number>;
type RawCpuPerFrame = Record<"publisher" | "nats_server" | "consumer", number>;
const perFrame = (us: number) => Math.round((us / FRAMES) * 10) / 10;

interface StreamRounds {
  /** Each round's frames per second, in the order run. */
  rates: { mig: number[]; raw: number[] };
  bytes: number;
  /** CPU µs per frame of each process, one record per round. */
  cpu: CpuPerFrame[];
  rawCpu: RawCpuPerFrame[];
}

async function streamThroughGateway(): Promise<StreamRounds> {
  const gateway = startMig(["start"], { MIG_LOG_LEVEL: "info", MIG_STREAM_WINDOW: String(WINDOW) });
  const bus = String((await gateway.waitForLog("embedded nats-server listening")).url);
  await gateway.waitForLog("NATS binding listening");
  const worker = startMig(["worker", "test/fixtures/stream-provider.ts"], {
    MIG_NATS_URL: bus,
    MIG_STREAM_WINDOW: String(WINDOW),
  });
  await worker.waitForLog("worker serving");
  const nc = await connect({ servers: bus, name: "bench-consumer" });
  try {
    // The gateway learns of the worker from the registry: wait until a start succeeds.
    for (;;) {
      const answer = (await nc.request("mig.v0_1.bench.discover", "{}")).json<{ capabilities: { id: string }[] }>();
      if (answer.capabilities.some((c) => c.id === "remote.stream.count")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const { sample } = await runStream(nc, 2_000); // warm-up; its first frame is the raw side's payload
    // CPU per frame of each process, the figure that a loaded machine disturbs least.
    const pids = { gateway: gateway.child.pid, worker: worker.child.pid, nats_server: natsServerPid(gateway.dataDir) };
    const rounds: StreamRounds = { rates: { mig: [], raw: [] }, bytes: Buffer.byteLength(sample), cpu: [], rawCpu: [] };
    const viaMig = async () => {
      const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMicros(pid)]));
      const self0 = process.cpuUsage();
      const { seconds } = await runStream(nc, FRAMES);
      const self = process.cpuUsage(self0);
      const cpu = Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, perFrame(cpuMicros(pid) - before[k]!)]),
      ) as CpuPerFrame;
      cpu.consumer = perFrame(self.user + self.system);
      rounds.rates.mig.push(Math.round(FRAMES / seconds));
      rounds.cpu.push(cpu);
    };
    const raw = async () => {
      const { seconds, cpu } = await rawPubSub(bus, FRAMES, sample, pids.nats_server);
      rounds.rates.raw.push(Math.round(FRAMES / seconds));
      rounds.rawCpu.push(cpu);
    };
    // MIG, raw, raw, MIG, …: a drift in background load falls on both sides alike.
    await alternate(ROUNDS, viaMig, raw);
    return rounds;
  } finally {
    await nc.close();
    await worker.stop();
    await gateway.stop();
  }
}

/** Runs one stream of `frames` frames; `sample` is its first data frame as received, the raw baseline's payload. */
async function runStream(nc: NatsConnection, frames: number): Promise<{ seconds: number; sample: string }> {
  const streamId = `b-${randomUUID()}`;
  const subject = `mig.v0_1.bench.stream.${streamId}`;
  let read = 0;
  let sample = "";
  let started = 0;
  const done = new Promise<number>((resolve) => {
    nc.subscribe(subject, {
      callback: (_e, msg) => {
        const frame = msg.json<{ end_stream?: boolean }>();
        if (frame.end_stream) return resolve(performance.now());
        if (read === 0) sample = msg.string();
        // Grant half the credit each time half of it was read: the pipe never runs dry waiting for credit.
        if (++read % (CREDIT / 2) === 0)
          nc.publish(
            `${subject}.in`,
            JSON.stringify({ kind: "control", payload: { action: "credit", credit: CREDIT / 2 } }),
          );
      },
    });
  });
  await nc.flush();
  started = performance.now();
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
  const ended = await done;
  return { seconds: (ended - started) / 1000, sample };
}

/** Raw NATS publish/subscribe of `frames` copies of `body` (a frame of the MIG stream, so the same payload: same bytes, same JSON to parse). */
async function rawPubSub(
  bus: string,
  frames: number,
  body: string,
  natsPid: number | undefined,
): Promise<{ seconds: number; cpu: RawCpuPerFrame }> {
  const go = `bench.go.${randomUUID()}`;
  const publisher = spawnTs("raw-stream-publisher", ROOT, "test/bench/raw-stream-publisher.ts", [
    "--servers",
    bus,
    "--subject",
    "bench.raw.stream",
    "--count",
    String(frames),
    "--body",
    body,
    "--go",
    go,
  ]);
  await publisher.waitForLine((l) => (l.includes('"ready":true') ? l : undefined), 20_000);
  const nc = await connect({ servers: bus, name: "bench-raw-consumer" });
  let read = 0;
  const done = new Promise<number>((resolve) => {
    // The consumer parses each payload, as the MIG consumer does: the comparison is of transports, not of JSON.
    nc.subscribe("bench.raw.stream", {
      callback: (_e, msg) => {
        msg.json();
        if (++read === frames) resolve(performance.now());
      },
    });
  });
  await nc.flush();
  const before = { publisher: cpuMicros(publisher.pid), nats_server: cpuMicros(natsPid) };
  const self0 = process.cpuUsage();
  const started = performance.now();
  nc.publish(go, "");
  const ended = await done;
  const self = process.cpuUsage(self0);
  const cpu: RawCpuPerFrame = {
    publisher: perFrame(cpuMicros(publisher.pid) - before.publisher),
    nats_server: perFrame(cpuMicros(natsPid) - before.nats_server),
    consumer: perFrame(self.user + self.system),
  };
  await nc.close();
  await publisher.stop();
  return { seconds: (ended - started) / 1000, cpu };
}

/**
 * Where a cancel's time went, beside the figure itself: until the runtime called session.cancel (the
 * message's way through the socket, nats-server and this process's event loop), from there to the
 * signal (the runtime's own path), how many samples overlapped a GC pause, and how late this process's
 * event loop ran its timers meanwhile (a process waiting for the CPU shows as loop delay with no work).
 */
interface CancelBreakdown {
  to_session_cancel: Histogram;
  session_cancel_to_signal: Histogram;
  samples_overlapping_gc: number;
  frames_emitted_per_sample_max: number;
  /** Per sample: its latency, and this process's CPU time and run-queue wait (ready, not running) meanwhile, in ms. */
  samples: { ms: number; cpu_ms: number; runqueue_ms: number }[];
}

/** The main thread's time on the CPU and waiting on the run queue, in ms (Linux /proc/self/schedstat; NaN elsewhere). */
function schedMs(): { running: number; waiting: number } {
  try {
    const [running, waiting] = readFileSync("/proc/self/schedstat", "utf8").split(" ").map(Number);
    return { running: running! / 1e6, waiting: waiting! / 1e6 };
  } catch {
    return { running: Number.NaN, waiting: Number.NaN };
  }
}

/** The slowest 1 % of samples: how much of their time this process ran, and how much it waited for a CPU. */
function slowest(samples: CancelBreakdown["samples"]): {
  samples: number;
  mean_ms: number;
  mean_cpu_ms: number;
  mean_runqueue_ms: number;
} {
  const tail = [...samples].sort((a, b) => b.ms - a.ms).slice(0, Math.max(1, Math.ceil(samples.length / 100)));
  const mean = (f: (x: CancelBreakdown["samples"][number]) => number) =>
    Math.round((tail.reduce((sum, x) => sum + f(x), 0) / tail.length) * 100) / 100;
  return {
    samples: tail.length,
    mean_ms: mean((x) => x.ms),
    mean_cpu_ms: mean((x) => x.cpu_ms),
    mean_runqueue_ms: mean((x) => x.runqueue_ms),
  };
}

type CancelWay = "nats" | "ws" | "http";

async function cancelLatency(): Promise<{
  latency: Record<CancelWay, Histogram>;
  warmup: Record<CancelWay, Histogram>;
  breakdown: Record<CancelWay, CancelBreakdown>;
  natsPlain: Histogram;
  loopDelayP99Ms: number;
  gcPauses: number;
}> {
  const aborted = new Map<string, number>();
  const waiting = new Map<string, () => void>();
  const forever = defineStreamingCapability(
    {
      id: "bench.stream.forever",
      version: "1.0.0",
      modes: ["server_stream"],
      input_schema_uri: "schema://bench/any",
      output_schema_uri: "schema://bench/any",
      auth_scopes: [],
    },
    async (_p, { emit, signal, header }) => {
      signal.addEventListener("abort", () => {
        aborted.set(header.message_id, performance.now());
        waiting.get(header.message_id)?.();
      });
      for (let i = 0; ; i++) await emit({ i });
    },
    { "schema://bench/any": { type: "object" } },
  );
  const t = await startTestRuntime({ capabilities: [forever] });
  const binding = await startNatsBinding(t.runtime, new Authenticator("none"));
  const nc = await connect({ servers: t.runtime.natsUrl });
  const ws = new WebSocket(`${t.http.url.replace(/^http/, "ws")}/mig/v0.1/stream`);
  await new Promise((r) => ws.once("open", r));
  const firstFrame = new Map<string, () => void>();
  ws.on("message", (data) => {
    // Only a new stream's first frame is awaited: the frames of a running stream are read, not decoded.
    if (firstFrame.size === 0) return;
    const f = JSON.parse(data.toString()) as { stream_id: string };
    firstFrame.get(f.stream_id)?.();
    firstFrame.delete(f.stream_id);
  });
  const latency: Record<CancelWay, Histogram> = { nats: new Histogram(), ws: new Histogram(), http: new Histogram() };
  const warmup: Record<CancelWay, Histogram> = { nats: new Histogram(), ws: new Histogram(), http: new Histogram() };
  const newBreakdown = (): CancelBreakdown => ({
    to_session_cancel: new Histogram(),
    session_cancel_to_signal: new Histogram(),
    samples_overlapping_gc: 0,
    frames_emitted_per_sample_max: 0,
    samples: [],
  });
  const breakdown: Record<CancelWay, CancelBreakdown> = {
    nats: newBreakdown(),
    ws: newBreakdown(),
    http: newBreakdown(),
  };
  // CANCEL over HTTP, `POST /mig/v0.1/cancel/{message_id}` on a kept-alive connection. The sample ends at the
  // signal, not at the answer; a CANCEL the runtime did not accept (or no answer) ends the run with its reason.
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  let httpFailure: Error | undefined;
  const httpCancel = (messageId: string) => {
    const fail = (why: string) => {
      httpFailure ??= new Error(`HTTP CANCEL of ${messageId} failed: ${why}`);
      waiting.get(messageId)?.();
    };
    const req = httpRequest(
      `${t.http.url}/mig/v0.1/cancel/${messageId}`,
      { method: "POST", agent, headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          const accepted = res.statusCode === 200 && (JSON.parse(text) as { accepted?: boolean }).accepted === true;
          if (!accepted) fail(`${res.statusCode} ${text.slice(0, 200)}`);
        });
      },
    );
    req.on("error", (err) => fail(err.message));
    req.end('{"header":{"tenant_id":"acme"}}');
  };
  const gcs: { start: number; end: number }[] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ start: e.startTime, end: e.startTime + e.duration });
  });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  // With --breakdown, a plain NATS subscriber on a connection of its own in this process also receives each
  // CANCEL message: how long the bus alone took to deliver it here, the same moment the runtime's binding got it.
  const plainArrival = new Map<string, number>();
  const plainWaiting = new Map<string, () => void>();
  const plain = BREAKDOWN ? await connect({ servers: t.runtime.natsUrl }) : undefined;
  plain?.subscribe("mig.v0_1.acme.control.cancel.*", {
    callback: (_err, msg) => {
      const id = msg.subject.slice("mig.v0_1.acme.control.cancel.".length);
      plainArrival.set(id, performance.now());
      plainWaiting.get(id)?.();
    },
  });
  await plain?.flush();
  const natsPlain = new Histogram();
  try {
    for (let k = -CANCEL_WARMUP; k < CANCELS; k++) {
      if (k === 0 && BREAKDOWN) {
        // The breakdown's process-wide probes watch the measured rounds only.
        gcObserver.observe({ entryTypes: ["gc"] });
        loop.enable();
      }
      for (const via of ["nats", "ws", "http"] as const) {
        const messageId = randomUUID();
        const streamId = `c-${k}-${via}`;
        const running = new Promise<void>((r) => firstFrame.set(streamId, r));
        ws.send(
          JSON.stringify({
            header: { tenant_id: "acme", message_id: messageId },
            stream_id: streamId,
            capability: "bench.stream.forever",
            kind: "request",
            payload: {},
          }),
        );
        await running;
        const gone = new Promise<void>((r) => waiting.set(messageId, r));
        // Timestamps the runtime's call of cancel on this one session (the bench's own probe, not the runtime's).
        const session = t.runtime.work.streams.get(messageId) as StreamSession;
        let cancelledAt = Number.NaN;
        if (BREAKDOWN) {
          const cancel = session.cancel.bind(session);
          session.cancel = (reason) => {
            cancelledAt = performance.now();
            cancel(reason);
          };
        }
        const emitted0 = session.emitted;
        const sched0 = BREAKDOWN ? schedMs() : { running: Number.NaN, waiting: Number.NaN }; // read outside the timed interval
        const t0 = performance.now();
        if (via === "nats")
          nc.publish(`mig.v0_1.acme.control.cancel.${messageId}`, "{}", { reply: "_INBOX.bench.ignore" });
        else if (via === "http") httpCancel(messageId);
        else
          ws.send(
            JSON.stringify({
              header: { tenant_id: "acme" },
              stream_id: streamId,
              kind: "control",
              payload: { action: "cancel" },
            }),
          );
        await gone;
        if (httpFailure) throw httpFailure;
        if (plain && via === "nats" && !plainArrival.has(messageId))
          await new Promise<void>((r) => plainWaiting.set(messageId, r));
        const at = aborted.get(messageId)!;
        const sched1 = BREAKDOWN ? schedMs() : sched0;
        const plainAt = plainArrival.get(messageId);
        waiting.delete(messageId);
        plainWaiting.delete(messageId);
        plainArrival.delete(messageId);
        if (k < 0) {
          warmup[via].recordMs(at - t0);
          continue;
        }
        latency[via].recordMs(at - t0);
        const b = breakdown[via];
        b.samples.push({
          ms: at - t0,
          cpu_ms: sched1.running - sched0.running,
          runqueue_ms: sched1.waiting - sched0.waiting,
        });
        b.to_session_cancel.recordMs(cancelledAt - t0);
        b.session_cancel_to_signal.recordMs(at - cancelledAt);
        if (gcs.some((g) => g.end > t0 && g.start < at)) b.samples_overlapping_gc++;
        b.frames_emitted_per_sample_max = Math.max(b.frames_emitted_per_sample_max, session.emitted - emitted0);
        if (plain && via === "nats") natsPlain.recordMs(plainAt! - t0);
      }
    }
  } finally {
    loop.disable();
    gcObserver.disconnect();
    ws.terminate();
    agent.destroy();
    await nc.close();
    await plain?.close();
    await binding.close();
    await t.stop();
  }
  return {
    latency,
    warmup,
    breakdown,
    natsPlain,
    loopDelayP99Ms: Math.round(loop.percentile(99) / 1e4) / 100,
    gcPauses: gcs.length,
  };
}

const stream = values.only === "cancel" ? undefined : await streamThroughGateway();
const cancels = values.only === "stream" ? undefined : await cancelLatency();
const report = {
  ...(stream
    ? {
        stream: {
          frames: FRAMES,
          frame_bytes: stream.bytes,
          window: WINDOW,
          credit: CREDIT,
          worker_to_nats_consumer_fps: Math.round(median(stream.rates.mig)),
          raw_nats_pubsub_fps: Math.round(median(stream.rates.raw)),
          ratio: pairedMedianRatio(stream.rates.mig, stream.rates.raw) ?? 0,
          rounds: ROUNDS,
          rates: stream.rates,
          cpu_us_per_frame: medianPerKey(stream.cpu).cpu_us_per_call,
          raw_cpu_us_per_frame: medianPerKey(stream.rawCpu).cpu_us_per_call,
        },
      }
    : {}),
  ...(cancels
    ? {
        cancel_to_signal_ms: {
          samples: CANCELS,
          nats_control_cancel: cancels.latency.nats.latencies(),
          websocket_cancel_frame: cancels.latency.ws.latencies(),
          http_cancel: cancels.latency.http.latencies(),
          warmup: {
            samples: CANCEL_WARMUP,
            nats_control_cancel: cancels.warmup.nats.latencies(),
            websocket_cancel_frame: cancels.warmup.ws.latencies(),
            http_cancel: cancels.warmup.http.latencies(),
          },
        },
      }
    : {}),
  ...(cancels && BREAKDOWN
    ? {
        cancel_breakdown: {
          ...Object.fromEntries(
            (["nats", "ws", "http"] as const).map((via) => {
              const b = cancels.breakdown[via];
              return [
                via,
                {
                  to_session_cancel_ms: b.to_session_cancel.latencies(),
                  session_cancel_to_signal_ms: b.session_cancel_to_signal.latencies(),
                  samples_overlapping_gc: b.samples_overlapping_gc,
                  frames_emitted_per_sample_max: b.frames_emitted_per_sample_max,
                  slowest_1_percent: slowest(b.samples),
                },
              ];
            }),
          ),
          nats_plain_subscriber_ms: cancels.natsPlain.latencies(),
          event_loop_delay_p99_ms: cancels.loopDelayP99Ms,
          gc_pauses: cancels.gcPauses,
        },
      }
    : {}),
};
process.stdout.write(`${values.json ? JSON.stringify(report) : JSON.stringify(report, null, 2)}\n`);
process.exit(0);
