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
 *    lone host is `host_unreachable`. When every reachable host carries one value of a label
 *    (the collector's own switch or zone is the part cut off), the dark hosts outside that
 *    value are one cluster: one cut explains them, where per-value islands would be several. Two or more reachable groups that fail across are a
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
 *
 * Cost: each agent's paths are summarised once per change (reachability as a bitset over
 * hosts, its failing and degraded paths, its word on each component for ruling out); a
 * diagnosis then costs about agents × hosts / 32 word operations plus the failing paths.
 * `IncrementalLocaliser` keeps the summaries between report batches; `localise()` builds
 * one from scratch, so the two agree by construction (and by test).
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

/**
 * Where the collector stands in the network it observes: it is inside it, not above it, and
 * a cut can isolate it (its host, switch or zone) like any other host.
 */
export interface Observer {
  /** The inventory component the collector runs on, when it runs on one. */
  readonly host?: string;
  /** Agents on the collector's own host (their reports never cross the network). */
  readonly agents?: readonly string[];
  /** The collector's topology labels (default: its host's). */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface LocaliseInput {
  readonly paths: readonly PathState[];
  readonly agents: readonly AgentLiveness[];
  readonly inventory: readonly LocaliseComponent[];
  /** The collector's own topology labels: says which side of a cut it is on. */
  readonly collectorLabels?: Readonly<Record<string, string>>;
  /** Where the collector stands (host, local agents, labels). */
  readonly observer?: Observer;
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
/**
 * Names shown in a summary's `{…}` before "and N more": a summary is one sentence for a tired
 * engineer, and a fault seen by 200 agents named them all. `groups` and `components` keep
 * every name.
 */
const maxListed = 8;
const list = (xs: Iterable<string>): string => {
  const all = sorted(xs);
  if (all.length <= maxListed) return `{${all.join(', ')}}`;
  return `{${all.slice(0, maxListed - 1).join(', ')} and ${all.length - maxListed + 1} more}`;
};

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const bucket = map.get(key);
  if (bucket) bucket.push(value);
  else map.set(key, [value]);
}

function describePath(p: PathState): string {
  const cls = p.state === 'degraded' ? 'degraded' : p.lastClass;
  return `${p.agent} → ${p.target}: ${cls}`;
}

/** What a hypothesis quotes of the paths it explains, read in one pass over them. */
interface Digest {
  readonly evidence: Hypothesis['evidence'];
  /** The earliest start of their states (epoch ms), if any. */
  readonly sinceMs: number | undefined;
  /** Every one failed at the network layer. */
  readonly networkOnly: boolean;
}

const digests = new WeakMap<readonly PathState[], Digest>();

/** A partition can quote 100,000 paths: read them once, however often they are asked about. */
function digestOf(paths: readonly PathState[]): Digest {
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

/** The layer a failing path's class speaks about (a dns probe's dns classes are its service). */
function layerOf(p: PathState): 'none' | 'dns' | 'network' | 'service' | 'probe' {
  if (p.state !== 'failing') return 'none';
  return failureLayer[p.lastClass];
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

/** What one agent's paths say, summarised once each time they change. */
interface AgentView {
  readonly agent: string;
  /** Hosts that answered this agent at some layer: a bitset over host ids. */
  readonly yes: Uint32Array;
  readonly yesIds: readonly number[];
  /** Hosts from which only network-layer failures came back. */
  readonly no: ReadonlySet<number>;
  /** Failing paths (probe-internal failures left out), in target order. */
  readonly failing: readonly PathState[];
  /** Degraded paths, in target order. */
  readonly degraded: readonly PathState[];
  /** This agent's paths with a debounced state to one component. */
  readonly pathsTo: (component: string) => readonly PathState[];
  /** The paths it was made of. */
  readonly rows: readonly PathState[];
  /** Whether any path has a debounced state: the agent takes part in the diagnosis. */
  readonly counted: boolean;
  /** What this agent says about each component it fails toward or speaks a protocol to. */
  readonly toward: ReadonlyMap<string, TowardSummary>;
}

/** One agent's word on one component, as ruling out needs it. */
interface TowardSummary {
  /** Failing paths to it, whatever the layer (probe-internal failures left out). */
  readonly touching: number;
  /** Failing paths toward it (names that did not resolve never reached it: left out). */
  readonly failing: number;
  /** Of those, failing above the network layer. */
  readonly aboveNetwork: number;
  /** Protocol kinds probed (not icmp, not tcp), and whether one of them succeeds. */
  readonly protoKinds: readonly string[];
  readonly protoOk: boolean;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer E)[] ? E[] : T[K] };

/** A component's rule-out evidence summed over the live agents. */
class TowardTotals {
  touching = 0;
  failing = 0;
  aboveNetwork = 0;
  /** Agents (by id) with a protocol path to it, and with one that succeeds. */
  tried: Uint32Array = new Uint32Array(0);
  ok: Uint32Array = new Uint32Array(0);
  readonly kinds = new Map<string, number>();
}

/** Dense ids for names (hosts, agents), so sets of them can be bitsets. */
class HostIds {
  readonly ids = new Map<string, number>();
  readonly names: string[] = [];
  private marks = new Int32Array(0);
  private epoch = 0;
  /** A fresh set of ids, cheap to make: one mark array shared by turns. */
  newMarks(): { has: (id: number) => boolean; add: (id: number) => void } {
    this.epoch += 1;
    const epoch = this.epoch;
    return {
      has: (id) => this.marks[id] === epoch,
      add: (id) => {
        if (id >= this.marks.length) {
          const grown = new Int32Array(Math.max(64, 2 * (id + 1)));
          grown.set(this.marks);
          this.marks = grown;
        }
        this.marks[id] = epoch;
      },
    };
  }
  id(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(name, id);
      this.names.push(name);
    }
    return id;
  }
}

const hasBit = (bits: Uint32Array, id: number): boolean =>
  ((bits[id >>> 5] ?? 0) & (1 << (id & 31))) !== 0;

function setBit(bits: Uint32Array, id: number): void {
  const w = id >>> 5;
  if (w < bits.length) bits[w] = (bits[w] ?? 0) | (1 << (id & 31));
}

/** `bits` with `id` set or cleared, grown when needed. */
function withBit(bits: Uint32Array, id: number, on: boolean): Uint32Array {
  const w = id >>> 5;
  let out = bits;
  if (w >= bits.length) {
    if (!on) return bits;
    out = new Uint32Array(Math.max(w + 1, 2 * bits.length));
    out.set(bits);
  }
  const mask = 1 << (id & 31);
  out[w] = on ? (out[w] ?? 0) | mask : (out[w] ?? 0) & ~mask;
  return out;
}

/** Members of `a` that are also in `b`. */
function countBoth(a: Uint32Array, b: Uint32Array): number {
  let n = 0;
  for (let w = 0; w < Math.min(a.length, b.length); w++) {
    let x = ((a[w] ?? 0) & (b[w] ?? 0)) >>> 0;
    while (x !== 0) {
      x &= x - 1;
      n += 1;
    }
  }
  return n;
}

function summarise(agent: string, rows: readonly PathState[], hosts: HostIds): AgentView {
  const yesIds: number[] = [];
  const maybeNo: number[] = [];
  const failing: PathState[] = [];
  const degraded: PathState[] = [];
  let counted = false;
  const toward = new Map<string, Mutable<TowardSummary>>();
  const seen = hosts.newMarks();
  const rowHost = new Int32Array(rows.length).fill(-1);
  for (let i = 0; i < rows.length; i++) {
    const p = rows[i] as PathState;
    if (p.state === 'unknown') continue;
    counted = true;
    const layer = layerOf(p);
    const id = hosts.id(p.component);
    rowHost[i] = id;
    if (p.state !== 'failing' || layer === 'service') {
      if (!seen.has(id)) {
        seen.add(id);
        yesIds.push(id);
      }
    } else if (layer === 'network') maybeNo.push(id);
    if (p.state === 'failing' && layer !== 'probe') failing.push(p);
    else if (p.state === 'degraded') degraded.push(p);
    // Ruling out reads failures toward a component and its protocol answers; ok ICMP and
    // TCP paths, the bulk of a healthy mesh, say nothing there.
    const touching = p.state === 'failing' && layer !== 'probe';
    const towardIt = touching && layer !== 'dns';
    const proto = p.kind !== 'icmp' && p.kind !== 'tcp';
    if (touching || proto) {
      let t = toward.get(p.component);
      if (!t) {
        t = { touching: 0, failing: 0, aboveNetwork: 0, protoKinds: [], protoOk: false };
        toward.set(p.component, t);
      }
      if (touching) t.touching += 1;
      if (towardIt) t.failing += 1;
      if (towardIt && layer !== 'network') t.aboveNetwork += 1;
      if (proto && !t.protoKinds.includes(p.kind)) t.protoKinds.push(p.kind);
      if (proto && p.state !== 'failing') t.protoOk = true;
    }
  }
  const yes = new Uint32Array((hosts.names.length + 31) >>> 5);
  for (const id of yesIds) setBit(yes, id);
  const no = new Set(maybeNo.filter((id) => !hasBit(yes, id)));
  const byTarget = (a: PathState, b: PathState): number => byName(a.target, b.target);
  failing.sort(byTarget);
  degraded.sort(byTarget);
  // Rows by target host, as a counting sort over host ids: typed arrays, no map per agent.
  const hostCount = hosts.names.length;
  const start = new Int32Array(hostCount + 1);
  for (const id of rowHost) if (id >= 0) start[id + 1] = (start[id + 1] ?? 0) + 1;
  for (let id = 0; id < hostCount; id++) start[id + 1] = (start[id + 1] ?? 0) + (start[id] ?? 0);
  const order = new Int32Array(start[hostCount] ?? 0);
  const next = start.slice(0, hostCount);
  for (let i = 0; i < rowHost.length; i++) {
    const id = rowHost[i] ?? -1;
    if (id < 0) continue;
    order[next[id] ?? 0] = i;
    next[id] = (next[id] ?? 0) + 1;
  }
  return {
    agent,
    yes,
    yesIds,
    no,
    failing,
    degraded,
    rows,
    pathsTo: (component) => {
      const id = hosts.ids.get(component);
      if (id === undefined || id >= hostCount) return [];
      const out: PathState[] = [];
      for (let k = start[id] ?? 0; k < (start[id + 1] ?? 0); k++)
        out.push(rows[order[k] ?? 0] as PathState);
      return out;
    },
    counted,
    toward,
  };
}

/** Rows `localise()` grouped itself: one agent's, never shared, so kept without a copy. */
const ownRows = new WeakSet<readonly PathState[]>();

/** How the localiser is set up: the inventory and the collector's place in it. */
export interface LocaliserOptions {
  readonly inventory: readonly LocaliseComponent[];
  /** The collector's own topology labels: says which side of a cut it is on. */
  readonly collectorLabels?: Readonly<Record<string, string>>;
  /** Share of reachable hosts an agent must fail to be a source fault (default 0.8). */
  readonly sourceFaultShare?: number;
}

/**
 * The localiser kept warm between report batches: it holds the matrix per agent and
 * re-reads only the agents whose paths changed, so a diagnosis after one batch costs the
 * changed agent's paths plus the failing ones, not the whole matrix. `diagnose()` returns
 * exactly what `localise()` returns for the same paths, agents and inventory.
 */
export class IncrementalLocaliser {
  private readonly hosts = new HostIds();
  /** Each agent's paths: as given to `replaceAgentPaths`, keyed by target once upserted into. */
  private readonly pathsByAgent = new Map<string, Map<string, PathState> | readonly PathState[]>();
  private readonly views = new Map<string, AgentView>();
  private readonly dirty = new Set<string>();
  private agents: readonly AgentLiveness[] = [];
  /** Per host id: live agents it answers, and live agents with any verdict on it. */
  private reachers: Int32Array = new Int32Array(64);
  private tried: Int32Array = new Int32Array(64);
  /** The views the two counts above are made of. */
  private readonly counted = new Map<string, AgentView>();
  private readonly agentIds = new HostIds();
  private readonly towardTotals = new Map<string, TowardTotals>();
  /** The last diagnosis, and what it was made from beyond the views. */
  private last: { diagnosis: Diagnosis; agentsKey: string; usesNow: boolean } | undefined;

