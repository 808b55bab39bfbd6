import type { Meter, ObservableCounter, ObservableGauge } from '@opentelemetry/api';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Diagnosis } from '../wire/diagnosis.js';
import { buildAlerts, collectorCutOffAlert } from './alert-build.js';
import type { AlertContext, BuiltAlert } from './alert-build.js';
import type { AlertsConfig } from './config.js';
import { AlertDispatcher } from './sinks/dispatcher.js';
import type { DeliveryJournal, RetryPolicy, TargetStats } from './sinks/dispatcher.js';
import { sinkDefinition } from './sinks/registry.js';
import type { AlertBatch, AlertNotice, DeliveryTarget } from './sinks/types.js';

/**
 * The alert engine: turns each diagnosis into one alert per hypothesis, with labels that
 * are the same on every collector fed the same diagnosis (so an HA pair's alerts
 * deduplicate in Alertmanager), and hands what is due to the sinks.
 *
 * Life of an alert, keyed by its labels without `severity`:
 * - **pending** from the first diagnosis that has the hypothesis; it fires once the
 *   hypothesis has held without a gap for `holdFor` (a gap starts the wait again) and the
 *   diagnosis is not `settling` (a fault still arriving may turn out to be another cause:
 *   the first agents' failures look like a blocked path until the others' arrive). The
 *   settling wait is bounded: it fires anyway `settleMax` after the earlier of the
 *   settling's start and its own;
 * - **firing**: sent at once, then again every `resendEvery` with `endsAt` = now +
 *   {@link endsAtResends} × `resendEvery`, so Alertmanager never lets it lapse while the fault
 *   lasts but does if every collector stops; sent again at once when its text changes; a
 *   change of severity resolves the old label set and fires the new one;
 * - **resolved** when a diagnosis no longer has it: sent with `endsAt` = now. For
 *   {@link flapMemoryMs} after that, the same alert must hold for `refireHoldFor` (not just
 *   `holdFor`) to fire again: a single bad probe does not re-fire a resolved alert.
 * Stopping the engine resolves nothing: the other collector of an HA pair keeps the alert,
 * and without one it lapses at its `endsAt`.
 *
 * Everything is a function of the inputs and the clock passed in (`update(…, nowMs)`,
 * `tick(nowMs)`): tests drive it with an injected clock and `tickMs: 0`.
 */

/** `endsAt` of a firing alert is this many resend periods ahead (as Prometheus does). */
export const endsAtResends = 4;
/** How long a resolved alert is remembered for the re-fire hold. */
export const flapMemoryMs = 60 * 60_000;
/** While a pending alert waits for a late agent, it looks again this often. */
export const latePollMs = 250;

/** Options of {@link AlertEngine}. */
export interface AlertEngineOptions {
  /** The collector config's `alerts:` section. */
  readonly config: AlertsConfig;
  /**
   * The collector's data dir: undeliverable alerts go to `alerts-dead-letter.jsonl` in it.
   */
  readonly dataDir: string;
  /**
   * Where webhook messages wait until delivered, across restarts and crashes: the
   * collector's Store (its outbox). Without it they wait in memory, and what is left at
   * `close()` is dead-lettered.
   */
  readonly journal?: DeliveryJournal;
  /** Delivery targets; default: made from `config.sinks` through the sink registry. */
  readonly targets?: readonly DeliveryTarget[];
  /** Wall clock in epoch ms for the engine's own ticks (default Date.now). */
  readonly clockMs?: () => number;
  /** How often the engine ticks by itself (default 1000 ms; 0: only when `tick()` is called). */
  readonly tickMs?: number;
  /** Retry policy of every target (defaults: 5 attempts, 500 ms doubling up to 30 s). */
  readonly retry?: Partial<RetryPolicy>;
  /** Uniform [0, 1) for the backoff jitter (default Math.random). */
  readonly random?: () => number;
  /** Sent as User-Agent (default `faultline-collector`). */
  readonly userAgent?: string;
  readonly log?: Logger;
}

/** One alert as the engine holds it now. */
export interface AlertView {
  readonly phase: 'pending' | 'firing' | 'resolved';
  /** The labels it has (or will fire with). */
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly fingerprint: string;
  /** When the current phase began (epoch ms). */
  readonly sinceMs: number;
  /** Pending: what it waits for before it fires, and until when (see `AlertEngine`). */
  readonly waitingFor?: readonly AlertWait[];
}

