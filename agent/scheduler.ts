import { sharedController } from '../lib/abort.js';
import type { CronTime } from 'cron';
import { ConfigError, FaultlineError } from '../lib/errors.js';
import { cronLibrary } from '../lib/lazy-modules.js';
import { LagHistogram } from './lag-histogram.js';

/** One scheduled unit of work: in the agent, one target. */
export interface Job {
  /** Stable identity (the target name): the phase and the no-overlap rule hang on it. */
  readonly id: string;
  /** Run every `intervalMs`, at a phase derived from `id`. Exactly one of this or `cron`. */
  readonly intervalMs?: number;
  /** Run at the times of a cron expression (5 fields, or 6 with seconds first), local time. */
  readonly cron?: string;
  /** The run's own limit; must be below `intervalMs`. The run enforces it, not the scheduler. */
  readonly timeoutMs: number;
  /**
   * One round. Nobody awaits it but the scheduler; a rejection is counted and reported to
   * `onError`. `signal` aborts only when `stop()` runs out of grace.
   */
  run(signal: AbortSignal): Promise<void>;
}

/** Options of a {@link Scheduler}. */
export interface SchedulerOptions {
  /** Runs allowed at once; due jobs beyond it wait FIFO (counted as `deferred`, and as lag). */
  readonly maxInFlight: number;
  /** Mixed into every phase hash (e.g. the agent name), so a fleet does not fire in step. */
  readonly phaseSeed?: string;
  /**
   * Interval jobs due within this many ms of a wake-up start in it, up to that much early
   * (at most a quarter of their interval). A wake-up costs ~40 µs of CPU, so at 1,000 jobs
   * a second this is most of the scheduler's cost. Cron jobs never start early. Default 5.
   */
  readonly batchWindowMs?: number;
  /** Every start: actual − planned start; a batched early start counts as 0. */
  onLag?(jobId: string, lagMs: number): void;
  /** A tick dropped because the job's previous round was still running or waiting. */
  onSkip?(jobId: string): void;
  /** A run threw or rejected (or a callback above threw). */
  onError?(jobId: string, err: unknown): void;
  /** Wall clock in epoch ms; injectable for tests. Default `Date.now`. */
  now?(): number;
}

/** Counters since construction; `inFlight`/`queued`/`jobs` are current values. */
export interface SchedulerStats {
  /** Jobs in the schedule. */
  readonly jobs: number;
  /** Runs started. */
  readonly started: number;
  /** Runs settled (resolved or rejected). */
  readonly completed: number;
  /** Runs that threw or rejected. */
  readonly failed: number;
  /** Ticks dropped because the job's previous round was still running or waiting. */
  readonly skipped: number;
  /** Starts that waited for an in-flight slot. */
  readonly deferred: number;
  /**
   * Ticks that passed while the scheduler itself was late (event loop blocked, clock
   * jumped forward): exact for interval jobs, at least one per late cron fire.
   */
  readonly missed: number;
  /** Runs going now. */
  readonly inFlight: number;
  /** Jobs waiting for an in-flight slot now. */
  readonly queued: number;
  /** Starts measured for lag. */
  readonly lagCount: number;
  /** Lag percentiles from a fixed histogram: 1 ms resolution below 100 ms, ×2 steps above. */
  readonly lagP50Ms: number;
  readonly lagP90Ms: number;
  readonly lagP99Ms: number;
  /** Exact. */
  readonly lagMaxMs: number;
}

const defaultBatchWindowMs = 5;
// Long timers are re-armed periodically: it bounds Node's 24.8-day timer limit and lets a
// wall-clock step back be noticed.
const maxTimerMs = 60_000;
// The timer fired but the wall clock says we are this far before the time we armed for:
// the clock was stepped back, so re-plan instead of sleeping through the step.
const clockStepBackMs = 1_000;

