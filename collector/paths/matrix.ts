import type { ProbeResult } from '../../wire/result.js';
import type { PathSummary, ReportBatch } from '../../wire/report.js';
import type { AgentLiveness, PathFilter, PathHead, PathState } from '../types.js';
import { agentTransition, loadPathCheckpoint, pathCheckpoint } from './checkpoint.js';
import type {
  AgentCheckpoint,
  MatrixCheckpoint,
  PathCheckpoint,
  RestoreSource,
  Transition,
} from './checkpoint.js';
import { Journal } from './journal.js';
import type { AppliedBatch, Holdings } from './journal.js';
import { defaultPathMatrixOptions, describePlanTarget } from './options.js';
import type { PathMatrixOptions } from './options.js';
import { AgentEntry, PathRuntime, pathView } from './runtime.js';
import { PathStates } from './states.js';
import type { SettleSignal } from './states.js';
import { WindowRing } from './window.js';

/**
 * The live path matrix: per (agent, plan target) a debounced state, a sliding window of the
 * agent's period summaries and a latency baseline; per agent its liveness. In memory only;
 * everything it holds can be rebuilt from the store (`restore`).
 *
 * Where the parts are: how a batch is read, confirmation bursts and the states in
 * collector/paths/states.ts; the window and the degraded verdict in collector/paths/window.ts;
 * the two-phase apply's undo log in collector/paths/journal.ts; transitions, checkpoints and
 * what a restart reads back in collector/paths/checkpoint.ts; tuning in
 * collector/paths/options.ts.
 *
 * Cost: a summary or result is O(1) (a map lookup, a few float updates, the degradation
 * check over `windowSlots` slots); nothing is allocated per item except on a path's first
 * sight and for the failure counts of a slot that has failures. Memory per path is about
 * `windowSlots` × 80 bytes plus the object.
 */

const noSignals: readonly SettleSignal[] = Object.freeze([]);

/** The live matrix. Not thread-safe, not async: one batch at a time, synchronously. */
export class PathMatrix {
  readonly options: PathMatrixOptions;
  private readonly ring: WindowRing;
  private readonly states: PathStates;
  private readonly describe: NonNullable<PathMatrixOptions['describeTarget']>;
  /** agent name → target → path: two levels so a lookup builds no key string. */
  private readonly byAgent = new Map<string, Map<string, PathRuntime>>();
  private readonly liveness = new Map<string, AgentEntry>();
  /** agent name → the agentId that holds it now (a reinstalled agent gets a new id). */
  private readonly nameToId = new Map<string, string>();
  private pathCount = 0;
  // Per-apply context, kept in fields so the inner loops pass no objects around.
  private readonly journalData = new Journal();
  /** Set while a batch is applied and not yet committed or rolled back. */
  private journal: Journal | undefined;
  private epoch = 0;
  /** The maps a rollback puts back. */
  private readonly holdings: Holdings = {
    byAgent: this.byAgent,
    liveness: this.liveness,
    nameToId: this.nameToId,
  };

  constructor(options: Partial<PathMatrixOptions> = {}) {
    const o = { ...defaultPathMatrixOptions, ...options };
    if (!Number.isInteger(o.debounce) || o.debounce < 1)
      throw new RangeError('debounce: expected an integer ≥ 1');
    if (!Number.isInteger(o.windowSlots) || o.windowSlots < 1)
      throw new RangeError('windowSlots: expected an integer ≥ 1');
    if (!(o.windowMs >= o.windowSlots)) throw new RangeError('windowMs: expected ≥ windowSlots');
    this.options = Object.freeze(o);
    this.ring = new WindowRing(this.options);
    this.states = new PathStates(this.options, this.ring);
    this.describe = o.describeTarget ?? describePlanTarget;
  }

  /**
   * Whether the batch being applied changed what a path means to the localiser — its
   * state, last class or state start, or a degraded path's ratios — beyond its counters.
   */
  protected get meaningChanged(): boolean {
    return this.states.meaningChanged;
  }