/** Why a pending alert has not fired yet (see `AlertEngine.waitsOf`). */
export type AlertWaitReason =
  | 'holdFor'
  | 'lossHoldFor'
  | 'settling'
  | 'late agent'
  | 'loss tail'
  | 'heal tail'
  | 're-read'
  | 'healing'
  | 'fall tail'
  | 'fell again';

/** One thing a pending alert waits for. */
export interface AlertWait {
  readonly reason: AlertWaitReason;
  /** It ends by this time at the latest (epoch ms). */
  readonly untilMs: number;
  /** When to look again, if sooner than `untilMs` (a late agent's report may end it). */
  readonly wakeMs?: number;
}

/** One sample of the engine's metrics. */
export interface AlertMetric {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Tracked {
  phase: 'pending' | 'firing' | 'resolved';
  current: BuiltAlert;
  /** When the current phase began. */
  sinceMs: number;
  requiredHoldMs: number;
  /** Pending: the most failing paths its hypothesis spoke of since it appeared. */
  peakFailingPaths?: number;
  /**
   * The most paths (failing and degraded) its hypothesis spoke of since it appeared: a loss
   * resolves once its tail has aged out to one pair or so, and what a loss back on its hosts
   * is compared with is the loss at its largest, not that tail.
   */
  peakAffectedPaths?: number;
  /** Pending: it spoke of fewer paths as some of its hosts' paths came back (healing). */
  receded?: boolean;
  /** Pending: what it waited for at its last look. */
  waits?: readonly AlertWait[];
  /** When it last resolved, while remembered (for the re-fire hold). */
  resolvedAtMs?: number;
  /** Firing: what was last sent, and when. */
  sent?: AlertNotice;
  sentContent?: string;
  lastSentMs: number;
}

/** See the file comment. */
export class AlertEngine {
  private readonly config: AlertsConfig;
  private readonly dispatcher: AlertDispatcher;
  private readonly clockMs: () => number;
  private readonly tracked = new Map<string, Tracked>();
  /** The last diagnosis taken, and the alerts built from it (once: ticks reuse them). */
  private last:
    { diagnosis: Diagnosis; ctx: AlertContext; built?: Map<string, BuiltAlert> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Self-ticking engines: a tick when a wait for a settling diagnosis runs out. */
  private readonly selfTicking: boolean;
  private settleTimer: NodeJS.Timeout | undefined;
  /**
   * The last firing alerts that resolved: when, their most failing paths, their hosts —
   * every host when one was the collector's own isolation (it heard none of the far side,
   * whose agents come back one by one).
   */
  private lastFaultEnd: {
    atMs: number;
    failingPaths: number;
    hosts: Set<string>;
    everyHost: boolean;
  } = {
    atMs: Number.NEGATIVE_INFINITY,
    failingPaths: 0,
    hosts: new Set(),
    everyHost: false,
  };
  /**
   * Per host: the newest time a pending alert naming it vanished before it fired, and the
   * most failing paths such an alert spoke of then (see `fallTail`).
   */
  private readonly vanished = new Map<string, { atMs: number; failingPaths: number }>();
  /** The readings (kind and components) of the diagnosis before the last one. */
  private before: ReadonlySet<string> = new Set();
  /**
   * Per host: when a firing `packet_loss` alert naming it last resolved, and how many paths
   * it spoke of (see `lossTailHold`).
   */
  private readonly lossEnded = new Map<string, { atMs: number; paths: number }>();
  private closed = false;

  constructor(opts: AlertEngineOptions) {
    this.config = opts.config;
    this.clockMs = opts.clockMs ?? Date.now;
    const env = { userAgent: opts.userAgent ?? 'faultline-collector' };
    const targets =
      opts.targets ?? opts.config.sinks.flatMap((s) => sinkDefinition(s.type).targets(s, env));
    this.dispatcher = new AlertDispatcher({
      targets,
      deadLetterFile: join(opts.dataDir, 'alerts-dead-letter.jsonl'),
      ...(opts.journal === undefined ? {} : { journal: opts.journal }),
      ...(opts.retry === undefined ? {} : { retry: opts.retry }),
      ...(opts.random === undefined ? {} : { random: opts.random }),
      ...(opts.log === undefined ? {} : { log: opts.log }),
    });
    const tickMs = opts.tickMs ?? 1000;
    this.selfTicking = tickMs > 0;
    if (tickMs > 0) {
      this.timer = setInterval(() => this.tick(), tickMs);
      this.timer.unref();
    }
  }

  /**
   * Takes a new diagnosis (call it on every change, and at start with the current one).
   * Returns at once: deliveries run on the sinks' own queues.
   */
  update(diagnosis: Diagnosis, nowMs: number, ctx: AlertContext): void {
    if (this.closed) return;
    if (this.last !== undefined && this.last.diagnosis !== diagnosis)
      this.before = new Set(
        this.last.diagnosis.hypotheses.map((h) => readingOf(h.kind, h.components)),
      );
    this.last = { diagnosis, ctx };
    this.evaluate(nowMs);
  }

  /** Fires what held long enough and re-sends what is due, with the last diagnosis. */
  tick(nowMs: number = this.clockMs()): void {
    if (this.closed || this.last === undefined) return;
    this.evaluate(nowMs);
  }

  /** Every alert the engine holds now, pending, firing and recently resolved. */
  alerts(): AlertView[] {
    return [...this.tracked.values()].map((t) => ({
      phase: t.phase,
      labels: t.sent?.labels ?? t.current.labels,
      annotations: t.sent?.annotations ?? t.current.annotations,
      fingerprint: t.sent?.fingerprint ?? t.current.fingerprint,
      sinceMs: t.sinceMs,
      ...(t.phase === 'pending' && t.waits !== undefined ? { waitingFor: t.waits } : {}),
    }));
  }

  /** Per delivery target: sent, failed, retries, dead letters, queued. */
  deliveryStats(): TargetStats[] {
    return this.dispatcher.stats();
  }

  /**
   * The `faultline_alerts_*` samples: firing and pending alerts (gauges), and per sink
   * (`sink` label) deliveries sent, failed attempts, retries, dead letters (counters) and
   * what is queued (gauge).
   */
  metrics(): AlertMetric[] {
    const count = (phase: Tracked['phase']): number =>
      [...this.tracked.values()].filter((t) => t.phase === phase).length;
    const rows: AlertMetric[] = [
      {
        name: 'faultline_alerts_firing',
        type: 'gauge',
        help: 'Alerts firing now.',
        labels: {},
        value: count('firing'),
      },
      {
        name: 'faultline_alerts_pending',
        type: 'gauge',
        help: 'Hypotheses waiting out holdFor before they fire.',
        labels: {},
        value: count('pending'),
      },
    ];
    const perSink: [string, 'counter' | 'gauge', string, (s: TargetStats) => number][] = [
      [
        'faultline_alerts_sent_total',
        'counter',
        'Alert deliveries the receiver accepted.',
        (s) => s.sent,
      ],
      [
        'faultline_alerts_failed_total',
        'counter',
        'Alert delivery attempts that failed.',
        (s) => s.failed,
      ],
      [
        'faultline_alerts_retries_total',
        'counter',
        'Alert delivery attempts after the first.',
        (s) => s.retries,
      ],
      [
        'faultline_alerts_dead_letters_total',
        'counter',
        'Alert deliveries given up and written to the dead-letter file.',
        (s) => s.deadLetters,
      ],
      ['faultline_alerts_queued', 'gauge', 'Alert messages waiting for delivery.', (s) => s.queued],
    ];
    const stats = this.dispatcher.stats();
    for (const [name, type, help, value] of perSink) {
      for (const s of stats)
        rows.push({ name, type, help, labels: { sink: s.sink }, value: value(s) });
    }
    return rows;
  }

  /**
   * Adds {@link metrics} to `meter` as instruments: `faultline_alerts_sent_total` is the
   * counter `faultline.alerts.sent`, `faultline_alerts_firing` the gauge `faultline.alerts.firing`.
   */
  instrument(meter: Meter): void {
    const instruments = new Map<string, ObservableCounter | ObservableGauge>();
    for (const m of this.metrics()) {
      if (instruments.has(m.name)) continue;
      const name = m.name.replace(/_total$/, '').replace(/^faultline_alerts_/, 'faultline.alerts.');
      const opts = { unit: '', description: m.help };
      instruments.set(
        m.name,
        m.type === 'counter'
          ? meter.createObservableCounter(name, opts)
          : meter.createObservableGauge(name, opts),
      );
    }
    meter.addBatchObservableCallback(
      (o) => {
        for (const m of this.metrics()) {
          const instrument = instruments.get(m.name);
          if (instrument !== undefined) o.observe(instrument, m.value, m.labels);
        }
      },
      [...instruments.values()],
    );
  }

  /** Resolves once nothing is queued or in flight (tests). */
  idle(): Promise<void> {
    return this.dispatcher.idle();
  }

  /**
   * Stops ticking and taking diagnoses, gives deliveries up to `drainMs` to finish, and
   * dead-letters what is left. Resolves nothing (see the file comment). Idempotent.
   */
  async close(drainMs = 2_000): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    await this.dispatcher.close(drainMs);
  }

