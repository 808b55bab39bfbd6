import { echoKinds, networkLatencyKinds } from '../../../probes/registry.js';
import { defaultPathMatrixOptions } from '../../paths/options.js';
import type { PathState } from '../../types.js';
import type { Candidate, Rule } from '../candidate.js';
import type { Evidence } from '../evidence.js';
import { byName, layerOf, pushTo, sorted } from '../views.js';
import { unseenHosts } from './observer-cut.js';

/** An unordered pair of hosts, as {@link lossyPairs} keys it. */
export function hostPair(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}

/** A fall this recent makes its host pair unstable (the matrix's `flapStableMs`). */
export const unstableMs = defaultPathMatrixOptions.flapStableMs;
/** A fall that came back within this long was a blip (the path matrix's `flapBlipMs`). */
export const blipMs = defaultPathMatrixOptions.flapBlipMs;

/**
 * A path that fell at the network layer within {@link unstableMs} and came back within
 * {@link blipMs}, is damped (degraded by flap damping), or fell again: what a link that
 * drops packets in bursts, or flaps, does. A filter or a dead host does not come back by
 * itself; a cut that healed after a while was a cut.
 */
export function unstable(p: PathState, nowMs: number): boolean {
  if (p.fellAtMs === undefined || nowMs - p.fellAtMs >= unstableMs) return false;
  if (p.fellAgain === true || p.state === 'degraded') return true;
  return p.state === 'ok' && p.sinceMs - p.fellAtMs <= blipMs;
}

/** An {@link unstable} path that fell again, or is damped: flapping on its own. */
function fellTwice(p: PathState): boolean {
  return p.fellAgain === true || p.state === 'degraded';
}

/**
 * Whether `p`, an echo path that fell once and came back within moments, lost its probes to
 * loss rather than to an outage that healed: another path between the same two hosts (either
 * way, any kind) got through while `p` was down — its state ok since before `p` fell, and
 * heard from after `p` came back — or fell after `p` came back. A cut takes every path
 * between the two down and its heal brings them all back, for good; loss takes one path now
 * and another then, and a flapping link takes them down again. A short cut that healed read
 * as a lossy link: its paths fell and came back within moments, like a blip.
 */
function lossBetween(p: PathState, paths: readonly PathState[]): boolean {
  const fellAtMs = p.fellAtMs;
  if (fellAtMs === undefined) return false;
  for (const q of paths) {
    if (q.agent === p.agent && q.target === p.target) continue;
    if (q.fellAtMs !== undefined && q.fellAtMs > p.sinceMs) return true;
    if (q.state !== 'ok' && q.state !== 'degraded') continue;
    if (q.sinceMs <= fellAtMs && q.lastSeenMs >= p.sinceMs) return true;
  }
  return false;
}

/** Host pairs that lose packets: see {@link lossyPairs}. */
export interface LossyPairs {
  readonly size: number;
  /** Hosts read as lossy from their echoes' blips ({@link blippedHosts}). */
  readonly blipping: ReadonlySet<string>;
  has(a: string, b: string): boolean;
}

/**
 * Host pairs whose echoes get through with loss: an echo path between them (either way) is
 * degraded and lost some of its echoes, or is {@link unstable} — it fell and came back, or
 * fell again. Another path between the same two hosts that failed a few probes in a row is
 * that loss (a lost SYN costs a probe), not a filter or a smaller MTU: a filter passes the
 * echoes whole or drops them all, and does not come and go. Echoes only: they measure the
 * link, a service's paths measure the service too (a hung service's full listen queue times
 * out connects, and a heal brings them back). A host that such pairs join to two others or
 * more is the lossy element (its link): every pair of it is lossy, also the ones whose paths
 * happen to have failed together so far. So is a host most of whose echo partners (and at
 * least two) saw an echo to or from it blip twice, or fall and come back, within moments
 * ({@link blippedHosts}): loss begins as lost probes that come back, before any path has
 * fallen twice or shown a significant loss.
 */
export function lossyPairs(ev: Evidence): LossyPairs {
  let found = lossyOf.get(ev);
  if (found === undefined) {
    found = findLossyPairs(ev);
    lossyOf.set(ev, found);
  }
  return found;
}

