import type { CutLabel, Diagnosis, FaultKind, Hypothesis } from '../../wire/diagnosis.js';
import {
  ScenarioSchema,
  brokenInvariants,
  buildInput,
  mtuOnlyServiceComponents,
  world,
} from './scenario.js';
import { rng } from '../../lib/prng.js';
import type { Fault, Scenario } from './scenario.js';
import type { LocaliseInput } from '../../collector/localise/localise.js';

/**
 * Random localisation cases: generated topologies (3–4 switches in 2 zones, 8–20 hosts with
 * the roles database/api/cache/web, agents on most hosts) with one to three faults injected
 * through the scenario builder, so the matrix fails the way real probes would (a cut times out
 * across it and silences the agents the collector no longer hears, a down service refuses, a
 * hung one times out after connecting, a small-MTU element eats full-size packets, …).
 *
 * The collector stands somewhere in each topology (issue 12): on an inventory host with or
 * without an agent beside it, on no host at all (labels only), or above the network hearing
 * every agent; cuts may leave it on the larger side, on the smaller side, or alone. Faults
 * start at different times: a second fault either in the same couple of seconds or minutes
 * apart. Deterministic per seed.
 */

/** The fault variants the generator injects, by shape; several map to one fault kind. */
export const injectedKinds = [
  'partition by switch',
  'partition by zone',
  /** A cut of 2–4 hosts that follows no label, beside healthy hosts on their switches. */
  'partition by host set',
  /** The collector's own host cut off alone, with or without its local agent. */
  'collector host cut',
  /** The collector's side — its switch, zone or a small host set — the smaller side of a cut. */
  'collector side cut',
  /** A collector on no inventory host, its own port cut: every agent falls silent. */
  'collector alone cut',
  'host_unreachable',
  /** Two hosts of one switch (often all of it) dark minutes apart: two events. */
  'hosts down apart',
  'service_down',
  'service_unresponsive',
  'path_blocked',
  /** New connections from some hosts to a target dropped; pings and the reverse way pass. */
  'one-way filter',
  'source_fault',
  'packet_loss',
  /** A host's link going down and up faster than the debounce. */
  'flapping link',
  'dns_failure',
  'agent_silent',
  'mtu on port',
  'mtu on uplink',
  'mtu on switch',
] as const;
export type InjectedKind = (typeof injectedKinds)[number];

/** How the summary of the collector's own cut begins (issue 12). */
export const collectorCutPrefix = "the collector's side is cut off";
/** What a partition's summary says when no topology label separates its sides. */
export const noLabelPhrase = 'no topology label separates them';

/** What was injected, and what a right answer looks like. */
export interface Truth {
  readonly variant: InjectedKind;
  readonly kind: FaultKind;
  /** Acceptable component lists (sorted): a partition seen from both sides may be named by either. */
  readonly components: readonly (readonly string[])[];
  /** For `dns_failure`: the hosts whose resolver fails (the hypothesis's source group). */
  readonly sources?: readonly string[];
  /** Components at fault: never to be ruled out. */
  readonly culprits: readonly string[];
  /** A network-layer fault: must never blame a database or a service. */
  readonly network: boolean;
  /** For a partition: whether the answer must say the collector's own side is cut off. */
  readonly collectorCutOff?: boolean;
  /**
   * The cut label the answer must name: one of `cutLabels[i]` with `components[i]` (labels
   * that hold exactly the same hosts are equivalent: the evidence cannot tell them apart).
   */
  readonly cutLabels?: readonly (readonly CutLabel[])[];
  readonly summaryStartsWith?: string;
  readonly summaryIncludes?: readonly string[];
}

/** One generated case: the scenario to build and the faults it hides. */
export interface GeneratedCase {
  readonly id: string;
  readonly scenario: Scenario;
  readonly truths: readonly Truth[];
}

type Component = Scenario['components'][number];
type Collector = Scenario['collector'];

const roleServices: Record<string, { name: string; kind: string }[][]> = {
  database: [[{ name: 'postgres', kind: 'postgres' }], [{ name: 'mysql', kind: 'mysql' }]],
  api: [[{ name: 'http', kind: 'http' }]],
  cache: [[{ name: 'redis', kind: 'redis' }]],
  web: [[{ name: 'http', kind: 'http' }], [{ name: 'https', kind: 'http' }]],
};
const rolePrefix: Record<string, string> = {
  database: 'db',
  api: 'app',
  cache: 'cache',
  web: 'web',
};

const sortedNames = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();
const zoneOf = (sw: string): string => (sw === 'sw-1' || sw === 'sw-2' ? 'a' : 'b');