  private notice(b: BuiltAlert, nowMs: number): AlertNotice {
    return {
      fingerprint: b.fingerprint,
      status: 'firing',
      labels: b.labels,
      annotations: b.annotations,
      startsAtMs: Math.min(b.startsAtMs, nowMs),
      endsAtMs: nowMs + endsAtResends * this.config.resendEveryMs,
      ...(b.generatorUrl === undefined ? {} : { generatorUrl: b.generatorUrl }),
      ...(b.incident === undefined ? {} : { incident: b.incident }),
    };
  }

  /**
   * A self-ticking engine ticks when a settling wait runs out (the diagnosis' own settle
   * timer usually brings the settled document first).
   */
  private wakeForSettle(atMs: number, nowMs: number): void {
    if (!this.selfTicking || this.closed) return;
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    if (!Number.isFinite(atMs)) return;
    this.settleTimer = setTimeout(
      () => {
        this.settleTimer = undefined;
        this.tick();
      },
      Math.max(1, atMs - nowMs + 1),
    );
    this.settleTimer.unref();
  }

  /** Notes a pending alert that vanished before it fired, by the hosts it named. */
  private noteVanished(b: BuiltAlert, nowMs: number): void {
    for (const h of b.hosts) {
      const v = this.vanished.get(h);
      if (v === undefined || nowMs - v.atMs >= this.config.healTailHoldMs)
        this.vanished.set(h, { atMs: nowMs, failingPaths: b.failingPaths });
      else {
        v.atMs = nowMs;
        v.failingPaths = Math.max(v.failingPaths, b.failingPaths);
      }
    }
    forgetOlder(this.vanished, nowMs - this.config.healTailHoldMs);
  }

