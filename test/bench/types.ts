// The contract shared by the benchmark orchestrator, its row table and its load generators.
import type { SerializedHistogram } from "./histogram.ts";

/** What a load generator is pointed at: one request it repeats in a closed loop. */
export type LoadTarget =
  | { kind: "http"; url: string; body: string }
  | { kind: "nats"; servers: string; subject: string; body: string }
  | { kind: "grpc"; address: string; body: string };

/** Latency percentiles in milliseconds. */
export interface Latencies {
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  max: number;
}

/** The one JSON line a load generator prints on stdout. */
export interface LoadResult {
  tool: "http" | "nats" | "grpc";
  concurrency: number;
  warmup_s: number;
  duration_s: number;
  /** Requests completed successfully inside the measured window. */
  requests: number;
  /**
   * Requests answered during the run's unmeasured lead-in, when the loader counts them: wrk runs the lead-in as a
   * run of its own, of at least a second, so it cannot be taken to last as long as asked.
   */
  lead_in_requests?: number;
  /** Failed requests inside the measured window (non-200 answer, timeout, socket error). */
  errors: number;
  throughput_rps: number;
  latency_ms: Latencies;
  first_error?: string;
  /** HTTP only: connections the loader had to open; far above the concurrency means the
   * server is not keeping connections alive. */
  connections_opened?: number;
  /** Set when the loader could not measure at all (the probe request failed). */
  error?: string;
  /** The latency samples, so that slices can be merged; not written to the JSON report. */
  histogram?: SerializedHistogram;
}

/** One side at one concurrency: its measured slices merged. */
export interface Measurement {
  concurrency: number;
  slices: number;
  /** Measured seconds over all slices. */
  duration_s: number;
  requests: number;
  errors: number;
  /** All requests over all measured seconds. */
  throughput_rps: number;
  /** Throughput of each slice, to show how steady the machine was. */
  throughput_rps_slices: number[];
  /** p50 latency of each slice, in milliseconds. */
  p50_ms_slices: number[];
  /** Percentiles of all slices' samples together. */
  latency_ms: Latencies;
  first_error?: string;
  connections_opened?: number;
  /** Share of all cores used by other work on the machine during each slice (0 … 1). */
  background_cpu: number[];
  /**
   * CPU µs per call of each of the side's processes and of the loader (`client`), median over the slices
   * (Linux /proc): on a shared machine the steadier figure. The settle time's calls are counted at the
   * measured window's rate.
   */
  cpu_us_per_call?: Record<string, number>;
}

/** Everything a server definition may need to start, shared across one run. */
export interface BenchContext {
  /** A fresh directory under the run's temp directory, removed at the end of the run. */
  tempDir(prefix: string): Promise<string>;
  /** A TCP port on 127.0.0.1 that was free a moment ago. */
  freePort(): Promise<number>;
  /** Absolute path of the project root. */
  root: string;
  /** Longest time a server may take to become ready. */
  startTimeoutMs: number;
  /** Extra node flags for the runtime under test (`--profile` puts `--cpu-prof` here). */
  runtimeNodeArgs: string[];
}

/** A server process (or group of processes) started for one row. */
export interface RunningServer {
  target: LoadTarget;
  /** Why the server is gone, when one of its processes has exited; undefined while it serves. */
  failure?(): string | undefined;
  /** The side's processes by role (e.g. runtime, worker, nats_server), for CPU per call. */
  processes?(): Record<string, number | undefined>;
  stop(): Promise<void>;
}

/** How to start one side of a row: the path under test or its raw baseline. */
export interface ServerSpec {
  /** Short description shown in the table and JSON, e.g. "bare node:http". */
  label: string;
  start(ctx: BenchContext): Promise<RunningServer>;
}

/** Targets from the issue, checked and printed next to the ratios. */
export interface RowTargets {
  /** Minimum path/baseline throughput ratio at 64 callers. */
  throughput_at_64?: number;
  /** Maximum path/baseline p50 ratio at 1 caller. */
  p50_at_1?: number;
}

/** One row of the benchmark table. */
export interface RowDefinition {
  /** Short name for `--only`, kebab-case. */
  id: string;
  /** Name printed in the table and written to JSON. */
  name: string;
  /** One sentence on what the row measures, used by the docs and `--list`. */
  measures: string;
  /** The path under test; absent for a row that measures a raw tool alone. */
  path?: ServerSpec;
  /** The raw tool the path is compared with. */
  baseline?: ServerSpec;
  /** Concurrent callers to measure at; defaults to [1, 64]. */
  concurrency?: number[];
  targets?: RowTargets;
  /**
   * For rows that are not a throughput pair (CANCEL latency, scale): measures the row itself and
   * returns named figures, printed and written as they are. Used instead of path/baseline.
   */
  custom?(ctx: BenchContext, settings: RunSettings): Promise<Record<string, number | string>>;
  /** Left out of --quick runs unless --only names it (rows that matter only over full runs). */
  fullRunsOnly?: boolean;
  /** Set for rows not written yet: they appear in the table as pending and cost no time. */
  pending?: string;
}

/** Figures for one side of a row. */
export interface SideResult {
  label: string;
  /** Why this side could not be measured (failed start, failed probe, loader crash). */
  error?: string;
  results: Measurement[];
}

/** The JSON object written for one row. */
export interface RowResult {
  id: string;
  name: string;
  status: "ok" | "error" | "pending" | "baseline-only" | "custom";
  error?: string;
  settings: {
    warmup_s: number;
    duration_s: number;
    settle_s: number;
    slices: number;
    concurrency: number[];
  };
  path?: SideResult;
  baseline?: SideResult;
  /**
   * Each ratio is the median, over the pairs of slices measured next to each other in time
   * (baseline slice i, path slice i), of path / baseline: background load that changes from
   * one second to the next cancels within a pair, and a burst spoils only the pairs it hits.
   */
  ratio?: {
    /** path / baseline throughput, keyed by concurrency. */
    throughput: Record<string, number | null>;
    /** path / baseline p50 latency at 1 caller (lower is better; 1.0 means equal). */
    p50_at_1: number | null;
  };
  targets?: RowTargets;
  /** Figures of a custom row. */
  figures?: Record<string, number | string>;
}

/** Timing of one run, from `--quick` or the defaults. */
export interface RunSettings {
  /** Warm-up of each side's loader at each concurrency, before its first slice; not measured. */
  warmupMs: number;
  /** Measured window of each slice. */
  durationMs: number;
  /** Unmeasured lead-in of each slice, while the callers get going again after a pause. */
  settleMs: number;
  /** Slices per side and concurrency, alternating baseline and path (ABBA…). */
  slices: number;
  /** Set by --quick: custom rows that run a standalone script ask it for a short run. */
  quick?: boolean;
}
