import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isolateOtelEnv } from '../test/helpers/otel-env.js';
import { sumMetric } from '../test/helpers/collector-process.js';
import { OtlpReceiver, type ReceivedMetric } from '../test/helpers/otlp-receiver.js';
import { pollUntil } from '../lab/poll-until.js';
import { dbCollectorYaml, dbPeriod, postReport } from '../test/helpers/report-batches.js';
import type { FailureClass } from '../wire/result.js';
import { performance } from 'node:perf_hooks';
import { ConfigError } from '../lib/errors.js';
import { emptyDiagnosis } from './diagnosis.js';
import { Collector } from './collector.js';
import { parseCollectorConfig } from './config.js';
import { CollectorTelemetry } from './telemetry.js';
import type { AgentLiveness, PathHead } from './types.js';

const token = 'fleet-token-0123456789abcdef';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

isolateOtelEnv();

let collector: Collector | undefined;
let receiver: OtlpReceiver | undefined;
afterEach(async () => {
  await collector?.stop();
  collector = undefined;
  await receiver?.close();
  receiver = undefined;
});

/** Results of the last seconds: inside the sliding window the failure ratio is read from. */
const recentBaseMs = Math.floor(Date.now() / 1000) * 1000 - 10_000;

/** A collector in process on the db inventory (app-1, app-2 probing db-1); its JSON logs kept. */
async function start(
  more: readonly string[] = [],
): Promise<{ c: Collector; logs: Record<string, unknown>[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-telemetry-'));
  dirs.push(dir);
  const logs: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) },
  );
  const config = parseCollectorConfig(
    dbCollectorYaml({ dataDir: dir, token, more }),
    'collector.yaml',
  );
  collector = await Collector.start(config, log);
  return { c: collector, logs };
}

/** Periods 1..3 ok from both agents, then 4..6 with postgres refusing: db-1's port fails. */
async function reportRefusals(c: Collector): Promise<void> {
  for (let seq = 1; seq <= 6; seq++) {
    const pg: FailureClass = seq <= 3 ? 'ok' : 'tcp_refused';
    for (const a of ['app-1', 'app-2'])
      await postReport(c.url(), token, dbPeriod(a, seq, pg, recentBaseMs));
  }
}