  /**
   * Whether the batch being applied showed a path's recent fall or ended its showing: no
   * transition, but the diagnosis must be recomputed (paths/states.ts `showFall`).
   */
  protected get fallsShownChanged(): boolean {
    return this.states.fallsShownChanged;
  }

  /** Number of paths held. */
  get size(): number {
    return this.pathCount;
  }

  /**
   * Applies a batch the store has not yet committed. The returned handle must be committed
   * (after the store's transaction succeeded) or rolled back (it failed or refused).
   * `backlog`: the batches the agent has spooled behind this one (its `faultline-backlog`
   * header). An agent replaying what it spooled while cut off is late until it has caught
   * up: its view is of a moment that has passed (a host back from a cut uploads its "I
   * reach nobody" of a minute ago), and localisation does not count it. `version`: the
   * agent's, from the `user-agent` of this batch (undefined when it did not say).
   */
  apply(batch: ReportBatch, receivedAtMs: number, backlog = 0, version?: string): AppliedBatch {
    if (this.journal !== undefined) {
      throw new Error('PathMatrix.apply: the previous batch was neither committed nor rolled back');
    }
    const journal = this.journalData;
    journal.reset(batch.agentId, batch.agent);
    const transitions: Transition[] = [];
    this.journal = journal;
    this.epoch++;
    const states = this.states;
    states.transitions = transitions;
    states.signals = undefined;
    states.batchSeq = batch.seq;
    states.emit = true;
    states.meaningChanged = false;
    states.fallsShownChanged = false;
    let signals: readonly SettleSignal[] = noSignals;
    try {
      this.touchAgent(batch, receivedAtMs, journal, backlog, version);
      this.applyItems(batch.agentId, batch.agent, batch.results, batch.summaries);
      signals = states.signals ?? noSignals;
    } catch (err) {
      this.undo(journal);
      this.release(journal);
      throw err;
    } finally {
      states.transitions = [];
      states.signals = undefined;
    }
    let open = true;
    return {
      transitions,
      signals,
      commit: (agent) => {
        if (!open) return;
        open = false;
        const entry = this.liveness.get(batch.agentId);
        if (entry !== undefined) {
          entry.acceptedSeq = agent.acceptedSeq;
          entry.droppedResults = agent.droppedResults;
        }
        this.release(journal);
      },
      rollback: () => {
        if (!open) return;
        open = false;
        this.undo(journal);
        this.release(journal);
      },
    };
  }

  /**
   * A batch that changes no path (a retry, or one refused for a gap) still proves the
   * agent alive. Returns the transition when the agent had been silent.
   */
  heartbeat(agentId: string, receivedAtMs: number): Transition | undefined {
    const entry = this.liveness.get(agentId);
    if (entry === undefined) return undefined;
    if (receivedAtMs > entry.lastSeenMs) entry.lastSeenMs = receivedAtMs;
    entry.late = entry.behind;
    if (entry.state === 'live') return undefined;
    entry.state = 'live';
    return agentTransition(entry, 'silent', 'live', receivedAtMs);
  }

  /**
   * Agents not heard from for `silentAfterMs` become silent; returns those that just did.
   * `deafMs(fromMs)`: how much of the time since `fromMs` this collector could hear nobody
   * (reports could not reach it): that time does not count.
   */
  markSilent(nowMs: number, silentAfterMs: number, deafMs: DeafMs = notDeaf): AgentLiveness[] {
    return markSilentEntries(this.liveness.values(), nowMs, silentAfterMs, deafMs);
  }

