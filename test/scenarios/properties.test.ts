import { describe, expect, it } from 'vitest';
import { localise } from '../../collector/localise/localise.js';
import { generateCases } from './generate.js';
import { buildInput } from './scenario.js';
import { rng } from '../../lib/prng.js';

/** Seeded Fisher–Yates shuffle. */
function shuffle<T>(xs: readonly T[], random: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('localisation properties', () => {
  it('raises nothing on generated healthy matrices with noise under the debounce', () => {
    const cases = generateCases(60, 11);
    for (const [i, c] of cases.entries()) {
      const noise = 0.005 + (i % 4) * 0.005;
      const s = { ...c.scenario, faults: [], noise, seed: i + 1 };
      const input = buildInput(s);
      // The noise is really there: some ok paths lost a probe.
      if (i === 0) expect(input.paths.some((p) => p.consecutiveFailures === 1)).toBe(true);
      const d = localise(input);
      expect(d, `${c.id} noise ${noise}`).toMatchObject({
        healthy: true,
        hypotheses: [],
        ruledOut: [],
      });
    }
  });

  it('gives the same diagnosis whatever the order of agents, paths and inventory', () => {
    const cases = generateCases(60, 12);
    const random = rng(12);
    for (const c of cases) {
      const input = buildInput(c.scenario);
      const d = localise(input);
      expect(d.healthy).toBe(false);
      for (let k = 0; k < 3; k++) {
        const again = localise({
          ...input,
          paths: shuffle(input.paths, random),
          agents: shuffle(input.agents, random),
          inventory: shuffle(input.inventory, random),
        });
        expect(again, c.id).toEqual(d);
      }
    }
  });
});
