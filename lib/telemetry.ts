import { createRequire } from 'node:module';
import { ValueType, type Attributes, type Meter } from '@opentelemetry/api';
import type { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import type { OTLPMetricExporter as OtlpProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import {
  DataPointType,
  MeterProvider,
  MetricReader,
  PeriodicExportingMetricReader,
  type MetricData,
  type MetricDescriptor,
  type MetricProducer,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { ConfigError } from './errors.js';

// The semantic-conventions package would load its thousands of constants for these two.
const ATTR_SERVICE_NAME = 'service.name';
const ATTR_SERVICE_VERSION = 'service.version';

/**
 * The OTLP exporters (and protobufjs behind one of them) are loaded only by a process that
 * pushes: most agents are scraped and never do, and they cost ~8 MB of memory each. They are
 * CommonJS packages (no `exports` map), so `import` loads the same module as this.
 */
const loadCommonJs = createRequire(import.meta.url);
function otlpExporter(protocol: OtlpPushSettings['protocol']): PushMetricExporter {
  if (protocol === 'http/json') {
    const m = loadCommonJs('@opentelemetry/exporter-metrics-otlp-http') as {
      OTLPMetricExporter: typeof OtlpJsonMetricExporter;
    };
    return new m.OTLPMetricExporter();
  }
  const m = loadCommonJs('@opentelemetry/exporter-metrics-otlp-proto') as {
    OTLPMetricExporter: typeof OtlpProtobufMetricExporter;
  };
  return new m.OTLPMetricExporter();
}

/** The pull side: collected on demand by the daemon's own `/metrics` route. */
class PullMetricReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The OpenTelemetry metrics plumbing the agent and the collector share: OTLP push settings
 * from the standard OTEL_* environment, one MeterProvider with a Prometheus reader (pulled by
 * the daemon's own `/metrics`) and, when the environment asks, an OTLP/HTTP push reader
 * whose failures are logged (rate-limited) and counted, and the Prometheus text writer.
 */

/** What `/metrics` answers with: the Prometheus text exposition format. */
/** A metric produced from state at collection time (not an SDK instrument): a double. */
export function descriptor(name: string, unit: string, description: string): MetricDescriptor {
  return { name, unit, description, valueType: ValueType.DOUBLE };
}

export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';

/** OTLP push, as configured by the standard OTEL_* environment variables. */
export interface OtlpPushSettings {
  /** `http/protobuf` (default) or `http/json`; gRPC is refused. */
  readonly protocol: 'http/protobuf' | 'http/json';
  /** Where metrics are POSTed (what the exporter derives from the endpoint variables). */
  readonly url: string;
  /** OTEL_METRIC_EXPORT_INTERVAL (default 60 000). */
  readonly intervalMs: number;
  /** OTEL_METRIC_EXPORT_TIMEOUT (default 30 000), never above the interval. */
  readonly timeoutMs: number;
}

/**
 * Reads OTLP push settings from the environment, or undefined when neither
 * OTEL_EXPORTER_OTLP_METRICS_ENDPOINT nor OTEL_EXPORTER_OTLP_ENDPOINT is set (no push).
 * Headers, compression, per-request timeout, certificates and temporality preference are
 * read by the OTLP exporter itself from the same variables. Throws ConfigError for a value
 * faultline cannot honour, naming the variable.
 */
export function otlpPushFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): OtlpPushSettings | undefined {
  const read = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const specific = read('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT');
  const general = read('OTEL_EXPORTER_OTLP_ENDPOINT');
  if (specific === undefined && general === undefined) return undefined;

  const protocolVar =
    read('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL') !== undefined
      ? 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL'
      : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = read(protocolVar) ?? 'http/protobuf';
  if (protocol === 'grpc') {
    throw new ConfigError(
      `${protocolVar}=grpc: OTLP over gRPC is not supported by faultline; set it to http/protobuf (or http/json) and point the endpoint at the collector's OTLP/HTTP port (usually 4318)`,
    );
  }
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    throw new ConfigError(
      `${protocolVar}: expected http/protobuf or http/json (actual: "${protocol}")`,
    );
  }

  const endpointVar =
    specific !== undefined ? 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  const endpoint = (specific ?? general)!;
  let url: string;
  try {
    const parsed = new URL(endpoint);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new TypeError('not http(s)');
    // As the exporter does: the signal-specific variable is used as is, the general one gets /v1/metrics.
    url =
      specific !== undefined
        ? parsed.toString()
        : `${endpoint.endsWith('/') ? endpoint : `${endpoint}/`}v1/metrics`;
  } catch (err) {
    throw new ConfigError(`${endpointVar}: expected an http(s) URL (actual: "${endpoint}")`, {
      cause: err,
    });
  }

  const positiveMs = (name: string, fallback: number): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) <= 0)
      throw new ConfigError(
        `${name}: expected a positive whole number of milliseconds (actual: "${raw}")`,
      );
    return Number(raw);
  };
  const intervalMs = positiveMs('OTEL_METRIC_EXPORT_INTERVAL', 60_000);
  const timeoutMs = Math.min(positiveMs('OTEL_METRIC_EXPORT_TIMEOUT', 30_000), intervalMs);
  return { protocol, url, intervalMs, timeoutMs };
}

