// Publishes of one event-loop turn, written to the socket together.
//
// nats.js writes its buffer to the socket at the next microtask checkpoint after a publish. On paths where
// answers settle at different promise depths (a PUBLISH's ack, its reply and its live copy; replies to requests
// read in several socket reads), one turn's messages were otherwise spread over several checkpoints and cost a
// write system call each: on the PUBLISH path, writes were the largest single item of the runtime's CPU profile.
// Queued messages go out in one setImmediate callback, so nats.js flushes them in one write.
import type { NatsConnection, PublishOptions } from "@nats-io/transport-node";

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

  private readonly flush = (): void => {
    const batch = this.queued;
    this.queued = [];
    for (const { subject, data, options, failed } of batch) {
      try {
        this.nc.publish(subject, data, options);
      } catch (err) {
        // One refused message does not keep the rest of the turn's messages from their subscribers.
        if (failed) failed(err);
        else this.failed(err, subject);
      }
    }
  };
}
