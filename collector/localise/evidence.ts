import type { CutLabel, DiagnosisGroup } from '../../wire/diagnosis.js';
import type { AgentLiveness, PathState } from '../types.js';
import type { LocaliseComponent, LocaliserOptions } from './types.js';
import {
  byName,
  hasBit,
  layerOf,
  pushTo,
  setBit,
  sorted,
  viewCounts,
  type AgentView,
  type HostIds,
  type Reach,
  type TowardTotals,
} from './views.js';

/**
 * The evidence every rule reads, gathered once per diagnosis from the live agents' views:
 *
 * 1. Only paths of live agents count (a silent agent's paths are a stale window), and only
 *    debounced states (`failing`, `ok`, `degraded`; `unknown` says nothing).
 * 2. Network-layer reachability per (agent, host): reachable when any probe got an answer
 *    from the host — an ICMP reply, a TCP SYN-ACK, or a refusal/protocol answer (a refused
 *    connection proves the host is up). Unreachable when only network-layer failures came
 *    back (a lost full-size echo alone says nothing: that is the MTU's evidence).
 * 3. Source faults: an agent failing to ≥ `sourceFaultShare` of the hosts it probes that
 *    someone reaches, with no agent it reaches sharing that failure pattern (that would be a
 *    partition seen from one side), has a local problem; its evidence is set aside.
 * 4. Groups: connected components of hosts over the sound agents' reachability ("lit"), and
 *    the hosts no reporting agent reaches ("dark"), clustered into the cuts that explain
 *    them: by a topology label value no lit host carries (a switch, a zone); around the
 *    collector's own side when every lit host carries one value of a label; and, for hosts no
 *    label explains, by time — hosts that went dark within the event window are one event.
 * 5. Where the collector stands: its host, its local agents, its side (the lit group its
 *    agents or labels put it in) and the far side it cannot see.
 */
export interface Evidence {
  readonly options: LocaliserOptions;
  readonly inventory: readonly LocaliseComponent[];
  readonly components: ReadonlyMap<string, LocaliseComponent>;
  readonly agents: readonly AgentLiveness[];
  readonly nowMs: number;
  readonly eventWindowMs: number;
  /** The host an agent runs on (its component, or its own name outside the inventory). */
  host(agent: string): string;
  labelsOf(host: string): Readonly<Record<string, string>>;
  isLive(agent: string): boolean;
  isDatabase(host: string): boolean;
  /** Live agents with debounced paths, sorted. */
  readonly liveAgents: readonly string[];
  viewOf(agent: string): AgentView | undefined;
  reachOf(agent: string, host: string): Reach | undefined;
  /** Source-fault agents, and the hosts each fails to reach. */
  readonly sourceFaults: ReadonlySet<string>;
  readonly failedBy: ReadonlyMap<string, readonly number[]>;
  /** Live agents without a source fault, sorted. */
  readonly sound: readonly string[];
  readonly soundSet: ReadonlySet<string>;
  readonly lit: ReadonlySet<string>;
  readonly triedHosts: ReadonlySet<string>;
  readonly dark: readonly string[];
  /** Lit groups, the collector's side (`main`) first. */
  readonly litGroups: readonly (readonly string[])[];
  readonly main: readonly string[];
  /** Dark hosts clustered into the cuts that explain them, each sorted. */
  readonly darkClusters: readonly (readonly string[])[];
  /** Dark clusters joined by time alone (no label says why they went dark together). */
  readonly joinedByTime: ReadonlySet<readonly string[]>;
  /** `lit:<root>` / `dark:<root>` per host. */
  readonly groupOf: ReadonlyMap<string, string>;
  /** When each dark host went dark: the earliest start of the failures toward it. */
  readonly darkSinceMs: ReadonlyMap<string, number>;
  /**
   * Failing paths of live agents (probe-internal failures left out), in agent order: each
   * agent's view's failing paths, one after the other. Read through `path(i)` where possible:
   * the list itself is only put together when asked for.
   */
  readonly failing: readonly PathState[];
  readonly failingCount: number;
  /** The failing path at index `i`. */
  path(i: number): PathState;
  /** Paths of live agents to one component, in agent order. */
  pathsTo(component: string): PathState[];
  /** Where an agent's failing paths start in `failing` (they are its view's, in order). */
  failingOffset(agent: string): number | undefined;
  /** Indices of the failing paths that `pred` takes. */
  pick(pred: (p: PathState) => boolean, among?: readonly number[]): number[];
  readonly observer: ObserverPlace;
  readonly hosts: HostIds;
  readonly agentIds: HostIds;
  readonly towardTotals: ReadonlyMap<string, TowardTotals>;
  /** The label separating `sides`, with the values of the `cutSides`, and equal alternatives. */
  cutOf(
    sides: readonly (readonly string[])[],
    cutSides: readonly (readonly string[])[],
  ): { cut: CutLabel | undefined; alternatives: CutLabel[] };
  group(members: readonly string[], cut: CutLabel | undefined): DiagnosisGroup;
}

