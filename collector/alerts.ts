import type { Meter, ObservableCounter, ObservableGauge } from '@opentelemetry/api';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Diagnosis, FaultKind, Hypothesis } from '../wire/diagnosis.js';
import { failureClasses } from '../wire/result.js';
import type { AlertsConfig } from './config.js';
import { AlertDispatcher } from './sinks/dispatcher.js';
import type { DeliveryJournal, RetryPolicy, TargetStats } from './sinks/dispatcher.js';
import { sinkDefinition } from './sinks/registry.js';
import type { AlertBatch, AlertNotice, DeliveryTarget, IncidentRef } from './sinks/types.js';

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

export const severities = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof severities)[number];

/**
 * Severity by the role of the worst-hit component; any other role is `info`. A hypothesis
 * touching a database is critical: that is where outages turn into data loss and where
 * people go looking first.
 */
export const roleSeverity: Readonly<Record<string, Severity>> = {
  database: 'critical',
  api: 'warning',
  web: 'warning',
  queue: 'warning',
  cache: 'warning',
  dns: 'warning',
  other: 'info',
};

/** Share of all paths failing at or above which an alert is critical, whatever the role. */
export const criticalShare = 0.5;
/** Share at or above which it is at least a warning. */
export const warningShare = 0.1;
/** Kinds that lose visibility or quality, not reachability: never above warning. */
const cappedKinds: ReadonlySet<FaultKind> = new Set(['agent_silent', 'packet_loss']);

/** What the engine needs besides the diagnosis, from the collector's inventory and matrix. */
export interface AlertContext {
  /** Role of each inventory component, by name (config `inventory.components[].role`). */
  readonly roles: Readonly<Record<string, string>>;
  /** Paths in the matrix now: the denominator of the share of paths affected. */
  readonly totalPaths: number;
  /** The incident a hypothesis belongs to, when the incident store has one. */
  readonly incidentOf?: (hypothesis: Hypothesis) => IncidentRef | undefined;
}

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
}