/** A topology: hosts spread over the switches, at least two per switch. */
function topology(random: () => number): { components: Component[]; switches: string[] } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const switchCount = random() < 0.5 ? 3 : 4;
  const switches = Array.from({ length: switchCount }, (_, i) => `sw-${i + 1}`);
  const hostCount = 8 + Math.floor(random() * 13);
  const roles = ['database', 'database', 'api', 'api', 'cache', 'web'];
  while (roles.length < hostCount) roles.push(pick(['database', 'api', 'api', 'cache', 'web']));
  const counters = new Map<string, number>();
  const components: Component[] = roles.map((role, i) => {
    const n = (counters.get(role) ?? 0) + 1;
    counters.set(role, n);
    // The first hosts fill every switch twice; the rest land anywhere.
    const sw = i < 2 * switchCount ? (switches[i % switchCount] as string) : pick(switches);
    const name = `${rolePrefix[role] ?? role}-${n}`;
    const hasAgent = random() < 0.85;
    return {
      name,
      role,
      labels: { zone: zoneOf(sw), switch: sw },
      services: pick(roleServices[role] ?? [[]]),
      ...(hasAgent ? {} : { agent: false as const }),
    };
  });
  // Shuffle so roles are not tied to switches.
  for (let i = components.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const a = components[i] as Component;
    const b = components[j] as Component;
    components[i] = { ...a, labels: b.labels };
    components[j] = { ...b, labels: a.labels };
  }
  return { components, switches };
}

const hasAgent = (c: Component): boolean => c.agent !== false;

/**
 * Where the collector stands when the fault does not decide it: on an inventory host (most
 * often one with an agent: its local agent), on no host with a switch's labels, or hearing
 * every agent over a management network.
 */
function placeCollector(
  random: () => number,
  components: readonly Component[],
  switches: readonly string[],
): Collector {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const r = random();
  if (r < 0.2)
    return random() < 0.5
      ? { hearsAll: true, host: pick(components).name }
      : { hearsAll: true, labels: {} };
  if (r < 0.35) {
    const sw = pick(switches);
    return { hearsAll: false, labels: { zone: zoneOf(sw), switch: sw } };
  }
  const withAgent = random() < 0.7;
  const pool = components.filter((c) => hasAgent(c) === withAgent);
  return { hearsAll: false, host: pick(pool.length > 0 ? pool : components).name };
}

/** Whether a host set holds every host of some label value (then a label cut explains part of it). */
function coversLabelValue(set: ReadonlySet<string>, components: readonly Component[]): boolean {
  const byValue = new Map<string, string[]>();
  for (const c of components)
    for (const [k, v] of Object.entries(c.labels)) {
      const key = `${k}=${v}`;
      byValue.set(key, [...(byValue.get(key) ?? []), c.name]);
    }
  return [...byValue.values()].some((hosts) => hosts.every((h) => set.has(h)));
}

/** The labels that hold exactly these hosts: `{key, the hosts' values}` no other host carries. */
function labelsHolding(hosts: readonly Component[], all: readonly Component[]): CutLabel[] {
  const inside = new Set(hosts.map((c) => c.name));
  const keys = sortedNames(hosts.flatMap((c) => Object.keys(c.labels)));
  const out: CutLabel[] = [];
  for (const key of keys) {
    if (hosts.some((c) => c.labels[key] === undefined)) continue;
    const values = sortedNames(hosts.map((c) => c.labels[key] as string));
    if (all.some((c) => !inside.has(c.name) && values.includes(c.labels[key] ?? ''))) continue;
    out.push({ key, values });
  }
  return out;
}

/**
 * Generates `count` cases from `seed`: the fault variants in turn, a quarter of each shape's
 * cases with a second fault elsewhere (on the collector's side of any cut, on other hosts),
 * half of those with a third. `from`: the first case's index (the cases before it are skipped,
 * the rest are the same as without it: each is made from the seed and its own index).
 */
export function generateCases(count: number, seed: number, from = 0): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  for (let i = from; i < count; i++) {
    const random = rng(seed * 100_003 + i);
    const variant = injectedKinds[i % injectedKinds.length] as InjectedKind;
    // Counted in rounds over the shapes, so every shape gets its share of company.
    const round = Math.floor(i / injectedKinds.length) + i;
    const extra = round % 8 === 7 ? 2 : round % 4 === 3 ? 1 : 0;
    const made = generateCase(random, variant, extra);
    if (made) out.push({ id: `${seed}-${i}`, ...made });
  }
  return out;
}

/** A filter on some paths to `target`: the answer names the target, blames no service. */
const blockedTruth = (variant: InjectedKind, target: string): Truth => ({
  variant,
  kind: 'path_blocked',
  components: [[target]],
  culprits: [],
  network: true,
});
const isCollectorCut = (v: InjectedKind): boolean => v.startsWith('collector');
const isCut = (v: InjectedKind): boolean => v.startsWith('partition') || isCollectorCut(v);
const isMtu = (v: InjectedKind): boolean => v.startsWith('mtu');

