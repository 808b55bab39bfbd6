import { describe, expect, it } from 'vitest';
import { localise } from '../../collector/localise/localise.js';
import { DiagnosisSchema } from '../../wire/diagnosis.js';
import { describeCase, generateCases, injectedKinds, scoreCase } from './generate.js';
import type { FaultScore, InjectedKind } from './generate.js';
import { brokenInvariants, buildInput, world } from './scenario.js';

/**
 * The randomised suite of issues 5 and 12: faults of every shape injected into generated
 * topologies with the collector placed anywhere, scored per shape. With k faults injected
 * together, "top-1" means among the top k hypotheses and "top-3" among the top k + 2.
 */

const perVariant = 32;
const cases = generateCases(perVariant * injectedKinds.length, 5);
const scored = cases.map((c) => {
  const input = buildInput(c.scenario);
  const d = localise(input);
  return {
    c,
    d,
    valid: DiagnosisSchema.safeParse(d).success,
    scores: scoreCase(c, d, input),
    broken: brokenInvariants(world(c.scenario), input, d),
  };
});
const all = scored.flatMap((s) => s.scores);

type Key = keyof Omit<FaultScore, 'variant'>;
const pct = (xs: readonly FaultScore[], key: Key): number =>
  xs.length === 0 ? 1 : xs.filter((x) => x[key]).length / xs.length;
const ofVariant = (v: InjectedKind): FaultScore[] => all.filter((s) => s.variant === v);

const columns: [string, Key][] = [
  ['top-1 kind', 'topKind'],
  ['top-1 comp', 'topComponents'],
  ['top-3', 'top3'],
  ['no svc blame', 'networkBlamesNoService'],
  ['culprit kept', 'culpritNotRuledOut'],
  ['(a) far kept', 'farSideNotBlamed'],
  ['(b) mtu≠svc', 'mtuNotServiceFault'],
];

