import type { CutLabel } from '../../../wire/diagnosis.js';
import type { FailureClass } from '../../../wire/result.js';
import type { PathState } from '../../types.js';
import type { Candidate, Rule } from '../candidate.js';
import type { Evidence } from '../evidence.js';
import { list } from '../text.js';
import { byName, mtuKind, sorted, type AgentView } from '../views.js';
import { lossyPairs, type LossyPairs } from './packet-loss.js';

/**
 * `mtu_mismatch`: small packets pass and full-size ones vanish (or come back "fragmentation
 * needed") on the paths through one element — a host's switch port or link, a switch's
 * uplink, a whole switch. Read from the full-size echo (`mtu` probe) on host pairs that
 * otherwise reach each other; the element is the one whose paths hold the lost echoes and
 * none of the passing ones, found by scoring every candidate element (lost echoes it
 * explains − 2 × passing ones it contradicts). The HTTP/protocol timeouts and TLS failures
 * on those same pairs are the big answers vanishing after the handshake: this explains them,
 * not a service.
 */
export const mtuMismatch: Rule = {
  name: 'mtu-mismatch',
  kinds: ['mtu_mismatch'],
  tier: 'structural',
  propose: (ev) => {
    const lost: PathState[] = [];
    // A full-size echo lost (not refused with "fragmentation needed") between hosts whose
    // paths come and go is that loss, not the MTU: the small echo got through by chance.
    let lossy: LossyPairs | undefined;
    for (const a of ev.sound)
      for (const p of lostEchoes(ev.viewOf(a))) {
        if (ev.reachOf(a, p.component) !== 'yes') continue;
        if (p.lastClass !== 'mtu_exceeded') {
          lossy ??= lossyPairs(ev);
          if (lossy.has(ev.host(a), p.component)) continue;
        }
        lost.push(p);
      }
    if (lost.length === 0) return [];
    const pairKey = (src: string, dst: string): string => `${src}\u0000${dst}`;
    const failPairs = new Map<string, Pair>();
    for (const p of lost) {
      const src = ev.host(p.agent);
      failPairs.set(pairKey(src, p.component), { src, dst: p.component });
    }
    // Pairs whose full-size echo passed since the first of these was lost: they contradict
    // an element they go through. A full-size echo lost and not yet confirmed (its burst under
    // way) is no contradiction, nor one not heard from since the echoes began to vanish (its
    // agent's round has not come, or its agent is late — its own reports may be the full-size
    // frames that vanish): a smaller MTU on a host's port shows pair by pair as the agents'
    // rounds come, and read as a route each until the passing pairs were outnumbered.
    let lostSinceMs = Number.POSITIVE_INFINITY;
    for (const p of lost) lostSinceMs = Math.min(lostSinceMs, p.sinceMs);
    const passPairs: Pair[] = [];
    // Those pairs, whose full-size echo passes cleanly (not even a loss under the debounce):
    // a big answer lost on one is not this.
    const clean = new Set<string>();
    for (const a of ev.sound)
      for (const p of ev.viewOf(a)?.mtu ?? []) {
        if (p.state === 'failing' || echoLost(p) || p.lastSeenMs < lostSinceMs) continue;
        clean.add(pairKey(ev.host(a), p.component));
        passPairs.push({ src: ev.host(a), dst: p.component });
      }

    const keys = sorted(
      [...failPairs.values()].flatMap((q) => [
        ...Object.keys(ev.labelsOf(q.src)),
        ...Object.keys(ev.labelsOf(q.dst)),
      ]),
    );
    const contradictions = countElements(passPairs, keys, ev);
    const out: Candidate[] = [];
    let remaining = [...failPairs.values()];
    for (let round = 0; round < 3 && remaining.length > 0; round++) {
      const covered = countElements(remaining, keys, ev);
      const scored = [...covered]
        .map(([id, n]) => {
          const e = parseElement(id);
          const contra = contradictions.get(id) ?? 0;
          return { id, e, n, contra, score: n - 2 * contra, behind: hostsBehind(ev, e) };
        })
        .filter((x) => x.score > 0)
        .sort(
          (x, y) =>
            y.score - x.score ||
            x.behind.length - y.behind.length ||
            elementOrder[x.e.type] - elementOrder[y.e.type] ||
            byName(x.id, y.id),
        );
      const best = scored[0];
      if (!best) break;
      const alternatives = scored
        .slice(1)
        .filter((x) => x.n === best.n && x.contra === best.contra)
        .filter((x) => !sameHosts(x.behind, best.behind) || x.e.type !== best.e.type);
      // The ports of both ends of the same pairs (one pair lost so far, each end's other
      // pairs not heard from since): nothing tells them apart; the route between them says
      // as much without naming one end.
      if (best.e.type === 'port' && alternatives.some((x) => x.e.type === 'port')) break;
      const inside = remaining.filter((q) => covers(best.e, q, ev));
      remaining = remaining.filter((q) => !covers(best.e, q, ev));
      out.push(
        candidate(
          ev,
          best.e,
          best.behind,
          inside,
          alternatives.map((x) => x.e),
          (q) => clean.has(pairKey(q.src, q.dst)),
        ),
      );
    }
    // What no element explains: the route between the two hosts.
    const byPair = new Map<string, Pair[]>();
    for (const q of remaining) {
      const [a, b] = [q.src, q.dst].sort(byName);
      const k = pairKey(a ?? '', b ?? '');
      byPair.set(k, [...(byPair.get(k) ?? []), q]);
    }
    for (const qs of byPair.values()) {
      const ends = sorted(qs.flatMap((q) => [q.src, q.dst]));
      out.push(candidate(ev, { type: 'route', hosts: ends }, ends, qs, [], () => true));
    }
    return out;
  },
};

