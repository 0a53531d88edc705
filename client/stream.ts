// A stream as the caller holds it: an async iterator of the provider's frames whose reading pace is the credit,
// the terminal frame's payload as `result`, and `break`, `return()`, `cancel()` or the caller's signal to stop it.
import { MigError } from "../schemas/errors.ts";
import type { JsonObject, StreamFrame } from "../schemas/types.ts";
import { abortError } from "./errors.ts";
import type { StreamChannel } from "./transport.ts";

interface StreamIds {
  messageId: string;
  streamId: string;
  url: string;
  /** The caller's signal joined with the client's deadline backstop. */
  signal: AbortSignal;
  /** Stops the backstop's timer. */
  dispose(): void;
}

export class MigStream implements AsyncIterable<StreamFrame> {
  /** The `header.message_id` of the stream's request: the target of a CANCEL from anywhere. */
  readonly messageId: string;
  readonly streamId: string;
  /** The terminal frame's payload, once the provider returned; rejects with the stream's MigError otherwise. */
  readonly result: Promise<JsonObject>;
  private settle!: { resolve(value: JsonObject): void; reject(err: MigError): void };
  private channel: StreamChannel | undefined;
  private ended = false;
  private cancelledHere: string | undefined;
  private failure: MigError | undefined;

  constructor(
    private readonly opening: Promise<StreamChannel>,
    private readonly ids: StreamIds,
  ) {
    this.messageId = ids.messageId;
    this.streamId = ids.streamId;
    this.result = new Promise<JsonObject>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // A caller that only iterates need not look at `result`: its rejection is not an unhandled one.
    this.result.catch(() => undefined);
    opening.then(
      (channel) => {
        this.channel = channel;
        if (this.ended) channel.close();
        else if (this.cancelledHere !== undefined) channel.cancel(this.cancelledHere);
      },
      (err: unknown) => this.finish(err instanceof MigError ? err : abortError(ids.signal)),
    );
    ids.signal.addEventListener("abort", () => this.onAbort(), { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamFrame> {
    return {
      next: () => this.next(),
      return: async () => {
        this.cancel("the caller stopped reading the stream");
        return { done: true, value: undefined };
      },
    };
  }

  /** A bidi message to the provider. */
  send(payload: JsonObject): void {
    this.sendOnOpen(payload, false);
  }

  /** Ends the caller's half of a bidi stream; the provider's half goes on until it returns. */
  end(payload?: JsonObject): void {
    this.sendOnOpen(payload, true);
  }

  /** Cancels the stream: the provider's signal fires; the iterator ends and `result` rejects. */
  cancel(reason = "cancelled by the caller"): void {
    if (this.ended || this.cancelledHere !== undefined) return;
    this.cancelledHere = reason;
    if (this.channel) this.channel.cancel(reason);
    // The terminal frame would confirm it, but a caller that stopped reading is not waiting for it.
    this.finish(
      new MigError("MIG_TIMEOUT", `the stream was cancelled: ${reason}`, {
        retryable: false,
        details: { cancelled: true, reason },
      }),
    );
  }

  private sendOnOpen(payload: JsonObject | undefined, end: boolean): void {
    if (this.ended) throw new MigError("MIG_INVALID_REQUEST", "the stream has ended: nothing more can be sent on it");
    this.opening.then(
      (channel) => {
        if (!this.ended) channel.send(payload, end);
      },
      () => undefined,
    );
  }

  private async next(): Promise<IteratorResult<StreamFrame>> {
    if (this.ended) return this.afterEnd();
    let frame: StreamFrame;
    try {
      const channel = await this.opening;
      frame = await channel.next();
    } catch (err) {
      if (this.ended) return this.afterEnd();
      this.finish(this.ids.signal.aborted ? abortError(this.ids.signal) : toMig(err, this.ids.url));
      return this.afterEnd();
    }
    if (this.ended) return this.afterEnd();
    if (!frame.end_stream) return { done: false, value: frame };
    if (frame.kind === "response") {
      this.finish(undefined, frame.payload ?? {});
      return { done: true, value: undefined };
    }
    if (frame.kind === "error") this.finish(MigError.fromBody(frame.error ?? {}));
    else {
      const reason = typeof frame.payload?.reason === "string" ? frame.payload.reason : "cancelled";
      this.finish(
        new MigError("MIG_TIMEOUT", `the stream was cancelled: ${reason}`, {
          retryable: false,
          details: { cancelled: true, reason },
        }),
      );
    }
    return this.afterEnd();
  }

  /** Ends the iteration: quietly after the caller's own cancel, with the stream's error otherwise. */
  private afterEnd(): IteratorResult<StreamFrame> {
    if (this.failure && this.cancelledHere === undefined) throw this.failure;
    return { done: true, value: undefined };
  }

  private onAbort(): void {
    if (this.ended) return;
    const err = abortError(this.ids.signal);
    // The server ends the stream on its own deadline; the caller's abort must reach it.
    if (this.channel) this.channel.cancel(err.message);
    this.finish(err);
  }

  private finish(err: MigError | undefined, payload?: JsonObject): void {
    if (this.ended) return;
    this.ended = true;
    this.ids.dispose();
    if (err) {
      this.failure = err;
      this.settle.reject(err);
    } else this.settle.resolve(payload ?? {});
    // Let a cancel leave before the wire closes.
    if (this.channel) {
      const channel = this.channel;
      queueMicrotask(() => channel.close());
    }
  }
}

function toMig(err: unknown, url: string): MigError {
  if (err instanceof MigError) return err;
  return new MigError(
    "MIG_UNAVAILABLE",
    `the stream from ${url} broke off: ${err instanceof Error ? err.message : String(err)}`,
    {
      retryable: true,
    },
  );
}
