import type { Meter } from '@opentelemetry/api';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import type { ReportBatch } from '../wire/report.js';
import { silentTransition } from './paths/checkpoint.js';
import type { DeafMs, PathMatrix } from './paths/matrix.js';
import type { Credential } from './auth.js';
import type { Store } from './store.js';
import type { AgentLiveness, IngestOutcome, ReportBody } from './types.js';

/**
 * Ingest ties the store and the path matrix together: a batch is stored and applied
 * atomically, or neither.
 *
 * Order: the store's watermark is asked first (a retry, a gap or a conflict touches
 * nothing but the agent's liveness); then the matrix applies the batch with an undo
 * journal, which yields the transitions; then the store writes batch, watermark and
 * transitions in one transaction. If that throws (disk full, I/O error), the matrix is
 * rolled back, so memory never runs ahead of what a restart would rebuild. Everything is
 * synchronous, so no other batch interleaves.
 *
 * Backpressure: `overloaded()` says whether to refuse this report (the API answers 503 +
 * Retry-After). It refuses a share of reports that grows with the busy share of wall time
 * (an EWMA over 1 s windows): none below `admitAllBelow`, all above `maxBusyRatio`, in
 * proportion between; and every report while the EWMA of the time one batch takes is above
 * `maxBatchMs`. Busy is the event loop's busy time (or the time spent in `accept`, if
 * more): HTTP, gunzip, JSON parsing and validation happen outside `accept`, and a
 * saturated loop is what makes every request wait (at 0.8 a batch of a few ms still waits
 * only a few more: refusing from 0.7 on held a collector that was coping at 0.7–0.8 while
 * it drained a fleet's start-up backlog). Graded, not on/off: refusing every
 * report at one threshold made 2,000 agents swing between a saturated collector and an
 * idle one (retrying together), with a backlog growing all the while.
 *
 * Upkeep the owner schedules: `markSilent` (every second or so), `checkpointInSlices`
 * (every minute: it bounds how much a restart replays) and `checkpoint` (at shutdown),
 * `prune` (every few minutes).
 */

/** Ingest tuning; every field has a default. */
export interface IngestOptions {
  /** Busy share of wall time above which every report is refused. */
  readonly maxBusyRatio: number;
  /** Busy share below which every report is taken; between the two, a growing share is refused. */
  readonly admitAllBelow: number;
  /** Uniform in [0, 1): which reports a partial refusal picks (tests replace it). */
  readonly random: () => number;
  /** Mean time per batch (EWMA, ms) above which the collector is overloaded. */
  readonly maxBatchMs: number;
  /** How far back a restore replays batches when the checkpoint does not cover them (ms). */
  readonly maxReplayMs: number;
  /** Monotonic clock in ms (tests replace it). */
  readonly clockMs: () => number;
  /** Cumulative busy time of the process's event loop in ms (tests replace it). */
  readonly loopBusyMs: () => number;
}

export const defaultIngestOptions: IngestOptions = Object.freeze({
  maxBusyRatio: 0.95,
  admitAllBelow: 0.8,
  random: Math.random,
  maxBatchMs: 250,
  maxReplayMs: 15 * 60_000,
  clockMs: () => performance.now(),
  loopBusyMs: () => performance.eventLoopUtilization().active,
});

const loadWindowMs = 1000;
const ewmaWeight = 0.5;
const batchEwmaWeight = 0.1;

/** What ingest has been doing, for /healthz and metrics. */
export interface IngestLoad {
  /** Busy share of wall time: event loop or `accept`, whichever is more (EWMA over 1 s windows). */
  readonly busyRatio: number;
  /** Mean time one batch takes (EWMA, ms). */
  readonly batchMs: number;
  readonly accepted: number;
  readonly duplicates: number;
  readonly refused: number;
  /** The last store failure, until a batch is stored again (for /healthz). */
  readonly storeError?: string;
}

export class Ingest {
  readonly options: IngestOptions;
  private readonly store: Store;
  private readonly matrix: PathMatrix;
  private windowStartMs: number;
  private loopBusyAtWindowStartMs: number;
  private busyInWindowMs = 0;
  private busyEwma = 0;
  private batchEwmaMs = 0;
  private accepted = 0;
  private duplicates = 0;
  private refused = 0;
  private overloadRefusals = 0;
  /** Closed: a checkpoint in slices stops (close writes the whole one). */
  private closed = false;
  private storeError: string | undefined;

  constructor(store: Store, matrix: PathMatrix, options: Partial<IngestOptions> = {}) {
    this.store = store;
    this.matrix = matrix;
    this.options = Object.freeze({ ...defaultIngestOptions, ...options });
    this.windowStartMs = this.options.clockMs();
    this.loopBusyAtWindowStartMs = this.options.loopBusyMs();
  }

