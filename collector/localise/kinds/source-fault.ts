import type { Rule } from '../candidate.js';
import { sorted } from '../views.js';

/**
 * `source_fault`: one agent fails to reach what every other agent reaches, while they reach
 * its host steadily: its own host's way out (`Evidence.isOwnSourceFault`).
 */
export const sourceFault: Rule = {
  name: 'source-fault',
  kinds: ['source_fault'],
  tier: 'structural',
  propose: (ev) =>
    sorted(ev.sourceFaults)
      .filter((a) => ev.isOwnSourceFault(a))
      .map((a) => {
        const h = ev.host(a);
        const failedHosts = ev.failedBy.get(a)?.length ?? 0;
        return {
          hypothesis: {
            kind: 'source_fault' as const,
            confidence: 0.85,
            summary: `the problem is on ${h} itself: its agent ${a} fails to reach ${failedHosts} hosts that every other agent reaches`,
            components: [h],
            groups: [{ name: 'source', members: [h] }],
          },
          explains: ev.failingOf(a),
        };
      }),
};