const scrape = async (c: Collector): Promise<string> => {
  const res = await fetch(`${c.url()}/metrics`, { signal: AbortSignal.timeout(5_000) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return res.text();
};

describe("the collector's /metrics after real reports", () => {
  it('has the path matrix (aggregates, and a series per path that is not ok), agent liveness and age, the diagnosis per kind and component, incidents, alerts, ingest', async () => {
    const { c } = await start();
    await reportRefusals(c);
    const text = await pollUntil('the incident opened', async () => {
      const t = await scrape(c);
      return sumMetric(t, 'faultline_incident_open', {}) === 1 ? t : undefined;
    });
    // Four paths: both agents' ping ok, both agents' postgres port failing (refused).
    expect(sumMetric(text, 'faultline_paths', {})).toBe(4);
    expect(sumMetric(text, 'faultline_paths', { state: 'ok', class: 'ok', kind: 'icmp' })).toBe(2);
    expect(
      sumMetric(text, 'faultline_paths', { state: 'failing', class: 'tcp_refused', kind: 'tcp' }),
    ).toBe(2);
    // Per path, only those not ok, with where they go and why they fail.
    expect(sumMetric(text, 'faultline_path_state', {})).toBe(2);
    for (const agent of ['app-1', 'app-2']) {
      expect(
        sumMetric(text, 'faultline_path_state', {
          agent,
          target: 'db-1/postgres/tcp',
          component: 'db-1',
          service: 'postgres',
          kind: 'tcp',
          state: 'failing',
          class: 'tcp_refused',
        }),
      ).toBe(1);
      expect(
        sumMetric(text, 'faultline_path_state_since_timestamp_seconds', {
          agent,
          target: 'db-1/postgres/tcp',
        }),
      ).toBeGreaterThanOrEqual(recentBaseMs / 1000);
      expect(sumMetric(text, 'faultline_agent_paths', { agent, state: 'ok' })).toBe(1);
      expect(sumMetric(text, 'faultline_agent_paths', { agent, state: 'failing' })).toBe(1);
      expect(sumMetric(text, 'faultline_agent_paths', { agent, state: 'unknown' })).toBe(0);
      expect(sumMetric(text, 'faultline_agent_liveness', { agent, liveness: 'up' })).toBe(1);
      expect(sumMetric(text, 'faultline_agent_liveness', { agent, liveness: 'silent' })).toBe(0);
      const age = sumMetric(text, 'faultline_agent_last_report_age_seconds', { agent });
      expect(age).toBeGreaterThanOrEqual(0);
      expect(age).toBeLessThan(60);
    }
    expect(text).not.toMatch(/^faultline_path_state\{[^}]*kind="icmp"/m);
    expect(sumMetric(text, 'faultline_agents', { liveness: 'up' })).toBe(2);
    expect(sumMetric(text, 'faultline_agents', { liveness: 'silent' })).toBe(0);

    // The diagnosis, as before, and now per hypothesis kind and component.
    expect(sumMetric(text, 'faultline_diagnosis_healthy', {})).toBe(0);
    expect(sumMetric(text, 'faultline_diagnosis_hypotheses', { kind: 'service_down' })).toBe(1);
    const confidence = sumMetric(text, 'faultline_diagnosis_hypothesis_confidence', {
      kind: 'service_down',
      component: 'db-1',
    });
    expect(confidence).toBeGreaterThan(0);
    expect(confidence).toBeLessThanOrEqual(1);
    expect(
      sumMetric(text, 'faultline_diagnosis_hypothesis_since_timestamp_seconds', {
        component: 'db-1',
      }),
    ).toBeGreaterThanOrEqual(recentBaseMs / 1000);
    expect(sumMetric(text, 'faultline_diagnosis_computations_total', {})).toBe(
      c.diagnoser.stats().computations,
    );
    expect(sumMetric(text, 'faultline_diagnosis_compute_seconds_count', {})).toBe(
      c.diagnoser.stats().computations,
    );

    // Incidents and alerts.
    expect(sumMetric(text, 'faultline_incident_events_total', { type: 'opened' })).toBe(1);
    expect(sumMetric(text, 'faultline_incident_open_age_seconds', {})).toBeGreaterThan(0);
    expect(
      sumMetric(text, 'faultline_alerts_firing', {}) +
        sumMetric(text, 'faultline_alerts_pending', {}),
    ).toBe(sumMetric(text, 'faultline_alerts_active', {}));
    expect(sumMetric(text, 'faultline_alerts_active', { alertname: 'FaultlineServiceDown' })).toBe(
      1,
    );

    // Ingest: twelve batches taken.
    expect(sumMetric(text, 'faultline_ingest_batches_total', { outcome: 'accepted' })).toBe(12);
    expect(text).toMatch(/^faultline_ingest_busy_ratio \d/m);
    expect(text).toMatch(/^faultline_ingest_busy_ratio_limit 0\.\d+$/m);
    expect(text).toMatch(/^# TYPE faultline_ingest_batches_total counter$/m);
    expect(text).toMatch(/^# TYPE faultline_diagnosis_compute_seconds histogram$/m);
    expect(text).toMatch(/^target_info\{[^}]*service_name="faultline-collector"/m);
    // No push configured: no export counter.
    expect(text).not.toMatch(/^faultline_otlp_exports_total/m);

    // Recovery: the per-path series go, the aggregates follow.
    for (let seq = 7; seq <= 9; seq++)
      for (const a of ['app-1', 'app-2'])
        await postReport(c.url(), token, dbPeriod(a, seq, 'ok', recentBaseMs));
    const healed = await pollUntil('the incident closed', async () => {
      const t = await scrape(c);
      return sumMetric(t, 'faultline_incident_open', {}) === 0 ? t : undefined;
    });
    expect(healed).not.toMatch(/^faultline_path_state\{/m);
    expect(healed).not.toMatch(/^faultline_diagnosis_hypothesis_confidence\{/m);
    expect(sumMetric(healed, 'faultline_paths', { state: 'ok' })).toBe(4);
    expect(sumMetric(healed, 'faultline_incident_events_total', { type: 'recovered' })).toBe(1);
  });
});

describe("the collector's OTLP push", () => {
  const metric = (metrics: readonly ReceivedMetric[], name: string): ReceivedMetric | undefined =>
    metrics.find((m) => m.name === name);

  it('pushes its metrics under their OTel names when OTEL_EXPORTER_OTLP_ENDPOINT is set', async () => {
    receiver = await OtlpReceiver.start();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '200';
    const { c } = await start();
    await reportRefusals(c);
    const r = receiver;
    const got = await pollUntil('a push with the failing paths', async () =>
      r.exports.find((e) => {
        const state = metric(e.metrics, 'faultline.path.state');
        return state !== undefined && state.points.length === 2 ? e : undefined;
      }),
    );
    expect(r.errors).toEqual([]);
    expect(got.path).toBe('/v1/metrics');
    expect(got.resource['service.name']).toBe('faultline-collector');
    const state = metric(got.metrics, 'faultline.path.state')!;
    expect(state.type).toBe('gauge');
    expect(
      state.points
        .map((p) => p.attributes)
        .sort((a, b) => JSON.stringify(a.agent).localeCompare(JSON.stringify(b.agent))),
    ).toEqual([
      {
        agent: 'app-1',
        target: 'db-1/postgres/tcp',
        component: 'db-1',
        service: 'postgres',
        kind: 'tcp',
        state: 'failing',
        class: 'tcp_refused',
      },
      {
        agent: 'app-2',
        target: 'db-1/postgres/tcp',
        component: 'db-1',
        service: 'postgres',
        kind: 'tcp',
        state: 'failing',
        class: 'tcp_refused',
      },
    ]);
    const batches = metric(got.metrics, 'faultline.ingest.batches');
    expect(batches?.type).toBe('sum');
    expect(batches?.monotonic).toBe(true);
    expect(batches?.points.find((p) => p.attributes.outcome === 'accepted')?.value).toBeGreaterThan(
      0,
    );
    expect(metric(got.metrics, 'faultline.diagnosis.compute')?.type).toBe('histogram');
    expect(metric(got.metrics, 'faultline.agent.last_report.age')?.unit).toBe('s');
    expect(metric(got.metrics, 'faultline.diagnosis.healthy')?.points[0]?.value).toBeDefined();
  });

  it('a failing endpoint is logged once (not per export) and counted in faultline_otlp_exports_total', async () => {
    receiver = await OtlpReceiver.start({ status: 400 });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '100';
    const { c, logs } = await start();
    const text = await pollUntil('three failed exports counted', async () => {
      const t = await scrape(c);
      return sumMetric(t, 'faultline_otlp_exports_total', { outcome: 'failure' }) >= 3
        ? t
        : undefined;
    });
    expect(sumMetric(text, 'faultline_otlp_exports_total', { outcome: 'success' })).toBe(0);
    expect(text).toMatch(/^# TYPE faultline_otlp_exports_total counter$/m);
    const failing = logs.filter((l) => l.msg === 'OTLP metrics export failing');
    expect(failing).toHaveLength(1);
    expect(failing[0]).toMatchObject({ level: 40, url: `${receiver.url}/v1/metrics` });
  });
});

describe('agent liveness on /metrics', () => {
  it('an agent that stops reporting goes silent: its liveness series moves, its age grows, the counts follow', async () => {
    const { c } = await start(['agents: { reportInterval: 1s, silentAfter: 2s }']);
    for (let seq = 1; seq <= 2; seq++)
      for (const a of ['app-1', 'app-2'])
        await postReport(c.url(), token, dbPeriod(a, seq, 'ok', Date.now() - 3_000 + seq * 100));
    // app-1 goes on reporting, app-2 stops.
    let seq = 3;
    const text = await pollUntil(
      'app-2 silent on /metrics',
      async () => {
        await postReport(c.url(), token, dbPeriod('app-1', seq++, 'ok', Date.now() - seq * 1000));
        const t = await scrape(c);
        return sumMetric(t, 'faultline_agent_liveness', { agent: 'app-2', liveness: 'silent' }) ===
          1
          ? t
          : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    expect(sumMetric(text, 'faultline_agent_liveness', { agent: 'app-2', liveness: 'up' })).toBe(0);
    expect(
      sumMetric(text, 'faultline_agent_liveness', { agent: 'app-1', liveness: 'silent' }),
    ).toBe(0);
    expect(sumMetric(text, 'faultline_agents', { liveness: 'silent' })).toBe(1);
    expect(
      sumMetric(text, 'faultline_agent_last_report_age_seconds', { agent: 'app-2' }),
    ).toBeGreaterThanOrEqual(2);
  });
});

describe('CollectorTelemetry', () => {
  it('refuses OTLP over gRPC with a ConfigError naming the variable', () => {
    const make = (): CollectorTelemetry =>
      new CollectorTelemetry({
        serviceVersion: '0.0.0',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4317',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        },
      });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(/^OTEL_EXPORTER_OTLP_PROTOCOL=grpc: .*http\/protobuf/);
  });

  it('scrape cost at 200k paths, 1% failing (printed, loosely bounded)', async () => {
    const agents = 2000;
    const perAgent = 100;
    const paths: PathHead[] = [];
    const now = Date.now();
    for (let a = 0; a < agents; a++)
      for (let t = 0; t < perAgent; t++) {
        // host-0 is down for everyone: 2,000 failing paths, 1 %.
        const failing = t === 0;
        paths.push({
          agent: `agent-${a}`,
          target: `host-${t}/svc/tcp`,
          component: `host-${t}`,
          service: 'svc',
          kind: 'tcp',
          state: failing ? 'failing' : 'ok',
          lastClass: failing ? 'tcp_timeout' : 'ok',
          sinceMs: now,
        });
      }
    const livenesses: AgentLiveness[] = Array.from({ length: agents }, (_, a) => ({
      agentId: `id-${a}`,
      agent: `agent-${a}`,
      labels: {},
      state: 'live',
      lastSeenMs: now,
      acceptedSeq: 1,
      droppedResults: 0,
      spoolBacklog: 0,
    }));
    const t = new CollectorTelemetry({ serviceVersion: '0.0.0', env: {} });
    t.observe({
      forEachPath: (visit) => paths.forEach(visit),
      agents: () => livenesses,
      diagnosis: emptyDiagnosis,
      alerts: () => [],
      openIncident: () => undefined,
    });
    await t.renderPrometheus(); // warm
    const t0 = performance.now();
    const text = await t.renderPrometheus();
    const ms = performance.now() - t0;
    const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    console.log(
      `collector /metrics at ${paths.length} paths (${agents} agents, ${agents} failing): ${ms.toFixed(0)} ms, ${(text.length / 1e6).toFixed(2)} MB, ${lines} samples`,
    );
    expect(sumMetric(text, 'faultline_path_state', {})).toBe(agents);
    expect(sumMetric(text, 'faultline_paths', {})).toBe(paths.length);
    expect(ms).toBeLessThan(5_000);
    await t.shutdown();
  });
});
