// Drives one load generator process against one target: started once per side and
// concurrency, it probes the target, then runs the warm-up and each measured slice on command,
// so the orchestrator can alternate slices between path and baseline.
import { Histogram } from "./histogram.ts";
import { type Child, spawnTs, within } from "./processes.ts";
import type { LoadResult, LoadTarget, Measurement } from "./types.ts";

/** Which loader file serves which kind of target, and the arguments naming the target. */
const loaders: {
  [K in LoadTarget["kind"]]: { file: string; args: (t: Extract<LoadTarget, { kind: K }>) => string[] };
} = {
  http: { file: "test/bench/load-http.ts", args: (t) => ["--url", t.url] },
  nats: { file: "test/bench/load-nats.ts", args: (t) => ["--servers", t.servers, "--subject", t.subject] },
  grpc: { file: "test/bench/load-grpc.ts", args: (t) => ["--address", t.address] },
};

/** Time a loader may take beyond what it was asked to run (start-up, probe, draining). */
const LOADER_SLACK_MS = 30_000;

export class LoaderProcess {
  private readonly results: Record<string, unknown>[] = [];
  private wake: (() => void) | undefined;

  private constructor(
    private readonly child: Child,
    readonly concurrency: number,
  ) {
    child.onLine((line) => {
      if (!line.startsWith("{")) return;
      try {
        this.results.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        return; // not our line
      }
      this.wake?.();
    });
    void child.exited.then(() => this.wake?.());
  }

  /** Starts a loader in serve mode; resolves once its probe request has succeeded. */
  static async start(root: string, target: LoadTarget, concurrency: number): Promise<LoaderProcess> {
    const loader = loaders[target.kind] as { file: string; args: (t: LoadTarget) => string[] };
    const args = [...loader.args(target), "--body", target.body, "--concurrency", String(concurrency), "--serve"];
    const loaderProcess = new LoaderProcess(spawnTs(`load-${target.kind}`, root, loader.file, args), concurrency);
    const first = await loaderProcess.next(LOADER_SLACK_MS);
    if (first.ready !== true) {
      await loaderProcess.close();
      throw new Error(String(first.error ?? "loader did not start"));
    }
    return loaderProcess;
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Runs one warm-up plus measured window and returns the loader's figures. */
  async run(warmupMs: number, durationMs: number): Promise<LoadResult> {
    this.child.proc.stdin?.write(`${JSON.stringify({ warmup_ms: warmupMs, duration_ms: durationMs })}\n`);
    const result = (await this.next(warmupMs + durationMs + LOADER_SLACK_MS)) as unknown as LoadResult;
    if (result.error) throw new Error(result.error);
    return result;
  }

  /** Ends the loader: closing stdin lets it close its connections and exit. */
  async close(): Promise<void> {
    this.child.proc.stdin?.end();
    await within(this.child.exited, 5_000);
    await this.child.stop(1_000);
  }

  private async next(timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (this.results.length === 0) {
      if (!this.child.running) throw new Error(`loader gave no result: ${this.child.failure()}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        await this.child.stop(1_000);
        throw new Error(`loader gave no result within ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.results.shift()!;
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
