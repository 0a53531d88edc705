// A bounded single-reader queue that a stream handler reads as an async iterator (the caller's bidi frames).

export class FrameQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private reader: { resolve: (result: IteratorResult<T>) => void; reject: (err: unknown) => void } | undefined;
  private ended = false;
  private failure: unknown;

  /** `onEmpty` runs each time the reader takes the last queued item. */
  constructor(
    private readonly limit: number,
    private readonly onEmpty?: () => void,
  ) {}

  get size(): number {
    return this.items.length - this.head;
  }

  /** Queues one item; false when the queue already holds `limit` items (the item is not queued). */
  push(item: T): boolean {
    if (this.ended) return false;
    if (this.reader) {
      const { resolve } = this.reader;
      this.reader = undefined;
      resolve({ value: item, done: false });
      return true;
    }
    if (this.size >= this.limit) return false;
    this.items.push(item);
    return true;
  }

  /** No more items: the reader finishes after the queued ones. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.reader && this.size === 0) {
      const { resolve } = this.reader;
      this.reader = undefined;
      resolve({ value: undefined, done: true });
    }
  }

  /** Ends the queue with an error: queued items are dropped and the reader's next read rejects. */
  fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.ended = true;
    this.items = [];
    this.head = 0;
    if (this.reader) {
      const { reject } = this.reader;
      this.reader = undefined;
      reject(err);
    }
  }

  private next(): Promise<IteratorResult<T>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.size > 0) {
      const value = this.items[this.head]!;
      this.items[this.head++] = undefined as T;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      if (this.size === 0) this.onEmpty?.();
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.reader)
      return Promise.reject(new Error("this queue has one reader at a time; await each next() before the next"));
    return new Promise((resolve, reject) => {
      this.reader = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }
}
