import type { Candidate, Rule } from '../candidate.js';
import { darkClusterPaths } from './partition.js';

/**
 * `host_unreachable`: one host no reporting agent reaches at any layer — down, or cut off
 * alone. A host that went dark together with others is their partition's (partition.ts).
 */
export const hostUnreachable: Rule = {
  name: 'host-unreachable',
  kinds: ['host_unreachable'],
  tier: 'structural',
  propose: (ev) => {
    const out: Candidate[] = [];
    for (const members of ev.darkClusters) {
      if (members.length !== 1) continue;
      const h = members[0] ?? '';
      const taken = darkClusterPaths(ev, members);
      if (taken.length === 0) continue;
      const paths = taken.map((i) => ev.path(i));
      const own = paths.filter((p) => ev.host(p.agent) === h);
      const sources = new Set(paths.filter((p) => p.component === h).map((p) => p.agent));
      // The collector's own agents alone losing a far host, while other agents that probe it
      // are still to report (their paths to it neither lost nor answered since): that is the
      // collector's vantage (its side being cut off), not the host. Where no other agent
      // probes the host, the local agents' word is all there is, and it stands.
      const local = ev.observer.agents;
      if (
        own.length === 0 &&
        sources.size > 0 &&
        [...sources].every((a) => local.includes(a)) &&
        ev.sound.some(
          (a) =>
            !local.includes(a) &&
            !sources.has(a) &&
            ev.host(a) !== h &&
            (ev.viewOf(a)?.pathsTo(h).length ?? 0) > 0,
        )
      )
        continue;
      const agentsOn = ev.inventory.filter((c) => c.name === h).map((c) => c.agent ?? c.name);
      const silent = agentsOn.length > 0 && agentsOn.every((a) => !ev.isLive(a));
      const summary =
        own.length > 0
          ? `${h} is cut off: it reaches none of the hosts others reach, and none of ${sources.size} agents reach it`
          : `${h} does not answer at any layer from any of the ${sources.size} reporting agents: down or cut off alone${silent ? ` — the two can't be told apart until its agent's spooled reports arrive` : ''}`;
      out.push({
        hypothesis: {
          kind: 'host_unreachable',
          confidence: own.length > 0 ? 0.85 : 0.8,
          summary,
          components: [h],
          groups: [{ members: [h] }],
        },
        explains: taken,
        silences: agentsOn.filter((a) => !ev.isLive(a)),
        prior: 1,
      });
    }
    return out;
  },
};
