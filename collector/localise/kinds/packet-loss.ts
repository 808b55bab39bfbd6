import { echoKinds } from '../../../probes/registry.js';
import type { PathState } from '../../types.js';
import type { Candidate, Rule } from '../candidate.js';
import type { Evidence } from '../evidence.js';
import { byName, layerOf, pushTo, sorted } from '../views.js';
import { unseenHosts } from './observer-cut.js';

/** An unordered pair of hosts, as {@link lossyPairs} keys it. */
export function hostPair(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}

/**
 * Host pairs whose echoes get through with loss: an echo path between them (either way) is
 * degraded and lost some of its echoes. A TCP path between the same two hosts that failed a
 * few probes in a row is that loss (a lost SYN costs a probe), not a filter — a filter passes
 * the echoes whole or drops them all.
 */
export function lossyPairs(ev: Evidence): Set<string> {
  const out = new Set<string>();
  for (const a of ev.sound) {
    for (const p of ev.viewOf(a)?.degraded ?? []) {
      if (echoKinds.has(p.kind) && (p.lossRatio ?? 0) > 0)
        out.add(hostPair(ev.host(a), p.component));
    }
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
  pairs: ReadonlySet<string> = lossyPairs(ev),
): number[] {
  if (pairs.size === 0) return [];
  return ev.pick(
    (p) =>
      ev.soundSet.has(p.agent) &&
      (layerOf(p) === 'network' ||
        p.lastClass === 'http_timeout' ||
        p.lastClass === 'protocol_timeout') &&
      pairs.has(hostPair(ev.host(p.agent), p.component)),
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
    let degraded = ev.sound
      .flatMap((a) => ev.viewOf(a)?.degraded ?? [])
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
      const onePair = ps.every((p) => p.agent === first?.agent && p.component === first.component);
      const only = onePair ? first : undefined;
      // One host pair alone shares nothing with another: both its ends stay suspects.
      const ends = only ? sorted([ev.host(only.agent), only.component]) : [name];
      out.push({
        hypothesis: {
          kind: 'packet_loss',
          confidence: only ? 0.5 : 0.7,
          summary: only
            ? `the path from ${ev.host(only.agent)} to ${only.component} loses packets or slows down (up to ${worst}% loss), the others are clean: look at the route between the two`
            : `${ps.length} paths ${element} lose packets or slow down (up to ${worst}% loss): look at ${name} and its link`,
          components: ends,
          groups: [{ members: ends }],
        },
        // Its agent's reports cross the same lossy link: its silence is this loss.
        silences: ev.agents
          .filter((a) => a.state === 'silent' && ends.includes(ev.host(a.agent)))
          .map((a) => a.agent),
        explains: ps.flatMap((p) => {
          const i = failing.get(p);
          return i === undefined ? [] : [i];
        }),
        degraded: ps.filter((p) => !failing.has(p)),
      });
      const taken = new Set(ps);
      degraded = degraded.filter((p) => !taken.has(p));
    }
    return out;
  },
};
