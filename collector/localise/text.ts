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

export function describePath(p: PathState): string {
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
