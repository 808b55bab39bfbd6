import type { Hypothesis } from '../../wire/diagnosis.js';
import type { PathState } from '../types.js';
import type { Candidate, Rule } from './candidate.js';
import type { Evidence } from './evidence.js';
import { digestOf } from './text.js';
import { byName } from './views.js';

/**
 * Ranking as a search. The structural rules' candidates (cuts of any set of hosts, the
 * collector's own cut, a host down, a source's own fault, an MTU mismatch at an element) are
 * scored together: the best set of up to `maxJoint` simultaneous faults is the one that
 * explains the most failing paths, minus twice the observations it contradicts, minus a
 * prior of `extraCausePenalty` per cause beyond the first (one cause that explains as much
 * as two wins); then further causes are added greedily while each explains something new.
 * A candidate is credited only with the paths no better one explained before it. The
 * residual rules (services, filters, names, loss, silence, the unexplained rest) then read,
 * in registry order, what is left. Hypotheses are ranked by the failing paths they explain,
 * then confidence; a hypothesis about the collector's own cut comes first, since it
 * qualifies all the others.
 */
export const maxJoint = 3;
/** Candidates the joint search considers: C(12, ≤3) = 298 sets. */
const searchWidth = 12;
export const extraCausePenalty = 0.5;
const contradictionWeight = 2;

export interface Chosen {
  readonly candidate: Candidate;
  /** The paths it is credited with: those it explains that nothing chosen before did. */
  readonly credited: readonly PathState[];
}

export function rank(
  ev: Evidence,
  rules: readonly Rule[],
): { hypotheses: Hypothesis[]; usesNow: boolean } {
  const explained = new Set<PathState>();
  const chosen: Chosen[] = [];
  const credit = (c: Candidate): readonly PathState[] => {
    let fresh = 0;
    for (const p of c.explains) if (!explained.has(p)) fresh += 1;
    // Nothing taken by another: keep the very array (its digest is cached).
    const credited =
      fresh === c.explains.length ? c.explains : c.explains.filter((p) => !explained.has(p));
    for (const p of credited) explained.add(p);
    return credited;
  };

  const structural = rules
    .filter((r) => r.tier === 'structural')
    .flatMap((r) => r.propose(ev, ev.failing, []));
  for (const c of search(structural)) {
    const credited = credit(c);
    if (credited.length > 0 || c.standalone) chosen.push({ candidate: c, credited });
  }

  let remaining = ev.failing.filter((p) => !explained.has(p));
  for (const r of rules) {
    if (r.tier !== 'residual') continue;
    const cs = r.propose(
      ev,
      remaining,
      chosen.map((x) => x.candidate),
    );
    let took = false;
    for (const c of cs) {
      const credited = credit(c);
      if (credited.length === 0 && !c.standalone) continue;
      took ||= credited.length > 0;
      chosen.push({ candidate: c, credited });
    }
    if (took) remaining = remaining.filter((p) => !explained.has(p));
  }

  let usesNow = false;
  const out = chosen.map(({ candidate: c, credited }) => {
    const quoted = c.quotes && c.quotes.length > 0 ? [...credited, ...c.quotes] : credited;
    const d = digestOf(quoted);
    const sinceMs = c.sinceMs ?? d.sinceMs;
    if (sinceMs === undefined) usesNow = true;
    const h: Hypothesis = {
      ...c.hypothesis,
      evidence: d.evidence,
      since: Math.max(0, Math.round(sinceMs ?? ev.nowMs)),
    };
    return { h, first: c.first === true };
  });
  // Parsimony: a hypothesis weighs the failing (or degraded) paths it explains; `ok` paths
  // quoted as evidence (a silent agent's host still answering) weigh nothing.
  const weight = (h: Hypothesis): number =>
    Object.entries(h.evidence.counts).reduce((s, [k, n]) => (k === 'ok' ? s : s + n), 0);
  out.sort(
    (x, y) =>
      Number(y.first) - Number(x.first) ||
      weight(y.h) - weight(x.h) ||
      y.h.confidence - x.h.confidence ||
      byName(x.h.kind + x.h.components.join(), y.h.kind + y.h.components.join()),
  );
  return { hypotheses: out.map((x) => x.h), usesNow };
}