  /**
   * A fall's tail: a `path_blocked` alert about fewer failing paths than a larger reading of
   * a host it names that vanished, unpaged, within `healTailHold` — a host or link that
   * fell for a moment (a host unreachable, still settling) and is coming back unevenly, the
   * paths not yet back reading as a filter the others pass. It holds `healTailHold`, as the
   * heal's tail of a paged fault does; a filter that stays pages that much later.
   */
  private fallTail(b: BuiltAlert, nowMs: number): boolean {
    if (b.kind !== 'path_blocked' || this.vanished.size === 0) return false;
    return b.hosts.some((h) => {
      const v = this.vanished.get(h);
      return (
        v !== undefined &&
        nowMs - v.atMs < this.config.healTailHoldMs &&
        b.failingPaths < v.failingPaths
      );
    });
  }

  /** Notes a firing `packet_loss` alert that resolved, by the hosts it named, at its largest. */
  private noteLossEnded(t: Tracked, nowMs: number): void {
    const paths = Math.max(t.peakAffectedPaths ?? 0, t.current.affectedPaths);
    for (const h of t.current.hosts) this.lossEnded.set(h, { atMs: nowMs, paths });
    forgetOlder(this.lossEnded, nowMs - this.config.lossTailHoldMs);
  }

  /**
   * Until when a pending `packet_loss` alert waits as the tail of a loss that was paged and
   * resolved on a host it names: `lossTailHold` after that resolve, while it speaks of fewer
   * paths than that loss did at its largest (its samples ageing out read as a narrower loss,
   * and the loss resolves only once they have mostly aged out; a loss back as large as
   * before is no tail). 0: no wait.
   */
  private lossTailUntil(b: BuiltAlert): number {
    if (b.kind !== 'packet_loss' || this.config.lossTailHoldMs <= 0) return 0;
    let until = 0;
    for (const h of b.hosts) {
      const e = this.lossEnded.get(h);
      if (e !== undefined && b.affectedPaths < e.paths)
        until = Math.max(until, e.atMs + this.config.lossTailHoldMs);
    }
    return until;
  }

