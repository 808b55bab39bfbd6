import type { PathState } from '../../types.js';
import type { Candidate, Rule } from '../candidate.js';
import { byName, pushTo, sorted } from '../views.js';
import { unseenHosts } from './observer-cut.js';

/**
 * `packet_loss`: paths succeed, but with loss or latency well above their baseline —
 * localised greedily to the element most degraded paths share (a target, or a source).
 */
export const packetLoss: Rule = {
  name: 'packet-loss',
  kinds: ['packet_loss'],
  tier: 'residual',
  propose: (ev, _remaining, chosen) => {
    const unseen = unseenHosts(chosen);
    let degraded = ev.sound
      .flatMap((a) => ev.viewOf(a)?.degraded ?? [])
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
        explains: [],
        degraded: ps,
      });
      const taken = new Set(ps);
      degraded = degraded.filter((p) => !taken.has(p));
    }
    return out;
  },
};