function generateCase(
  random: () => number,
  variant: InjectedKind,
  extra: number,
): { scenario: Scenario; truths: Truth[] } | undefined {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  for (let attempt = 0; attempt < 50; attempt++) {
    const { components, switches } = topology(random);
    const agentHosts = components.filter(hasAgent);
    if (agentHosts.length < 5) continue;
    let collector = placeCollector(random, components, switches);
    const used = new Set<string>();
    const faults: Fault[] = [];
    const truths: Truth[] = [];
    // Nothing else happens to the collector's own host: a fault there would be its own cut.
    if (collector.host !== undefined) used.add(collector.host);
    const first = inject(variant, {
      all: components,
      components,
      switches,
      collector,
      used,
      pick,
      random,
    });
    if (!first) continue;
    if (first.collector) collector = first.collector;
    if (collector.host !== undefined) used.add(collector.host);
    faults.push(first.fault);
    truths.push(first.truth);
    if (first.also) {
      faults.push(first.also.fault);
      truths.push(first.also.truth);
    }
    // Hosts on the collector's side of a cut: where a further fault stays visible.
    const visible = first.side ?? ((_c: Component): boolean => true);
    // When hosts went dark with no label around them (a host set cut, a host down): a host
    // going down beside them does so at a clearly different time (≥ 2 min), or it is the same
    // event.
    const darkAtMs: number[] = faults
      .filter((f) => 'cutSet' in f || 'hostDown' in f)
      .map((f) => f.startOffsetMs ?? 0);
    let failed = false;
    // Under the collector's own cut only its side is seen: with under three agents there,
    // too few vantage points to judge a further fault.
    const extras =
      isCollectorCut(variant) && components.filter((c) => visible(c) && hasAgent(c)).length < 3
        ? 0
        : extra;
    for (let e = 0; e < extras && !failed; e++) {
      const others = injectedKinds.filter(
        (k) =>
          (!truths.some((t) => t.variant === k) || k === 'host_unreachable') &&
          k !== 'hosts down apart' &&
          !isCut(k) &&
          !(isMtu(k) && truths.some((t) => isMtu(t.variant))) &&
          // One silenced vantage point at a time beside a cut keeps the truth well defined.
          !(first.truth.kind === 'network_partition' && k === 'agent_silent') &&
          // A host dark on the collector's own cut-off side would blur that side.
          !(isCollectorCut(variant) && k === 'host_unreachable'),
      );
      if (others.length === 0) break;
      const next = inject(pick(others), {
        all: components,
        components: components.filter(visible),
        switches,
        collector,
        used,
        pick,
        random,
      });
      if (!next) {
        // The collector's cut-off side is small: what fits there is all there is.
        if (isCollectorCut(variant)) continue;
        failed = true;
        break;
      }
      // The same couple of seconds, or minutes earlier.
      let startOffsetMs =
        random() < 0.5
          ? Math.floor(random() * 4_000) - 2_000
          : -(90_000 + Math.floor(random() * 510_000));
      if ('hostDown' in next.fault) {
        for (let slot = 1; darkAtMs.some((t) => Math.abs(t - startOffsetMs) < 120_000); slot++)
          startOffsetMs = -(150_000 * slot + Math.floor(random() * 20_000));
        darkAtMs.push(startOffsetMs);
      }
      faults.push({ ...next.fault, startOffsetMs });
      // A host that is down stands on neither side of a cut.
      const down = 'hostDown' in next.fault ? next.fault.hostDown : undefined;
      const cut = truths[0];
      if (down !== undefined && cut?.kind === 'network_partition')
        truths[0] = {
          ...cut,
          components: cut.components.map((side) => side.filter((h) => h !== down)),
        };
      truths.push(next.truth);
    }
    if (failed) continue;
    const scenario = ScenarioSchema.parse({
      name: truths.map((t) => t.variant).join(' + '),
      components,
      collector,
      faults,
      // Half the cases carry 1–2% of lone lost probes, under the debounce, as real paths do.
      noise: random() < 0.5 ? 0.01 + Math.round(random() * 10) / 1000 : 0,
      seed: Math.floor(random() * 1_000_000),
      expect: { healthy: false },
    });
    if (!consistent(scenario, truths)) continue;
    return { scenario, truths };
  }
  return undefined;
}

/**
 * Whether the built case holds what its truths promise: the collector's cut is where the
 * truth says, an MTU fault shows on some path, and no service fault hides entirely behind an
 * MTU one (invariant (b) would then forbid the right answer). A generator bug throws.
 */
function consistent(scenario: Scenario, truths: readonly Truth[]): boolean {
  const w = world(scenario);
  const cutTruth = truths.find((t) => t.collectorCutOff === true);
  const near = w.collectorCut?.near.join() ?? '';
  if (cutTruth ? near !== cutTruth.components[0]?.join() : w.collectorCut !== undefined)
    throw new Error(
      `generator: ${scenario.name}: the collector's cut-off side is [${near}], the truth says ${cutTruth ? `[${cutTruth.components[0]?.join() ?? ''}]` : 'none'}`,
    );
  const input = buildInput(scenario);
  if (
    truths.some((t) => t.kind === 'mtu_mismatch') &&
    !input.paths.some((p) => p.kind === 'mtu' && p.state === 'failing')
  )
    return false;
  const mtuOnly = mtuOnlyServiceComponents(w, input);
  return !truths.some(
    (t) =>
      (t.kind === 'service_down' || t.kind === 'service_unresponsive') &&
      t.culprits.some((c) => mtuOnly.has(c)),
  );
}

