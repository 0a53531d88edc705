// A subscription as the caller holds it: an async iterator of events in sequence order that outlives its wire.
// When the wire drops (a gateway dies, the runtime restarts, the network blinks) it subscribes again from the last
// sequence it handed over, so the loop sees neither a gap nor a duplicate.
import { MigError } from "../schemas/errors.ts";
import type { EventMessage } from "../schemas/types.ts";
import { abortError } from "./errors.ts";
import { pause, type RetryPolicy, retryDelay } from "./retry.ts";
import type { SubscriptionChannel } from "./transport.ts";

/** Opens the wire, from `resumeCursor` (exclusive) when given, else as the caller asked. */
type Opener = (resumeCursor: number | undefined, signal: AbortSignal) => Promise<SubscriptionChannel>;

interface SubscriptionSettings {
  resumeCursor: number | undefined;
  policy: RetryPolicy;
  signal: AbortSignal | undefined;
  url: string;
}

export class MigSubscription implements AsyncIterable<EventMessage> {
  /** The last sequence handed to the caller: where a new wire resumes. */
  lastSequence: number | undefined;
  /** How many times the wire was opened again after it dropped. */
  reconnects = 0;
  private channel: Promise<SubscriptionChannel> | undefined;
  private closed = false;
  private readonly stop = new AbortController();

  constructor(
    private readonly open: Opener,
    private readonly settings: SubscriptionSettings,
  ) {
    this.lastSequence = settings.resumeCursor;
    settings.signal?.addEventListener("abort", () => void this.close(), { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<EventMessage> {
    return {
      next: () => this.next(),
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  /** Resolves once the server accepted the subscription (the first wire is open); rejects with its refusal. */
  async ready(): Promise<void> {
    await this.wire();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort(new MigError("MIG_TIMEOUT", "the subscription was closed by its caller", { retryable: false }));
    const channel = this.channel;
    this.channel = undefined;
    if (channel)
      await channel.then(
        (open) => open.close(),
        () => undefined,
      );
  }

  private wire(): Promise<SubscriptionChannel> {
    if (!this.channel) {
      const channel = this.open(this.lastSequence, this.stop.signal);
      this.channel = channel;
      channel.then(
        (open) => {
          // A live subscription resumes from where it began, if nothing came before the wire dropped.
          if (this.lastSequence === undefined) this.lastSequence = open.info.start_sequence - 1;
        },
        () => undefined,
      );
    }
    return this.channel;
  }

  private async next(): Promise<IteratorResult<EventMessage>> {
    let failures = 0;
    while (!this.closed) {
      let failure: MigError;
      try {
        const channel = await this.wire();
        const event = await channel.next();
        failures = 0;
        if (this.lastSequence !== undefined && event.sequence <= this.lastSequence) continue;
        this.lastSequence = event.sequence;
        return { done: false, value: event };
      } catch (err) {
        if (this.closed) break;
        failure = err instanceof MigError ? err : new MigError("MIG_UNAVAILABLE", String(err), { retryable: true });
      }
      const dropped = this.channel;
      this.channel = undefined;
      if (dropped)
        void dropped
          .then(
            (open) => open.close(),
            () => undefined,
          )
          .catch(() => undefined);
      failures++;
      if (!failure.retryable || failures >= this.settings.policy.attempts) {
        this.closed = true;
        throw failure;
      }
      try {
        await pause(retryDelay(this.settings.policy, failures, failure), this.stop.signal);
      } catch {
        break;
      }
      this.reconnects++;
    }
    if (this.settings.signal?.aborted) throw abortError(this.settings.signal);
    return { done: true, value: undefined };
  }
}
