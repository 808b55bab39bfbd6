import { describe, expect, it } from 'vitest';
import { binomialUpperTail, lossIsSignificant } from './loss-significance.js';

describe('binomialUpperTail', () => {
  it('matches the exact sums', () => {
    // P(X ≥ 2 | 6, 0.05) = 1 − 0.95^6 − 6·0.05·0.95^5
    expect(binomialUpperTail(2, 6, 0.05)).toBeCloseTo(1 - 0.95 ** 6 - 6 * 0.05 * 0.95 ** 5, 12);
    expect(binomialUpperTail(5, 5, 0.05)).toBeCloseTo(0.05 ** 5, 15);
    expect(binomialUpperTail(0, 10, 0.3)).toBe(1);
    expect(binomialUpperTail(11, 10, 0.3)).toBe(0);
    // The whole distribution sums to one.
    expect(binomialUpperTail(1, 30, 0.2) + 0.8 ** 30).toBeCloseTo(1, 12);
  });
});

describe('lossIsSignificant (tolerating 5 % background loss, alpha 1e-4)', () => {
  const sig = (lost: number, n: number) => lossIsSignificant(lost, n, 0.05, 1e-4);

  it('takes 1–2 % style noise as noise: 2 of 6, 3 of 6, 7 of 30 lost', () => {
    expect(sig(2, 6)).toBe(false);
    expect(sig(3, 6)).toBe(false);
    expect(sig(7, 30)).toBe(false);
    expect(sig(1, 1)).toBe(false);
  });

  it('takes what chance would not give as loss: 4 of 6, 4 of 5, 8 of 30, 15 of 30', () => {
    expect(sig(4, 6)).toBe(true);
    expect(sig(4, 5)).toBe(true);
    expect(sig(8, 30)).toBe(true);
    expect(sig(15, 30)).toBe(true);
  });

  it('nothing lost or nothing probed is never loss', () => {
    expect(sig(0, 30)).toBe(false);
    expect(sig(0, 0)).toBe(false);
  });
});