/** Where the collector stands, as the evidence shows it. */
export interface ObserverPlace {
  /** Its inventory host, when known. */
  readonly host: string | undefined;
  /** Its local agents (on its host), live ones first. */
  readonly agents: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** The hosts on its side of any cut: what it can still see. */
  readonly side: readonly string[];
}

export interface EvidenceInput {
  readonly options: LocaliserOptions;
  readonly agents: readonly AgentLiveness[];
  /** Views of live agents with debounced paths. */
  readonly live: ReadonlyMap<string, AgentView>;
  readonly hosts: HostIds;
  readonly reachers: Int32Array;
  readonly tried: Int32Array;
  readonly agentIds: HostIds;
  readonly towardTotals: ReadonlyMap<string, TowardTotals>;
  readonly nowMs: number;
}

export const defaultEventWindowMs = 10_000;

const inventories = new WeakMap<
  readonly LocaliseComponent[],
  { components: Map<string, LocaliseComponent>; hostOfAgent: Map<string, string> }
>();

/** The inventory by component and by agent, made once per inventory (it changes with the config). */
function inventoryIndex(inventory: readonly LocaliseComponent[]): {
  components: Map<string, LocaliseComponent>;
  hostOfAgent: Map<string, string>;
} {
  let index = inventories.get(inventory);
  if (index === undefined) {
    const hostOfAgent = new Map<string, string>();
    for (const c of inventory) hostOfAgent.set(c.agent ?? c.name, c.name);
    index = { components: new Map(inventory.map((c) => [c.name, c])), hostOfAgent };
    inventories.set(inventory, index);
  }
  return index;
}

const livenesses = new WeakMap<readonly AgentLiveness[], Map<string, AgentLiveness>>();

/** Agents by name, made once per liveness list. */
function livenessIndex(agents: readonly AgentLiveness[]): Map<string, AgentLiveness> {
  let index = livenesses.get(agents);
  if (index === undefined) {
    index = new Map(agents.map((a) => [a.agent, a]));
    livenesses.set(agents, index);
  }
  return index;
}

/** Disjoint-set over host names. */
class Groups {
  private readonly parent = new Map<string, string>();
  add(x: string): void {
    if (!this.parent.has(x)) this.parent.set(x, x);
  }
  find(x: string): string {
    let r = x;
    while (this.parent.get(r) !== r) r = this.parent.get(r) ?? r;
    this.parent.set(x, r);
    return r;
  }
  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    // Smallest name as root keeps the result independent of input order.
    if (ra !== rb) {
      if (ra < rb) this.parent.set(rb, ra);
      else this.parent.set(ra, rb);
    }
  }
}