/** One reading per evidence: path_blocked, service_unresponsive, mtu_mismatch and packet_loss all ask. */
const lossyOf = new WeakMap<Evidence, LossyPairs>();

function findLossyPairs(ev: Evidence): LossyPairs {
  const pairs = new Set<string>();
  /** By host: the hosts it makes a lossy pair with. */
  const partners = new Map<string, Set<string>>();
  /** By host: the hosts whose echoes to or from it blipped, or fell and came back. */
  const shaky = new Map<string, Set<string>>();
  /** By host: how many hosts its own agents probe (reach or not). */
  const probes = new Map<string, number>();
  const join = (m: Map<string, Set<string>>, x: string, y: string): void => {
    for (const [h, o] of [
      [x, y],
      [y, x],
    ] as const) {
      let s = m.get(h);
      if (s === undefined) m.set(h, (s = new Set()));
      s.add(o);
    }
  };
  const add = (x: string, y: string): void => {
    const key = hostPair(x, y);
    if (pairs.has(key)) return;
    pairs.add(key);
    join(partners, x, y);
  };
  let agentsOn: Map<string, string[]> | undefined;
  /** The paths between two hosts, both ways, of the sound agents on either. */
  const between = (agent: string, from: string, to: string): PathState[] => {
    if (agentsOn === undefined) {
      agentsOn = new Map();
      for (const b of ev.sound) pushTo(agentsOn, ev.host(b), b);
    }
    const out = [...(ev.viewOf(agent)?.pathsTo(to) ?? [])];
    for (const b of agentsOn.get(to) ?? []) out.push(...(ev.viewOf(b)?.pathsTo(from) ?? []));
    return out;
  };
  for (const a of ev.sound) {
    const v = ev.viewOf(a);
    if (v === undefined) continue;
    const from = ev.host(a);
    probes.set(from, Math.max(probes.get(from) ?? 0, v.yesIds.length + v.no.length));
    for (const p of v.degraded)
      if (echoKinds.has(p.kind) && (p.lossRatio ?? 0) > 0) add(from, p.component);
    for (const p of v.fell)
      if (
        echoKinds.has(p.kind) &&
        unstable(p, ev.nowMs) &&
        (fellTwice(p) || lossBetween(p, between(a, from, p.component)))
      ) {
        add(from, p.component);
        join(shaky, from, p.component);
      }
    for (const p of v.blipped) join(shaky, from, p.component);
  }
  const hosts = lossyHosts(partners);
  const blipping = blippedHosts(ev, shaky, probes);
  for (const h of blipping) hosts.add(h);
  return {
    size: pairs.size + hosts.size,
    blipping,
    has: (x, y) => hosts.has(x) || hosts.has(y) || pairs.has(hostPair(x, y)),
  };
}

/**
 * The hosts that lossy pairs join to two others or more, but for one whose every lossy pair
 * is with a host read as lossy before it, one with more such pairs (read from the most
 * pairs down). Two lossy links make every host probed across both a member of two lossy
 * pairs: that host is not lossy for it (its full-size echoes lost to a smaller MTU would
 * read as its loss), the two are. Hosts with as many pairs as each other all stay: the pairs
 * cannot tell them apart.
 */
function lossyHosts(partners: ReadonlyMap<string, ReadonlySet<string>>): Set<string> {
  const out = new Set<string>();
  const many = [...partners].filter(([, s]) => s.size >= 2).sort(([, x], [, y]) => y.size - x.size);
  for (const [h, s] of many) {
    const explained = [...s].every((o) => out.has(o) && (partners.get(o)?.size ?? 0) > s.size);
    if (!explained) out.add(h);
  }
  return out;
}

/**
 * Hosts most of whose partners — the agents probing them or the hosts they probe, whichever
 * are more — saw such an echo blip twice (lost echoes that came back without the path falling:
 * `blippedAtMs`) or fall and come back ({@link unstable}) within moments (`shaky`), and at
 * least two did. A lossy link loses a probe here, a probe there, on every pair it carries;
 * background loss touches a pair now and then, not most of a host's pairs twice within
 * seconds; a filter, a dead host or a smaller MTU loses every probe of the paths it takes, and
 * none come back.
 */