  /**
   * Flags live agents whose word predates what is happening: not heard for `lateAfterMs`
   * (counted from `sinceMs` at the earliest, when this collector started) — their report is
   * overdue — or not heard since `faultSince(agent)`, when a fault began arriving at their
   * host (another agent's path toward it changed), or still replaying a backlog (see
   * `apply`). Clears the flag of those heard again and caught up. A
   * late agent is not silent — nothing is said about it — but localisation does not count
   * its view (collector/localise/evidence.ts): a host whose agent stopped reporting the
   * moment the others lost it is cut off, not behind a filter that spares its own agent.
   * Returns the agents whose flag changed.
   */
  markLate(
    nowMs: number,
    lateAfterMs: number,
    sinceMs = 0,
    faultSince: (agent: string) => number | undefined = () => undefined,
    deafMs: DeafMs = notDeaf,
  ): string[] {
    return markLateEntries(this.liveness.values(), nowMs, lateAfterMs, sinceMs, faultSince, deafMs);
  }

  /** The liveness of the agent with this id, if held. */
  agentById(agentId: string): AgentLiveness | undefined {
    return this.liveness.get(agentId)?.snapshot();
  }

  /** Whether the agent of this name (or with `agentId`) is late (cheap: no snapshot). */
  isLate(name: string, agentId = this.nameToId.get(name)): boolean {
    return agentId !== undefined && this.liveness.get(agentId)?.late === true;
  }

  /** The liveness of the agent of this name, if it has reported. */
  agentNamed(name: string): AgentLiveness | undefined {
    const id = this.nameToId.get(name);
    return id === undefined ? undefined : this.liveness.get(id)?.snapshot();
  }

  paths(filter: PathFilter = {}): PathState[] {
    const out: PathState[] = [];
    const pick = (m: Map<string, PathRuntime>): void => {
      for (const p of m.values()) {
        if (filter.component !== undefined && p.component !== filter.component) continue;
        if (filter.kind !== undefined && p.kind !== filter.kind) continue;
        if (filter.state !== undefined && p.state !== filter.state) continue;
        out.push(this.view(p));
      }
    };
    if (filter.agent !== undefined) {
      const m = this.byAgent.get(filter.agent);
      if (m !== undefined) pick(m);
    } else for (const m of this.byAgent.values()) pick(m);
    return out;
  }

  /**
   * Visits every path's identity and debounced state, without the window figures `paths()`
   * computes for each: what metrics read at every scrape, cheap at 200k paths. `visit` must
   * not keep the object it is given (it is the matrix's own, and changes).
   */
  forEachPath(visit: (p: PathHead) => void): void {
    for (const m of this.byAgent.values()) for (const p of m.values()) visit(p);
  }

  /** One path, or undefined. */
  path(agent: string, target: string): PathState | undefined {
    const p = this.byAgent.get(agent)?.get(target);
    return p === undefined ? undefined : this.view(p);
  }

  agents(): AgentLiveness[] {
    return [...this.liveness.values()].map((e) => e.snapshot());
  }

  /** Agents held (one per name: a name that moved to a new id holds only that one). */
  get agentCount(): number {
    return this.liveness.size;
  }

  /** Whether an agent of this name has reported (and is held). */
  hasAgent(name: string): boolean {
    return this.nameToId.has(name);
  }

  /** Ids of the agents held, for a checkpoint taken an agent at a time. */
  agentIds(): string[] {
    return [...this.liveness.keys()];
  }

  /**
   * One agent's part of the checkpoint: its watermark and the scalars of its paths, which
   * reflect exactly the batches up to it (undefined when the agent is gone). Consistent on
   * its own, so a checkpoint can be written a few agents at a time between batches.
   */
  checkpointAgent(agentId: string): AgentCheckpoint | undefined {
    const e = this.liveness.get(agentId);
    if (e === undefined) return undefined;
    const paths: PathCheckpoint[] = [];
    if (this.nameToId.get(e.agent) === agentId)
      for (const p of this.byAgent.get(e.agent)?.values() ?? []) paths.push(pathCheckpoint(p));
    return { agentId, agent: e.agent, seq: e.acceptedSeq, paths };
  }

  /** The path scalars and the watermarks they reflect, for the store's checkpoint. */
  checkpoint(): MatrixCheckpoint {
    const paths: PathCheckpoint[] = [];
    for (const m of this.byAgent.values())
      for (const p of m.values()) paths.push(pathCheckpoint(p));
    const agents = [...this.liveness.values()].map((e) => ({
      agentId: e.agentId,
      seq: e.acceptedSeq,
    }));
    return { agents, paths };
  }

