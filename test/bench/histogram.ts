// A fixed-size log-linear latency histogram (HDR-style): microsecond values, under 1% error.
//
// Values below 2·SUB are counted exactly; above, each power of two is split into SUB linear
// buckets, so a bucket is at most 1/SUB (0.8%) of its value wide. Memory is fixed (~2,600
// counters up to one minute) however many samples are recorded.

const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // 128 linear buckets per power of two
const MAX_US = 60_000_000; // one minute; longer samples are clamped

function bucketOf(us: number): number {
  if (us < 2 * SUB) return us;
  const shift = 31 - Math.clz32(us) - SUB_BITS; // puts us >> shift in [SUB, 2·SUB)
  return 2 * SUB + (shift - 1) * SUB + ((us >>> shift) - SUB);
}

/** The middle of a bucket, the value reported for every sample counted in it. */
function middleOf(bucket: number): number {
  if (bucket < 2 * SUB) return bucket;
  const k = bucket - 2 * SUB;
  const shift = Math.floor(k / SUB) + 1;
  const low = ((k % SUB) + SUB) * 2 ** shift;
  return low + (2 ** shift - 1) / 2;
}

/** A histogram as it travels in a loader's JSON line: only the non-empty buckets. */
export interface SerializedHistogram {
  /** [bucket, count] pairs */
  buckets: [number, number][];
  count: number;
  sum_us: number;
  min_us: number;
  max_us: number;
}

export class Histogram {
  private readonly counts = new Float64Array(bucketOf(MAX_US) + 1);
  count = 0;
  private sumUs = 0;
  private minUs = Infinity;
  private maxUs = 0;

  /** Records one latency given in milliseconds (e.g. a difference of `performance.now()`). */
  recordMs(ms: number): void {
    let us = Math.round(ms * 1000);
    if (us < 0) us = 0;
    if (us > MAX_US) us = MAX_US;
    this.counts[bucketOf(us)]++;
    this.count++;
    this.sumUs += us;
    if (us < this.minUs) this.minUs = us;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** The latency in milliseconds below which `percent` of the samples fall; 0 when empty. */
  percentileMs(percent: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((percent / 100) * this.count));
    let seen = 0;
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b];
      if (seen >= rank) {
        return Math.min(Math.max(middleOf(b), this.minUs), this.maxUs) / 1000;
      }
    }
    return this.maxUs / 1000;
  }

  /** Adds every sample of another histogram (e.g. another slice of the same measurement). */
  add(other: SerializedHistogram): void {
    for (const [bucket, n] of other.buckets) this.counts[bucket] += n;
    this.count += other.count;
    this.sumUs += other.sum_us;
    if (other.count > 0) {
      this.minUs = Math.min(this.minUs, other.min_us);
      this.maxUs = Math.max(this.maxUs, other.max_us);
    }
  }

  toJSON(): SerializedHistogram {
    const buckets: [number, number][] = [];
    this.counts.forEach((n, bucket) => {
      if (n > 0) buckets.push([bucket, n]);
    });
    return {
      buckets,
      count: this.count,
      sum_us: this.sumUs,
      min_us: this.count > 0 ? this.minUs : 0,
      max_us: this.maxUs,
    };
  }

  meanMs(): number {
    return this.count === 0 ? 0 : this.sumUs / this.count / 1000;
  }

  maxMs(): number {
    return this.maxUs / 1000;
  }

  /** The figures the report shows, in milliseconds rounded to the microsecond. */
  latencies(): { p50: number; p99: number; p999: number; mean: number; max: number } {
    const round = (n: number) => Math.round(n * 1000) / 1000;
    return {
      p50: round(this.percentileMs(50)),
      p99: round(this.percentileMs(99)),
      p999: round(this.percentileMs(99.9)),
      mean: round(this.meanMs()),
      max: round(this.maxMs()),
    };
  }
}
