import { describe, expect, it } from 'vitest';
import { rssTrend } from './lib.js';

describe('rssTrend', () => {
  it('reads a flat series as no growth, and a leak as its rate per hour', () => {
    const flat = [90, 91, 90, 91, 90, 91, 90, 91, 90];
    const f = rssTrend(flat, 30);
    expect(Math.abs(f.slopeMbPerHour)).toBeLessThan(1);
    expect(Math.abs(f.lastLessFirstThirdMb)).toBeLessThan(0.5);
    // +0.1 MB every 30 s reading: 12 MB an hour; the last third 0.6 MB above the first.
    const leak = Array.from({ length: 10 }, (_, i) => 90 + 0.1 * i);
    const l = rssTrend(leak, 30);
    expect(l.slopeMbPerHour).toBeCloseTo(12, 6);
    expect(l.lastLessFirstThirdMb).toBeCloseTo(0.7, 6);
  });

  it('says nothing from fewer than three readings', () => {
    expect(rssTrend([90, 95], 30).slopeMbPerHour).toBeNaN();
  });
});
