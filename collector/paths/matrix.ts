import { lossIsSignificant } from '../loss-significance.js';
import { failureClasses, failureLayer } from '../../wire/result.js';
import type { FailureClass, ProbeResult } from '../../wire/result.js';
import type { PathSummary, ReportBatch } from '../../wire/report.js';
import type { StoredAgent, StoredBatch } from '../store.js';
import type { AgentLiveness, PathFilter, PathHead, PathState } from '../types.js';

/**
 * The live path matrix: per (agent, plan target) a debounced state, a sliding window of the
 * agent's period summaries and a latency baseline; per agent its liveness. In memory only;
 * everything it holds can be rebuilt from the store (`restore`).
 *
 * How a batch is read — results and summaries of the same period, never counted twice:
 * - **Summaries** cover every probe of their period, the failing ones too (which also come
 *   in full as results). So the window's counts, failure classes, loss and latency come from
 *   summaries only; full results never add to them.
 * - **Results** give the exact class sequence: they alone drive `lastClass`, the consecutive
 *   counts and the debounce. A summary adds to the sequence only what the results could not
 *   say: when its `lastSeq` is newer than the newest full result of the path, the probes
 *   after that result were not sent in full — agents send every class change in full (and a
 *   few results confirming it), so those probes repeated the class before them. If the
 *   period had no failure at all, every one of its probes not already seen in full was a
 *   success (exact); if it had failures, only its last probe is known (`lastClass`), so one
 *   probe of that class is added (a lower bound: a state may take a period longer to
 *   confirm, it is never confirmed early).
 * - Items are taken in sequence order (results by `seq`, summaries by `lastSeq`, a result
 *   before the summary that covers it), so a batch holding several periods is read as if
 *   the probes had arrived one by one.
 *
 * Confirmation bursts (results carrying `confirm`, wire/result.ts): the trigger (index 0) opens
 * a burst on its path; when every re-probe 1..`of` has come back with the trigger's class,
 * the change is confirmed and the debounce is met at once, even with fewer than `debounce`
 * results; any result of another class on the path before that (a re-probe or a regular
 * probe) cancels the burst, and the debounce goes on counting as without bursts. An open
 * burst is part of the path's checkpoint; one lost in a restart without a checkpoint falls
 * back to the plain debounce (never an early transition).
 *
 * States: `unknown` until the first success (→ ok) or `debounce` consecutive failures
 * (→ failing); `failing` after `debounce` consecutive failures; back to `ok` after
 * `debounce` consecutive successes. While failing, a different failure class that persists
 * for `debounce` probes is recorded as a failing→failing transition (e.g. timeouts turning
 * into refusals: the network came back, the service did not). `degraded` is an `ok` path
 * whose window — only the slots that start after it last recovered, so the failures that
 * made it fail do not count as loss — shows loss or failures ≥ `degradedLossRatio` that
 * background loss would not give, or half its periods slow: a p50 above
 * `degradedLatencyFactor` × its baseline and at least `degradedLatencyMinMs` over it (again
 * more of them than chance gives). The baseline is a slow EWMA (time constant
 * `baselineTauMs`) of the p50 of periods without any failure, not slow, while the path is
 * `ok` (not degraded: a slow path must not teach itself that slow is normal); the first `baselineWarmupPeriods` periods form a plain mean and no
 * latency verdict is given before. The verdict is taken after each summary, and not while a
 * run of failures is under way (that run ends failing or in a success: a path going down
 * goes ok → failing, not through degraded).
 *
 * The window is `windowSlots` slots of `windowMs / windowSlots` each, in the agent's own
 * clock, ending at the newest period of the path: a path whose agent went silent keeps its
 * last window (its liveness says it is stale). Percentiles over the window: p50 is the mean
 * of the periods' p50 weighted by their successful probes, p99 the highest period p99.
 * `latencyMs.baseline` is the current p50 until the path has had a healthy period.
 *
 * Cost: a summary or result is O(1) (a map lookup, a few float updates, the degradation
 * check over `windowSlots` slots); nothing is allocated per item except on a path's first
 * sight and for the failure counts of a slot that has failures. Memory per path is about
 * `windowSlots` × 80 bytes plus the object.
 */

/** Tuning of the path matrix; every field has a default (`defaultPathMatrixOptions`). */
export interface PathMatrixOptions {
  /** Consecutive failures that make a path failing, and successes that make it ok again. */
  readonly debounce: number;
  /** Length of the sliding window (ms). */
  readonly windowMs: number;
  /** Slots the window is kept in: its granularity (memory per path grows with it). */
  readonly windowSlots: number;
  /** Time constant of the latency baseline's EWMA (ms). */
  readonly baselineTauMs: number;
  /** Healthy periods averaged before the baseline is trusted. */
  readonly baselineWarmupPeriods: number;
  /** p50 above this multiple of the baseline (and `degradedLatencyMinMs` over it) → degraded. */
  readonly degradedLatencyFactor: number;
  /** Least absolute latency increase (ms) that counts, so sub-millisecond noise does not. */
  readonly degradedLatencyMinMs: number;
  /** Loss ratio (ICMP) or failure ratio in the window at or above which a path is degraded. */
  readonly degradedLossRatio: number;
  /** Probes the window needs before it can call a path degraded. */
  readonly degradedMinProbes: number;
  /**
   * The recent part of the window (ms, whole slots back from the newest): loss or failures
   * of at least `degradedRecentLossRatio` in it make a path degraded before they have
   * diluted the whole window's 30 s of healthy history to `degradedLossRatio`.
   */
  readonly degradedRecentMs: number;
  readonly degradedRecentLossRatio: number;
  /**
   * Loss every network has and nobody should be paged for: a loss verdict also needs the
   * losses to be unlikely (below `degradedLossAlpha`) had each probe been lost with this
   * chance (collector/loss-significance.ts).
   */
  readonly tolerableLossRatio: number;
  readonly degradedLossAlpha: number;
  /**
   * Share of periods slow against the baseline that chance gives on a healthy path (each
   * lost segment of a TCP probe delays it by a retransmission): a latency verdict needs half
   * the periods slow and more than this share would give (below `degradedLossAlpha`).
   */
  readonly tolerableSlowRatio: number;
  /**
   * Flap damping, as routers damp a flapping route: each fall to failing at the network layer
   * (a timeout, an unreachable: what loss reads as) adds 1 to a path's
   * penalty (at most 3), which halves every `flapHalfLifeMs`. A path that falls again while
   * its penalty is at least `flapSuppressAt` (1.5: the third of falls a few seconds apart;
   * a second fall alone, as a heal's aftermath may have, is not flapping) is flapping: it shows as `degraded` with its failure class — loss, which
   * packet_loss localises to the element the flapping paths share — rather than pulling the
   * diagnosis between a cut and health every few seconds. A fall that lasts
   * `flapMaxSuppressMs` is failing all the same: the link that stopped flapping down.
   */
  readonly flapHalfLifeMs: number;
  readonly flapSuppressAt: number;
  /** Falls further apart than this are separate faults, whatever the penalty says. */
  readonly flapStableMs: number;
  readonly flapMaxSuppressMs: number;
  /** Splits a plan target name into component and service (default: `<component>/<kind>[/<service>]`). */
  readonly describeTarget?: (
    target: string,
    kind: string,
  ) => { readonly component: string; readonly service?: string };
}

