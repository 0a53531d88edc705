// Drives one load generator process against one target: started once per side and
// concurrency, it probes the target, then runs the warm-up and each measured slice on command,
// so the orchestrator can alternate slices between path and baseline.
import { Histogram } from "./histogram.ts";
import { ServeLoader } from "./serve-loader.ts";
import type { LoadResult, LoadTarget, Measurement } from "./types.ts";

/** Which loader file serves which kind of target, and the arguments naming the target. */
const loaders: {
  [K in LoadTarget["kind"]]: { file: string; args: (t: Extract<LoadTarget, { kind: K }>) => string[] };
} = {
  http: { file: "test/bench/load-http.ts", args: (t) => ["--url", t.url] },
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
    return new LoaderProcess(
      await ServeLoader.start(root, `load-${target.kind}`, loader.file, args, concurrency),
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
    latency_ms: histogram.latencies(),
    ...(firstError ? { first_error: firstError } : {}),
    ...(opened !== undefined ? { connections_opened: opened } : {}),
    background_cpu: background,
  };
}