  /**
   * Until when a pending alert that lost probes could explain ({@link BuiltAlert.lossCouldExplain}:
   * a blocked path, a hung answer) waits for a late agent of its hosts (0: no wait).
   */
  private lateWaitUntil(t: Tracked, b: BuiltAlert, ctx: AlertContext, nowMs: number): number {
    if (!b.lossCouldExplain || this.config.lateHoldMaxMs <= 0) return 0;
    const untilMs = t.sinceMs + this.config.lateHoldMaxMs;
    if (nowMs >= untilMs || ctx.lateHosts === undefined) return 0;
    const late = ctx.lateHosts();
    return b.hosts.some((h) => late.has(h)) ? untilMs : 0;
  }

  /**
   * What a pending alert still waits for, each with its reason and until when; none: it
   * fires now. Every wait is bounded. In one place, so that what holds a page is one policy:
   * - `holdFor` (and `refireHoldFor` after a recent resolve; `lossHoldFor` for loss): the
   *   hypothesis must have held that long without a gap;
   * - `settling`: the diagnosis says a fault is still arriving, at most `settleMax`;
   * - `late agent`: lost probes could be all its evidence and a host it names has a late
   *   agent, at most `lateHoldMax` (looked at again every {@link latePollMs});
   * - `loss tail`: a narrower loss on the hosts of a loss paged and resolved, `lossTailHold`
   *   after that resolve;
   * - `heal tail`, `re-read`, `healing`, `fall tail`, `fell again`: the end of a fault read
   *   as another cause, or a host falling again after it came back, `healTailHold` from
   *   when it appeared (see each below); a loss read at a heal's tail, `lossTailHold`.
   */
  private waitsOf(
    t: Tracked,
    b: BuiltAlert,
    ctx: AlertContext,
    nowMs: number,
    settleUntilMs: number,
  ): AlertWait[] {
    const waits: AlertWait[] = [];
    const peak = t.peakFailingPaths ?? 0;
    t.peakFailingPaths = Math.max(peak, b.failingPaths);
    // A fault whose paths come back before it was paged is healing, not arriving: a link
    // down for a moment (a flapping link's first fall) pages nothing if it is gone within
    // `healTailHold`; one that stays pages then. Its paths came back, not its agents'
    // views gone (a cut host's agent falling late drops its failing paths too). Not
    // loss: its paths come and go.
    if (
      t.receded !== true &&
      b.kind !== 'packet_loss' &&
      b.failingPaths < peak &&
      b.hosts.some((h) => (ctx.recoveredAtMs?.(h) ?? -Infinity) >= t.sinceMs)
    )
      t.receded = true;
    if (nowMs < settleUntilMs) waits.push({ reason: 'settling', untilMs: settleUntilMs });
    // A blocked path or a hung answer to or from a host whose own reports are overdue:
    // its link may be losing them (loss, or a cut arriving), which a filter or a hung
    // service does not do — its agent's next report tells; asked again every
    // `latePollMs`, bounded by `lateHoldMax`.
    const lateUntil = this.lateWaitUntil(t, b, ctx, nowMs);
    if (nowMs < lateUntil)
      waits.push({ reason: 'late agent', untilMs: lateUntil, wakeMs: nowMs + latePollMs });
    // The tail of a loss paged and healed on these hosts: its samples ageing out.
    const lossTailUntil = this.lossTailUntil(b);
    if (nowMs < lossTailUntil) waits.push({ reason: 'loss tail', untilMs: lossTailUntil });
    // Loss is a verdict from samples: it holds `lossHoldFor` with the same hosts.
    const own =
      b.kind === 'packet_loss'
        ? Math.max(t.requiredHoldMs, this.config.lossHoldForMs)
        : t.requiredHoldMs;
    const ownReason: AlertWaitReason =
      b.kind === 'packet_loss' && own > t.requiredHoldMs ? 'lossHoldFor' : 'holdFor';
    const tail = this.endReason(t, b, ctx, nowMs);
    // A tail lasts as long as the healed fault can linger in the reading: a loss is read
    // from the paths' 30 s windows, where the heal's own lost probes (a neighbour entry
    // resolved again, the first echoes after a link came up) stay that long.
    const tailMs =
      tail !== undefined && b.kind === 'packet_loss' && (tail === 'heal tail' || tail === 're-read')
        ? Math.max(this.config.healTailHoldMs, this.config.lossTailHoldMs)
        : this.config.healTailHoldMs;
    const [reason, hold]: [AlertWaitReason, number] =
      tail !== undefined && tailMs > own ? [tail, tailMs] : [ownReason, own];
    if (nowMs - t.sinceMs < hold) waits.push({ reason, untilMs: t.sinceMs + hold });
    return waits;
  }