function blippedHosts(
  ev: Evidence,
  shaky: ReadonlyMap<string, ReadonlySet<string>>,
  probes: ReadonlyMap<string, number>,
): Set<string> {
  const out = new Set<string>();
  for (const [h, s] of shaky) {
    // Its partners: the agents probing it, or the hosts its own agents probe, whichever are
    // more — a prober of many targets (a star) is not lossy for two of them blipping.
    const partners = Math.max(ev.triedBy(h), probes.get(h) ?? 0);
    if (s.size >= 2 && 2 * s.size >= partners) out.add(h);
  }
  return out;
}

/**
 * Failing paths among `among` that lost their probes between a {@link lossyPairs} pair: a
 * network failure, or a service's answer that timed out (its segments lost on the way) —
 * not a refusal or an error, which the service said itself.
 */
export function lossyFailing(
  ev: Evidence,
  among: readonly number[],
  pairs: LossyPairs = lossyPairs(ev),
): number[] {
  if (pairs.size === 0) return [];
  return ev.pick(
    (p) =>
      ev.soundSet.has(p.agent) &&
      (layerOf(p) === 'network' ||
        p.lastClass === 'http_timeout' ||
        p.lastClass === 'protocol_timeout') &&
      pairs.has(ev.host(p.agent), p.component),
    among,
  );
}

/** `among` without its {@link lossyFailing} paths: what the rules before packet_loss may take. */
export function withoutLossy(ev: Evidence, among: readonly number[]): readonly number[] {
  const lossy = lossyFailing(ev, among);
  if (lossy.length === 0) return among;
  const out = new Set(lossy);
  return among.filter((i) => !out.has(i));
}

/** Kinds whose latency is the network's: echoes, a TCP handshake (the far kernel answers). */
const networkTimed = (kind: string): boolean => networkLatencyKinds.has(kind);

/**
 * Degraded paths that speak of the network: all but a service's probe slowed down with
 * nothing lost (no failure, no lost echo in its window) while no echo or TCP connect between
 * the same two hosts, either way, is degraded too. A service probe's latency is its answer's
 * (a PostgreSQL backend forked, a query run): a busy database server answers slower, over a
 * network that is fine, and that is not the network's loss.
 */
function networkDegraded(ev: Evidence, degraded: readonly PathState[]): PathState[] {
  if (degraded.every((p) => networkTimed(p.kind) || p.failureRatio > 0 || (p.lossRatio ?? 0) > 0))
    return [...degraded];
  let slowPairs = slowPairsOf.get(ev);
  if (slowPairs === undefined) {
    slowPairs = new Set();
    for (const a of ev.sound)
      for (const p of ev.viewOf(a)?.degraded ?? [])
        if (networkTimed(p.kind)) slowPairs.add(hostPair(ev.host(a), p.component));
    slowPairsOf.set(ev, slowPairs);
  }
  const slow = slowPairs;
  return degraded.filter(
    (p) =>
      networkTimed(p.kind) ||
      p.failureRatio > 0 ||
      (p.lossRatio ?? 0) > 0 ||
      slow.has(hostPair(ev.host(p.agent), p.component)),
  );
}

/** Per evidence: the host pairs with a degraded echo or TCP connect (see {@link networkDegraded}). */
const slowPairsOf = new WeakMap<Evidence, Set<string>>();

/**
 * `packet_loss`: paths succeed, but with loss or latency well above their baseline —
 * localised greedily to the element most degraded paths share (a target, or a source). The
 * failing paths between hosts whose echoes show the loss ({@link lossyFailing}) are its too.
 */
