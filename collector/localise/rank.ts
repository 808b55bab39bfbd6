import type { Hypothesis } from '../../wire/diagnosis.js';
import type { PathState } from '../types.js';
import type { Candidate, Rule } from './candidate.js';
import type { Evidence } from './evidence.js';
import { digestOf } from './text.js';
import { byName, hasBit, setBit } from './views.js';

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
const maxJoint = 3;
/** Candidates the joint search considers: C(12, ≤3) = 298 sets. */
const searchWidth = 12;
const extraCausePenalty = 0.5;
const contradictionWeight = 2;

interface Chosen {
  readonly candidate: Candidate;
  /**
   * The paths it is credited with: those it explains that nothing chosen before did
   * (`undefined`: all of them, and its own digest says what they are).
   */
  readonly credited: readonly PathState[] | undefined;
  readonly count: number;
}

export function rank(
  ev: Evidence,
  rules: readonly Rule[],
): { hypotheses: Hypothesis[]; usesNow: boolean } {
  const n = ev.failingCount;
  const words = (n + 31) >>> 5;
  const explained = new Uint32Array(words);
  const chosen: Chosen[] = [];
  const bitsOf = new Map<Candidate, Uint32Array>();
  const bits = (c: Candidate): Uint32Array => {
    let b = c.bits ?? bitsOf.get(c);
    if (b === undefined) {
      b = toBits(c.explains, words);
      bitsOf.set(c, b);
    }
    return b;
  };
  const credit = (c: Candidate): Chosen => {
    const b = bits(c);
    const whole = countAnd(b, explained) === 0;
    let credited: PathState[] | undefined;
    // A rule that digested its paths itself, nothing taken from them, nothing quoted beside:
    // its digest stands, and its (perhaps 100,000) paths need not be read.
    if (!(whole && c.digest !== undefined && !c.degraded && !c.quotes)) {
      credited = [];
      for (const i of c.explains) if (whole || !hasBit(explained, i)) credited.push(ev.path(i));
      if (c.degraded) credited.push(...c.degraded);
    }
    orInto(explained, b);
    return { candidate: c, credited, count: credited?.length ?? countAnd(b, b) };
  };

  const structural = rules
    .filter((r) => r.tier === 'structural')
    .flatMap((r) => r.propose(ev, [], []));
  for (const c of search(structural, n, bits)) {
    const x = credit(c);
    if (x.count > 0 || c.standalone) chosen.push(x);
  }

  const unexplained = (): number[] => {
    const out: number[] = [];
    for (let w = 0; w < words; w++) {
      let x = ~(explained[w] ?? 0) >>> 0;
      while (x !== 0) {
        const low = x & -x;
        const i = (w << 5) + (31 - Math.clz32(low));
        if (i < n) out.push(i);
        x = (x ^ low) >>> 0;
      }
    }
    return out;
  };
  let remaining = unexplained();
  for (const r of rules) {
    if (r.tier !== 'residual') continue;
    const cs = r.propose(
      ev,
      remaining,
      chosen.map((x) => x.candidate),
    );
    let took = false;
    for (const c of cs) {
      const x = credit(c);
      if (x.count === 0 && !c.standalone) continue;
      took ||= c.explains.length > 0;
      chosen.push(x);
    }
    if (took) remaining = unexplained();
  }

  let usesNow = false;
  const out = chosen.map(({ candidate: c, credited }) => {
    const d =
      credited === undefined && c.digest !== undefined
        ? c.digest
        : digestOf(c.quotes ? [...(credited ?? []), ...c.quotes] : (credited ?? []));
    const evidence =
      d.evidence.examples.length === 0 && c.examples
        ? { ...d.evidence, examples: c.examples.slice(0, 5) }
        : d.evidence;
    const sinceMs = c.sinceMs ?? d.sinceMs;
    if (sinceMs === undefined) usesNow = true;
    const h: Hypothesis = {
      ...c.hypothesis,
      evidence,
      since: Math.max(0, Math.round(sinceMs ?? ev.nowMs)),
    };
    return { h, first: c.first === true };
  });
  // Parsimony: a hypothesis weighs the failing (or degraded) paths it explains; `ok` paths
  // quoted as evidence (a silent agent's host still answering) weigh nothing.
  const weight = (h: Hypothesis): number =>
    Object.entries(h.evidence.counts).reduce((s, [k, c]) => (k === 'ok' ? s : s + c), 0);
  out.sort(
    (x, y) =>
      Number(y.first) - Number(x.first) ||
      weight(y.h) - weight(x.h) ||
      y.h.confidence - x.h.confidence ||
      byName(x.h.kind + x.h.components.join(), y.h.kind + y.h.components.join()),
  );
  return { hypotheses: out.map((x) => x.h), usesNow };
}

/** Paths as a bitset over their indices: a partition's 100,000 paths are 3,125 words. */
function toBits(indices: readonly number[], words: number): Uint32Array {
  const b = new Uint32Array(words);
  for (const i of indices) setBit(b, i);
  return b;
}

