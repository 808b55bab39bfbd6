import { failureLayer } from '../../wire/result.js';
import type {
  CutLabel,
  Diagnosis,
  DiagnosisGroup,
  FaultKind,
  Hypothesis,
  RuledOut,
} from '../../wire/diagnosis.js';
import type { AgentLiveness, PathState } from '../types.js';

/**
 * Localisation: from the live path matrix to the diagnosis document (DESIGN.md). Pure: no
 * I/O, no clock (the caller passes `nowMs`), deterministic whatever the input order.
 *
 * Method (issue 5):
 * 1. Only paths of live agents count (a silent agent's paths are a stale window), and only
 *    debounced states (`failing`, `ok`, `degraded`; `unknown` says nothing).
 * 2. Network-layer reachability per (agent, host): reachable when any probe got an answer
 *    from the host — an ICMP reply, a TCP SYN-ACK, or a refusal/protocol answer (a refused
 *    connection proves the host is up). Unreachable when only network-layer failures came back.
 * 3. Source faults first: an agent failing to ≥ `sourceFaultShare` of the hosts it probes
 *    that someone reaches, with no agent it reaches sharing that failure pattern (that would
 *    be a partition seen from one side), has a local problem; its evidence is set aside.
 * 4. Groups: connected components of hosts over reachability. Hosts no reporting agent
 *    reaches ("dark") are clustered by a topology label value no reachable host carries (a
 *    switch, a zone): a cluster of two or more is a partition from the collector's side, a
 *    lone host is `host_unreachable`. Two or more reachable groups that fail across are a
 *    partition seen from both sides. The separating label is the one whose values are
 *    disjoint between the groups, fewest values on the cut side first.
 * 5. What the groups do not explain: network failures inside a group are `path_blocked`
 *    (named sources and their shared label); refused from every source is `service_down`;
 *    connected but no/bad answer is `service_unresponsive`; names failing while the host
 *    answers is `dns_failure`; degraded paths are `packet_loss` at the element they share;
 *    a silent agent whose host answers is `agent_silent`; anything left is `unexplained`.
 * 6. Ranking by parsimony: more failing paths explained first, then confidence.
 * 7. Ruled out: every database touched by a failing path, ruled out only with its
 *    protocol answering from agents on its own side; otherwise "cannot be ruled out".
 */

/** One inventory host as localisation needs it. */
export interface LocaliseComponent {
  readonly name: string;
  readonly address: string;
  readonly role: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The agent on this host (default: the component's name). */
  readonly agent?: string;
}

export interface LocaliseInput {
  readonly paths: readonly PathState[];
  readonly agents: readonly AgentLiveness[];
  readonly inventory: readonly LocaliseComponent[];
  /** The collector's own topology labels: says which side of a cut it is on. */
  readonly collectorLabels?: Readonly<Record<string, string>>;
  readonly nowMs: number;
  /** Share of reachable hosts an agent must fail to be a source fault (default 0.8). */
  readonly sourceFaultShare?: number;
}

const maxExamples = 5;

type Reach = 'yes' | 'no';

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort(byName);
const byPath = (a: PathState, b: PathState): number =>
  byName(a.agent, b.agent) || byName(a.target, b.target);
const list = (xs: Iterable<string>): string => `{${sorted(xs).join(', ')}}`;

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const bucket = map.get(key);
  if (bucket) bucket.push(value);
  else map.set(key, [value]);
}

function describePath(p: PathState): string {
  const cls = p.state === 'degraded' ? 'degraded' : p.lastClass;
  return `${p.agent} → ${p.target}: ${cls}`;
}