/** Where export failures are logged: the part of a pino logger used here. */
export interface TelemetryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

type ExportResult = Parameters<Parameters<PushMetricExporter['export']>[1]>[0];
// ExportResultCode.SUCCESS, without importing @opentelemetry/core (not a direct dependency).
const exportSucceeded = 0 as ExportResult['code'];

/** Passes exports through and tells the owner how each ended (the SDK only logs to `diag`). */
class ObservedExporter implements PushMetricExporter {
  constructor(
    private readonly inner: PushMetricExporter,
    private readonly onResult: (result: ExportResult) => void,
  ) {
    if (inner.selectAggregationTemporality)
      this.selectAggregationTemporality = inner.selectAggregationTemporality.bind(inner);
    if (inner.selectAggregation) this.selectAggregation = inner.selectAggregation.bind(inner);
  }
  readonly selectAggregationTemporality?: PushMetricExporter['selectAggregationTemporality'];
  readonly selectAggregation?: PushMetricExporter['selectAggregation'];

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    this.inner.export(metrics, (result) => {
      this.onResult(result);
      resultCallback(result);
    });
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

const unitSuffixes: Readonly<Record<string, string>> = {
  s: 'seconds',
  ms: 'milliseconds',
  By: 'bytes',
};

/**
 * The Prometheus name of an OTel metric, per the OTel→Prometheus compatibility spec:
 * unit suffix (`_seconds`, `_bytes`, `_ratio` for unit-1 gauges) unless already there;
 * `_total` on counters is added by the serializer. exporter-prometheus 0.223 adds no unit
 * suffix itself, so without this `faultline.probe.duration` would be exposed unitless.
 */
export function prometheusName(metric: Pick<MetricData, 'descriptor' | 'dataPointType'>): string {
  let name = metric.descriptor.name.replace(/[^a-zA-Z0-9_]/g, '_').replace(/_{2,}/g, '_');
  const unit = metric.descriptor.unit;
  const suffix =
    unit === '1' && metric.dataPointType === DataPointType.GAUGE ? 'ratio' : unitSuffixes[unit];
  if (suffix !== undefined && !name.endsWith(`_${suffix}`)) name += `_${suffix}`;
  return name;
}

const escapeLabelValue = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const labelName = (k: string): string => {
  const n = k.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(n) ? `_${n}` : n;
};
const formatValue = (v: number): string =>
  v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v);

/**
 * Prometheus text format (0.0.4) writer. exporter-prometheus's own serializer is not used:
 * it adds no unit suffixes, labels every sample with otel_scope_*, and re-escapes every
 * label of every sample — over a second per scrape at 1,000 paths. Here a label set is
 * rendered once per attribute object (the per-path ones are long-lived) and reused.
 */
export class PrometheusText {
  private readonly labels = new WeakMap<Attributes, string>();
  private readonly names = new Map<string, string>();
  private readonly les = new WeakMap<readonly number[], string[]>();

  /** target_info and the metrics of a collection (the SDK instruments). */
  render(rm: ResourceMetrics): string {
    const resource = this.labelsOf(rm.resource.attributes);
    let out = `# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info${resource === '' ? '' : `{${resource}}`} 1\n`;
    for (const sm of rm.scopeMetrics) for (const md of sm.metrics) out += this.metric(md);
    return out;
  }

  /** A family's Prometheus name and its `# HELP` and `# TYPE` lines. */
  family(md: Pick<MetricData, 'descriptor' | 'dataPointType'> & { isMonotonic?: boolean }): {
    name: string;
    head: string;
  } {
    const name = this.name(md);
    const type =
      md.dataPointType === DataPointType.HISTOGRAM
        ? 'histogram'
        : md.dataPointType === DataPointType.SUM && md.isMonotonic === true
          ? 'counter'
          : md.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM
            ? 'untyped'
            : 'gauge';
    const head = `# HELP ${name} ${escapeHelp(md.descriptor.description || md.descriptor.name)}\n# TYPE ${name} ${type}\n`;
    return { name, head };
  }