/** One sample of the engine's metrics. */
export interface AlertMetric {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The alert of a hypothesis whose cut-off part is the collector's own side. */
export const collectorCutOffAlert = 'FaultlineCollectorCutOff';

/** `network_partition` → `FaultlineNetworkPartition`. */
export function alertName(kind: FaultKind): string {
  return `Faultline${kind
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('')}`;
}

/** A Prometheus label name from a topology label key (invalid characters become `_`). */
function labelName(raw: string): string {
  const name = raw.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(name) ? `_${name}` : name;
}

/** Paths the hypothesis explains: its evidence counts, `ok` paths quoted as support left out. */
export function failingPaths(h: Hypothesis): number {
  return Object.entries(h.evidence.counts).reduce((s, [k, n]) => (k === 'ok' ? s : s + n), 0);
}

/** See {@link roleSeverity}, {@link criticalShare}, {@link warningShare}. */
export function alertSeverity(h: Hypothesis, ctx: AlertContext): Severity {
  const rank = (s: Severity): number => severities.indexOf(s);
  let severity: Severity = 'info';
  for (const c of h.components) {
    const s = roleSeverity[ctx.roles[c] ?? 'other'] ?? 'info';
    if (rank(s) > rank(severity)) severity = s;
  }
  const share = ctx.totalPaths > 0 ? failingPaths(h) / ctx.totalPaths : 0;
  if (share >= criticalShare) severity = 'critical';
  else if (share >= warningShare && rank(severity) < rank('warning')) severity = 'warning';
  if (cappedKinds.has(h.kind) && rank(severity) > rank('warning')) severity = 'warning';
  // A collector that cannot see its fleet is blind to every other fault: that pages.
  if (h.collectorCutOff === true) severity = 'critical';
  return severity;
}

/** Hex digest of the sorted labels: equal labels, equal fingerprint, on any collector. */
export function labelsFingerprint(labels: Readonly<Record<string, string>>): string {
  const pairs = Object.keys(labels)
    .sort()
    .map((k) => [k, labels[k]]);
  return createHash('sha256').update(JSON.stringify(pairs)).digest('hex').slice(0, 16);
}

const maxExamples = 5;
const maxRuledOut = 10;
/**
 * Other hypotheses an alert names (the best-ranked): each alert listing every other one made
 * a diagnosis of a hundred hypotheses a hundred alerts of a hundred lines each.
 */
const maxOtherHypotheses = 5;

function percent(x: number): string {
  return `${Math.round(x * 100)}%`;
}

/** The first letter upper-cased: summaries start a sentence. */
function sentence(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** What an alert looks like for one hypothesis, before the engine decides to send it. */
interface BuiltAlert {
  /** Identity: the labels without severity. */
  readonly key: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly fingerprint: string;
  readonly startsAtMs: number;
  /** Failing paths the hypothesis explains (its evidence's counts of failure classes). */
  readonly failingPaths: number;
  readonly generatorUrl?: string;
  readonly incident?: IncidentRef;
  /** What a re-send compares: annotations, link and start, as one string. */
  readonly content: string;
}

const failureClassSet: ReadonlySet<string> = new Set(failureClasses.filter((c) => c !== 'ok'));

/** Failing paths a hypothesis explains: its evidence's counts, failure classes only. */
function failingPathsOf(h: Hypothesis): number {
  let n = 0;
  for (const [k, v] of Object.entries(h.evidence.counts)) if (failureClassSet.has(k)) n += v;
  return n;
}

/** The labels and annotations of one hypothesis (see the file comment and README). */
export function buildAlert(
  h: Hypothesis,
  d: Diagnosis,
  ctx: AlertContext,
  config: Pick<AlertsConfig, 'labels' | 'externalUrl' | 'runbookUrl'>,
): {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  fingerprint: string;
  generatorUrl?: string;
  incident?: IncidentRef;
} {
  const labels: Record<string, string> = { ...config.labels };
  // The collector's own cut pages as what it is — "I am cut off" — never as the far side.
  labels.alertname = h.collectorCutOff === true ? collectorCutOffAlert : alertName(h.kind);
  labels.kind = h.kind;
  if (h.components.length > 0) labels.component = [...h.components].sort().join(',');
  if (h.cutLabel !== undefined) {
    labels[`cut_${labelName(h.cutLabel.key)}`] = [...h.cutLabel.values].sort().join(',');
  }
  labels.severity = alertSeverity(h, ctx);
  const fingerprint = labelsFingerprint(labels);

  const ruledOut = d.ruledOut.filter((r) => r.canBeRuledOut);
  const notRuledOut = d.ruledOut.filter((r) => !r.canBeRuledOut);
  const ruledOutNames = ruledOut.map((r) => r.component);
  const failing = failingPaths(h);
  const countsText = Object.entries(h.evidence.counts)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([cls, n]) => `${cls} ${n}`)
    .join(', ');
  const lines: string[] = [
    `Most likely (confidence ${percent(h.confidence)}): ${h.summary}.`,
    `Since ${new Date(h.since).toISOString()}.`,
  ];
  if (h.cutLabel !== undefined) {
    lines.push(`Cut: ${h.cutLabel.key} ${h.cutLabel.values.join(', ')}.`);
  }
  if (h.groups.length > 0) {
    const groups = h.groups.map(
      (g) => `${g.name === undefined ? '' : `${g.name} `}{${g.members.join(', ')}}`,
    );
    lines.push(`Groups: ${groups.join('; ')}.`);
  }
  lines.push(
    `Evidence: ${failing} failing path${failing === 1 ? '' : 's'}${
      ctx.totalPaths > 0 ? ` of ${ctx.totalPaths} (${percent(failing / ctx.totalPaths)})` : ''
    }: ${countsText || 'none'}.`,
  );
  for (const ex of h.evidence.examples.slice(0, maxExamples)) lines.push(`  e.g. ${ex}`);
  if (ruledOut.length > 0) {
    lines.push('Ruled out:');
    for (const r of ruledOut.slice(0, maxRuledOut)) lines.push(`  - ${r.reason}`);
  }
  if (notRuledOut.length > 0) {
    lines.push('Cannot be ruled out:');
    for (const r of notRuledOut.slice(0, maxRuledOut)) lines.push(`  - ${r.reason}`);
  }
  const others = d.hypotheses.filter((x) => x !== h);
  if (others.length > 0) {
    const shown = others
      .slice(0, maxOtherHypotheses)
      .map((x) => `${x.kind} (${x.components.join(', ') || '—'}, ${percent(x.confidence)})`);
    const more = others.length - shown.length;
    lines.push(
      `Other hypotheses: ${shown.join('; ')}${more > 0 ? `; and ${more} more (GET /api/v1/diagnosis)` : ''}.`,
    );
  }
  const summary = `${sentence(h.summary)}${
    ruledOutNames.length > 0 ? ` — ruled out: ${ruledOutNames.join(', ')}` : ''
  }`;
  const annotations: Record<string, string> = {
    summary,
    description: lines.join('\n'),
    confidence: String(h.confidence),
  };
  if (ruledOutNames.length > 0) annotations.ruled_out = ruledOutNames.join(', ');
  if (config.runbookUrl !== undefined) {
    annotations.runbook_url = config.runbookUrl
      .replaceAll('{kind}', h.kind)
      .replaceAll('{alertname}', labels.alertname);
  }
  const incident = ctx.incidentOf?.(h);
  if (incident !== undefined) {
    annotations.incident_id = incident.id;
    if (incident.url !== undefined) annotations.incident_url = incident.url;
  }
  const base = config.externalUrl?.replace(/\/+$/, '');
  return {
    labels,
    annotations,
    fingerprint,
    ...(base === undefined ? {} : { generatorUrl: `${base}/?alert=${fingerprint}` }),
    ...(incident === undefined ? {} : { incident }),
  };
}

function identityKey(labels: Readonly<Record<string, string>>): string {
  const { severity: _s, ...rest } = labels;
  return JSON.stringify(
    Object.keys(rest)
      .sort()
      .map((k) => [k, rest[k]]),
  );
}

interface Tracked {
  phase: 'pending' | 'firing' | 'resolved';
  current: BuiltAlert;
  /** When the current phase began. */
  sinceMs: number;
  requiredHoldMs: number;
  /** When it last resolved, while remembered (for the re-fire hold). */
  resolvedAtMs?: number;
  /** Firing: what was last sent, and when. */
  sent?: AlertNotice;
  sentContent?: string;
  lastSentMs: number;
}

function contentOf(b: Omit<BuiltAlert, 'content'>): string {
  return JSON.stringify([b.annotations, b.generatorUrl, b.startsAtMs]);
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
  /** When a firing alert last resolved, and how many failing paths it spoke of. */
  private lastFaultEnd = { atMs: Number.NEGATIVE_INFINITY, failingPaths: 0 };
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

  private build(d: Diagnosis, ctx: AlertContext): Map<string, BuiltAlert> {
    const out = new Map<string, BuiltAlert>();
    // One page per fault: a hypothesis naming a component that a better-ranked one already
    // pages for is another reading of the same evidence (a pair's MTU loss beside the host's,
    // a blocked path beside the partition), not a second fault. Its alert would page a
    // wrong cause; it is listed in the paged alert's "Other hypotheses" instead, and pages
    // by itself only once it stands alone.
    const paged = new Set<string>();
    for (const h of d.hypotheses) {
      if (h.components.some((c) => paged.has(c))) continue;
      for (const c of h.components) paged.add(c);
      const a = buildAlert(h, d, ctx, this.config);
      const key = identityKey(a.labels);
      // Two hypotheses with the same labels are one alert: the better-ranked one speaks.
      if (out.has(key)) continue;
      const b = { key, startsAtMs: h.since, failingPaths: failingPathsOf(h), ...a };
      out.set(key, { ...b, content: contentOf(b) });
    }
    return out;
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

  private evaluate(nowMs: number): void {
    const last = this.last;
    if (last === undefined) return;
    const built = (last.built ??= this.build(last.diagnosis, last.ctx));
    const alerts: AlertNotice[] = [];
    const changes: AlertNotice[] = [];
    const d = last.diagnosis;
    const settling = d.settling === true && this.config.settleMaxMs > 0;
    let settleWakeMs = Number.POSITIVE_INFINITY;
    /** While settling, until when a pending alert since `sinceMs` waits. */
    const settleUntil = (sinceMs: number): number =>
      Math.min(d.settlingSinceMs ?? sinceMs, sinceMs) + this.config.settleMaxMs;
    // A firing alert that resolves now: what appears with its end is its tail (see below).
    for (const [key, t] of this.tracked)
      if (t.phase === 'firing' && !built.has(key))
        this.lastFaultEnd = { atMs: nowMs, failingPaths: t.current.failingPaths };
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
      if (t.phase === 'pending') {
        const waitUntil = settling ? settleUntil(t.sinceMs) : 0;
        // The heal's tail: a hypothesis about fewer paths than a fault whose alert resolved,
        // failing since before that — the fault's own paths recovering unevenly, read as
        // another cause for a moment — holds `healTailHold` first; a fault that outlasts the
        // heal still pages. (A fault still arriving is read anew with more paths, not fewer:
        // no hold.)
        const end = this.lastFaultEnd;
        const tail = b.startsAtMs < end.atMs && b.failingPaths < end.failingPaths;
        const hold = tail
          ? Math.max(t.requiredHoldMs, this.config.healTailHoldMs)
          : t.requiredHoldMs;
        if (nowMs < waitUntil) settleWakeMs = Math.min(settleWakeMs, waitUntil);
        else if (nowMs - t.sinceMs < hold) {
          if (tail) settleWakeMs = Math.min(settleWakeMs, t.sinceMs + hold);
        } else {
          t.phase = 'firing';
          t.sinceMs = nowMs;
          changes.push(fire(t, b));
        }
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
