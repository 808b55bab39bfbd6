import { performance } from 'node:perf_hooks';
import type { Histogram, Meter, ObservableCounter, ObservableGauge } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { faultKinds, type Diagnosis, type FaultKind } from '../wire/diagnosis.js';
import type { ComponentConfig } from './inventory.js';
import { localise, type LocaliseComponent, type LocaliseInput } from './localise/localise.js';
import type { Settler } from './settle.js';

/**
 * The collector's current diagnosis: kept in memory, recomputed by the localiser when the
 * path matrix or agent liveness changed, announced to subscribers when it changed.
 *
 * Recomputation is driven by changes, not by a timer: the owner calls `invalidate` when a
 * batch caused path transitions (state, failure class, degradation), an agent appeared or
 * changed labels, or agents went silent or came back. Invalidations coalesce: the compute
 * is scheduled with `setImmediate`, so a burst of batches handled in one event-loop turn
 * costs one localisation, and never more than one runs at a time (an invalidation during a
 * compute, e.g. from a listener, schedules exactly one more). When localisation gets
 * expensive (a big matrix, a storm of changes), the next one starts no earlier than
 * `computeSpacing` compute times after the last ended (one, when the localiser runs in its
 * own thread), so at most a quarter of the loop goes to localising and ingest keeps up (a storm of 20k failing paths from 2,000 agents made
 * localising take half the loop, and the collector refused reports); the added delay is a
 * few compute times, never seconds on a small matrix.
 *
 * Settling (issue 14): with a `settler`, every document says whether the fault is still
 * arriving (`settling`, `settlingSinceMs`; collector/settle.ts decides, bounded by its
 * `settleMaxMs`). While a document settles, a timer recomputes it when the settling would
 * end, so the settled answer is published without waiting for another batch; alerts and
 * incidents wait for it.
 *
 * Subscribers (alerts, incidents, the dashboard) use `onChange`: called once per document
 * change, ignoring `computedAtMs`; an unchanged recompute calls nobody.
 */

/** A change of the diagnosis document, as subscribers receive it. */
export interface DiagnosisChange {
  /** The document before (on the first computation: the empty healthy document). */
  readonly previous: Diagnosis;
  /** The new current document (the one `current()` now returns). */
  readonly current: Diagnosis;
  /** What invalidated it since the last computation (`batch`, `agent-silent`, …), deduplicated. */
  readonly reasons: readonly string[];
}

/** A subscriber; it must not throw (a throw is logged and the other subscribers still run). */
export type DiagnosisListener = (change: DiagnosisChange) => void;

/** Counters of the engine, also exposed as the `faultline.diagnosis.*` metrics. */
export interface DiagnosisStats {
  /** Localisations run (successful or not). */
  readonly computations: number;
  /** Localisations that produced a different document. */
  readonly changes: number;
  /** Localisations that threw (the previous document stays current). */
  readonly failures: number;
  /** Duration of the last localisation (s). */
  readonly lastComputeSeconds: number;
  /** A computation is scheduled or running. */
  readonly pending: boolean;
}

/** Options of {@link DiagnosisEngine}; only `input` is required. */
export interface DiagnosisEngineOptions {
  /** The localiser's input as it is now, without the clock (the engine adds `nowMs`). */
  readonly input: () => Omit<LocaliseInput, 'nowMs'>;
  /** The localiser (default: collector/localise). Tests pass a fake. */
  readonly localise?: (input: LocaliseInput) => Diagnosis;
  /**
   * A localiser that answers later (one in a worker thread): when given, every scheduled
   * computation uses it and `localise` serves only `computeNow`. While it runs, the event
   * loop goes on; invalidations meanwhile fold into the one computation after it.
   */
  readonly localiseAsync?: (input: LocaliseInput) => Promise<Diagnosis>;
  /** Wall clock in epoch ms (default Date.now): `nowMs` and `computedAtMs`. */
  readonly clockMs?: () => number;
  /** Monotonic clock in ms (default performance.now): compute durations. */
  readonly monotonicMs?: () => number;
  /** Compute failures and listener throws go here; silent when absent. */
  readonly log?: Logger;
  /**
   * Decides `settling` on every document (see the file comment). Without one the
   * documents carry no `settling` (the localiser's as they are).
   */
  readonly settler?: Settler;
}

