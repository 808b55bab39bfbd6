import type { Rule } from '../candidate.js';
import { layerOf, sorted } from '../views.js';

/** `unexplained`: failures no hypothesis explains without contradiction — better than a wrong answer. */
export const unexplained: Rule = {
  name: 'unexplained',
  kinds: ['unexplained'],
  tier: 'residual',
  propose: (_ev, remaining) => {
    const left = remaining.filter((p) => layerOf(p) !== 'none');
    if (left.length === 0) return [];
    return [
      {
        hypothesis: {
          kind: 'unexplained',
          confidence: 0.3,
          summary: `${left.length} failing paths fit no single fault without contradicting a succeeding one`,
          components: sorted(left.map((p) => p.component)),
          groups: [],
        },
        explains: left,
      },
    ];
  },
};
