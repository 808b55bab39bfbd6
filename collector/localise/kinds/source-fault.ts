import type { Rule } from '../candidate.js';
import type { Evidence } from '../evidence.js';
import { sorted } from '../views.js';

/** An agent's failing paths: its slice of `ev.failing`. */
function ownFailing(ev: Evidence, agent: string): number[] {
  const offset = ev.failingOffset(agent) ?? 0;
  return (ev.viewOf(agent)?.failing ?? []).map((_, i) => offset + i);
}

/** `source_fault`: one agent fails to reach what every other agent reaches: its own host. */
export const sourceFault: Rule = {
  name: 'source-fault',
  kinds: ['source_fault'],
  tier: 'structural',
  propose: (ev) =>
    sorted(ev.sourceFaults).map((a) => {
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
        explains: ownFailing(ev, a),
      };
    }),
};
