import { echoKinds, probeRegistry } from '../../probes/registry.js';
import { failureLayer } from '../../wire/result.js';
import type { AgentLiveness, PathState } from '../types.js';

/**
 * What each agent's paths say, summarised once per change of them: the evidence cache the
 * localiser keeps between report batches (see localise.ts). Pure, no clock.
 */

/** The probe kind of the full-size (path MTU) echo: its loss says nothing of reachability. */
export const mtuKind: string = probeRegistry.mtu.kind;

export type Reach = 'yes' | 'no';

export const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
export const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort(byName);

export function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const bucket = map.get(key);
  if (bucket) bucket.push(value);
  else map.set(key, [value]);
}

/** The layer a failing path's class speaks about (a dns probe's dns classes are its service). */
export function layerOf(p: PathState): 'none' | 'dns' | 'network' | 'service' | 'probe' {
  if (p.state !== 'failing') return 'none';
  return failureLayer[p.lastClass];
}

/** What one agent's paths say, summarised once each time they change. */
export interface AgentView {
  readonly agent: string;
  /** Hosts that answered this agent at some layer: a bitset over host ids. */
  readonly yes: Uint32Array;
  readonly yesIds: readonly number[];
  /** Hosts from which only network-layer failures came back. */
  readonly no: readonly number[];
  /** The same hosts as a bitset over host ids. */
  readonly noBits: Uint32Array;
  /** Failing paths (probe-internal failures left out), in target order. */
  readonly failing: readonly PathState[];
  /** Degraded paths, in target order. */
  readonly degraded: readonly PathState[];
  /** Paths that fell recently at the network layer (`fellAtMs`), whatever their state now. */
  readonly fell: readonly PathState[];
  /** Echo paths that blipped recently (`blippedAtMs`): a lost echo that came back. */
  readonly blipped: readonly PathState[];
  /** Full-size (MTU) echo paths with a debounced state: the MTU rule's evidence. */
  readonly mtu: readonly PathState[];
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
export interface TowardSummary {
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
export class TowardTotals {
  touching = 0;
  failing = 0;
  aboveNetwork = 0;
  /** Agents (by id) with a protocol path to it, and with one that succeeds. */
  tried: Uint32Array = new Uint32Array(0);
  ok: Uint32Array = new Uint32Array(0);
  readonly kinds = new Map<string, number>();
}

/** Dense ids for names (hosts, agents), so sets of them can be bitsets. */
export class HostIds {
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

export const hasBit = (bits: Uint32Array, id: number): boolean =>
  ((bits[id >>> 5] ?? 0) & (1 << (id & 31))) !== 0;

export function setBit(bits: Uint32Array, id: number): void {
  const w = id >>> 5;
  if (w < bits.length) bits[w] = (bits[w] ?? 0) | (1 << (id & 31));
}

/** `bits` with `id` set or cleared, grown when needed. */
export function withBit(bits: Uint32Array, id: number, on: boolean): Uint32Array {
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
export function countBoth(a: Uint32Array, b: Uint32Array): number {
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

export function summarise(agent: string, rows: readonly PathState[], hosts: HostIds): AgentView {
  const yesIds: number[] = [];
  const maybeNo: number[] = [];
  const failing: PathState[] = [];
  const degraded: PathState[] = [];
  const fell: PathState[] = [];
  const blipped: PathState[] = [];
  const mtu: PathState[] = [];
  let counted = false;
  const toward = new Map<string, Mutable<TowardSummary>>();
  const seen = hosts.newMarks();
  const rowHost = new Int32Array(rows.length).fill(-1);
  for (let i = 0; i < rows.length; i++) {
    const p = rows[i] as PathState;
    if (p.state === 'unknown') continue;
    counted = true;
    if (p.kind === mtuKind) mtu.push(p);
    if (p.fellAtMs !== undefined) fell.push(p);
    if (p.blippedAtMs !== undefined && echoKinds.has(p.kind)) blipped.push(p);
    const layer = layerOf(p);
    const id = hosts.id(p.component);
    rowHost[i] = id;
    // An ok path whose newest result was lost at the network layer is a change the agent is
    // confirming (its burst is out): it no longer says the host answers, not yet that it
    // does not. Read as "gets through", it made the first agents' confirmed failures look
    // like a filter the others pass while their own were still arriving.
    const pending = p.state === 'ok' && failureLayer[p.lastClass] === 'network';
    if (pending) continue;
    if (p.state !== 'failing' || layer === 'service') {
      if (!seen.has(id)) {
        seen.add(id);
        yesIds.push(id);
      }
    } else if (layer === 'network' && p.kind !== mtuKind) maybeNo.push(id);
    if (p.state === 'failing' && layer !== 'probe') failing.push(p);
    else if (p.state === 'degraded') degraded.push(p);
    // Ruling out reads failures toward a component and its protocol answers; ok ICMP and
    // TCP paths, the bulk of a healthy mesh, say nothing there.
    const touching = p.state === 'failing' && layer !== 'probe';
    const towardIt = touching && layer !== 'dns';
    const proto = !echoKinds.has(p.kind) && p.kind !== 'tcp';
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
  const no: number[] = [];
  const noBits = new Uint32Array(yes.length);
  for (const id of maybeNo) {
    if (hasBit(yes, id) || hasBit(noBits, id)) continue;
    setBit(noBits, id);
    no.push(id);
  }
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
    noBits,
    failing,
    degraded,
    fell,
    blipped,
    mtu,
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

/**
 * Whether two versions of one agent's paths say the same to localisation: the same paths in
 * the same order, each with the same state, class and start (a batch that only moves
 * `lastSeenMs` and the windows' counters changes nothing). A different order counts as a
 * change: that costs a re-read, never a wrong answer.
 */
export function sameMeaning(a: readonly PathState[], b: readonly PathState[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (!samePathMeaning(a[i] as PathState, b[i] as PathState)) return false;
  return true;
}

/**
 * Whether two versions of one path say the same to localisation (see `sameMeaning`): what
 * an ingest shard compares to decide a path's change is worth sending to the localiser.
 */
export function samePathMeaning(p: PathState, q: PathState): boolean {
  if (p === q) return true;
  if (
    p.target !== q.target ||
    p.state !== q.state ||
    p.lastClass !== q.lastClass ||
    p.sinceMs !== q.sinceMs ||
    p.component !== q.component ||
    p.kind !== q.kind ||
    p.service !== q.service ||
    p.agent !== q.agent ||
    p.fellAtMs !== q.fellAtMs ||
    p.fellAgain !== q.fellAgain ||
    p.blippedAtMs !== q.blippedAtMs
  )
    return false;
  return !(
    p.state === 'degraded' &&
    (p.lossRatio !== q.lossRatio || p.failureRatio !== q.failureRatio)
  );
}

/**
 * Whether an agent's view counts: it is neither silent nor late (a late agent's report is
 * overdue, or it has not reported since a fault began arriving at its host — its word
 * predates what is happening). An agent with no liveness record has fresh paths: it counts.
 */
export function viewCounts(a: AgentLiveness | undefined): boolean {
  return a === undefined || (a.state !== 'silent' && a.late !== true);
}

/** What of the agents' liveness localisation reads: state, labels, a silent one's last word. */
export function livenessKey(agents: readonly AgentLiveness[]): string {
  return JSON.stringify(
    agents.map((a) => [
      a.agent,
      a.state,
      a.late === true,
      a.labels,
      a.state === 'silent' ? a.lastSeenMs : 0,
    ]),
  );
}
