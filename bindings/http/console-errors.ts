// Error rates by code for the admin console: the mig_errors_total counter, sampled when a snapshot is made.
import type { MigRuntime } from "../../runtime/mod.ts";

/** How far back `recent` looks. */
const WINDOW_MS = 60_000;

export interface ErrorCodeView {
  code: string;
  /** Errors answered with this code since the process started. */
  total: number;
  /** Of those, how many in the last `window_s` seconds. */
  recent: number;
  /** `total` by operation (invoke, stream, admin, …). */
  by_operation: Record<string, number>;
}

export interface ErrorRates {
  /**
   * The span `recent` covers: about 60 s; shorter while the console has watched for less (0 on a first read), longer
   * after a spell in which nobody watched (nothing is sampled then).
   */
  window_s: number;
  by_code: ErrorCodeView[];
}

interface Sample {
  at: number;
  totals: Map<string, number>;
}

/**
 * Keeps the counter's totals by code as they were at each snapshot of the last minute (one a second at most, and only
 * while someone reads the console: nothing runs in between), so that `recent` is the increase since the oldest.
 */
export class ErrorSampler {
  private samples: Sample[] = [];

  constructor(private readonly runtime: MigRuntime) {}

  async read(now = Date.now()): Promise<ErrorRates> {
    const { values } = await this.runtime.metrics.errors.get();
    const totals = new Map<string, number>();
    const byOperation = new Map<string, Record<string, number>>();
    for (const { labels, value } of values) {
      const code = String(labels.code);
      const operation = String(labels.operation ?? "");
      totals.set(code, (totals.get(code) ?? 0) + value);
      let operations = byOperation.get(code);
      if (!operations) byOperation.set(code, (operations = {}));
      operations[operation] = (operations[operation] ?? 0) + value;
    }
    this.remember({ at: now, totals });
    const baseline = this.samples[0]!;
    const by_code = [...totals]
      .map(([code, total]) => ({
        code,
        total,
        recent: total - (baseline.totals.get(code) ?? 0),
        by_operation: byOperation.get(code) ?? {},
      }))
      .sort((a, b) => b.recent - a.recent || b.total - a.total || (a.code < b.code ? -1 : 1));
    return { window_s: Math.round((now - baseline.at) / 1000), by_code };
  }

  /**
   * Keeps a sample a second at most; the first kept is the baseline: the newest sample at least a window old, or the
   * oldest there is while none is that old yet.
   */
  private remember(sample: Sample): void {
    const last = this.samples[this.samples.length - 1];
    if (this.samples.length > 1 && sample.at - last!.at < 1000) this.samples[this.samples.length - 1] = sample;
    else this.samples.push(sample);
    while (this.samples.length > 1 && sample.at - this.samples[1]!.at >= WINDOW_MS) this.samples.shift();
  }
}
