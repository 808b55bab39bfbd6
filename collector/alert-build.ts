import { createHash } from 'node:crypto';
import type { Diagnosis, FaultKind, Hypothesis } from '../wire/diagnosis.js';
import { failureClasses } from '../wire/result.js';
import type { AlertsConfig } from './config.js';
import type { IncidentRef } from './sinks/types.js';

/**
 * What an alert says: for each hypothesis of a diagnosis, its labels (the same on every
 * collector fed the same diagnosis, so an HA pair's alerts deduplicate), severity, fingerprint
 * and annotations. When it is sent is the engine's (collector/alerts.ts).
 */

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
  /**
   * Called before an alert fires from a diagnosis still settling (its wait for the settled
   * answer ran out): the incident record, which skips settling diagnoses, records this one,
   * so the alert's link finds its incident.
   */
  readonly firingWhileSettling?: (diagnosis: Diagnosis) => void;
  /**
   * Hosts whose own agent is late (live, its report overdue): a `path_blocked` alert naming
   * one waits (`alerts.lateHoldMax`). Absent: none is.
   */
  readonly lateHosts?: () => ReadonlySet<string>;
  /** When a path of the host last came back from failing, if lately (collector/settle.ts). */
  readonly recoveredAtMs?: (host: string) => number | undefined;
  /**
   * This collector's name (its inventory host, else the machine's host name): the
   * `collector` label of its own {@link collectorCutOffAlert}, so that two collectors cut
   * off are two alerts. No other alert carries it: two collectors diagnosing the same fault
   * send the same labels, and Alertmanager shows one alert.
   */
  readonly collector?: string;
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
export interface BuiltAlert {
  /** Identity: the labels without severity. */
  readonly key: string;
  readonly kind: FaultKind;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly fingerprint: string;
  readonly startsAtMs: number;
  /** Failing paths the hypothesis explains (its evidence's counts of failure classes). */
  readonly failingPaths: number;
  /** Paths the hypothesis speaks of: failing and degraded (its evidence's counts but `ok`). */
  readonly affectedPaths: number;
  /** The hypothesis' components. */
  readonly components: readonly string[];
  /** The hosts the hypothesis names: its components and its groups' members. */
  readonly hosts: readonly string[];
  /**
   * Probes lost on the way could be all its evidence: paths blocked at TCP/ICMP, or a
   * service's answers that timed out — not a refusal or an answer the service gave. A lossy
   * link makes the first look like a filter and the second like a hung service, and it
   * delays its host's own reports, which neither of those does (see `alerts.lateHoldMax`).
   */
  readonly lossCouldExplain: boolean;
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

/** Classes of a service's answer that timed out: its segments may have been lost on the way. */
const answerTimeouts: ReadonlySet<string> = new Set(['protocol_timeout', 'http_timeout']);

/** See {@link BuiltAlert.lossCouldExplain}. */
function lossCouldExplain(h: Hypothesis): boolean {
  if (h.kind === 'path_blocked') return true;
  if (h.kind !== 'service_unresponsive') return false;
  const classes = Object.entries(h.evidence.counts).filter(
    ([k, n]) => n > 0 && failureClassSet.has(k),
  );
  return classes.length > 0 && classes.every(([k]) => answerTimeouts.has(k) || k === 'tcp_timeout');
}

/** The labels and annotations of one hypothesis (see collector/alerts.ts and README). */
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
  if (h.collectorCutOff === true && ctx.collector !== undefined) labels.collector = ctx.collector;
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

function contentOf(b: Omit<BuiltAlert, 'content'>): string {
  return JSON.stringify([b.annotations, b.generatorUrl, b.startsAtMs]);
}

/**
 * The alerts of a diagnosis by identity (labels without severity), best-ranked first; see
 * the comment inside for the hypotheses that do not page.
 */
export function buildAlerts(
  d: Diagnosis,
  ctx: AlertContext,
  config: Pick<AlertsConfig, 'labels' | 'externalUrl' | 'runbookUrl'>,
): Map<string, BuiltAlert> {
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
    const a = buildAlert(h, d, ctx, config);
    const key = identityKey(a.labels);
    // Two hypotheses with the same labels are one alert: the better-ranked one speaks.
    if (out.has(key)) continue;
    const hosts = [...new Set([...h.components, ...h.groups.flatMap((g) => g.members)])];
    const b = {
      key,
      kind: h.kind,
      startsAtMs: h.since,
      failingPaths: failingPathsOf(h),
      affectedPaths: failingPaths(h),
      components: h.components,
      hosts,
      lossCouldExplain: lossCouldExplain(h),
      ...a,
    };
    out.set(key, { ...b, content: contentOf(b) });
  }
  return out;
}
