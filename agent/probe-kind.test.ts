import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { probeRegistry } from '../probes/registry.js';
import type { KindMetric, ProbeDefinition } from '../probes/types.js';
import type { ProbeResult } from '../wire/result.js';
import type { ResolvedTarget } from './config.js';
import { defaultPlanPolicy, planTargetRefusal } from './plan-policy.js';
import { Reporter } from './reporter.js';
import type { BatchDraft } from './spool.js';
import { AgentTelemetry } from './telemetry/index.js';

/*
 * "A new kind is one file and one registry line": a kind registered here in memory, and
 * nowhere else, gets its main timing in the reporter's summaries, its loss, its own metric
 * series and its plan check — the agent's code names no kind.
 */

const answers: KindMetric = {
  name: 'probe_fake_answers',
  unit: '',
  description: 'Answers the fake prober counted.',
};

const fake: ProbeDefinition<{ family: 0 }> = {
  kind: 'fakeproto',
  description: 'a kind that exists only in this test',
  target: { form: 'hostPort', defaultPort: 1 },
  options: z.object({ family: z.literal(0).default(0) }).strict(),
  mainTiming: 'tlsMs',
  summaryLoss: (d) => (typeof d.lost === 'number' ? { ratio: d.lost / 4, packets: 4 } : undefined),
  telemetry: {
    phaseHistograms: true,
    blackboxIp: (r) => r.detail?.ip,
    series: (r, sink) => sink.gauge(answers, Number(r.detail?.answers ?? 0), 'mode', 'fast'),
  },
  planCheck: { refusal: () => 'the fake kind is refused by its own check' },
  run: () => Promise.resolve({ class: 'ok', timings: {} }),
};

const registry = probeRegistry as unknown as Record<string, ProbeDefinition<unknown>>;

function result(seq: number): ProbeResult {
  return {
    agent: 'a1',
    target: 'fake-1',
    address: '198.18.0.10:1',
    kind: 'fakeproto',
    class: 'ok',
    seq,
    startedAtMs: 1_700_000_000_000 + seq,
    timings: { connectMs: 1, tlsMs: 7, totalMs: 20 },
    detail: { ip: '198.18.0.10', lost: 1, answers: 3 },
  };
}

describe('a kind registered in one place', () => {
  beforeAll(() => {
    registry.fakeproto = fake;
  });
  afterAll(() => {
    delete registry.fakeproto;
  });

  it('the reporter summarises its main timing and its loss', async () => {
    const batches: BatchDraft[] = [];
    const reporter = new Reporter({
      agent: 'a1',
      labels: {},
      log: pino({ level: 'silent' }),
      earlyFlushMs: false,
      sink: {
        append: (d) => {
          batches.push(d);
          return Promise.resolve(batches.length);
        },
      },
    });
    for (let i = 1; i <= 3; i++) reporter.observe(result(i), { name: 'fake-1', kind: 'fakeproto' });
    await reporter.cut();
    const summary = batches.flatMap((b) => b.summaries)[0];
    expect(summary?.latencyMs).toMatchObject({ min: 7, p50: 7, max: 7 });
    expect(summary?.lossRatio).toBe(0.25);
    expect(summary?.echoes).toBe(12);
    await reporter.stop();
  });

  it('the agent exports its phases, its IP protocol and its own series', async () => {
    // A kind's own series and the per-phase histograms are opt-in (`metrics.blackbox: full`,
    // `metrics.histograms: true`).
    const t = new AgentTelemetry({
      agentName: 'a1',
      agentLabels: {},
      serviceVersion: '0',
      series: { histograms: true, blackbox: 'full' },
    });
    t.recordResult(result(1), { labels: {} });
    const text = await t.renderPrometheus();
    await t.shutdown();
    expect(text).toMatch(
      /^probe_fake_answers\{agent="a1",target="fake-1",kind="fakeproto",address="198\.18\.0\.10:1",mode="fast"\} 3$/m,
    );
    expect(text).toMatch(/^probe_ip_protocol\{[^}]*kind="fakeproto"[^}]*\} 4$/m);
    expect(text).toMatch(/^faultline_probe_duration_seconds_count\{[^}]*phase="tls"\} 1$/m);
  });

  it("the agent's plan policy asks the kind", () => {
    const target = {
      name: 'fake-1',
      kind: 'fakeproto',
      address: '198.18.0.10:1',
      target: { name: 'fake-1', address: '198.18.0.10:1', host: '198.18.0.10', port: 1 },
      intervalMs: 1000,
      timeoutMs: 500,
      options: { family: 0 },
      labels: {},
    } as unknown as ResolvedTarget;
    expect(planTargetRefusal(target, defaultPlanPolicy, undefined)).toBe(
      'the fake kind is refused by its own check',
    );
  });
});