  constructor(private readonly options: LocaliserOptions) {}

  /** Replaces the agents' liveness (every agent the collector knows). */
  setAgents(agents: readonly AgentLiveness[]): void {
    this.agents = agents;
  }

  /** Inserts or replaces paths, keyed by (agent, target): what one report batch changed. */
  upsertPaths(paths: readonly PathState[]): void {
    for (const p of paths) {
      const held = this.pathsByAgent.get(p.agent);
      let row: Map<string, PathState>;
      if (held instanceof Map) row = held;
      else {
        row = new Map((held ?? []).map((q) => [q.target, q]));
        this.pathsByAgent.set(p.agent, row);
      }
      row.set(p.target, p);
      this.dirty.add(p.agent);
    }
  }

  /** Replaces every path of one agent (an empty list forgets the agent's paths). */
  replaceAgentPaths(agent: string, paths: readonly PathState[]): void {
    if (ownRows.has(paths)) {
      this.pathsByAgent.set(agent, paths);
      this.dirty.add(agent);
      return;
    }
    for (const p of paths)
      if (p.agent !== agent)
        throw new Error(
          `replaceAgentPaths(${agent}): path ${p.agent} → ${p.target} is another agent's`,
        );
    this.pathsByAgent.set(agent, paths.slice());
    this.dirty.add(agent);
  }

