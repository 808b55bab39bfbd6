import type { CutLabel } from '../../../wire/diagnosis.js';
import type { PathState } from '../../types.js';
import type { Candidate, Rule } from '../candidate.js';
import type { Evidence } from '../evidence.js';
import { digestOf, list, mergeDigests, type Digest } from '../text.js';
import { layerOf, setBit, sorted, type AgentView } from '../views.js';

/**
 * `network_partition`: hosts fall into groups that reach each other inside but not across.
 * Two shapes: reachable groups that fail across (seen from both sides), and a cluster of two
 * or more hosts no reporting agent reaches (seen from the collector's side) — clustered by
 * a label no reachable host carries, or by going dark together.
 */
export const partition: Rule = {
  name: 'partition',
  kinds: ['network_partition'],
  tier: 'structural',
  propose: (ev) => [...bothSides(ev), ...ev.darkClusters.flatMap((m) => darkCluster(ev, m))],
};

/** A partition's one sentence. */
function partitionSummary(
  ev: Evidence,
  a: readonly string[],
  b: readonly string[],
  found: { cut: CutLabel | undefined; alternatives: readonly CutLabel[] },
  networkOnly: boolean,
  notes: { silentSide?: boolean; byTime?: boolean },
): string {
  const { cut, alternatives } = found;
  const also = alternatives.map((c) => `${c.key} ${c.values.join(', ')}`).join(' or ');
  const where = cut
    ? `, all behind ${cut.key} ${cut.values.join(', ')}${also ? ` (or ${also}: the evidence cannot tell them apart)` : ''}`
    : notes.byTime
      ? `; no topology label separates them from the rest, but they went dark within ${Math.round(ev.eventWindowMs / 1000)} s of each other: one cut (a port or VLAN change) explains them all`
      : '';
  const how = networkOnly
    ? '; every failure is a network-layer timeout — no connection refused, no protocol error'
    : '';
  const db = networkOnly && b.some((h) => ev.isDatabase(h));
  const silent = notes.silentSide
    ? `; agents behind the cut stopped reporting, as a cut would make them`
    : '';
  return `network partition between ${list(a)} and ${list(b)}${where}${how}${db ? ', so nothing points at the database' : ''}${silent}`;
}

/** Two or more reachable groups failing across (with the dark clusters of two or more). */
function bothSides(ev: Evidence): Candidate[] {
  if (ev.litGroups.length < 2) return [];
  const bigDark = ev.darkClusters.filter((m) => m.length >= 2);
  const all = [...ev.litGroups, ...bigDark];
  // A lone dark host is not a side of this partition: its own hypothesis explains it.
  const inGroups = new Set(all.flat());
  const bigDarkHosts = new Set(bigDark.flat());
  // Failing paths come grouped by agent: remember the last agent's group.
  let lastAgent: string | undefined;
  let lastGroup: string | undefined;
  const agentGroup = (agent: string): string | undefined => {
    if (agent !== lastAgent) {
      lastAgent = agent;
      const h = ev.host(agent);
      lastGroup = inGroups.has(h) ? ev.groupOf.get(h) : undefined;
    }
    return lastGroup;
  };
  const fast = bigDark.length === 0 ? acrossFast(ev, all, inGroups) : undefined;
  const taken: number[] = [];
  const paths: PathState[] = [];
  const failing = fast === undefined ? ev.failing : [];
  for (let i = 0; i < failing.length; i++) {
    const p = failing[i] as PathState;
    const across =
      layerOf(p) === 'network' &&
      ev.soundSet.has(p.agent) &&
      inGroups.has(p.component) &&
      agentGroup(p.agent) !== undefined &&
      agentGroup(p.agent) !== ev.groupOf.get(p.component);
    // The dark sides' own evidence too (a source-fault agent's paths toward them included).
    const ownDark = ev.sourceFaults.has(p.agent) && bigDarkHosts.has(ev.host(p.agent));
    if (across || ownDark || (bigDarkHosts.has(p.component) && layerOf(p) === 'network')) {
      taken.push(i);
      paths.push(p);
    }
  }
  if (fast === undefined ? taken.length === 0 : fast.digest.evidence.examples.length === 0)
    return [];
  const digest = fast?.digest ?? digestOf(paths);
  const cutSide = all.slice(1);
  const found = ev.cutOf(all, cutSide);
  const cut = found.cut;
  const hypothesis = {
    kind: 'network_partition' as const,
    confidence: cut ? 0.9 : 0.75,
    summary: partitionSummary(ev, ev.main, cutSide.flat(), found, digest.networkOnly, {}),
    components: sorted(cutSide.flat()),
    groups: all.map((m) => ev.group(m, cut)),
    ...(cut ? { cutLabel: cut } : {}),
  };
  if (fast === undefined) return [{ hypothesis, explains: taken, digest, prior: 1 }];
  // The indices only when asked for (a getter: spreading it would read them all).
  return [
    {
      hypothesis,
      get explains() {
        return fast.taken;
      },
      bits: fast.bits,
      digest,
      prior: 1,
    },
  ];
}

