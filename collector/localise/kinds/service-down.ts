import type { Rule } from '../candidate.js';
import { sorted } from '../views.js';
import { serviceGroups } from './service-groups.js';

/** `service_down`: the host answers, the service's port refuses every agent (RST). */
export const serviceDown: Rule = {
  name: 'service-down',
  kinds: ['service_down'],
  tier: 'residual',
  propose: (ev, remaining) =>
    serviceGroups(ev, remaining)
      .filter((g) => g.refused > 0 && g.fromAll)
      .map((g) => ({
        hypothesis: {
          kind: 'service_down' as const,
          confidence: 0.95,
          summary: `${g.service} on ${g.component} is down: the host answers, but the port refuses connections from all ${g.sources.length} agents`,
          components: [g.component],
          groups: [{ name: 'sources', members: sorted(g.sources.map((a) => ev.host(a))) }],
        },
        explains: g.taken,
      })),
};
