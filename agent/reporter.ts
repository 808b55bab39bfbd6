import { isProbeKind, mainTiming, probeRegistry } from '../probes/registry.js';
import type { ProbeDefinition } from '../probes/types.js';
import type { Plan } from '../wire/plan.js';
import type { PathSummary } from '../wire/report.js';
import type { FailureClass, ProbeResult, Timings } from '../wire/result.js';
import type { Journal, ReportedTarget } from './journal.js';
import type { Logger } from '../lib/logger.js';
import type { BatchDraft } from './spool.js';

/** Default period of a report batch when the plan does not say. */
export const defaultReportIntervalMs = 1000;
/** Default delay between a failure or state change and the batch that carries it. */
export const defaultEarlyFlushMs = 100;
/**
 * Results sent in full after a state change besides the change itself: enough for the
 * collector's debounce (default 3 consecutive results) to confirm the new state at once
 * instead of a period later. Beyond them, a path that keeps failing the same way costs a
 * summary per period like a healthy one.
 */
export const defaultConfirmResults = 4;

/** Options of a {@link Reporter}. */
export interface ReporterOptions {
  /** Agent name and labels, stamped on every batch. */
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Where closed batches go (the Spool). */
  readonly sink: { append(draft: BatchDraft): Promise<number> };
  readonly log: Logger;
  /** Period of a batch; the plan's `reportIntervalMs` replaces it. Default 1 s. */
  readonly reportIntervalMs?: number;
  readonly planVersion?: string;
  /**
   * A failure or state change is sent within this long in a results-only batch instead of
   * waiting for the period's end; false sends everything at period boundaries. Default 100 ms.
   */
  readonly earlyFlushMs?: number | false;
  /** Results sent in full after each state change besides the change. Default 4. */
  readonly confirmResults?: number;
  /** A batch closes early when this many full results are waiting. Default 5,000. */
  readonly maxResultsPerBatch?: number;
  /** Summaries beyond this are split over several batches. Default 5,000. */
  readonly maxSummariesPerBatch?: number;
  /** Wall clock, epoch ms; injectable for tests. */
  readonly now?: () => number;
  /**
   * Where every observed result is journaled until its batch is in the sink, so a killed
   * agent's open period is replayed at the next start (see Journal). Optional.
   */
  readonly journal?: Journal;
}

/** Counters since start. */
export interface ReporterStats {
  readonly batches: number;
  readonly results: number;
  readonly summaries: number;
  /** Batches the spool failed to store (disk full…): their content is lost, and logged. */
  readonly appendFailures: number;
}

// Defined beside the journal that stores it, so that the two do not import each other.
export type { ReportedTarget };

type TimingName = keyof Timings;

export { mainTiming };

/** Per path, the current period's tally, reused from period to period. */
interface PathTally {
  readonly target: string;
  readonly kind: string;
  readonly timing: TimingName;
  /** How the kind reads a result's packet loss (the echo kinds), summarised weighted by packets sent. */
  readonly loss: ProbeDefinition['summaryLoss'];
  count: number;
  ok: number;
  failures: Partial<Record<FailureClass, number>>;
  latencies: number[];
  lossWeight: number;
  lossSum: number;
  lastClass: FailureClass;
  lastSeq: number;
  /** The class of the previous result, across periods: a different one is a state change. */
  previous: FailureClass | undefined;
  /** Results still to send in full to confirm the last state change. */
  confirm: number;
  /** The confirmation burst under way: its trigger's class, and whether all agreed so far. */
  burstClass: FailureClass | undefined;
  burstAgrees: boolean;
  active: boolean;
}

/** Nearest-rank quantile of sorted values. */
function quantile(sorted: readonly number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? 0;
}

/**
 * Turns the stream of probe results into report batches: per path and period a summary
 * (count, ok, failures by class, latency min/p50/p90/p99/max of the kind's main timing,
 * ICMP loss), plus in full every result whose class differs from the path's previous one
 * (the first result of a path when it is a failure) and the `confirmResults` after it —
 * or, when the agent confirmed the change with a burst (results carrying `confirm`), the
 * burst's results, flushed the moment it starts and the moment it ends. Summaries count
 * every probe of the period, the ones sent in full too. A path failing the same way for an
 * hour thus costs what a healthy one costs, and the collector still hears of every change
 * and its confirmation at once.
 *
 * A batch closes at every period boundary (wall-clock multiples of `reportIntervalMs`),
 * also when empty: it is the agent's heartbeat. A failure or state change closes a
 * results-only batch within `earlyFlushMs` so the collector hears of it fast; its path's
 * summary still closes with the period.
 */
export class Reporter {
  private readonly paths = new Map<string, PathTally>();
  private active: PathTally[] = [];
  private results: ProbeResult[] = [];
  private periodStartMs: number;
  private reportIntervalMs: number;
  private planVersion: string | undefined;
  private readonly earlyFlushMs: number | false;
  private readonly maxResults: number;
  private readonly confirmResults: number;
  private readonly maxSummaries: number;
  private readonly now: () => number;
  private periodTimer: NodeJS.Timeout | undefined;
  private earlyTimer: NodeJS.Timeout | undefined;
  private lastAppend: Promise<void> = Promise.resolve();
  private running = false;
  private counts = { batches: 0, results: 0, summaries: 0, appendFailures: 0 };