/**
 * Where in `[0, intervalMs)` a job's ticks fall: FNV-1a of seed and id with a murmur3
 * finaliser (FNV alone clusters on ids that differ only in the last digits). Stable across
 * restarts and reloads, so a target is probed at the same offset every time.
 */
export function phaseMs(id: string, intervalMs: number, seed = ''): number {
  let h = 0x811c9dc5;
  const key = seed === '' ? id : `${seed}\u0000${id}`;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) % intervalMs;
}

interface JobState {
  job: Job;
  readonly id: string;
  /** Interval jobs: offset of the grid `phase + k·interval` (epoch ms). */
  phaseMs: number;
  /** Cron jobs: the parsed expression. */
  cronTime: CronTime | undefined;
  /** How early a wake-up may start it: its share of the batch window. */
  earlyMs: number;
  /** Next planned start (epoch ms); the heap key. */
  dueMs: number;
  /** Position in the heap, -1 when not in it. */
  heapIndex: number;
  /** Tie-break for equal due times, so order is deterministic. */
  readonly order: number;
  running: boolean;
  queued: boolean;
  /** Planned start of the queued round, for its lag. */
  queuedPlannedMs: number;
  removed: boolean;
  /** Made once per job, so a run costs no closures. */
  readonly onDone: () => void;
  readonly onFail: (err: unknown) => void;
}

/**
 * Runs jobs on their own schedule with one timer for the whole set: a binary min-heap of
 * due times, woken for the earliest. Planned times sit on a grid anchored to the epoch
 * (`phase + k·interval`), never drifting from actual starts; a late scheduler skips the
 * missed ticks rather than bursting to catch up. A job whose previous round is still
 * running (or waiting for a slot) is skipped, never run twice at once.
 */
export class Scheduler {
  private readonly maxInFlight: number;
  private readonly phaseSeed: string;
  private readonly batchWindowMs: number;
  private readonly now: () => number;
  private readonly onLag: ((jobId: string, lagMs: number) => void) | undefined;
  private readonly onSkip: ((jobId: string) => void) | undefined;
  private readonly onError: ((jobId: string, err: unknown) => void) | undefined;

  private readonly states = new Map<string, JobState>();
  /** Removed while running: kept until the run ends so a re-added id cannot overlap it. */
  private readonly retired = new Map<string, JobState>();
  private readonly heap: JobState[] = [];
  private queue: JobState[] = [];
  private queueHead = 0;
  private nextOrder = 0;

  private started = false;
  private controller = sharedController();
  private timer: NodeJS.Timeout | undefined;
  private armedDueMs = Number.NaN;
  /** Wall time the pending timer should fire at. */
  private armedFireMs = 0;
  private idleWaiters: (() => void)[] = [];

  private readonly lag = new LagHistogram();
  private counts = { started: 0, completed: 0, failed: 0, skipped: 0, deferred: 0, missed: 0 };
  private inFlight = 0;

  constructor(opts: SchedulerOptions) {
    if (!Number.isInteger(opts.maxInFlight) || opts.maxInFlight < 1) {
      throw new FaultlineError(
        'FL_ERR_INTERNAL',
        `maxInFlight must be a positive integer (actual: ${opts.maxInFlight})`,
      );
    }
    this.maxInFlight = opts.maxInFlight;
    this.phaseSeed = opts.phaseSeed ?? '';
    this.batchWindowMs = opts.batchWindowMs ?? defaultBatchWindowMs;
    if (!(this.batchWindowMs >= 0)) {
      throw new FaultlineError('FL_ERR_INTERNAL', `batchWindowMs must be >= 0`);
    }
    const now = opts.now?.bind(opts);
    this.now = now ?? (() => Date.now());
    this.onLag = opts.onLag?.bind(opts);
    this.onSkip = opts.onSkip?.bind(opts);
    this.onError = opts.onError?.bind(opts);
  }

