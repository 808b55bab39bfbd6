import { describe, expect, it } from 'vitest';
import { TokenBuckets } from './rate-limit.js';

describe('TokenBuckets', () => {
  it('takes a burst, then refuses with a Retry-After until tokens come back', () => {
    let now = 0;
    const buckets = new TokenBuckets({ burst: 3, perSecond: 0.5 }, () => now);
    expect([1, 2, 3].map(() => buckets.take('a').ok)).toEqual([true, true, true]);
    expect(buckets.take('a')).toEqual({ ok: false, retryAfterS: 2 });
    // Another key has its own bucket.
    expect(buckets.take('b').ok).toBe(true);
    now = 1000;
    expect(buckets.take('a')).toEqual({ ok: false, retryAfterS: 1 });
    now = 2000;
    expect(buckets.take('a').ok).toBe(true);
    expect(buckets.take('a').ok).toBe(false);
    // Never more than the burst, however long idle.
    now = 1_000_000;
    expect([1, 2, 3, 4].map(() => buckets.take('a').ok)).toEqual([true, true, true, false]);
  });
});
