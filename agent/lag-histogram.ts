// 1 ms buckets below 100 ms (where lag goals live), then doubling buckets up to ~1.9 h.
const linearBuckets = 100;
const doublingBuckets = 17;

/** Fixed-size lag histogram: O(1) to record, no allocation, percentiles on demand. */
export class LagHistogram {
  private readonly buckets = new Float64Array(linearBuckets + doublingBuckets);
  count = 0;
  maxMs = 0;

  record(lagMs: number): void {
    let i: number;
    if (lagMs < linearBuckets) i = Math.floor(lagMs);
    else {
      i = linearBuckets + Math.floor(Math.log2(lagMs / linearBuckets));
      if (i >= this.buckets.length) i = this.buckets.length - 1;
    }
    this.buckets[i]!++;
    this.count++;
    if (lagMs > this.maxMs) this.maxMs = lagMs;
  }

  /** The lower bound of the bucket holding quantile `q` (exact for whole-ms lags < 100 ms). */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) {
        const lower = i < linearBuckets ? i : linearBuckets * 2 ** (i - linearBuckets);
        return Math.min(lower, this.maxMs);
      }
    }
    return this.maxMs;
  }
}