  /**
   * Replaces the job set (config reload). A job whose id and schedule are unchanged keeps
   * its next planned time (and takes the new `run` from its next round); a changed
   * schedule is re-planned; a removed job is never started again, but a running round
   * finishes (its signal is not aborted); a new job starts at its phase. Throws, changing
   * nothing, on an invalid job.
   */
  setJobs(jobs: readonly Job[]): void {
    const incoming = new Map<string, { job: Job; cronTime: CronTime | undefined }>();
    for (const job of jobs) {
      if (incoming.has(job.id)) {
        throw new FaultlineError('FL_ERR_INTERNAL', `duplicate job id "${job.id}"`);
      }
      incoming.set(job.id, { job, cronTime: this.validate(job) });
    }
    for (const [id, state] of this.states) {
      if (!incoming.has(id)) this.remove(state);
    }
    const now = this.now();
    for (const [id, { job, cronTime }] of incoming) {
      let state = this.states.get(id);
      if (state !== undefined && sameSchedule(state.job, job)) {
        state.job = job;
        continue;
      }
      if (state === undefined) {
        state = this.retired.get(id) ?? this.newState(job);
        this.retired.delete(id);
        state.removed = false;
        this.states.set(id, state);
      }
      state.job = job;
      state.cronTime = cronTime;
      state.phaseMs =
        job.intervalMs === undefined ? 0 : phaseMs(id, job.intervalMs, this.phaseSeed);
      state.earlyMs =
        job.intervalMs === undefined ? 0 : Math.min(this.batchWindowMs, job.intervalMs / 4);
      if (this.started) {
        state.dueMs = this.firstDue(state, now);
        if (state.heapIndex < 0) this.heapPush(state);
        else this.heapFix(state);
      }
    }
    if (this.started) this.arm(now);
  }

  /** Starts scheduling: every job at its next planned time from now. No-op when started. */
  start(): void {
    if (this.started) return;
    this.started = true;
    if (this.controller.signal.aborted) this.controller = sharedController();
    const now = this.now();
    for (const state of this.states.values()) {
      state.dueMs = this.firstDue(state, now);
      this.heapPush(state);
    }
    this.arm(now);
  }

