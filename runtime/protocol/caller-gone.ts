// A binding's signal that its caller went before its answer (RequestContext.gone): a plain object with the part of
// AbortSignal the runtime uses. An AbortController per request cost an in-process HTTP invoke 10-16 % of its CPU
// under load (docs/decisions.md); the runtime listens with one listener per request.
import type { GoneSignal } from "./request-context.ts";

export class CallerGone implements GoneSignal {
  aborted = false;
  reason: unknown;
  private listener: (() => void) | undefined;
  private others: (() => void)[] | undefined;

  addEventListener(_type: "abort", listener: () => void): void {
    if (this.listener === undefined) this.listener = listener;
    else (this.others ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    if (this.listener === listener) this.listener = undefined;
    else if (this.others) this.others = this.others.filter((l) => l !== listener);
  }

  /** Marks the client gone and tells each listener once. */
  abort(reason: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = [this.listener, ...(this.others ?? [])];
    this.listener = undefined;
    this.others = undefined;
    for (const listener of listeners) listener?.();
  }
}
