import { describe, expect, it } from 'vitest';
import { localise } from '../../collector/localise/localise.js';
import { DiagnosisSchema, faultKinds } from '../../wire/diagnosis.js';
import { buildInput, loadScenarios } from './scenario.js';

const scenarios = loadScenarios();
const sortedGroups = (gs: readonly (readonly string[])[]): string[][] =>
  gs.map((g) => [...g].sort()).sort((a, b) => a.join().localeCompare(b.join()));

describe('localisation scenarios', () => {
  it('has scenario files whose top hypotheses cover every fault kind but unexplained', () => {
    expect(scenarios.length).toBeGreaterThanOrEqual(40);
    const tops = new Set(scenarios.map(({ scenario }) => scenario.expect.top?.kind));
    expect(faultKinds.filter((k) => !tops.has(k))).toEqual(['unexplained']);
  });

  for (const { file, scenario: s } of scenarios) {
    it(`${file}: ${s.name}`, () => {
      const input = buildInput(s);
      const d = localise(input);
      expect(DiagnosisSchema.safeParse(d).success).toBe(true);
      const shown = JSON.stringify(
        d.hypotheses.map((h) => [h.kind, h.components, h.summary]),
        null,
        1,
      );
      expect(d.healthy, shown).toBe(s.expect.healthy);
      if (s.expect.healthy) expect(d.hypotheses).toEqual([]);

      const top = d.hypotheses[0];
      if (s.expect.top) {
        expect(top?.kind, shown).toBe(s.expect.top.kind);
        if (s.expect.top.components)
          expect(top?.components).toEqual([...s.expect.top.components].sort());
        if (s.expect.top.groups)
          expect(sortedGroups(top?.groups.map((g) => g.members) ?? [])).toEqual(
            sortedGroups(s.expect.top.groups),
          );
        if (s.expect.top.cutLabel) expect(top?.cutLabel).toEqual(s.expect.top.cutLabel);
        expect(top?.summary.length).toBeGreaterThan(20);
        for (const phrase of s.expect.summaryIncludes) expect(top?.summary).toContain(phrase);
        expect(top?.evidence.examples.length).toBeGreaterThan(0);
      }
      if (s.expect.kinds)
        expect(
          d.hypotheses.map((h) => h.kind),
          shown,
        ).toEqual(s.expect.kinds);

      const ruled = Object.fromEntries(d.ruledOut.map((r) => [r.component, r.canBeRuledOut]));
      expect(ruled, JSON.stringify(d.ruledOut, null, 1)).toEqual(s.expect.ruledOut);

      // Hard invariants: the culprit is never ruled out; a network fault never blames a database.
      for (const h of d.hypotheses) {
        if (
          [
            'service_down',
            'service_unresponsive',
            'host_unreachable',
            'source_fault',
            'packet_loss',
          ].includes(h.kind)
        )
          for (const c of h.components) expect(ruled[c]).not.toBe(true);
      }

      // Order of the input changes nothing.
      const reversed = localise({
        ...input,
        paths: [...input.paths].reverse(),
        agents: [...input.agents].reverse(),
        inventory: [...input.inventory].reverse(),
      });
      expect(reversed).toEqual(d);
    });
  }
});
