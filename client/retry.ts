// When the client tries a call again: only retryable MIG codes, with exponential backoff and full jitter, never sooner
// than the server's `retry_after_ms`, and never past the call's deadline.
import type { MigError } from "../schemas/errors.ts";

export interface RetryOptions {
  /** Tries in all, the first included (default 3; 1 means no retry). */
  attempts?: number;
  /** The backoff before the second try; it doubles with each try (default 100 ms). */
  baseDelayMs?: number;
  /** The longest pause between two tries (default 5000 ms). */
  maxDelayMs?: number;
}

export interface RetryPolicy {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const NO_RETRY: RetryPolicy = { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 };

export function retryPolicy(options: RetryOptions | false | undefined): RetryPolicy {
  if (options === false) return NO_RETRY;
  const attempts = options?.attempts ?? 3;
  // Infinity is a subscription's default: it reconnects for as long as it is open.
  if (!(Number.isInteger(attempts) || attempts === Number.POSITIVE_INFINITY) || attempts < 1)
    throw new TypeError(`retry.attempts must be a whole number ≥ 1 or Infinity, got ${attempts}`);
  return { attempts, baseDelayMs: options?.baseDelayMs ?? 100, maxDelayMs: options?.maxDelayMs ?? 5_000 };
}

/** The pause before try `attempt + 1`: a random share of the doubled base (full jitter), at least `retry_after_ms`. */
export function retryDelay(policy: RetryPolicy, attempt: number, err: MigError): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  const jittered = Math.random() * ceiling;
  const asked = err.details?.retry_after_ms;
  return typeof asked === "number" && Number.isFinite(asked) && asked > jittered ? asked : jittered;
}

/** Waits `ms`, or rejects with the signal's reason when it fires first. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