export function gatherEvidence(input: EvidenceInput): Evidence {
  const { options, hosts, live } = input;
  const inventory = options.inventory;
  const sourceFaultShare = options.sourceFaultShare ?? 0.8;
  const eventWindowMs = options.eventWindowMs ?? defaultEventWindowMs;
  const { components, hostOfAgent } = inventoryIndex(inventory);
  const host = (agent: string): string => hostOfAgent.get(agent) ?? agent;
  const liveness = livenessIndex(input.agents);
  const labelsOf = (h: string): Readonly<Record<string, string>> =>
    components.get(h)?.labels ?? liveness.get(h)?.labels ?? {};
  const isLive = (agent: string): boolean => viewCounts(liveness.get(agent));

  const liveAgents = sorted(live.keys());
  const viewOf = (a: string): AgentView | undefined => live.get(a);
  const reachOf = (agent: string, h: string): Reach | undefined => {
    const v = viewOf(agent);
    const id = hosts.ids.get(h);
    if (!v || id === undefined) return undefined;
    return hasBit(v.yes, id) ? 'yes' : hasBit(v.noBits, id) ? 'no' : undefined;
  };
  const reachersOf = (id: number): number => input.reachers[id] ?? 0;

  // 3. Source faults.
  const failedBy = new Map<string, number[]>();
  for (const a of liveAgents) {
    const v = viewOf(a);
    if (!v) continue;
    const self = hosts.ids.get(host(a));
    let judged = v.yesIds.length - (self !== undefined && hasBit(v.yes, self) ? 1 : 0);
    let failedCount = 0;
    for (const id of v.no) {
      if (id === self || reachersOf(id) <= 0) continue;
      judged += 1;
      failedCount += 1;
    }
    if (failedCount < 2 || failedCount < sourceFaultShare * judged) continue;
    failedBy.set(
      a,
      v.no.filter((id) => id !== self && reachersOf(id) > 0),
    );
  }
  const sourceFaults = new Set<string>();
  for (const [a, failed] of failedBy) {
    const mine = viewOf(a);
    if (!mine) continue;
    // The agents a reaches: those whose hosts answer it.
    const sharedBySide = liveAgents.some((b) => {
      if (b === a) return false;
      const hb = hosts.ids.get(host(b));
      if (hb === undefined || !hasBit(mine.yes, hb)) return false;
      // What b fails to reach is few: count the overlap from its side.
      const theirs = viewOf(b)?.noBits;
      if (!theirs) return false;
      let shared = 0;
      for (const id of failed) if (hasBit(theirs, id)) shared += 1;
      return shared >= sourceFaultShare * failed.length;
    });
    if (!sharedBySide) sourceFaults.add(a);
  }
  const sound = liveAgents.filter((a) => !sourceFaults.has(a));
  const soundSet = new Set(sound);

  // 4. Groups over reachability of the sound agents.
  let reachers = input.reachers;
  let tried = input.tried;
  if (sourceFaults.size > 0) {
    reachers = reachers.slice();
    tried = tried.slice();
    for (const a of sourceFaults) {
      const v = viewOf(a);
      if (!v) continue;
      for (const id of v.yesIds) {
        reachers[id] = (reachers[id] ?? 0) - 1;
        tried[id] = (tried[id] ?? 0) - 1;
      }
      for (const id of v.no) tried[id] = (tried[id] ?? 0) - 1;
    }
  }
  const lit = new Set<string>();
  const triedHosts = new Set<string>();
  for (let id = 0; id < hosts.names.length; id++) {
    const name = hosts.names[id] ?? '';
    if ((reachers[id] ?? 0) > 0) lit.add(name);
    if ((tried[id] ?? 0) > 0) triedHosts.add(name);
  }
  const reaching = sound.filter((a) => (viewOf(a)?.yesIds.length ?? 0) > 0);
  for (const a of reaching) {
    lit.add(host(a));
    hosts.id(host(a));
  }
  const dark = sorted([...triedHosts].filter((h) => !lit.has(h)));
  const litGroupsByRoot = connectedGroups(reaching, viewOf, host, hosts);

  // The failing paths, as each live agent's slice: a diagnosis of a 100,000-path partition
  // need not copy them.
  const offsets = new Map<string, number>();
  const starts: number[] = [];
  const slices: (readonly PathState[])[] = [];
  let failingCount = 0;
  for (const a of liveAgents) {
    offsets.set(a, failingCount);
    const f = viewOf(a)?.failing ?? [];
    if (f.length === 0) continue;
    starts.push(failingCount);
    slices.push(f);
    failingCount += f.length;
  }
  const path = (i: number): PathState => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if ((starts[mid] ?? 0) <= i) lo = mid;
      else hi = mid - 1;
    }
    const p = slices[lo]?.[i - (starts[lo] ?? 0)];
    if (p === undefined) throw new Error(`no failing path ${i} of ${failingCount}`);
    return p;
  };
  let failing: PathState[] | undefined;
  const allFailing = (): PathState[] => (failing ??= slices.flat());

  // When each dark host went dark: the earliest failure toward it from a sound agent.
  const darkSinceMs = new Map<string, number>();
  if (dark.length > 0) {
    const darkSet = new Set(dark);
    for (const p of slices.flat()) {
      if (!darkSet.has(p.component) || !soundSet.has(p.agent) || layerOf(p) !== 'network') continue;
      const known = darkSinceMs.get(p.component);
      if (known === undefined || p.sinceMs < known) darkSinceMs.set(p.component, p.sinceMs);
    }
  }

  // Dark hosts cluster by a label value no reachable host carries.
  const litValues = new Set<string>();
  if (dark.length > 0)
    for (const h of lit)
      for (const [k, v] of Object.entries(labelsOf(h))) litValues.add(`${k}=${v}`);
  const darkGroups = new Groups();
  for (const h of dark) darkGroups.add(h);
  // The collector's own side cut off from the rest: every reachable host carries one value of
  // a label (one switch, one zone) and the dark hosts outside it differ among themselves.
  // One cut around that value explains them all; per-value islands would be several faults.
  // Every union below is of hosts dark within one event window of the first of their run:
  // hosts that went dark minutes apart are separate events, whatever they share, and a
  // cascade (one host every few seconds for a minute) is not one event by chaining.
  const byTime = [...dark].sort(
    (x, y) => (darkSinceMs.get(x) ?? 0) - (darkSinceMs.get(y) ?? 0) || byName(x, y),
  );
  const unionRuns = (inTimeOrder: readonly string[]): string[][] => {
    const runs: string[][] = [];
    let run: string[] = [];
    for (const h of inTimeOrder) {
      const first = run[0];
      const t = darkSinceMs.get(h) ?? 0;
      if (first !== undefined && t - (darkSinceMs.get(first) ?? 0) <= eventWindowMs) {
        darkGroups.union(first, h);
        run.push(h);
      } else {
        run = [h];
        runs.push(run);
      }
    }
    return runs;
  };
  const far = new Set(farSide(lit, dark, labelsOf));
  unionRuns(byTime.filter((h) => far.has(h)));
  // Per label value no lit host carries, its dark hosts.
  const byPair = new Map<string, string[]>();
  for (const h of byTime)
    for (const [k, v] of Object.entries(labelsOf(h))) {
      const pair = `${k}=${v}`;
      if (!litValues.has(pair)) pushTo(byPair, pair, h);
    }
  for (const hosts of byPair.values()) unionRuns(hosts);
  // Hosts no label explains, dark within one event window of each other: one event (two
  // application hosts moved together into the wrong VLAN), until evidence separates them.
  const clusterSize = new Map<string, number>();
  for (const h of dark) {
    const r = darkGroups.find(h);
    clusterSize.set(r, (clusterSize.get(r) ?? 0) + 1);
  }
  const lone = byTime.filter((h) => clusterSize.get(darkGroups.find(h)) === 1);
  const timeJoined = new Set(unionRuns(lone).flatMap((run) => (run.length > 1 ? run : [])));
  const darkByRoot = new Map<string, string[]>();
  for (const h of dark) pushTo(darkByRoot, darkGroups.find(h), h);
  const darkClusters = [...darkByRoot.values()]
    .map((m) => m.sort(byName))
    .sort((x, y) => byName(x[0] ?? '', y[0] ?? ''));
  const joinedByTime = new Set(darkClusters.filter((m) => m.some((h) => timeJoined.has(h))));

  const groupOf = new Map<string, string>();
  for (const [r, members] of litGroupsByRoot) for (const h of members) groupOf.set(h, `lit:${r}`);
  for (const members of darkClusters)
    for (const h of members) groupOf.set(h, `dark:${members[0] ?? h}`);

  // 5. Where the collector stands.
  const observerHost =
    options.observer?.host ??
    inventory.find((c) => options.observer?.agents?.includes(c.agent ?? c.name))?.name;
  const observerHostComponent =
    observerHost === undefined ? undefined : components.get(observerHost);
  const localAgents = sorted(
    options.observer?.agents ??
      (observerHostComponent ? [observerHostComponent.agent ?? observerHostComponent.name] : []),
  ).sort((x, y) => Number(live.has(y)) - Number(live.has(x)) || byName(x, y));
  const observerLabels =
    options.observer?.labels ??
    options.collectorLabels ??
    (observerHost === undefined ? {} : labelsOf(observerHost));

  // Main group: the collector's own side — the group of its host or local agent, else the
  // group holding the host that shares most of the collector's labels — then the one with
  // the most reporting agents (it hears them).
  const nearCollector = (m: readonly string[]): number => {
    if (observerHost !== undefined && m.includes(observerHost)) return 1_000;
    return Math.max(
      0,
      ...m.map(
        (h) => Object.entries(observerLabels).filter(([k, v]) => labelsOf(h)[k] === v).length,
      ),
    );
  };
  const liveOn = (m: readonly string[]): number => {
    const inside = new Set(m);
    return sound.filter((a) => inside.has(host(a))).length;
  };
  const litGroups = [...litGroupsByRoot.values()].sort(
    (x, y) =>
      nearCollector(y) - nearCollector(x) ||
      liveOn(y) - liveOn(x) ||
      byName(x[0] ?? '', y[0] ?? ''),
  );
  const main = litGroups[0] ?? [];
  const localLive = localAgents.filter((a) => soundSet.has(a) || sourceFaults.has(a));
  let side: readonly string[];
  if (observerHost !== undefined && !lit.has(observerHost)) side = [observerHost];
  else if (observerHost !== undefined) side = litGroups.find((m) => m.includes(observerHost)) ?? [];
  else if (localLive.length > 0) {
    const h = host(localLive[0] ?? '');
    side = litGroups.find((m) => m.includes(h)) ?? [h];
  } else side = main;

  const pathsTo = (component: string): PathState[] => {
    const out: PathState[] = [];
    for (const a of liveAgents) for (const p of viewOf(a)?.pathsTo(component) ?? []) out.push(p);
    return out;
  };

  return {
    options,
    inventory,
    components,
    agents: input.agents,
    nowMs: input.nowMs,
    eventWindowMs,
    host,
    labelsOf,
    isLive,
    isDatabase: (h) => components.get(h)?.role === 'database',
    liveAgents,
    viewOf,
    reachOf,
    sourceFaults,
    failedBy,
    sound,
    soundSet,
    lit,
    triedHosts,
    dark,
    litGroups,
    main,
    darkClusters,
    joinedByTime,
    groupOf,
    darkSinceMs,
    get failing() {
      return allFailing();
    },
    failingCount,
    path,
    pathsTo,
    failingOffset: (a) => offsets.get(a),
    pick: (pred, among) => {
      const out: number[] = [];
      if (among === undefined) {
        slices.forEach((f, k) => {
          const start = starts[k] ?? 0;
          for (let j = 0; j < f.length; j++) if (pred(f[j] as PathState)) out.push(start + j);
        });
      } else for (const i of among) if (pred(path(i))) out.push(i);
      return out;
    },
    observer: { host: observerHost, agents: localAgents, labels: observerLabels, side },
    hosts,
    agentIds: input.agentIds,
    towardTotals: input.towardTotals,
    cutOf: (sides, cutSides) => findCut(sides, cutSides, labelsOf, inventory),
    group: (members, cut) => group(members, cut, labelsOf),
  };
}

