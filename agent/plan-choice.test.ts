import { describe, expect, it } from 'vitest';
import type { Plan } from '../wire/plan.js';
import { newestPlan } from './plan-choice.js';

function plan(version: string, generatedAtMs: number): Plan {
  return {
    version,
    agent: 'a1',
    generatedAtMs,
    refreshIntervalMs: 30_000,
    reportIntervalMs: 1000,
    targets: [],
  };
}

describe('newestPlan', () => {
  it.each([
    { what: 'no collector served one', plans: [undefined, undefined], want: undefined },
    { what: 'only one collector served one', plans: [undefined, plan('b', 5)], want: 'b' },
    {
      what: 'the later generatedAtMs wins, in any order',
      plans: [plan('a', 9), plan('b', 5)],
      want: 'a',
    },
    {
      what: 'the later generatedAtMs wins (reversed)',
      plans: [plan('b', 5), plan('a', 9)],
      want: 'a',
    },
    {
      what: 'a tie is broken by version, the same on every agent',
      plans: [plan('x1', 5), plan('x2', 5)],
      want: 'x2',
    },
    { what: 'the same version from both', plans: [plan('v', 5), plan('v', 5)], want: 'v' },
  ])('$what', ({ plans, want }) => {
    expect(newestPlan(plans)?.version).toBe(want);
  });
});
