// Requests read from the bus, started at most a chunk per turn of the event loop, each chunk's answers written
// before the next chunk starts.
//
// Why: nats.js hands a process every message of one socket read at once. Under load that is a whole burst of
// requests (at 64 callers, most of them), and started together they also finish together: their answers leave in
// one write, after the last of them has run. Until then the caller's process, on another core, has nothing to
// do, and when the answers arrive this process waits in turn. Caller and runtime then take turns instead of
// working side by side. Starting a chunk, writing its answers, then starting the next lets the caller work on the
// first answers while this process runs the rest (figures: docs/decisions.md, 'Request admission in chunks').
//
// A request waits at most until the chunks before it have started, a few turns of the loop. If more than
// `maxWaiting` wait (a flood), everything waiting starts at once, in order, as it did without chunks, rather than
// letting the queue grow: INVOKE's admission control then answers the excess with MIG_BACKPRESSURE.

/**
 * Requests started per turn by the NATS binding. At 64 callers 24 and 32 did best; 8 made writes too small, and 32
 * writes less often when callers are many (docs/decisions.md, 'Request admission in chunks').
 */
export const ADMISSION_CHUNK = 32;
/**
 * PUBLISH requests started per turn by the NATS events binding. A PUBLISH crosses nats-server twice more than an
 * INVOKE's answer does (its store, and the stream's ack), so nats-server is a third busy process; smaller chunks
 * let it store one chunk while the runtime starts the next. At 64 in flight 16 beat 32 in five pairs of seven, by a
 * small margin (docs/decisions.md, 'PUBLISH admission in chunks').
 */
export const PUBLISH_ADMISSION_CHUNK = 16;

export class ChunkedAdmission<T> {
  private readonly waiting: T[] = [];
  private head = 0;
  private budget: number;
  private scheduled = false;
  private emptied: (() => void)[] = [];

  /**
   * @param chunk        requests started per turn of the event loop
   * @param start        starts one request (must not throw)
   * @param beforeChunk  writes the answers settled so far, so they leave before the next chunk runs
   */
  constructor(
    private readonly chunk: number,
    private readonly maxWaiting: number,
    private readonly start: (item: T) => void,
    private readonly beforeChunk: () => void,
  ) {
    this.budget = chunk;
  }

  /** Starts `item` now if this turn's chunk has room and nothing waits; otherwise queues it for a later turn. */
  admit(item: T): void {
    if (this.budget > 0 && this.head === this.waiting.length) {
      this.budget--;
      this.start(item);
    } else if (this.waiting.length - this.head >= this.maxWaiting) {
      this.startAllWaiting();
      this.start(item);
    } else {
      this.waiting.push(item);
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.nextTurn);
    }
  }

  /** Resolves once no request waits to start (those waiting now are started within a few turns). */
  whenEmpty(): Promise<void> {
    if (this.head === this.waiting.length) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }

  private readonly nextTurn = (): void => {
    this.scheduled = false;
    this.beforeChunk();
    this.budget = this.chunk;
    while (this.budget > 0 && this.head < this.waiting.length) {
      this.budget--;
      this.start(this.take());
    }
    if (this.head === this.waiting.length) this.reset();
    // A turn that started requests is followed by one that gives the next chunk its full budget again.
    if (this.budget < this.chunk) {
      this.scheduled = true;
      setImmediate(this.nextTurn);
    }
  };

  private take(): T {
    const item = this.waiting[this.head]!;
    this.waiting[this.head++] = undefined as T; // let it be collected before the queue empties
    return item;
  }

  private startAllWaiting(): void {
    while (this.head < this.waiting.length) this.start(this.take());
    this.reset();
  }

  private reset(): void {
    this.waiting.length = 0;
    this.head = 0;
    const emptied = this.emptied;
    this.emptied = [];
    for (const resolve of emptied) resolve();
  }
}
