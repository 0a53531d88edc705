// Runs one load generator process against one target and reads back its JSON result line.
import { spawnTs } from "./processes.ts";
import { Histogram } from "./histogram.ts";
import type { LoadResult, LoadTarget, Measurement, RunSettings } from "./types.ts";

/** Which loader file serves which kind of target, and the arguments naming the target. */
const loaders: {
  [K in LoadTarget["kind"]]: { file: string; args: (t: Extract<LoadTarget, { kind: K }>) => string[] };
} = {
  http: { file: "test/bench/load-http.ts", args: (t) => ["--url", t.url] },
  nats: { file: "test/bench/load-nats.ts", args: (t) => ["--servers", t.servers, "--subject", t.subject] },
};

/** Time a loader may take beyond warm-up and duration (start-up, probe, draining). */
const LOADER_SLACK_MS = 30_000;

export async function runLoad(
  root: string,
  target: LoadTarget,
  concurrency: number,
  settings: RunSettings,
): Promise<LoadResult> {
  const loader = loaders[target.kind] as {
    file: string;
    args: (t: LoadTarget) => string[];
  };
  const args = [
    ...loader.args(target),
    "--body",
    target.body,
    "--concurrency",
    String(concurrency),
    "--warmup-ms",
    String(settings.warmupMs),
    "--duration-ms",
    String(settings.durationMs),
  ];
  const child = spawnTs(`load-${target.kind}`, root, loader.file, args);
  let last: LoadResult | undefined;
  child.onLine((line) => {
    if (!line.startsWith("{")) return;
    try {
      last = JSON.parse(line) as LoadResult;
    } catch {
      // not our line
    }
  });
  const limit = settings.warmupMs + settings.durationMs + LOADER_SLACK_MS;
  const timer = setTimeout(() => void child.stop(1_000), limit);
  await child.exited;
  clearTimeout(timer);
  if (last) return last;
  return {
    tool: target.kind,
    concurrency,
    warmup_s: settings.warmupMs / 1000,
    duration_s: settings.durationMs / 1000,
    requests: 0,
    errors: 0,
    throughput_rps: 0,
    latency_ms: { p50: 0, p99: 0, p999: 0, mean: 0, max: 0 },
    error: `loader printed no result (${child.failure()})`,
  };
}

/** Merges the loader runs of one side at one concurrency into one measurement. */
export function aggregate(
  concurrency: number,
  runs: LoadResult[],
  background: number[] = [],
): Measurement {
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
    rounds: runs.length,
    duration_s: seconds,
    requests,
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    throughput_rps: seconds > 0 ? Math.round((requests / seconds) * 10) / 10 : 0,
    throughput_rps_rounds: runs.map((run) => run.throughput_rps),
    latency_ms: histogram.latencies(),
    ...(firstError ? { first_error: firstError } : {}),
    ...(opened !== undefined ? { connections_opened: opened } : {}),
    background_cpu: background,
  };
}
