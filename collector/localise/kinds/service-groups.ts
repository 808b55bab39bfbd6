import type { PathState } from '../../types.js';
import type { Evidence } from '../evidence.js';
import { byName, layerOf, pushTo, sorted } from '../views.js';

/** The service a path probes: its service name, else the second part of its target name. */
export const serviceOf = (p: PathState): string => p.service ?? p.target.split('/')[1] ?? p.kind;

/** Service-layer failures of sound agents toward one service of one component. */
export interface ServiceGroup {
  readonly component: string;
  readonly service: string;
  readonly paths: readonly PathState[];
  /** Sources failing, sorted; sources whose probe of the service passes, sorted. */
  readonly sources: readonly string[];
  readonly okSources: readonly string[];
  readonly refused: number;
  /** No sound agent gets through: every one that probes it fails. */
  readonly fromAll: boolean;
}

const soundRowsCache = new WeakMap<Evidence, Map<string, PathState[]>>();

/** The sound agents' debounced paths to `component`, read once per diagnosis. */
function soundRowsTo(ev: Evidence, components: readonly string[]): Map<string, PathState[]> {
  let cache = soundRowsCache.get(ev);
  if (!cache) {
    cache = new Map();
    soundRowsCache.set(ev, cache);
  }
  const missing = components.filter((c) => !cache.has(c));
  if (missing.length > 0) {
    const fresh = new Map(missing.map((c) => [c, [] as PathState[]]));
    for (const a of ev.sound)
      for (const p of ev.viewOf(a)?.rows ?? [])
        if (p.state !== 'unknown') fresh.get(p.component)?.push(p);
    for (const [c, ps] of fresh) cache.set(c, ps);
  }
  return cache;
}

/** The service-layer failures among `remaining`, by (component, service), in name order. */
export function serviceGroups(ev: Evidence, remaining: readonly PathState[]): ServiceGroup[] {
  const byKey = new Map<string, PathState[]>();
  for (const p of remaining) {
    if (layerOf(p) !== 'service' || !ev.soundSet.has(p.agent)) continue;
    pushTo(byKey, `${p.component}\u0000${serviceOf(p)}`, p);
  }
  if (byKey.size === 0) return [];
  const rows = soundRowsTo(ev, sorted([...byKey.keys()].map((k) => k.split('\u0000')[0] ?? '')));
  return [...byKey]
    .sort(([x], [y]) => byName(x, y))
    .map(([key, ps]) => {
      const [component = '', service = ''] = key.split('\u0000');
      const okAny = sorted(
        (rows.get(component) ?? [])
          .filter(
            (p) =>
              serviceOf(p) === service &&
              p.kind !== 'icmp' &&
              p.state !== 'failing' &&
              ev.soundSet.has(p.agent),
          )
          .map((p) => p.agent),
      );
      const sources = sorted(ps.map((p) => p.agent));
      const failingSources = new Set(sources);
      const okSources = okAny.filter((a) => !failingSources.has(a));
      return {
        component,
        service,
        paths: ps,
        sources,
        okSources,
        refused: ps.filter((p) => p.lastClass === 'tcp_refused').length,
        fromAll: okSources.length === 0,
      };
    });
}