/** Bucket upper bounds (s) of `faultline_diagnosis_compute_seconds`: 100 µs to 5 s. */
export const diagnosisComputeBucketsS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** The document before anything was computed: nothing known to be wrong. */
export function emptyDiagnosis(): Diagnosis {
  return { healthy: true, hypotheses: [], ruledOut: [], computedAtMs: 0 };
}

/** The collector inventory as the localiser reads it. */
export function localiseInventory(components: readonly ComponentConfig[]): LocaliseComponent[] {
  return components.map((c) => ({
    name: c.name,
    address: c.address,
    role: c.role,
    labels: c.labels,
    agent: c.agent,
  }));
}

/** The document without `computedAtMs`, for telling a change from a recompute. */
function contentKey(d: Diagnosis): string {
  const { computedAtMs: _at, ...rest } = d;
  return JSON.stringify(rest);
}

/** Below this a compute is cheap enough to follow the previous one at once. */
const minSpacingMs = 1;
/** Wait after a localisation, in multiples of its duration: localising takes ≤ 1/(1+this) of the loop. */
const computeSpacing = 3;
/**
 * Wait after an off-thread localisation, in multiples of what it cost this thread (handing
 * the changed paths over, taking the document and its subscribers): that upkeep takes ≤ 10 %
 * of the loop. A fleet of 2,000 agents joining at once dirtied every agent in turn, and
 * handing their paths over back to back took a third of the ingest thread.
 */
const mainThreadSpacing = 9;

/**
 * Keeps the current diagnosis and recomputes it on invalidation. See the file comment for
 * when it recomputes; `close()` cancels anything scheduled.
 */
export class DiagnosisEngine {
  private readonly opts: DiagnosisEngineOptions;
  private readonly run: (input: LocaliseInput) => Diagnosis;
  private readonly clockMs: () => number;
  private readonly monotonicMs: () => number;
  private readonly listeners = new Set<DiagnosisListener>();
  private doc: Diagnosis = emptyDiagnosis();
  private key = contentKey(this.doc);
  private reasons = new Set<string>();
  private scheduled:
    | { readonly kind: 'immediate'; readonly handle: NodeJS.Immediate }
    | { readonly kind: 'timeout'; readonly handle: NodeJS.Timeout }
    | undefined;
  private running = false;
  private dirty = false;
  private closed = false;
  private lastEndMs = Number.NEGATIVE_INFINITY;
  /** What the last off-thread localisation cost this thread (ms). */
  private lastMainThreadMs = 0;
  private idleWaiters: (() => void)[] = [];
  /** Recomputes when the current document's settling ends. */
  private settleTimer: NodeJS.Timeout | undefined;
  private computations = 0;
  private changes = 0;
  private failures = 0;
  private lastComputeSeconds = 0;
  /** Set by `instrument`: every localisation's duration from then on. */
  private computeHistogram: Histogram | undefined;

  constructor(opts: DiagnosisEngineOptions) {
    this.opts = opts;
    this.run = opts.localise ?? localise;
    this.clockMs = opts.clockMs ?? Date.now;
    this.monotonicMs = opts.monotonicMs ?? (() => performance.now());
  }

  /** The current document (the empty healthy one until the first computation). */
  current(): Diagnosis {
    return this.doc;
  }

