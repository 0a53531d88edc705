// What tracing costs (run: node --import tsx test/bench/tracing.ts --before <dir>). The paths of the invoke rows
// (http-invoke, nats-invoke, http-invoke-worker, grpc-invoke; rows.ts) are started three times each: from --before,
// a checkout of the runtime from before tracing existed (with its node_modules), and from this tree with tracing off
// and with tracing on, exporting every span to a local OTLP/HTTP receiver (otlp-sink.ts, a process of its own).
// Two comparisons per row, in alternating rounds (paired-rounds.ts): off against before, whose ratio should be 1
// within the spread (tracing off costs nothing), and on against off (what tracing on costs). Without --before only
// the second runs. --rows picks rows (comma-separated); --json prints the report as one line; --profile <dir> runs
// the runtimes under `node --cpu-prof`.
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { LoaderProcess } from "./measure.ts";
import { compareSides, type RoundSettings, type Side } from "./paired-rounds.ts";
import { spawnTs } from "./processes.ts";
import {
  GRPC_INVOKE_BODY,
  HTTP_INVOKE_BODY,
  INVOKE_PATH,
  WORKER_BODY,
  WORKER_HTTP_PATH,
  WORKER_SUBJECT,
} from "./rows.ts";
import { runBenchScript } from "./script-context.ts";
import {
  type RuntimeOptions,
  readyLine,
  runtimeGrpc,
  runtimeHttp,
  runtimeHttpWorker,
  runtimeNatsWorker,
} from "./servers.ts";
import type { BenchContext, RunningServer, ServerSpec } from "./types.ts";

const { values } = parseArgs({
  options: {
    before: { type: "string" },
    rows: { type: "string", default: "http-invoke,nats-invoke,http-invoke-worker,grpc-invoke" },
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "3" },
    "lead-in": { type: "string", default: "0.5" },
    warmup: { type: "string", default: "3" },
    concurrency: { type: "string", default: "64" },
    json: { type: "boolean", default: false },
    profile: { type: "string" },
  },
});

const ECHO = "test/bench/echo-provider.ts";
const PATHS: Record<string, (options: RuntimeOptions) => ServerSpec> = {
  "http-invoke": (o) => runtimeHttp(INVOKE_PATH, HTTP_INVOKE_BODY, o),
  "nats-invoke": (o) => runtimeNatsWorker(WORKER_SUBJECT, WORKER_BODY, ECHO, "bench.echo", o),
  "http-invoke-worker": (o) => runtimeHttpWorker(WORKER_HTTP_PATH, WORKER_BODY, ECHO, "bench.echo", o),
  "grpc-invoke": (o) => runtimeGrpc(GRPC_INVOKE_BODY, o),
};

function positive(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: a positive number, got ${text}`);
  return n;
}

const ROWS = values.rows!.split(",").map((id) => {
  if (!PATHS[id]) throw new Error(`--rows: ${id} is not one of ${Object.keys(PATHS).join(", ")}`);
  return id;
});
const SETTINGS: RoundSettings = {
  rounds: Math.round(positive("rounds", values.rounds)),
  durationMs: Math.round(positive("seconds", values.seconds) * 1000),
  leadInMs: Math.round(Number(values["lead-in"]) * 1000),
  warmupMs: Math.round(Number(values.warmup) * 1000),
};
const CONCURRENCY = Math.round(positive("concurrency", values.concurrency));
const BEFORE = values.before === undefined ? undefined : resolve(values.before);
const ROOT = resolve(import.meta.dirname, "../..");
const log = (line: string) => process.stderr.write(`${line}\n`);

/** A started side: its server processes and the loader pointed at them. */
interface Started {
  server: RunningServer;
  loader: LoaderProcess;
}

async function startSide(ctx: BenchContext, spec: ServerSpec): Promise<Started> {
  const server = await spec.start(ctx);
  try {
    return { server, loader: await LoaderProcess.start(ctx.root, server.target, CONCURRENCY) };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

const side = (label: string, started: Started): Side => ({
  label,
  loader: started.loader,
  processes: started.server.processes?.() ?? {},
});

async function row(ctx: BenchContext, id: string) {
  log(`${id} at ${CONCURRENCY} callers`);
  const sink = spawnTs("otlp-sink", ctx.root, "test/bench/otlp-sink.ts", []);
  const started: Started[] = [];
  try {
    const url = String((await sink.waitForLine(readyLine, 10_000)).url);
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: url };
    const before = BEFORE ? await startSide({ ...ctx, root: BEFORE }, PATHS[id]!({})) : undefined;
    if (before) started.push(before);
    const off = await startSide(ctx, PATHS[id]!({}));
    started.push(off);
    const on = await startSide(ctx, PATHS[id]!({ env: otel, workerEnv: otel }));
    started.push(on);
    const report: Record<string, unknown> = {};
    if (before) {
      const { path, baseline, ...rest } = await compareSides(
        side("before tracing", before),
        side("tracing off", off),
        SETTINGS,
        log,
      );
      report.off_vs_before = { ...rest, off: path, before: baseline };
    }
    const { path, baseline, ...rest } = await compareSides(
      side("tracing off", off),
      side("tracing on", on),
      SETTINGS,
      log,
    );
    report.on_vs_off = { ...rest, on: path, off: baseline };
    return report;
  } finally {
    await Promise.all(started.map((s) => s.loader.close()));
    await Promise.all(started.map((s) => s.server.stop()));
    await sink.stop();
  }
}

await runBenchScript(
  ROOT,
  values.profile ? ["--cpu-prof", "--cpu-prof-dir", resolve(values.profile)] : [],
  values.json === true,
  async (ctx) => {
    const report: Record<string, unknown> = {
      settings: { ...SETTINGS, concurrency: CONCURRENCY, before: BEFORE ?? null },
    };
    for (const id of ROWS) report[id] = await row(ctx, id);
    return report;
  },
);
