// JetStream publishes that wait for the stream's ack, through one reply subscription instead of a request per message.
//
// `jetstream.publish()` goes through `nc.request()`: per message an options copy, a request object with a random
// token, a deferred, a timer, and an Error allocated (with its stack) when the request is cleaned up after the
// answer. On the PUBLISH path that was about a tenth of the runtime's CPU. Here a message is a map entry keyed by
// a counter under one wildcard inbox; one sweep per second times out what JetStream did not answer.
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { BusDropped } from "../../schemas/errors.ts";
import { onConnectionChange } from "./bus.ts";
import { TurnBatch } from "./turn-batch.ts";

export interface StreamAck {
  seq: number;
  duplicate: boolean;
}

/**
 * Why JetStream did not store a message: no stream answered on the subject (none there, or its leader is being
 * elected), no answer in time, or anything else (an API error, a message nats.js refused). The first two are
 * `transient`: the same message sent again may be stored.
 */
export class AckError extends Error {
  constructor(
    message: string,
    readonly why: "no_stream" | "no_answer" | "other" = "other",
  ) {
    super(message);
  }

  get transient(): boolean {
    return this.why !== "other";
  }
}

interface Waiting {
  subject: string;
  resolve: (ack: StreamAck) => void;
  reject: (err: AckError | BusDropped) => void;
  until: number;
}

const SWEEP_MS = 1_000;

export class AckedPublisher {
  private readonly prefix = `${createInbox()}.`;
  private readonly waiting = new Map<string, Waiting>();
  private subscription: Subscription | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private next = 0;

  /**
   * Messages leave through `outbox` (one write per turn of the event loop), which must be on `nc`: a caller that
   * also answers its own callers through it has the acked messages and those answers share writes.
   */
  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
    private readonly outbox: TurnBatch = new TurnBatch(nc, () => undefined),
  ) {
    onConnectionChange(nc, (change) => {
      if (change === "disconnect") this.dropped();
    });
  }

  /** Publishes `data` to a stream's subject; resolves with the stream's ack once the message is stored. */
  publish(subject: string, data: string | Uint8Array, headers: MsgHdrs): Promise<StreamAck> {
    // The reply subscription is made on first use and lives as long as the connection (nats.js renews it on reconnect).
    this.subscription ??= this.nc.subscribe(`${this.prefix}*`, { callback: (_err, msg) => this.answer(msg) });
    const token = (this.next++).toString(36);
    return new Promise<StreamAck>((resolve, reject) => {
      this.waiting.set(token, { subject, resolve, reject, until: Date.now() + this.timeoutMs });
      this.outbox.publish(subject, data, { reply: this.prefix + token, headers }, (err) => this.refused(token, err));
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    });
  }

  /** nats.js refused the message when the batch was written (a closed connection, a message over max_payload). */
  private refused(token: string, err: unknown): void {
    const waiting = this.waiting.get(token);
    if (!waiting) return;
    this.waiting.delete(token);
    waiting.reject(
      new AckError(
        `the message to ${waiting.subject} could not be sent (${err instanceof Error ? err.message : String(err)})`,
      ),
    );
  }

  private answer(msg: Msg): void {
    const token = msg.subject.slice(this.prefix.length);
    const waiting = this.waiting.get(token);
    if (!waiting) return; // Timed out already.
    this.waiting.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      waiting.reject(new AckError(`no stream answers on ${waiting.subject}`, "no_stream"));
      return;
    }
    try {
      const ack = JSON.parse(msg.string()) as { seq?: number; duplicate?: boolean; error?: { description?: string } };
      if (ack.error || typeof ack.seq !== "number")
        throw new AckError(ack.error?.description ?? "the stream's answer has no sequence");
      waiting.resolve({ seq: ack.seq, duplicate: ack.duplicate === true });
    } catch (err) {
      waiting.reject(
        err instanceof AckError ? err : new AckError(`the stream's answer is not JSON (${(err as Error).message})`),
      );
    }
  }

  /**
   * The connection lost its server: an ack JetStream sends now reaches nobody (the reply subscription is renewed
   * only after the reconnect), so every waiting publish fails at once, retryable, instead of at its timeout. The
   * message may have been stored; a retry with the same Nats-Msg-Id is deduplicated by the stream.
   */
  private dropped(): void {
    if (this.waiting.size === 0) return;
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiting) w.reject(new BusDropped("the message waited for JetStream's ack"));
  }

  private sweep(): void {
    const now = Date.now();
    for (const [token, waiting] of this.waiting) {
      if (waiting.until > now) continue;
      this.waiting.delete(token);
      waiting.reject(new AckError(`no ack from the stream within ${this.timeoutMs} ms`, "no_answer"));
    }
    // No timer while nothing waits: a runtime that stopped publishing (or stopped) keeps none.
    if (this.waiting.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