  constructor(private readonly options: ReporterOptions) {
    this.reportIntervalMs = options.reportIntervalMs ?? defaultReportIntervalMs;
    this.planVersion = options.planVersion;
    this.earlyFlushMs = options.earlyFlushMs ?? defaultEarlyFlushMs;
    this.maxResults = options.maxResultsPerBatch ?? 5_000;
    this.confirmResults = options.confirmResults ?? defaultConfirmResults;
    this.maxSummaries = options.maxSummariesPerBatch ?? 5_000;
    this.now = options.now ?? Date.now;
    this.periodStartMs = this.now();
  }

  /** Counters since construction. */
  stats(): ReporterStats {
    return { ...this.counts };
  }

  /** Starts cutting batches on period boundaries. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.periodStartMs = this.now();
    this.armPeriod();
  }

  /**
   * Takes a new plan: its version goes on the next batches, its report interval applies
   * from the next boundary, and paths no longer in it are forgotten.
   */
  setPlan(
    plan: Pick<Plan, 'version' | 'reportIntervalMs'> & { targets: readonly { name: string }[] },
  ): void {
    this.planVersion = plan.version;
    const keep = new Set(plan.targets.map((t) => t.name));
    for (const [name, p] of this.paths) if (!keep.has(name) && !p.active) this.paths.delete(name);
    if (plan.reportIntervalMs !== this.reportIntervalMs) {
      this.reportIntervalMs = plan.reportIntervalMs;
      if (this.running) this.armPeriod();
    }
  }

  /** Takes one probe result (hot path: every probe). Shaped for `agent.onResult`. */
  readonly observe = (result: ProbeResult, target: ReportedTarget): void => {
    this.options.journal?.record(result, target);
    let p = this.paths.get(target.name);
    if (p === undefined) {
      p = {
        target: target.name,
        kind: result.kind,
        timing: mainTiming(result.kind),
        loss: isProbeKind(result.kind) ? probeRegistry[result.kind].summaryLoss : undefined,
        count: 0,
        ok: 0,
        failures: {},
        latencies: [],
        lossWeight: 0,
        lossSum: 0,
        lastClass: result.class,
        lastSeq: result.seq,
        previous: undefined,
        confirm: 0,
        burstClass: undefined,
        burstAgrees: false,
        active: false,
      };
      this.paths.set(target.name, p);
    }
    if (!p.active) {
      p.active = true;
      this.active.push(p);
    }
    const cls = result.class;
    // A burst's re-probes confirm one sample, the trigger: they go in full, but counted in
    // the period's summary they would weigh one lost probe (or one slow moment) four times
    // in the loss, failure and latency figures the collector judges degradation by.
    const reprobe = result.confirm !== undefined && result.confirm.index > 0;
    if (!reprobe) this.tally(p, result);
    p.lastClass = cls;
    p.lastSeq = result.seq;
    if (result.confirm !== undefined) {
      this.observeBurst(p, result, result.confirm);
      return;
    }
    // A path's first result, when ok, is no news: its summary says so, and one success is
    // all the collector needs to call a path ok. (A fleet starting up would otherwise send
    // every path in full at once.)
    const changed = p.previous !== cls && !(p.previous === undefined && cls === 'ok');
    p.previous = cls;
    let full = changed;
    if (changed) p.confirm = this.confirmResults;
    else if (p.confirm > 0) {
      p.confirm--;
      full = true;
    }
    if (full) {
      this.results.push(result);
      if (this.results.length >= this.maxResults) this.flushResults();
      else this.armEarly();
    }
  };

  /**
   * A result of the agent's confirmation burst: sent in full, the trigger and the burst's
   * last result flushed at once. The burst is the change's confirmation, so it does not
   * start the `confirmResults` countdown of later rounds — unless it disagreed with its
   * trigger: the collector then falls back on consecutive rounds, and gets them in full.
   */
  private observeBurst(
    p: PathTally,
    result: ProbeResult,
    mark: { of: number; index: number },
  ): void {
    const cls = result.class;
    p.previous = cls;
    let flush = false;
    if (mark.index === 0) {
      p.burstClass = cls;
      p.burstAgrees = true;
      p.confirm = 0;
      flush = true;
    } else {
      if (cls !== p.burstClass) p.burstAgrees = false;
      if (mark.index >= mark.of) {
        p.confirm = p.burstAgrees ? 0 : this.confirmResults;
        p.burstClass = undefined;
        flush = true;
      }
    }
    this.results.push(result);
    if (this.results.length >= this.maxResults || (flush && this.earlyFlushMs !== false))
      this.flushResults();
    else this.armEarly();
  }