  /**
   * Rebuilds the matrix after a restart: agents and watermarks from the store; path state
   * from the last checkpoint plus every batch accepted after it, replayed through the same
   * code as live batches; the window from the summaries of the last two windows. An agent
   * without a usable checkpoint (none, or older than `maxReplayMs`) starts from its last
   * stored transitions and replays `maxReplayMs` of batches.
   */
  restore(source: RestoreSource, opts: { readonly maxReplayMs?: number } = {}): void {
    if (this.journal !== undefined) {
      throw new Error('PathMatrix.restore: a batch is still open');
    }
    const maxReplayMs = opts.maxReplayMs ?? 15 * 60_000;
    this.byAgent.clear();
    this.liveness.clear();
    this.nameToId.clear();
    this.pathCount = 0;

    const stored = source.agents();
    for (const a of stored) {
      const silent = source.lastAgentTransition(a.agentId)?.toState === 'silent';
      const entry = new AgentEntry(
        a.agentId,
        a.agent,
        a.labels,
        silent ? 'silent' : 'live',
        a.lastSeenMs,
        a.acceptedSeq,
        a.droppedResults,
      );
      // Oldest first: a name held by several ids ends with the newest.
      const prev = this.nameToId.get(a.agent);
      if (prev !== undefined) this.liveness.delete(prev);
      this.liveness.set(a.agentId, entry);
      this.nameToId.set(a.agent, a.agentId);
    }

    const ckpt = source.loadCheckpoint();
    const ckptSeq = new Map<string, number>();
    for (const a of ckpt?.agents ?? []) ckptSeq.set(a.agentId, a.seq);
    for (const c of ckpt?.paths ?? []) {
      if (this.nameToId.get(c.agent) !== c.agentId) continue;
      const p = this.createPath(c.agentId, c.agent, c.target, c.kind, c.sinceMs);
      loadPathCheckpoint(p, c);
    }

    this.states.emit = false;
    this.states.transitions = [];
    for (const entry of this.liveness.values()) {
      const id = entry.agentId;
      const replayFloorMs = entry.lastSeenMs - maxReplayMs;
      let from: number | undefined;
      const seen = ckptSeq.get(id);
      if (seen !== undefined) {
        const at = seen === 0 ? entry.lastSeenMs : source.batchReceivedAt(id, seen);
        if (at !== undefined && at >= replayFloorMs) from = seen + 1;
      }
      if (from === undefined) {
        this.dropAgentPaths(entry.agent);
        from = source.firstSeqReceivedSince(id, replayFloorMs) ?? entry.acceptedSeq + 1;
        for (const t of source.lastPathTransitions(id, from)) this.seed(t);
      }
      const fillFrom = Math.min(
        from,
        source.firstSeqReceivedSince(id, entry.lastSeenMs - 2 * this.options.windowMs) ?? from,
      );
      for (const b of source.replay(id, fillFrom)) {
        this.states.batchSeq = b.seq;
        if (b.seq < from) this.fillWindow(b.agentId, b.agent, b.summaries);
        else this.applyItems(b.agentId, b.agent, b.results, b.summaries);
      }
    }
    this.states.emit = true;
    this.states.transitions = [];
  }

  // ---- internals ----

