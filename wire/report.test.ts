import { describe, expect, it } from 'vitest';
import { fastCheck } from './fast-check.js';
import { PlanTargetSchema } from './plan.js';
import { ReportBatchSchema, type ReportBatch } from './report.js';

const base: ReportBatch = {
  agentId: 'agent-id-0001',
  agent: 'app-1',
  seq: 1,
  createdAtMs: 1_700_000_000_000,
  results: [],
  summaries: [],
};
const isValid = fastCheck(ReportBatchSchema);

describe('report batch labels', () => {
  it.each([
    [
      'an escape sequence in a value',
      { zone: 'a\u001b[2J' },
      ['labels', 'zone'],
      /control characters/,
    ],
    ['a newline in a value', { zone: 'a\nlevel=error' }, ['labels', 'zone'], /control characters/],
    ['a C1 control in a value', { zone: 'a\u0085' }, ['labels', 'zone'], /control characters/],
    ['a NUL in a name', { 'zo\u0000ne': 'a' }, ['labels', 'zo\u0000ne'], /control characters/],
    ['a value over 256 characters', { zone: 'a'.repeat(257) }, ['labels', 'zone'], /256/],
    ['a name over 64 characters', { ['n'.repeat(65)]: 'a' }, ['labels', 'n'.repeat(65)], /64/],
  ])('%s is refused by both checks, naming the key', (_what, labels, path, message) => {
    const batch = { ...base, labels };
    expect(isValid(batch)).toBe(false);
    const r = ReportBatchSchema.safeParse(batch);
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(path);
    // A bad key is zod's "Invalid key in record" with the reason nested inside.
    expect(JSON.stringify(r.error?.issues)).toMatch(message);
  });

  it('takes printable labels, any script', () => {
    const batch = { ...base, labels: { zone: 'eu-west-1a', rack: 'Zürich 3 — 東' } };
    expect(isValid(batch)).toBe(true);
    expect(ReportBatchSchema.safeParse(batch).success).toBe(true);
  });
});

describe('plan labels', () => {
  it('refuses a control character in a target label', () => {
    const target = {
      name: 'db-1/tcp',
      component: 'db-1',
      kind: 'tcp',
      address: '10.0.0.1:5432',
      intervalMs: 1000,
      timeoutMs: 800,
      options: {},
      labels: { zone: 'b\u001b]0;pwned\u0007' },
    };
    expect(PlanTargetSchema.safeParse({ ...target, labels: { zone: 'b' } }).success).toBe(true);
    const r = PlanTargetSchema.safeParse(target);
    expect(r.success).toBe(false);
    expect(r.error?.issues.some((i) => i.path.join('.') === 'labels.zone')).toBe(true);
  });
});