  /** The diagnosis of the matrix as it stands. */
  diagnose(nowMs: number): Diagnosis {
    let changed = false;
    for (const agent of this.dirty) {
      const row = this.pathsByAgent.get(agent);
      const rows = row instanceof Map ? [...row.values()] : (row ?? []);
      const old = this.views.get(agent);
      // Most batches only say again what the last one said: then the view stands.
      if (old && sameMeaning(old.rows, rows)) continue;
      changed = true;
      if (rows.length > 0) this.views.set(agent, summarise(agent, rows, this.hosts));
      else this.views.delete(agent);
    }
    this.dirty.clear();
    const agentsKey = livenessKey(this.agents);
    const cached = this.last;
    if (!changed && cached && cached.agentsKey === agentsKey && !cached.usesNow)
      return { ...cached.diagnosis, computedAtMs: Math.max(0, Math.round(nowMs)) };
    const silent = new Set(this.agents.filter((a) => a.state === 'silent').map((a) => a.agent));
    // An agent with no liveness record but with paths is taken as live: its paths are fresh.
    const live = new Map<string, AgentView>();
    for (const [agent, v] of this.views) if (v.counted && !silent.has(agent)) live.set(agent, v);
    this.recount(live);
    const out = diagnoseViews({
      options: this.options,
      agents: this.agents,
      live,
      hosts: this.hosts,
      reachers: this.reachers,
      tried: this.tried,
      agentIds: this.agentIds,
      towardTotals: this.towardTotals,
      nowMs,
    });
    this.last = { diagnosis: out.diagnosis, agentsKey, usesNow: out.usesNow };
    return out.diagnosis;
  }