export const defaultPathMatrixOptions: PathMatrixOptions = Object.freeze({
  debounce: 3,
  windowMs: 30_000,
  windowSlots: 10,
  baselineTauMs: 600_000,
  baselineWarmupPeriods: 5,
  degradedLatencyFactor: 3,
  degradedLatencyMinMs: 20,
  degradedLossRatio: 0.1,
  degradedMinProbes: 5,
  degradedRecentMs: 6_000,
  degradedRecentLossRatio: 0.25,
  tolerableLossRatio: 0.05,
  degradedLossAlpha: 1e-4,
  tolerableSlowRatio: 0.1,
  flapHalfLifeMs: 30_000,
  flapSuppressAt: 1.5,
  flapStableMs: 10_000,
  flapMaxSuppressMs: 5_000,
});

/**
 * A state change, as the store keeps it for timelines: a path changing state (or, while
 * failing, failure class), or an agent going silent or coming back (`kind: 'agent'`,
 * empty `target`, no classes).
 */
export interface Transition {
  readonly agentId: string;
  readonly agent: string;
  /** Plan target; empty for an agent liveness change. */
  readonly target: string;
  /** Probe kind; `agent` for an agent liveness change. */
  readonly kind: string;
  readonly fromClass: FailureClass | null;
  readonly toClass: FailureClass | null;
  readonly fromState: string;
  readonly toState: string;
  /** When the new state began (epoch ms, agent clock for paths): the first probe of the run. */
  readonly atMs: number;
  /** Sequence number of the probe that completed the run, when a probe did. */
  readonly resultSeq: number | null;
  /** The report batch that carried it (for agent changes: the agent's watermark then). */
  readonly batchSeq: number;
}

/** The part of a path's state that is not in the window, as checkpointed in the store. */
export interface PathCheckpoint {
  readonly agent: string;
  readonly agentId: string;
  readonly target: string;
  readonly kind: string;
  readonly state: PathState['state'];
  readonly stateClass: FailureClass;
  readonly sinceMs: number;
  readonly healthySinceMs: number;
  readonly lastClass: FailureClass;
  readonly lastSeq: number;
  readonly consecutiveFailures: number;
  readonly consecutiveSuccesses: number;
  readonly runStartMs: number;
  readonly classRun: number;
  readonly classRunStartMs: number;
  readonly fullSinceSummary: number;
  readonly lastSeenMs: number;
  readonly newestSlot: number;
  readonly baselineMs: number | null;
  readonly baselineSamples: number;
  /** The open confirmation burst: its size, the trigger's class and the re-probes seen (bits 1..of). Absent: none. */
  readonly burst?: { readonly of: number; readonly cls: FailureClass; readonly seen: number };
  /** Flap damping's penalty and when it was last updated (absent: none). */
  readonly flap?: { readonly penalty: number; readonly atMs: number };
  /** While failing: the class the failure began with, when it differs from `stateClass`. */
  readonly firstClass?: FailureClass;
}

/**
 * What a batch tells the settling of the diagnosis (collector/settle.ts): a path that
 * changed state or class (`change`), a confirmation burst that began (`open`) or ended —
 * confirmed, cancelled or replaced — (`close`). `key` names the path (agent and target).
 */
export interface SettleSignal {
  readonly type: 'change' | 'open' | 'close';
  readonly key: string;
  readonly agent: string;
  /** The path's target component. */
  readonly component: string;
}

/** A checkpoint of the whole matrix: path scalars plus each agent's watermark they reflect. */
export interface MatrixCheckpoint {
  readonly agents: readonly { readonly agentId: string; readonly seq: number }[];
  readonly paths: readonly PathCheckpoint[];
}

/** One agent's part of a checkpoint: its watermark and its paths' scalars at it. */
export interface AgentCheckpoint {
  readonly agentId: string;
  readonly agent: string;
  readonly seq: number;
  readonly paths: readonly PathCheckpoint[];
}

/** What `restore` reads from the store (collector/store.ts implements it). */
export interface RestoreSource {
  /** Every agent with its watermark, oldest `lastSeenMs` first. */
  agents(): StoredAgent[];
  loadCheckpoint(): MatrixCheckpoint | undefined;
  /** The newest transition per target of an agent among those before batch `beforeSeq`. */
  lastPathTransitions(agentId: string, beforeSeq: number): Transition[];
  lastAgentTransition(agentId: string): Transition | undefined;
  /** Lowest stored batch seq of the agent received at or after `sinceMs`. */
  firstSeqReceivedSince(agentId: string, sinceMs: number): number | undefined;
  /** When batch `seq` of the agent was received, if it is still stored. */
  batchReceivedAt(agentId: string, seq: number): number | undefined;
  /** Stored batches of the agent with seq ≥ fromSeq, in seq order. */
  replay(agentId: string, fromSeq: number): Iterable<StoredBatch>;
}