  private touchAgent(
    batch: ReportBatch,
    receivedAtMs: number,
    journal: Journal,
    backlog: number,
    version: string | undefined,
  ): void {
    const { agentId, agent, labels } = batch;
    let entry = this.liveness.get(agentId);
    if (entry === undefined) {
      entry = new AgentEntry(agentId, agent, labels ?? {}, 'live', receivedAtMs, 0, 0);
      entry.behind = entry.late = backlog > 0;
      this.liveness.set(agentId, entry);
      journal.agentCreated = true;
    } else {
      journal.agentBefore = entry.copy();
      if (labels !== undefined) entry.labels = labels;
      if (receivedAtMs > entry.lastSeenMs) entry.lastSeenMs = receivedAtMs;
      entry.behind = backlog > 0;
      entry.late = entry.behind;
      if (entry.state === 'silent') {
        entry.state = 'live';
        this.states.transitions.push(
          agentTransition(entry, 'silent', 'live', receivedAtMs, this.states.batchSeq),
        );
      }
    }
    entry.spoolBacklog = backlog;
    entry.version = version;
    const holder = this.nameToId.get(agent);
    journal.holderBefore = holder;
    if (holder !== agentId) {
      // The name moved to a new id (agent reinstalled, state dir lost): the old id is gone.
      if (holder !== undefined) {
        journal.superseded = this.liveness.get(holder);
        this.liveness.delete(holder);
      }
      this.nameToId.set(agent, agentId);
    }
  }

  /** Ends the open batch: the copies go back to the pool. */
  private release(journal: Journal): void {
    journal.release();
    this.journal = undefined;
  }

  private undo(journal: Journal): void {
    this.pathCount -= journal.undo(this.holdings);
  }

  private applyItems(
    agentId: string,
    agent: string,
    results: readonly ProbeResult[],
    summaries: readonly PathSummary[],
  ): void {
    let paths = this.byAgent.get(agent);
    if (paths === undefined) {
      paths = new Map();
      this.byAgent.set(agent, paths);
    }
    const rOrder = seqOrder(results, (r) => r.seq);
    const sOrder = seqOrder(summaries, (s) => s.lastSeq);
    const nr = results.length;
    const ns = summaries.length;
    let i = 0;
    let j = 0;
    while (i < nr || j < ns) {
      const r = i < nr ? results[rOrder === undefined ? i : rOrder[i]!]! : undefined;
      const s = j < ns ? summaries[sOrder === undefined ? j : sOrder[j]!]! : undefined;
      if (r !== undefined && (s === undefined || r.seq <= s.lastSeq)) {
        i++;
        const p = this.pathFor(paths, agentId, agent, r.target, r.kind, r.startedAtMs);
        this.states.takeResult(p, r);
      } else if (s !== undefined) {
        j++;
        const p = this.pathFor(paths, agentId, agent, s.target, s.kind, s.fromMs);
        this.states.takeSummary(p, s);
      }
    }
  }

  private pathFor(
    paths: Map<string, PathRuntime>,
    agentId: string,
    agent: string,
    target: string,
    kind: string,
    atMs: number,
  ): PathRuntime {
    let p = paths.get(target);
    if (p === undefined) {
      p = this.createPath(agentId, agent, target, kind, atMs);
      p.journalEpoch = this.epoch;
      this.journal?.createdPaths.push(p);
    } else if (this.journal !== undefined && p.journalEpoch !== this.epoch) {
      p.journalEpoch = this.epoch;
      this.journal.keep(p, this.ring.slots);
    }
    if (p.agentId !== agentId) {
      // Same name, new agent id: its seq numbers start over.
      p.agentId = agentId;
      p.lastSeq = -1;
      p.fullSinceSummary = 0;
    }
    p.kind = kind;
    return p;
  }

  private createPath(
    agentId: string,
    agent: string,
    target: string,
    kind: string,
    atMs: number,
  ): PathRuntime {
    let paths = this.byAgent.get(agent);
    if (paths === undefined) {
      paths = new Map();
      this.byAgent.set(agent, paths);
    }
    const p = new PathRuntime(
      agentId,
      agent,
      target,
      kind,
      this.describe(target, kind),
      this.ring.slots,
      atMs,
    );
    paths.set(target, p);
    this.pathCount++;
    return p;
  }

  private dropAgentPaths(agent: string): void {
    const m = this.byAgent.get(agent);
    if (m === undefined) return;
    this.pathCount -= m.size;
    this.byAgent.delete(agent);
  }

