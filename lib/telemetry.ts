import { createRequire } from 'node:module';
import type { Attributes, Meter, ValueType } from '@opentelemetry/api';
import type {
  AggregationTemporality,
  DataPointType,
  MetricData,
  MetricDescriptor,
  PushMetricExporter,
  ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { ConfigError } from './errors.js';

/*
 * The SDK-free half of the telemetry the agent and the collector share: OTLP push settings
 * from the standard OTEL_* environment, the OTel resource's attributes, the Prometheus text
 * writer and the watch on OTLP exports. Nothing here loads the OpenTelemetry SDK (only its
 * types): an agent that is scraped and never pushes does not carry it (~4 MB of live heap).
 * The SDK's MeterProvider and readers are in `telemetry-pipeline.ts`.
 */

// The semantic-conventions package would load its thousands of constants for these two.
const ATTR_SERVICE_NAME = 'service.name';
const ATTR_SERVICE_VERSION = 'service.version';

/** The SDK's enums, by value: importing them would load the SDK. */
export const dataPointTypes = {
  HISTOGRAM: 0 as DataPointType.HISTOGRAM,
  EXPONENTIAL_HISTOGRAM: 1 as DataPointType.EXPONENTIAL_HISTOGRAM,
  GAUGE: 2 as DataPointType.GAUGE,
  SUM: 3 as DataPointType.SUM,
} as const;
export const aggregationTemporalities = {
  DELTA: 0 as AggregationTemporality.DELTA,
  CUMULATIVE: 1 as AggregationTemporality.CUMULATIVE,
} as const;
export const valueTypes = { INT: 0 as ValueType.INT, DOUBLE: 1 as ValueType.DOUBLE } as const;

/**
 * The OpenTelemetry metrics plumbing the agent and the collector share: OTLP push settings
 * from the standard OTEL_* environment, one MeterProvider with a Prometheus reader (pulled by
 * the daemon's own `/metrics`) and, when the environment asks, an OTLP/HTTP push reader
 * whose failures are logged (rate-limited) and counted, and the Prometheus text writer.
 */

/** A metric produced from state at collection time (not an SDK instrument): a double by default. */
export function descriptor(
  name: string,
  unit: string,
  description: string,
  valueType: ValueType = valueTypes.DOUBLE,
): MetricDescriptor {
  return { name, unit, description, valueType };
}

/** What `/metrics` answers with: the Prometheus text exposition format. */

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

const loadJson = createRequire(import.meta.url);

/**
 * The OTel resource's attributes as the SDK builds them (`defaultResource()`, merged with
 * `envDetector`'s OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, merged with ours; a later
 * source wins, each key keeps the place it first had in our, env, default order), for a
 * process that does not load the SDK. A test holds it equal to the SDK's.
 */
export function resourceAttributes(
  own: {
    readonly serviceName: string;
    readonly serviceVersion: string;
    readonly resource: Attributes;
  },
  env: NodeJS.ProcessEnv = process.env,
): Attributes {
  const sdkVersion = (loadJson('@opentelemetry/core/package.json') as { version: string }).version;
  const defaults: Attributes = {
    [ATTR_SERVICE_NAME]: process.argv0 ? `unknown_service:${process.argv0}` : 'unknown_service',
    'telemetry.sdk.language': 'nodejs',
    'telemetry.sdk.name': 'opentelemetry',
    'telemetry.sdk.version': sdkVersion,
  };
  const fromEnv: Attributes = {};
  const present = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v;
  };
  const raw = present('OTEL_RESOURCE_ATTRIBUTES');
  if (raw !== undefined) Object.assign(fromEnv, parseResourceAttributes(raw));
  const serviceName = present('OTEL_SERVICE_NAME');
  if (serviceName !== undefined) fromEnv[ATTR_SERVICE_NAME] = serviceName;
  const merged: Attributes = {
    [ATTR_SERVICE_NAME]: own.serviceName,
    [ATTR_SERVICE_VERSION]: own.serviceVersion,
    ...own.resource,
  };
  for (const source of [fromEnv, defaults])
    for (const [k, v] of Object.entries(source)) if (!(k in merged)) merged[k] = v;
  return merged;
}