interface InjectContext {
  /** Every host of the topology. */
  readonly all: readonly Component[];
  /** The hosts a fault may touch (the collector's side of an earlier cut). */
  readonly components: readonly Component[];
  readonly switches: readonly string[];
  readonly collector: Collector;
  /** Hosts an earlier fault touched. */
  readonly used: Set<string>;
  readonly pick: <T>(xs: readonly T[]) => T;
  readonly random: () => number;
}

interface Injected {
  readonly fault: Fault;
  readonly truth: Truth;
  /** After a cut: the hosts on the collector's side, where further faults stay visible. */
  readonly side?: (c: Component) => boolean;
  /** Where the collector stands, when the fault decides it. */
  readonly collector?: Collector;
  /** A second fault of the same shape (two hosts down minutes apart). */
  readonly also?: { readonly fault: Fault; readonly truth: Truth };
}

function inject(variant: InjectedKind, ctx: InjectContext): Injected | undefined {
  const { all, components, switches, collector, used, pick, random } = ctx;
  const free = components.filter((c) => !used.has(c.name));
  const freeAgents = free.filter(hasAgent);
  const agentHosts = components.filter(hasAgent);
  const withService = free.filter((c) => c.services.length > 0);
  const take = (...names: string[]): void => {
    for (const n of names) used.add(n);
  };
  const names = (cs: readonly Component[]): string[] => sortedNames(cs.map((c) => c.name));
  /** After a cut: everything is taken but the collector's side, where the next fault goes. */
  const keepNear = (near: readonly Component[]): ((c: Component) => boolean) => {
    take(...components.map((c) => c.name));
    const nearNames = new Set(near.map((c) => c.name));
    for (const c of near) used.delete(c.name);
    return (c) => nearNames.has(c.name);
  };
  const collectorCutTruth = (near: readonly Component[]): Truth => ({
    variant,
    kind: 'network_partition',
    components: [names(near)],
    culprits: [],
    network: true,
    collectorCutOff: true,
    summaryStartsWith: collectorCutPrefix,
  });
  switch (variant) {
    case 'partition by switch':
    case 'partition by zone': {
      const label = variant === 'partition by switch' ? 'switch' : 'zone';
      const value = label === 'switch' ? pick(switches) : pick(['a', 'b']);
      const inside = components.filter((c) => c.labels[label] === value);
      const outside = components.filter((c) => c.labels[label] !== value);
      if (inside.length < 2 || outside.length < 2) return undefined;
      const collectorInside =
        collector.host !== undefined
          ? inside.some((c) => c.name === collector.host)
          : collector.labels?.[label] === value;
      const near = collectorInside ? inside : outside;
      const far = collectorInside ? outside : inside;
      // The collector on the smaller side is its own variant ('collector side cut'); sides
      // of about one size are left out, so hosts going down beside the cut cannot tip it.
      if (!collector.hearsAll && near.length < far.length + 3) return undefined;
      // Someone must still report from each side the collector hears.
      const heard = collector.hearsAll ? [inside, outside] : [near];
      if (heard.some((side) => side.filter(hasAgent).length < 2)) return undefined;
      // A second fault goes where the collector hears enough vantage points to see it.
      const busier = busierSide(collector.hearsAll, inside, outside, near);
      return {
        fault: { cut: { label, value, reportedAgain: false } },
        truth: {
          variant,
          kind: 'network_partition',
          // Seen from both sides either may be named; from one, the far side is the cut part.
          components: collector.hearsAll ? [names(inside), names(outside)] : [names(far)],
          culprits: [],
          network: true,
          collectorCutOff: false,
        },
        side: keepNear(busier),
      };
    }
    case 'partition by host set': {
      const k = 2 + Math.floor(random() * 3);
      const pool = free.filter((c) => c.name !== collector.host);
      if (pool.length < 2 * k + 2) return undefined;
      const set = new Set<string>();
      while (set.size < k) set.add(pick(pool).name);
      // No label value wholly inside: a label cut would explain part of the set on its own.
      if (coversLabelValue(set, components)) return undefined;
      const inside = components.filter((c) => set.has(c.name));
      const outside = components.filter((c) => !set.has(c.name));
      if (outside.length < inside.length + 3) return undefined;
      const heard = collector.hearsAll ? [inside, outside] : [outside];
      if (heard.some((side) => side.filter(hasAgent).length < 2)) return undefined;
      const busier = busierSide(collector.hearsAll, inside, outside, outside);
      return {
        fault: { cutSet: { hosts: names(inside), collector: false, reportedAgain: false } },
        truth: {
          variant,
          kind: 'network_partition',
          components: collector.hearsAll ? [names(inside), names(outside)] : [names(inside)],
          culprits: [],
          network: true,
          collectorCutOff: false,
          // Dark together with no label around them: one cut, and the summary says why.
          ...(collector.hearsAll ? {} : { summaryIncludes: [noLabelPhrase] }),
        },
        side: keepNear(busier),
      };
    }
    case 'collector host cut': {
      // Its local agent beside it, or none.
      const local = random() < 0.5;
      const pool = components.filter((c) => hasAgent(c) === local);
      if (pool.length === 0) return undefined;
      const host = pick(pool);
      if (agentHosts.filter((c) => c !== host).length < 2) return undefined;
      return {
        fault: { cutSet: { hosts: [host.name], collector: false, reportedAgain: false } },
        truth: collectorCutTruth([host]),
        side: keepNear([host]),
        collector: { host: host.name, hearsAll: false },
      };
    }
    case 'collector side cut': {
      let near: Component[];
      let fault: Fault;
      let standaloneLabels: Record<string, string>;
      if (random() < 0.6) {
        // Its switch or its zone, the smaller side of a label cut.
        const label = random() < 0.75 ? 'switch' : 'zone';
        const value = label === 'switch' ? pick(switches) : pick(['a', 'b']);
        near = components.filter((c) => c.labels[label] === value);
        fault = { cut: { label, value, reportedAgain: false } };
        const sw = label === 'switch' ? value : pick(switches.filter((s) => zoneOf(s) === value));
        standaloneLabels = { zone: zoneOf(sw), switch: sw };
      } else {
        // A small host set around the collector's host, no label followed.
        const k = 2 + Math.floor(random() * 3);
        const set = new Set<string>();
        while (set.size < k) set.add(pick(components).name);
        near = components.filter((c) => set.has(c.name));
        fault = { cutSet: { hosts: names(near), collector: true, reportedAgain: false } };
        standaloneLabels = { ...(near[0] as Component).labels };
      }
      const far = components.filter((c) => !near.includes(c));
      // An agent on the side shows how far it reaches; with none, nothing tells the side from
      // the collector's own port ('collector host cut', 'collector alone cut').
      if (
        near.filter(hasAgent).length === 0 ||
        near.length >= far.length ||
        far.filter(hasAgent).length < 2
      )
        return undefined;
      // On one of the side's hosts (with an agent when there is one, mostly), or on none.
      const standalone = random() < 0.3;
      const nearAgents = near.filter(hasAgent);
      const host = pick(nearAgents.length > 0 && random() < 0.7 ? nearAgents : near);
      return {
        fault,
        truth: collectorCutTruth(near),
        side: keepNear(near),
        collector: standalone
          ? { labels: standaloneLabels, hearsAll: false }
          : { host: host.name, hearsAll: false },
      };
    }
    case 'collector alone cut': {
      if (agentHosts.length < 2) return undefined;
      const sw = pick(switches);
      return {
        fault: { cutSet: { hosts: [], collector: true, reportedAgain: false } },
        truth: collectorCutTruth([]),
        side: keepNear([]),
        collector: {
          labels: random() < 0.7 ? { zone: zoneOf(sw), switch: sw } : {},
          hearsAll: false,
        },
      };
    }
    case 'hosts down apart': {
      // Two hosts of one switch — often all of it — dark minutes apart: two events, not the switch.
      const bySwitch = switches.map((sw) => free.filter((c) => c.labels.switch === sw));
      const whole = bySwitch.filter(
        (hs) =>
          hs.length === 2 &&
          hs.length === all.filter((c) => c.labels.switch === hs[0]?.labels.switch).length,
      );
      const some = bySwitch.filter((hs) => hs.length >= 2);
      const pair =
        whole.length > 0 && random() < 0.6
          ? pick(whole)
          : some.length > 0
            ? pick(some).slice(0, 2)
            : [];
      const [a, b] = pair;
      if (a === undefined || b === undefined) return undefined;
      if (agentHosts.filter((c) => c !== a && c !== b && !used.has(c.name)).length < 3)
        return undefined;
      take(a.name, b.name);
      const down = (c: Component): Truth => ({
        variant,
        kind: 'host_unreachable',
        components: [[c.name]],
        culprits: [c.name],
        network: false,
      });
      return {
        fault: { hostDown: a.name, startOffsetMs: -(120_000 + Math.floor(random() * 300_000)) },
        truth: down(a),
        also: { fault: { hostDown: b.name }, truth: down(b) },
      };
    }
    case 'host_unreachable': {
      if (agentHosts.filter((c) => !used.has(c.name)).length < 3) return undefined;
      const c = pick(free);
      take(c.name);
      return {
        fault: { hostDown: c.name },
        truth: {
          variant,
          kind: 'host_unreachable',
          components: [[c.name]],
          culprits: [c.name],
          network: false,
        },
      };
    }
    case 'service_down':
    case 'service_unresponsive': {
      if (withService.length === 0) return undefined;
      const c = pick(withService);
      const svc = pick(c.services);
      take(c.name);
      const ref = { component: c.name, service: svc.name };
      const hangs = variant === 'service_unresponsive';
      return {
        fault: hangs
          ? random() < 0.7
            ? { hang: ref }
            : { protocolError: ref }
          : { serviceDown: ref },
        truth: {
          variant,
          kind: variant,
          components: [[c.name]],
          culprits: [c.name],
          network: false,
        },
      };
    }
    case 'path_blocked': {
      const target = pick(free);
      const sourcesPool = freeAgents.filter((c) => c !== target);
      if (sourcesPool.length < 4) return undefined;
      const sources: string[] = [];
      // A filter in front of a whole switch, or on one or two hosts' routes.
      const sw = pick(switches);
      const behind = sourcesPool.filter((c) => c.labels.switch === sw).map((c) => c.name);
      const wholeSwitch =
        random() < 0.3 &&
        target.labels.switch !== sw &&
        behind.length >= 2 &&
        sourcesPool.length - behind.length >= 3 &&
        components.filter((c) => c.labels.switch === sw).every((c) => !used.has(c.name));
      if (wholeSwitch) sources.push(...behind);
      const n = 1 + Math.floor(random() * 2);
      while (sources.length < n) {
        const s = pick(sourcesPool).name;
        if (!sources.includes(s)) sources.push(s);
      }
      const svc = target.services.length > 0 && random() < 0.5 ? pick(target.services) : undefined;
      take(target.name, ...sources);
      return {
        fault: {
          block: {
            sources,
            component: target.name,
            ...(svc ? { service: svc.name } : {}),
          },
        },
        truth: blockedTruth(variant, target.name),
      };
    }
    case 'one-way filter': {
      if (withService.length === 0) return undefined;
      const target = pick(withService);
      let from: string[] | { label: string; value: string };
      let fromHosts: Component[];
      if (random() < 0.5) {
        // A whole side's new connections: a switch or a zone the target is not in.
        const label = random() < 0.7 ? 'switch' : 'zone';
        const value = label === 'switch' ? pick(switches) : pick(['a', 'b']);
        if (target.labels[label] === value) return undefined;
        fromHosts = components.filter((c) => c.labels[label] === value);
        // The side must be wholly where the collector hears it, and not yet touched.
        if (
          fromHosts.some((c) => used.has(c.name)) ||
          fromHosts.length < all.filter((c) => c.labels[label] === value).length
        )
          return undefined;
        from = { label, value };
      } else {
        const pool = freeAgents.filter((c) => c !== target);
        if (pool.length < 3) return undefined;
        const n = 1 + Math.floor(random() * 3);
        const set = new Set<Component>();
        while (set.size < n) set.add(pick(pool));
        fromHosts = [...set];
        from = names(fromHosts);
      }
      // Some agents fail to the target while others get through.
      const contrast = components.filter(
        (c) => hasAgent(c) && c !== target && !fromHosts.includes(c),
      );
      if (fromHosts.filter(hasAgent).length === 0 || contrast.length < 2) return undefined;
      const svc = random() < 0.5 ? pick(target.services) : undefined;
      take(target.name, ...fromHosts.map((c) => c.name));
      return {
        fault: { oneWay: { from, to: target.name, ...(svc ? { service: svc.name } : {}) } },
        truth: blockedTruth(variant, target.name),
      };
    }
    case 'source_fault': {
      if (freeAgents.length === 0 || agentHosts.length < 4) return undefined;
      const c = pick(freeAgents);
      take(c.name);
      return {
        fault: { sourceFault: c.name },
        truth: {
          variant,
          kind: 'source_fault',
          components: [[c.name]],
          culprits: [c.name],
          network: true,
        },
      };
    }
    case 'packet_loss': {
      if (free.length === 0) return undefined;
      const bySource = random() < 0.4 && freeAgents.length > 0;
      const c = bySource ? pick(freeAgents) : pick(free);
      take(c.name);
      const lossRatio = 0.1 + Math.round(random() * 30) / 100;
      return {
        fault: {
          degrade: bySource ? { source: c.name, lossRatio } : { component: c.name, lossRatio },
        },
        truth: {
          variant,
          kind: 'packet_loss',
          components: [[c.name]],
          culprits: [c.name],
          network: true,
        },
      };
    }
    case 'flapping link': {
      if (free.length === 0 || agentHosts.length < 3) return undefined;
      const c = pick(free);
      take(c.name);
      const lossRatio = 0.1 + Math.round(random() * 30) / 100;
      return {
        fault: { flapLink: { host: c.name, lossRatio } },
        truth: {
          variant,
          kind: 'packet_loss',
          components: [[c.name]],
          culprits: [c.name],
          network: true,
        },
      };
    }
    case 'dns_failure': {
      if (freeAgents.length < 1) return undefined;
      const n = Math.min(freeAgents.length, 1 + Math.floor(random() * 3));
      const sources: string[] = [];
      while (sources.length < n) {
        const s = pick(freeAgents).name;
        if (!sources.includes(s)) sources.push(s);
      }
      take(...sources);
      return {
        fault: { dnsFail: { sources } },
        truth: {
          variant,
          kind: 'dns_failure',
          components: [],
          sources: sortedNames(sources),
          culprits: [],
          network: false,
        },
      };
    }
    case 'agent_silent': {
      if (freeAgents.length === 0) return undefined;
      const c = pick(freeAgents);
      take(c.name);
      return {
        fault: { silentAgent: c.name },
        truth: {
          variant,
          kind: 'agent_silent',
          components: [[c.name]],
          culprits: [],
          network: false,
        },
      };
    }
    case 'mtu on port': {
      if (free.length === 0 || agentHosts.length < 3) return undefined;
      const c = pick(free);
      take(c.name);
      return {
        // A routed (L3) port answers "fragmentation needed"; a switched one drops silently.
        fault: { mtu: { port: c.name, fragNeeded: random() < 0.25 } },
        truth: {
          variant,
          kind: 'mtu_mismatch',
          components: [[c.name]],
          culprits: [],
          network: true,
        },
      };
    }
    case 'mtu on uplink':
    case 'mtu on switch': {
      const uplink = variant === 'mtu on uplink';
      const label = uplink && random() < 0.25 ? 'zone' : 'switch';
      const value = label === 'switch' ? pick(switches) : pick(['a', 'b']);
      const behind = components.filter((c) => c.labels[label] === value);
      const rest = components.filter((c) => c.labels[label] !== value);
      // Every host behind it where the collector hears it, untouched, an agent among them to
      // see inside (uplink or switch), and agents outside to see across.
      if (
        behind.length < 2 ||
        behind.length < all.filter((c) => c.labels[label] === value).length ||
        behind.some((c) => used.has(c.name)) ||
        behind.filter(hasAgent).length === 0 ||
        rest.filter(hasAgent).length < 2
      )
        return undefined;
      take(...behind.map((c) => c.name));
      // An uplink has two ends: when the hosts seen on its far end are one element too (the
      // other zone, the only other switch in sight), the evidence names either.
      const farEnd = uplink ? labelsHolding(rest, all).filter((l) => l.values.length === 1) : [];
      return {
        fault: {
          mtu: {
            ...(uplink ? { uplink: { label, value } } : { switch: { label, value } }),
            // A router on the uplink answers "fragmentation needed"; a switch drops silently.
            fragNeeded: uplink && random() < 0.5,
          },
        },
        truth: {
          variant,
          kind: 'mtu_mismatch',
          components: farEnd.length > 0 ? [names(behind), names(rest)] : [names(behind)],
          cutLabels:
            farEnd.length > 0 ? [labelsHolding(behind, all), farEnd] : [labelsHolding(behind, all)],
          culprits: [],
          network: true,
        },
      };
    }
  }
}