  /** Brings the per-host counts in line with the live views, touching only what changed. */
  private recount(live: ReadonlyMap<string, AgentView>): void {
    const size = this.hosts.names.length;
    if (size > this.reachers.length) {
      const grow = (a: Int32Array): Int32Array => {
        const b = new Int32Array(Math.max(size, 2 * a.length));
        b.set(a);
        return b;
      };
      this.reachers = grow(this.reachers);
      this.tried = grow(this.tried);
    }
    const apply = (v: AgentView, sign: number): void => {
      for (const id of v.yesIds) {
        this.reachers[id] = (this.reachers[id] ?? 0) + sign;
        this.tried[id] = (this.tried[id] ?? 0) + sign;
      }
      for (const id of v.no) this.tried[id] = (this.tried[id] ?? 0) + sign;
      const agentId = this.agentIds.id(v.agent);
      for (const [component, t] of v.toward) {
        let totals = this.towardTotals.get(component);
        if (!totals) {
          totals = new TowardTotals();
          this.towardTotals.set(component, totals);
        }
        totals.touching += sign * t.touching;
        totals.failing += sign * t.failing;
        totals.aboveNetwork += sign * t.aboveNetwork;
        if (t.protoKinds.length > 0) {
          totals.tried = withBit(totals.tried, agentId, sign > 0);
          totals.ok = withBit(totals.ok, agentId, sign > 0 && t.protoOk);
        }
        for (const k of t.protoKinds) {
          const n = (totals.kinds.get(k) ?? 0) + sign;
          if (n > 0) totals.kinds.set(k, n);
          else totals.kinds.delete(k);
        }
      }
    };
    for (const [agent, v] of this.counted) {
      if (live.get(agent) === v) continue;
      apply(v, -1);
      this.counted.delete(agent);
    }
    for (const [agent, v] of live) {
      if (this.counted.get(agent) === v) continue;
      apply(v, 1);
      this.counted.set(agent, v);
    }
  }
}

/**
 * Localises the faults in the path matrix: ranked hypotheses and what is ruled out.
 */
export function localise(input: LocaliseInput): Diagnosis {
  const l = new IncrementalLocaliser({
    inventory: input.inventory,
    ...(input.collectorLabels ? { collectorLabels: input.collectorLabels } : {}),
    ...(input.sourceFaultShare === undefined ? {} : { sourceFaultShare: input.sourceFaultShare }),
  });
  const byAgent = new Map<string, PathState[]>();
  // A matrix usually lists an agent's paths together: look its bucket up once per run.
  let lastAgent: string | undefined;
  let bucket: PathState[] = [];
  for (const p of input.paths) {
    if (p.agent !== lastAgent) {
      lastAgent = p.agent;
      bucket = byAgent.get(p.agent) ?? [];
      ownRows.add(bucket);
      byAgent.set(p.agent, bucket);
    }
    bucket.push(p);
  }
  for (const [agent, paths] of byAgent) l.replaceAgentPaths(agent, paths);
  l.setAgents(input.agents);
  return l.diagnose(input.nowMs);
}

interface ViewsInput {
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

/**
 * Whether two versions of one agent's paths say the same to localisation: the same paths in
 * the same order, each with the same state, class and start (a batch that only moves
 * `lastSeenMs` and the windows' counters changes nothing). A different order counts as a
 * change: that costs a re-read, never a wrong answer.
 */
function sameMeaning(a: readonly PathState[], b: readonly PathState[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const p = a[i] as PathState;
    const q = b[i] as PathState;
    if (p === q) continue;
    if (
      p.target !== q.target ||
      p.state !== q.state ||
      p.lastClass !== q.lastClass ||
      p.sinceMs !== q.sinceMs ||
      p.component !== q.component ||
      p.kind !== q.kind ||
      p.service !== q.service ||
      p.agent !== q.agent
    )
      return false;
    if (
      p.state === 'degraded' &&
      (p.lossRatio !== q.lossRatio || p.failureRatio !== q.failureRatio)
    )
      return false;
  }
  return true;
}

/** What of the agents' liveness localisation reads: state, labels, a silent one's last word. */
function livenessKey(agents: readonly AgentLiveness[]): string {
  return JSON.stringify(
    agents.map((a) => [a.agent, a.state, a.labels, a.state === 'silent' ? a.lastSeenMs : 0]),
  );
}

function diagnoseViews(input: ViewsInput): { diagnosis: Diagnosis; usesNow: boolean } {
  let usesNow = false;
  const { options, hosts, live } = input;
  const inventory = options.inventory;
  const sourceFaultShare = options.sourceFaultShare ?? 0.8;
  const components = new Map(inventory.map((c) => [c.name, c]));
  const hostOfAgent = new Map<string, string>();
  for (const c of inventory) hostOfAgent.set(c.agent ?? c.name, c.name);
  const host = (agent: string): string => hostOfAgent.get(agent) ?? agent;
  const agentLabels = new Map(input.agents.map((a) => [a.agent, a.labels]));
  const labelsOf = (h: string): Readonly<Record<string, string>> =>
    components.get(h)?.labels ?? agentLabels.get(h) ?? {};
  const liveness = new Map(input.agents.map((a) => [a.agent, a]));
  const isLive = (agent: string): boolean => liveness.get(agent)?.state !== 'silent';

  const liveAgents = sorted(live.keys());
  const viewOf = (a: string): AgentView | undefined => live.get(a);

  // 2. Reachability per (agent, host).
  const reachOf = (agent: string, h: string): Reach | undefined => {
    const v = viewOf(agent);
    const id = hosts.ids.get(h);
    if (!v || id === undefined) return undefined;
    return hasBit(v.yes, id) ? 'yes' : v.no.has(id) ? 'no' : undefined;
  };
  const reachersOf = (id: number): number => input.reachers[id] ?? 0;

  // 3. Source faults.
  const failedBy = new Map<string, Set<number>>();
  for (const a of liveAgents) {
    const v = viewOf(a);
    if (!v) continue;
    const self = hosts.ids.get(host(a));
    const failed = new Set<number>();
    let judged = v.yesIds.length - (self !== undefined && hasBit(v.yes, self) ? 1 : 0);
    for (const id of v.no) {
      if (id === self || reachersOf(id) <= 0) continue;
      judged += 1;
      failed.add(id);
    }
    if (failed.size >= 2 && failed.size >= sourceFaultShare * judged) failedBy.set(a, failed);
  }
  const sourceFaults = new Set<string>();
  for (const [a, failed] of failedBy) {
    const sharedBySide = liveAgents.some((b) => {
      if (b === a || reachOf(a, host(b)) !== 'yes') return false;
      // What b fails to reach is few: count the overlap from its side.
      let shared = 0;
      for (const id of viewOf(b)?.no ?? []) if (failed.has(id)) shared += 1;
      return shared >= sourceFaultShare * failed.size;
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

  // Connected components of lit hosts: an agent's host joins every host that answers it.
  const litGroups = new Map<string, string[]>();
  {
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
  }
  const litByName = [...litGroups].sort(([x], [y]) => byName(x, y));
  litGroups.clear();
  for (const [r, members] of litByName) litGroups.set(r, members);

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
  const far = farSide(lit, dark, labelsOf);
  for (const h of far) darkGroups.union(far[0] ?? h, h);
  const darkByPair = new Map<string, string>();
  for (const h of dark) {
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

  const groupOf = new Map<string, string>();
  for (const [r, members] of litGroups) for (const h of members) groupOf.set(h, `lit:${r}`);
  for (const [r, members] of darkClusters) for (const h of members) groupOf.set(h, `dark:${r}`);

  const hypotheses: Hypothesis[] = [];
  const failing: PathState[] = [];
  for (const a of liveAgents) for (const p of viewOf(a)?.failing ?? []) failing.push(p);
  /** Paths of live agents to one component, in agent order. */
  const pathsTo = (component: string): PathState[] => {
    const out: PathState[] = [];
    for (const a of liveAgents) for (const p of viewOf(a)?.pathsTo(component) ?? []) out.push(p);
    return out;
  };
  // Failing paths no hypothesis explains yet, in path order. A partition takes most of them
  // at once; the passes after it only walk what is left.
  // `explain` only marks: the list is filtered once, when next read (a matrix with many
  // small hypotheses would otherwise copy it once per hypothesis).
  let unexplained = failing;
  let explained: Set<PathState> | undefined;
  const stillUnexplained = (): PathState[] => {
    const done = explained;
    if (done !== undefined) {
      unexplained = unexplained.filter((p) => !done.has(p));
      explained = undefined;
    }
    return unexplained;
  };
  const take = (pred: (p: PathState) => boolean): PathState[] => {
    const out: PathState[] = [];
    const keep: PathState[] = [];
    for (const p of stillUnexplained()) (pred(p) ? out : keep).push(p);
    unexplained = keep;
    return out;
  };
  const explain = (ps: readonly PathState[]): void => {
    if (ps.length === 0) return;
    explained ??= new Set();
    for (const p of ps) explained.add(p);
  };
  const push = (h: Omit<Hypothesis, 'evidence' | 'since'>, ev: readonly PathState[]): void => {
    const d = digestOf(ev);
    if (d.sinceMs === undefined) usesNow = true;
    const since = Math.max(0, Math.round(d.sinceMs ?? input.nowMs));
    hypotheses.push({ ...h, evidence: d.evidence, since });
  };
  const isDatabase = (h: string): boolean => components.get(h)?.role === 'database';

  // Main group: the collector's own side — the group holding the host that shares most of
  // the collector's labels — then the one with the most reporting agents (it hears them).
  const nearCollector = (m: readonly string[]): number =>
    Math.max(
      0,
      ...m.map(
        (h) =>
          Object.entries(options.collectorLabels ?? {}).filter(([k, v]) => labelsOf(h)[k] === v)
            .length,
      ),
    );
  const liveOn = (m: readonly string[]): number => {
    const inside = new Set(m);
    return sound.filter((a) => inside.has(host(a))).length;
  };
  const litList = [...litGroups.values()].sort(
    (x, y) =>
      nearCollector(y) - nearCollector(x) ||
      liveOn(y) - liveOn(x) ||
      byName(x[0] ?? '', y[0] ?? ''),
  );
  const main = litList[0] ?? [];

  const cutOf = (sides: readonly (readonly string[])[], cutSides: readonly (readonly string[])[]) =>
    findCut(sides, cutSides, labelsOf, inventory);

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
    const networkOnly = digestOf(ev).networkOnly;
    const how = networkOnly
      ? '; every failure is a network-layer timeout — no connection refused, no protocol error'
      : '';
    const db = networkOnly && b.some(isDatabase);
    const silent = silentSide ? `; agents behind the cut are silent, as a cut would make them` : '';
    return `network partition between ${list(a)} and ${list(b)}${where}${how}${db ? ', so nothing points at the database' : ''}${silent}`;
  };

  // Partition seen from both sides: two or more reachable groups failing across.
  if (litList.length >= 2) {
    const bigDark = [...darkClusters.values()].filter((m) => m.length >= 2);
    const all = [...litList, ...bigDark];
    // A lone dark host is not a side of this partition: its own hypothesis explains it.
    const inGroups = new Set(all.flat());
    // Failing paths come grouped by agent: remember the last agent's group.
    let lastAgent: string | undefined;
    let lastGroup: string | undefined;
    const agentGroup = (agent: string): string | undefined => {
      if (agent !== lastAgent) {
        lastAgent = agent;
        const h = host(agent);
        lastGroup = inGroups.has(h) ? groupOf.get(h) : undefined;
      }
      return lastGroup;
    };
    const ev = take(
      (p) =>
        soundSet.has(p.agent) &&
        layerOf(p) === 'network' &&
        inGroups.has(p.component) &&
        agentGroup(p.agent) !== undefined &&
        agentGroup(p.agent) !== groupOf.get(p.component),
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
    const agentsOn = inventory.filter((c) => inCluster.has(c.name)).map((c) => c.agent ?? c.name);
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
  for (const p of stillUnexplained()) {
    if (layerOf(p) !== 'service' || !soundSet.has(p.agent)) continue;
    const key = `${p.component}\u0000${serviceOf(p)}`;
    pushTo(services, key, p);
  }
  // The sound agents' paths to those components, in agent order: one pass over their rows
  // instead of one per (component, service).
  const soundPathsTo = new Map<string, PathState[]>();
  if (services.size > 0) {
    for (const key of services.keys()) soundPathsTo.set(key.split('\u0000')[0] ?? '', []);
    for (const a of sound)
      for (const p of viewOf(a)?.rows ?? [])
        if (p.state !== 'unknown') soundPathsTo.get(p.component)?.push(p);
  }
  const blocked: PathState[] = [];
  for (const [key, ps] of [...services].sort(([x], [y]) => byName(x, y))) {
    const [component = '', service = ''] = key.split('\u0000');
    const okAny = sorted(
      (soundPathsTo.get(component) ?? [])
        .filter(
          (p) =>
            serviceOf(p) === service &&
            p.kind !== 'icmp' &&
            p.state !== 'failing' &&
            soundSet.has(p.agent),
        )
        .map((p) => p.agent),
    );
    const refused = ps.filter((p) => p.lastClass === 'tcp_refused');
    const sources = sorted(ps.map((p) => p.agent));
    const failingSources = new Set(sources);
    const okSources = okAny.filter((a) => !failingSources.has(a));
    const fromAll = okSources.length === 0;
    if (refused.length > 0 && !fromAll) {
      blocked.push(...ps);
      continue;
    }
    explain(ps);
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
    ...stillUnexplained().filter((p) => soundSet.has(p.agent) && layerOf(p) === 'network'),
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
    explain(m.ps);
    const sources = key.split(',');
    const blockedSources = new Set(sources);
    const succeeding = sound.filter(
      (a) => !blockedSources.has(a) && m.targets.some((t) => reachOf(a, t) === 'yes'),
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
  let degraded = sound.flatMap((a) => viewOf(a)?.degraded ?? []);
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
    const answering = pathsTo(h).filter((p) => p.state !== 'failing');
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

  // Sound agents (as bitsets of agent ids) by the group their host is in: a database's side.
  const agentsByGroup = new Map<string, Uint32Array>();
  const soundByHost = new Map<string, string[]>();
  for (const a of sound) {
    pushTo(soundByHost, host(a), a);
    const g = groupOf.get(host(a));
    if (g === undefined) continue;
    agentsByGroup.set(
      g,
      withBit(agentsByGroup.get(g) ?? new Uint32Array(0), input.agentIds.id(a), true),
    );
  }
  const touched: string[] = [];
  for (const [name, totals] of input.towardTotals) if (totals.touching > 0) touched.push(name);
  const ruledOut = ruleOut(hypotheses, touched, components, (name) => {
    const totals = input.towardTotals.get(name);
    const g = groupOf.get(name);
    const side = (g === undefined ? undefined : agentsByGroup.get(g)) ?? new Uint32Array(0);
    let sideSize = countBoth(side, side);
    let okOnSide = totals ? countBoth(totals.ok, side) : 0;
    let triedOnSide = totals ? countBoth(totals.tried, side) : 0;
    // Agents on the component itself are not its side's witnesses.
    for (const a of soundByHost.get(name) ?? []) {
      const id = input.agentIds.id(a);
      if (!hasBit(side, id)) continue;
      sideSize -= 1;
      if (totals && hasBit(totals.ok, id)) okOnSide -= 1;
      if (totals && hasBit(totals.tried, id)) triedOnSide -= 1;
    }
    // The kinds probed by anyone: a database speaks one protocol, whoever asks.
    return {
      failing: totals?.failing ?? 0,
      aboveNetwork: totals?.aboveNetwork ?? 0,
      sideSize,
      okOnSide,
      triedOnSide,
      kinds: triedOnSide > 0 && totals ? sorted(totals.kinds.keys()) : [],
    };
  });
  const diagnosis = {
    healthy: hypotheses.length === 0,
    hypotheses,
    ruledOut,
    computedAtMs: Math.max(0, Math.round(input.nowMs)),
  };
  return { diagnosis, usesNow };
}

const culpritKinds: ReadonlySet<FaultKind> = new Set([
  'service_down',
  'service_unresponsive',
  'host_unreachable',
  'source_fault',
  'packet_loss',
  'unexplained',
]);

/** What ruling out needs to know of one component. */
interface RuleOutEvidence {
  /** Failing paths toward it from live agents, and how many of them above the network layer. */
  readonly failing: number;
  readonly aboveNetwork: number;
  /** Sound agents on its side of any cut (not on it), those with a protocol path, those succeeding. */
  readonly sideSize: number;
  readonly triedOnSide: number;
  readonly okOnSide: number;
  /** Protocol kinds probed. */
  readonly kinds: readonly string[];
}

function ruleOut(
  hypotheses: readonly Hypothesis[],
  failingTo: readonly string[],
  components: ReadonlyMap<string, LocaliseComponent>,
  evidence: (component: string) => RuleOutEvidence,
): RuledOut[] {
  // Targets of failing paths, and whatever a hypothesis names (a source fault's own host).
  const touched = new Set<string>(failingTo);
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
    const e = evidence(name);
    const networkOnly = e.aboveNetwork === 0;
    const kinds = e.kinds.join('/');
    if (networkOnly && e.okOnSide > 0) {
      const cut = e.triedOnSide - e.okOnSide;
      out.push({
        component: name,
        canBeRuledOut: true,
        reason: `${name}: ${kinds} handshake succeeds from ${e.okOnSide}/${e.triedOnSide} agents on its side${cut > 0 ? ` (the other ${cut} cannot reach it at the network layer)` : ''}; ${e.failing > 0 ? 'failures toward it are network-layer timeouts, never refused connections or protocol errors' : 'no failure reaches it at the service layer'}`,
      });
    } else if (networkOnly) {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: cannot be ruled out — ${e.sideSize === 0 ? 'no reporting agent is on its side of the cut' : 'no agent gets through to its service'}; but every failure toward it is a network-layer timeout, so nothing points at the database either`,
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
