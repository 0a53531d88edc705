// The closed-loop driver shared by the load generators: N callers, each sending its next
// request as soon as the previous one answers, over a warm-up and then a measured window.
import { parseArgs } from "node:util";
import { Histogram } from "./histogram.ts";
import type { LoadResult } from "./types.ts";

export interface LoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** One request; resolves when the answer is complete, rejects on any failure. */
  call: () => Promise<void>;
}

export interface LoopOutcome {
  requests: number;
  errors: number;
  elapsedMs: number;
  histogram: Histogram;
  firstError?: string;
}

/** Pause after a failed request so a dead server does not turn the loop into a busy spin. */
const ERROR_PAUSE_MS = 10;

export async function runClosedLoop(options: LoopOptions): Promise<LoopOutcome> {
  const histogram = new Histogram();
  let requests = 0;
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const measureUntil = measureFrom + options.durationMs;

  async function caller(): Promise<void> {
    for (;;) {
      const sent = performance.now();
      if (sent >= measureUntil) return;
      try {
        await options.call();
        const done = performance.now();
        if (done >= measureFrom && done < measureUntil) {
          histogram.recordMs(done - sent);
          requests++;
        }
      } catch (err) {
        const done = performance.now();
        if (done >= measureFrom && done < measureUntil) {
          errors++;
          firstError ??= describe(err);
        }
        await new Promise((resolve) => setTimeout(resolve, ERROR_PAUSE_MS));
      }
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, caller));
  return { requests, errors, elapsedMs: options.durationMs, histogram, firstError };
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** The command line every load generator accepts, next to its own target options. */
export interface LoaderArgs {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  body: string;
  values: Record<string, string | undefined>;
}

export function parseLoaderArgs(extra: string[]): LoaderArgs {
  const options: Record<string, { type: "string" }> = {
    concurrency: { type: "string" },
    "warmup-ms": { type: "string" },
    "duration-ms": { type: "string" },
    body: { type: "string" },
  };
  for (const name of extra) options[name] = { type: "string" };
  const { values } = parseArgs({ options, strict: true });
  const concurrency = positiveInt(values.concurrency, "--concurrency");
  const warmupMs = positiveInt(values["warmup-ms"] ?? "0", "--warmup-ms", true);
  const durationMs = positiveInt(values["duration-ms"], "--duration-ms");
  if (values.body === undefined) throw new Error("--body is required: the JSON body to send");
  JSON.parse(values.body); // fail early on a body that is not JSON
  for (const name of extra) {
    if (values[name] === undefined) throw new Error(`--${name} is required`);
  }
  return { concurrency, warmupMs, durationMs, body: values.body, values };
}

function positiveInt(text: string | undefined, flag: string, zeroOk = false): number {
  const n = Number(text);
  if (text === undefined || !Number.isInteger(n) || n < (zeroOk ? 0 : 1)) {
    throw new Error(`${flag} must be a ${zeroOk ? "non-negative" : "positive"} integer, got ${text}`);
  }
  return n;
}

/** Turns a loop outcome into the JSON line the orchestrator reads. */
export function toResult(
  tool: LoadResult["tool"],
  args: LoaderArgs,
  outcome: LoopOutcome,
): LoadResult {
  const h = outcome.histogram;
  return {
    tool,
    concurrency: args.concurrency,
    warmup_s: args.warmupMs / 1000,
    duration_s: args.durationMs / 1000,
    requests: outcome.requests,
    errors: outcome.errors,
    throughput_rps: Math.round((outcome.requests / outcome.elapsedMs) * 1000 * 10) / 10,
    latency_ms: h.latencies(),
    ...(outcome.firstError ? { first_error: outcome.firstError } : {}),
    histogram: h.toJSON(),
  };
}

/** Result line for a loader that could not measure at all. */
export function failedResult(tool: LoadResult["tool"], args: LoaderArgs, error: string): LoadResult {
  return {
    tool,
    concurrency: args.concurrency,
    warmup_s: args.warmupMs / 1000,
    duration_s: args.durationMs / 1000,
    requests: 0,
    errors: 0,
    throughput_rps: 0,
    latency_ms: { p50: 0, p99: 0, p999: 0, mean: 0, max: 0 },
    error,
  };
}

/**
 * Checks one answer body before the run: it must be a JSON object without an `error` field,
 * so a loop of fast 404s or MIG error envelopes is never reported as throughput.
 */
export function checkProbeReply(text: string): string | undefined {
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    return `probe: answer is not JSON: ${text.slice(0, 200)}`;
  }
  if (typeof reply !== "object" || reply === null || Array.isArray(reply)) {
    return `probe: answer is not a JSON object: ${text.slice(0, 200)}`;
  }
  if ("error" in reply) return `probe: answer is an error envelope: ${text.slice(0, 300)}`;
  return undefined;
}

/** Prints the result line, then exits whatever handles (sockets, timers) are still open. */
export function finish(result: LoadResult): void {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(result.error ? 2 : 0));
}
