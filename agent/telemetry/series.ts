import { isIP } from 'node:net';
import type { Attributes, HrTime } from '@opentelemetry/api';
import type { Histogram, MetricDescriptor } from '@opentelemetry/sdk-metrics';
import type { KindMetric, KindSeriesSink, ProbeTelemetry } from '../../probes/types.js';
import { failureClasses, type FailureClass, type ProbeResult } from '../../wire/result.js';
import { kindDescriptor, pathMetrics as m, phaseNames } from './catalogue.js';

/*
 * Per-path state and the one definition of a path's series (`visitPath`), which both
 * exporters share: OTLP as data points (otlp.ts), Prometheus as text (prometheus.ts).
 */

/** See `AgentTelemetryOptions.probeInstance`. */
export const probeInstanceModes = ['scrape', 'address'] as const;
export type ProbeInstance = (typeof probeInstanceModes)[number];

/** See `SeriesSelection.blackbox`. */
export const blackboxSeriesModes = ['core', 'full'] as const;
export type BlackboxSeries = (typeof blackboxSeriesModes)[number];

/**
 * Which per-path series the agent exports beyond the default set (agent config `metrics`).
 * A path's default series are a handful of gauges and one counter (~0.6 KB a scrape); each
 * opt-in multiplies that, so it is for the agents whose users need it.
 */
export interface SeriesSelection {
  /**
   * Per-path histograms: `faultline.probe.duration` (per phase for http) and
   * `faultline.probe.icmp.rtt`; 14 lines a scrape each, 2–5 per path. Off by default: the
   * last result's gauges and the results counter answer most questions, and the collector
   * keeps each path's latency baseline.
   */
  readonly histograms: boolean;
  /**
   * `core` (default): the blackbox_exporter series the usual dashboards and alert rules read —
   * `probe_success`, `probe_duration_seconds`, and the kinds' core ones
   * (`probe_http_status_code`, `probe_ssl_earliest_cert_expiry`, `probe_dns_query_succeeded`).
   * `full`: every series blackbox_exporter has for the check (`probe_http_duration_seconds`
   * by phase, `probe_ip_protocol`, `probe_dns_lookup_time_seconds`, `probe_icmp_duration_seconds`…).
   */
  readonly blackbox: BlackboxSeries;
}

export const defaultSeriesSelection: SeriesSelection = Object.freeze({
  histograms: false,
  blackbox: 'core',
});

/** The part of a configured target telemetry needs: its labels, used as given. */
export interface TelemetryTarget {
  readonly labels: Readonly<Record<string, string>>;
}

/** Index of each failure class in `PathState.classCounts`. */
export const classIndex = Object.fromEntries(failureClasses.map((c, i) => [c, i])) as Record<
  FailureClass,
  number
>;

/** A cumulative explicit-bucket histogram: a few array writes per value, no allocation. */
export class Hist {
  readonly counts: Float64Array;
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  record(v: number): void {
    const b = this.bounds;
    let i = 0;
    // Bounds are inclusive upper limits, as in OTel and Prometheus.
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]! += 1;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  value(): Histogram {
    return {
      buckets: { boundaries: this.bounds as number[], counts: Array.from(this.counts) },
      count: this.count,
      sum: this.sum,
      min: this.min,
      max: this.max,
    };
  }
}

/** Everything exported about one (target, kind) path. */
export interface PathState {
  target: TelemetryTarget;
  labels: Readonly<Record<string, string>>;
  readonly base: Attributes;
  /** The target's address or URL, as the last result gave it. */
  address: string;
  /** `base` plus `address` (and `instance` when it is the target): the `probe_*` series' labels. */
  bb: Attributes;
  readonly startTime: HrTime;
  /** Gauges are read from the last result at collection time: nothing to update per result. */
  last: ProbeResult;
  readonly classCounts: Float64Array;
  readonly phases: (Hist | undefined)[];
  /** The kind's telemetry hooks (`ProbeDefinition.telemetry`). */
  readonly kindTelemetry: ProbeTelemetry | undefined;
  /** An echo kind (`ProbeDefinition.echo`): its RTTs go to the ICMP RTT histogram. */
  readonly echo: boolean;
  icmpRtt: Hist | undefined;
  skipped: number;
  /** Removed from the telemetry (a collection that started before skips it). */
  removed: boolean;
  /** Attribute sets derived from `base`, built once per (key, value): key → value → set. */
  readonly derived: Map<string, Map<string, Attributes>>;
  /** The same, derived from `bb`. */
  bbDerived: Map<string, Map<string, Attributes>>;
}

