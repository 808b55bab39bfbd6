import { echoKinds } from '../../../probes/registry.js';
import type { PathState } from '../../types.js';
import type { Evidence } from '../evidence.js';
import type { AgentView } from '../views.js';
import { byName, layerOf, pushTo, sorted } from '../views.js';

/** The service a path probes: its service name, else the second part of its target name. */
export const serviceOf = (p: PathState): string => p.service ?? p.target.split('/')[1] ?? p.kind;

/** Service-layer failures of sound agents toward one service of one component. */
export interface ServiceGroup {
  readonly component: string;
  readonly service: string;
  readonly paths: readonly PathState[];
  /** Their indices in `ev.failing`. */
  readonly taken: readonly number[];
  /** Sources failing, sorted; sources whose probe of the service passes, sorted. */
  readonly sources: readonly string[];
  readonly okSources: readonly string[];
  readonly refused: number;
  /** No sound agent gets through: every one that probes it fails. */
  readonly fromAll: boolean;
}

const noneAlso: ReadonlySet<number> = new Set();

/** Answers that time out after the connect: the service accepts, then never answers. */
export const hungClasses: ReadonlySet<string> = new Set(['protocol_timeout', 'http_timeout']);

/**
 * A path that began failing with a hung answer and now times out at the connect (also
 * while those timeouts are under the debounce of a class change: `firstClass` says so).
 * One failure, not a hung answer in the window before a new one: a filter that follows a
 * freeze's heal is a filter.
 */
const hungThenFull = (p: PathState): boolean =>
  p.state === 'failing' &&
  p.lastClass === 'tcp_timeout' &&
  p.firstClass !== undefined &&
  hungClasses.has(p.firstClass);

/**
 * Connects that time out to a service that hung: among `remaining`, the paths to a service
 * whose connects now time out (`tcp_timeout`), from a source the host answers otherwise,
 * where a path to the same service — this one or another agent's — began failing with an
 * answer that timed out after the connect and times out at the connect now. A hung service
 * stops accepting connections once its listen queue is full (the kernel then drops the
 * SYNs), and its paths turn from hung answers to connect timeouts: the same fault, not a
 * filter appearing on its port. (A hung answer alone is not enough: big answers lost to a
 * smaller MTU time out the same way.)
 */
export function queueFull(ev: Evidence, remaining: readonly number[]): Set<number> {
  const out = new Set<number>();
  let hung: Set<string> | undefined;
  for (const i of remaining) {
    const p = ev.path(i);
    if (p.state !== 'failing' || p.lastClass !== 'tcp_timeout' || echoKinds.has(p.kind)) continue;
    if (!ev.soundSet.has(p.agent) || ev.reachOf(p.agent, p.component) !== 'yes') continue;
    if (hung === undefined) {
      hung = new Set();
      for (const q of ev.failing)
        if (hungThenFull(q)) hung.add(`${q.component}\u0000${serviceOf(q)}`);
    }
    if (hung.has(`${p.component}\u0000${serviceOf(p)}`)) out.add(i);
  }
  return out;
}

const okCache = new WeakMap<AgentView, Map<string, ReadonlySet<string>>>();

/**
 * The services of `component` one agent's probes get through to (any layer but icmp), read
 * once per change of its view: a diagnosis asks it of every sound agent.
 */
function servicesOk(v: AgentView | undefined, component: string): ReadonlySet<string> {
  if (v === undefined) return new Set();
  let byComponent = okCache.get(v);
  if (byComponent === undefined) {
    byComponent = new Map();
    okCache.set(v, byComponent);
  }
  let ok = byComponent.get(component);
  if (ok === undefined) {
    const set = new Set<string>();
    for (const p of v.pathsTo(component))
      if (!echoKinds.has(p.kind) && p.state !== 'failing' && p.state !== 'unknown')
        set.add(serviceOf(p));
    ok = set;
    byComponent.set(component, ok);
  }
  return ok;
}

/**
 * The service-layer failures among `remaining`, by (component, service), in name order;
 * `also`: other paths of `remaining` to read as the service's (see {@link queueFull}).
 */
export function serviceGroups(
  ev: Evidence,
  remaining: readonly number[],
  also: ReadonlySet<number> = noneAlso,
): ServiceGroup[] {
  const byKey = new Map<string, number[]>();
  for (const i of remaining) {
    const p = ev.path(i);
    if ((layerOf(p) !== 'service' && !also.has(i)) || !ev.soundSet.has(p.agent)) continue;
    pushTo(byKey, `${p.component}\u0000${serviceOf(p)}`, i);
  }
  if (byKey.size === 0) return [];
  return [...byKey]
    .sort(([x], [y]) => byName(x, y))
    .map(([key, taken]) => {
      const ps = taken.map((i) => ev.path(i));
      const [component = '', service = ''] = key.split('\u0000');
      const okAny = ev.sound.filter((a) => servicesOk(ev.viewOf(a), component).has(service));
      const sources = sorted(ps.map((p) => p.agent));
      const failingSources = new Set(sources);
      const okSources = okAny.filter((a) => !failingSources.has(a));
      return {
        component,
        service,
        paths: ps,
        taken,
        sources,
        okSources,
        refused: ps.filter((p) => p.lastClass === 'tcp_refused').length,
        fromAll: okSources.length === 0,
      };
    });
}