  /** One sample line of a gauge or counter. */
  sample(name: string, attributes: Attributes, value: number): string {
    const labels = this.labelsOf(attributes);
    return `${name}${labels === '' ? '' : `{${labels}}`} ${formatValue(value)}\n`;
  }

  /** The lines of one histogram series from per-bucket (not cumulative) counts. */
  histogram(
    name: string,
    attributes: Attributes,
    boundaries: readonly number[],
    counts: ArrayLike<number>,
    sum: number,
    count: number,
  ): string {
    const labels = this.labelsOf(attributes);
    const prefix = `${name}_bucket{${labels}${labels === '' ? '' : ','}le="`;
    const les = this.lesOf(boundaries);
    let out = '';
    let cumulative = 0;
    for (let i = 0; i < counts.length; i++) {
      cumulative += counts[i]!;
      out += `${prefix}${les[i] ?? '+Inf'}"} ${cumulative}\n`;
    }
    const braces = labels === '' ? '' : `{${labels}}`;
    return `${out}${name}_sum${braces} ${formatValue(sum)}\n${name}_count${braces} ${count}\n`;
  }

  private metric(md: MetricData): string {
    const { name, head } = this.family(md);
    let out = head;
    if (md.dataPointType === DataPointType.HISTOGRAM) {
      for (const dp of md.dataPoints) {
        const h = dp.value;
        out += this.histogram(
          name,
          dp.attributes,
          h.buckets.boundaries,
          h.buckets.counts,
          h.sum ?? 0,
          h.count,
        );
      }
    } else if (md.dataPointType === DataPointType.SUM || md.dataPointType === DataPointType.GAUGE) {
      for (const dp of md.dataPoints) out += this.sample(name, dp.attributes, dp.value);
    }
    return out;
  }

  private name(
    md: Pick<MetricData, 'descriptor' | 'dataPointType'> & { isMonotonic?: boolean },
  ): string {
    const monotonic = md.dataPointType === DataPointType.SUM && md.isMonotonic === true;
    const key = `${md.descriptor.name}\u0000${md.descriptor.unit}\u0000${md.dataPointType}\u0000${monotonic}`;
    let name = this.names.get(key);
    if (name === undefined) {
      name = prometheusName(md);
      if (monotonic && !name.endsWith('_total')) name += '_total';
      this.names.set(key, name);
    }
    return name;
  }

  private lesOf(boundaries: readonly number[]): string[] {
    let les = this.les.get(boundaries);
    if (les === undefined) this.les.set(boundaries, (les = boundaries.map(formatValue)));
    return les;
  }

  /** `k="v",k2="v2"` (no braces), rendered once per attributes object. */
  private labelsOf(attributes: Attributes): string {
    let s = this.labels.get(attributes);
    if (s === undefined) {
      const parts: string[] = [];
      for (const [k, v] of Object.entries(attributes)) {
        if (v !== undefined)
          parts.push(
            `${labelName(k)}="${escapeLabelValue(typeof v === 'string' ? v : JSON.stringify(v))}"`,
          );
      }
      s = parts.join(',');
      this.labels.set(attributes, s);
    }
    return s;
  }
}

/** Failures after the first are logged again at most this often (with how many there were). */
export const exportFailureLogEveryMs = 60_000;

/**
 * How the OTLP exports end: counted (`faultline.otlp.exports{outcome}`) and logged — the
 * first failure at once, the ones after at most every `logEveryMs` with their count, the
 * recovery once. A collector that is down for an hour costs a handful of log lines, not one
 * a minute per export, and a metric says how long it has been going on.
 */
export class ExportWatch {
  /** Exports the receiver accepted. */
  successes = 0;
  /** Exports that failed (refused, unreachable, timed out). */
  failures = 0;
  /** The last failure's message while failing; undefined once an export succeeds again. */
  lastError: string | undefined;
  private lastLogMs = -Infinity;
  private failuresSinceLog = 0;

  constructor(
    private readonly url: string,
    private readonly logger: TelemetryLogger | undefined,
    private readonly logEveryMs = exportFailureLogEveryMs,
    private readonly clockMs: () => number = () => Date.now(),
  ) {}

  /** Called with every export's result. */
  onResult(result: ExportResult): void {
    if (result.code === exportSucceeded) {
      this.successes++;
      if (this.lastError !== undefined)
        this.logger?.info(
          { url: this.url, failures: this.failuresSinceLog },
          'OTLP metrics export recovered',
        );
      this.lastError = undefined;
      this.failuresSinceLog = 0;
      this.lastLogMs = -Infinity;
      return;
    }
    this.failures++;
    this.failuresSinceLog++;
    const message = result.error?.message ?? 'export failed';
    const now = this.clockMs();
    if (this.lastError === undefined || now - this.lastLogMs >= this.logEveryMs) {
      this.logger?.warn(
        { url: this.url, err: message, failures: this.failuresSinceLog, total: this.failures },
        'OTLP metrics export failing',
      );
      this.lastLogMs = now;
      this.failuresSinceLog = 0;
    }
    this.lastError = message;
  }

