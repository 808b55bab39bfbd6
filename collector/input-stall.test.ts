import { describe, expect, it } from 'vitest';
import type { Diagnosis } from '../wire/diagnosis.js';
import { DiagnosisSchema } from '../wire/diagnosis.js';
import { DeafSpans, inputBlindAfterMs, withInputStall } from './input-stall.js';

const held: Diagnosis = {
  healthy: false,
  hypotheses: [
    {
      kind: 'service_down',
      confidence: 0.9,
      summary: 'db-1 refuses postgres',
      components: ['db-1'],
      groups: [],
      evidence: { counts: {}, examples: [] },
      since: 1_000,
    },
  ],
  ruledOut: [],
  computedAtMs: 5_000,
};
const stall = {
  sinceMs: 10_000,
  reason: 'the report stream FAULTLINE_REPORTS does not answer: TIMEOUT',
};
const observer = { host: 'ctl-b', agents: ['ctl-b'] };
const hosts = ['db-1', 'ctl-a', 'ctl-b', 'app-2'];

describe('withInputStall: the diagnosis while reports cannot reach the collector', () => {
  it('is the localiser’s, unchanged, with no stall or before blindAfter', () => {
    expect(withInputStall(held, undefined, observer, hosts, 99_000)).toBe(held);
    expect(withInputStall(held, stall, observer, hosts, 10_000 + inputBlindAfterMs - 1)).toBe(held);
    expect(withInputStall(held, stall, observer, hosts, 12_000, 3_000)).toBe(held);
  });

  it('after blindAfter puts the collector’s own isolation first, naming why, and keeps what it held', () => {
    const d = withInputStall(held, stall, observer, hosts, 13_000, 3_000);
    expect(DiagnosisSchema.parse(d)).toEqual(d);
    expect(d.healthy).toBe(false);
    expect(d.hypotheses.map((h) => h.kind)).toEqual(['network_partition', 'service_down']);
    const [blind] = d.hypotheses;
    expect(blind).toMatchObject({
      collectorCutOff: true,
      components: ['ctl-b'],
      groups: [
        { name: 'collector side', members: ['ctl-b'] },
        { name: 'far side (unseen)', members: ['app-2', 'ctl-a', 'db-1'] },
      ],
      since: 10_000,
      evidence: { examples: [stall.reason] },
    });
    expect(blind?.summary).toContain(
      'reports have not reached the collector on ctl-b for over 3 s',
    );
    expect(blind?.summary).toContain(stall.reason);
  });

  it('names no side when the collector stands on no inventory host', () => {
    const d = withInputStall(held, stall, {}, hosts, 40_000);
    expect(d.hypotheses[0]).toMatchObject({ components: [], collectorCutOff: true });
    expect(d.hypotheses[0]?.summary).toMatch(
      /^reports have not reached the collector for over 20 s/,
    );
  });
});

describe('DeafSpans: the time reports could not reach the collector', () => {
  it('counts the stalls that overlap a stretch, the one going on up to now', () => {
    const d = new DeafSpans();
    expect(d.deafMs(0, 10_000)).toBe(0);
    d.begin(1_000);
    d.begin(1_500); // the same stall, seen again: no second span
    expect(d.deafMs(0, 4_000)).toBe(3_000);
    expect(d.deafMs(2_000, 4_000)).toBe(2_000);
    d.end(5_000);
    d.end(6_000); // over already: nothing changes
    expect(d.deafMs(0, 9_000)).toBe(4_000);
    d.begin(7_000);
    d.end(7_500);
    expect(d.deafMs(0, 9_000)).toBe(4_500);
    expect(d.deafMs(4_000, 9_000)).toBe(1_500);
    expect(d.deafMs(8_000, 9_000)).toBe(0);
  });

  it('keeps a bounded number of stalls, and none ended over an hour ago', () => {
    const d = new DeafSpans();
    for (let i = 0; i < DeafSpans.maxSpans + 10; i++) {
      d.begin(i * 1_000);
      d.end(i * 1_000 + 100);
    }
    expect(d.deafMs(0, 1e9)).toBe(DeafSpans.maxSpans * 100);
    d.begin(10_000_000);
    d.end(10_000_100);
    expect(d.deafMs(0, 1e9)).toBe(100);
  });
});
