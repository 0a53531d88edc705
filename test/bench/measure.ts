// Drives one load generator process against one target: started once per side and
// concurrency, it probes the target, then runs the warm-up and each measured slice on command,
// so the orchestrator can alternate slices between path and baseline.
import { spawnSync } from "node:child_process";
import { Histogram } from "./histogram.ts";
import { ServeLoader } from "./serve-loader.ts";
import type { LoadResult, LoadTarget, Measurement } from "./types.ts";

/**
 * The HTTP loader: wrk when it is installed (its ceiling is far above any Node server's rate here, so the rows
 * measure the server), else the Node closed loop (load-http.ts), whose own ceiling is near the bare server's rate;
 * MIG_BENCH_HTTP_LOADER=node picks the latter.
 */
export function httpLoader(): string {
  const wrk = process.env.WRK_BIN ?? "wrk";
  return process.env.MIG_BENCH_HTTP_LOADER !== "node" && spawnSync("sh", ["-c", `command -v ${wrk}`]).status === 0
    ? "test/bench/load-wrk.ts"
    : "test/bench/load-http.ts";
}

/** Which loader file serves which kind of target, and the arguments naming the target. */
const loaders: {
  [K in LoadTarget["kind"]]: { file: string; args: (t: Extract<LoadTarget, { kind: K }>) => string[] };
} = {
  http: { file: "", args: (t) => ["--url", t.url] },
  nats: { file: "test/bench/load-nats.ts", args: (t) => ["--servers", t.servers, "--subject", t.subject] },
  grpc: { file: "test/bench/load-grpc.ts", args: (t) => ["--address", t.address] },
};

/** One loader process of a target's kind, as the rows drive it (test/bench/serve-loader.ts does the driving). */
export class LoaderProcess {
  private constructor(
    private readonly loader: ServeLoader,
    readonly concurrency: number,
  ) {}

  /** Starts a loader in serve mode; resolves once its probe request has succeeded. */
  static async start(root: string, target: LoadTarget, concurrency: number): Promise<LoaderProcess> {
    const loader = loaders[target.kind] as { file: string; args: (t: LoadTarget) => string[] };
    const args = [...loader.args(target), "--body", target.body];
    const file = target.kind === "http" ? httpLoader() : loader.file;
    return new LoaderProcess(
      await ServeLoader.start(root, `load-${target.kind}`, file, args, concurrency),
      concurrency,
    );
  }

  get pid(): number {
    return this.loader.pid;
  }

  /** Runs one warm-up plus measured window and returns the loader's figures. */
  run(warmupMs: number, durationMs: number): Promise<LoadResult> {
    return this.loader.run(warmupMs, durationMs);
  }

  close(): Promise<void> {
    return this.loader.close();
  }
}

function medianLatencies(runs: LoadResult[]): LoadResult["latency_ms"] {
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  const of = (key: keyof LoadResult["latency_ms"]) => median(runs.map((run) => run.latency_ms[key]));
  return { p50: of("p50"), p99: of("p99"), p999: of("p999"), mean: of("mean"), max: of("max") };
}

/** Merges the measured slices of one side at one concurrency into one measurement. */
export function aggregate(concurrency: number, runs: LoadResult[], background: number[] = []): Measurement {
  const histogram = new Histogram();
  for (const run of runs) if (run.histogram) histogram.add(run.histogram);
  const seconds = runs.reduce((sum, run) => sum + run.duration_s, 0);
  const requests = runs.reduce((sum, run) => sum + run.requests, 0);
  const firstError = runs.find((run) => run.first_error)?.first_error;
  const opened = runs.some((run) => run.connections_opened !== undefined)
    ? runs.reduce((sum, run) => sum + (run.connections_opened ?? 0), 0)
    : undefined;
  return {
    concurrency,
    slices: runs.length,
    duration_s: seconds,
    requests,
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    throughput_rps: seconds > 0 ? Math.round((requests / seconds) * 10) / 10 : 0,
    throughput_rps_slices: runs.map((run) => run.throughput_rps),
    p50_ms_slices: runs.map((run) => run.latency_ms.p50),
    // wrk reports percentiles, not samples: its slices' median percentiles stand for the merged ones.
    latency_ms: runs.every((run) => run.histogram) ? histogram.latencies() : medianLatencies(runs),
    ...(firstError ? { first_error: firstError } : {}),
    ...(opened !== undefined ? { connections_opened: opened } : {}),
    background_cpu: background,
  };
}