  /**
   * Subscribes to document changes; returns the unsubscribe function. The listener runs
   * synchronously after the computation that changed the document, once per change. Read
   * `current()` when subscribing for the state so far.
   */
  onChange(listener: DiagnosisListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Asks for a recomputation because `reason` changed; coalesced with every other
   * invalidation until the computation runs (on a later event-loop turn).
   */
  invalidate(reason: string): void {
    if (this.closed) return;
    this.reasons.add(reason);
    this.dirty = true;
    if (!this.running) this.schedule();
  }

  /**
   * Computes now, synchronously (at start-up, so the first read is not the empty
   * document). Anything scheduled is folded into it. Returns the current document.
   */
  computeNow(reason = 'start'): Diagnosis {
    if (this.running) {
      this.invalidate(reason);
      return this.doc;
    }
    this.reasons.add(reason);
    this.cancelScheduled();
    this.compute();
    this.settle();
    return this.doc;
  }

  /** Resolves once nothing is scheduled or running (at once when idle). */
  idle(): Promise<void> {
    if (!this.pending()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stats(): DiagnosisStats {
    return {
      computations: this.computations,
      changes: this.changes,
      failures: this.failures,
      lastComputeSeconds: this.lastComputeSeconds,
      pending: this.pending(),
    };
  }

  /**
   * Adds the `faultline.diagnosis.*` instruments to `meter` (exposed to Prometheus as
   * `faultline_diagnosis_*`): `healthy` (0/1), `settling` (0/1), `hypotheses{kind}` (every
   * kind, 0 when absent), `ruled_out{verdict}`, the counters `computations`, `changes`,
   * `failures`, and the `compute` histogram (unit s → `faultline_diagnosis_compute_seconds`)
   * of the localisations from now on. Per hypothesis and component: collector/telemetry.ts.
   */
  instrument(meter: Meter): void {
    this.computeHistogram = meter.createHistogram('faultline.diagnosis.compute', {
      unit: 's',
      description: 'Time one localisation takes.',
      advice: { explicitBucketBoundaries: [...diagnosisComputeBucketsS] },
    });
    const gauge = (name: string, description: string): ObservableGauge =>
      meter.createObservableGauge(name, { unit: '', description });
    const counter = (name: string, description: string): ObservableCounter =>
      meter.createObservableCounter(name, { unit: '', description });
    const i = {
      healthy: gauge(
        'faultline.diagnosis.healthy',
        '1 when the diagnosis finds nothing wrong, else 0.',
      ),
      settling: gauge(
        'faultline.diagnosis.settling',
        '1 while the diagnosis is settling (a fault still arriving; alerts for new hypotheses wait), else 0.',
      ),
      hypotheses: gauge(
        'faultline.diagnosis.hypotheses',
        'Hypotheses in the current diagnosis, by fault kind.',
      ),
      ruledOut: gauge(
        'faultline.diagnosis.ruled_out',
        'Components in the ruled-out list: ruled out with evidence, or that cannot be ruled out.',
      ),
      computations: counter(
        'faultline.diagnosis.computations',
        'Localisations run since the collector started.',
      ),
      changes: counter(
        'faultline.diagnosis.changes',
        'Localisations that changed the diagnosis document.',
      ),
      failures: counter(
        'faultline.diagnosis.failures',
        'Localisations that failed (the previous diagnosis stayed current).',
      ),
    };
    const kindAttrs = new Map(faultKinds.map((kind) => [kind, { kind }]));
    meter.addBatchObservableCallback((o) => {
      const d = this.doc;
      const byKind = new Map<FaultKind, number>(faultKinds.map((k) => [k, 0]));
      for (const h of d.hypotheses) byKind.set(h.kind, (byKind.get(h.kind) ?? 0) + 1);
      const ruledOut = d.ruledOut.filter((r) => r.canBeRuledOut).length;
      o.observe(i.healthy, d.healthy ? 1 : 0);
      o.observe(i.settling, d.settling === true ? 1 : 0);
      for (const [kind, n] of byKind) o.observe(i.hypotheses, n, kindAttrs.get(kind));
      o.observe(i.ruledOut, ruledOut, { verdict: 'ruled_out' });
      o.observe(i.ruledOut, d.ruledOut.length - ruledOut, { verdict: 'cannot_be_ruled_out' });
      o.observe(i.computations, this.computations);
      o.observe(i.changes, this.changes);
      o.observe(i.failures, this.failures);
    }, Object.values(i));
  }

  /** Cancels anything scheduled and stops taking invalidations; idle waiters resolve. */
  close(): void {
    this.closed = true;
    this.dirty = false;
    this.cancelScheduled();
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    this.settle();
  }

  private pending(): boolean {
    return this.scheduled !== undefined || this.running;
  }

  private schedule(): void {
    if (this.scheduled !== undefined || this.closed) return;
    // Spacing of a few compute times after the last one ended (see the file comment); one
    // compute time when localising happens off this thread (it only bounds that thread's
    // share and the requests' upkeep here, and its wall time includes waiting for it).
    const computeMs = this.lastComputeSeconds * 1000;
    const gapMs =
      this.opts.localiseAsync !== undefined
        ? Math.max(computeMs, mainThreadSpacing * this.lastMainThreadMs)
        : computeSpacing * computeMs;
    const waitMs = this.lastEndMs + gapMs - this.monotonicMs();
    const fire = (): void => {
      this.scheduled = undefined;
      if (this.dirty && !this.closed) {
        if (this.opts.localiseAsync !== undefined) this.computeAsync(this.opts.localiseAsync);
        else this.compute();
      }
      this.settle();
    };
    this.scheduled =
      gapMs >= minSpacingMs && waitMs > 0
        ? { kind: 'timeout', handle: setTimeout(fire, Math.ceil(waitMs)) }
        : { kind: 'immediate', handle: setImmediate(fire) };
  }

  private cancelScheduled(): void {
    const s = this.scheduled;
    if (s === undefined) return;
    if (s.kind === 'timeout') clearTimeout(s.handle);
    else clearImmediate(s.handle);
    this.scheduled = undefined;
  }

  private compute(): void {
    this.running = true;
    this.dirty = false;
    const reasons = [...this.reasons].sort();
    this.reasons.clear();
    const t0 = this.monotonicMs();
    let next: Diagnosis | undefined;
    try {
      next = this.run({ ...this.opts.input(), nowMs: this.clockMs() });
    } catch (err) {
      this.failed(err, reasons);
    }
    this.finish(t0, next, reasons);
  }

  /** `compute` with a localiser that answers later: the engine is running until it does. */
  private computeAsync(run: (input: LocaliseInput) => Promise<Diagnosis>): void {
    this.running = true;
    this.dirty = false;
    const reasons = [...this.reasons].sort();
    this.reasons.clear();
    const t0 = this.monotonicMs();
    let answer: Promise<Diagnosis>;
    try {
      answer = run({ ...this.opts.input(), nowMs: this.clockMs() });
    } catch (err) {
      answer = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const handOverMs = this.monotonicMs() - t0;
    answer.then(
      (next) => {
        this.finish(t0, this.closed ? undefined : next, reasons, handOverMs);
        this.settle();
      },
      (err: unknown) => {
        if (!this.closed) this.failed(err, reasons);
        this.finish(t0, undefined, reasons, handOverMs);
        this.settle();
      },
    );
  }

  private failed(err: unknown, reasons: readonly string[]): void {
    this.failures++;
    this.opts.log?.error({ err, reasons }, 'localisation failed; keeping the previous diagnosis');
  }

  /**
   * Records a finished computation, adopts its document, and schedules the next if due.
   * `handOverMs`: for an off-thread one, what starting it cost this thread.
   */
  private finish(
    t0: number,
    next: Diagnosis | undefined,
    reasons: readonly string[],
    handOverMs?: number,
  ): void {
    const end = this.monotonicMs();
    const tookMs = Math.max(0, end - t0);
    this.lastEndMs = t0 + tookMs;
    this.record(tookMs / 1000);
    try {
      if (next !== undefined) this.adopt(next, reasons);
    } finally {
      this.running = false;
      if (handOverMs !== undefined)
        this.lastMainThreadMs = Math.max(0, handOverMs + this.monotonicMs() - end);
    }
    if (this.dirty && !this.closed) this.schedule();
  }

  private record(seconds: number): void {
    this.computations++;
    this.lastComputeSeconds = seconds;
    this.computeHistogram?.record(seconds);
  }

  private adopt(computed: Diagnosis, reasons: readonly string[]): void {
    const next = this.opts.settler === undefined ? computed : this.withSettling(computed);
    const key = contentKey(next);
    const previous = this.doc;
    this.doc = next;
    if (key === this.key) return;
    this.key = key;
    this.changes++;
    const change: DiagnosisChange = { previous, current: next, reasons };
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.opts.log?.error({ err }, 'a diagnosis subscriber threw');
      }
    }
  }

  /** The document with its settling, and the timer that recomputes it when that ends. */
  private withSettling(d: Diagnosis): Diagnosis {
    const nowMs = this.clockMs();
    const v = this.opts.settler!.verdict(d, nowMs);
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    if (!v.settling) {
      const { settlingSinceMs: _since, ...rest } = d;
      return { ...rest, settling: false };
    }
    const waitMs = Math.max(1, Math.ceil((v.untilMs ?? nowMs) - nowMs) + 1);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      this.invalidate('settled');
    }, waitMs);
    this.settleTimer.unref();
    return { ...d, settling: true, settlingSinceMs: Math.floor(v.sinceMs ?? nowMs) };
  }

  private settle(): void {
    if (this.pending() && !this.closed) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