  /**
   * Closes the current period now: summaries of every path that reported, the results
   * waiting, into the sink (an empty batch is a heartbeat). Returns when it is stored.
   */
  async cut(): Promise<void> {
    const toMs = this.now();
    const summaries: PathSummary[] = [];
    for (const p of this.active) summaries.push(this.summarise(p, toMs));
    this.active = [];
    const results = this.results;
    this.results = [];
    this.clearEarly();
    const fromChunks = Math.max(1, Math.ceil(summaries.length / this.maxSummaries));
    for (let i = 0; i < fromChunks; i++) {
      const chunk = summaries.slice(i * this.maxSummaries, (i + 1) * this.maxSummaries);
      this.emit(i === 0 ? results : [], chunk, toMs);
    }
    this.periodStartMs = toMs;
    await this.lastAppend;
  }

  /** Stops the timers and closes the current period into the sink (nothing is lost). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.periodTimer !== undefined) clearTimeout(this.periodTimer);
    this.periodTimer = undefined;
    this.clearEarly();
    if (this.active.length > 0 || this.results.length > 0) await this.cut();
    await this.lastAppend;
    this.options.journal?.shutdown();
  }

  /** Counts a result into its path's period: classes, latency, packet loss. */
  private tally(p: PathTally, result: ProbeResult): void {
    p.count++;
    const cls = result.class;
    if (cls === 'ok') {
      p.ok++;
      const ms = result.timings[p.timing] ?? result.timings.totalMs;
      p.latencies.push(ms);
    } else {
      p.failures[cls] = (p.failures[cls] ?? 0) + 1;
    }
    if (p.loss !== undefined && result.detail !== undefined) {
      const loss = p.loss(result.detail);
      if (loss !== undefined) {
        p.lossWeight += loss.packets;
        p.lossSum += loss.ratio * loss.packets;
      }
    }
  }

  private summarise(p: PathTally, toMs: number): PathSummary {
    const s: PathSummary = {
      target: p.target,
      kind: p.kind,
      fromMs: this.periodStartMs,
      toMs,
      count: p.count,
      ok: p.ok,
      failures: p.failures,
      lastClass: p.lastClass,
      lastSeq: p.lastSeq,
    };
    const lat = p.latencies;
    if (lat.length > 0) {
      lat.sort((a, b) => a - b);
      s.latencyMs = {
        min: lat[0] ?? 0,
        p50: quantile(lat, 0.5),
        p90: quantile(lat, 0.9),
        p99: quantile(lat, 0.99),
        max: lat[lat.length - 1] ?? 0,
      };
    }
    if (p.lossWeight > 0) {
      s.lossRatio = Math.min(1, p.lossSum / p.lossWeight);
      s.echoes = Math.round(p.lossWeight);
    }
    p.count = 0;
    p.ok = 0;
    p.failures = {};
    lat.length = 0;
    p.lossWeight = 0;
    p.lossSum = 0;
    p.active = false;
    return s;
  }

  private emit(results: ProbeResult[], summaries: PathSummary[], createdAtMs: number): void {
    const draft: BatchDraft = {
      agent: this.options.agent,
      labels: { ...this.options.labels },
      createdAtMs,
      ...(this.planVersion === undefined ? {} : { planVersion: this.planVersion }),
      results,
      summaries,
    };
    this.counts.batches++;
    this.counts.results += results.length;
    this.counts.summaries += summaries.length;
    // What the journal holds so far is in this batch (or an earlier one): rotate it now, and
    // drop it once the sink has the batch.
    const release = this.options.journal?.close(createdAtMs);
    // The sink serialises appends, so waiting for the last one waits for all.
    this.lastAppend = this.options.sink.append(draft).then(
      () => release?.(),
      (err: unknown) => {
        this.counts.appendFailures++;
        this.options.log.error(
          { err, results: results.length, summaries: summaries.length },
          'could not spool a report batch; its content is lost',
        );
      },
    );
  }

  /** A results-only batch now; summaries stay with their period. */
  private flushResults(): void {
    this.clearEarly();
    if (this.results.length === 0) return;
    const results = this.results;
    this.results = [];
    this.emit(results, [], this.now());
  }

  private armEarly(): void {
    if (this.earlyFlushMs === false || this.earlyTimer !== undefined || !this.running) return;
    const untilBoundaryMs = this.reportIntervalMs - (this.now() % this.reportIntervalMs);
    // The period's own cut comes soon enough.
    if (untilBoundaryMs <= this.earlyFlushMs) return;
    this.earlyTimer = setTimeout(() => {
      this.earlyTimer = undefined;
      this.flushResults();
    }, this.earlyFlushMs);
    this.earlyTimer.unref();
  }

  private clearEarly(): void {
    if (this.earlyTimer !== undefined) clearTimeout(this.earlyTimer);
    this.earlyTimer = undefined;
  }

  private armPeriod(): void {
    if (this.periodTimer !== undefined) clearTimeout(this.periodTimer);
    let delayMs = this.reportIntervalMs - (this.now() % this.reportIntervalMs);
    // A timer may fire a hair before the boundary; the next one is a full period away.
    if (delayMs < Math.min(10, this.reportIntervalMs / 10)) delayMs += this.reportIntervalMs;
    this.periodTimer = setTimeout(() => {
      this.periodTimer = undefined;
      if (!this.running) return;
      this.armPeriod();
      void this.cut();
    }, delayMs);
    this.periodTimer.unref();
  }
}
