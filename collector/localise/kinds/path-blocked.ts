import { echoKinds } from '../../../probes/registry.js';
import type { Rule } from '../candidate.js';
import { sharedLabel } from '../sides.js';
import { list } from '../text.js';
import { byName, layerOf, pushTo, sorted } from '../views.js';
import { withoutLossy } from './packet-loss.js';
import { serviceGroups, serviceOf } from './service-groups.js';

/**
 * `path_blocked`: some sources fail to a target at TCP/ICMP (or are refused) while others
 * get through — a filter or route on those paths. Targets failing from the same sources are
 * one hypothesis.
 */
export const pathBlocked: Rule = {
  name: 'path-blocked',
  kinds: ['path_blocked'],
  tier: 'residual',
  propose: (ev, remaining) => {
    // Refusals from some sources only, then network failures inside a group.
    const refusedSome = serviceGroups(ev, remaining)
      .filter((g) => g.refused > 0 && !g.fromAll)
      .flatMap((g) => g.taken);
    // Network failures between hosts whose echoes get through with loss are that loss
    // (packet_loss takes them), not a filter.
    const rest = [
      ...refusedSome,
      ...ev.pick(
        (p) => ev.soundSet.has(p.agent) && layerOf(p) === 'network',
        withoutLossy(ev, remaining),
      ),
    ];
    const byTarget = new Map<string, number[]>();
    for (const i of rest) pushTo(byTarget, ev.path(i).component, i);
    const merged = new Map<string, { targets: string[]; services: Set<string>; ps: number[] }>();
    for (const [target, ids] of [...byTarget].sort(([x], [y]) => byName(x, y))) {
      const ps = ids.map((i) => ev.path(i));
      const key = sorted(ps.map((p) => p.agent)).join(',');
      const m = merged.get(key) ?? { targets: [], services: new Set<string>(), ps: [] };
      m.targets.push(target);
      for (const p of ps) m.services.add(echoKinds.has(p.kind) ? p.kind : serviceOf(p));
      m.ps.push(...ids);
      merged.set(key, m);
    }
    return [...merged].map(([key, m]) => {
      const sources = key.split(',');
      const blockedSources = new Set(sources);
      const succeeding = ev.sound.filter(
        (a) => !blockedSources.has(a) && m.targets.some((t) => ev.reachOf(a, t) === 'yes'),
      );
      const shared = sharedLabel(
        sources.map((a) => ev.host(a)),
        succeeding.map((a) => ev.host(a)),
        (h) => ev.labelsOf(h),
      );
      const what = [...m.services].sort(byName).join(', ');
      return {
        hypothesis: {
          kind: 'path_blocked' as const,
          confidence: shared ? 0.85 : 0.75,
          summary: `paths from ${list(sources)}${shared ? ` (all ${shared.key} ${shared.values.join(', ')})` : ''} to ${list(m.targets)} (${what}) are blocked while ${succeeding.length > 0 ? `${succeeding.length} other agents get through` : 'the host answers otherwise'}: a filter or route on those paths`,
          components: sorted(m.targets),
          groups: [{ name: 'blocked sources', members: sorted(sources.map((a) => ev.host(a))) }],
          ...(shared ? { cutLabel: shared } : {}),
        },
        explains: m.ps,
      };
    });
  },
};
