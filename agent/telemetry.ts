import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { ValueType, type Attributes, type HrTime, type Meter } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type CollectionResult,
  type DataPoint,
  type Histogram,
  type MetricData,
  type MetricDescriptor,
  type MetricProducer,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  descriptor,
  MetricsPipeline,
  PrometheusText,
  otlpPushFromEnv,
  prometheusContentType,
  prometheusName,
  type OtlpPushSettings,
} from '../lib/telemetry.js';
import { isProbeKind, probeRegistry } from '../probes/registry.js';
import type { KindMetric, KindSeriesSink, ProbeTelemetry } from '../probes/types.js';
import { failureClasses, type FailureClass, type ProbeResult } from '../wire/result.js';
import type { Logger } from './logger.js';

// Shared with the collector (lib/telemetry.ts); exported here too, where they were first.
export { otlpPushFromEnv, prometheusContentType, prometheusName, type OtlpPushSettings };

/**
 * Attribute names the agent puts on path metrics itself, plus the ones Prometheus adds at
 * scrape time. A target label must not use them (the config schema rejects them); were one
 * to slip through, the agent's own value wins.
 */
export const reservedMetricLabels: readonly string[] = [
  'agent',
  'target',
  'kind',
  'phase',
  'class',
  'result',
  'le',
  'job',
  'instance',
];

/**
 * Bucket upper bounds (seconds) of the probe duration histograms: 100 µs to 10 s, in steps
 * of ×2.5 and ×4. Eleven rather than the sixteen of a 1-2.5-5 ladder: at 1,000 paths each
 * bucket is another ~2,000 lines in every scrape.
 */
export const probeDurationBucketsS: readonly number[] = [
  0.0001, 0.00025, 0.001, 0.0025, 0.01, 0.025, 0.1, 0.25, 1, 2.5, 10,
];

/** Bucket upper bounds (seconds) of the schedule lag histogram; 20 ms is the agent's p99 goal. */
export const scheduleLagBucketsS: readonly number[] = [
  0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5,
];

/** Who this agent is; all of it lands on the OTel resource. */
export interface AgentTelemetryOptions {
  /** `faultline.agent` resource attribute and the `agent` attribute of every series. */
  readonly agentName: string;
  /** `host.name`; the OS hostname by default. */
  readonly hostName?: string;
  /** The agent's own labels (zone, rack…): resource attributes `faultline.agent.label.<key>`. */
  readonly agentLabels: Readonly<Record<string, string>>;
  /** `service.version`. */
  readonly serviceVersion: string;
  /** Export failures and recoveries are logged here (once per change, not per export). */
  readonly logger?: Logger;
  /**
   * What `instance` the blackbox-compatible `probe_*` series carry: `scrape` (default) none
   * of their own, so Prometheus sets the agent's scrape address; `address` the target's
   * address or URL, as a blackbox_exporter job relabels it (scrape with `honor_labels: true`).
   */
  readonly probeInstance?: ProbeInstance;
}

/** See `AgentTelemetryOptions.probeInstance`. */
export const probeInstanceModes = ['scrape', 'address'] as const;
export type ProbeInstance = (typeof probeInstanceModes)[number];

/** How `shutdown` went. It never throws. */
export interface TelemetryShutdown {
  /** True when everything flushed (including the final OTLP push, if configured). */
  readonly ok: boolean;
  readonly error?: string;
}

/** The part of a configured target telemetry needs: its labels, used as given. */
export interface TelemetryTarget {
  readonly labels: Readonly<Record<string, string>>;
}

// ---------------------------------------------------------------------------------------

const phaseNames = ['dns', 'connect', 'tls', 'first_byte', 'total'] as const;
const phaseTimings = ['dnsMs', 'connectMs', 'tlsMs', 'firstByteMs', 'totalMs'] as const;
const TOTAL = phaseNames.indexOf('total');
/** Paths rendered between two yields to the event loop while /metrics is built. */
const renderChunkPaths = 50;
const classIndex = Object.fromEntries(failureClasses.map((c, i) => [c, i])) as Record<
  FailureClass,
  number
