import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import type { Attributes } from '@opentelemetry/api';
import type { MetricProducer, ResourceMetrics } from '@opentelemetry/sdk-metrics';
import {
  ExportWatch,
  PrometheusText,
  otlpPushFromEnv,
  prometheusContentType,
  prometheusName,
  resourceAttributes,
  type OtlpPushSettings,
} from '../../lib/telemetry.js';
import type { MetricsPipeline } from '../../lib/telemetry-pipeline.js';
import { isProbeKind, probeRegistry } from '../../probes/registry.js';
import { failureClasses, type ProbeResult } from '../../wire/result.js';
import type { Logger } from '../../lib/logger.js';
import {
  COMPLETED,
  ERROR,
  phaseNames,
  phaseTimings,
  probeDurationBucketsS,
  probeResults,
  reservedMetricLabels,
  scheduleLagBucketsS,
  SKIPPED,
  STARTED,
  totalPhase,
  type CollectorDeliveryStats,
  type ConfirmStats,
  type DeliveryStats,
  visitAgent,
  type AgentInstrumentSources,
} from './catalogue.js';
import { collectPathMetrics } from './otlp.js';
import { renderPathText } from './prometheus.js';
import {
  bbAttributes,
  classIndex,
  defaultSeriesSelection,
  Hist,
  msToHrTime,
  pathKey,
  sameLabels,
  type PathState,
  type ProbeInstance,
  type SeriesSelection,
  type SeriesSink,
  type TelemetryTarget,
} from './series.js';

/*
 * The agent's telemetry, one file per part as Cloudprober's surfacers are one package each:
 * catalogue.ts (every metric's name, unit and description), series.ts (per-path state and the
 * one definition of a path's series), otlp.ts and prometheus.ts (the two exporters), and here
 * the AgentTelemetry that records results and serves both.
 */

// Shared with the collector (lib/telemetry.ts); exported here too, where they were first.
export { otlpPushFromEnv, prometheusContentType, prometheusName, type OtlpPushSettings };
export {
  probeDurationBucketsS,
  reservedMetricLabels,
  scheduleLagBucketsS,
  type CollectorDeliveryStats,
  type ConfirmStats,
  type DeliveryStats,
};
export {
  blackboxSeriesModes,
  defaultSeriesSelection,
  probeInstanceModes,
  type BlackboxSeries,
  type ProbeInstance,
  type SeriesSelection,
  type SeriesSink,
  type TelemetryTarget,
} from './series.js';

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
  /** Which per-path series beyond the default set (`defaultSeriesSelection`). */
  readonly series?: SeriesSelection;
}

/** How `shutdown` went. It never throws. */
export interface TelemetryShutdown {
  /** True when everything flushed (including the final OTLP push, if configured). */
  readonly ok: boolean;
  readonly error?: string;
}

/**
 * The agent's metrics, written by the agent itself: `renderPrometheus`/`metricsHandler` for
 * its `/metrics`, and, only when the OTEL_EXPORTER_OTLP_* environment asks for a push, an
 * OpenTelemetry MeterProvider with an OTLP/HTTP push reader whose one MetricProducer hands it
 * the same series as data points. The SDK (lib/telemetry-pipeline.ts) is imported then and
 * only then: an agent that is scraped and never pushes does not load it (~4 MB of live heap).
 *
 * No metric is an SDK instrument: every series is built from the agent's state at collection
 * time (`visitAgent` for the agent-level ones, `visitPath` for a path's). Besides not needing
 * the SDK, two reasons. (1) The SDK keeps reporting an asynchronous series with its last
 * value after a callback stops observing it, so a class change or a removed target would
 * leave stale series behind; built here, a series is exactly what is current. (2) Each SDK
 * `record()` hashes its attribute set (sort + JSON.stringify, ~3 µs); here a result costs two
 * map lookups and a few array writes.
 */
export class AgentTelemetry {
  /** OTLP push settings, or undefined when the environment configures none. */
  readonly otlp: OtlpPushSettings | undefined;

  private readonly agentName: string;
  private probeInstance: ProbeInstance;
  private series: SeriesSelection;
  private readonly scope: { readonly name: string; readonly version: string };
  private readonly logger: Logger | undefined;
  /** The OTel resource's attributes (`target_info` on /metrics). */
  private readonly resource: Attributes;
  /** The OTLP push (an SDK MeterProvider), loaded in the background when `otlp` is set. */
  private readonly pipeline: Promise<MetricsPipeline | Error> | undefined;
  private readonly exports: ExportWatch | undefined;
  private readonly text = new PrometheusText();
  private readonly paths = new Map<string, Map<string, PathState>>();
  /** Targets removed while a probe may still be running: its late result must not revive them. */
  private readonly removed = new WeakMap<TelemetryTarget, Set<string>>();
  private readonly probeCounts = new Float64Array(probeResults.length);
  private readonly agentAttrs: Attributes;
  private readonly agentSources: AgentInstrumentSources;
  /** Attribute sets of the agent-level series (per collector, per state), made once. */
  private readonly agentAttrCache = new Map<string, Attributes>();
  private readonly visitAgentSeries = (sink: SeriesSink): void =>
    visitAgent(sink, this.agentSources, this.agentAttrCache);
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
    this.series = options.series ?? defaultSeriesSelection;
    this.scope = { name: 'faultline-agent', version: options.serviceVersion };
    this.logger = options.logger;
    this.agentAttrs = { agent: options.agentName };
    this.otlp = otlpPushFromEnv();
    this.exports =
      this.otlp === undefined ? undefined : new ExportWatch(this.otlp.url, options.logger);
    this.agentSources = {
      agentAttrs: this.agentAttrs,
      probeAttrs: probeResults.map((result) => ({ agent: options.agentName, result })),
      probeCounts: this.probeCounts,
      inFlight: () => this.inFlightSource?.() ?? this.inFlight,
      delivery: () => this.deliverySource?.(),
      confirm: () => this.confirmSource?.(),
      exports: this.exports,
    };