  /**
   * Stores a validated batch and applies it to the matrix, or neither (`body`: the batch as
   * received, see Store.ingest; `backlog`: batches the agent spooled behind it, and
   * `version`: the agent's, see PathMatrix.apply). Throws a
   * FaultlineError FL_ERR_STORE when the store fails (nothing changed then).
   */
  accept(
    batch: ReportBatch,
    receivedAtMs: number,
    body?: ReportBody,
    credential?: Credential,
    backlog = 0,
    version?: string,
  ): IngestOutcome {
    const t0 = this.options.clockMs();
    try {
      const pre = this.store.verdict(batch, credential, receivedAtMs);
      if (pre.status !== 'new') {
        this.count(pre);
        // A retry or a batch refused for a gap still proves the agent alive; a conflict, a
        // forbidden or an implausible one (maybe someone else's, with its id) does not.
        if (pre.status === 'duplicate' || pre.status === 'gap') {
          const t = this.matrix.heartbeat(batch.agentId, receivedAtMs);
          if (t !== undefined) this.store.addTransitions([t]);
        }
        return pre;
      }
      const applied = this.matrix.apply(batch, receivedAtMs, backlog, version);
      let stored;
      try {
        stored = this.store.ingest(batch, receivedAtMs, applied.transitions, body, credential);
      } catch (err) {
        applied.rollback();
        this.storeError = err instanceof Error ? err.message : String(err);
        throw err;
      }
      this.storeError = undefined;
      if (stored.outcome.status !== 'accepted') {
        applied.rollback();
      } else {
        applied.commit({
          acceptedSeq: stored.outcome.acceptedSeq,
          droppedResults: stored.droppedResults,
        });
      }
      this.count(stored.outcome);
      return stored.outcome;
    } finally {
      this.account(this.options.clockMs() - t0);
    }
  }

  /** Flips agents not heard from for `silentAfterMs` to silent and records it. */
  markSilent(nowMs: number, silentAfterMs: number, deafMs?: DeafMs): AgentLiveness[] {
    const changed = this.matrix.markSilent(nowMs, silentAfterMs, deafMs);
    this.store.addTransitions(changed.map(silentTransition));
    return changed;
  }

  /** Saves the matrix checkpoint: a restart replays only what came after it. */
  checkpoint(): void {
    this.store.saveCheckpoint(this.matrix.checkpoint());
  }

  /**
   * Saves the checkpoint `agentsPerSlice` agents at a time, one transaction each, pausing
   * between slices for `pause` times the slice's own duration: the whole matrix at once
   * (200,000 paths, ~2 s) held up every report that long, and back-to-back slices kept the
   * loop saturated for as long. So a slice holds reports up for a few milliseconds, and
   * the checkpoint takes at most 1/(1+pause) of the loop while it runs. Each agent's part
   * is consistent with its own watermark, so batches taken between slices do no harm.
   * Resolves with the agents written.
   */
  async checkpointInSlices(agentsPerSlice = 5, pause = 9): Promise<number> {
    const ids = this.matrix.agentIds();
    let written = 0;
    for (let i = 0; i < ids.length && !this.closed; i += agentsPerSlice) {
      const t0 = this.options.clockMs();
      const slice = [];
      for (const id of ids.slice(i, i + agentsPerSlice)) {
        const part = this.matrix.checkpointAgent(id);
        if (part !== undefined) slice.push(part);
      }
      this.store.saveAgentCheckpoints(slice);
      written += slice.length;
      const tookMs = this.options.clockMs() - t0;
      if (pause > 0 && tookMs >= 1) await sleep(Math.min(1000, pause * tookMs));
      else await yieldToLoop();
    }
    return written;
  }

  /** Rebuilds the matrix from the store (at start-up). */
  restore(): void {
    this.matrix.restore(this.store, { maxReplayMs: this.options.maxReplayMs });
  }

  /**
   * Prunes everything past retention in steps of `stepRows`, yielding to the event loop
   * between steps so reports keep flowing. Returns the rows deleted.
   */
  async prune(nowMs: number, stepRows = 5000): Promise<number> {
    let total = 0;
    for (;;) {
      const { deletedRows, done } = this.store.prune(nowMs, stepRows);
      total += deletedRows;
      if (done) return total;
      await yieldToLoop();
    }
  }

  /** Whether reports should be refused for now (503 + Retry-After). */
  overloaded(): boolean {
    this.roll(this.options.clockMs());
    const o = this.options;
    const share = (this.busyEwma - o.admitAllBelow) / (o.maxBusyRatio - o.admitAllBelow);
    const over = this.batchEwmaMs > o.maxBatchMs || (share > 0 && o.random() < share);
    if (over) this.overloadRefusals++;
    return over;
  }

