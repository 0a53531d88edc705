// An append-only list that a check can wait on: "resolve once the items satisfy this, or time out".

export class Collector<T> {
  readonly items: T[] = [];
  private ended: Error | true | undefined;
  private wakers: Array<() => void> = [];

  push(item: T): void {
    this.items.push(item);
    this.wake();
  }

  /** No more items will come; `reason` says why when it is a failure. */
  end(reason?: Error): void {
    if (this.ended === undefined) this.ended = reason ?? true;
    this.wake();
  }

  /** Why the source ended early, if it failed. */
  get failure(): Error | undefined {
    return this.ended instanceof Error ? this.ended : undefined;
  }

  get done(): boolean {
    return this.ended !== undefined;
  }

  /** True once `predicate(items)` holds; false if the source ends or `timeoutMs` passes first. */
  async waitFor(predicate: (items: readonly T[]) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (predicate(this.items)) return true;
      const left = deadline - Date.now();
      if (this.ended !== undefined || left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wakers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }
}
