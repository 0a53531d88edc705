// A call's signal: the caller's own AbortSignal joined with the client's deadline, whose reason is a MIG_TIMEOUT so a
// transport that rejects with the signal's reason reports the right error either way.
import { MigError } from "../schemas/errors.ts";

export interface Deadline {
  signal: AbortSignal;
  /** Stops the deadline's timer once the call is over. */
  dispose(): void;
}

export function deadline(ms: number, url: string, caller?: AbortSignal): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    controller.abort(
      new MigError("MIG_TIMEOUT", `no answer from ${url} within ${ms} ms`, {
        retryable: true,
        details: { deadline_ms: ms },
      }),
    );
  }, ms);
  timer.unref?.();
  const signal = caller ? AbortSignal.any([caller, controller.signal]) : controller.signal;
  return { signal, dispose: () => clearTimeout(timer) };
}