const lostCache = new WeakMap<AgentView, readonly PathState[]>();

/**
 * An agent's failing full-size echoes whose newest echo was lost too, read once per change of
 * its view. One whose newest echo came through is coming back: a smaller MTU loses every
 * full-size echo, it does not let one through (a link coming back up does).
 */
function lostEchoes(v: AgentView | undefined): readonly PathState[] {
  if (v === undefined) return [];
  let lost = lostCache.get(v);
  if (lost === undefined) {
    lost = v.failing.filter((p) => p.kind === mtuKind && echoLost(p));
    lostCache.set(v, lost);
  }
  return lost;
}

/** A full-size echo that failed, counted failing or not yet (a loss under the debounce). */
export function echoLost(p: PathState): boolean {
  return p.lastClass === 'icmp_timeout' || p.lastClass === 'mtu_exceeded';
}

interface Pair {
  readonly src: string;
  readonly dst: string;
}

type Element =
  | { readonly type: 'port'; readonly host: string }
  | { readonly type: 'uplink' | 'switch'; readonly key: string; readonly value: string }
  | { readonly type: 'route'; readonly hosts: readonly string[] };

const elementOrder = { port: 0, uplink: 1, switch: 2, route: 3 } as const;

function parseElement(id: string): Element {
  const [type = '', a = '', b = ''] = id.split('\u0000');
  if (type === 'port') return { type: 'port', host: a };
  return { type: type === 'uplink' ? 'uplink' : 'switch', key: a, value: b };
}

/** How many of `pairs` each element's paths hold, by element id. */
function countElements(
  pairs: readonly Pair[],
  keys: readonly string[],
  ev: Evidence,
): Map<string, number> {
  const counts = new Map<string, number>();
  const bump = (id: string): void => {
    counts.set(id, (counts.get(id) ?? 0) + 1);
  };
  for (const q of pairs) {
    bump(`port\u0000${q.src}`);
    if (q.dst !== q.src) bump(`port\u0000${q.dst}`);
    const ls = ev.labelsOf(q.src);
    const ld = ev.labelsOf(q.dst);
    for (const k of keys) {
      const vs = ls[k];
      const vd = ld[k];
      if (vs !== undefined) bump(`switch\u0000${k}\u0000${vs}`);
      if (vd !== undefined && vd !== vs) bump(`switch\u0000${k}\u0000${vd}`);
      if (vs !== vd) {
        if (vs !== undefined) bump(`uplink\u0000${k}\u0000${vs}`);
        if (vd !== undefined) bump(`uplink\u0000${k}\u0000${vd}`);
      }
    }
  }
  return counts;
}

function covers(e: Element, q: Pair, ev: Evidence): boolean {
  switch (e.type) {
    case 'port':
      return q.src === e.host || q.dst === e.host;
    case 'route':
      return e.hosts.includes(q.src) && e.hosts.includes(q.dst);
    case 'uplink':
      return (ev.labelsOf(q.src)[e.key] === e.value) !== (ev.labelsOf(q.dst)[e.key] === e.value);
    case 'switch':
      return ev.labelsOf(q.src)[e.key] === e.value || ev.labelsOf(q.dst)[e.key] === e.value;
  }
}

