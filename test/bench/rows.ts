// The benchmark table: one entry per row, each a path under test and the raw tool
// it is judged against. Adding a row is adding an entry here (and, for a new wire, a server
// factory in servers.ts and a loader in measure.ts).

import { cpuLine } from "./cpu.ts";
import { mcpRows } from "./mcp-rows.ts";
import { measureScale } from "./scale.ts";
import { runScript, verdict } from "./script-rows.ts";
import {
  bareGrpc,
  bareHttp,
  goGateway,
  httpNatsComposite,
  natsEcho,
  runtimeGrpc,
  runtimeHttp,
  runtimeHttpWorker,
  runtimeNatsWorker,
} from "./servers.ts";
import type { BenchContext, RowDefinition, RunSettings } from "./types.ts";

/** The targets for streaming: frames at least this share of raw pub/sub; CANCEL → signal p99 below this. */
const STREAM_TARGET = 0.5;
const CANCEL_P99_TARGET_MS = 5;

interface StreamFigures {
  stream?: {
    frames: number;
    frame_bytes: number;
    window: number;
    credit: number;
    worker_to_nats_consumer_fps: number;
    raw_nats_pubsub_fps: number;
    ratio: number;
    rounds: number;
    cpu_us_per_frame?: Record<string, number>;
    raw_cpu_us_per_frame?: Record<string, number>;
  };
  cancel_to_signal_ms?: {
    samples: number;
    nats_control_cancel: { p50: number; p99: number; p999: number; max: number };
    websocket_cancel_frame: { p50: number; p99: number; p999: number; max: number };
    http_cancel?: { p50: number; p99: number; p999: number; max: number };
    /** The warm-up rounds' times, kept apart from the measured ones. */
    warmup?: {
      samples: number;
      nats_control_cancel: { p99: number };
      websocket_cancel_frame: { p99: number };
      http_cancel: { p99: number };
    };
  };
}

