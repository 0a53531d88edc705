// The runtime's conformance check of itself: one run at a time of a runner the composition root provides, and the
// last result, for GET /admin/v0.1/health/conformance.

/** One check of a run, as the conformance harness reports it. */
export interface SelfCheckResult {
  id: string;
  status: "pass" | "fail" | "skip";
  reason?: string;
  convention: boolean;
}

/** The parts of the conformance harness's report that the route shows (conformance/types.ts, ConformanceReport). */
export interface SelfCheckReport {
  profile: string;
  passed: number;
  failed: number;
  skipped: number;
  conventions: { passed: number; failed: number; skipped: number };
  results: SelfCheckResult[];
}

/**
 * What a runner did: ran the harness (how it authenticated, over which bindings), or did not, and why (e.g. auth mode
 * jwt with no key the runtime can sign a token with).
 */
export type SelfCheckOutcome =
  | { ran: true; report: SelfCheckReport; auth: "minted_token" | "none"; bindings: string[] }
  | { ran: false; reason: string };

/**
 * Runs the conformance harness against this runtime's own endpoints. It lives outside the binding (cli/self-check.ts):
 * a binding imports no conformance code.
 */
export type SelfCheck = () => Promise<SelfCheckOutcome>;

/** The route's answer: the standard's `core` flag (of the last finished run), and this runtime's details. */
export interface SelfCheckAnswer {
  /** now: `running`, or how the last run ended (`passed`, `failed`, `skipped`: not run, `error`: the runner failed). */
  status: "not_run" | "running" | "passed" | "failed" | "skipped" | "error";
  /** Whether the last finished run passed the Core profile; absent until one has run. */
  core?: boolean;
  running_since?: string;
  last_run?: Record<string, unknown>;
}

export class SelfCheckState {
  private runner: SelfCheck | undefined;
  private runningSince: string | undefined;
  private running: Promise<void> | undefined;
  private last: { status: SelfCheckAnswer["status"]; core?: boolean; run: Record<string, unknown> } | undefined;

  constructor(private readonly onError: (err: unknown) => void) {}

  /** Whether a runner was given: without one the route does not exist in this process. */
  get available(): boolean {
    return this.runner !== undefined;
  }

  use(runner: SelfCheck): void {
    this.runner = runner;
  }

  /**
   * Starts a run unless one is under way; `started` says which. Either way `done` resolves when the run under way
   * has finished (never rejects: a failing runner is recorded as `error`).
   */
  start(): { started: boolean; done: Promise<void> } {
    if (this.running) return { started: false, done: this.running };
    const runner = this.runner;
    if (!runner) throw new Error("no self-check runner");
    const startedAt = new Date();
    this.runningSince = startedAt.toISOString();
    // Called inside a promise: a runner that throws at once is recorded as one that failed.
    this.running = new Promise<SelfCheckOutcome>((resolve) => resolve(runner()))
      .then(
        (outcome) => this.finished(startedAt, outcome),
        (err: unknown) => {
          this.onError(err);
          this.finished(startedAt, { ran: false, reason: err instanceof Error ? err.message : String(err) }, "error");
        },
      )
      .finally(() => {
        this.running = undefined;
        this.runningSince = undefined;
      });
    return { started: true, done: this.running };
  }

  answer(): SelfCheckAnswer {
    const status = this.running ? "running" : (this.last?.status ?? "not_run");
    return {
      status,
      ...(this.last?.core !== undefined ? { core: this.last.core } : {}),
      ...(this.runningSince ? { running_since: this.runningSince } : {}),
      ...(this.last ? { last_run: this.last.run } : {}),
    };
  }

  private finished(startedAt: Date, outcome: SelfCheckOutcome, notRunAs: "skipped" | "error" = "skipped"): void {
    const finishedAt = new Date();
    const times = {
      started_at: startedAt.toISOString(),
      finished_at: finishedAt.toISOString(),
      duration_ms: finishedAt.getTime() - startedAt.getTime(),
    };
    if (!outcome.ran) {
      this.last = { status: notRunAs, run: { ...times, reason: outcome.reason } };
      return;
    }
    const { report } = outcome;
    // A run in which no standard check passed (every one skipped) shows nothing: it is not a pass.
    const core = report.failed === 0 && report.passed > 0;
    this.last = {
      status: core ? "passed" : "failed",
      core,
      run: {
        ...times,
        profile: report.profile,
        auth: outcome.auth,
        bindings: outcome.bindings,
        passed: report.passed,
        failed: report.failed,
        skipped: report.skipped,
        conventions: report.conventions,
        results: report.results.map(({ id, status, reason, convention }) => ({
          id,
          status,
          ...(reason !== undefined ? { reason } : {}),
          convention,
        })),
      },
    };
  }
}