/** A batch applied to the matrix but not yet made final: the store decides. */
export interface AppliedBatch {
  /** State changes the batch caused, to be stored in the same transaction as the batch. */
  readonly transitions: readonly Transition[];
  /** Changes and bursts for the diagnosis' settling (empty for most batches). */
  readonly signals: readonly SettleSignal[];
  /** Keeps the changes; `agent` carries the store's watermark and counters for the agent. */
  commit(agent: { readonly acceptedSeq: number; readonly droppedResults: number }): void;
  /** Undoes every change of `apply` (the store refused or failed). */
  rollback(): void;
}

const classIndex: Readonly<Record<string, number>> = Object.fromEntries(
  failureClasses.map((c, i) => [c, i]),
);
const classCount = failureClasses.length;
/** Largest burst the wire allows (`confirm.of`). */
const maxBurst = 10;
const noSignals: readonly SettleSignal[] = Object.freeze([]);

/** Bits 1..of: every re-probe of a burst of `of`. */
function fullBurst(of: number): number {
  return ((1 << (of + 1)) - 1) & ~1;
}

// Window slot layout in one Float64Array per path (no object per period).
const SLOT_IDX = 0; // slot number (time / slotMs), -1 when empty
const SLOT_COUNT = 1;
const SLOT_OK = 2;
const SLOT_P50_SUM = 3; // Σ p50 × weight
const SLOT_LAT_W = 4; // Σ weight (successful probes of periods with latency)
const SLOT_P99_MAX = 5;
const SLOT_LOSS_SUM = 6; // Σ lossRatio × echoes (lost echoes)
const SLOT_LOSS_W = 7; // echoes sent (probes, from agents that do not say)
const SLOT_PERIODS = 8; // periods with a latency
const SLOT_SLOW = 9; // of those, periods slow against the baseline of the time
const STRIDE = 10;

/** Window totals, filled in place (one shared scratch, nothing allocated per read). */
interface WindowTotals {
  count: number;
  ok: number;
  p50Sum: number;
  latW: number;
  p99Max: number;
  lossSum: number;
  lossW: number;
  periods: number;
  slow: number;
  readonly failures: Uint32Array;
}

class PathRuntime {
  agentId: string;
  readonly agent: string;
  readonly target: string;
  readonly component: string;
  readonly service: string | undefined;
  kind: string;
  state: PathState['state'] = 'unknown';
  /** The class the current state was entered with (transition `fromClass`). */
  stateClass: FailureClass = 'ok';
  sinceMs: number;
  /** When the path last became ok from failing/unknown: degradation looks at the window after it. */
  healthySinceMs = 0;
  /** While failing: the class the failure began with (it may since have changed class). */
  firstClass: FailureClass = 'ok';
  lastClass: FailureClass = 'ok';
  /** Newest probe seq taken into the sequence (results, or a summary's lastSeq). */
  lastSeq = -1;
  consecutiveFailures = 0;
  consecutiveSuccesses = 0;
  runStartMs = 0;
  /** Consecutive failures of the same class as `lastClass`. */
  classRun = 0;
  classRunStartMs = 0;
  /** Full results taken since the path's last summary: the part of that period already seen. */
  fullSinceSummary = 0;
  lastSeenMs = 0;
  newestSlot = -1;
  baselineMs = Number.NaN;
  baselineSamples = 0;
  /** Open confirmation burst: its `of` (0: none), the trigger's class, re-probes seen (bit i = index i). */
  burstOf = 0;
  burstClass: FailureClass = 'ok';
  burstSeen = 0;
  /** Flap damping: falls to failing, decayed with `flapHalfLifeMs` since `flapAtMs`. */
  flapPenalty = 0;
  flapAtMs = 0;
  /** The apply that last journaled this path (so it is copied once per batch). */
  journalEpoch = 0;
  readonly win: Float64Array;
  /** Failures by class per slot, allocated only for slots that had failures. */
  winFail: (Uint32Array | undefined)[] | undefined;

  constructor(
    agentId: string,
    agent: string,
    target: string,
    kind: string,
    where: { readonly component: string; readonly service?: string },
    slots: number,
    atMs: number,
  ) {
    this.agentId = agentId;
    this.agent = agent;
    this.target = target;
    this.kind = kind;
    this.component = where.component;
    this.service = where.service;
    this.sinceMs = atMs;
    this.win = new Float64Array(slots * STRIDE);
    for (let s = 0; s < slots; s++) this.win[s * STRIDE + SLOT_IDX] = -1;
  }

  copyFrom(o: PathRuntime): void {
    this.agentId = o.agentId;
    this.kind = o.kind;
    this.state = o.state;
    this.stateClass = o.stateClass;
    this.firstClass = o.firstClass;
    this.sinceMs = o.sinceMs;
    this.healthySinceMs = o.healthySinceMs;
    this.lastClass = o.lastClass;
    this.lastSeq = o.lastSeq;
    this.consecutiveFailures = o.consecutiveFailures;
    this.consecutiveSuccesses = o.consecutiveSuccesses;
    this.runStartMs = o.runStartMs;
    this.classRun = o.classRun;
    this.classRunStartMs = o.classRunStartMs;
    this.fullSinceSummary = o.fullSinceSummary;
    this.lastSeenMs = o.lastSeenMs;
    this.newestSlot = o.newestSlot;
    this.baselineMs = o.baselineMs;
    this.baselineSamples = o.baselineSamples;
    this.burstOf = o.burstOf;
    this.burstClass = o.burstClass;
    this.burstSeen = o.burstSeen;
    this.flapPenalty = o.flapPenalty;
    this.flapAtMs = o.flapAtMs;
    this.win.set(o.win);
    if (o.winFail === undefined) this.winFail = undefined;
    else {
      this.winFail ??= new Array<Uint32Array | undefined>(o.winFail.length).fill(undefined);
      for (let k = 0; k < o.winFail.length; k++) {
        const f = o.winFail[k];
        const mine = this.winFail[k];
        if (f === undefined) this.winFail[k] = undefined;
        else if (mine === undefined) this.winFail[k] = f.slice();
        else mine.set(f);
      }
    }
  }