>;
const probeResults = ['started', 'completed', 'skipped', 'error'] as const;
const [STARTED, COMPLETED, SKIPPED, ERROR] = [0, 1, 2, 3] as const;

/** Metrics produced from per-path state (see PathMetricProducer for why not SDK instruments). */
const m = {
  duration: descriptor(
    'faultline.probe.duration',
    's',
    'Probe durations: phase="total" for every kind; http adds dns, connect, tls and first_byte.',
  ),
  results: descriptor('faultline.probe.results', '{result}', 'Probe results by failure class.'),
  skipped: descriptor(
    'faultline.probe.skipped',
    '{probe}',
    'Probes not started because the previous one on this path was still running.',
  ),
  success: descriptor(
    'faultline.probe.success',
    '',
    '1 if the last probe on this path passed, else 0.',
  ),
  state: descriptor(
    'faultline.probe.state',
    '',
    'Always 1; its class attribute is the failure class of the last probe on this path.',
  ),
  icmpRtt: descriptor('faultline.probe.icmp.rtt', 's', 'ICMP echo round-trip times, per reply.'),
  icmpLoss: descriptor(
    'faultline.probe.icmp.loss',
    '1',
    'ICMP packet loss ratio (0..1) of the last probe.',
  ),
  lag: descriptor(
    'faultline.agent.schedule.lag',
    's',
    'How late probes started against their schedule.',
  ),
  bbSuccess: descriptor(
    'probe_success',
    '',
    'Displays whether or not the probe was a success (blackbox_exporter compatible).',
  ),
  bbDuration: descriptor(
    'probe_duration_seconds',
    's',
    'Returns how long the probe took to complete in seconds (blackbox_exporter compatible).',
  ),
  bbDns: descriptor(
    'probe_dns_lookup_time_seconds',
    's',
    'Returns the time taken for probe dns lookup in seconds (blackbox_exporter compatible).',
  ),
  bbIpProtocol: descriptor(
    'probe_ip_protocol',
    '',
    'Specifies whether probe ip protocol is IP4 or IP6, 0 when not resolved (blackbox_exporter compatible).',
  ),
};

