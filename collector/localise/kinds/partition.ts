import type { CutLabel } from '../../../wire/diagnosis.js';
import type { PathState } from '../../types.js';
import type { Candidate, Rule } from '../candidate.js';
import type { Evidence } from '../evidence.js';
import { digestOf, list } from '../text.js';
import { layerOf, sorted } from '../views.js';

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
export function partitionSummary(
  ev: Evidence,
  a: readonly string[],
  b: readonly string[],
  found: { cut: CutLabel | undefined; alternatives: readonly CutLabel[] },
  paths: readonly PathState[],
  notes: { silentSide?: boolean; byTime?: boolean },
): string {
  const { cut, alternatives } = found;
  const also = alternatives.map((c) => `${c.key} ${c.values.join(', ')}`).join(' or ');
  const where = cut
    ? `, all behind ${cut.key} ${cut.values.join(', ')}${also ? ` (or ${also}: the evidence cannot tell them apart)` : ''}`
    : notes.byTime
      ? `; no topology label separates them from the rest, but they went dark within ${Math.round(ev.eventWindowMs / 1000)} s of each other: one cut (a port or VLAN change) explains them all`
      : '';
  const networkOnly = digestOf(paths).networkOnly;
  const how = networkOnly
    ? '; every failure is a network-layer timeout — no connection refused, no protocol error'
    : '';
  const db = networkOnly && b.some((h) => ev.isDatabase(h));
  const silent = notes.silentSide
    ? `; agents behind the cut are silent, as a cut would make them`
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
  const paths: PathState[] = [];
  for (const p of ev.failing) {
    const across =
      layerOf(p) === 'network' &&
      ev.soundSet.has(p.agent) &&
      inGroups.has(p.component) &&
      agentGroup(p.agent) !== undefined &&
      agentGroup(p.agent) !== ev.groupOf.get(p.component);
    // The dark sides' own evidence too (a source-fault agent's paths toward them included).
    const ownDark = ev.sourceFaults.has(p.agent) && bigDarkHosts.has(ev.host(p.agent));
    if (across || ownDark || (bigDarkHosts.has(p.component) && layerOf(p) === 'network'))
      paths.push(p);
  }
  if (paths.length === 0) return [];
  const cutSide = all.slice(1);
  const found = ev.cutOf(all, cutSide);
  const cut = found.cut;
  return [
    {
      hypothesis: {
        kind: 'network_partition',
        confidence: cut ? 0.9 : 0.75,
        summary: partitionSummary(ev, ev.main, cutSide.flat(), found, paths, {}),
        components: sorted(cutSide.flat()),
        groups: all.map((m) => ev.group(m, cut)),
        ...(cut ? { cutLabel: cut } : {}),
      },
      explains: paths,
      prior: 1,
    },
  ];
}

/** The failures a dark cluster explains: toward it, and its own cut-off agents' paths. */
export function darkClusterPaths(ev: Evidence, members: readonly string[]): PathState[] {
  const inCluster = new Set(members);
  return ev.failing.filter(
    (p) =>
      (inCluster.has(p.component) && layerOf(p) === 'network') ||
      (ev.sourceFaults.has(p.agent) && inCluster.has(ev.host(p.agent))),
  );
}

function darkCluster(ev: Evidence, members: readonly string[]): Candidate[] {
  if (members.length < 2) return [];
  const paths = darkClusterPaths(ev, members);
  if (paths.length === 0) return [];
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
        summary: partitionSummary(ev, ev.main, members, found, paths, {
          silentSide: silent,
          byTime,
        }),
        components: sorted(members),
        groups: [ev.group(ev.main, undefined), ev.group(members, cut)],
        ...(cut ? { cutLabel: cut } : {}),
      },
      explains: paths,
      silences: agentsOn.filter((a) => !ev.isLive(a)),
      prior: 1,
    },
  ];
}