/** Runs test/bench/stream.ts for one of its two measurements, short under --quick. */
function streamScript(ctx: BenchContext, settings: RunSettings, only: "stream" | "cancel"): Promise<StreamFigures> {
  const size = settings.quick
    ? ["--frames", "20000", "--rounds", "1", "--cancels", "300", "--cancel-warmup", "300"]
    : ["--frames", "100000", "--rounds", "3", "--cancels", "1000", "--cancel-warmup", "300"];
  return runScript(
    ctx,
    `stream-${only}`,
    "test/bench/stream.ts",
    [...size, "--only", only, "--json"],
    settings.quick ? 120_000 : 600_000,
  ) as unknown as Promise<StreamFigures>;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** The target for PUBLISH and replay: at least this share of raw JetStream. */
const EVENTS_TARGET = 0.6;

/** CPU µs per event of each process (runtime, nats_server, client), from events.ts. */
type EventsCpu = Record<string, number>;

interface EventsFigures {
  publish: {
    window: number;
    mig_rps: number;
    raw_jetstream_rps: number;
    ratio: number;
    best_round_ratio: number;
    rounds: number;
    cpu_us: EventsCpu;
    raw_cpu_us: EventsCpu;
  }[];
  replay?: {
    events: number;
    mig_eps: number;
    raw_consumer_eps: number;
    ratio: number;
    best_round_ratio: number;
    rounds: number;
    cpu_us: EventsCpu;
    raw_cpu_us: EventsCpu;
  };
}

/**
 * Runs test/bench/events.ts for one of its two measurements, short under --quick. PUBLISH rounds are short (a
 * fraction of a second at 64 in flight), so it runs ten of each side; a replay round reads 100,000 events.
 */
function events(ctx: BenchContext, settings: RunSettings, only: "publish" | "replay"): Promise<EventsFigures> {
  const size = settings.quick
    ? ["--publishes", "1000", "--events", "10000", "--rounds", "1"]
    : ["--publishes", "5000", "--events", "100000", "--rounds", only === "publish" ? "10" : "3"];
  return runScript(
    ctx,
    `events-${only}`,
    "test/bench/events.ts",
    [...size, "--windows", "1,64", "--only", only, "--json"],
    settings.quick ? 120_000 : 600_000,
  ) as unknown as Promise<EventsFigures>;
}

const CAPABILITY = "observatory.models.infer";
export const INVOKE_PATH = `/mig/v0.1/invoke/${CAPABILITY}`;
export const HTTP_INVOKE_BODY = JSON.stringify({ header: { tenant_id: "bench" }, payload: { input: "hello" } });
export const NATS_INVOKE_BODY = JSON.stringify({
  header: { tenant_id: "bench" },
  capability: CAPABILITY,
  payload: { input: "hello" },
});

/** gRPC InvokeRequest as MIG wire JSON; the loader turns it into the proto message once. */
export const GRPC_INVOKE_BODY = NATS_INVOKE_BODY;

/** The standard's Go gateway for http-invoke-vs-go, when given. */
const MIGD = process.env.MIG_BENCH_MIGD;

export const WORKER_SUBJECT = "mig.v0_1.bench.invoke.bench.echo";
export const WORKER_HTTP_PATH = "/mig/v0.1/invoke/bench.echo";
export const WORKER_BODY = JSON.stringify({ header: { tenant_id: "bench" }, payload: { input: "hello" } });

export const rows: RowDefinition[] = [
  {
    id: "http-invoke",
    name: "unary INVOKE over HTTP, provider in-process",
    measures:
      "POST /mig/v0.1/invoke/observatory.models.infer on `cli/main.ts start` against a bare node:http server answering the same InvokeResponse JSON.",
    path: runtimeHttp(INVOKE_PATH, HTTP_INVOKE_BODY),
    baseline: bareHttp(INVOKE_PATH, HTTP_INVOKE_BODY),
    targets: { throughput_at_64: 0.6, p50_at_1: 1.3 },
  },
  {
    id: "nats-invoke",
    name: "unary INVOKE over NATS binding to a worker process",
    measures:
      "INVOKE of bench.echo (best_effort) on mig.v0_1.bench.invoke.bench.echo, served by a `mig worker test/bench/echo-provider.ts` process behind `cli/main.ts start`, against raw request/reply to an echo responder with the same client.",
    path: runtimeNatsWorker(WORKER_SUBJECT, WORKER_BODY, "test/bench/echo-provider.ts", "bench.echo"),
    baseline: natsEcho("bench.echo", WORKER_BODY),
    targets: { throughput_at_64: 0.7, p50_at_1: 1.6 },
  },
  {
    id: "http-invoke-worker",
    name: "unary INVOKE over HTTP, provider in a worker process",
    measures:
      "POST /mig/v0.1/invoke/bench.echo on `cli/main.ts start`, bench.echo served by a `mig worker test/bench/echo-provider.ts` process over the bus (nats-invoke's set-up, loaded over HTTP), against the same shape built from raw parts: a bare node:http server forwarding each body by raw NATS request/reply (the same client library) to the echo responder process.",
    path: runtimeHttpWorker(WORKER_HTTP_PATH, WORKER_BODY, "test/bench/echo-provider.ts", "bench.echo"),
    baseline: httpNatsComposite(WORKER_HTTP_PATH, WORKER_BODY, "bench.echo"),
    targets: { throughput_at_64: 0.8, p50_at_1: 1.2 },
  },
  {
    id: "http-invoke-vs-go",
    name: "unary INVOKE over HTTP against the standard's Go gateway",
    measures:
      "http-invoke's path (`cli/main.ts start`, provider in-process) against the standard's own gateway, `migd`, answering the same POST (it echoes the payload and validates nothing). Runs when MIG_BENCH_MIGD names a migd binary (built by ../shared/tools/standard-go/build.sh).",
    ...(MIGD
      ? { path: runtimeHttp(INVOKE_PATH, HTTP_INVOKE_BODY), baseline: goGateway(MIGD, INVOKE_PATH, HTTP_INVOKE_BODY) }
      : { pending: "set MIG_BENCH_MIGD to a migd binary (../shared/tools/standard-go/build.sh builds one)" }),
    fullRunsOnly: true,
  },
  {
    id: "grpc-invoke",
    name: "unary Invoke over gRPC",
    measures:
      "mig.v0_1.Invocation/Invoke of observatory.models.infer on the runtime's gRPC listener (@grpc/grpc-js client, schemas/mig.proto via proto-loader keepCase) against a bare @grpc/grpc-js service answering the same InvokeResponse message.",
    path: runtimeGrpc(GRPC_INVOKE_BODY),
    baseline: bareGrpc(GRPC_INVOKE_BODY),
  },
  {
    id: "nats-publish",
    name: "PUBLISH over NATS binding (acked)",
    measures:
      "Acked PUBLISH by request on mig.v0_1.bench.events.bench.publish against raw jetstream.publish (same client, same runtime's nats-server) with 1 and 64 publishes in flight; test/bench/events.ts --only publish, 10 rounds of 5,000 publishes per side alternating raw, MIG, MIG, raw, …; rates are each side's median round, the ratio the median over pairs of neighbouring rounds, as for the loader rows, with best round against best round beside it (--quick: 1,000 publishes, one round).",
    async custom(ctx, settings) {
      const { publish } = await events(ctx, settings, "publish");
      const figures: Record<string, number | string> = {};
      for (const p of publish) {
        figures[`in flight ${p.window}`] =
          `MIG ${p.mig_rps}/s · raw jetstream.publish ${p.raw_jetstream_rps}/s · ratio ${p.ratio.toFixed(2)}` +
          (p.window === 64 ? ` (target ${verdict(p.ratio, EVENTS_TARGET, true)})` : "") +
          ` · best round against best round ${p.best_round_ratio.toFixed(2)}`;
        figures[`mig_rps_${p.window}`] = p.mig_rps;
        figures[`raw_rps_${p.window}`] = p.raw_jetstream_rps;
        figures[`ratio_${p.window}`] = p.ratio;
        figures[`best_round_ratio_${p.window}`] = p.best_round_ratio;
        figures[`cpu µs per publish ${p.window}`] = `MIG ${cpuLine(p.cpu_us)} · raw ${cpuLine(p.raw_cpu_us)}`;
      }
      return figures;
    },
  },
  {
    id: "replay",
    name: "SUBSCRIBE replay of 100,000 events",
    measures:
      "Events per second of a SUBSCRIBE over SSE from cursor 0 of a topic holding 100,000 events (MIG_REPLAY_RATE_PER_SEC=0) against a raw JetStream consumer (explicit ack) reading the same stream, both readers decoding every event's JSON; test/bench/events.ts --only replay, 3 rounds per side alternating raw, MIG, MIG, raw, …; rates are each side's median round, the ratio the median over pairs of neighbouring rounds, with best round against best round beside it (--quick: 10,000 events, one round).",
    async custom(ctx, settings) {
      const { replay } = await events(ctx, settings, "replay");
      if (!replay) throw new Error("events.ts gave no replay figures");
      return {
        events: replay.events,
        replay:
          `MIG ${replay.mig_eps}/s · raw consumer ${replay.raw_consumer_eps}/s · ratio ${replay.ratio.toFixed(2)} (target ${verdict(replay.ratio, EVENTS_TARGET, true)})` +
          ` · best round against best round ${replay.best_round_ratio.toFixed(2)}`,
        mig_eps: replay.mig_eps,
        raw_eps: replay.raw_consumer_eps,
        ratio: replay.ratio,
        best_round_ratio: replay.best_round_ratio,
        "cpu µs per event": `MIG ${cpuLine(replay.cpu_us)} · raw ${cpuLine(replay.raw_cpu_us)}`,
      };
    },
  },
  {
    id: "stream",
    name: "one server_stream of small frames, worker → caller",
    measures:
      "Frames per second of one server_stream of remote.stream.count from a `mig worker test/fixtures/stream-provider.ts` process, through the gateway's NATS stream subjects, to a NATS consumer granting credit of 512 frames in halves (the runtime's window, MIG_STREAM_WINDOW, is 64 frames in both processes), against raw NATS publish/subscribe of the same payload (the stream's first frame) from a publisher process; test/bench/stream.ts --only stream, 3 rounds of 100,000 frames per side alternating MIG, raw, raw, MIG, …; rates are each side's median round, the ratio the median over pairs of neighbouring rounds (--quick: one round of 20,000).",
    async custom(ctx, settings) {
      const { stream } = await streamScript(ctx, settings, "stream");
      if (!stream) throw new Error("stream.ts gave no stream figures");
      return {
        frames: stream.frames,
        frame_bytes: stream.frame_bytes,
        runtime_window: stream.window,
        consumer_credit: stream.credit,
        "frames/s": `MIG ${stream.worker_to_nats_consumer_fps}/s · raw NATS pub/sub ${stream.raw_nats_pubsub_fps}/s · ratio ${stream.ratio.toFixed(2)} (target ${verdict(stream.ratio, STREAM_TARGET, true)})`,
        mig_fps: stream.worker_to_nats_consumer_fps,
        raw_fps: stream.raw_nats_pubsub_fps,
        ratio: stream.ratio,
        ...(stream.cpu_us_per_frame && stream.raw_cpu_us_per_frame
          ? { "CPU µs/frame": `MIG ${cpuLine(stream.cpu_us_per_frame)} · raw ${cpuLine(stream.raw_cpu_us_per_frame)}` }
          : {}),
      };
    },
  },
  {
    id: "cancel",
    name: "CANCEL → provider's AbortSignal",
    measures:
      "Time from a CANCEL (NATS control.cancel publish, HTTP POST /mig/v0.1/cancel/{id} on a kept-alive connection, and a WebSocket cancel frame) to the AbortSignal of a running server_stream provider in the gateway's process, absolute; test/bench/stream.ts --only cancel, 1,000 cancels per way after 300 warm-up rounds whose p99 is printed apart (--quick: 300 after 300).",
    async custom(ctx, settings) {
      const { cancel_to_signal_ms: c } = await streamScript(ctx, settings, "cancel");
      if (!c) throw new Error("stream.ts gave no cancel figures");
      const line = (l: { p50: number; p99: number; p999: number; max: number }) =>
        `p50 ${round3(l.p50)} ms · p99 ${round3(l.p99)} ms · p99.9 ${round3(l.p999)} ms · max ${round3(l.max)} ms (target p99 ${verdict(l.p99, CANCEL_P99_TARGET_MS, false, " ms")})`;
      return {
        samples: c.samples,
        "NATS control.cancel": line(c.nats_control_cancel),
        "WebSocket cancel frame": line(c.websocket_cancel_frame),
        ...(c.http_cancel ? { "HTTP POST /cancel": line(c.http_cancel) } : {}),
        ...(c.warmup
          ? {
              [`warm-up (${c.warmup.samples} rounds, not measured)`]: `p99 NATS ${round3(c.warmup.nats_control_cancel.p99)} ms · WebSocket ${round3(c.warmup.websocket_cancel_frame.p99)} ms · HTTP ${round3(c.warmup.http_cancel.p99)} ms`,
            }
          : {}),
        nats_p50_ms: round3(c.nats_control_cancel.p50),
        nats_p99_ms: round3(c.nats_control_cancel.p99),
        ws_p50_ms: round3(c.websocket_cancel_frame.p50),
        ws_p99_ms: round3(c.websocket_cancel_frame.p99),
        ...(c.http_cancel ? { http_p50_ms: round3(c.http_cancel.p50), http_p99_ms: round3(c.http_cancel.p99) } : {}),
      };
    },
  },
  ...mcpRows,
  {
    id: "scale",
    name: "scale: 10,000 live subscriptions / open streams",
    measures:
      "RSS and heap of `mig start` (and its nats-server and `mig worker`) without a population, with 10,000 idle SSE subscriptions over 100 topics, with 10,000 idle bidi WebSocket streams of remote.stream.echo (100 per socket, served by a `mig worker test/fixtures/stream-provider.ts`), and again without; unary INVOKE p50/p99 over HTTP from one caller in each phase, against the two phases without (test/bench/scale.ts; --quick: 2,000 each, RSS target judged on the projection to 10,000).",
    // Even with 2,000 of each it takes 50-100 s (opening them, four measured phases), more than a quick
    // run has left of its 2 minutes: `--quick --only scale` runs it with 2,000 each.
    fullRunsOnly: true,
    custom: (ctx, settings) => measureScale(ctx, settings, (line) => process.stderr.write(`${line}\n`)),
  },
  {
    id: "nats-raw",
    name: "raw NATS request/reply",
    measures: "The raw NATS baseline alone: one client connection, request/reply to an echo responder process.",
    baseline: natsEcho("bench.echo", NATS_INVOKE_BODY),
  },
  {
    id: "http-calibration",
    name: "calibration: bare node:http vs itself",
    measures:
      "Two instances of the bare server measured as path and baseline; the ratio shows the run's noise (ideal 1.0).",
    // Quick runs' short slices make its ratio swing too widely to calibrate anything, and it keeps
    // --quick under 2 minutes; `--quick --only http-calibration` still runs it.
    fullRunsOnly: true,
    path: bareHttp(INVOKE_PATH, HTTP_INVOKE_BODY),
    baseline: bareHttp(INVOKE_PATH, HTTP_INVOKE_BODY),
  },
];
