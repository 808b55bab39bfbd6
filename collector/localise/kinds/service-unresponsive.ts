import type { Rule } from '../candidate.js';
import { mtuKind, sorted } from '../views.js';
import type { Evidence } from '../evidence.js';
import { bigAnswerLost, echoLost } from './mtu-mismatch.js';
import { withoutLossy } from './packet-loss.js';
import { hungClasses, queueFull, serviceGroups, type ServiceGroup } from './service-groups.js';

function withoutEchoLoss(ev: Evidence, g: ServiceGroup): ServiceGroup {
  const keep = g.paths.map((p) => {
    if (!bigAnswerLost.has(p.lastClass)) return true;
    const echo = ev
      .viewOf(p.agent)
      ?.pathsTo(p.component)
      .find((q) => q.kind === mtuKind);
    return echo === undefined || !echoLost(echo);
  });
  if (keep.every(Boolean)) return g;
  const paths = g.paths.filter((_, i) => keep[i]);
  const sources = sorted(paths.map((p) => p.agent));
  return { ...g, paths, taken: g.taken.filter((_, i) => keep[i]), sources };
}

/** `service_unresponsive`: TCP connects, but the protocol/HTTP answer times out or is wrong. */
export const serviceUnresponsive: Rule = {
  name: 'service-unresponsive',
  kinds: ['service_unresponsive'],
  tier: 'residual',
  propose: (ev, remaining) => {
    // Answers that time out between hosts whose echoes show loss are that loss (packet_loss).
    const rest = withoutLossy(ev, remaining);
    const queued = queueFull(ev, rest);
    return (
      serviceGroups(ev, rest, queued)
        .filter((g) => g.refused === 0)
        // A big answer lost where the same path's full-size echo is failing too, if only under
        // the debounce yet, is the network's MTU and not the service: left to what explains it.
        .map((g) => withoutEchoLoss(ev, g))
        .filter((g) => g.paths.length > 0)
        .map((g) => {
          const hung = g.paths.some((p) => hungClasses.has(p.lastClass));
          const full = g.taken.some((i) => queued.has(i));
          const n = g.sources.length;
          return {
            hypothesis: {
              kind: 'service_unresponsive' as const,
              confidence: g.fromAll ? 0.9 : 0.65,
              summary: `${g.service} on ${g.component} is ${full ? 'hung: it stopped answering, and its listen queue is full, so new connections time out too' : hung ? 'hung: it accepts connections but never answers' : 'unhealthy: it accepts connections but answers wrongly'} (from ${n} of ${n + g.okSources.length} agents)`,
              components: [g.component],
              groups: [{ name: 'sources', members: sorted(g.sources.map((a) => ev.host(a))) }],
            },
            explains: g.taken,
          };
        })
    );
  },
};
