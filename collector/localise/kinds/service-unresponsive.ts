import type { Rule } from '../candidate.js';
import { sorted } from '../views.js';
import { serviceGroups } from './service-groups.js';

/** `service_unresponsive`: TCP connects, but the protocol/HTTP answer times out or is wrong. */
export const serviceUnresponsive: Rule = {
  name: 'service-unresponsive',
  kinds: ['service_unresponsive'],
  tier: 'residual',
  propose: (ev, remaining) =>
    serviceGroups(ev, remaining)
      .filter((g) => g.refused === 0)
      .map((g) => {
        const hung = g.paths.some(
          (p) => p.lastClass === 'protocol_timeout' || p.lastClass === 'http_timeout',
        );
        const n = g.sources.length;
        return {
          hypothesis: {
            kind: 'service_unresponsive' as const,
            confidence: g.fromAll ? 0.9 : 0.65,
            summary: `${g.service} on ${g.component} is ${hung ? 'hung: it accepts connections but never answers' : 'unhealthy: it accepts connections but answers wrongly'} (from ${n} of ${n + g.okSources.length} agents)`,
            components: [g.component],
            groups: [{ name: 'sources', members: sorted(g.sources.map((a) => ev.host(a))) }],
          },
          explains: g.taken,
        };
      }),
};