export function derive(
  cache: Map<string, Map<string, Attributes>>,
  from: Attributes,
  key: string,
  value: string,
): Attributes {
  // Two lookups on the (constant) strings rather than one on a concatenated key: no allocation.
  let byValue = cache.get(key);
  if (byValue === undefined) cache.set(key, (byValue = new Map<string, Attributes>()));
  let a = byValue.get(value);
  if (a === undefined) {
    a = { ...from, [key]: value };
    byValue.set(value, a);
  }
  return a;
}

export const with1 = (p: PathState, key: string, value: string): Attributes =>
  derive(p.derived, p.base, key, value);
export const bbWith1 = (p: PathState, key: string, value: string): Attributes =>
  derive(p.bbDerived, p.bb, key, value);

/** The `probe_*` series' labels: the path's, the target's address, and maybe `instance`. */
export function bbAttributes(
  base: Attributes,
  address: string,
  instance: ProbeInstance,
): Attributes {
  return instance === 'address' ? { ...base, address, instance: address } : { ...base, address };
}

/** 4 or 6 for an IP address, 0 for anything else (not resolved). */
export function ipProtocol(ip: unknown): number {
  return typeof ip === 'string' ? isIP(ip) : 0;
}

/** A kind's `series` hook writing one path's gauges into a sink. */
class KindSeries implements KindSeriesSink {
  constructor(
    private readonly p: PathState,
    private readonly sink: SeriesSink,
    private readonly full: boolean,
  ) {}

  gauge(metric: KindMetric, value: number, label?: string, labelValue?: string): void {
    if (!this.full && metric.core !== true) return;
    const p = this.p;
    const attributes = label === undefined ? p.bb : bbWith1(p, label, labelValue ?? '');
    this.sink.gauge(kindDescriptor(metric), value, attributes);
  }
}

export const pathKey = (target: string, kind: string): string => `${target}\u0000${kind}`;

export function sameLabels(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const ak = Object.keys(a);
  if (ak.length !== Object.keys(b).length) return false;
  for (const k of ak) if (a[k] !== b[k]) return false;
  return true;
}

export function msToHrTime(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

/** Where `visitPath` puts a path's series: OTel data points (OTLP) or Prometheus text. */
export interface SeriesSink {
  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void;
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void;
  histogram(d: MetricDescriptor, h: Hist, attributes: Attributes): void;
}

/**
 * Every series of one path, from its state: the one definition both exports share. Which
 * ones, and what each costs a scrape, is the table in the README's metrics section.
 */
export function visitPath(p: PathState, sink: SeriesSink, select: SeriesSelection): void {
  const r = p.last;
  const t = r.timings;
  const ok = r.class === 'ok' ? 1 : 0;
  const base = p.base;
  const full = select.blackbox === 'full';

  if (select.histograms) {
    for (let i = 0; i < p.phases.length; i++) {
      const h = p.phases[i];
      if (h !== undefined) sink.histogram(m.duration, h, with1(p, 'phase', phaseNames[i]!));
    }
    if (p.icmpRtt !== undefined) sink.histogram(m.icmpRtt, p.icmpRtt, base);
  }
  for (let i = 0; i < p.classCounts.length; i++) {
    const n = p.classCounts[i]!;
    if (n > 0) sink.counter(m.results, n, with1(p, 'class', failureClasses[i]!));
  }
  // Like the results by class, a series from the first skip on: nearly every path never
  // skips, and the agent-wide count (faultline_agent_probes_total{result="skipped"}) is always there.
  if (p.skipped > 0) sink.counter(m.skipped, p.skipped, base);

  sink.gauge(m.success, ok, base);
  sink.gauge(m.state, 1, with1(p, 'class', r.class));
  const bb = p.bb;
  const d = r.detail;
  sink.gauge(m.bbSuccess, ok, bb);
  sink.gauge(m.bbDuration, t.totalMs / 1000, bb);
  const kt = p.kindTelemetry;
  if (full) {
    sink.gauge(m.bbDns, (t.dnsMs ?? 0) / 1000, bb);
    if (kt?.blackboxIp !== undefined) sink.gauge(m.bbIpProtocol, ipProtocol(kt.blackboxIp(r)), bb);
  }
  const loss = d?.lossRatio;
  if (typeof loss === 'number') sink.gauge(m.icmpLoss, loss, base);
  kt?.series?.(r, new KindSeries(p, sink, full));
}