  toCheckpoint(): PathCheckpoint {
    return {
      agent: this.agent,
      agentId: this.agentId,
      target: this.target,
      kind: this.kind,
      state: this.state,
      stateClass: this.stateClass,
      sinceMs: this.sinceMs,
      healthySinceMs: this.healthySinceMs,
      lastClass: this.lastClass,
      lastSeq: this.lastSeq,
      consecutiveFailures: this.consecutiveFailures,
      consecutiveSuccesses: this.consecutiveSuccesses,
      runStartMs: this.runStartMs,
      classRun: this.classRun,
      classRunStartMs: this.classRunStartMs,
      fullSinceSummary: this.fullSinceSummary,
      lastSeenMs: this.lastSeenMs,
      newestSlot: this.newestSlot,
      baselineMs: Number.isNaN(this.baselineMs) ? null : this.baselineMs,
      baselineSamples: this.baselineSamples,
      ...(this.burstOf > 0
        ? { burst: { of: this.burstOf, cls: this.burstClass, seen: this.burstSeen } }
        : {}),
      ...(this.flapPenalty > 0 ? { flap: { penalty: this.flapPenalty, atMs: this.flapAtMs } } : {}),
      ...(this.state === 'failing' && this.firstClass !== this.stateClass
        ? { firstClass: this.firstClass }
        : {}),
    };
  }

  loadCheckpoint(c: PathCheckpoint): void {
    this.state = c.state;
    this.stateClass = c.stateClass;
    this.firstClass =
      c.state === 'failing' && c.firstClass !== undefined && c.firstClass in classIndex
        ? c.firstClass
        : c.stateClass;
    this.sinceMs = c.sinceMs;
    this.healthySinceMs = c.healthySinceMs;
    this.lastClass = c.lastClass;
    this.lastSeq = c.lastSeq;
    this.consecutiveFailures = c.consecutiveFailures;
    this.consecutiveSuccesses = c.consecutiveSuccesses;
    this.runStartMs = c.runStartMs;
    this.classRun = c.classRun;
    this.classRunStartMs = c.classRunStartMs;
    this.fullSinceSummary = c.fullSinceSummary;
    this.lastSeenMs = c.lastSeenMs;
    this.newestSlot = c.newestSlot;
    this.baselineMs = c.baselineMs ?? Number.NaN;
    this.baselineSamples = c.baselineSamples;
    const b = c.burst;
    if (b !== undefined && Number.isInteger(b.of) && b.of >= 1 && b.of <= maxBurst) {
      this.burstOf = b.of;
      this.burstClass = b.cls;
      this.burstSeen = b.seen;
    } else this.burstOf = 0;
    const f = c.flap;
    if (f !== undefined && Number.isFinite(f.penalty) && f.penalty > 0) {
      this.flapPenalty = f.penalty;
      this.flapAtMs = f.atMs;
    } else this.flapPenalty = this.flapAtMs = 0;
  }
}

class AgentEntry implements AgentLiveness {
  /** Live, but its report is overdue (see {@link PathMatrix.markLate}). */
  public late = false;
  /** Its last batch came from a backlog: it is replaying what it spooled while cut off. */
  public behind = false;
  /** Batches spooled behind its last batch (its `faultline-backlog`). */
  public spoolBacklog = 0;
  /** From the `user-agent` of its last batch; in memory only. */
  public version: string | undefined;

  constructor(
    readonly agentId: string,
    readonly agent: string,
    public labels: Readonly<Record<string, string>>,
    public state: 'live' | 'silent',
    public lastSeenMs: number,
    public acceptedSeq: number,
    public droppedResults: number,
  ) {}

  snapshot(): AgentLiveness {
    return {
      agentId: this.agentId,
      agent: this.agent,
      labels: this.labels,
      state: this.state,
      ...(this.late ? { late: true } : {}),
      lastSeenMs: this.lastSeenMs,
      acceptedSeq: this.acceptedSeq,
      droppedResults: this.droppedResults,
      spoolBacklog: this.spoolBacklog,
      ...(this.version === undefined ? {} : { version: this.version }),
    };
  }

  /** A copy, for the journal (a rolled-back batch puts it back). */
  copy(): AgentEntry {
    const c = new AgentEntry(
      this.agentId,
      this.agent,
      this.labels,
      this.state,
      this.lastSeenMs,
      this.acceptedSeq,
      this.droppedResults,
    );
    c.late = this.late;
    c.behind = this.behind;
    c.spoolBacklog = this.spoolBacklog;
    c.version = this.version;
    return c;
  }
}

/** `<component>/<kind>[/<service>]` (wire/plan.ts); anything else is a component of its own. */
export function describePlanTarget(
  target: string,
  kind: string,
): { readonly component: string; readonly service?: string } {
  const first = target.indexOf('/');
  if (first > 0) {
    const second = target.indexOf('/', first + 1);
    const k = second < 0 ? target.slice(first + 1) : target.slice(first + 1, second);
    if (k === kind) {
      const component = target.slice(0, first);
      const service = second < 0 ? '' : target.slice(second + 1);
      return service === '' ? { component } : { component, service };
    }
  }
  return { component: target };
}

/**
 * Undo log of the open batch: touched paths as they were (copies kept in a pool, so a batch
 * allocates nothing per path), paths and agent state it created or replaced. One instance
 * per matrix, reused: only one batch is open at a time.
 */
class Journal {
  readonly touched: PathRuntime[] = [];
  readonly before: PathRuntime[] = [];
  readonly createdPaths: PathRuntime[] = [];
  agentId = '';
  agent = '';
  agentBefore: AgentEntry | undefined;
  agentCreated = false;
  superseded: AgentEntry | undefined;
  holderBefore: string | undefined;

  reset(agentId: string, agent: string): void {
    this.touched.length = 0;
    this.before.length = 0;
    this.createdPaths.length = 0;
    this.agentId = agentId;
    this.agent = agent;
    this.agentBefore = undefined;
    this.agentCreated = false;
    this.superseded = undefined;
    this.holderBefore = undefined;
  }
}

const nowhere = { component: '' };

/** Failure ratio or ICMP loss of summed slots, whichever is higher. */
function lossOf(w: WindowTotals): number {
  return Math.max((w.count - w.ok) / w.count, w.lossW > 0 ? w.lossSum / w.lossW : 0);
}