  /**
   * Stops scheduling at once (waiting rounds are dropped), waits up to `graceMs` for
   * running rounds, then aborts their signal. Resolves with how many were still running;
   * leaves no timer behind.
   */
  async stop(graceMs: number): Promise<{ unfinished: number }> {
    this.started = false;
    this.disarm();
    for (const state of this.heap) state.heapIndex = -1;
    this.heap.length = 0;
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i]!.queued = false;
    this.queue = [];
    this.queueHead = 0;
    if (this.inFlight > 0) {
      let grace: NodeJS.Timeout | undefined;
      let waiter: (() => void) | undefined;
      await new Promise<void>((resolve) => {
        waiter = resolve;
        this.idleWaiters.push(resolve);
        grace = setTimeout(resolve, graceMs);
      });
      clearTimeout(grace);
      this.idleWaiters = this.idleWaiters.filter((w) => w !== waiter);
    }
    const unfinished = this.inFlight;
    if (unfinished > 0) this.controller.abort();
    return { unfinished };
  }

  /** A snapshot of the counters and lag percentiles. */
  stats(): SchedulerStats {
    return {
      jobs: this.states.size,
      ...this.counts,
      inFlight: this.inFlight,
      queued: this.queue.length - this.queueHead,
      lagCount: this.lag.count,
      lagP50Ms: this.lag.quantile(0.5),
      lagP90Ms: this.lag.quantile(0.9),
      lagP99Ms: this.lag.quantile(0.99),
      lagMaxMs: this.lag.maxMs,
    };
  }

  private validate(job: Job): CronTime | undefined {
    const { id, intervalMs, cron, timeoutMs } = job;
    if ((intervalMs === undefined) === (cron === undefined)) {
      throw new FaultlineError('FL_ERR_INTERNAL', `job "${id}": exactly one of intervalMs or cron`);
    }
    if (!(timeoutMs > 0)) {
      throw new FaultlineError('FL_ERR_INTERNAL', `job "${id}": timeoutMs must be > 0`);
    }
    if (intervalMs !== undefined) {
      if (!(intervalMs >= 1 && intervalMs > timeoutMs && Number.isFinite(intervalMs))) {
        throw new FaultlineError(
          'FL_ERR_INTERNAL',
          `job "${id}": intervalMs (${intervalMs}) must be finite and above timeoutMs (${timeoutMs})`,
        );
      }
      return undefined;
    }
    try {
      return new (cronLibrary().CronTime)(cron!);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ConfigError(`job "${id}": invalid cron expression "${cron}": ${why}`, {
        cause: err,
      });
    }
  }

  private newState(job: Job): JobState {
    const state: JobState = {
      job,
      id: job.id,
      phaseMs: 0,
      cronTime: undefined,
      earlyMs: 0,
      dueMs: 0,
      heapIndex: -1,
      order: this.nextOrder++,
      running: false,
      queued: false,
      queuedPlannedMs: 0,
      removed: false,
      onDone: () => this.finish(state, false, undefined),
      onFail: (err: unknown) => this.finish(state, true, err),
    };
    return state;
  }

  private remove(state: JobState): void {
    this.states.delete(state.id);
    state.removed = true;
    state.queued = false; // its queue entry is skipped when reached
    if (state.heapIndex >= 0) this.heapRemove(state);
    if (state.running) this.retired.set(state.id, state);
  }

  /** The first planned time at or after `now`. */
  private firstDue(state: JobState, now: number): number {
    if (state.cronTime !== undefined) return cronAfter(state.cronTime, now - 1);
    const interval = state.job.intervalMs!;
    return state.phaseMs + Math.ceil((now - state.phaseMs) / interval) * interval;
  }

  /** The planned time after `planned`, skipping (and counting) ticks already behind `now`. */
  private nextDue(state: JobState, planned: number, now: number): number {
    if (state.cronTime !== undefined) {
      const next = cronAfter(state.cronTime, planned);
      if (next > now) return next;
      this.counts.missed++;
      return cronAfter(state.cronTime, now);
    }
    const interval = state.job.intervalMs!;
    // Beyond the early window too, or this same wake-up would take it again.
    const horizon = now + state.earlyMs;
    const next = planned + interval;
    if (next > horizon) return next;
    const k = Math.floor((horizon - state.phaseMs) / interval) + 1;
    const caughtUp = state.phaseMs + k * interval;
    this.counts.missed += Math.max(0, Math.round((caughtUp - planned) / interval) - 1);
    return caughtUp;
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.armedDueMs = Number.NaN;
    if (!this.started) return;
    let now = this.now();
    if (now < this.armedFireMs - clockStepBackMs) this.replan(now);
    // Everything due by now, and interval jobs due within their early window: one wake-up
    // for the batch. A cron job on top that is not yet due ends the batch; all behind it
    // are due later still.
    for (
      let top = this.heap[0];
      top !== undefined && top.dueMs <= now + top.earlyMs;
      top = this.heap[0]
    ) {
      const planned = top.dueMs;
      top.dueMs = this.nextDue(top, planned, now);
      this.heapFix(top);
      this.tick(top, planned);
    }
    now = this.now();
    this.arm(now);
  };

  private tick(state: JobState, plannedMs: number): void {
    if (state.running || state.queued) {
      this.counts.skipped++;
      this.emitSkip(state.id);
      return;
    }
    if (this.inFlight >= this.maxInFlight) {
      state.queued = true;
      state.queuedPlannedMs = plannedMs;
      this.queue.push(state);
      this.counts.deferred++;
      return;
    }
    this.launch(state, plannedMs);
  }

  private launch(state: JobState, plannedMs: number): void {
    const lagMs = Math.max(0, this.now() - plannedMs);
    state.running = true;
    this.inFlight++;
    this.counts.started++;
    try {
      state.job.run(this.controller.signal).then(state.onDone, state.onFail);
    } catch (err) {
      this.finish(state, true, err);
    }
    // After the run is on its way, so a slow callback delays nobody's start but the next.
    this.lag.record(lagMs);
    this.emitLag(state.id, lagMs);
  }

  private finish(state: JobState, failed: boolean, err: unknown): void {
    state.running = false;
    this.inFlight--;
    this.counts.completed++;
    if (failed) {
      this.counts.failed++;
      this.emitError(state.id, err);
    }
    if (state.removed && this.retired.get(state.id) === state) this.retired.delete(state.id);
    if (this.inFlight === 0) for (const resolve of this.idleWaiters) resolve();
    this.drain();
  }

  /** Starts queued rounds, oldest first, while slots are free. */
  private drain(): void {
    while (this.started && this.inFlight < this.maxInFlight && this.queueHead < this.queue.length) {
      const state = this.queue[this.queueHead++]!;
      if (!state.queued) continue;
      state.queued = false;
      this.launch(state, state.queuedPlannedMs);
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  // A throwing callback must not break the timer loop: it is reported to onError, whose
  // own throw is dropped (nothing is left to tell).

  private emitLag(jobId: string, lagMs: number): void {
    try {
      this.onLag?.(jobId, lagMs);
    } catch (err) {
      this.emitError(jobId, err);
    }
  }

  private emitSkip(jobId: string): void {
    try {
      this.onSkip?.(jobId);
    } catch (err) {
      this.emitError(jobId, err);
    }
  }

  private emitError(jobId: string, err: unknown): void {
    try {
      this.onError?.(jobId, err);
    } catch {
      // see above
    }
  }

  /** The wall clock went back: plan every job afresh from now rather than wait out the step. */
  private replan(now: number): void {
    for (const state of this.heap) state.dueMs = this.firstDue(state, now);
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private arm(now: number): void {
    const top = this.heap[0];
    if (top === undefined || !this.started) {
      this.disarm();
      return;
    }
    if (this.timer !== undefined && this.armedDueMs === top.dueMs) return;
    this.disarm();
    const delayMs = Math.min(maxTimerMs, Math.max(0, Math.ceil(top.dueMs - now)));
    this.armedDueMs = top.dueMs;
    this.armedFireMs = now + delayMs;
    this.timer = setTimeout(this.onTimer, delayMs);
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedDueMs = Number.NaN;
  }

  // Binary min-heap on (dueMs, order), each state knowing its index for O(log n) updates.

  private heapPush(state: JobState): void {
    state.heapIndex = this.heap.length;
    this.heap.push(state);
    this.siftUp(state.heapIndex);
  }

  private heapRemove(state: JobState): void {
    const i = state.heapIndex;
    const last = this.heap.pop()!;
    state.heapIndex = -1;
    if (last === state) return;
    this.heap[i] = last;
    last.heapIndex = i;
    this.heapFix(last);
  }

  private heapFix(state: JobState): void {
    this.siftDown(this.siftUp(state.heapIndex));
  }

  private siftUp(index: number): number {
    const heap = this.heap;
    const item = heap[index]!;
    let i = index;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!before(item, parent)) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = parentIndex;
    }
    heap[i] = item;
    item.heapIndex = i;
    return i;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[index]!;
    let i = index;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && before(heap[right]!, heap[left]!) ? right : left;
      const c = heap[child]!;
      if (!before(c, item)) break;
      heap[i] = c;
      c.heapIndex = i;
      i = child;
    }
    heap[i] = item;
    item.heapIndex = i;
  }
}

function before(a: JobState, b: JobState): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.order < b.order);
}

function sameSchedule(a: Job, b: Job): boolean {
  return a.intervalMs === b.intervalMs && a.cron === b.cron;
}

/** The first time of `cronTime` strictly after `afterMs`'s whole second. */
function cronAfter(cronTime: CronTime, afterMs: number): number {
  return cronTime.getNextDateFrom(new Date(afterMs)).toMillis();
}
