import { describe, expect, it } from 'vitest';
import { localise } from '../../collector/localise/localise.js';
import { DiagnosisSchema, faultKinds } from '../../wire/diagnosis.js';
import type { Diagnosis } from '../../wire/diagnosis.js';
import { brokenInvariants, buildInput, loadScenarios, world } from './scenario.js';
import type { Scenario } from './scenario.js';

const scenarios = loadScenarios();
const sortedGroups = (gs: readonly (readonly string[])[]): string[][] =>
  gs.map((g) => [...g].sort()).sort((a, b) => a.join().localeCompare(b.join()));

/** What a failure prints: the scenario, what it expects at the top, what came out. */
function shown(file: string, s: Scenario, d: Diagnosis): string {
  const top = s.expect.top;
  return [
    `${file}: ${s.name}`,
    `expected top: ${top ? `${top.kind} [${(top.components ?? ['…']).join(', ')}]${top.collectorCutOff ? ' collectorCutOff' : ''}` : '(none)'}${s.expect.kinds ? `; kinds ${s.expect.kinds.join(', ')}` : ''}`,
    'actual:',
    ...d.hypotheses.map(
      (h, i) =>
        `  ${i + 1}. ${h.kind} [${h.components.join(', ')}]${h.collectorCutOff ? ' collectorCutOff' : ''}${h.cutLabel ? ` ${h.cutLabel.key}=${h.cutLabel.values.join(',')}` : ''}: ${h.summary}`,
    ),
    `ruledOut: ${d.ruledOut.map((r) => `${r.component}=${r.canBeRuledOut}`).join(', ') || '(none)'}`,
  ].join('\n');
}

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
      const why = shown(file, s, d);
      expect(d.healthy, why).toBe(s.expect.healthy);
      if (s.expect.healthy) expect(d.hypotheses, why).toEqual([]);

      const top = d.hypotheses[0];
      if (s.expect.top) {
        expect(top?.kind, why).toBe(s.expect.top.kind);
        if (s.expect.top.components)
          expect(top?.components, why).toEqual([...s.expect.top.components].sort());
        if (s.expect.top.groups)
          expect(sortedGroups(top?.groups.map((g) => g.members) ?? []), why).toEqual(
            sortedGroups(s.expect.top.groups),
          );
        if (s.expect.top.cutLabel) expect(top?.cutLabel, why).toEqual(s.expect.top.cutLabel);
        if (s.expect.top.collectorCutOff !== undefined)
          expect(top?.collectorCutOff === true, why).toBe(s.expect.top.collectorCutOff);
        expect(top?.summary.length, why).toBeGreaterThan(20);
        for (const phrase of s.expect.summaryIncludes) expect(top?.summary, why).toContain(phrase);
        if (s.expect.summaryStartsWith !== undefined)
          expect(top?.summary.startsWith(s.expect.summaryStartsWith), why).toBe(true);
        expect(top?.evidence.examples.length, why).toBeGreaterThan(0);
      }
      if (s.expect.kinds)
        expect(
          d.hypotheses.map((h) => h.kind),
          why,
        ).toEqual(s.expect.kinds);
      for (const want of s.expect.contains)
        expect(
          d.hypotheses.some(
            (h) =>
              h.kind === want.kind &&
              (want.components === undefined ||
                h.components.join() === [...want.components].sort().join()),
          ),
          `${why}\nmissing: ${want.kind} [${want.components?.join(', ') ?? '…'}]`,
        ).toBe(true);

      const ruled = Object.fromEntries(d.ruledOut.map((r) => [r.component, r.canBeRuledOut]));
      if (s.expect.ruledOut !== undefined || s.expect.healthy)
        expect(ruled, why).toEqual(s.expect.ruledOut ?? {});
      for (const c of s.expect.notRuledOut)
        expect(ruled[c], `${why}\n${c} ruled out`).not.toBe(true);

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
          for (const c of h.components) expect(ruled[c], why).not.toBe(true);
      }
      // Issue 12's: nothing blamed behind the collector's own cut; no MTU as a service fault.
      expect(brokenInvariants(world(s), input, d), why).toEqual([]);

      // Order of the input changes nothing.
      const reversed = localise({
        ...input,
        paths: [...input.paths].reverse(),
        agents: [...input.agents].reverse(),
        inventory: [...input.inventory].reverse(),
      });
      expect(reversed, why).toEqual(d);
    });
  }
});