/** Connected components of lit hosts: an agent's host joins every host that answers it. */
function connectedGroups(
  reaching: readonly string[],
  viewOf: (a: string) => AgentView | undefined,
  host: (agent: string) => string,
  hosts: HostIds,
): Map<string, string[]> {
  const litGroups = new Map<string, string[]>();
  const words = (hosts.names.length + 31) >>> 5;
  const assigned = new Uint8Array(reaching.length);
  const hostIds = reaching.map((a) => hosts.id(host(a)));
  const rows = reaching.map((a) => viewOf(a)?.yes ?? new Uint32Array(0));
  for (let i = 0; i < reaching.length; i++) {
    if (assigned[i]) continue;
    const set = new Uint32Array(words);
    const join = (j: number): void => {
      assigned[j] = 1;
      const row = rows[j] ?? new Uint32Array(0);
      for (let w = 0; w < row.length; w++) set[w] = (set[w] ?? 0) | (row[w] ?? 0);
      setBit(set, hostIds[j] ?? 0);
    };
    join(i);
    for (let changed = true; changed;) {
      changed = false;
      for (let j = i + 1; j < reaching.length; j++) {
        if (assigned[j]) continue;
        let meets = hasBit(set, hostIds[j] ?? 0);
        const row = rows[j] ?? new Uint32Array(0);
        for (let w = 0; !meets && w < row.length; w++)
          meets = ((set[w] ?? 0) & (row[w] ?? 0)) !== 0;
        if (meets) {
          join(j);
          changed = true;
        }
      }
    }
    const members: string[] = [];
    for (let id = 0; id < hosts.names.length; id++)
      if (hasBit(set, id)) members.push(hosts.names[id] ?? '');
    members.sort(byName);
    litGroups.set(members[0] ?? '', members);
  }
  const byRoot = [...litGroups].sort(([x], [y]) => byName(x, y));
  return new Map(byRoot);
}