  /**
   * Why a pending alert holds `healTailHold` from when it appeared, if it does: a reading of
   * a fault's end (or of a host falling again) that would page a cause that is gone.
   */
  private endReason(
    t: Tracked,
    b: BuiltAlert,
    ctx: AlertContext,
    nowMs: number,
  ): AlertWaitReason | undefined {
    // The heal's tail: a hypothesis about fewer paths than a fault whose alert resolved,
    // failing since before that, or appearing within `healTailHold` after it on the
    // hosts it named — the fault's own paths recovering unevenly (some come back, fall
    // again a moment, read as loss), read as another cause for a moment — holds
    // `healTailHold` first; a fault that outlasts the heal still pages. (A fault still
    // arriving is read anew with more paths, not fewer: no hold.)
    const end = this.lastFaultEnd;
    const onItsHosts =
      t.sinceMs - end.atMs < this.config.healTailHoldMs &&
      (end.everyHost || b.hosts.some((h) => end.hosts.has(h)));
    if ((b.startsAtMs < end.atMs || onItsHosts) && b.failingPaths < end.failingPaths)
      return 'heal tail';
    // So does the same fault re-read: a reading that was not there before, appearing on
    // its hosts the moment it resolved, about as many paths, failing since before — the
    // collector's side cut off, read as its own host's fault as the far side's spooled
    // reports arrive before its own agent has probed again.
    if (
      t.sinceMs === end.atMs &&
      onItsHosts &&
      b.startsAtMs < end.atMs &&
      b.failingPaths === end.failingPaths &&
      !this.before.has(readingOf(b.kind, b.components))
    )
      return 're-read';
    if (t.receded === true) return 'healing';
    if (this.fallTail(b, nowMs)) return 'fall tail';
    if (fellAgain(t, b, ctx, this.config)) return 'fell again';
    return undefined;
  }

