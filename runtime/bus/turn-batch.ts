// Publishes of one event-loop turn, written to the socket together.
//
// nats.js writes its buffer to the socket at the next microtask checkpoint after a publish. On paths where
// answers settle at different promise depths (a PUBLISH's ack, its reply and its live copy; replies to requests
// read in several socket reads), one turn's messages were otherwise spread over several checkpoints and cost a
// write system call each, and the server a read and a wake-up each. Queued messages go out in one setImmediate
// callback, so nats.js flushes them in one write.
//
// Their text is encoded into one buffer per batch: handed a string (or a header block), nats.js encodes each
// into an array buffer of its own, and allocating (and later sweeping) those backing stores showed in profiles
// of the PUBLISH path beside the encoding itself. nats.js copies every payload into its outbound buffer before
// the batch's buffer could be reused, and a new one is made for each batch.
import type { NatsConnection, PublishOptions } from "@nats-io/transport-node";
import { HeaderBlock } from "./nats-header-block.ts";

interface Queued {
  subject: string;
  data: string | Uint8Array;
  options: PublishOptions | undefined;
  failed: ((err: unknown) => void) | undefined;
}

export class TurnBatch {
  private queued: Queued[] = [];

  /** `failed` hears of a publish that nats.js refused when the batch was written (a closed connection, say). */
  constructor(
    private readonly nc: NatsConnection,
    private readonly failed: (err: unknown, subject: string) => void,
  ) {}

  /** Queues a publish for the end of this turn; `failed` (else the batch's own handler) hears if it is refused. */
  publish(subject: string, data: string | Uint8Array, options?: PublishOptions, failed?: (err: unknown) => void): void {
    if (this.queued.push({ subject, data, options, failed }) === 1) setImmediate(this.flush);
  }

  /** Writes what is queued now (the scheduled write then finds nothing). */
  readonly flush = (): void => {
    if (this.queued.length === 0) return;
    const batch = this.queued;
    this.queued = [];
    let bytes = 0;
    for (const { data, options } of batch) {
      if (typeof data === "string") bytes += Buffer.byteLength(data);
      if (options?.headers instanceof HeaderBlock) bytes += options.headers.byteLength;
    }
    const arena = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (const { subject, data, options, failed } of batch) {
      let payload = data;
      if (typeof data === "string") {
        const end = at + arena.write(data, at);
        payload = arena.subarray(at, end);
        at = end;
      }
      if (options?.headers instanceof HeaderBlock) at = options.headers.encodeInto(arena, at);
      try {
        this.nc.publish(subject, payload, options);
      } catch (err) {
        // One refused message does not keep the rest of the turn's messages from their subscribers.
        if (failed) failed(err);
        else this.failed(err, subject);
      }
    }
  };
}
