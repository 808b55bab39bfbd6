import type { Rule } from '../candidate.js';
import { layerOf, sorted } from '../views.js';

/** `unexplained`: failures no hypothesis explains without contradiction — better than a wrong answer. */
export const unexplained: Rule = {
  name: 'unexplained',
  kinds: ['unexplained'],
  tier: 'residual',
  propose: (ev, remaining) => {
    const taken = ev.pick((p) => layerOf(p) !== 'none', remaining);
    if (taken.length === 0) return [];
    const left = taken.map((i) => ev.path(i));
    return [
      {
        hypothesis: {
          kind: 'unexplained',
          confidence: 0.3,
          summary: `${left.length} failing paths fit no single fault without contradicting a succeeding one`,
          components: sorted(left.map((p) => p.component)),
          groups: [],
        },
        explains: taken,
      },
    ];
  },
};