/** Whether a hypothesis is the injected fault, by kind alone. */
export const kindMatches = (t: Truth, h: Hypothesis): boolean => h.kind === t.kind;

/**
 * Whether a hypothesis is exactly the injected fault: kind and components, and where the
 * truth asks, whether it says the collector's side is cut off, the cut label and the wording.
 */
export function componentsMatch(t: Truth, h: Hypothesis): boolean {
  if (h.kind !== t.kind) return false;
  if (t.sources) {
    const group = h.groups.find((g) => g.name === 'sources');
    return group !== undefined && group.members.join() === t.sources.join();
  }
  const i = t.components.findIndex((c) => c.join() === h.components.join());
  if (i < 0) return false;
  if (t.collectorCutOff !== undefined && (h.collectorCutOff === true) !== t.collectorCutOff)
    return false;
  const want = t.cutLabels?.[i];
  const cut = h.cutLabel;
  if (
    want !== undefined &&
    !want.some(
      (w) =>
        cut !== undefined &&
        cut.key === w.key &&
        [...cut.values].sort().join() === [...w.values].sort().join(),
    )
  )
    return false;
  if (t.summaryStartsWith !== undefined && !h.summary.startsWith(t.summaryStartsWith)) return false;
  return (t.summaryIncludes ?? []).every((phrase) => h.summary.includes(phrase));
}