  load(): IngestLoad {
    this.roll(this.options.clockMs());
    return {
      busyRatio: this.busyEwma,
      batchMs: this.batchEwmaMs,
      accepted: this.accepted,
      duplicates: this.duplicates,
      refused: this.refused,
      ...(this.storeError !== undefined ? { storeError: this.storeError } : {}),
    };
  }

  /**
   * Adds ingest's instruments to `meter`: what backpressure decides on (exposed as
   * `faultline_ingest_busy_ratio`, `_busy_ratio_limit`, `_busy_ratio_admit_all_below`,
   * `faultline_ingest_batch_seconds`) and the outcomes (`faultline_ingest_batches_total{outcome}`,
   * `faultline_ingest_overloaded_total`).
   */
  instrument(meter: Meter): void {
    const i = {
      busy: meter.createObservableGauge('faultline.ingest.busy_ratio', {
        unit: '1',
        description:
          'Busy share of wall time (event loop or ingest, EWMA over 1 s windows); above the limit reports are refused with 503.',
      }),
      // Unit-less rather than 1: a unit-1 gauge gets `_ratio` appended in Prometheus.
      limit: meter.createObservableGauge('faultline.ingest.busy_ratio_limit', {
        unit: '',
        description:
          'The busy share above which every report is refused (from faultline_ingest_busy_ratio_admit_all_below on, a growing share is).',
      }),
      admitAll: meter.createObservableGauge('faultline.ingest.busy_ratio_admit_all_below', {
        unit: '',
        description: 'The busy share below which every report is taken.',
      }),
      batch: meter.createObservableGauge('faultline.ingest.batch', {
        unit: 's',
        description: 'Mean time to store and apply one report batch (EWMA).',
      }),
      batches: meter.createObservableCounter('faultline.ingest.batches', {
        unit: '',
        description: 'Report batches by outcome.',
      }),
      overloaded: meter.createObservableCounter('faultline.ingest.overloaded', {
        unit: '',
        description: 'Report requests answered 503 because the collector was overloaded.',
      }),
    };
    meter.addBatchObservableCallback((o) => {
      const l = this.load();
      o.observe(i.busy, l.busyRatio);
      o.observe(i.limit, this.options.maxBusyRatio);
      o.observe(i.admitAll, this.options.admitAllBelow);
      o.observe(i.batch, l.batchMs / 1000);
      o.observe(i.batches, l.accepted, { outcome: 'accepted' });
      o.observe(i.batches, l.duplicates, { outcome: 'duplicate' });
      o.observe(i.batches, l.refused, { outcome: 'refused' });
      o.observe(i.overloaded, this.overloadRefusals);
    }, Object.values(i));
  }

  /** Checkpoints the matrix and closes the store. */
  close(): void {
    this.closed = true;
    try {
      this.checkpoint();
    } finally {
      this.store.close();
    }
  }

  private count(o: IngestOutcome): void {
    if (o.status === 'accepted') this.accepted++;
    else if (o.status === 'duplicate') this.duplicates++;
    else this.refused++;
  }

  private account(tookMs: number): void {
    this.roll(this.options.clockMs());
    this.busyInWindowMs += tookMs;
    this.batchEwmaMs += batchEwmaWeight * (tookMs - this.batchEwmaMs);
  }

  /** Closes the load windows that ended by `nowMs` (idle windows count as 0 busy). */
  private roll(nowMs: number): void {
    const elapsed = nowMs - this.windowStartMs;
    if (elapsed < loadWindowMs) return;
    const windows = Math.floor(elapsed / loadWindowMs);
    const loopBusyMs = this.options.loopBusyMs();
    // Spread over the windows that closed: after an idle spell the loop's few busy ms do
    // not make the first window look busy.
    const loopBusyInWindowMs = (loopBusyMs - this.loopBusyAtWindowStartMs) / windows;
    this.loopBusyAtWindowStartMs = loopBusyMs;
    const busyMs = Math.max(this.busyInWindowMs, loopBusyInWindowMs);
    this.busyEwma += ewmaWeight * (Math.min(1, busyMs / loadWindowMs) - this.busyEwma);
    // Idle windows after the first decay the load; a long idle spell forgets it.
    const idle = Math.min(windows - 1, 64);
    this.busyEwma *= (1 - ewmaWeight) ** idle;
    if (idle > 0) this.batchEwmaMs *= (1 - batchEwmaWeight) ** idle;
    this.busyInWindowMs = 0;
    this.windowStartMs += windows * loadWindowMs;
  }
}