export const packetLoss: Rule = {
  name: 'packet-loss',
  kinds: ['packet_loss'],
  tier: 'residual',
  propose: (ev, remaining, chosen) => {
    const unseen = unseenHosts(chosen);
    const failing = new Map<PathState, number>();
    for (const i of lossyFailing(ev, remaining)) failing.set(ev.path(i), i);
    // An echo path that fell twice within moments and is up again is flapping: loss, for
    // now. (Echoes only: a service's paths falling twice may be the service.)
    const flapped = (p: PathState): boolean =>
      echoKinds.has(p.kind) && p.state === 'ok' && p.fellAgain === true && unstable(p, ev.nowMs);
    // The blips of a host read as lossy from them are its evidence too, once its loss has
    // failed a path: blips alone (no path failing) are not worth a hypothesis.
    const { blipping } = lossyPairs(ev);
    const hit = new Set<string>();
    if (blipping.size > 0)
      for (const p of failing.keys()) {
        for (const h of [p.component, ev.host(p.agent)]) if (blipping.has(h)) hit.add(h);
      }
    const blipped = (a: string, p: PathState): boolean =>
      hit.size > 0 && (hit.has(p.component) || hit.has(ev.host(a)));
    let degraded = ev.sound
      .flatMap((a) => {
        const v = ev.viewOf(a);
        return v === undefined
          ? []
          : [
              ...new Set([
                ...networkDegraded(ev, v.degraded),
                ...v.fell.filter(flapped),
                ...v.blipped.filter((p) => blipped(a, p)),
              ]),
            ];
      })
      .concat([...failing.keys()])
      .filter((p) => !unseen.has(p.component));
    const out: Candidate[] = [];
    while (degraded.length > 0) {
      // An element is a host and its link: the paths to it and the paths from it (a link
      // that flaps loses both ways).
      const byElement = new Map<string, PathState[]>();
      for (const p of degraded) {
        pushTo(byElement, p.component, p);
        const from = ev.host(p.agent);
        if (from !== p.component) pushTo(byElement, from, p);
      }
      const [name, ps] = [...byElement].sort(
        ([xk, x], [yk, y]) => y.length - x.length || byName(xk, yk),
      )[0] ?? ['', []];
      const to = ps.filter((p) => p.component === name).length;
      const element =
        to === ps.length ? `to ${name}` : to === 0 ? `from ${name}` : `to and from ${name}`;
      const worst = Math.round(100 * Math.max(...ps.map((p) => p.lossRatio ?? p.failureRatio)));
      const first = ps[0];
      // One host pair alone, either way, shares nothing with another: both its ends stay
      // suspects (naming one end by its name's order blamed a host for its peer's link).
      const pairOf = (p: PathState): string => hostPair(ev.host(p.agent), p.component);
      const onePair = first !== undefined && ps.every((p) => pairOf(p) === pairOf(first));
      const only = onePair ? first : undefined;
      const oneWay = ps.every((p) => p.agent === first?.agent && p.component === first.component);
      const ends = only ? sorted([ev.host(only.agent), only.component]) : [name];
      out.push({
        hypothesis: {
          kind: 'packet_loss',
          confidence: only ? 0.5 : 0.7,
          summary: only
            ? oneWay
              ? `the path from ${ev.host(only.agent)} to ${only.component} loses packets or slows down (up to ${worst}% loss), the others are clean: look at the route between the two`
              : `the paths between ${ends.join(' and ')} lose packets or slow down both ways (up to ${worst}% loss), the others are clean: look at the route between the two`
            : `${ps.length} paths ${element} lose packets or slow down (up to ${worst}% loss): look at ${name} and its link`,
          components: ends,
          groups: [{ members: ends }],
        },
        // Its agent's reports cross the same lossy link: its silence is this loss.
        silences: ev.agents
          .filter((a) => a.state === 'silent' && ends.includes(ev.host(a.agent)))
          .map((a) => a.agent),
        // And the failures of an end's own agent that only its link explains (a flapping
        // link's, replayed once it is back up).
        explains: [
          ...new Set([
            ...ps.flatMap((p) => {
              const i = failing.get(p);
              return i === undefined ? [] : [i];
            }),
            ...ends.flatMap((h) => ev.hostBoundFailing(h)),
          ]),
        ],
        degraded: ps.filter((p) => !failing.has(p)),
      });
      const taken = new Set(ps);
      degraded = degraded.filter((p) => !taken.has(p));
    }
    return out;
  },
};
