import { lossIsSignificant } from '../loss-significance.js';
import { failureClasses } from '../../wire/result.js';
import type { PathSummary } from '../../wire/report.js';
import type { PathMatrixOptions } from './options.js';

/**
 * The window ring: each path's sliding window of its agent's period summaries, its latency
 * baseline, and the statistics that call an `ok` path degraded (collector/paths/states.ts
 * says when the verdict is taken).
 *
 * The window is `windowSlots` slots of `windowMs / windowSlots` each, in the agent's own
 * clock, ending at the newest period of the path: a path whose agent went silent keeps its
 * last window (its liveness says it is stale). Percentiles over the window: p50 is the mean
 * of the periods' p50 weighted by their successful probes, p99 the highest period p99.
 * `latencyMs.baseline` is the current p50 until the path has had a healthy period.
 */

/** Index of each failure class in a slot's failure counts. */
export const classIndex: Readonly<Record<string, number>> = Object.fromEntries(
  failureClasses.map((c, i) => [c, i]),
);
export const classCount = failureClasses.length;

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
export interface WindowTotals {
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

/** What the ring reads and writes of a path (collector/paths/runtime.ts: `PathRuntime`). */
export interface WindowedPath {
  readonly win: Float64Array;
  /** Failures by class per slot, allocated only for slots that had failures. */
  winFail: (Uint32Array | undefined)[] | undefined;
  newestSlot: number;
  /** When the path last became ok from failing/unknown: degradation looks at the window after it. */
  readonly healthySinceMs: number;
  baselineMs: number;
  baselineSamples: number;
}

/** An empty window of `slots` slots. */
export function newWindow(slots: number): Float64Array {
  const win = new Float64Array(slots * STRIDE);
  for (let s = 0; s < slots; s++) win[s * STRIDE + SLOT_IDX] = -1;
  return win;
}

/** Failure ratio or ICMP loss of summed slots, whichever is higher. */
function lossOf(w: WindowTotals): number {
  return Math.max((w.count - w.ok) / w.count, w.lossW > 0 ? w.lossSum / w.lossW : 0);
}

/** The window arithmetic of a matrix: its slots, and one scratch of totals for every read. */
export class WindowRing {
  readonly slots: number;
  readonly slotMs: number;
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

  constructor(private readonly options: PathMatrixOptions) {
    this.slots = options.windowSlots;
    this.slotMs = Math.max(1, Math.round(options.windowMs / options.windowSlots));
  }

  /** Adds a period summary to the slot of its period (a slot older than the window: nothing). */
  add(p: WindowedPath, s: PathSummary): void {
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

  /**
   * Empties the slots that start at or after `fromMs`: when a path comes back at `fromMs`,
   * what they hold is period summaries that began before it (the outage's failures and lost
   * echoes) — the verdicts since the recovery read only slots that start after it.
   */
  forgetFrom(p: WindowedPath, fromMs: number): void {
    const w = p.win;
    for (let slot = 0; slot < this.slots; slot++) {
      const base = slot * STRIDE;
      const idx = w[base + SLOT_IDX]!;
      if (idx < 0 || idx * this.slotMs < fromMs) continue;
      w[base + SLOT_IDX] = -1;
      for (let k = 1; k < STRIDE; k++) w[base + k] = 0;
      p.winFail?.[slot]?.fill(0);
    }
  }

  /** Sums the window's slots that start at or after `fromMs` into `this.totals`. */
  sum(p: WindowedPath, fromMs: number, withFailures: boolean): WindowTotals {
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

  /**
   * The degradation verdict over the window after the path last recovered: whether it shows
   * loss or slowness that chance would not give; undefined while it holds too few probes.
   */
  degraded(p: WindowedPath): boolean | undefined {
    const o = this.options;
    const t = this.sum(p, p.healthySinceMs, false);
    if (t.count < o.degradedMinProbes) return undefined;
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
        const r = this.sum(p, fromMs, false);
        bad =
          // The sample: probes, or the echoes they sent.
          (Math.max(r.count, r.lossW) >= o.degradedMinProbes &&
            lossOf(r) >= o.degradedRecentLossRatio &&
            this.significantLoss(r)) ||
          this.significantlySlow(r.slow, r.periods);
        if (fromMs <= oldestMs) break;
      }
    }
    return bad;
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
  slowAgainstBaseline(p: WindowedPath, p50: number): boolean {
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

  /**
   * Teaches the baseline a healthy period's p50: a plain mean over the first
   * `baselineWarmupPeriods`, then an EWMA with time constant `baselineTauMs`.
   */
  learnBaseline(p: WindowedPath, p50Ms: number, periodMs: number): void {
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
}
