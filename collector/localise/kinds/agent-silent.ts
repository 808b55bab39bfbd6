import type { Candidate, Rule } from '../candidate.js';
import { byName } from '../views.js';

/** `agent_silent`: an agent stopped reporting while its host is still reachable from others. */
export const agentSilent: Rule = {
  name: 'agent-silent',
  kinds: ['agent_silent'],
  tier: 'residual',
  propose: (ev, _remaining, chosen) => {
    const explained = new Set(chosen.flatMap((c) => c.silences ?? []));
    const out: Candidate[] = [];
    const silent = ev.agents.filter((a) => a.state === 'silent' && !explained.has(a.agent));
    for (const a of silent.sort((x, y) => byName(x.agent, y.agent))) {
      const h = ev.host(a.agent);
      if (!ev.lit.has(h)) {
        if (ev.triedHosts.has(h)) continue; // cut off or down: explained there
        out.push({
          hypothesis: {
            kind: 'agent_silent',
            confidence: 0.5,
            summary: `agent ${a.agent} stopped reporting and nothing probes ${h}, so whether the host is up is unknown`,
            components: [h],
            groups: [{ members: [h] }],
          },
          explains: [],
          standalone: true,
        });
        continue;
      }
      const reachedBy = ev.sound.filter((b) => ev.reachOf(b, h) === 'yes');
      out.push({
        hypothesis: {
          kind: 'agent_silent',
          confidence: 0.9,
          summary: `agent ${a.agent} stopped reporting while ${h} still answers ${reachedBy.length} other agents: the agent process or its way to the collector, not the host`,
          components: [h],
          groups: [{ members: [h] }],
        },
        explains: [],
        quotes: ev.pathsTo(h).filter((p) => p.state !== 'failing'),
        standalone: true,
        sinceMs: Math.round(a.lastSeenMs),
      });
    }
    return out;
  },
};