function hostsBehind(ev: Evidence, e: Element): string[] {
  if (e.type === 'port') return [e.host];
  if (e.type === 'route') return [...e.hosts];
  return sorted(ev.inventory.filter((c) => c.labels[e.key] === e.value).map((c) => c.name));
}

const sameHosts = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((h, i) => b[i] === h);

function describe(e: Element): string {
  switch (e.type) {
    case 'port':
      return `${e.host}'s switch port or link`;
    case 'route':
      return `the route between ${e.hosts.join(' and ')}`;
    case 'uplink':
      return `the uplink of ${e.key} ${e.value}`;
    case 'switch':
      return `${e.key} ${e.value} itself (also between its own hosts)`;
  }
}

/** Service answers that vanish when full-size segments do: the handshake passed, the answer did not. */
export const bigAnswerLost: ReadonlySet<FailureClass> = new Set([
  'http_timeout',
  'protocol_timeout',
  'tls_error',
]);

function candidate(
  ev: Evidence,
  e: Element,
  behind: readonly string[],
  pairs: readonly Pair[],
  alternatives: readonly Element[],
  echoPasses: (q: Pair) => boolean,
): Candidate {
  const inPairs = new Set(pairs.map((q) => `${q.src}\u0000${q.dst}`));
  const onPairs = (p: PathState): boolean =>
    ev.soundSet.has(p.agent) && inPairs.has(`${ev.host(p.agent)}\u0000${p.component}`);
  const echoIds = ev.pick((p) => p.kind === mtuKind && onPairs(p));
  // The big answers lost on any path through the element, unless that path's own full-size
  // echo passes cleanly (its echo may not have failed long enough to count yet).
  const through = (p: PathState): boolean => {
    if (!ev.soundSet.has(p.agent)) return false;
    const q = { src: ev.host(p.agent), dst: p.component };
    return e.type === 'route' ? onPairs(p) : covers(e, q, ev) && !echoPasses(q);
  };
  const answerIds = ev.pick(
    (p) => p.kind !== mtuKind && bigAnswerLost.has(p.lastClass) && through(p),
  );
  const echoes = echoIds.map((i) => ev.path(i));
  const answers = answerIds.map((i) => ev.path(i));
  const fragNeeded = echoes.some((p) => p.lastClass === 'mtu_exceeded');
  const services = sorted(answers.map((p) => `${p.component}/${p.service ?? p.kind}`));
  const or =
    alternatives.length > 0
      ? ` (or ${alternatives.map(describe).join(', or ')}: the evidence cannot tell them apart)`
      : '';
  const summary =
    `full-size packets vanish on the paths through ${describe(e)}${or} — an MTU mismatch: ` +
    `pings and TCP handshakes pass, but ${echoes.length} full-size echoes with Don't Fragment ` +
    `${fragNeeded ? 'came back "fragmentation needed" or were lost' : 'were lost'}` +
    (answers.length > 0
      ? `; the ${answers.length} timeouts of ${list(services)} on those paths are this, not the service`
      : '');
  const cut: CutLabel | undefined =
    e.type === 'uplink' || e.type === 'switch' ? { key: e.key, values: [e.value] } : undefined;
  return {
    hypothesis: {
      kind: 'mtu_mismatch',
      confidence: e.type === 'route' ? 0.6 : alternatives.length > 0 ? 0.8 : 0.9,
      summary,
      components: sorted(behind),
      groups: [{ name: describe(e), members: sorted(behind) }],
      ...(cut ? { cutLabel: cut } : {}),
    },
    explains: [...echoIds, ...answerIds],
    silences: silencedBy(ev, e),
    prior: 1,
  };
}

/**
 * The silent agents whose way to the collector goes through the element: their reports are
 * full-size frames too, and vanish there. Where the collector is not in the inventory, it is
 * taken as outside every element.
 */
function silencedBy(ev: Evidence, e: Element): string[] {
  // The way from a host to the collector is the pair (host, collector's host); a collector
  // outside the inventory is a host with no labels, on no element. Its own host's agent
  // reports without crossing anything.
  const at = ev.observer.host ?? '';
  return ev.agents
    .filter((a) => {
      const h = ev.host(a.agent);
      return a.state === 'silent' && h !== at && covers(e, { src: h, dst: at }, ev);
    })
    .map((a) => a.agent);
}