/** The live matrix. Not thread-safe, not async: one batch at a time, synchronously. */
export class PathMatrix {
  readonly options: PathMatrixOptions;
  private readonly slots: number;
  private readonly slotMs: number;
  private readonly describe: NonNullable<PathMatrixOptions['describeTarget']>;
  /** agent name → target → path: two levels so a lookup builds no key string. */
  private readonly byAgent = new Map<string, Map<string, PathRuntime>>();
  private readonly liveness = new Map<string, AgentEntry>();
  /** agent name → the agentId that holds it now (a reinstalled agent gets a new id). */
  private readonly nameToId = new Map<string, string>();
  private pathCount = 0;
  private readonly totals: WindowTotals = {
    count: 0,
    ok: 0,
    p50Sum: 0,
    latW: 0,
    p99Max: 0,
    lossSum: 0,
    lossW: 0,
    periods: 0,
    slow: 0,
    failures: new Uint32Array(classCount),
  };
  // Per-apply context, kept in fields so the inner loops pass no objects around.
  private readonly journalData = new Journal();
  private readonly spare: PathRuntime[] = [];
  /** Set while a batch is applied and not yet committed or rolled back. */
  private journal: Journal | undefined;
  private epoch = 0;
  private transitions: Transition[] = [];
  /** Settle signals of the open apply; undefined until the first (most batches have none). */
  private signals: SettleSignal[] | undefined;
  private batchSeq = 0;
  private emit = true;
  /**
   * Whether the batch being applied changed what a path means to the localiser — its
   * state, last class or state start, or a degraded path's ratios — beyond its counters.
   */
  protected meaningChanged = false;

