import type { CutLabel, DiagnosisGroup } from '../../wire/diagnosis.js';
import type { AgentLiveness, PathState } from '../types.js';
import type { LocaliseComponent, LocaliserOptions } from './types.js';
import { clusterDark, findCut, group, placeObserver } from './sides.js';
import type { ObserverPlace } from './sides.js';
import {
  byName,
  hasBit,
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
 *    partition seen from one side), has a local problem; its evidence is set aside. It is a
 *    fault of its host's way out alone (`isOwnSourceFault`) while the others reach that host
 *    steadily.
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
  /**
   * Whether a source fault's own host is reached steadily by the other agents through the
   * time of its failures (or nobody else probes it): its host's way out alone, what
   * `source_fault` names. Otherwise its failures are its host's connectivity.
   */
  readonly isOwnSourceFault: (agent: string) => boolean;
  readonly failedBy: ReadonlyMap<string, readonly number[]>;
  /** Live agents without a source fault, sorted. */
  readonly sound: readonly string[];
  readonly soundSet: ReadonlySet<string>;
  readonly lit: ReadonlySet<string>;
  readonly triedHosts: ReadonlySet<string>;
  /** How many live agents have a debounced path to the host (reaching it or not). */
  triedBy(host: string): number;
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
  /** Indices of an agent's failing paths in `failing`. */
  failingOf(agent: string): number[];
  /**
   * Indices of the failing paths of host `h`'s agents that are source faults but not their
   * host's own ({@link isOwnSourceFault}): `h`'s connectivity failed them, and what names
   * `h`'s link (its loss, its cut) explains them too.
   */
  hostBoundFailing(h: string): number[];
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
  const { failedBy, sourceFaults } = findSourceFaults(
    liveAgents,
    viewOf,
    host,
    hosts,
    reachersOf,
    sourceFaultShare,
  );
  const sound = liveAgents.filter((a) => !sourceFaults.has(a));
  const soundSet = new Set(sound);

  // 4. Groups over reachability of the sound agents.
  const { lit, triedHosts, dark, litGroupsByRoot } = litHosts(input, sound, sourceFaults, host);

  const { offsets, starts, slices, failingCount, path } = failingSlices(liveAgents, viewOf);
  let failing: PathState[] | undefined;
  const allFailing = (): PathState[] => (failing ??= slices.flat());

  const { darkSinceMs, darkClusters, joinedByTime } = clusterDark(
    dark,
    lit,
    slices,
    soundSet,
    labelsOf,
    eventWindowMs,
  );

  const groupOf = new Map<string, string>();
  for (const [r, members] of litGroupsByRoot) for (const h of members) groupOf.set(h, `lit:${r}`);
  for (const members of darkClusters)
    for (const h of members) groupOf.set(h, `dark:${members[0] ?? h}`);

  // 5. Where the collector stands.
  const { observer, litGroups, main } = placeObserver({
    options,
    components,
    live,
    lit,
    litGroupsByRoot,
    sound,
    soundSet,
    sourceFaults,
    host,
    labelsOf,
  });

  // Asked per candidate of every rule that names a host: each agent's answer once.
  const ownSourceFault = new Map<string, boolean>();
  const isOwnSourceFault = (a: string): boolean => {
    let own = ownSourceFault.get(a);
    if (own === undefined) {
      const mine = viewOf(a);
      own =
        sourceFaults.has(a) &&
        mine !== undefined &&
        steadilyReached(a, mine, liveAgents, viewOf, host) !== false;
      ownSourceFault.set(a, own);
    }
    return own;
  };
  const failingOf = (a: string): number[] => {
    const offset = offsets.get(a) ?? 0;
    return (viewOf(a)?.failing ?? []).map((_, i) => offset + i);
  };

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
    isOwnSourceFault,
    failedBy,
    sound,
    soundSet,
    lit,
    triedHosts,
    triedBy: (h: string) => {
      const id = hosts.ids.get(h);
      return id === undefined ? 0 : (input.tried[id] ?? 0);
    },
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
    failingOf,
    hostBoundFailing: (h) =>
      [...sourceFaults]
        .filter((a) => host(a) === h && !isOwnSourceFault(a))
        .flatMap((a) => failingOf(a)),
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
    observer,
    hosts,
    agentIds: input.agentIds,
    towardTotals: input.towardTotals,
    cutOf: (sides, cutSides) => findCut(sides, cutSides, labelsOf, inventory),
    group: (members, cut) => group(members, cut, labelsOf),
  };
}

/**
 * Agents failing to ≥ `sourceFaultShare` of the hosts they probe that someone reaches, with
 * no agent they reach sharing that failure pattern; and the hosts each fails to reach.
 */
function findSourceFaults(
  liveAgents: readonly string[],
  viewOf: (a: string) => AgentView | undefined,
  host: (agent: string) => string,
  hosts: HostIds,
  reachersOf: (id: number) => number,
  sourceFaultShare: number,
): { failedBy: Map<string, number[]>; sourceFaults: Set<string> } {
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
  return { failedBy, sourceFaults };
}

/**
 * Whether another agent reached `a`'s own host steadily through the time of `a`'s failures:
 * one of its paths there ok since before `a`'s newest failing result, with no fall or blip at
 * the network layer since (`fellAtMs`, `blippedAtMs`); undefined when no other agent probes
 * that host. A source fault is the host's way out alone. When the others' way in failed too
 * around then — its link flapped, or it was cut off and its agent is replaying its spool —
 * the agent's failures are its host's connectivity, which the other rules read (a flapping
 * link's replayed failures, set against the others' paths already back, read as a source
 * fault and paged).
 */
function steadilyReached(
  a: string,
  mine: AgentView,
  liveAgents: readonly string[],
  viewOf: (a: string) => AgentView | undefined,
  host: (agent: string) => string,
): boolean | undefined {
  let newestFailureMs = 0;
  for (const p of mine.failing) if (p.lastSeenMs > newestFailureMs) newestFailureMs = p.lastSeenMs;
  const own = host(a);
  let probed = false;
  for (const b of liveAgents) {
    if (b === a || host(b) === own) continue;
    for (const p of viewOf(b)?.pathsTo(own) ?? []) {
      probed = true;
      if (
        p.state === 'ok' &&
        p.sinceMs <= newestFailureMs &&
        p.fellAtMs === undefined &&
        p.blippedAtMs === undefined
      )
        return true;
    }
  }
  return probed ? false : undefined;
}

/**
 * The hosts the sound agents reach (lit: the source faults' reach taken out) and tried, the
 * tried hosts nobody reaches (dark), and the lit hosts' connected groups by root.
 */
function litHosts(
  input: EvidenceInput,
  sound: readonly string[],
  sourceFaults: ReadonlySet<string>,
  host: (agent: string) => string,
): {
  lit: Set<string>;
  triedHosts: Set<string>;
  dark: string[];
  litGroupsByRoot: Map<string, string[]>;
} {
  const { hosts, live } = input;
  const viewOf = (a: string): AgentView | undefined => live.get(a);
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
  return { lit, triedHosts, dark, litGroupsByRoot };
}

/**
 * The failing paths, as each live agent's slice: a diagnosis of a 100,000-path partition
 * need not copy them. `path(i)` finds the `i`th of them all.
 */
function failingSlices(
  liveAgents: readonly string[],
  viewOf: (a: string) => AgentView | undefined,
): {
  offsets: Map<string, number>;
  starts: number[];
  slices: (readonly PathState[])[];
  failingCount: number;
  path: (i: number) => PathState;
} {
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
  return { offsets, starts, slices, failingCount, path };
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