/** Each agent's share of a partition seen from both sides, as positions in its view's failing paths. */
interface Share {
  readonly epoch: number;
  readonly positions: readonly number[];
  readonly digest: Digest;
}
const shares = new WeakMap<AgentView, Share>();
/** The grouping the shares were read under: the same groups, the same epoch. */
let grouping = { key: '', epoch: 0 };

/**
 * The failing paths across the groups, read agent by agent: an agent's share is read again
 * only when its view or the groups changed, so a diagnosis after one agent's batch costs
 * that agent's paths and a merge, not the 100,000 paths of a large partition.
 */
function acrossFast(
  ev: Evidence,
  sides: readonly (readonly string[])[],
  inGroups: ReadonlySet<string>,
): { taken: readonly number[]; bits: Uint32Array; digest: Digest } {
  const key = sides.map((m) => m.join(',')).join('|');
  if (key !== grouping.key) grouping = { key, epoch: grouping.epoch + 1 };
  const epoch = grouping.epoch;
  const bits = new Uint32Array((ev.failingCount + 31) >>> 5);
  const parts: { offset: number; share: Share }[] = [];
  for (const a of ev.sound) {
    const h = ev.host(a);
    if (!inGroups.has(h)) continue;
    const v = ev.viewOf(a);
    const offset = ev.failingOffset(a);
    if (v === undefined || offset === undefined) continue;
    let share = shares.get(v);
    if (share === undefined || share.epoch !== epoch) {
      const mine = ev.groupOf.get(h);
      const positions: number[] = [];
      const ps: PathState[] = [];
      v.failing.forEach((p, i) => {
        if (layerOf(p) !== 'network' || !inGroups.has(p.component)) return;
        if (ev.groupOf.get(p.component) === mine) return;
        positions.push(i);
        ps.push(p);
      });
      share = { epoch, positions, digest: digestOf(ps) };
      shares.set(v, share);
    }
    if (share.positions.length === 0) continue;
    for (const i of share.positions) setBit(bits, offset + i);
    parts.push({ offset, share });
  }
  // The indices themselves only when something asks (the search reads the bitset).
  let taken: number[] | undefined;
  const lazy = {
    get taken(): readonly number[] {
      taken ??= parts.flatMap(({ offset, share }) => share.positions.map((i) => offset + i));
      return taken;
    },
    bits,
    digest: mergeDigests(parts.map((p) => p.share.digest)),
  };
  return lazy;
}

/** The failures a dark cluster explains: toward it, and its own cut-off agents' paths. */
export function darkClusterPaths(ev: Evidence, members: readonly string[]): number[] {
  const inCluster = new Set(members);
  return ev.pick(
    (p) =>
      (inCluster.has(p.component) && layerOf(p) === 'network') ||
      (ev.sourceFaults.has(p.agent) && inCluster.has(ev.host(p.agent))),
  );
}

function darkCluster(ev: Evidence, members: readonly string[]): Candidate[] {
  if (members.length < 2) return [];
  const taken = darkClusterPaths(ev, members);
  if (taken.length === 0) return [];
  const paths = taken.map((i) => ev.path(i));
  const inCluster = new Set(members);
  const agentsOn = ev.inventory.filter((c) => inCluster.has(c.name)).map((c) => c.agent ?? c.name);
  const silent = agentsOn.length > 0 && agentsOn.every((a) => !ev.isLive(a));
  const found = ev.cutOf([ev.main, members], [members]);
  const cut = found.cut;
  const byTime = ev.joinedByTime.has(members);
  return [
    {
      hypothesis: {
        kind: 'network_partition',
        confidence: cut ? 0.9 : byTime ? 0.75 : 0.7,
        summary: partitionSummary(ev, ev.main, members, found, digestOf(paths).networkOnly, {
          silentSide: silent,
          byTime,
        }),
        components: sorted(members),
        groups: [ev.group(ev.main, undefined), ev.group(members, cut)],
        ...(cut ? { cutLabel: cut } : {}),
      },
      explains: taken,
      silences: agentsOn.filter((a) => !ev.isLive(a)),
      prior: 1,
    },
  ];
}