  constructor(options: Partial<PathMatrixOptions> = {}) {
    const o = { ...defaultPathMatrixOptions, ...options };
    if (!Number.isInteger(o.debounce) || o.debounce < 1)
      throw new RangeError('debounce: expected an integer ≥ 1');
    if (!Number.isInteger(o.windowSlots) || o.windowSlots < 1)
      throw new RangeError('windowSlots: expected an integer ≥ 1');
    if (!(o.windowMs >= o.windowSlots)) throw new RangeError('windowMs: expected ≥ windowSlots');
    this.options = Object.freeze(o);
    this.slots = o.windowSlots;
    this.slotMs = Math.max(1, Math.round(o.windowMs / o.windowSlots));
    this.describe = o.describeTarget ?? describePlanTarget;
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
    this.transitions = transitions;
    this.signals = undefined;
    this.batchSeq = batch.seq;
    this.emit = true;
    this.meaningChanged = false;
    let signals: readonly SettleSignal[] = noSignals;
    try {
      this.touchAgent(batch, receivedAtMs, journal, backlog, version);
      this.applyItems(batch.agentId, batch.agent, batch.results, batch.summaries);
      signals = this.signals ?? noSignals;
    } catch (err) {
      this.undo(journal);
      this.release(journal);
      throw err;
    } finally {
      this.transitions = [];
      this.signals = undefined;
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

  /** Agents not heard from for `silentAfterMs` become silent; returns those that just did. */
  markSilent(nowMs: number, silentAfterMs: number): AgentLiveness[] {
    const changed: AgentLiveness[] = [];
    for (const entry of this.liveness.values()) {
      if (entry.state === 'live' && nowMs - entry.lastSeenMs > silentAfterMs) {
        entry.state = 'silent';
        entry.late = entry.behind = false;
        changed.push(entry.snapshot());
      }
    }
    return changed;
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
  ): string[] {
    const changed: string[] = [];
    for (const entry of this.liveness.values()) {
      let late = false;
      if (entry.state === 'live') {
        const overdue = nowMs - Math.max(entry.lastSeenMs, sinceMs) > lateAfterMs;
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
      for (const p of this.byAgent.get(e.agent)?.values() ?? []) paths.push(p.toCheckpoint());
    return { agentId, agent: e.agent, seq: e.acceptedSeq, paths };
  }

  /** The path scalars and the watermarks they reflect, for the store's checkpoint. */
  checkpoint(): MatrixCheckpoint {
    const paths: PathCheckpoint[] = [];
    for (const m of this.byAgent.values()) for (const p of m.values()) paths.push(p.toCheckpoint());
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
      p.loadCheckpoint(c);
    }

    this.emit = false;
    this.transitions = [];
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
        this.batchSeq = b.seq;
        if (b.seq < from) this.fillWindow(b.agentId, b.agent, b.summaries);
        else this.applyItems(b.agentId, b.agent, b.results, b.summaries);
      }
    }
    this.emit = true;
    this.transitions = [];
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
        this.transitions.push(
          agentTransition(entry, 'silent', 'live', receivedAtMs, this.batchSeq),
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
    for (const b of journal.before) this.spare.push(b);
    journal.reset('', '');
    this.journal = undefined;
  }

  private undo(journal: Journal): void {
    for (let k = 0; k < journal.touched.length; k++) {
      journal.touched[k]!.copyFrom(journal.before[k]!);
    }
    for (const p of journal.createdPaths) {
      const m = this.byAgent.get(p.agent);
      if (m?.delete(p.target) === true) this.pathCount--;
      if (m?.size === 0) this.byAgent.delete(p.agent);
    }
    if (journal.agentCreated) this.liveness.delete(journal.agentId);
    if (journal.agentBefore !== undefined) this.liveness.set(journal.agentId, journal.agentBefore);
    if (journal.superseded !== undefined)
      this.liveness.set(journal.superseded.agentId, journal.superseded);
    if (journal.holderBefore === undefined) this.nameToId.delete(journal.agent);
    else this.nameToId.set(journal.agent, journal.holderBefore);
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
        this.takeResult(p, r);
      } else if (s !== undefined) {
        j++;
        const p = this.pathFor(paths, agentId, agent, s.target, s.kind, s.fromMs);
        this.takeSummary(p, s);
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
      const copy = this.spare.pop() ?? new PathRuntime('', '', '', '', nowhere, this.slots, 0);
      copy.copyFrom(p);
      this.journal.touched.push(p);
      this.journal.before.push(copy);
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
      this.slots,
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

  private takeResult(p: PathRuntime, r: ProbeResult): void {
    if (r.startedAtMs > p.lastSeenMs) p.lastSeenMs = r.startedAtMs;
    if (r.seq <= p.lastSeq) return;
    p.fullSinceSummary++;
    let confirmed = false;
    const c = r.confirm;
    if (c !== undefined && c.index <= c.of) {
      if (c.index === 0) {
        // A new trigger replaces a burst still open on the path.
        if (p.burstOf > 0) this.signal('close', p);
        p.burstOf = c.of;
        p.burstClass = r.class;
        p.burstSeen = 0;
        this.signal('open', p);
      } else if (p.burstOf === c.of && r.class === p.burstClass) {
        p.burstSeen |= 1 << c.index;
        if (p.burstSeen === fullBurst(c.of)) {
          confirmed = true;
          p.burstOf = 0;
          this.signal('close', p);
        }
      }
    }
    this.observe(p, r.class, 1, r.startedAtMs, r.seq, confirmed);
  }

  private signal(type: SettleSignal['type'], p: PathRuntime): void {
    if (!this.emit) return;
    (this.signals ??= []).push({
      type,
      key: `${p.agent}\u0000${p.target}`,
      agent: p.agent,
      component: p.component,
    });
  }

  private takeSummary(p: PathRuntime, s: PathSummary): void {
    if (s.toMs > p.lastSeenMs) p.lastSeenMs = s.toMs;
    this.addToWindow(p, s);
    let periodFailed = false;
    for (const k in s.failures) {
      if ((s.failures as Record<string, number>)[k]! > 0) {
        periodFailed = true;
        break;
      }
    }
    if (s.lastSeq > p.lastSeq && s.count > 0) {
      if (!periodFailed) {
        const unseen = Math.max(1, s.ok - p.fullSinceSummary);
        this.observe(p, 'ok', unseen, s.fromMs, s.lastSeq);
      } else this.observe(p, s.lastClass, 1, s.toMs, s.lastSeq);
    }
    p.fullSinceSummary = 0;
    this.judgeDegraded(p, s.toMs, s.lastSeq);
    // A degraded path's loss and failure ratios move with every summary.
    if (p.state === 'degraded') this.meaningChanged = true;
    // A slow period does not teach the baseline either: slow is what it is there to see.
    if (
      p.state === 'ok' &&
      !periodFailed &&
      s.latencyMs !== undefined &&
      s.ok > 0 &&
      !this.slowAgainstBaseline(p, s.latencyMs.p50)
    )
      this.learnBaseline(p, s.latencyMs.p50, s.toMs - s.fromMs);
  }

  /**
   * A path that is ok or degraded has failed `debounce` times in a row: failing — or, while
   * it flaps (see `flapHalfLifeMs`), degraded until the fall outlasts `flapMaxSuppressMs`.
   */
  private fall(
    p: PathRuntime,
    cls: FailureClass,
    n: number,
    atMs: number,
    seq: number,
    debounce: number,
  ): void {
    const o = this.options;
    const newFall = p.consecutiveFailures - n < debounce;
    // A path that stayed up `flapStableMs` since its last fall is not flapping: a new fall is
    // a new fault, seen at once.
    const sinceLastMs = Math.max(0, atMs - p.flapAtMs);
    const penalty =
      p.flapPenalty > 0 && sinceLastMs < o.flapStableMs
        ? p.flapPenalty * 2 ** (-sinceLastMs / o.flapHalfLifeMs)
        : 0;
    if (newFall && failureLayer[cls] === 'network') {
      // At most 3: a path that flapped for an hour is not suppressed for hours after.
      p.flapPenalty = Math.min(3, penalty + 1);
      p.flapAtMs = Math.max(atMs, p.flapAtMs);
    }
    // Only what loss can read as: a refusal or an error is the far end's own answer.
    const flapping =
      failureLayer[cls] !== 'network'
        ? false
        : newFall
          ? penalty >= o.flapSuppressAt
          : p.state === 'degraded' && p.stateClass !== 'ok';
    if (flapping && atMs - p.runStartMs < o.flapMaxSuppressMs) {
      if (p.state === 'ok' || p.stateClass !== cls)
        this.transition(p, 'degraded', cls, p.runStartMs, seq);
      return;
    }
    this.transition(p, 'failing', cls, p.runStartMs, seq);
  }

  /** `confirmed`: this result completed a burst that agrees with its trigger (see the file comment). */
  private observe(
    p: PathRuntime,
    cls: FailureClass,
    n: number,
    atMs: number,
    seq: number,
    confirmed = false,
  ): void {
    const debounce = confirmed ? 1 : this.options.debounce;
    if (p.burstOf > 0 && cls !== p.burstClass) {
      // One probe that disagrees with the trigger: the change is not confirmed.
      p.burstOf = 0;
      this.signal('close', p);
    }
    if (cls === 'ok') {
      if (p.consecutiveSuccesses === 0) p.runStartMs = atMs;
      p.consecutiveSuccesses += n;
      p.consecutiveFailures = 0;
      p.classRun = 0;
    } else {
      if (p.consecutiveFailures === 0) p.runStartMs = atMs;
      if (cls !== p.lastClass) {
        p.classRun = 0;
        p.classRunStartMs = atMs;
      }
      p.classRun += n;
      p.consecutiveFailures += n;
      p.consecutiveSuccesses = 0;
    }
    if (cls !== p.lastClass) {
      this.meaningChanged = true;
      this.signal('change', p);
    }
    p.lastClass = cls;
    p.lastSeq = seq;
    switch (p.state) {
      case 'unknown':
        if (cls === 'ok') this.transition(p, 'ok', cls, p.runStartMs, seq);
        else if (p.consecutiveFailures >= debounce)
          this.transition(p, 'failing', cls, p.runStartMs, seq);
        break;
      case 'ok':
      case 'degraded':
        if (cls !== 'ok' && p.consecutiveFailures >= debounce)
          this.fall(p, cls, n, atMs, seq, debounce);
        break;
      case 'failing':
        if (cls === 'ok') {
          if (p.consecutiveSuccesses >= debounce) this.transition(p, 'ok', cls, p.runStartMs, seq);
        } else if (cls !== p.stateClass && p.classRun >= debounce) {
          this.transition(p, 'failing', cls, p.classRunStartMs, seq);
        }
        break;
    }
  }

  private transition(
    p: PathRuntime,
    to: PathState['state'],
    toClass: FailureClass,
    atMs: number,
    seq: number | null,
  ): void {
    if (this.emit) {
      this.transitions.push({
        agentId: p.agentId,
        agent: p.agent,
        target: p.target,
        kind: p.kind,
        fromClass: p.state === 'unknown' ? null : p.stateClass,
        toClass,
        fromState: p.state,
        toState: to,
        atMs,
        resultSeq: seq,
        batchSeq: this.batchSeq,
      });
    }
    if (to === 'ok' && (p.state === 'failing' || p.state === 'unknown')) p.healthySinceMs = atMs;
    this.meaningChanged = true;
    this.signal('change', p);
    // A failure that changes class stays one failure: it keeps the class it began with.
    if (to !== 'failing' || p.state !== 'failing') p.firstClass = toClass;
    p.state = to;
    p.stateClass = toClass;
    p.sinceMs = atMs;
  }

  private addToWindow(p: PathRuntime, s: PathSummary): void {
    const idx = Math.floor(Math.max(s.fromMs, s.toMs - 1) / this.slotMs);
    if (idx > p.newestSlot) p.newestSlot = idx;
    if (idx <= p.newestSlot - this.slots) return;
    const slot = idx % this.slots;
    const base = slot * STRIDE;
    const w = p.win;
    const held = w[base + SLOT_IDX]!;
    if (held !== idx) {
      if (held > idx) return;
      w[base + SLOT_IDX] = idx;
      for (let k = 1; k < STRIDE; k++) w[base + k] = 0;
      const f = p.winFail?.[slot];
      if (f !== undefined) f.fill(0);
    }
    w[base + SLOT_COUNT]! += s.count;
    w[base + SLOT_OK]! += s.ok;
    const lat = s.latencyMs;
    if (lat !== undefined) {
      const weight = Math.max(1, s.ok);
      w[base + SLOT_P50_SUM]! += lat.p50 * weight;
      w[base + SLOT_LAT_W]! += weight;
      if (lat.p99 > w[base + SLOT_P99_MAX]!) w[base + SLOT_P99_MAX] = lat.p99;
      w[base + SLOT_PERIODS]! += 1;
      if (this.slowAgainstBaseline(p, lat.p50)) w[base + SLOT_SLOW]! += 1;
    }
    if (s.lossRatio !== undefined) {
      const weight = s.echoes !== undefined && s.echoes > 0 ? s.echoes : Math.max(1, s.count);
      w[base + SLOT_LOSS_SUM]! += s.lossRatio * weight;
      w[base + SLOT_LOSS_W]! += weight;
    }
    for (const k in s.failures) {
      const n = (s.failures as Record<string, number>)[k]!;
      const ci = classIndex[k];
      if (ci === undefined || n <= 0) continue;
      p.winFail ??= new Array<Uint32Array | undefined>(this.slots).fill(undefined);
      let f = p.winFail[slot];
      if (f === undefined) {
        f = new Uint32Array(classCount);
        p.winFail[slot] = f;
      }
      f[ci]! += n;
    }
  }

  /** Window-only: the summaries before a restore's replay point fill the window, nothing else. */
  private fillWindow(agentId: string, agent: string, summaries: readonly PathSummary[]): void {
    const paths = this.byAgent.get(agent);
    if (paths === undefined) return;
    for (const s of summaries) {
      const p = paths.get(s.target);
      if (p === undefined || p.agentId !== agentId) continue;
      this.addToWindow(p, s);
    }
  }

  /** Sums the window's slots that start at or after `fromMs` into `this.totals`. */
  private sumWindow(p: PathRuntime, fromMs: number, withFailures: boolean): WindowTotals {
    const t = this.totals;
    t.count = t.ok = t.p50Sum = t.latW = t.p99Max = t.lossSum = t.lossW = t.periods = t.slow = 0;
    if (withFailures) t.failures.fill(0);
    const w = p.win;
    const oldest = p.newestSlot - this.slots;
    for (let slot = 0; slot < this.slots; slot++) {
      const base = slot * STRIDE;
      const idx = w[base + SLOT_IDX]!;
      if (idx < 0 || idx <= oldest || idx * this.slotMs < fromMs) continue;
      t.count += w[base + SLOT_COUNT]!;
      t.ok += w[base + SLOT_OK]!;
      t.p50Sum += w[base + SLOT_P50_SUM]!;
      t.latW += w[base + SLOT_LAT_W]!;
      if (w[base + SLOT_P99_MAX]! > t.p99Max) t.p99Max = w[base + SLOT_P99_MAX]!;
      t.lossSum += w[base + SLOT_LOSS_SUM]!;
      t.lossW += w[base + SLOT_LOSS_W]!;
      t.periods += w[base + SLOT_PERIODS]!;
      t.slow += w[base + SLOT_SLOW]!;
      const f = withFailures ? p.winFail?.[slot] : undefined;
      if (f !== undefined) for (let c = 0; c < classCount; c++) t.failures[c]! += f[c]!;
    }
    return t;
  }

  private judgeDegraded(p: PathRuntime, atMs: number, seq: number): void {
    // During a run of failures the verdict waits: it ends in `failing` or in a success.
    if ((p.state !== 'ok' && p.state !== 'degraded') || p.consecutiveFailures > 0) return;
    const o = this.options;
    const t = this.sumWindow(p, p.healthySinceMs, false);
    if (t.count < o.degradedMinProbes) return;
    let bad = lossOf(t) >= o.degradedLossRatio && this.significantLoss(t);
    if (!bad) bad = this.significantlySlow(t.slow, t.periods);
    if (!bad && (t.ok < t.count || t.lossSum > 0 || t.slow > 0)) {
      // Half the echoes lost from now on (30 % loss each way) takes ~6 s to reach 10 % of a
      // 30 s window of healthy history; the recent slots say it in ~3 s: the newest alone
      // first, then growing back to `degradedRecentMs`, so the healthy slots before a change
      // do not dilute it. (The sums share `this.totals`: `t` is not read after this.)
      const oldestMs = Math.max(p.healthySinceMs, p.newestSlot * this.slotMs - o.degradedRecentMs);
      for (let back = 0; !bad && back <= this.slots; back++) {
        const fromMs = Math.max(oldestMs, (p.newestSlot - back) * this.slotMs);
        const r = this.sumWindow(p, fromMs, false);
        bad =
          // The sample: probes, or the echoes they sent.
          (Math.max(r.count, r.lossW) >= o.degradedMinProbes &&
            lossOf(r) >= o.degradedRecentLossRatio &&
            this.significantLoss(r)) ||
          this.significantlySlow(r.slow, r.periods);
        if (fromMs <= oldestMs) break;
      }
    }
    if (bad && p.state === 'ok') this.transition(p, 'degraded', p.lastClass, atMs, seq);
    else if (!bad && p.state === 'degraded') this.transition(p, 'ok', p.lastClass, atMs, seq);
  }

  /**
   * Whether the window's loss is more than background loss would give (see options): failed
   * probes, or lost ICMP echoes (of the echoes sent, as the agent's summaries say; one per
   * probe from agents that do not), tested against the tolerable share. A ratio alone paged
   * on healthy paths: 3 echoes of 21 lost is 14 %, and a few of a hundred paths see that.
   */
  private significantLoss(w: WindowTotals): boolean {
    const o = this.options;
    const failed = lossIsSignificant(
      w.count - w.ok,
      w.count,
      o.tolerableLossRatio,
      o.degradedLossAlpha,
    );
    return (
      failed ||
      (w.lossW > 0 &&
        lossIsSignificant(w.lossSum, w.lossW, o.tolerableLossRatio, o.degradedLossAlpha))
    );
  }

  /**
   * Whether a period's p50 is well above the path's baseline (`degradedLatencyFactor` times
   * it and `degradedLatencyMinMs` over it); never before the baseline is trusted.
   */
  private slowAgainstBaseline(p: PathRuntime, p50: number): boolean {
    const o = this.options;
    if (p.baselineSamples < o.baselineWarmupPeriods || Number.isNaN(p.baselineMs)) return false;
    return (
      p50 > p.baselineMs * o.degradedLatencyFactor && p50 - p.baselineMs >= o.degradedLatencyMinMs
    );
  }

  /**
   * Latency verdict: at least half the periods slow, and more of them than chance gives at
   * `tolerableSlowRatio` (a segment lost on a healthy path delays one probe by the kernel's
   * retransmission timeout, ≥ 200 ms: a period's p50 of one probe is that probe). A mean of
   * the periods' p50s paged on two or three such retransmissions in a 30 s window.
   */
  private significantlySlow(slow: number, periods: number): boolean {
    const o = this.options;
    return (
      periods > 0 &&
      2 * slow >= periods &&
      lossIsSignificant(slow, periods, o.tolerableSlowRatio, o.degradedLossAlpha)
    );
  }

  private learnBaseline(p: PathRuntime, p50Ms: number, periodMs: number): void {
    const n = p.baselineSamples;
    if (n < this.options.baselineWarmupPeriods || Number.isNaN(p.baselineMs)) {
      p.baselineMs =
        n === 0 || Number.isNaN(p.baselineMs) ? p50Ms : (p.baselineMs * n + p50Ms) / (n + 1);
    } else {
      const alpha = 1 - Math.exp(-Math.max(1, periodMs) / this.options.baselineTauMs);
      p.baselineMs += alpha * (p50Ms - p.baselineMs);
    }
    if (n < Number.MAX_SAFE_INTEGER) p.baselineSamples = n + 1;
  }

  private view(p: PathRuntime): PathState {
    const t = this.sumWindow(p, 0, true);
    const failures: Partial<Record<FailureClass, number>> = {};
    for (let c = 0; c < classCount; c++) {
      const n = t.failures[c]!;
      if (n > 0) failures[failureClasses[c]!] = n;
    }
    const state: {
      -readonly [K in keyof PathState]: PathState[K];
    } = {
      agent: p.agent,
      target: p.target,
      component: p.component,
      kind: p.kind,
      state: p.state,
      lastClass: p.lastClass,
      consecutiveFailures: p.consecutiveFailures,
      consecutiveSuccesses: p.consecutiveSuccesses,
      failureRatio: t.count > 0 ? (t.count - t.ok) / t.count : 0,
      failures,
      probes: t.count,
      sinceMs: p.sinceMs,
      lastSeenMs: p.lastSeenMs,
    };
    if (p.service !== undefined) state.service = p.service;
    if (p.state === 'failing' && p.firstClass !== p.stateClass) state.firstClass = p.firstClass;
    // A recent fall at the network layer, for the localiser's reading of unstable pairs.
    if (p.flapPenalty > 0 && p.lastSeenMs - p.flapAtMs < this.options.flapStableMs) {
      state.fellAtMs = p.flapAtMs;
      if (p.flapPenalty > 1 + 1e-9) state.fellAgain = true;
    }
    if (t.lossW > 0) state.lossRatio = t.lossSum / t.lossW;
    if (t.latW > 0) {
      const p50 = t.p50Sum / t.latW;
      state.latencyMs = {
        baseline: Number.isNaN(p.baselineMs) ? p50 : p.baselineMs,
        p50,
        p99: t.p99Max,
      };
    }
    return state;
  }
}

function agentTransition(
  entry: AgentLiveness,
  from: 'live' | 'silent',
  to: 'live' | 'silent',
  atMs: number,
  batchSeq = entry.acceptedSeq,
): Transition {
  return {
    agentId: entry.agentId,
    agent: entry.agent,
    target: '',
    kind: 'agent',
    fromClass: null,
    toClass: null,
    fromState: from,
    toState: to,
    atMs,
    resultSeq: null,
    batchSeq,
  };
}

/** The agent's transition for a liveness change reported by `markSilent`. */
export function silentTransition(agent: AgentLiveness): Transition {
  return agentTransition(agent, 'live', 'silent', agent.lastSeenMs);
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