function popcount(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** |a ∩ b| */
function countAnd(a: Uint32Array, b: Uint32Array): number {
  let k = 0;
  for (let w = 0; w < a.length; w++) {
    const x = (a[w] ?? 0) & (b[w] ?? 0);
    if (x !== 0) k += popcount(x);
  }
  return k;
}

/** |a ∖ b| */
function countAndNot(a: Uint32Array, b: Uint32Array): number {
  let k = 0;
  for (let w = 0; w < a.length; w++) {
    const x = (a[w] ?? 0) & ~(b[w] ?? 0);
    if (x !== 0) k += popcount(x);
  }
  return k;
}

function orInto(into: Uint32Array, b: Uint32Array): void {
  for (let w = 0; w < into.length; w++) into[w] = (into[w] ?? 0) | (b[w] ?? 0);
}

const keyOf = (c: Candidate): string =>
  `${c.hypothesis.kind}\u0000${c.hypothesis.components.join(',')}\u0000${c.hypothesis.summary}`;

/** Between two readings of equal weight: the higher prior, then a stable order. */
const tieBreak = (x: Candidate, y: Candidate): number =>
  (y.prior ?? 0) - (x.prior ?? 0) || byName(keyOf(x), keyOf(y));

/**
 * The structural candidates to keep, in the order they are credited: forced ones (`first`),
 * then the best joint set of up to `maxJoint`, then greedy additions. `n`: how many failing
 * paths the candidates' indices range over; `bitsOf` their sets as bitsets.
 */
export function search(
  candidates: readonly Candidate[],
  n: number,
  bitsOf: (c: Candidate) => Uint32Array = (c) => toBits(c.explains, (n + 31) >>> 5),
): Candidate[] {
  const words = (n + 31) >>> 5;
  const picked: Candidate[] = [];
  const taken = new Uint32Array(words);
  const take = (c: Candidate): void => {
    picked.push(c);
    orInto(taken, bitsOf(c));
  };
  for (const c of candidates.filter((x) => x.first).sort(tieBreak)) take(c);
  const fresh = (c: Candidate): number => countAndNot(bitsOf(c), taken);
  const value = (c: Candidate, k: number): number => k - contradictionWeight * (c.contradicts ?? 0);
  const pool = candidates
    .filter((c) => !c.first)
    .map((c) => ({ c, bound: value(c, fresh(c)) }))
    .filter((x) => x.bound > 0)
    .sort((x, y) => y.bound - x.bound || tieBreak(x.c, y.c));

  // The best joint set among the strongest candidates (one alone needs no search).
  const top = pool.slice(0, searchWidth);
  if (top.length > 1) {
    const sets = top.map(({ c }) => bitsOf(c));
    const scratch = new Uint32Array(words);
    let best: { members: readonly number[]; score: number; prior: number } | undefined;
    const consider = (members: readonly number[]): void => {
      scratch.fill(0);
      let contra = 0;
      let prior = 0;
      for (const b of members) {
        orInto(scratch, sets[b] ?? scratch);
        contra += top[b]?.c.contradicts ?? 0;
        prior += top[b]?.c.prior ?? 0;
      }
      const cover = countAndNot(scratch, taken);
      const score = cover - contradictionWeight * contra - extraCausePenalty * (members.length - 1);
      if (best === undefined || score > best.score || (score === best.score && prior > best.prior))
        best = { members, score, prior };
    };
    const w = top.length;
    for (let a = 0; a < w; a++) {
      consider([a]);
      if (maxJoint < 2) continue;
      for (let b = a + 1; b < w; b++) {
        consider([a, b]);
        if (maxJoint < 3) continue;
        for (let c = b + 1; c < w; c++) consider([a, b, c]);
      }
    }
    const joint = (best?.members ?? []).map((b) => top[b]?.c).filter((c) => c !== undefined);
    // Credited in order of their own weight, so the larger explanation keeps its paths.
    joint.sort((x, y) => value(y, fresh(y)) - value(x, fresh(x)) || tieBreak(x, y));
    for (const c of joint) if (fresh(c) > 0) take(c);
  }

  // Greedy for the rest, lazily: a candidate's fresh count only shrinks as others are taken.
  const rest = pool.filter((x) => !picked.includes(x.c));
  for (;;) {
    rest.sort((x, y) => y.bound - x.bound || tieBreak(x.c, y.c));
    const head = rest[0];
    if (!head || head.bound <= 0) break;
    const now = value(head.c, fresh(head.c));
    const next = rest[1];
    const stale = now !== head.bound;
    head.bound = now;
    if (stale && next && (now < next.bound || (now === next.bound && tieBreak(head.c, next.c) > 0)))
      continue;
    if (now <= 0) continue;
    rest.shift();
    take(head.c);
  }
  return picked;
}
