import { hostname } from 'node:os';
import { type Attributes, type Counter, type HrTime, type Meter } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  type CollectionResult,
  type DataPoint,
  type MetricData,
  type MetricDescriptor,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';
import { descriptor, PrometheusText, type TelemetryLogger } from '../lib/telemetry.js';
import { MetricsPipeline } from '../lib/telemetry-pipeline.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import type { AlertView } from './alerts.js';
import type { IncidentEventType } from './incidents.js';
import type { StoredIncident } from './store/incidents.js';
import type { AgentLiveness, PathHead, PathState } from './types.js';

/**
 * The collector's own telemetry: one OpenTelemetry MeterProvider (lib/telemetry.ts, as the
 * agent's) read by `GET /metrics` and, when OTEL_EXPORTER_OTLP_* is set, pushed over OTLP.
 *
 * The engines add their instruments (`DiagnosisEngine.instrument`, `Ingest.instrument`,
 * `AlertEngine.instrument`); this file adds the incident instruments and, through a
 * MetricProducer, the series built from the path matrix, the agents, the diagnosis and the
 * alerts at collection time. Built, not observed: the SDK goes on reporting an
 * asynchronous series with its last value after a callback stops observing it, so a path
 * that recovered or an agent that was forgotten would stay behind at its old value.
 *
 * The per-path shape, for 200k paths (2,000 agents × 100 targets): one series per path
 * would be 200k series per scrape for what is mostly "ok". So every path counts in
 * `faultline_paths{state,class,kind}` (a few dozen series), every agent in
 * `faultline_agent_paths{agent,state}` (≤ 4 per agent), and only a path that is not ok
 * (failing, degraded, unknown) has its own `faultline_path_state{agent,target,component,
 * service,kind,state,class}` and `faultline_path_state_since_timestamp_seconds{…}`: a fleet in good health
 * costs nothing per path, a cut costs the paths it cut.
 */