function table(): string {
  const rows = [...injectedKinds, 'all'].map((variant) => {
    const xs = variant === 'all' ? all : ofVariant(variant as InjectedKind);
    return [
      variant,
      String(xs.length),
      ...columns.map(([, key]) => `${(100 * pct(xs, key)).toFixed(1)}%`),
    ];
  });
  const head = ['kind', 'faults', ...columns.map(([name]) => name)];
  const widths = [22, ...head.slice(1).map((c) => Math.max(c.length, 7))];
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** The first misses of each shape, printed whole: expected against actual. */
function misses(key: Key, perShape = 2, variants: readonly InjectedKind[] = injectedKinds): string {
  const out: string[] = [];
  for (const v of variants) {
    const bad = scored.filter((s) => s.scores.some((x) => x.variant === v && !x[key]));
    if (bad.length === 0) continue;
    out.push(`── ${v}: ${bad.length} case(s) miss ${key}`);
    for (const s of bad.slice(0, perShape)) out.push(describeCase(s.c, s.d));
  }
  return out.join('\n');
}

/** No case breaks the invariant whose message starts with `prefix`; the first few printed if one does. */
function expectNoneBroken(prefix: string): void {
  const bad = scored.filter((s) => s.broken.some((b) => b.startsWith(prefix)));
  expect(
    bad.length,
    bad
      .slice(0, 6)
      .map((s) => `${describeCase(s.c, s.d)}\n  broken: ${s.broken.join('\n  broken: ')}`)
      .join('\n'),
  ).toBe(0);
}

describe('randomised localisation', () => {
  it('injects faults of every shape, some together, and prints the per-shape table', () => {
    console.log(`\n${table()}\n`);
    expect(all.length).toBeGreaterThanOrEqual(500);
    for (const k of injectedKinds) expect(ofVariant(k).length, k).toBeGreaterThan(15);
    expect(cases.filter((c) => c.truths.length > 1).length).toBeGreaterThanOrEqual(100);
    expect(cases.filter((c) => c.truths.length > 2).length).toBeGreaterThanOrEqual(40);
    // The collector stands everywhere: on a host with its agent, on one without, on none.
    const places = new Set(
      cases.map(({ scenario: { collector: c, components } }) =>
        c.hearsAll
          ? 'hears all'
          : c.host === undefined
            ? 'no host'
            : components.find((x) => x.name === c.host)?.agent === false
              ? 'host without agent'
              : 'host with agent',
      ),
    );
    expect([...places].sort()).toEqual([
      'hears all',
      'host with agent',
      'host without agent',
      'no host',
    ]);
    for (const s of scored) expect(s.valid, s.c.id).toBe(true);
  });

  it('meets the accuracy thresholds of issue 5', () => {
    expect(pct(all, 'topKind'), misses('topKind')).toBeGreaterThanOrEqual(0.95);
    expect(pct(all, 'topComponents'), misses('topComponents')).toBeGreaterThanOrEqual(0.9);
    expect(pct(all, 'top3'), misses('top3')).toBeGreaterThanOrEqual(0.99);
    // No shape may hide behind the others' average.
    const weak = injectedKinds.filter((k) => pct(ofVariant(k), 'top3') < 0.9);
    expect(weak, `shapes under 90% top-3:\n${misses('top3', 2, weak)}`).toEqual([]);
  });

  it('never lets a network fault blame a database or a service', () => {
    expect(pct(all, 'networkBlamesNoService'), misses('networkBlamesNoService', 3)).toBe(1);
  });

  it('never lists a culprit as ruled out', () => {
    expect(pct(all, 'culpritNotRuledOut'), misses('culpritNotRuledOut', 3)).toBe(1);
  });

  it("(a) never blames a far-side host when the collector's side is cut off", () => {
    expectNoneBroken('(a)');
  });

  it('(b) never reports an MTU mismatch as a service fault', () => {
    expectNoneBroken('(b)');
  });

  it('a smaller MTU beside two lossy links (one flapping) is mtu_mismatch, not loss of the host probed across both', () => {
    // Cases of other seeds where every host probed from both lossy links joined two lossy
    // pairs, and the one whose full-size echoes a smaller MTU lost read as a third lossy link.
    const ids = ['18-114', '25-99', '53-114', '53-137', '88-434', '102-53', '123-137', '158-358'];
    const picked = ids.flatMap((id) => {
      const [seed = 0, i = 0] = id.split('-').map(Number);
      return generateCases(i + 1, seed, i);
    });
    expect(picked.map((c) => c.id).sort()).toEqual([...ids].sort());
    for (const c of picked) {
      expect(c.truths.some((t) => t.kind === 'mtu_mismatch')).toBe(true);
      expect(c.truths.filter((t) => t.kind === 'packet_loss')).toHaveLength(2);
      const input = buildInput(c.scenario);
      const d = localise(input);
      for (const x of scoreCase(c, d, input))
        expect(x.topKind && x.topComponents, describeCase(c, d)).toBe(true);
    }
  });
});

/**
 * The same suite over other seeds, on demand (it takes minutes):
 * `FAULTLINE_SEEDS=40 npx vitest run test/scenarios/random.test.ts` prints, per seed, the
 * share of faults whose kind and components are in the top k, and the invariants broken.
 */
const moreSeeds = Number(process.env.FAULTLINE_SEEDS ?? 0);
describe.runIf(moreSeeds > 0)('randomised localisation over other seeds', () => {
  it(`keeps its accuracy over ${moreSeeds} other seeds`, () => {
    const rows: string[] = [];
    let worst = 1;
    for (let seed = 1; seed <= moreSeeds; seed++) {
      const xs: FaultScore[] = [];
      let broken = 0;
      for (const c of generateCases(perVariant * injectedKinds.length, 1000 + seed)) {
        const input = buildInput(c.scenario);
        const d = localise(input);
        xs.push(...scoreCase(c, d, input));
        if (brokenInvariants(world(c.scenario), input, d).length > 0) broken++;
      }
      const share = pct(xs, 'topComponents');
      worst = Math.min(worst, pct(xs, 'topKind'), share);
      rows.push(
        `seed ${1000 + seed}: ${xs.length} faults, top-1 kind ${(100 * pct(xs, 'topKind')).toFixed(1)}%, comp ${(100 * share).toFixed(1)}%, top-3 ${(100 * pct(xs, 'top3')).toFixed(1)}%, cases breaking an invariant ${broken}`,
      );
    }
    console.log(rows.join('\n'));
    expect(worst).toBeGreaterThanOrEqual(0.95);
  }, 3_600_000);
});