/** Scores of one case, per injected fault. */
export interface FaultScore {
  readonly variant: InjectedKind;
  /** Matched by kind among the top k hypotheses (k: the faults injected together). */
  readonly topKind: boolean;
  /** Matched exactly (`componentsMatch`) among the top k. */
  readonly topComponents: boolean;
  /** Matched exactly among the top k + 2. */
  readonly top3: boolean;
  /** Invariant: a network fault blames no database and no service. */
  readonly networkBlamesNoService: boolean;
  /** Invariant: no culprit appears as ruled out. */
  readonly culpritNotRuledOut: boolean;
  /** Invariant (a): with the collector's side cut off, no hypothesis names a far-side host. */
  readonly farSideNotBlamed: boolean;
  /** Invariant (b): no service fault where every failing service path is on MTU-affected pairs. */
  readonly mtuNotServiceFault: boolean;
}

const blamingKinds: ReadonlySet<FaultKind> = new Set([
  'service_down',
  'service_unresponsive',
  'host_unreachable',
  'source_fault',
]);

/** Scores a diagnosis against the faults of its case (`input`: the case's built input). */
export function scoreCase(
  c: GeneratedCase,
  d: Diagnosis,
  input: LocaliseInput = buildInput(c.scenario),
): FaultScore[] {
  const k = c.truths.length;
  const roles = new Map(c.scenario.components.map((x) => [x.name, x.role]));
  const culprits = new Set(c.truths.flatMap((t) => t.culprits));
  const serviceFaulted = new Set(
    c.truths
      .filter((t) => t.kind === 'service_down' || t.kind === 'service_unresponsive')
      .flatMap((t) => t.culprits),
  );
  const ruledOut = new Set(d.ruledOut.filter((r) => r.canBeRuledOut).map((r) => r.component));
  const broken = brokenInvariants(world(c.scenario), input, d);
  return c.truths.map((t) => {
    const top = d.hypotheses.slice(0, k);
    const top3 = d.hypotheses.slice(0, k + 2);
    const blames = d.hypotheses.some(
      (h) =>
        ((h.kind === 'service_down' || h.kind === 'service_unresponsive') &&
          h.components.some((x) => !serviceFaulted.has(x))) ||
        (blamingKinds.has(h.kind) &&
          h.components.some((x) => roles.get(x) === 'database' && !culprits.has(x))),
    );
    return {
      variant: t.variant,
      topKind: top.some((h) => kindMatches(t, h)),
      topComponents: top.some((h) => componentsMatch(t, h)),
      top3: top3.some((h) => componentsMatch(t, h)),
      networkBlamesNoService: !t.network || !blames,
      culpritNotRuledOut: t.culprits.every((x) => !ruledOut.has(x)),
      farSideNotBlamed: !broken.some((b) => b.startsWith('(a)')),
      mtuNotServiceFault: !broken.some((b) => b.startsWith('(b)')),
    };
  });
}

