// Token buckets per key (tenant, tenant×capability), kept per process in a bounded map.
import type { RateLimit } from "./config.ts";

interface Bucket {
  tokens: number;
  /** performance-style clock of the last refill, in ms. */
  at: number;
  limit: RateLimit;
}

/** Either a token was taken, or the caller should wait `retryAfterMs` for one. */
export type Take = { ok: true } | { ok: false; retryAfterMs: number };

const TAKEN: Take = { ok: true };

/**
 * Buckets by key. A bucket that has refilled to full is indistinguishable from a new one, so when the
 * map reaches its bound the full ones are dropped first (nothing is lost), then the oldest.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly maxBuckets = 100_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  take(key: string, limit: RateLimit): Take {
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (!bucket || bucket.limit !== limit) {
      bucket = { tokens: limit.burst, at: now, limit };
      if (this.buckets.size >= this.maxBuckets) this.evict(now);
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * limit.rate);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return TAKEN;
    }
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil(((1 - bucket.tokens) / limit.rate) * 1000)) };
  }

  /** Gives back a token taken for a request that a later check refused (so it does not count twice). */
  refund(key: string): void {
    const bucket = this.buckets.get(key);
    if (bucket) bucket.tokens = Math.min(bucket.limit.burst, bucket.tokens + 1);
  }

  get size(): number {
    return this.buckets.size;
  }

  private evict(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * bucket.limit.rate >= bucket.limit.burst)
        this.buckets.delete(key);
    }
    while (this.buckets.size >= this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
