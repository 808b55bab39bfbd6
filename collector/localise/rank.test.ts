import { describe, expect, it } from 'vitest';
import type { Candidate } from './candidate.js';
import { search } from './rank.js';

/** Candidates name the failing paths they explain by index. */
function candidate(
  name: string,
  explains: readonly number[],
  more: Partial<Candidate> = {},
): Candidate {
  return {
    hypothesis: {
      kind: 'network_partition',
      confidence: 0.9,
      summary: name,
      components: [name],
      groups: [],
    },
    explains,
    ...more,
  };
}

const names = (cs: readonly Candidate[]): string[] => cs.map((c) => c.hypothesis.summary);
const range = (a: number, b: number): number[] =>
  Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('search', () => {
  it('takes the best joint set where picking the largest first would need a third cause', () => {
    // Greedy takes s1 (6 paths) and then needs s2 and s3 for the rest: three causes for what
    // two explain together.
    const s1 = candidate('s1', range(1, 6));
    const s2 = candidate('s2', [1, 2, 3, 7, 8]);
    const s3 = candidate('s3', [4, 5, 6, 9, 10]);
    expect(names(search([s1, s2, s3], 100))).toEqual(['s2', 's3']);
  });

  it('prefers one cause to two that explain the same paths', () => {
    const one = candidate('one cut of both hosts', [1, 2, 3, 4]);
    const a = candidate('host a', [1, 2]);
    const b = candidate('host b', [3, 4]);
    expect(names(search([a, b, one], 100))).toEqual(['one cut of both hosts']);
  });

  it('keeps a second cause when it explains what the first does not', () => {
    const big = candidate('big', range(1, 8));
    const small = candidate('small', [9]);
    const inside = candidate('inside', [2, 3]);
    expect(names(search([inside, small, big], 100))).toEqual(['big', 'small']);
  });

  it('weighs what a candidate contradicts against what it explains', () => {
    const clean = candidate('clean', [1, 2, 3]);
    const contradicted = candidate('contradicted', [1, 2, 3, 4], { contradicts: 1 });
    expect(names(search([contradicted, clean], 100))).toEqual(['clean']);
  });

  it('breaks a tie between readings of the same paths by prior, whatever the input order', () => {
    const far = candidate('far side cut off', [1, 2, 3]);
    const near = candidate("collector's side cut off", [1, 2, 3], { prior: 2 });
    expect(names(search([far, near], 100))).toEqual(["collector's side cut off"]);
    expect(names(search([near, far], 100))).toEqual(["collector's side cut off"]);
  });

  it('puts forced candidates first and lets nothing else claim their paths', () => {
    const forced = candidate('forced', [1, 2], { first: true, standalone: true });
    const other = candidate('other', [1, 2, 3, 4, 5]);
    expect(names(search([other, forced], 100))).toEqual(['forced', 'other']);
    const empty = candidate('forced, no paths', [], { first: true, standalone: true });
    expect(names(search([empty], 100))).toEqual(['forced, no paths']);
  });

  it('goes on greedily past three causes while each explains something new', () => {
    const cs = range(1, 6).map((i) => candidate(`c${i}`, [i * 10, i * 10 + 1]));
    expect(search(cs, 100)).toHaveLength(6);
  });
});
