import type { Hypothesis } from '../../wire/diagnosis.js';
import type { PathState } from '../types.js';
import { byName, layerOf, sorted } from './views.js';

/** How hypotheses word and quote their evidence. */

const maxExamples = 5;

export const byPath = (a: PathState, b: PathState): number =>
  byName(a.agent, b.agent) || byName(a.target, b.target);

/**
 * Names shown in a summary's `{…}` before "and N more": a summary is one sentence for a tired
 * engineer, and a fault seen by 200 agents named them all. `groups` and `components` keep
 * every name.
 */
const maxListed = 8;
export const list = (xs: Iterable<string>): string => {
  const all = sorted(xs);
  if (all.length <= maxListed) return `{${all.join(', ')}}`;
  return `{${all.slice(0, maxListed - 1).join(', ')} and ${all.length - maxListed + 1} more}`;
};

function describePath(p: PathState): string {
  const cls = p.state === 'degraded' ? 'degraded' : p.lastClass;
  return `${p.agent} → ${p.target}: ${cls}`;
}

/** What a hypothesis quotes of the paths it explains, read in one pass over them. */
export interface Digest {
  readonly evidence: Hypothesis['evidence'];
  /** The earliest start of their states (epoch ms), if any. */
  readonly sinceMs: number | undefined;
  /** Every one failed at the network layer. */
  readonly networkOnly: boolean;
}

const digests = new WeakMap<readonly PathState[], Digest>();

/**
 * The digest of several disjoint sets of paths, from their own digests: each agent's share
 * of a partition is digested once per change of it, and a diagnosis only merges. The parts
 * must come in agent order (their examples are taken from the first).
 */
export function mergeDigests(parts: readonly Digest[]): Digest {
  const counts: Record<string, number> = {};
  let since = Number.POSITIVE_INFINITY;
  let networkOnly = true;
  const examples: string[] = [];
  for (const d of parts) {
    for (const k in d.evidence.counts) counts[k] = (counts[k] ?? 0) + (d.evidence.counts[k] ?? 0);
    if (d.sinceMs !== undefined && d.sinceMs < since) since = d.sinceMs;
    networkOnly &&= d.networkOnly;
    // Parts come in agent order and examples read `agent → target`: the first parts hold
    // the first examples.
    if (examples.length < maxExamples) examples.push(...d.evidence.examples);
  }
  examples.sort(byName);
  return {
    evidence: { counts, examples: examples.slice(0, maxExamples) },
    sinceMs: Number.isFinite(since) ? since : undefined,
    networkOnly,
  };
}

/** A partition can quote 100,000 paths: read them once, however often they are asked about. */
export function digestOf(paths: readonly PathState[]): Digest {
  const known = digests.get(paths);
  if (known) return known;
  const counts: Record<string, number> = {};
  let since = Number.POSITIVE_INFINITY;
  let networkOnly = true;
  // The first few in path order, without sorting them all.
  const first: PathState[] = [];
  for (const p of paths) {
    const key = p.state === 'degraded' ? 'degraded' : p.lastClass;
    counts[key] = (counts[key] ?? 0) + 1;
    if (p.sinceMs < since) since = p.sinceMs;
    if (networkOnly && layerOf(p) !== 'network') networkOnly = false;
    const last = first[maxExamples - 1];
    if (last && byPath(p, last) >= 0) continue;
    first.push(p);
    first.sort(byPath);
    if (first.length > maxExamples) first.pop();
  }
  const digest = {
    evidence: { counts, examples: first.map(describePath) },
    sinceMs: Number.isFinite(since) ? since : undefined,
    networkOnly,
  };
  digests.set(paths, digest);
  return digest;
}