function evidenceOf(paths: readonly PathState[]): Hypothesis['evidence'] {
  const counts: Record<string, number> = {};
  for (const p of paths) {
    const key = p.state === 'degraded' ? 'degraded' : p.lastClass;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  // The first few in path order, without sorting them all.
  const first: PathState[] = [];
  for (const p of paths) {
    const last = first[maxExamples - 1];
    if (last && byPath(p, last) >= 0) continue;
    first.push(p);
    first.sort(byPath);
    if (first.length > maxExamples) first.pop();
  }
  const examples = first.map(describePath);
  return { counts, examples };
}

function sinceOf(paths: readonly PathState[], fallbackMs: number): number {
  let since = Number.POSITIVE_INFINITY;
  for (const p of paths) since = Math.min(since, p.sinceMs);
  return Math.max(0, Math.round(Number.isFinite(since) ? since : fallbackMs));
}

/** The layer a failing path's class speaks about (a dns probe's dns classes are its service). */
function layerOf(p: PathState): 'none' | 'dns' | 'network' | 'service' | 'probe' {
  if (p.state !== 'failing') return 'none';
  return failureLayer[p.lastClass];
}

function isNetworkTimeoutOnly(paths: readonly PathState[]): boolean {
  return paths.every((p) => layerOf(p) === 'network');
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

/**
 * Localises the faults in the path matrix: ranked hypotheses and what is ruled out.
 */
export function localise(input: LocaliseInput): Diagnosis {
  const sourceFaultShare = input.sourceFaultShare ?? 0.8;
  const components = new Map(input.inventory.map((c) => [c.name, c]));
  const hostOfAgent = new Map<string, string>();
  for (const c of input.inventory) hostOfAgent.set(c.agent ?? c.name, c.name);
  const host = (agent: string): string => hostOfAgent.get(agent) ?? agent;
  const labelsOf = (h: string): Readonly<Record<string, string>> => {
    const c = components.get(h);
    if (c) return c.labels;
    return input.agents.find((a) => a.agent === h)?.labels ?? {};
  };
  const liveness = new Map(input.agents.map((a) => [a.agent, a]));
  // An agent with no liveness record but with paths is taken as live: its paths are fresh.
  const isLive = (agent: string): boolean => liveness.get(agent)?.state !== 'silent';

  const paths = input.paths.filter((p) => isLive(p.agent) && p.state !== 'unknown').sort(byPath);
  const liveAgents = sorted(paths.map((p) => p.agent));

  // 2. Reachability per (agent, host).
  const reach = new Map<string, Map<string, Reach>>();
  for (const p of paths) {
    const layer = layerOf(p);
    const answered = p.state !== 'failing' || layer === 'service';
    const row = reach.get(p.agent) ?? new Map<string, Reach>();
    reach.set(p.agent, row);
    if (answered) row.set(p.component, 'yes');
    else if (layer === 'network' && row.get(p.component) !== 'yes') row.set(p.component, 'no');
  }
  const reachOf = (agent: string, h: string): Reach | undefined => reach.get(agent)?.get(h);
  const reachers = new Map<string, number>();
  for (const row of reach.values())
    for (const [h, r] of row) if (r === 'yes') reachers.set(h, (reachers.get(h) ?? 0) + 1);
  const reachedBySomeoneElse = (agent: string, h: string): boolean =>
    (reachers.get(h) ?? 0) - (reachOf(agent, h) === 'yes' ? 1 : 0) > 0;

  // 3. Source faults.
  const failedBy = new Map<string, Set<string>>();
  for (const a of liveAgents) {
    const row = reach.get(a) ?? new Map<string, Reach>();
    const failed = new Set<string>();
    let judged = 0;
    for (const [h, r] of row) {
      if (h === host(a)) continue;
      if (r === 'yes' || reachedBySomeoneElse(a, h)) judged += 1;
      if (r === 'no' && reachedBySomeoneElse(a, h)) failed.add(h);
    }
    if (failed.size >= 2 && failed.size >= sourceFaultShare * judged) failedBy.set(a, failed);
  }
  const sourceFaults = new Set<string>();
  for (const [a, failed] of failedBy) {
    const sharedBySide = liveAgents.some((b) => {
      if (b === a || reachOf(a, host(b)) !== 'yes') return false;
      let shared = 0;
      for (const h of failed) if (reachOf(b, h) === 'no') shared += 1;
      return shared >= sourceFaultShare * failed.size;
    });
    if (!sharedBySide) sourceFaults.add(a);
  }
  const sound = liveAgents.filter((a) => !sourceFaults.has(a));
  const soundSet = new Set(sound);

  // 4. Groups over reachability of the sound agents.
  const groups = new Groups();
  const lit = new Set<string>();
  const triedHosts = new Set<string>();
  for (const a of sound) {
    for (const [h, r] of reach.get(a) ?? []) {
      triedHosts.add(h);
      groups.add(h);
      groups.add(host(a));
      if (r === 'yes') {
        groups.union(host(a), h);
        lit.add(h);
        lit.add(host(a));
      }
    }
  }
  const dark = sorted([...triedHosts].filter((h) => !lit.has(h)));

  // Dark hosts cluster by a label value no reachable host carries.
  const litValues = new Set<string>();
  for (const h of lit) for (const [k, v] of Object.entries(labelsOf(h))) litValues.add(`${k}=${v}`);
  const darkGroups = new Groups();
  const darkByPair = new Map<string, string>();
  for (const h of dark) {
    darkGroups.add(h);
    for (const [k, v] of Object.entries(labelsOf(h)).sort(([x], [y]) => byName(x, y))) {
      const pair = `${k}=${v}`;
      if (litValues.has(pair)) continue;
      const other = darkByPair.get(pair);
      if (other === undefined) darkByPair.set(pair, h);
      else darkGroups.union(other, h);
    }
  }
  const darkClusters = new Map<string, string[]>();
  for (const h of dark) {
    const r = darkGroups.find(h);
    pushTo(darkClusters, r, h);
  }

  const litGroups = new Map<string, string[]>();
  for (const h of sorted(lit)) {
    const r = groups.find(h);
    pushTo(litGroups, r, h);
  }
  const groupOf = new Map<string, string>();
  for (const [r, members] of litGroups) for (const h of members) groupOf.set(h, `lit:${r}`);
  for (const [r, members] of darkClusters) for (const h of members) groupOf.set(h, `dark:${r}`);

  const hypotheses: Hypothesis[] = [];
  const explained = new Set<PathState>();
  const failing = paths.filter((p) => p.state === 'failing' && layerOf(p) !== 'probe');
  const take = (pred: (p: PathState) => boolean): PathState[] => {
    const out = failing.filter((p) => !explained.has(p) && pred(p));
    for (const p of out) explained.add(p);
    return out;
  };
  const push = (h: Omit<Hypothesis, 'evidence' | 'since'>, ev: readonly PathState[]): void => {
    hypotheses.push({ ...h, evidence: evidenceOf(ev), since: sinceOf(ev, input.nowMs) });
  };
  const isDatabase = (h: string): boolean => components.get(h)?.role === 'database';

  // Main group: the collector's own side — the group holding the host that shares most of
  // the collector's labels — then the one with the most reporting agents (it hears them).
  const nearCollector = (m: readonly string[]): number =>
    Math.max(
      0,
      ...m.map(
        (h) =>
          Object.entries(input.collectorLabels ?? {}).filter(([k, v]) => labelsOf(h)[k] === v)
            .length,
      ),
    );
  const liveOn = (m: readonly string[]): number => sound.filter((a) => m.includes(host(a))).length;
  const litList = [...litGroups.values()].sort(
    (x, y) =>
      nearCollector(y) - nearCollector(x) ||
      liveOn(y) - liveOn(x) ||
      byName(x[0] ?? '', y[0] ?? ''),
  );
  const main = litList[0] ?? [];

  const cutOf = (sides: readonly (readonly string[])[], cutSides: readonly (readonly string[])[]) =>
    findCut(sides, cutSides, labelsOf, input.inventory);

  const partitionSummary = (
    a: readonly string[],
    b: readonly string[],
    found: { cut: CutLabel | undefined; alternatives: readonly CutLabel[] },
    ev: readonly PathState[],
    silentSide: boolean,
  ): string => {
    const { cut, alternatives } = found;
    const also = alternatives.map((c) => `${c.key} ${c.values.join(', ')}`).join(' or ');
    const where = cut
      ? `, all behind ${cut.key} ${cut.values.join(', ')}${also ? ` (or ${also}: the evidence cannot tell them apart)` : ''}`
      : '';
    const how = isNetworkTimeoutOnly(ev)
      ? '; every failure is a network-layer timeout — no connection refused, no protocol error'
      : '';
    const db = b.some(isDatabase) && isNetworkTimeoutOnly(ev);
    const silent = silentSide ? `; agents behind the cut are silent, as a cut would make them` : '';
    return `network partition between ${list(a)} and ${list(b)}${where}${how}${db ? ', so nothing points at the database' : ''}${silent}`;
  };

  // Partition seen from both sides: two or more reachable groups failing across.
  if (litList.length >= 2) {
    const bigDark = [...darkClusters.values()].filter((m) => m.length >= 2);
    const all = [...litList, ...bigDark];
    // A lone dark host is not a side of this partition: its own hypothesis explains it.
    const inGroups = new Set(all.flat());
    const ev = take(
      (p) =>
        soundSet.has(p.agent) &&
        layerOf(p) === 'network' &&
        inGroups.has(host(p.agent)) &&
        inGroups.has(p.component) &&
        groupOf.get(host(p.agent)) !== groupOf.get(p.component),
    );
    if (ev.length > 0) {
      const cutSide = all.slice(1);
      const found = cutOf(all, cutSide);
      const cut = found.cut;
      push(
        {
          kind: 'network_partition',
          confidence: cut ? 0.9 : 0.75,
          summary: partitionSummary(main, cutSide.flat(), found, ev, false),
          components: sorted(cutSide.flat()),
          groups: all.map((m) => group(m, cut, labelsOf)),
          ...(cut ? { cutLabel: cut } : {}),
        },
        ev,
      );
      for (const m of bigDark) darkClusters.delete(darkGroups.find(m[0] ?? ''));
    }
  }

  // Dark clusters: cut off from every reporting agent.
  for (const members of [...darkClusters.values()].sort((x, y) => byName(x[0] ?? '', y[0] ?? ''))) {
    const inCluster = new Set(members);
    const ev = take((p) => inCluster.has(p.component) && layerOf(p) === 'network');
    // A source-fault agent on a cut-off host is that host's isolation, not its own fault.
    const own = take((p) => sourceFaults.has(p.agent) && inCluster.has(host(p.agent)));
    for (const a of sourceFaults) if (inCluster.has(host(a))) sourceFaults.delete(a);
    if (ev.length === 0 && own.length === 0) continue;
    const agentsOn = input.inventory
      .filter((c) => inCluster.has(c.name))
      .map((c) => c.agent ?? c.name);
    const silent = agentsOn.length > 0 && agentsOn.every((a) => !isLive(a));
    if (members.length >= 2) {
      const found = cutOf([main, members], [members]);
      const cut = found.cut;
      push(
        {
          kind: 'network_partition',
          confidence: cut ? 0.9 : 0.7,
          summary: partitionSummary(main, members, found, ev, silent),
          components: sorted(members),
          groups: [group(main, undefined, labelsOf), group(members, cut, labelsOf)],
          ...(cut ? { cutLabel: cut } : {}),
        },
        [...ev, ...own],
      );
    } else {
      const h = members[0] ?? '';
      const sources = sorted(ev.map((p) => p.agent));
      const summary =
        own.length > 0
          ? `${h} is cut off: it reaches none of the hosts others reach, and none of ${sources.length} agents reach it`
          : `${h} does not answer at any layer from any of the ${sources.length} reporting agents: down or cut off alone${silent ? ` — the two can't be told apart until its agent's spooled reports arrive` : ''}`;
      push(
        {
          kind: 'host_unreachable',
          confidence: own.length > 0 ? 0.85 : 0.8,
          summary,
          components: [h],
          groups: [{ members: [h] }],
        },
        [...ev, ...own],
      );
    }
  }

  // Source faults that remain.
  for (const a of sorted(sourceFaults)) {
    const ev = take((p) => p.agent === a);
    const failedHosts = failedBy.get(a)?.size ?? 0;
    push(
      {
        kind: 'source_fault',
        confidence: 0.85,
        summary: `the problem is on ${host(a)} itself: its agent ${a} fails to reach ${failedHosts} hosts that every other agent reaches`,
        components: [host(a)],
        groups: [{ name: 'source', members: [host(a)] }],
      },
      ev,
    );
  }

  // Services on reachable hosts.
  const serviceOf = (p: PathState): string => p.service ?? p.target.split('/')[1] ?? p.kind;
  const services = new Map<string, PathState[]>();
  for (const p of failing) {
    if (explained.has(p) || layerOf(p) !== 'service' || !soundSet.has(p.agent)) continue;
    const key = `${p.component}\u0000${serviceOf(p)}`;
    pushTo(services, key, p);
  }
  const blocked: PathState[] = [];
  for (const [key, ps] of [...services].sort(([x], [y]) => byName(x, y))) {
    const [component = '', service = ''] = key.split('\u0000');
    const okAny = sorted(
      paths
        .filter(
          (p) =>
            p.component === component &&
            serviceOf(p) === service &&
            p.kind !== 'icmp' &&
            p.state !== 'failing' &&
            soundSet.has(p.agent),
        )
        .map((p) => p.agent),
    );
    const refused = ps.filter((p) => p.lastClass === 'tcp_refused');
    const sources = sorted(ps.map((p) => p.agent));
    const okSources = okAny.filter((a) => !sources.includes(a));
    const fromAll = sources.every((s) => !okSources.includes(s)) && okSources.length === 0;
    if (refused.length > 0 && !fromAll) {
      blocked.push(...ps);
      continue;
    }
    for (const p of ps) explained.add(p);
    if (refused.length > 0) {
      push(
        {
          kind: 'service_down',
          confidence: 0.95,
          summary: `${service} on ${component} is down: the host answers, but the port refuses connections from all ${sources.length} agents`,
          components: [component],
          groups: [{ name: 'sources', members: sorted(sources.map(host)) }],
        },
        ps,
      );
    } else {
      const hung = ps.some(
        (p) => p.lastClass === 'protocol_timeout' || p.lastClass === 'http_timeout',
      );
      push(
        {
          kind: 'service_unresponsive',
          confidence: fromAll ? 0.9 : 0.65,
          summary: `${service} on ${component} is ${hung ? 'hung: it accepts connections but never answers' : 'unhealthy: it accepts connections but answers wrongly'} (from ${sources.length} of ${sources.length + okSources.length} agents)`,
          components: [component],
          groups: [{ name: 'sources', members: sorted(sources.map(host)) }],
        },
        ps,
      );
    }
  }

  // Network failures inside a group (or refusals from some sources only): blocked paths.
  const rest = [
    ...blocked,
    ...failing.filter(
      (p) => !explained.has(p) && soundSet.has(p.agent) && layerOf(p) === 'network',
    ),
  ];
  const byTarget = new Map<string, PathState[]>();
  for (const p of rest) pushTo(byTarget, p.component, p);
  const merged = new Map<string, { targets: string[]; services: Set<string>; ps: PathState[] }>();
  for (const [target, ps] of [...byTarget].sort(([x], [y]) => byName(x, y))) {
    const key = sorted(ps.map((p) => p.agent)).join(',');
    const m = merged.get(key) ?? { targets: [], services: new Set<string>(), ps: [] };
    m.targets.push(target);
    for (const p of ps) m.services.add(p.kind === 'icmp' ? 'icmp' : serviceOf(p));
    m.ps.push(...ps);
    merged.set(key, m);
  }
  for (const [key, m] of merged) {
    for (const p of m.ps) explained.add(p);
    const sources = key.split(',');
    const succeeding = sound.filter(
      (a) => !sources.includes(a) && m.targets.some((t) => reachOf(a, t) === 'yes'),
    );
    const shared = sharedLabel(sources.map(host), succeeding.map(host), labelsOf);
    const what = [...m.services].sort(byName).join(', ');
    push(
      {
        kind: 'path_blocked',
        confidence: shared ? 0.85 : 0.75,
        summary: `paths from ${list(sources)}${shared ? ` (all ${shared.key} ${shared.values.join(', ')})` : ''} to ${list(m.targets)} (${what}) are blocked while ${succeeding.length > 0 ? `${succeeding.length} other agents get through` : 'the host answers otherwise'}: a filter or route on those paths`,
        components: sorted(m.targets),
        groups: [{ name: 'blocked sources', members: sorted(sources.map(host)) }],
        ...(shared ? { cutLabel: shared } : {}),
      },
      m.ps,
    );
  }

  // Names that fail while the hosts answer.
  const dnsFails = take((p) => soundSet.has(p.agent) && layerOf(p) === 'dns');
  if (dnsFails.length > 0) {
    const targets = sorted(dnsFails.map((p) => p.component));
    const sources = sorted(dnsFails.map((p) => p.agent));
    const answering = targets.filter((t) => lit.has(t));
    push(
      {
        kind: 'dns_failure',
        confidence: answering.length === targets.length ? 0.85 : 0.6,
        summary: dnsFails.every((p) => p.kind === 'dns')
          ? `the DNS server on ${list(targets)} does not resolve for ${sources.length} agents${answering.length > 0 ? ' while its host answers' : ''}: the resolver, not the network`
          : `names of ${list(targets)} fail to resolve from ${list(sources)}${answering.length > 0 ? ' while the hosts answer at their addresses' : ''}: check the resolver`,
        components: targets,
        groups: [{ name: 'sources', members: sorted(sources.map(host)) }],
      },
      dnsFails,
    );
  }

  // Degradation, localised greedily to the element most degraded paths share.
  let degraded = paths.filter((p) => p.state === 'degraded' && soundSet.has(p.agent));
  while (degraded.length > 0) {
    const byElement = new Map<string, PathState[]>();
    for (const p of degraded) {
      byElement.set(`to ${p.component}`, [...(byElement.get(`to ${p.component}`) ?? []), p]);
      byElement.set(`from ${host(p.agent)}`, [
        ...(byElement.get(`from ${host(p.agent)}`) ?? []),
        p,
      ]);
    }
    const [element, ps] = [...byElement].sort(
      ([xk, x], [yk, y]) => y.length - x.length || byName(xk, yk),
    )[0] ?? ['', []];
    const name = element.slice(element.indexOf(' ') + 1);
    const worst = Math.round(100 * Math.max(...ps.map((p) => p.lossRatio ?? p.failureRatio)));
    const first = ps[0];
    const onePair = ps.every((p) => p.agent === first?.agent && p.component === first.component);
    const only = onePair ? first : undefined;
    // One host pair alone shares nothing with another: both its ends stay suspects.
    const ends = only ? sorted([host(only.agent), only.component]) : [name];
    push(
      {
        kind: 'packet_loss',
        confidence: only ? 0.5 : 0.7,
        summary: only
          ? `the path from ${host(only.agent)} to ${only.component} loses packets or slows down (up to ${worst}% loss), the others are clean: look at the route between the two`
          : `${ps.length} paths ${element} lose packets or slow down (up to ${worst}% loss): look at ${name} and its link`,
        components: ends,
        groups: [{ members: ends }],
      },
      ps,
    );
    degraded = degraded.filter((p) => !ps.includes(p));
  }

  // Silent agents whose hosts still answer.
  for (const a of [...input.agents].sort((x, y) => byName(x.agent, y.agent))) {
    if (a.state !== 'silent') continue;
    const h = host(a.agent);
    if (!lit.has(h)) {
      if (triedHosts.has(h)) continue; // cut off or down: explained above
      push(
        {
          kind: 'agent_silent',
          confidence: 0.5,
          summary: `agent ${a.agent} stopped reporting and nothing probes ${h}, so whether the host is up is unknown`,
          components: [h],
          groups: [{ members: [h] }],
        },
        [],
      );
      continue;
    }
    const reachedBy = sound.filter((b) => reachOf(b, h) === 'yes');
    const answering = paths.filter((p) => p.component === h && p.state !== 'failing');
    push(
      {
        kind: 'agent_silent',
        confidence: 0.9,
        summary: `agent ${a.agent} stopped reporting while ${h} still answers ${reachedBy.length} other agents: the agent process or its way to the collector, not the host`,
        components: [h],
        groups: [{ members: [h] }],
      },
      answering,
    );
    const last = hypotheses[hypotheses.length - 1];
    if (last) hypotheses[hypotheses.length - 1] = { ...last, since: Math.round(a.lastSeenMs) };
  }

  const leftover = take((p) => layerOf(p) !== 'none');
  if (leftover.length > 0) {
    push(
      {
        kind: 'unexplained',
        confidence: 0.3,
        summary: `${leftover.length} failing paths fit no single fault without contradicting a succeeding one`,
        components: sorted(leftover.map((p) => p.component)),
        groups: [],
      },
      leftover,
    );
  }

  // Parsimony: a hypothesis weighs the failing (or degraded) paths it explains; `ok` paths
  // quoted as evidence (a silent agent's host still answering) weigh nothing.
  const weight = (h: Hypothesis): number =>
    Object.entries(h.evidence.counts).reduce((s, [k, n]) => (k === 'ok' ? s : s + n), 0);
  hypotheses.sort(
    (x, y) =>
      weight(y) - weight(x) ||
      y.confidence - x.confidence ||
      byName(x.kind + x.components.join(), y.kind + y.components.join()),
  );

  const ruledOut = ruleOut(
    hypotheses,
    paths,
    failing,
    components,
    sound,
    host,
    (a, b) => groupOf.get(a) !== undefined && groupOf.get(a) === groupOf.get(b),
  );
  return {
    healthy: hypotheses.length === 0,
    hypotheses,
    ruledOut,
    computedAtMs: Math.max(0, Math.round(input.nowMs)),
  };
}

const culpritKinds: ReadonlySet<FaultKind> = new Set([
  'service_down',
  'service_unresponsive',
  'host_unreachable',
  'source_fault',
  'packet_loss',
  'unexplained',
]);

function ruleOut(
  hypotheses: readonly Hypothesis[],
  paths: readonly PathState[],
  failing: readonly PathState[],
  components: ReadonlyMap<string, LocaliseComponent>,
  sound: readonly string[],
  host: (agent: string) => string,
  sameGroup: (a: string, b: string) => boolean,
): RuledOut[] {
  // Targets of failing paths, and whatever a hypothesis names (a source fault's own host).
  const touched = new Set<string>();
  for (const p of failing) touched.add(p.component);
  const byComponent = new Map<string, PathState[]>();
  for (const p of paths) pushTo(byComponent, p.component, p);
  for (const h of hypotheses) for (const c of h.components) touched.add(c);
  const out: RuledOut[] = [];
  for (const name of sorted(touched)) {
    const c = components.get(name);
    if (c?.role !== 'database') continue;
    const blamed = hypotheses.find((h) => culpritKinds.has(h.kind) && h.components.includes(name));
    if (blamed) {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: not ruled out — it is implicated (${blamed.kind}): ${blamed.summary}`,
      });
      continue;
    }
    // Names that did not resolve never reached the host: they say nothing about it.
    const own = byComponent.get(name) ?? [];
    const toward = own.filter(
      (p) => p.state === 'failing' && layerOf(p) !== 'dns' && layerOf(p) !== 'probe',
    );
    const networkOnly = toward.every((p) => failureLayer[p.lastClass] === 'network');
    const side = new Set(sound.filter((a) => host(a) !== name && sameGroup(host(a), name)));
    const proto = own.filter((p) => side.has(p.agent) && p.kind !== 'icmp' && p.kind !== 'tcp');
    const okAgents = sorted(proto.filter((p) => p.state !== 'failing').map((p) => p.agent));
    const triedAgents = sorted(proto.map((p) => p.agent));
    const kinds = sorted(proto.map((p) => p.kind)).join('/');
    if (networkOnly && okAgents.length > 0) {
      const cut = triedAgents.length - okAgents.length;
      out.push({
        component: name,
        canBeRuledOut: true,
        reason: `${name}: ${kinds} handshake succeeds from ${okAgents.length}/${triedAgents.length} agents on its side${cut > 0 ? ` (the other ${cut} cannot reach it at the network layer)` : ''}; ${toward.length > 0 ? 'failures toward it are network-layer timeouts, never refused connections or protocol errors' : 'no failure reaches it at the service layer'}`,
      });
    } else if (networkOnly) {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: cannot be ruled out — ${side.size === 0 ? 'no reporting agent is on its side of the cut' : 'no agent gets through to its service'}; but every failure toward it is a network-layer timeout, so nothing points at the database either`,
      });
    } else {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: cannot be ruled out — some failures toward it are at the service layer`,
      });
    }
  }
  return out;
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

/** A label every failing source carries and no succeeding source does. */
function sharedLabel(
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