/**
 * The label whose values are disjoint between the groups, fewest values on the cut side
 * (ties: the finer label, the one with more values in the inventory); `alternatives` are
 * other labels that separate the groups just as well — the evidence cannot tell them apart.
 */
function findCut(
  sides: readonly (readonly string[])[],
  cutSides: readonly (readonly string[])[],
  labelsOf: (h: string) => Readonly<Record<string, string>>,
  inventory: readonly LocaliseComponent[],
): { cut: CutLabel | undefined; alternatives: CutLabel[] } {
  const found: { key: string; values: string[]; total: number }[] = [];
  const keys = new Set<string>();
  for (const h of sides.flat()) for (const k of Object.keys(labelsOf(h))) keys.add(k);
  for (const key of sorted(keys)) {
    const valueSets = sides.map((m) => new Set(m.map((h) => labelsOf(h)[key])));
    if (valueSets.some((s) => s.has(undefined))) continue;
    const owner = new Map<string | undefined, number>();
    let disjoint = true;
    valueSets.forEach((s, i) => {
      for (const v of s) {
        if (owner.has(v) && owner.get(v) !== i) disjoint = false;
        owner.set(v, i);
      }
    });
    if (!disjoint) continue;
    const values = sorted(cutSides.flat().map((h) => labelsOf(h)[key] ?? ''));
    const total = new Set(inventory.map((c) => c.labels[key])).size;
    found.push({ key, values, total });
  }
  found.sort(
    (x, y) => x.values.length - y.values.length || y.total - x.total || byName(x.key, y.key),
  );
  const best = found[0];
  if (!best) return { cut: undefined, alternatives: [] };
  const alternatives = found
    .slice(1)
    .filter((f) => f.values.length === best.values.length)
    .map((f) => ({ key: f.key, values: f.values }));
  return { cut: { key: best.key, values: best.values }, alternatives };
}

