import { describe, expect, it } from 'vitest';
import { localise } from '../../collector/localise/localise.js';
import { DiagnosisSchema } from '../../wire/diagnosis.js';
import { generateCases, injectedKinds, scoreCase } from './generate.js';
import type { FaultScore, GeneratedCase } from './generate.js';
import { buildInput } from './scenario.js';

/**
 * The randomised suite of issue 5: faults of every kind injected into generated topologies,
 * scored per kind. With k faults injected together, "top-1" means among the top k hypotheses
 * and "top-3" among the top k + 2.
 */

const cases = generateCases(240, 5);
const scored: { c: GeneratedCase; scores: FaultScore[]; shown: string }[] = cases.map((c) => {
  const d = localise(buildInput(c.scenario));
  expect(DiagnosisSchema.safeParse(d).success).toBe(true);
  const shown = JSON.stringify(
    {
      injected: c.scenario.faults,
      collector: c.scenario.collector,
      hypotheses: d.hypotheses.map((h) => [h.kind, h.components.join(' '), h.summary]),
      ruledOut: d.ruledOut,
    },
    null,
    1,
  );
  return { c, scores: scoreCase(c, d), shown };
});
const all = scored.flatMap((s) => s.scores);

const pct = (xs: readonly FaultScore[], key: keyof Omit<FaultScore, 'variant'>): number =>
  xs.length === 0 ? 1 : xs.filter((x) => x[key]).length / xs.length;

function table(): string {
  const cols = ['faults', 'top-1 kind', 'top-1 comp', 'top-3', 'no svc blame', 'culprit kept'];
  const rows = [...injectedKinds, 'all'].map((variant) => {
    const xs = variant === 'all' ? all : all.filter((s) => s.variant === variant);
    const f = (key: keyof Omit<FaultScore, 'variant'>): string =>
      `${(100 * pct(xs, key)).toFixed(1)}%`;
    return [
      variant,
      String(xs.length),
      f('topKind'),
      f('topComponents'),
      f('top3'),
      f('networkBlamesNoService'),
      f('culpritNotRuledOut'),
    ];
  });
  const widths = [22, ...cols.map((c) => Math.max(c.length, 7))];
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ');
  return [line(['kind', ...cols]), ...rows.map(line)].join('\n');
}

describe('randomised localisation', () => {
  it('injects at least 200 faults of every kind, some together', () => {
    expect(all.length).toBeGreaterThanOrEqual(200);
    for (const k of injectedKinds)
      expect(all.filter((s) => s.variant === k).length).toBeGreaterThan(10);
    expect(cases.filter((c) => c.truths.length > 1).length).toBeGreaterThanOrEqual(40);
    console.log(`\n${table()}\n`);
  });

  it('meets the accuracy thresholds of issue 5', () => {
    const misses = scored
      .filter((s) => s.scores.some((x) => !x.topComponents))
      .slice(0, 3)
      .map((s) => s.shown);
    expect(pct(all, 'topKind'), misses.join('\n')).toBeGreaterThanOrEqual(0.95);
    expect(pct(all, 'topComponents'), misses.join('\n')).toBeGreaterThanOrEqual(0.9);
    expect(pct(all, 'top3'), misses.join('\n')).toBeGreaterThanOrEqual(0.99);
    // No kind may hide behind the others' average.
    for (const k of injectedKinds)
      expect(
        pct(
          all.filter((s) => s.variant === k),
          'top3',
        ),
        k,
      ).toBeGreaterThanOrEqual(0.9);
  });

  it('never lets a network fault blame a database or a service', () => {
    for (const s of scored)
      for (const x of s.scores) expect(x.networkBlamesNoService, s.shown).toBe(true);
  });

  it('never lists a culprit as ruled out', () => {
    for (const s of scored)
      for (const x of s.scores) expect(x.culpritNotRuledOut, s.shown).toBe(true);
  });
});
