import type { Rule } from '../candidate.js';
import { list } from '../text.js';
import { layerOf, sorted } from '../views.js';

/** `dns_failure`: names fail to resolve while the addresses behind them are reachable. */
export const dnsFailure: Rule = {
  name: 'dns-failure',
  kinds: ['dns_failure'],
  tier: 'residual',
  propose: (ev, remaining) => {
    const taken = ev.pick((p) => ev.soundSet.has(p.agent) && layerOf(p) === 'dns', remaining);
    if (taken.length === 0) return [];
    const fails = taken.map((i) => ev.path(i));
    const targets = sorted(fails.map((p) => p.component));
    const sources = sorted(fails.map((p) => p.agent));
    const answering = targets.filter((t) => ev.lit.has(t));
    return [
      {
        hypothesis: {
          kind: 'dns_failure',
          confidence: answering.length === targets.length ? 0.85 : 0.6,
          summary: fails.every((p) => p.kind === 'dns')
            ? `the DNS server on ${list(targets)} does not resolve for ${sources.length} agents${answering.length > 0 ? ' while its host answers' : ''}: the resolver, not the network`
            : `names of ${list(targets)} fail to resolve from ${list(sources)}${answering.length > 0 ? ' while the hosts answer at their addresses' : ''}: check the resolver`,
          components: targets,
          groups: [{ name: 'sources', members: sorted(sources.map((a) => ev.host(a))) }],
        },
        explains: taken,
      },
    ];
  },
};
