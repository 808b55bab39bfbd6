import type { Diagnosis, FaultKind, Hypothesis } from '../../wire/diagnosis.js';
import { ScenarioSchema, rng } from './scenario.js';
import type { Fault, Scenario } from './scenario.js';

/**
 * Random localisation cases: generated topologies (3–4 switches in 2 zones, 8–20 hosts with
 * the roles database/api/cache/web, agents on most hosts) with one or two faults of every
 * DESIGN.md kind injected through the scenario builder, so the matrix fails the way real
 * probes would (a cut times out across it and silences the far side's agents, a down
 * service refuses, a hung one times out after connecting, …). Deterministic per seed.
 */

/** The fault variants the generator injects; `network_partition` comes as two. */
export const injectedKinds = [
  'partition by switch',
  'partition by zone',
  'host_unreachable',
  'service_down',
  'service_unresponsive',
  'path_blocked',
  'source_fault',
  'packet_loss',
  'dns_failure',
  'agent_silent',
] as const;
export type InjectedKind = (typeof injectedKinds)[number];

/** What was injected, and what a right answer looks like. */
export interface Truth {
  readonly variant: InjectedKind;
  readonly kind: FaultKind;
  /** Acceptable component lists (sorted): a partition may be named by either side. */
  readonly components: readonly (readonly string[])[];
  /** For `dns_failure`: the hosts whose resolver fails (the hypothesis's source group). */
  readonly sources?: readonly string[];
  /** Components at fault: never to be ruled out. */
  readonly culprits: readonly string[];
  /** A network-layer fault: must never blame a database or a service. */
  readonly network: boolean;
}

/** One generated case: the scenario to build and the faults it hides. */
export interface GeneratedCase {
  readonly id: string;
  readonly scenario: Scenario;
  readonly truths: readonly Truth[];
}

type Component = Scenario['components'][number];

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

/** A topology: hosts spread over the switches, at least two per switch. */
function topology(random: () => number): { components: Component[]; switches: string[] } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const switchCount = random() < 0.5 ? 3 : 4;
  const switches = Array.from({ length: switchCount }, (_, i) => `sw-${i + 1}`);
  const zoneOf = (sw: string): string => (sw === 'sw-1' || sw === 'sw-2' ? 'a' : 'b');
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
 * Generates `count` cases from `seed`: the fault variants in turn, every fourth case with a
 * second fault elsewhere (on the collector's side of any cut, on other hosts), every eighth
 * with a third.
 */
export function generateCases(count: number, seed: number): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  for (let i = 0; i < count; i++) {
    const random = rng(seed * 100_003 + i);
    const variant = injectedKinds[i % injectedKinds.length] as InjectedKind;
    const extra = i % 8 === 7 ? 2 : i % 4 === 3 ? 1 : 0;
    const made = generateCase(random, variant, extra);
    if (made) out.push({ id: `${seed}-${i}`, ...made });
  }
  return out;
}

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
    const hearsAll = random() < 0.25;
    const home = pick(agentHosts);
    const collector = hearsAll
      ? { labels: {}, hearsAll: true }
      : { labels: { ...home.labels }, hearsAll: false };
    const used = new Set<string>();
    const faults: Fault[] = [];
    const truths: Truth[] = [];
    // Hosts on the collector's side of a cut: where a second fault stays visible.
    let visible = (_c: Component): boolean => true;
    const first = inject(variant, components, switches, collector, used, pick, random);
    if (!first) continue;
    faults.push(first.fault);
    truths.push(first.truth);
    if (first.side) visible = first.side;
    let failed = false;
    for (let e = 0; e < extra && !failed; e++) {
      const others = injectedKinds.filter(
        (k) =>
          !truths.some((t) => t.variant === k) &&
          !k.startsWith('partition') &&
          // One silenced vantage point at a time beside a cut keeps the truth well defined.
          !(first.truth.kind === 'network_partition' && k === 'agent_silent'),
      );
      const next = inject(
        pick(others),
        components.filter(visible),
        switches,
        collector,
        used,
        pick,
        random,
      );
      if (!next) {
        failed = true;
        break;
      }
      faults.push(next.fault);
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
    return { scenario, truths };
  }
  return undefined;
}

