// Deletes the JetStream consumers of ended subscriptions a few at a time, so that thousands of subscribers leaving
// at once (a load balancer dropping its connections, a client fleet restarting) do not put thousands of API calls
// on the bus in one go: measured with 10,000 SSE subscribers closing together, the unbounded deletes kept the
// runtime's other JetStream calls (the provider registry's KV puts) timing out for about 25 s, and its workers
// dropped out of DISCOVER meanwhile.
import type { JetStreamManager } from "@nats-io/jetstream";

/** Deletions in flight at once: enough to keep up with subscribers leaving one by one, few enough to queue behind. */
export const REAPER_IN_FLIGHT = 4;

export class ConsumerReaper {
  private readonly queue: { stream: string; consumer: string }[] = [];
  private running = 0;
  private idleWaiters: (() => void)[] = [];
  /** The most deletions that were ever in flight at once. */
  peak = 0;

  constructor(private readonly jsm: () => JetStreamManager) {}

  /** Deletions queued or in flight. */
  get pending(): number {
    return this.queue.length + this.running;
  }

  /** Queues the deletion of one consumer; a consumer already gone (or a bus that is away) is not an error here. */
  delete(stream: string, consumer: string): void {
    this.queue.push({ stream, consumer });
    this.next();
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private next(): void {
    while (this.running < REAPER_IN_FLIGHT && this.queue.length > 0) {
      const { stream, consumer } = this.queue.shift()!;
      this.running++;
      if (this.running > this.peak) this.peak = this.running;
      // An ephemeral consumer that is not deleted here goes by itself after its inactive threshold.
      this.jsm()
        .consumers.delete(stream, consumer)
        .catch(() => undefined)
        .finally(() => {
          this.running--;
          this.next();
          if (this.pending === 0) for (const wake of this.idleWaiters.splice(0)) wake();
        });
    }
  }
}