/**
 * The dark hosts beyond a cut around the reachable side, when every reachable host carries
 * one value of a label and at least two dark hosts carry other values of it (the label
 * leaving out the most dark hosts wins; ties: the key's name). Dark hosts carrying that
 * value are not part of it: they are faults inside the reachable side.
 */
function farSide(
  lit: ReadonlySet<string>,
  dark: readonly string[],
  labelsOf: (h: string) => Readonly<Record<string, string>>,
): string[] {
  if (lit.size === 0 || dark.length < 2) return [];
  const keys = new Set<string>();
  for (const h of lit) for (const k of Object.keys(labelsOf(h))) keys.add(k);
  let best: string[] = [];
  for (const key of sorted(keys)) {
    const values = new Set<string | undefined>();
    for (const h of lit) values.add(labelsOf(h)[key]);
    if (values.size !== 1 || values.has(undefined)) continue;
    const outside = dark.filter((h) => {
      const v = labelsOf(h)[key];
      return v !== undefined && !values.has(v);
    });
    if (outside.length > best.length) best = outside;
  }
  return best.length >= 2 ? best : [];
}

function group(
  members: readonly string[],
  cut: CutLabel | undefined,
  labelsOf: (h: string) => Readonly<Record<string, string>>,
): DiagnosisGroup {
  const m = sorted(members);
  if (!cut) return { members: m };
  const values = sorted(m.map((h) => labelsOf(h)[cut.key] ?? '?'));
  return { name: `${cut.key}=${values.join(',')}`, members: m };
}

/** A label every failing source carries and no succeeding source does. */
export function sharedLabel(
  failing: readonly string[],
  succeeding: readonly string[],
  labelsOf: (h: string) => Readonly<Record<string, string>>,
): CutLabel | undefined {
  const first = failing[0];
  if (first === undefined) return undefined;
  for (const [key, value] of Object.entries(labelsOf(first)).sort(([x], [y]) => byName(x, y))) {
    if (!failing.every((h) => labelsOf(h)[key] === value)) continue;
    if (succeeding.some((h) => labelsOf(h)[key] === value)) continue;
    if (succeeding.length === 0) continue;
    return { key, values: [value] };
  }
  return undefined;
}