  private seed(t: Transition): void {
    const p = this.createPath(t.agentId, t.agent, t.target, t.kind, t.atMs);
    p.state = t.toState as PathState['state'];
    p.stateClass = t.toClass ?? 'ok';
    p.firstClass = t.fromState === 'failing' && t.fromClass !== null ? t.fromClass : p.stateClass;
    p.lastClass = p.stateClass;
    p.sinceMs = t.atMs;
    p.lastSeenMs = t.atMs;
    p.runStartMs = t.atMs;
    // The transition proves at least `debounce` probes of that kind in a row.
    if (p.state === 'failing') {
      p.consecutiveFailures = this.options.debounce;
      p.classRun = this.options.debounce;
      p.classRunStartMs = t.atMs;
    } else if (p.state === 'ok' || p.state === 'degraded') {
      p.consecutiveSuccesses = this.options.debounce;
      p.healthySinceMs = t.atMs;
    }
  }

  /** Window-only: the summaries before a restore's replay point fill the window, nothing else. */
  private fillWindow(agentId: string, agent: string, summaries: readonly PathSummary[]): void {
    const paths = this.byAgent.get(agent);
    if (paths === undefined) return;
    for (const s of summaries) {
      const p = paths.get(s.target);
      if (p === undefined || p.agentId !== agentId) continue;
      this.ring.add(p, s);
    }
  }

  private view(p: PathRuntime): PathState {
    return pathView(
      p,
      this.ring.sum(p, 0, true),
      this.options.flapStableMs,
      this.options.blipShowMs,
    );
  }
}

/**
 * How much of the time from `fromMs` to now the collector could hear nobody (reports could
 * not reach it: collector.ts, NATS input stalls). An agent's silence then is not its own.
 */
export type DeafMs = (fromMs: number) => number;
const notDeaf: DeafMs = () => 0;

/** Flips live agents not heard from for `silentAfterMs` to silent; returns those that just did. */
export function markSilentEntries(
  entries: Iterable<AgentEntry>,
  nowMs: number,
  silentAfterMs: number,
  deafMs: DeafMs = notDeaf,
): AgentLiveness[] {
  const changed: AgentLiveness[] = [];
  for (const entry of entries) {
    if (
      entry.state === 'live' &&
      nowMs - entry.lastSeenMs > silentAfterMs &&
      nowMs - entry.lastSeenMs - deafMs(entry.lastSeenMs) > silentAfterMs
    ) {
      entry.state = 'silent';
      entry.late = entry.behind = false;
      changed.push(entry.snapshot());
    }
  }
  return changed;
}

/** Sets the late flag of each entry (see `PathMatrix.markLate`); returns the agents whose flag changed. */
export function markLateEntries(
  entries: Iterable<AgentEntry>,
  nowMs: number,
  lateAfterMs: number,
  sinceMs: number,
  faultSince: (agent: string) => number | undefined,
  deafMs: DeafMs = notDeaf,
): string[] {
  const changed: string[] = [];
  for (const entry of entries) {
    let late = false;
    if (entry.state === 'live') {
      const from = Math.max(entry.lastSeenMs, sinceMs);
      const overdue = nowMs - from > lateAfterMs && nowMs - from - deafMs(from) > lateAfterMs;
      const fault = overdue || entry.behind ? undefined : faultSince(entry.agent);
      late = overdue || entry.behind || (fault !== undefined && entry.lastSeenMs < fault);
    }
    if (late !== entry.late) {
      entry.late = late;
      changed.push(entry.agent);
    }
  }
  return changed;
}

/** undefined when already in order (the usual case: nothing allocated); else a sorted index. */
function seqOrder<T>(items: readonly T[], seqOf: (x: T) => number): number[] | undefined {
  for (let k = 1; k < items.length; k++) {
    if (seqOf(items[k]!) < seqOf(items[k - 1]!)) {
      const order = items.map((_, idx) => idx);
      order.sort((a, b) => seqOf(items[a]!) - seqOf(items[b]!) || a - b);
      return order;
    }
  }
  return undefined;
}
