import { failureLayer } from '../../wire/result.js';
import type { FailureClass, ProbeResult } from '../../wire/result.js';
import type { PathSummary } from '../../wire/report.js';
import type { PathState } from '../types.js';
import type { Transition } from './checkpoint.js';
import type { PathMatrixOptions } from './options.js';
import { blipShownAt, fellShownAt, type PathRuntime } from './runtime.js';
import type { WindowRing } from './window.js';

/**
 * The state of a path as its probes come in: the debounce, confirmation bursts, flap damping
 * and when the degraded verdict (collector/paths/window.ts) is taken.
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
 */

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
  /** A change: the path came back (failing → ok or degraded). */
  readonly recovered?: boolean;
}

/** Bits 1..of: every re-probe of a burst of `of`. */
function fullBurst(of: number): number {
  return ((1 << (of + 1)) - 1) & ~1;
}

/**
 * Reads a batch's results and summaries into its paths' states, collecting the transitions
 * and settle signals of the apply under way (the matrix sets and takes them).
 */
export class PathStates {
  /** Transitions of the open apply (recorded only while `emit`). */
  transitions: Transition[] = [];
  /** Settle signals of the open apply; undefined until the first (most batches have none). */
  signals: SettleSignal[] | undefined;
  /** The report batch being read, for its transitions. */
  batchSeq = 0;
  /** Off while a restore replays batches: their changes are already stored. */
  emit = true;
  /**
   * Whether the batch being applied changed what a path means to the localiser — its
   * state, last class or state start, or a degraded path's ratios — beyond its counters.
   */
  meaningChanged = false;
  /**
   * Whether the batch being applied showed a path's recent fall or ended its showing (see
   * `showFall`): no transition, but the diagnosis must be recomputed.
   */
  fallsShownChanged = false;

  constructor(
    private readonly options: PathMatrixOptions,
    private readonly ring: WindowRing,
  ) {}

  /** A full result: the exact class sequence, and the confirmation bursts. */
  takeResult(p: PathRuntime, r: ProbeResult): void {
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
    this.showFall(p);
  }

  /**
   * Notes a recent fall's or blip's showing beginning or ending ({@link fellShownAt},
   * {@link blipShownAt}).
   */
  private showFall(p: PathRuntime): void {
    const fell = fellShownAt(p, this.options.flapStableMs);
    const blip = blipShownAt(p, this.options.blipShowMs);
    if (fell === p.fellShown && blip === p.blipShown) return;
    p.fellShown = fell;
    p.blipShown = blip;
    this.meaningChanged = true;
    this.fallsShownChanged = true;
  }

  private signal(type: SettleSignal['type'], p: PathRuntime, recovered = false): void {
    if (!this.emit) return;
    (this.signals ??= []).push({
      type,
      key: `${p.agent}\u0000${p.target}`,
      agent: p.agent,
      component: p.component,
      ...(recovered ? { recovered } : {}),
    });
  }

  /** A period summary: the window, the baseline, and what the results could not say. */
  takeSummary(p: PathRuntime, s: PathSummary): void {
    if (s.toMs > p.lastSeenMs) p.lastSeenMs = s.toMs;
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
    // (After the results it says: a path it brings back forgets the outage's slots first.)
    // A period that began before the path last came back holds the outage's failures, not
    // loss since: only what it got through goes in the window (a heal's boundary period read
    // as a third of the echoes lost, and a healed host as a lossy one).
    this.ring.add(
      p,
      s.fromMs < p.recoveredAtMs && (s.ok < s.count || (s.lossRatio ?? 0) > 0)
        ? outageTrimmed(s)
        : s,
    );
    p.fullSinceSummary = 0;
    this.judgeDegraded(p, s.toMs, s.lastSeq);
    // A degraded path's loss and failure ratios move with every summary.
    if (p.state === 'degraded') this.meaningChanged = true;
    this.showFall(p);
    // A slow period does not teach the baseline either: slow is what it is there to see.
    if (
      p.state === 'ok' &&
      !periodFailed &&
      s.latencyMs !== undefined &&
      s.ok > 0 &&
      !this.ring.slowAgainstBaseline(p, s.latencyMs.p50)
    )
      this.ring.learnBaseline(p, s.latencyMs.p50, s.toMs - s.fromMs);
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
      // Falling again: the fall before this one was recent, and a blip.
      p.fellAgain = penalty > 0 && p.lastFallBlip;
      p.lastFallBlip = false;
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
      // A network-layer failure the path came back from without falling: a blip.
      if (
        p.consecutiveFailures > 0 &&
        (p.state === 'ok' || p.state === 'degraded') &&
        failureLayer[p.lastClass] === 'network'
      ) {
        p.blipBeforeMs = p.blipAtMs;
        p.blipAtMs = atMs;
      }
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
    if (to === 'ok' && (p.state === 'failing' || p.state === 'unknown')) {
      p.healthySinceMs = atMs;
      // Periods summarised before the recovery was known that end after it: the outage's.
      if (p.state === 'failing') {
        p.recoveredAtMs = atMs;
        this.ring.forgetFrom(p, atMs);
      }
    }
    // Back up: was the fall a blip?
    if (to === 'ok' && (p.state === 'failing' || p.state === 'degraded') && p.flapPenalty > 0)
      p.lastFallBlip = atMs - p.flapAtMs <= this.options.flapBlipMs;
    this.meaningChanged = true;
    this.signal('change', p, p.state === 'failing' && to !== 'failing');
    // A failure that changes class stays one failure: it keeps the class it began with.
    if (to !== 'failing' || p.state !== 'failing') p.firstClass = toClass;
    p.state = to;
    p.stateClass = toClass;
    p.sinceMs = atMs;
  }

  private judgeDegraded(p: PathRuntime, atMs: number, seq: number): void {
    // During a run of failures the verdict waits: it ends in `failing` or in a success.
    if ((p.state !== 'ok' && p.state !== 'degraded') || p.consecutiveFailures > 0) return;
    const bad = this.ring.degraded(p);
    if (bad === undefined) return;
    if (bad && p.state === 'ok') this.transition(p, 'degraded', p.lastClass, atMs, seq);
    else if (!bad && p.state === 'degraded') this.transition(p, 'ok', p.lastClass, atMs, seq);
  }
}

/** A period summary without its failures and lost echoes: what got through of it. */
function outageTrimmed(s: PathSummary): PathSummary {
  const { lossRatio: _loss, echoes: _echoes, ...rest } = s;
  return { ...rest, count: s.ok, failures: {} };
}