/** One line per truth and per hypothesis: what a failing case prints. */
export function describeCase(c: GeneratedCase, d: Diagnosis): string {
  const s = c.scenario;
  const where = s.collector.hearsAll
    ? 'hears all'
    : s.collector.host !== undefined
      ? `on ${s.collector.host}`
      : `on no host ${JSON.stringify(s.collector.labels ?? {})}`;
  const flags = (h: { collectorCutOff?: boolean; cutLabel?: CutLabel }): string =>
    `${h.collectorCutOff ? ' collectorCutOff' : ''}${h.cutLabel ? ` ${h.cutLabel.key}=${h.cutLabel.values.join(',')}` : ''}`;
  return [
    `case ${c.id}: ${s.name} (collector ${where})`,
    `  faults: ${s.faults.map((f) => JSON.stringify(f)).join('; ')}`,
    ...c.truths.map(
      (t) =>
        `  expected: ${t.kind} ${t.sources ? `sources [${t.sources.join(', ')}]` : t.components.map((x) => `[${x.join(', ')}]`).join(' or ')}${t.collectorCutOff ? ' collectorCutOff' : ''}${t.cutLabels ? ` (cut label ${t.cutLabels.map((xs) => xs.map((x) => `${x.key}=${x.values.join(',')}`).join(' or ')).join(' / ')})` : ''}${t.summaryStartsWith ? ` "${t.summaryStartsWith}…"` : ''}${t.summaryIncludes?.length ? ` "…${t.summaryIncludes.join('…')}…"` : ''}`,
    ),
    ...d.hypotheses.map(
      (h, i) =>
        `  actual ${i + 1}: ${h.kind} [${h.components.join(', ')}]${flags(h)}: ${h.summary.length > 160 ? `${h.summary.slice(0, 157)}…` : h.summary}`,
    ),
    ...(d.hypotheses.length === 0 ? ['  actual: (no hypothesis)'] : []),
  ].join('\n');
}

/** The side a second fault goes to: the one with more agents when both are heard, else the heard one. */
function busierSide(
  hearsAll: boolean,
  inside: readonly Component[],
  outside: readonly Component[],
  heard: readonly Component[],
): readonly Component[] {
  if (!hearsAll) return heard;
  return inside.filter(hasAgent).length > outside.filter(hasAgent).length ? inside : outside;
}