/** Options of {@link CollectorTelemetry}. */
export interface CollectorTelemetryOptions {
  readonly serviceVersion: string;
  /** `host.name` (default: the OS hostname). */
  readonly hostName?: string;
  /** Export failures and recoveries are logged here. */
  readonly logger?: TelemetryLogger;
  /** The environment OTLP settings are read from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Where the built series are read from at each collection. */
export interface CollectorTelemetrySources {
  /** Visits every path (PathMatrix.forEachPath). */
  readonly forEachPath: (visit: (p: PathHead) => void) => void;
  readonly agents: () => readonly AgentLiveness[];
  readonly diagnosis: () => Diagnosis;
  readonly alerts: () => readonly AlertView[];
  readonly openIncident: () => StoredIncident | undefined;
  /** Wall clock (epoch ms) for ages; Date.now by default. */
  readonly nowMs?: () => number;
}

const pathStates: readonly PathState['state'][] = ['ok', 'failing', 'degraded', 'unknown'];
/** An agent is up (live and on time), late (live, its report overdue) or silent. */
export const agentLivenessValues = ['up', 'late', 'silent'] as const;

/** Series built from the collector's state at collection time (see the file comment). */
const built = {
  paths: descriptor(
    'faultline.paths',
    '',
    'Paths of the matrix by debounced state, last failure class and kind (every path, ok included).',
  ),
  pathState: descriptor(
    'faultline.path.state',
    '',
    'Always 1, for each path that is not ok: its debounced state and last failure class.',
  ),
  pathSince: descriptor(
    'faultline.path.state.since_timestamp',
    's',
    'For each path that is not ok: when its current state began (unix seconds).',
  ),
  agentPaths: descriptor(
    'faultline.agent.paths',
    '',
    "An agent's paths by debounced state (0 for a state it has none in).",
  ),
  agents: descriptor('faultline.agents', '', 'Agents by liveness: up, late, silent.'),
  agentLiveness: descriptor(
    'faultline.agent.liveness',
    '',
    'Per agent: 1 for its liveness now (up, late or silent), 0 for the other two.',
  ),
  agentAge: descriptor(
    'faultline.agent.last_report.age',
    's',
    'Seconds since the agent last reported (its last heartbeat).',
  ),
  hypothesis: descriptor(
    'faultline.diagnosis.hypothesis.confidence',
    '',
    'Per hypothesis of the current diagnosis and component it blames: its confidence (0..1).',
  ),
  hypothesisSince: descriptor(
    'faultline.diagnosis.hypothesis.since_timestamp',
    's',
    'Per hypothesis and component: when the fault began (unix seconds).',
  ),
  alerts: descriptor(
    'faultline.alerts.active',
    '',
    'Alerts the collector holds now, by alert name and phase (pending, firing, resolved).',
  ),
  incidentOpen: descriptor('faultline.incident.open', '', '1 while an incident is open, else 0.'),
  incidentAge: descriptor(
    'faultline.incident.open.age',
    's',
    'Seconds since the first failure of the open incident (0 when none is open).',
  ),
};

function msToHrTime(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

/** The collector's telemetry: SDK instruments plus the built series, for /metrics and OTLP. */
export class CollectorTelemetry {
  readonly meter: Meter;
  private readonly pipeline: MetricsPipeline;
  private readonly text = new PrometheusText();
  private readonly startTime = msToHrTime(Date.now());
  private sources: CollectorTelemetrySources | undefined;
  private readonly incidentEvents: Counter;

  /** Throws ConfigError when the OTEL_* environment asks for something unsupported (gRPC). */
  constructor(options: CollectorTelemetryOptions) {
    const producer: MetricProducer = { collect: async () => this.collectBuilt() };
    this.pipeline = new MetricsPipeline({
      serviceName: 'faultline-collector',
      serviceVersion: options.serviceVersion,
      resource: { 'host.name': options.hostName ?? hostname() },
      otlpProducers: [producer],
      prometheusProducers: [producer],
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.env === undefined ? {} : { env: options.env }),
    });
    this.meter = this.pipeline.meter;
    this.pipeline.exports?.instrument(this.meter);
    this.incidentEvents = this.meter.createCounter('faultline.incident.events', {
      unit: '',
      description:
        'Incident timeline entries recorded: opened, leading_changed, hypotheses_changed, recovered.',
    });
  }

  /** The OTLP push URL, when the environment set one. */
  get otlpUrl(): string | undefined {
    return this.pipeline.otlp?.url;
  }

  /** Where the built series come from; until this is called there are none. */
  observe(sources: CollectorTelemetrySources): void {
    this.sources = sources;
  }

  /** An incident timeline entry was recorded. */
  recordIncidentEvent(type: IncidentEventType): void {
    this.incidentEvents.add(1, { type });
  }

  /** Everything, in the Prometheus text exposition format, for `GET /metrics`. */
  async renderPrometheus(): Promise<string> {
    const { resourceMetrics } = await this.pipeline.collectPrometheus();
    return this.text.render(resourceMetrics);
  }

  /** Pushes what is left (the final OTLP export) and stops; never throws. */
  shutdown(timeoutMs = 5000): Promise<{ ok: boolean; error?: string }> {
    return this.pipeline.shutdownWithin(timeoutMs);
  }

  /** The built series, as OTel data points (both readers render or push them). */
  private collectBuilt(): CollectionResult {
    const s = this.sources;
    const metrics: MetricData[] = [];
    if (s !== undefined) {
      const now = (s.nowMs ?? Date.now)();
      const end = msToHrTime(now);
      const gauge = (d: MetricDescriptor, points: [Attributes, number][]): void => {
        metrics.push({
          descriptor: d,
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
          dataPointType: DataPointType.GAUGE,
          dataPoints: points.map(([attributes, value]): DataPoint<number> => ({
            startTime: this.startTime,
            endTime: end,
            attributes,
            value,
          })),
        });
      };
      this.pathSeries(s.forEachPath, gauge);
      this.agentSeries(s.agents(), now, gauge);
      this.diagnosisSeries(s.diagnosis(), gauge);
      this.alertSeries(s.alerts(), gauge);
      const open = s.openIncident();
      gauge(built.incidentOpen, [[{}, open === undefined ? 0 : 1]]);
      gauge(built.incidentAge, [
        [{}, open === undefined ? 0 : Math.max(0, (now - open.firstFailureMs) / 1000)],
      ]);
    }
    return {
      resourceMetrics: {
        resource: this.pipeline.resource,
        scopeMetrics: [{ scope: this.pipeline.scope, metrics }],
      },
      errors: [],
    };
  }

  private pathSeries(
    forEachPath: (visit: (p: PathHead) => void) => void,
    gauge: (d: MetricDescriptor, points: [Attributes, number][]) => void,
  ): void {
    const counts = new Map<string, { attrs: Attributes; n: number }>();
    const perAgent = new Map<string, Map<PathState['state'], number>>();
    const notOk: [Attributes, number][] = [];
    const since: [Attributes, number][] = [];
    forEachPath((p) => {
      const key = `${p.state}\u0000${p.lastClass}\u0000${p.kind}`;
      const c = counts.get(key);
      if (c === undefined)
        counts.set(key, { attrs: { state: p.state, class: p.lastClass, kind: p.kind }, n: 1 });
      else c.n++;
      let byState = perAgent.get(p.agent);
      if (byState === undefined)
        perAgent.set(p.agent, (byState = new Map<PathState['state'], number>()));
      byState.set(p.state, (byState.get(p.state) ?? 0) + 1);
      if (p.state === 'ok') return;
      const attrs: Attributes = {
        agent: p.agent,
        target: p.target,
        component: p.component,
        service: p.service ?? '',
        kind: p.kind,
      };
      notOk.push([{ ...attrs, state: p.state, class: p.lastClass }, 1]);
      since.push([attrs, p.sinceMs / 1000]);
    });
    gauge(
      built.paths,
      [...counts.values()].map((c) => [c.attrs, c.n]),
    );
    const agentPaths: [Attributes, number][] = [];
    for (const [agent, byState] of perAgent)
      for (const state of pathStates) agentPaths.push([{ agent, state }, byState.get(state) ?? 0]);
    gauge(built.agentPaths, agentPaths);
    gauge(built.pathState, notOk);
    gauge(built.pathSince, since);
  }

  private agentSeries(
    agents: readonly AgentLiveness[],
    nowMs: number,
    gauge: (d: MetricDescriptor, points: [Attributes, number][]) => void,
  ): void {
    const totals = new Map<string, number>(agentLivenessValues.map((l) => [l, 0]));
    const liveness: [Attributes, number][] = [];
    const ages: [Attributes, number][] = [];
    for (const a of agents) {
      const now = a.state === 'silent' ? 'silent' : a.late === true ? 'late' : 'up';
      totals.set(now, (totals.get(now) ?? 0) + 1);
      for (const l of agentLivenessValues)
        liveness.push([{ agent: a.agent, liveness: l }, l === now ? 1 : 0]);
      ages.push([{ agent: a.agent }, Math.max(0, (nowMs - a.lastSeenMs) / 1000)]);
    }
    gauge(
      built.agents,
      [...totals].map(([liveness, n]) => [{ liveness }, n]),
    );
    gauge(built.agentLiveness, liveness);
    gauge(built.agentAge, ages);
  }

  private diagnosisSeries(
    d: Diagnosis,
    gauge: (d: MetricDescriptor, points: [Attributes, number][]) => void,
  ): void {
    const confidence = new Map<string, [Attributes, number]>();
    const since = new Map<string, [Attributes, number]>();
    for (const h of d.hypotheses) {
      // A hypothesis about the whole fleet (no component) still shows, under component="".
      for (const component of h.components.length > 0 ? h.components : ['']) {
        const key = `${h.kind}\u0000${component}`;
        // Two hypotheses of one kind on one component: the more confident one.
        const known = confidence.get(key);
        if (known !== undefined && known[1] >= h.confidence) continue;
        const attrs = { kind: h.kind, component };
        confidence.set(key, [attrs, h.confidence]);
        since.set(key, [attrs, h.since / 1000]);
      }
    }
    gauge(built.hypothesis, [...confidence.values()]);
    gauge(built.hypothesisSince, [...since.values()]);
  }

  private alertSeries(
    alerts: readonly AlertView[],
    gauge: (d: MetricDescriptor, points: [Attributes, number][]) => void,
  ): void {
    const counts = new Map<string, [Attributes, number]>();
    for (const a of alerts) {
      const alertname = a.labels.alertname ?? '';
      const key = `${alertname}\u0000${a.phase}`;
      const c = counts.get(key);
      if (c === undefined) counts.set(key, [{ alertname, phase: a.phase }, 1]);
      else c[1]++;
    }
    gauge(built.alerts, [...counts.values()]);
  }
}