function inject(
  variant: InjectedKind,
  components: readonly Component[],
  switches: readonly string[],
  collector: { labels: Record<string, string>; hearsAll: boolean },
  used: Set<string>,
  pick: <T>(xs: readonly T[]) => T,
  random: () => number,
): { fault: Fault; truth: Truth; side?: (c: Component) => boolean } | undefined {
  const free = components.filter((c) => !used.has(c.name));
  const freeAgents = free.filter(hasAgent);
  const agentHosts = components.filter(hasAgent);
  const withService = free.filter((c) => c.services.length > 0);
  const take = (...names: string[]): void => {
    for (const n of names) used.add(n);
  };
  switch (variant) {
    case 'partition by switch':
    case 'partition by zone': {
      const label = variant === 'partition by switch' ? 'switch' : 'zone';
      const value = label === 'switch' ? pick(switches) : pick(['a', 'b']);
      const inside = components.filter((c) => c.labels[label] === value);
      const outside = components.filter((c) => c.labels[label] !== value);
      if (inside.length < 2 || outside.length < 2) return undefined;
      // Someone must still report from each side the collector hears.
      const collectorInside = collector.labels[label] === value;
      const heard = collector.hearsAll ? [inside, outside] : [collectorInside ? inside : outside];
      if (heard.some((side) => side.filter(hasAgent).length < 2)) return undefined;
      take(...components.map((c) => c.name));
      // A second fault goes where the collector hears enough vantage points to see it.
      const near = collector.hearsAll
        ? inside.filter(hasAgent).length > outside.filter(hasAgent).length
          ? inside
          : outside
        : collectorInside
          ? inside
          : outside;
      const nearNames = new Set(near.map((c) => c.name));
      for (const c of near) used.delete(c.name);
      return {
        fault: { cut: { label, value, reportedAgain: false } },
        truth: {
          variant,
          kind: 'network_partition',
          components: [
            sortedNames(inside.map((c) => c.name)),
            sortedNames(outside.map((c) => c.name)),
          ],
          culprits: [],
          network: true,
        },
        side: (c) => nearNames.has(c.name),
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
        truth: {
          variant,
          kind: 'path_blocked',
          components: [[target.name]],
          culprits: [],
          network: true,
        },
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
  }
}

/** Whether a hypothesis is the injected fault, by kind alone. */
export const kindMatches = (t: Truth, h: Hypothesis): boolean => h.kind === t.kind;

/** Whether a hypothesis names exactly the injected fault's components. */
export function componentsMatch(t: Truth, h: Hypothesis): boolean {
  if (h.kind !== t.kind) return false;
  if (t.sources) {
    const group = h.groups.find((g) => g.name === 'sources');
    return group !== undefined && group.members.join() === t.sources.join();
  }
  return t.components.some((c) => c.join() === h.components.join());
}

/** Scores of one case, per injected fault. */
export interface FaultScore {
  readonly variant: InjectedKind;
  /** Matched by kind among the top k hypotheses (k: the faults injected together). */
  readonly topKind: boolean;
  /** Matched by kind and exact components among the top k. */
  readonly topComponents: boolean;
  /** Matched by kind and exact components among the top k + 2. */
  readonly top3: boolean;
  /** Invariant: a network fault blames no database and no service. */
  readonly networkBlamesNoService: boolean;
  /** Invariant: no culprit appears as ruled out. */
  readonly culpritNotRuledOut: boolean;
}

const blamingKinds: ReadonlySet<FaultKind> = new Set([
  'service_down',
  'service_unresponsive',
  'host_unreachable',
  'source_fault',
]);

/** Scores a diagnosis against the faults of its case. */
export function scoreCase(c: GeneratedCase, d: Diagnosis): FaultScore[] {
  const k = c.truths.length;
  const roles = new Map(c.scenario.components.map((x) => [x.name, x.role]));
  const culprits = new Set(c.truths.flatMap((t) => t.culprits));
  const serviceFaulted = new Set(
    c.truths
      .filter((t) => t.kind === 'service_down' || t.kind === 'service_unresponsive')
      .flatMap((t) => t.culprits),
  );
  const ruledOut = new Set(d.ruledOut.filter((r) => r.canBeRuledOut).map((r) => r.component));
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
    };
  });
}