    const labelAttrs = Object.fromEntries(
      Object.entries(options.agentLabels).map(([k, v]) => [`faultline.agent.label.${k}`, v]),
    );
    const own = {
      serviceName: 'faultline-agent',
      serviceVersion: options.serviceVersion,
      resource: {
        'host.name': options.hostName ?? hostname(),
        'faultline.agent': options.agentName,
        ...labelAttrs,
      },
    };
    this.resource = resourceAttributes(own);
    if (this.otlp !== undefined) this.pipeline = this.startPush(own, this.exports!);
  }

  /**
   * Imports the SDK and starts the OTLP push: a MeterProvider whose push reader collects the
   * agent's series through one MetricProducer (the SDK's resource, as before it was lazy).
   * Never rejects: a failure is logged and kept for `shutdown` to report.
   */
  private async startPush(
    own: Pick<
      ConstructorParameters<typeof MetricsPipeline>[0],
      'serviceName' | 'serviceVersion' | 'resource'
    >,
    exports: ExportWatch,
  ): Promise<MetricsPipeline | Error> {
    // The environment as it was at construction, where the push settings were read from.
    const env = { ...process.env };
    try {
      const { MetricsPipeline } = await import('../../lib/telemetry-pipeline.js');
      let pipeline: MetricsPipeline | undefined = undefined;
      const producer: MetricProducer = {
        collect: async () => this.collectOtlp(pipeline!.resource),
      };
      pipeline = new MetricsPipeline({
        ...own,
        otlpProducers: [producer],
        exports,
        env,
        ...(this.logger === undefined ? {} : { logger: this.logger }),
      });
      return pipeline;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.logger?.error({ err: error.message }, 'OTLP metrics push could not start');
      return error;
    }
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

    if (this.series.histograms) this.recordHistograms(p, result);
  }

  /** The opt-in per-path histograms (`SeriesSelection.histograms`). */
  private recordHistograms(p: PathState, result: ProbeResult): void {
    const t = result.timings;
    if (p.kindTelemetry?.phaseHistograms === true) {
      for (let i = 0; i < phaseTimings.length; i++) {
        const ms = t[phaseTimings[i]!];
        if (ms === undefined) continue;
        (p.phases[i] ??= new Hist(probeDurationBucketsS)).record(ms / 1000);
      }
    } else {
      (p.phases[totalPhase] ??= new Hist(probeDurationBucketsS)).record(t.totalMs / 1000);
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

  /**
   * Changes which per-path series are exported (a reloaded config). Histograms turned off are
   * dropped; turned on, they count from now.
   */
  setSeries(select: SeriesSelection): void {
    const old = this.series;
    this.series = select;
    if (!old.histograms || select.histograms) return;
    for (const byKind of this.paths.values()) {
      for (const p of byKind.values()) {
        p.phases.fill(undefined);
        p.icmpRtt = undefined;
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
   * The path series are written straight from the per-path state, in slices of `sliceMs`
   * (default 5 ms) with a yield to the event loop in between, so that a scrape of thousands
   * of paths does not hold up the probes due meanwhile.
   */
  async renderPrometheus(sliceMs?: number): Promise<string> {
    const head = this.text.targetInfo(this.resource);
    const lag = { hist: this.scheduleLag, attributes: this.agentAttrs };
    return (
      head +
      (await renderPathText(
        this.text,
        this.paths.values(),
        lag,
        this.series,
        sliceMs,
        this.visitAgentSeries,
      ))
    );
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
   * Pushes what is left (final OTLP export) and shuts the push down, within `timeoutMs` of
   * the SDK being loaded (an agent that shuts down just after it started waits for that
   * local import). Never throws; a second call returns the first one's outcome.
   */
  shutdown(timeoutMs = 5000): Promise<TelemetryShutdown> {
    this.shutdownPromise ??= this.doShutdown(timeoutMs);
    return this.shutdownPromise;
  }

  private async doShutdown(timeoutMs: number): Promise<TelemetryShutdown> {
    if (this.pipeline === undefined) return { ok: true };
    // Loading the SDK is local work, not counted in the bound (a push that hangs is).
    const pipeline = await this.pipeline;
    let outcome: TelemetryShutdown;
    if (pipeline instanceof Error) {
      outcome = { ok: false, error: `OTLP metrics push did not start: ${pipeline.message}` };
    } else outcome = await pipeline.shutdownWithin(timeoutMs);
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

  /** Builds every series for one OTLP collection. */
  private collectOtlp(
    resource: ResourceMetrics['resource'],
  ): ReturnType<typeof collectPathMetrics> {
    const lag = { hist: this.scheduleLag, startTime: this.startTime, attributes: this.agentAttrs };
    return collectPathMetrics(
      this.paths.values(),
      lag,
      this.scope,
      resource,
      this.series,
      this.visitAgentSeries,
    );
  }
}