  /** Adds `faultline.otlp.exports{outcome}` to `meter`, with `attributes` on both series. */
  instrument(meter: Meter, attributes: Attributes = {}): void {
    const exports = meter.createObservableCounter('faultline.otlp.exports', {
      unit: '{export}',
      description:
        'OTLP metric exports by outcome (success, failure); a failure is also logged, at most once a minute while it lasts.',
    });
    const success = { ...attributes, outcome: 'success' };
    const failure = { ...attributes, outcome: 'failure' };
    exports.addCallback((o) => {
      o.observe(this.successes, success);
      o.observe(this.failures, failure);
    });
  }
}

/** Who is exporting: the OTel resource and instrumentation scope. */
export interface MetricsPipelineOptions {
  /** `service.name` (faultline-agent, faultline-collector) and the scope name. */
  readonly serviceName: string;
  readonly serviceVersion: string;
  /** More resource attributes (host.name, faultline.agent…); they win over OTEL_RESOURCE_ATTRIBUTES. */
  readonly resource: Attributes;
  /** Series built at collection time for the OTLP push (not SDK instruments). */
  readonly otlpProducers?: readonly MetricProducer[];
  /** Series built at collection time for `/metrics` (the agent renders its own instead). */
  readonly prometheusProducers?: readonly MetricProducer[];
  /** Export failures and recoveries are logged here (see {@link ExportWatch}). */
  readonly logger?: TelemetryLogger;
  /** The environment OTLP settings are read from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * One MeterProvider with a Prometheus reader (collected by `collectPrometheus`, for the
 * daemon's own `/metrics` route; the exporter's own HTTP server is not started) and, when
 * OTEL_EXPORTER_OTLP_* is set, an OTLP/HTTP push reader watched by an {@link ExportWatch}.
 * Throws ConfigError when the environment asks for something unsupported (gRPC).
 */
export class MetricsPipeline {
  /** OTLP push settings, or undefined when the environment configures none. */
  readonly otlp: OtlpPushSettings | undefined;
  /** The outcome of the OTLP exports (undefined without push). */
  readonly exports: ExportWatch | undefined;
  readonly meter: Meter;
  readonly resource: ResourceMetrics['resource'];
  readonly scope: { readonly name: string; readonly version: string };
  private readonly provider: MeterProvider;
  private readonly prometheus: PullMetricReader;

  constructor(options: MetricsPipelineOptions) {
    this.otlp = otlpPushFromEnv(options.env);
    this.scope = { name: options.serviceName, version: options.serviceVersion };
    // OTEL_RESOURCE_ATTRIBUTES (e.g. deployment.environment) is honoured; our identity wins over it.
    this.resource = defaultResource()
      .merge(detectResources({ detectors: [envDetector] }))
      .merge(
        resourceFromAttributes({
          [ATTR_SERVICE_NAME]: options.serviceName,
          [ATTR_SERVICE_VERSION]: options.serviceVersion,
          ...options.resource,
        }),
      );
    this.prometheus = new PullMetricReader({
      metricProducers: [...(options.prometheusProducers ?? [])],
    });
    const readers: MetricReader[] = [this.prometheus];
    if (this.otlp !== undefined) {
      // Both exporters read endpoint, headers, timeout, compression and certificates from the environment.
      const inner = otlpExporter(this.otlp.protocol);
      const watch = new ExportWatch(this.otlp.url, options.logger);
      this.exports = watch;
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: new ObservedExporter(inner, (result) => watch.onResult(result)),
          exportIntervalMillis: this.otlp.intervalMs,
          exportTimeoutMillis: this.otlp.timeoutMs,
          metricProducers: [...(options.otlpProducers ?? [])],
        }),
      );
    }
    this.provider = new MeterProvider({ resource: this.resource, readers });
    this.meter = this.provider.getMeter(this.scope.name, this.scope.version);
  }

  /** What the Prometheus reader collects now: SDK instruments and `prometheusProducers`. */
  async collectPrometheus(): Promise<{
    resourceMetrics: ResourceMetrics;
    errors: unknown[];
  }> {
    return this.prometheus.collect();
  }

  /** Pushes what is left (the final OTLP export) and shuts the readers down. */
  shutdown(timeoutMs: number): Promise<void> {
    return this.provider.shutdown({ timeoutMillis: timeoutMs });
  }
}
