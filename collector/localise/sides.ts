import type { CutLabel, DiagnosisGroup } from '../../wire/diagnosis.js';
import type { PathState } from '../types.js';
import type { LocaliseComponent, LocaliserOptions } from './types.js';
import { byName, layerOf, pushTo, sorted } from './views.js';

/**
 * Which side of a cut is which, for the evidence (collector/localise/evidence.ts): the dark
 * hosts clustered into the cuts that explain them (its step 4), where the collector stands
 * (step 5), and the labels that name a cut.
 */

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

/** The dark hosts clustered into the cuts that explain them, and when each went dark. */
export interface DarkClusters {
  /** When each dark host went dark: the earliest start of the failures toward it. */
  readonly darkSinceMs: ReadonlyMap<string, number>;
  /** Dark hosts clustered into the cuts that explain them, each sorted. */
  readonly darkClusters: readonly (readonly string[])[];
  /** Dark clusters joined by time alone (no label says why they went dark together). */
  readonly joinedByTime: ReadonlySet<readonly string[]>;
}

/**
 * Clusters the dark hosts: by a label value no lit host carries, around the collector's own
 * side, and by time for hosts no label explains. `slices`: the live agents' failing paths.
 */
export function clusterDark(
  dark: readonly string[],
  lit: ReadonlySet<string>,
  slices: readonly (readonly PathState[])[],
  soundSet: ReadonlySet<string>,
  labelsOf: (h: string) => Readonly<Record<string, string>>,
  eventWindowMs: number,
): DarkClusters {
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
  return { darkSinceMs, darkClusters, joinedByTime };
}

/** What `placeObserver` reads of the evidence gathered before it. */
export interface ObserverInput {
  readonly options: LocaliserOptions;
  readonly components: ReadonlyMap<string, LocaliseComponent>;
  /** Live agents with debounced paths (only their names are read). */
  readonly live: ReadonlyMap<string, unknown>;
  readonly lit: ReadonlySet<string>;
  /** Lit groups by their root (smallest name). */
  readonly litGroupsByRoot: ReadonlyMap<string, string[]>;
  readonly sound: readonly string[];
  readonly soundSet: ReadonlySet<string>;
  readonly sourceFaults: ReadonlySet<string>;
  readonly host: (agent: string) => string;
  readonly labelsOf: (h: string) => Readonly<Record<string, string>>;
}

/** Where the collector stands, and the lit groups with its side (`main`) first. */
export function placeObserver(input: ObserverInput): {
  observer: ObserverPlace;
  litGroups: string[][];
  main: string[];
} {
  const { options, components, live, lit, litGroupsByRoot, sound, soundSet, sourceFaults } = input;
  const { host, labelsOf } = input;
  const inventory = options.inventory;
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
  return {
    observer: { host: observerHost, agents: localAgents, labels: observerLabels, side },
    litGroups,
    main,
  };
}

/**
 * The label whose values are disjoint between the groups, fewest values on the cut side
 * (ties: the finer label, the one with more values in the inventory); `alternatives` are
 * other labels that separate the groups just as well — the evidence cannot tell them apart.
 */
export function findCut(
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

export function group(
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