const keyOf = (c: Candidate): string =>
  `${c.hypothesis.kind}\u0000${c.hypothesis.components.join(',')}\u0000${c.hypothesis.summary}`;

/** Between two readings of equal weight: the higher prior, then a stable order. */
const tieBreak = (x: Candidate, y: Candidate): number =>
  (y.prior ?? 0) - (x.prior ?? 0) || byName(keyOf(x), keyOf(y));

/**
 * The structural candidates to keep, in the order they are credited: forced ones (`first`),
 * then the best joint set of up to `maxJoint`, then greedy additions.
 */
export function search(candidates: readonly Candidate[]): Candidate[] {
  const picked: Candidate[] = [];
  const taken = new Set<PathState>();
  const forced = candidates.filter((c) => c.first).sort(tieBreak);
  for (const c of forced) {
    picked.push(c);
    for (const p of c.explains) taken.add(p);
  }
  const fresh = (c: Candidate): number => {
    let n = 0;
    for (const p of c.explains) if (!taken.has(p)) n += 1;
    return n;
  };
  const value = (c: Candidate, n: number): number => n - contradictionWeight * (c.contradicts ?? 0);
  const pool = candidates
    .filter((c) => !c.first)
    .map((c) => ({ c, bound: value(c, fresh(c)) }))
    .filter((x) => x.bound > 0)
    .sort((x, y) => y.bound - x.bound || tieBreak(x.c, y.c));

  // The best joint set among the strongest candidates: per path, a bit per candidate
  // explaining it; paths counted once per distinct mask.
  const top = pool.slice(0, searchWidth);
  if (top.length > 0) {
    const maskOf = new Map<PathState, number>();
    top.forEach(({ c }, i) => {
      for (const p of c.explains) if (!taken.has(p)) maskOf.set(p, (maskOf.get(p) ?? 0) | (1 << i));
    });
    const perMask = new Map<number, number>();
    for (const m of maskOf.values()) perMask.set(m, (perMask.get(m) ?? 0) + 1);
    const masks = [...perMask];
    let best: { bits: number; score: number; prior: number } | undefined;
    const consider = (members: readonly number[]): void => {
      let bits = 0;
      let contra = 0;
      let prior = 0;
      for (const i of members) {
        bits |= 1 << i;
        contra += top[i]?.c.contradicts ?? 0;
        prior += top[i]?.c.prior ?? 0;
      }
      let cover = 0;
      for (const [m, n] of masks) if ((m & bits) !== 0) cover += n;
      const score = cover - contradictionWeight * contra - extraCausePenalty * (members.length - 1);
      if (best === undefined || score > best.score || (score === best.score && prior > best.prior))
        best = { bits, score, prior };
    };
    const n = top.length;
    for (let i = 0; i < n; i++) {
      consider([i]);
      if (maxJoint < 2) continue;
      for (let j = i + 1; j < n; j++) {
        consider([i, j]);
        if (maxJoint < 3) continue;
        for (let k = j + 1; k < n; k++) consider([i, j, k]);
      }
    }
    const joint = top.filter((_, i) => ((best?.bits ?? 0) & (1 << i)) !== 0).map((x) => x.c);
    // Credited in order of their own weight, so the larger explanation keeps its paths.
    joint.sort((x, y) => value(y, fresh(y)) - value(x, fresh(x)) || tieBreak(x, y));
    for (const c of joint) {
      if (fresh(c) === 0) continue;
      picked.push(c);
      for (const p of c.explains) taken.add(p);
    }
  }

  // Greedy for the rest, lazily: a candidate's fresh count only shrinks as others are taken.
  const rest = pool.filter((x) => !picked.includes(x.c));
  for (;;) {
    rest.sort((x, y) => y.bound - x.bound || tieBreak(x.c, y.c));
    const head = rest[0];
    if (!head || head.bound <= 0) break;
    const now = value(head.c, fresh(head.c));
    const next = rest[1];
    if (
      now !== head.bound &&
      next &&
      (now < next.bound || (now === next.bound && tieBreak(head.c, next.c) > 0))
    ) {
      head.bound = now;
      continue;
    }
    head.bound = now;
    if (now <= 0) continue;
    rest.shift();
    picked.push(head.c);
    for (const p of head.c.explains) taken.add(p);
  }
  return picked;
}
