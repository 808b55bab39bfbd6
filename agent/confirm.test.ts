import { describe, expect, it } from 'vitest';
import type { FailureClass } from '../wire/result.js';
import {
  AdaptiveTimeout,
  adaptiveFloorMs,
  adaptiveTcpFloorMs,
  adaptiveMinSamples,
  ConfirmBudget,
  isConfirmableChange,
} from './confirm.js';

describe('isConfirmableChange', () => {
  const cases: [string, FailureClass | undefined, FailureClass, boolean][] = [
    ['ok → failure', 'ok', 'tcp_refused', true],
    ['failure → ok', 'tcp_timeout', 'ok', true],
    ['one failure class → another', 'tcp_timeout', 'tcp_refused', true],
    ['the same failure again', 'tcp_refused', 'tcp_refused', false],
    ['ok again', 'ok', 'ok', false],
    ["a path's first result, ok: no news", undefined, 'ok', false],
    ["a path's first result, a failure", undefined, 'icmp_timeout', true],
    ['internal_error says nothing about the target', 'ok', 'internal_error', false],
  ];
  it.each(cases)('%s', (_what, previous, current, expected) => {
    expect(isConfirmableChange(previous, current)).toBe(expected);
  });
});

describe('ConfirmBudget', () => {
  it('grants whole bursts while it holds them, then refuses until it refills', () => {
    let now = 0;
    const budget = new ConfirmBudget(50, 50, () => now);
    // A partition failing 100 paths at once: 16 bursts of 3 fit, the rest are refused.
    let granted = 0;
    for (let i = 0; i < 100; i++) if (budget.take(3)) granted++;
    expect(granted).toBe(16);
    expect(budget.available()).toBe(2);
    expect(budget.take(3)).toBe(false);
    expect(budget.available()).toBe(2); // a refused take takes nothing
    now += 20; // 50/s: one probe per 20 ms
    expect(budget.take(3)).toBe(true);
    expect(budget.available()).toBeCloseTo(0);
  });

  it('never holds more than its capacity', () => {
    let now = 0;
    const budget = new ConfirmBudget(50, 50, () => now);
    now += 3_600_000;
    expect(budget.available()).toBe(50);
    // Over an hour at the full rate: what it granted is bounded by rate × time + capacity.
    let granted = 0;
    for (let ms = 0; ms < 10_000; ms += 5) {
      now += 5;
      if (budget.take(3)) granted += 3;
    }
    expect(granted).toBeLessThanOrEqual(50 + 50 * 10);
    expect(granted).toBeGreaterThanOrEqual(50 * 10 - 3);
  });
});

describe('AdaptiveTimeout', () => {
  const ok = (totalMs: number) => ({ class: 'ok' as const, timings: { totalMs } });
  const timedOut = { class: 'tcp_timeout' as const, timings: { totalMs: 100 } };

  it('keeps the configured timeout until the path has a baseline', () => {
    const a = new AdaptiveTimeout();
    for (let i = 0; i < adaptiveMinSamples - 1; i++) {
      a.observe(ok(0.2), 800, 800);
      expect(a.timeoutMs(800)).toBe(800);
    }
    a.observe(ok(0.2), 800, 800);
    expect(a.timeoutMs(800)).toBe(adaptiveFloorMs);
    // A probe riding TCP keeps room for one retransmission.
    expect(a.timeoutMs(800, adaptiveTcpFloorMs)).toBe(adaptiveTcpFloorMs);
    expect(a.timeoutMs(250, adaptiveTcpFloorMs)).toBe(250);
  });

  it('is (srtt + 4·rttvar) × 3, between the floor and the configured timeout', () => {
    const a = new AdaptiveTimeout();
    for (let i = 0; i < 50; i++) a.observe(ok(i % 2 === 0 ? 40 : 50), 800, 800);
    const { srttMs, rttvarMs } = a.state();
    expect(srttMs).toBeGreaterThan(40);
    expect(srttMs).toBeLessThan(50);
    expect(a.timeoutMs(800)).toBe(Math.ceil((srttMs + 4 * rttvarMs) * 3));
    expect(a.timeoutMs(800)).toBeGreaterThan(150);
    expect(a.timeoutMs(800)).toBeLessThan(300);
    expect(a.timeoutMs(120)).toBe(120); // the configured timeout is the ceiling
  });

  it('learns only from successes', () => {
    const a = new AdaptiveTimeout();
    for (let i = 0; i < 10; i++) a.observe(ok(1), 800, 800);
    const before = a.state();
    a.observe({ class: 'tcp_refused', timings: { totalMs: 700 } }, 100, 800);
    a.observe({ class: 'http_status', timings: { totalMs: 700 } }, 100, 800);
    expect(a.state()).toEqual(before);
  });

  it('after a timeout under the shortened timeout, full timeouts until two successes', () => {
    const a = new AdaptiveTimeout();
    for (let i = 0; i < 10; i++) a.observe(ok(1), 800, 800);
    expect(a.timeoutMs(800)).toBe(100);
    a.observe(timedOut, 100, 800);
    expect(a.timeoutMs(800)).toBe(800);
    // Still timing out with the full timeout: stays full (the path is down, not slow).
    a.observe({ class: 'tcp_timeout', timings: { totalMs: 800 } }, 800, 800);
    expect(a.timeoutMs(800)).toBe(800);
    // The first success after it is not sampled: still full timeouts.
    a.observe(ok(300), 800, 800);
    expect(a.state()).toMatchObject({ backedOff: true, samples: 10 });
    expect(a.timeoutMs(800)).toBe(800);
    // A second slow success (the path got slower): the shortened timeout comes back, grown
    // with it.
    a.observe(ok(300), 800, 800);
    expect(a.state()).toMatchObject({ backedOff: false, samples: 11 });
    expect(a.timeoutMs(800)).toBe(800); // (srtt + 4·rttvar) × 3 is past the ceiling now
  });

  it('the first answer after a stall is not the round trip: the timeout is short again at once', () => {
    const a = new AdaptiveTimeout();
    for (let i = 0; i < 10; i++) a.observe(ok(3), 800, 800);
    expect(a.timeoutMs(800, 300)).toBe(300);
    // The service stalls: timeouts, first under the shortened timeout, then in full.
    a.observe(timedOut, 300, 800);
    a.observe({ class: 'protocol_timeout', timings: { totalMs: 800 } }, 800, 800);
    // It thaws: its first answer comes late, as it works through the queued connections…
    a.observe(ok(600), 800, 800);
    expect(a.timeoutMs(800, 300)).toBe(800);
    // …and the next one as ever: the timeout is back at the floor, not near the ceiling.
    a.observe(ok(3), 800, 800);
    expect(a.timeoutMs(800, 300)).toBe(300);
    // Sampled, the late answer kept it at the ceiling for the next several probes.
    const sampled = new AdaptiveTimeout();
    for (let i = 0; i < 10; i++) sampled.observe(ok(3), 800, 800);
    sampled.observe(ok(600), 800, 800);
    sampled.observe(ok(3), 800, 800);
    expect(sampled.timeoutMs(800, 300)).toBe(800);
  });

  it('a timeout with the full timeout does not back off what is not shortened', () => {
    const a = new AdaptiveTimeout();
    a.observe(timedOut, 800, 800);
    expect(a.state().backedOff).toBe(false);
  });
});