  private evaluate(nowMs: number): void {
    const last = this.last;
    if (last === undefined) return;
    const built = (last.built ??= buildAlerts(last.diagnosis, last.ctx, this.config));
    const alerts: AlertNotice[] = [];
    const changes: AlertNotice[] = [];
    const d = last.diagnosis;
    const settling = d.settling === true && this.config.settleMaxMs > 0;
    let settleWakeMs = Number.POSITIVE_INFINITY;
    let recordedSettling = false;
    /** While settling, until when a pending alert since `sinceMs` waits. */
    const settleUntil = (sinceMs: number): number =>
      Math.min(d.settlingSinceMs ?? sinceMs, sinceMs) + this.config.settleMaxMs;
    // A firing alert that resolves now: what appears with its end is its tail (see below).
    for (const [key, t] of this.tracked) {
      if (built.has(key)) continue;
      if (t.phase === 'pending') this.noteVanished(t.current, nowMs);
      if (t.phase !== 'firing') continue;
      const end = this.lastFaultEnd;
      if (end.atMs !== nowMs)
        this.lastFaultEnd = { atMs: nowMs, failingPaths: 0, hosts: new Set(), everyHost: false };
      const now = this.lastFaultEnd;
      now.failingPaths = Math.max(now.failingPaths, t.current.failingPaths);
      for (const h of t.current.hosts) now.hosts.add(h);
      if (t.current.labels.alertname === collectorCutOffAlert) now.everyHost = true;
      if (t.current.kind === 'packet_loss') this.noteLossEnded(t, nowMs);
    }
    const fire = (t: Tracked, b: BuiltAlert): AlertNotice => {
      const n = this.notice(b, nowMs);
      t.sent = n;
      t.sentContent = b.content;
      t.lastSentMs = nowMs;
      alerts.push(n);
      return n;
    };
    const resolve = (t: Tracked): void => {
      if (t.sent === undefined) return;
      const r: AlertNotice = { ...t.sent, status: 'resolved', endsAtMs: nowMs };
      t.sent = r;
      alerts.push(r);
      changes.push(r);
    };

    for (const [key, b] of built) {
      let t = this.tracked.get(key);
      if (t === undefined || t.phase === 'resolved') {
        const resolvedAtMs = t?.resolvedAtMs;
        const recent = resolvedAtMs !== undefined && nowMs - resolvedAtMs < flapMemoryMs;
        t = {
          phase: 'pending',
          current: b,
          sinceMs: nowMs,
          requiredHoldMs: recent
            ? Math.max(this.config.holdForMs, this.config.refireHoldForMs)
            : this.config.holdForMs,
          ...(recent ? { resolvedAtMs } : {}),
          lastSentMs: 0,
        };
        this.tracked.set(key, t);
      }
      t.current = b;
      t.peakAffectedPaths = Math.max(t.peakAffectedPaths ?? 0, b.affectedPaths);
      if (t.phase === 'pending') {
        const waits = this.waitsOf(t, b, last.ctx, nowMs, settling ? settleUntil(t.sinceMs) : 0);
        t.waits = waits;
        if (waits.length === 0) {
          if (settling && !recordedSettling) {
            recordedSettling = true;
            last.ctx.firingWhileSettling?.(d);
            // The next evaluation builds the alerts again, with the incident now open.
            delete last.built;
          }
          t.phase = 'firing';
          t.sinceMs = nowMs;
          delete t.waits;
          changes.push(fire(t, b));
        } else for (const w of waits) settleWakeMs = Math.min(settleWakeMs, w.wakeMs ?? w.untilMs);
      } else if (t.sent !== undefined && t.sent.fingerprint !== b.fingerprint) {
        // Severity moved: Alertmanager knows alerts by their labels.
        resolve(t);
        changes.push(fire(t, b));
      } else if (t.sentContent !== b.content || nowMs - t.lastSentMs >= this.config.resendEveryMs) {
        fire(t, b);
      }
    }
    for (const [key, t] of this.tracked) {
      if (built.has(key)) continue;
      if (t.phase === 'pending') {
        // A blip after a resolve leaves the resolve remembered, not forgotten.
        if (t.resolvedAtMs === undefined) this.tracked.delete(key);
        else {
          t.phase = 'resolved';
          t.sinceMs = t.resolvedAtMs;
        }
      } else if (t.phase === 'firing') {
        resolve(t);
        t.phase = 'resolved';
        t.sinceMs = nowMs;
        t.resolvedAtMs = nowMs;
      }
      if (t.phase === 'resolved' && nowMs - t.sinceMs >= flapMemoryMs) this.tracked.delete(key);
    }
    this.wakeForSettle(settleWakeMs, nowMs);
    if (alerts.length === 0) return;
    const batch: AlertBatch = {
      sentAtMs: nowMs,
      alerts,
      changes,
      firing: [...this.tracked.values()].filter((t) => t.phase === 'firing').length,
      diagnosis: last.diagnosis,
    };
    this.dispatcher.dispatch(batch);
  }
}

/**
 * Bounds a per-host memory of the engine: past 4,096 hosts, forgets those noted before
 * `beforeMs` (they no longer hold anything).
 */
function forgetOlder(m: Map<string, { readonly atMs: number }>, beforeMs: number): void {
  if (m.size <= 4096) return;
  for (const [h, v] of m) if (v.atMs <= beforeMs) m.delete(h);
}

/**
 * Kinds that read a network fault: a host or hosts that stopped answering, a path blocked,
 * full-size packets lost (a flapping link's big echo lost while its small one got through).
 */
const networkKinds: ReadonlySet<string> = new Set([
  'network_partition',
  'host_unreachable',
  'path_blocked',
  'mtu_mismatch',
]);

/**
 * A network fault on a host whose paths came back from failing within `healTailHold`
 * before the alert appeared, or since: the host fell, came back, and fell again — a
 * flapping link, which `packet_loss` reads once its samples show it (routers damp a flapping
 * route the same way). It holds `healTailHold`; a host that fell for good after a blip
 * pages that much later. (A fault arriving has no path come back; a heal's own tail is
 * held above.)
 */
function fellAgain(t: Tracked, b: BuiltAlert, ctx: AlertContext, config: AlertsConfig): boolean {
  if (!networkKinds.has(b.kind) || config.healTailHoldMs <= 0 || ctx.recoveredAtMs === undefined)
    return false;
  const sinceMs = t.sinceMs - config.healTailHoldMs;
  return b.components.some((h) => (ctx.recoveredAtMs?.(h) ?? -Infinity) >= sinceMs);
}

/** A hypothesis' reading, as {@link AlertEngine} remembers the previous diagnosis by. */
function readingOf(kind: string, components: readonly string[]): string {
  return `${kind}|${[...components].sort().join(',')}`;
}