/** A cumulative explicit-bucket histogram: a few array writes per value, no allocation. */
class Hist {
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
interface PathState {
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

function derive(
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

const with1 = (p: PathState, key: string, value: string): Attributes =>
  derive(p.derived, p.base, key, value);
const bbWith1 = (p: PathState, key: string, value: string): Attributes =>
  derive(p.bbDerived, p.bb, key, value);

/** The `probe_*` series' labels: the path's, the target's address, and maybe `instance`. */
function bbAttributes(base: Attributes, address: string, instance: ProbeInstance): Attributes {
  return instance === 'address' ? { ...base, address, instance: address } : { ...base, address };
}

/** 4 or 6 for an IP address, 0 for anything else (not resolved). */
function ipProtocol(ip: unknown): number {
  return typeof ip === 'string' ? isIP(ip) : 0;
}

/** The OTel descriptor of a kind's own metric, made once per metric. */
const kindDescriptors = new Map<KindMetric, MetricDescriptor>();
function kindDescriptor(metric: KindMetric): MetricDescriptor {
  let d = kindDescriptors.get(metric);
  if (d === undefined)
    kindDescriptors.set(metric, (d = descriptor(metric.name, metric.unit, metric.description)));
  return d;
}

/** A kind's `series` hook writing one path's gauges into a sink. */
class KindSeries implements KindSeriesSink {
  constructor(
    private readonly p: PathState,
    private readonly sink: SeriesSink,
  ) {}

  gauge(metric: KindMetric, value: number, label?: string, labelValue?: string): void {
    const p = this.p;
    const attributes = label === undefined ? p.bb : bbWith1(p, label, labelValue ?? '');
    this.sink.gauge(kindDescriptor(metric), value, attributes);
  }
}

const pathKey = (target: string, kind: string): string => `${target}\u0000${kind}`;

function sameLabels(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const ak = Object.keys(a);
  if (ak.length !== Object.keys(b).length) return false;
  for (const k of ak) if (a[k] !== b[k]) return false;
  return true;
}

function msToHrTime(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

/** Where `visitPath` puts a path's series: OTel data points (OTLP) or Prometheus text. */
interface SeriesSink {
  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void;
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void;
  histogram(d: MetricDescriptor, h: Hist, attributes: Attributes): void;
}

/** Every series of one path, from its state: the one definition both exports share. */
function visitPath(p: PathState, sink: SeriesSink): void {
  const r = p.last;
  const t = r.timings;
  const ok = r.class === 'ok' ? 1 : 0;
  const base = p.base;

  for (let i = 0; i < p.phases.length; i++) {
    const h = p.phases[i];
    if (h !== undefined) sink.histogram(m.duration, h, with1(p, 'phase', phaseNames[i]!));
  }
  if (p.icmpRtt !== undefined) sink.histogram(m.icmpRtt, p.icmpRtt, base);
  for (let i = 0; i < p.classCounts.length; i++) {
    const n = p.classCounts[i]!;
    if (n > 0) sink.counter(m.results, n, with1(p, 'class', failureClasses[i]!));
  }
  sink.counter(m.skipped, p.skipped, base);

  sink.gauge(m.success, ok, base);
  sink.gauge(m.state, 1, with1(p, 'class', r.class));
  const bb = p.bb;
  const d = r.detail;
  sink.gauge(m.bbSuccess, ok, bb);
  sink.gauge(m.bbDuration, t.totalMs / 1000, bb);
  sink.gauge(m.bbDns, (t.dnsMs ?? 0) / 1000, bb);
  const kt = p.kindTelemetry;
  if (kt?.blackboxIp !== undefined) sink.gauge(m.bbIpProtocol, ipProtocol(kt.blackboxIp(r)), bb);
  const loss = d?.lossRatio;
  if (typeof loss === 'number') sink.gauge(m.icmpLoss, loss, base);
  kt?.series?.(r, new KindSeries(p, sink));
}

/** Collects series as OTel data points, grouped per metric (for the OTLP push). */
class DataPointSink implements SeriesSink {
  readonly gauges = new Map<MetricDescriptor, DataPoint<number>[]>();
  readonly sums = new Map<MetricDescriptor, DataPoint<number>[]>();
  readonly hists = new Map<MetricDescriptor, DataPoint<Histogram>[]>();
  /** Start time of the series being visited (the path's, or the agent's). */
  startTime: HrTime = [0, 0];

  constructor(private readonly endTime: HrTime) {}

  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void {
    this.push(this.gauges, d, value, attributes);
  }
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void {
    this.push(this.sums, d, value, attributes);
  }
  histogram(d: MetricDescriptor, h: Hist, attributes: Attributes): void {
    this.push(this.hists, d, h.value(), attributes);
  }

  private push<T>(
    into: Map<MetricDescriptor, DataPoint<T>[]>,
    d: MetricDescriptor,
    value: T,
    attributes: Attributes,
  ): void {
    let list = into.get(d);
    if (list === undefined) into.set(d, (list = []));
    list.push({ startTime: this.startTime, endTime: this.endTime, attributes, value });
  }

  metrics(): MetricData[] {
    const metrics: MetricData[] = [];
    const cumulative = AggregationTemporality.CUMULATIVE;
    for (const [descriptor, dataPoints] of this.hists)
      metrics.push({
        descriptor,
        aggregationTemporality: cumulative,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints,
      });
    for (const [descriptor, dataPoints] of this.sums)
      metrics.push({
        descriptor,
        aggregationTemporality: cumulative,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints,
      });
    for (const [descriptor, dataPoints] of this.gauges)
      metrics.push({
        descriptor,
        aggregationTemporality: cumulative,
        dataPointType: DataPointType.GAUGE,
        dataPoints,
      });
    return metrics;
  }
}

/**
 * Collects series as Prometheus text, one buffer per family (the format wants a family's
 * samples together, while paths are visited one after the other).
 */
class TextSink implements SeriesSink {
  private readonly families = new Map<MetricDescriptor, { name: string; body: string }>();
  private out = '';

  constructor(private readonly text: PrometheusText) {}

  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void {
    const f = this.family(d, DataPointType.GAUGE);
    f.body += this.text.sample(f.name, attributes, value);
  }
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void {
    const f = this.family(d, DataPointType.SUM);
    f.body += this.text.sample(f.name, attributes, value);
  }
  histogram(d: MetricDescriptor, h: Hist, attributes: Attributes): void {
    const f = this.family(d, DataPointType.HISTOGRAM);
    f.body += this.text.histogram(f.name, attributes, h.bounds, h.counts, h.sum, h.count);
  }

  /** Everything collected, family after family. */
  finish(): string {
    for (const f of this.families.values()) this.out += f.body;
    return this.out;
  }

  private family(d: MetricDescriptor, type: DataPointType): { name: string; body: string } {
    let f = this.families.get(d);
    if (f === undefined) {
      const { name, head } = this.text.family({
        descriptor: d,
        dataPointType: type,
        isMonotonic: true,
      });
      f = { name, body: head };
      this.families.set(d, f);
    }
    return f;
  }
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------

/** Report delivery of an agent with a collector, read at each collection. */
export interface DeliveryStats {
  readonly spoolBatches: number;
  readonly spoolBytes: number;
  /** Age of the oldest unacknowledged batch, seconds (0 when none waits). */
  readonly lagSeconds: number;
  readonly acceptedSeq: number;
  readonly rejected: number;
  readonly dropped: number;
  readonly implausibleAcks: number;
  readonly seqRefusals: number;
  readonly enrolState: string;
}

/** Confirmation bursts of an agent (issue 14), read at each collection. */
export interface ConfirmStats {
  /** Bursts started (each after a change of class on a path). */
  readonly bursts: number;
  /** Re-probes run by bursts. */
  readonly probes: number;
  /** Changes not confirmed by a burst because the per-agent budget was spent. */
  readonly skipped: number;
  /** Re-probes the budget holds now. */
  readonly budget: number;
}

/**
 * The agent's OpenTelemetry metrics: one MeterProvider with a Prometheus reader (served by
 * the agent's own HTTP server through `metricsHandler`/`renderPrometheus`) and, when the
 * OTEL_EXPORTER_OTLP_* environment asks for it, an OTLP/HTTP push reader.
 *
 * Per-path metrics are not SDK instruments: a custom MetricProducer builds them from
 * per-path state at collection time. Two reasons. (1) The SDK keeps reporting an
 * asynchronous series with its last value after a callback stops observing it, so a class
 * change or a removed target would leave stale series behind; built here, a series is
 * exactly what is current. (2) Each SDK `record()` hashes its attribute set (sort +
 * JSON.stringify, ~3 µs); here a result costs two map lookups and a few array writes.
 * Agent-level gauges (in-flight, RSS, probe counts) are ordinary observable instruments.
 */
export class AgentTelemetry {
  /** OTLP push settings, or undefined when the environment configures none. */
  readonly otlp: OtlpPushSettings | undefined;
  /** For other agent parts that want to add instruments (spool depth, report client…). */
  readonly meter: Meter;

  private readonly agentName: string;
  private probeInstance: ProbeInstance;
  private readonly scope: { readonly name: string; readonly version: string };
  private readonly logger: Logger | undefined;
  private readonly pipeline: MetricsPipeline;
  private readonly text = new PrometheusText();
  private readonly paths = new Map<string, Map<string, PathState>>();
  /** Targets removed while a probe may still be running: its late result must not revive them. */
  private readonly removed = new WeakMap<TelemetryTarget, Set<string>>();
  private readonly probeCounts = new Float64Array(probeResults.length);
  private readonly probeAttrs: Attributes[];
  private readonly agentAttrs: Attributes;
  private readonly scheduleLag = new Hist(scheduleLagBucketsS);
  private readonly startTime = msToHrTime(Date.now());
  private inFlight = 0;
  private inFlightSource: (() => number) | undefined;
  private deliverySource: (() => DeliveryStats) | undefined;
  private confirmSource: (() => ConfirmStats) | undefined;
  private shutdownPromise: Promise<TelemetryShutdown> | undefined;

  /** Throws ConfigError when the OTEL_* environment asks for something unsupported (gRPC). */
  constructor(options: AgentTelemetryOptions) {
    this.agentName = options.agentName;
    this.probeInstance = options.probeInstance ?? 'scrape';
    this.scope = { name: 'faultline-agent', version: options.serviceVersion };
    this.logger = options.logger;
    this.agentAttrs = { agent: options.agentName };
    this.probeAttrs = probeResults.map((result) => ({ agent: options.agentName, result }));

    const labelAttrs = Object.fromEntries(
      Object.entries(options.agentLabels).map(([k, v]) => [`faultline.agent.label.${k}`, v]),
    );
    // Prometheus gets the per-path series from renderPrometheus (as text, in chunks); OTLP
    // gets them as data points from this producer.
    const producer: MetricProducer = {
      collect: async () => this.collectPaths(this.pipeline.resource),
    };
    this.pipeline = new MetricsPipeline({
      serviceName: 'faultline-agent',
      serviceVersion: options.serviceVersion,
      resource: {
        'host.name': options.hostName ?? hostname(),
        'faultline.agent': options.agentName,
        ...labelAttrs,
      },
      otlpProducers: [producer],
      ...(options.logger === undefined ? {} : { logger: options.logger }),
    });
    this.otlp = this.pipeline.otlp;
    this.meter = this.pipeline.meter;
    this.pipeline.exports?.instrument(this.meter, this.agentAttrs);

    const probes = this.meter.createObservableCounter('faultline.agent.probes', {
      unit: '{probe}',
      description:
        'Probes by outcome: started, completed, skipped (previous still running), error (the probe itself failed).',
    });
    const inFlight = this.meter.createObservableGauge('faultline.agent.probes.in_flight', {
      unit: '{probe}',
      description: 'Probes running now.',
    });
    const rss = this.meter.createObservableGauge('faultline.agent.memory.rss', {
      unit: 'By',
      description: 'Resident set size of the agent process.',
      valueType: ValueType.INT,
    });
    const delivery = {
      spoolBatches: this.meter.createObservableGauge('faultline.agent.spool.batches', {
        unit: '{batch}',
        description: 'Report batches in the spool, waiting for the collector.',
        valueType: ValueType.INT,
      }),
      spoolBytes: this.meter.createObservableGauge('faultline.agent.spool.size', {
        unit: 'By',
        description: 'Bytes of the spooled report batches on disk (compressed).',
        valueType: ValueType.INT,
      }),
      lag: this.meter.createObservableGauge('faultline.agent.delivery.lag', {
        unit: 's',
        description: 'Age of the oldest report batch not yet acknowledged (0 when none waits).',
      }),
      ackedSeq: this.meter.createObservableGauge('faultline.agent.reports.acked_seq', {
        unit: '{seq}',
        description: 'Highest report batch seq the collector acknowledged.',
        valueType: ValueType.INT,
      }),
      rejected: this.meter.createObservableCounter('faultline.agent.reports.rejected', {
        unit: '{batch}',
        description: 'Report batches the collector refused as bad (moved to spool/rejected/).',
        valueType: ValueType.INT,
      }),
      dropped: this.meter.createObservableCounter('faultline.agent.reports.dropped', {
        unit: '{batch}',
        description: 'Report batches dropped by the spool bounds (declared to the collector).',
        valueType: ValueType.INT,
      }),
      implausible: this.meter.createObservableCounter('faultline.agent.implausible_acks', {
        unit: '{ack}',
        description:
          'Acks whose acceptedSeq is above every seq this agent spooled: refused, the batch kept.',
        valueType: ValueType.INT,
      }),
      refusals: this.meter.createObservableCounter('faultline.agent.reports.seq_refusals', {
        unit: '{reply}',
        description:
          'Replies refusing the sequence or identity (seq gap/implausible, conflict, forbidden, enrol required): the batch kept.',
        valueType: ValueType.INT,
      }),
      enrol: this.meter.createObservableGauge('faultline.agent.enrol.state', {
        unit: '{state}',
        description:
          'Where the credential in use came from: 1 for the current state (none, saved, enrolled, direct).',
        valueType: ValueType.INT,
      }),
    };
    this.meter.addBatchObservableCallback((observer) => {
      const d = this.deliverySource?.();
      if (d === undefined) return;
      const a = this.agentAttrs;
      observer.observe(delivery.spoolBatches, d.spoolBatches, a);
      observer.observe(delivery.spoolBytes, d.spoolBytes, a);
      observer.observe(delivery.lag, d.lagSeconds, a);
      observer.observe(delivery.ackedSeq, d.acceptedSeq, a);
      observer.observe(delivery.rejected, d.rejected, a);
      observer.observe(delivery.dropped, d.dropped, a);
      observer.observe(delivery.implausible, d.implausibleAcks, a);
      observer.observe(delivery.refusals, d.seqRefusals, a);
      for (const state of ['none', 'saved', 'enrolled', 'direct'])
        observer.observe(delivery.enrol, d.enrolState === state ? 1 : 0, { ...a, state });
    }, Object.values(delivery));
    const confirm = {
      bursts: this.meter.createObservableCounter('faultline.agent.confirm.bursts', {
        unit: '{burst}',
        description: 'Confirmation bursts started: a path changed class and was re-probed at once.',
        valueType: ValueType.INT,
      }),
      probes: this.meter.createObservableCounter('faultline.agent.confirm.probes', {
        unit: '{probe}',
        description: 'Re-probes run by confirmation bursts (beyond the regular schedule).',
        valueType: ValueType.INT,
      }),
      skipped: this.meter.createObservableCounter('faultline.agent.confirm.skipped', {
        unit: '{burst}',
        description:
          "Changes of class not confirmed by a burst because the agent's budget of extra probes was spent; the collector confirms them round by round.",
        valueType: ValueType.INT,
      }),
      budget: this.meter.createObservableGauge('faultline.agent.confirm.budget', {
        unit: '{probe}',
        description: 'Re-probes the budget of confirmation bursts holds now.',
      }),
    };
    this.meter.addBatchObservableCallback((observer) => {
      const c = this.confirmSource?.();
      if (c === undefined) return;
      const a = this.agentAttrs;
      observer.observe(confirm.bursts, c.bursts, a);
      observer.observe(confirm.probes, c.probes, a);
      observer.observe(confirm.skipped, c.skipped, a);
      observer.observe(confirm.budget, c.budget, a);
    }, Object.values(confirm));
    this.meter.addBatchObservableCallback(
      (observer) => {
        for (let i = 0; i < probeResults.length; i++)
          observer.observe(probes, this.probeCounts[i]!, this.probeAttrs[i]);
        observer.observe(inFlight, this.inFlightSource?.() ?? this.inFlight, this.agentAttrs);
        observer.observe(rss, process.memoryUsage.rss(), this.agentAttrs);
      },
      [probes, inFlight, rss],
    );
  }

  /**
   * Records one probe result (hot path: called for every probe). `target.labels` become
   * attributes of the path's series; pass the same object each time so it is not re-read.
   */
  recordResult(result: ProbeResult, target: TelemetryTarget): void {
    let p = this.paths.get(result.target)?.get(result.kind);
    if (p === undefined || p.labels !== target.labels) p = this.openPath(result, target, p);
    if (p === undefined) return;
    if (p.address !== result.address) {
      // The same target name and labels at a new address (a reloaded config).
      p.address = result.address;
      p.bb = bbAttributes(p.base, result.address, this.probeInstance);
      p.bbDerived = new Map();
    }
    p.last = result;
    const ci = classIndex[result.class] ?? classIndex.internal_error;
    p.classCounts[ci]! += 1;
    this.probeCounts[result.class === 'internal_error' ? ERROR : COMPLETED]! += 1;

    const t = result.timings;
    if (p.kindTelemetry?.phaseHistograms === true) {
      for (let i = 0; i < phaseTimings.length; i++) {
        const ms = t[phaseTimings[i]!];
        if (ms === undefined) continue;
        (p.phases[i] ??= new Hist(probeDurationBucketsS)).record(ms / 1000);
      }
    } else {
      (p.phases[TOTAL] ??= new Hist(probeDurationBucketsS)).record(t.totalMs / 1000);
    }
    if (p.echo) {
      const rtts = result.detail?.rttsMs;
      if (Array.isArray(rtts)) {
        for (const v of rtts)
          if (typeof v === 'number' && v >= 0)
            (p.icmpRtt ??= new Hist(probeDurationBucketsS)).record(v / 1000);
      } else if (t.rttMs !== undefined) {
        (p.icmpRtt ??= new Hist(probeDurationBucketsS)).record(t.rttMs / 1000);
      }
    }
  }

  /** Changes the `instance` of the probe_* series (a reloaded config); series follow at once. */
  setProbeInstance(mode: ProbeInstance): void {
    if (mode === this.probeInstance) return;
    this.probeInstance = mode;
    for (const byKind of this.paths.values()) {
      for (const p of byKind.values()) {
        p.bb = bbAttributes(p.base, p.address, mode);
        p.bbDerived = new Map();
      }
    }
  }

  /** A probe started, `lagMs` after its scheduled time. */
  recordStart(lagMs: number): void {
    this.probeCounts[STARTED]! += 1;
    this.scheduleLag.record(lagMs > 0 ? lagMs / 1000 : 0);
  }

  /** A probe of `targetName` was not started because its previous run had not finished. */
  recordSkip(targetName: string): void {
    this.probeCounts[SKIPPED]! += 1;
    const byKind = this.paths.get(targetName);
    if (byKind !== undefined) for (const p of byKind.values()) p.skipped++;
  }

  /** How many probes are running now (reported as faultline.agent.probes.in_flight). */
  setInFlight(n: number): void {
    this.inFlight = n;
  }

  /** Where to read the report delivery figures from (an agent with a collector). */
  observeDelivery(read: () => DeliveryStats): void {
    this.deliverySource = read;
  }

  /** Where to read the confirmation burst figures from. */
  observeConfirm(read: () => ConfirmStats): void {
    this.confirmSource = read;
  }

  /** Or: where to read the in-flight count from at each collection (replaces `setInFlight`). */
  observeInFlight(read: () => number): void {
    this.inFlightSource = read;
  }

  /**
   * Stops exporting every series of a target (all its kinds, or one kind). A result of the
   * same target object that arrives later (a probe still in flight) is ignored; a target
   * re-added by a later config (a new object) is recorded afresh.
   */
  removeTarget(name: string, kind?: string): void {
    const byKind = this.paths.get(name);
    if (byKind === undefined) return;
    for (const [k, p] of byKind) {
      if (kind !== undefined && k !== kind) continue;
      let keys = this.removed.get(p.target);
      if (keys === undefined) this.removed.set(p.target, (keys = new Set()));
      keys.add(pathKey(name, k));
      p.removed = true;
      byKind.delete(k);
    }
    if (byKind.size === 0) this.paths.delete(name);
  }

  /**
   * The Prometheus text exposition of every metric (OTel names mapped to Prometheus names).
   * The path series are written straight from the per-path state, a few dozen paths at a
   * time with a yield to the event loop in between, so that a scrape of thousands of paths
   * does not hold up the probes due meanwhile.
   */
  async renderPrometheus(): Promise<string> {
    const { resourceMetrics, errors } = await this.pipeline.collectPrometheus();
    if (errors.length > 0)
      this.logger?.debug({ errors: errors.map(String) }, 'metric collection errors');
    const head = this.text.render(resourceMetrics);
    const sink = new TextSink(this.text);
    if (this.scheduleLag.count > 0) sink.histogram(m.lag, this.scheduleLag, this.agentAttrs);
    const paths: PathState[] = [];
    for (const byKind of this.paths.values()) for (const p of byKind.values()) paths.push(p);
    for (let i = 0; i < paths.length; i++) {
      if (i > 0 && i % renderChunkPaths === 0) await yieldToLoop();
      const p = paths[i]!;
      if (!p.removed) visitPath(p, sink);
    }
    return head + sink.finish();
  }

  /** A node:http handler answering with `renderPrometheus()`; mount it at GET /metrics. */
  metricsHandler(_req: IncomingMessage, res: ServerResponse): void {
    this.renderPrometheus().then(
      (body) => {
        res.writeHead(200, { 'content-type': prometheusContentType });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`);
      },
    );
  }

  /**
   * Pushes what is left (final OTLP export) and shuts the readers down, within `timeoutMs`.
   * Never throws; a second call returns the first one's outcome.
   */
  shutdown(timeoutMs = 5000): Promise<TelemetryShutdown> {
    this.shutdownPromise ??= this.doShutdown(timeoutMs);
    return this.shutdownPromise;
  }

  private async doShutdown(timeoutMs: number): Promise<TelemetryShutdown> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      timer.unref();
    });
    let outcome: TelemetryShutdown;
    try {
      const done = await Promise.race([
        this.pipeline.shutdown(timeoutMs).then(() => 'done' as const),
        timedOut,
      ]);
      if (done === 'timeout')
        outcome = { ok: false, error: `telemetry did not shut down within ${timeoutMs} ms` };
      else if (this.pipeline.exports?.lastError !== undefined)
        outcome = {
          ok: false,
          error: `final OTLP export failed: ${this.pipeline.exports.lastError}`,
        };
      else outcome = { ok: true };
    } catch (err) {
      outcome = { ok: false, error: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
    if (!outcome.ok) this.logger?.warn({ err: outcome.error }, 'telemetry shutdown incomplete');
    return outcome;
  }

  /** The slow path of recordResult: a new path, or one whose labels object changed. */
  private openPath(
    result: ProbeResult,
    target: TelemetryTarget,
    old: PathState | undefined,
  ): PathState | undefined {
    if (this.removed.get(target)?.has(pathKey(result.target, result.kind)) === true)
      return undefined;
    if (old !== undefined && sameLabels(old.labels, target.labels)) {
      // The same target from a reloaded config: keep its series, follow the new object.
      old.target = target;
      old.labels = target.labels;
      return old;
    }
    const def = isProbeKind(result.kind) ? probeRegistry[result.kind] : undefined;
    const base: Attributes = { agent: this.agentName, target: result.target, kind: result.kind };
    for (const [k, v] of Object.entries(target.labels))
      if (!(k in base) && !reservedMetricLabels.includes(k)) base[k] = v;
    const p: PathState = {
      target,
      labels: target.labels,
      base,
      address: result.address,
      bb: bbAttributes(base, result.address, this.probeInstance),
      startTime: msToHrTime(Date.now()),
      last: result,
      classCounts: new Float64Array(failureClasses.length),
      phases: new Array<Hist | undefined>(phaseNames.length).fill(undefined),
      kindTelemetry: def?.telemetry,
      echo: def?.echo === true,
      icmpRtt: undefined,
      skipped: 0,
      removed: false,
      derived: new Map(),
      bbDerived: new Map(),
    };
    let byKind = this.paths.get(result.target);
    if (byKind === undefined)
      this.paths.set(result.target, (byKind = new Map<string, PathState>()));
    byKind.set(result.kind, p);
    return p;
  }

  /** Builds the per-path metrics (and the schedule lag histogram) for one OTLP collection. */
  private collectPaths(resource: ResourceMetrics['resource']): CollectionResult {
    const sink = new DataPointSink(msToHrTime(Date.now()));
    for (const byKind of this.paths.values()) {
      for (const p of byKind.values()) {
        sink.startTime = p.startTime;
        visitPath(p, sink);
      }
    }
    if (this.scheduleLag.count > 0) {
      sink.startTime = this.startTime;
      sink.histogram(m.lag, this.scheduleLag, this.agentAttrs);
    }
    return {
      resourceMetrics: { resource, scopeMetrics: [{ scope: this.scope, metrics: sink.metrics() }] },
      errors: [],
    };
  }
}
