import { createRequire } from 'node:module';
import type { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import type { OTLPMetricExporter as OtlpProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import type { Attributes, Meter } from '@opentelemetry/api';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import {
  MeterProvider,
  MetricReader,
  PeriodicExportingMetricReader,
  type MetricProducer,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  ExportWatch,
  otlpPushFromEnv,
  type ExportResult,
  type OtlpPushSettings,
  type TelemetryLogger,
} from './telemetry.js';

/*
 * The OpenTelemetry SDK's side of the telemetry (lib/telemetry.ts is the SDK-free side):
 * one MeterProvider with a Prometheus reader and, when the environment asks, an OTLP/HTTP
 * push reader. The collector builds its metrics on it; the agent, which writes its
 * `/metrics` itself, imports this module only when it pushes over OTLP.
 */

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
  /** The watch on OTLP exports to report to (default: a new one, logging to `logger`). */
  readonly exports?: ExportWatch;
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
      const watch = options.exports ?? new ExportWatch(this.otlp.url, options.logger);
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

  /**
   * {@link shutdown} bounded by `timeoutMs`, and what it says: ok, or why not (it timed out,
   * the final OTLP export failed, the SDK threw). Never throws.
   */
  async shutdownWithin(timeoutMs: number): Promise<{ ok: boolean; error?: string }> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      timer.unref();
    });
    try {
      const done = await Promise.race([
        this.shutdown(timeoutMs).then(() => 'done' as const),
        timedOut,
      ]);
      if (done === 'timeout')
        return { ok: false, error: `telemetry did not shut down within ${timeoutMs} ms` };
      const failed = this.exports?.lastError;
      return failed === undefined
        ? { ok: true }
        : { ok: false, error: `final OTLP export failed: ${failed}` };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    } finally {
      clearTimeout(timer);
    }
  }
}