/**
 * OTEL_RESOURCE_ATTRIBUTES (`k=v,k2=v2`, percent-encoded) as the SDK's envDetector reads it:
 * on any malformed entry the whole variable is ignored.
 */
function parseResourceAttributes(raw: string): Attributes {
  const out: Attributes = {};
  for (const entry of raw.split(',')) {
    if (entry.trim() === '') continue;
    const pair = entry.split('=');
    if (pair.length !== 2) return {};
    const key = pair[0]!.trim();
    if (key === '') return {};
    let k: string;
    let v: string;
    try {
      k = decodeURIComponent(key);
      v = decodeURIComponent(pair[1]!.trim());
    } catch {
      return {};
    }
    if (k.length > 255 || v.length > 255) return {};
    out[k] = v;
  }
  return out;
}

/** Where export failures are logged: the part of a pino logger used here. */
export interface TelemetryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export type ExportResult = Parameters<Parameters<PushMetricExporter['export']>[1]>[0];
// ExportResultCode.SUCCESS, without importing @opentelemetry/core (not a direct dependency).
const exportSucceeded = 0 as ExportResult['code'];

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
    unit === '1' && metric.dataPointType === dataPointTypes.GAUGE ? 'ratio' : unitSuffixes[unit];
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
    let out = this.targetInfo(rm.resource.attributes);
    for (const sm of rm.scopeMetrics) for (const md of sm.metrics) out += this.metric(md);
    return out;
  }

  /** The `target_info` family: the OTel resource's attributes as labels. */
  targetInfo(resource: Attributes): string {
    const labels = this.labelsOf(resource);
    return `# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info${labels === '' ? '' : `{${labels}}`} 1\n`;
  }

  /** A family's Prometheus name and its `# HELP` and `# TYPE` lines. */
  family(md: Pick<MetricData, 'descriptor' | 'dataPointType'> & { isMonotonic?: boolean }): {
    name: string;
    head: string;
  } {
    const name = this.name(md);
    const type =
      md.dataPointType === dataPointTypes.HISTOGRAM
        ? 'histogram'
        : md.dataPointType === dataPointTypes.SUM && md.isMonotonic === true
          ? 'counter'
          : md.dataPointType === dataPointTypes.EXPONENTIAL_HISTOGRAM
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
    if (md.dataPointType === dataPointTypes.HISTOGRAM) {
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
    } else if (
      md.dataPointType === dataPointTypes.SUM ||
      md.dataPointType === dataPointTypes.GAUGE
    ) {
      for (const dp of md.dataPoints) out += this.sample(name, dp.attributes, dp.value);
    }
    return out;
  }

  private name(
    md: Pick<MetricData, 'descriptor' | 'dataPointType'> & { isMonotonic?: boolean },
  ): string {
    const monotonic = md.dataPointType === dataPointTypes.SUM && md.isMonotonic === true;
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

/** `faultline.otlp.exports{outcome}`: see {@link ExportWatch}. */
export const otlpExportsMetric = descriptor(
  'faultline.otlp.exports',
  '{export}',
  'OTLP metric exports by outcome (success, failure); a failure is also logged, at most once a minute while it lasts.',
);

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
    const exports = meter.createObservableCounter(otlpExportsMetric.name, {
      unit: otlpExportsMetric.unit,
      description: otlpExportsMetric.description,
    });
    const success = { ...attributes, outcome: 'success' };
    const failure = { ...attributes, outcome: 'failure' };
    exports.addCallback((o) => {
      o.observe(this.successes, success);
      o.observe(this.failures, failure);
    });
  }
}
