import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sumMetric } from '../test/helpers/collector-process.js';
import { pollUntil } from '../lab/poll-until.js';
import { dbCollectorYaml, dbPeriod, postReport } from '../test/helpers/report-batches.js';
import { fetchAsViewer } from '../test/helpers/viewer.js';
import { DiagnosisSchema, faultKinds, type Diagnosis } from '../wire/diagnosis.js';
import type { ReportBatch } from '../wire/report.js';
import type { FailureClass } from '../wire/result.js';
import { ensureBuilt, repoRoot } from '../test/helpers/cli.js';
import { Collector, type CollectorOptions } from './collector.js';
import { parseCollectorConfig } from './config.js';
import {
  DiagnosisEngine,
  emptyDiagnosis,
  localiseInventory,
  type DiagnosisChange,
} from './diagnosis.js';
import { localise, type LocaliseInput } from './localise/localise.js';
import { meterText } from '../test/helpers/meter-text.js';

const silentLog = pino({ level: 'silent' });

const faulty: Omit<Diagnosis, 'computedAtMs'> = {
  healthy: false,
  hypotheses: [
    {
      kind: 'service_down',
      confidence: 0.9,
      summary: 'postgres on db-1 is down',
      components: ['db-1'],
      groups: [],
      evidence: { counts: { tcp_refused: 2 }, examples: [] },
      since: 1,
    },
  ],
  ruledOut: [{ component: 'db-2', canBeRuledOut: true, reason: 'db-2 answers' }],
};

/** An engine on a fake localiser whose answer the test sets; counts and checks its calls. */
function fakeEngine(opts: { monotonic?: () => number } = {}) {
  let answer: Omit<Diagnosis, 'computedAtMs'> = { healthy: true, hypotheses: [], ruledOut: [] };
  let clock = 1_000;
  let inside = false;
  const calls: LocaliseInput[] = [];
  const state = {
    overlapped: false,
    throwNext: false,
    /** Runs inside the localiser (to move a fake clock, invalidate from within…). */
    during: (): void => undefined,
  };
  const engine = new DiagnosisEngine({
    input: () => ({ paths: [], agents: [], inventory: [] }),
    localise: (input) => {
      if (inside) state.overlapped = true;
      inside = true;
      try {
        calls.push(input);
        state.during();
        if (state.throwNext) {
          state.throwNext = false;
          throw new Error('localiser bug');
        }
        return { ...answer, computedAtMs: input.nowMs };
      } finally {
        inside = false;
      }
    },
    clockMs: () => (clock += 1_000),
    ...(opts.monotonic === undefined ? {} : { monotonicMs: opts.monotonic }),
    log: silentLog,
  });
  const changes: DiagnosisChange[] = [];
  engine.onChange((c) => changes.push(c));
  return {
    engine,
    calls,
    changes,
    state,
    set: (a: Omit<Diagnosis, 'computedAtMs'>) => (answer = a),
  };
}

describe('DiagnosisEngine', () => {
  const engines: DiagnosisEngine[] = [];
  afterEach(() => {
    for (const e of engines.splice(0)) e.close();
  });
  const make = (opts: Parameters<typeof fakeEngine>[0] = {}) => {
    const f = fakeEngine(opts);
    engines.push(f.engine);
    return f;
  };

  it('starts with the empty healthy document and computes nothing until asked', async () => {
    const f = make();
    expect(f.engine.current()).toEqual(emptyDiagnosis());
    await f.engine.idle();
    expect(f.calls).toHaveLength(0);
  });

  it('coalesces a burst of invalidations into one localisation, on a later turn', async () => {
    const f = make();
    for (let i = 0; i < 500; i++) f.engine.invalidate(i % 2 === 0 ? 'batch' : 'agent-silent');
    // Not synchronously: the batch handler returns first.
    expect(f.calls).toHaveLength(0);
    expect(f.engine.stats().pending).toBe(true);
    await f.engine.idle();
    expect(f.calls).toHaveLength(1);
    expect(f.engine.stats()).toMatchObject({ computations: 1, pending: false });
    // A second burst after it is its own localisation.
    f.engine.invalidate('batch');
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(f.calls).toHaveLength(2);
  });

  it('fires the change event once per change, with both documents and the reasons; never on an unchanged recompute', async () => {
    const f = make();
    f.set(faulty);
    f.engine.invalidate('batch');
    f.engine.invalidate('agent-silent');
    await f.engine.idle();
    expect(f.changes).toHaveLength(1);
    expect(f.changes[0]?.previous).toEqual(emptyDiagnosis());
    expect(f.changes[0]?.current).toMatchObject(faulty);
    expect(f.changes[0]?.reasons).toEqual(['agent-silent', 'batch']);
    const firstAt = f.engine.current().computedAtMs;

    // Same content, a later computedAtMs: the document is refreshed, nobody is called.
    for (let i = 0; i < 3; i++) {
      f.engine.invalidate('batch');
      await f.engine.idle();
    }
    expect(f.calls).toHaveLength(4);
    expect(f.changes).toHaveLength(1);
    expect(f.engine.current().computedAtMs).toBeGreaterThan(firstAt);
    expect(f.engine.stats().changes).toBe(1);

    // Recovery is a change again.
    f.set({ healthy: true, hypotheses: [], ruledOut: [] });
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(f.changes).toHaveLength(2);
    expect(f.changes[1]?.previous).toMatchObject(faulty);
    expect(f.changes[1]?.current.healthy).toBe(true);
  });

  it('never runs two localisations at once: an invalidation from inside schedules exactly one more', async () => {
    const f = make();
    let nested = 0;
    f.state.during = () => {
      if (nested++ === 0) {
        f.engine.invalidate('batch');
        f.engine.invalidate('batch');
        expect(f.engine.computeNow('manual')).toBeDefined();
      }
    };
    f.set(faulty);
    // A subscriber invalidating on a change must not recurse either.
    let fromListener = 0;
    f.engine.onChange(() => {
      if (fromListener++ === 0) f.engine.invalidate('listener');
    });
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(f.state.overlapped).toBe(false);
    // The first run, one for the invalidations made inside it (the listener's folds into it).
    expect(f.calls).toHaveLength(2);
  });

  it('keeps the previous document when the localiser throws, counts it, and recovers on the next change', async () => {
    const f = make();
    f.set(faulty);
    f.engine.invalidate('batch');
    await f.engine.idle();
    const before = f.engine.current();
    f.state.throwNext = true;
    f.set({ healthy: true, hypotheses: [], ruledOut: [] });
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(f.engine.current()).toBe(before);
    expect(f.engine.stats()).toMatchObject({ computations: 2, failures: 1, changes: 1 });
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(f.engine.current().healthy).toBe(true);
    expect(f.changes).toHaveLength(2);
  });

  it('a throwing subscriber neither stops the others nor the engine; unsubscribe works', async () => {
    const f = make();
    const seen: boolean[] = [];
    f.engine.onChange(() => {
      throw new Error('subscriber bug');
    });
    const off = f.engine.onChange((c) => seen.push(c.current.healthy));
    f.set(faulty);
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(seen).toEqual([false]);
    off();
    f.set({ healthy: true, hypotheses: [], ruledOut: [] });
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(seen).toEqual([false]);
    expect(f.changes).toHaveLength(2);
  });

  it('after an expensive localisation the next waits three compute times, not more', async () => {
    let fakeNow = 0;
    const f = make({ monotonic: () => fakeNow });
    // Each localisation "takes" 40 ms of the fake monotonic clock.
    f.state.during = () => {
      fakeNow += 40;
    };
    f.engine.invalidate('batch');
    await f.engine.idle();
    const t0 = performance.now();
    f.engine.invalidate('batch');
    await f.engine.idle();
    const waitedMs = performance.now() - t0;
    expect(f.calls).toHaveLength(2);
    // Localising then takes at most a quarter of the loop: 40 ms, then 120 ms for ingest.
    expect(waitedMs).toBeGreaterThanOrEqual(115);
    expect(waitedMs).toBeLessThan(1_000);
    expect(f.engine.stats().lastComputeSeconds).toBeCloseTo(0.04, 5);
  });

  it('after an off-thread localisation the next waits nine times what it cost this thread', async () => {
    let fakeNow = 0;
    let handOverMs = 10;
    const engine = new DiagnosisEngine({
      input: () => ({ paths: [], agents: [], inventory: [] }),
      // The synchronous part (taking the changed paths, posting them) moves the fake clock.
      localiseAsync: async (input) => {
        fakeNow += handOverMs;
        await Promise.resolve();
        return { ...faulty, computedAtMs: input.nowMs };
      },
      monotonicMs: () => fakeNow,
      log: silentLog,
    });
    engines.push(engine);
    engine.invalidate('batch');
    await engine.idle();
    let t0 = performance.now();
    engine.invalidate('batch');
    await engine.idle();
    // 10 ms of this thread per localisation: ≤ 10 % of the loop, so 90 ms between them.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(85);
    expect(performance.now() - t0).toBeLessThan(1_000);
    // A hand-over that costs nothing: the next follows at once.
    handOverMs = 0;
    engine.invalidate('batch');
    await engine.idle();
    t0 = performance.now();
    engine.invalidate('batch');
    await engine.idle();
    expect(performance.now() - t0).toBeLessThan(50);
  });

  it('close() cancels what is scheduled and ignores later invalidations', async () => {
    const f = make();
    f.engine.invalidate('batch');
    f.engine.close();
    await f.engine.idle();
    f.engine.invalidate('batch');
    await f.engine.idle();
    expect(f.calls).toHaveLength(0);
  });

  it('metrics: healthy, every kind (0 when absent), ruled out, counters and the compute histogram', async () => {
    const f = make();
    const metrics = meterText();
    f.engine.instrument(metrics.meter);
    const empty = await metrics.render();
    expect(sumMetric(empty, 'faultline_diagnosis_healthy', {})).toBe(1);
    for (const kind of faultKinds) {
      expect(empty).toContain(`faultline_diagnosis_hypotheses{kind="${kind}"} 0\n`);
    }
    f.set(faulty);
    f.engine.invalidate('batch');
    await f.engine.idle();
    const text = await metrics.render();
    expect(sumMetric(text, 'faultline_diagnosis_healthy', {})).toBe(0);
    expect(sumMetric(text, 'faultline_diagnosis_hypotheses', { kind: 'service_down' })).toBe(1);
    expect(sumMetric(text, 'faultline_diagnosis_hypotheses', {})).toBe(1);
    expect(sumMetric(text, 'faultline_diagnosis_ruled_out', { verdict: 'ruled_out' })).toBe(1);
    expect(sumMetric(text, 'faultline_diagnosis_computations_total', {})).toBe(1);
    expect(sumMetric(text, 'faultline_diagnosis_changes_total', {})).toBe(1);
    expect(sumMetric(text, 'faultline_diagnosis_compute_seconds_count', {})).toBe(1);
    expect(sumMetric(text, 'faultline_diagnosis_compute_seconds_bucket', { le: '+Inf' })).toBe(1);
    expect(text).toMatch(/^# TYPE faultline_diagnosis_compute_seconds histogram$/m);
    expect(text).toMatch(/^# TYPE faultline_diagnosis_computations_total counter$/m);
    // Every sample line belongs to a family declared above it.
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    for (const line of text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))) {
      const name = /^[a-z_]+/.exec(line)?.[0] ?? '';
      expect(
        [...families].some((fam) => name === fam || name.startsWith(`${fam}_`)),
        line,
      ).toBe(true);
    }
  });
});

// ---- the collector, in process, fed real report batches over HTTP ----

const token = 'fleet-token-0123456789abcdef';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Results of the last minute: the collector's upkeep prunes rows past their retention, and
 * a test that waits for a settled diagnosis lives long enough to see it run.
 */
const recentBaseMs = Math.floor(Date.now() / 1000) * 1000 - 60_000;

/** One period of app-N's probes of db-1: ping answers; postgres's port as `pg`. */
const period = (agent: string, seq: number, pg: FailureClass): ReportBatch =>
  dbPeriod(agent, seq, pg, recentBaseMs);

/** The compiled localiser worker (`ensureBuilt` makes it). */
const builtLocaliserWorker = pathToFileURL(join(repoRoot, 'dist/collector/localise/worker.js'));

describe('the collector keeps the diagnosis current', () => {
  let collector: Collector | undefined;
  afterEach(async () => {
    await collector?.stop();
    collector = undefined;
  });

  async function start(options: CollectorOptions = {}): Promise<Collector> {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-diagnosis-'));
    dirs.push(dir);
    const config = parseCollectorConfig(dbCollectorYaml({ dataDir: dir, token }), 'collector.yaml');
    collector = await Collector.start(config, silentLog, options);
    return collector;
  }

  const post = (c: Collector, b: ReportBatch): Promise<void> => postReport(c.url(), token, b);

  async function diagnosis(c: Collector): Promise<Diagnosis> {
    const res = await fetchAsViewer(`${c.url()}/api/v1/diagnosis`, {
      signal: AbortSignal.timeout(5_000),
    });
    expect(res.status).toBe(200);
    return DiagnosisSchema.parse(await res.json());
  }

  it('a fault-causing batch shows in GET /api/v1/diagnosis within milliseconds, with one change event; /metrics follows', async () => {
    const c = await start();
    const changes: DiagnosisChange[] = [];
    c.diagnoser.onChange((ch) => changes.push(ch));
    let seq = 0;
    for (; seq < 3; seq++) {
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq + 1, 'ok'));
    }
    await c.diagnoser.idle();
    expect((await diagnosis(c)).healthy).toBe(true);
    const computedHealthy = c.diagnoser.stats().computations;

    // Two refusals per agent: under the debounce (3), nothing changes.
    for (; seq < 5; seq++) {
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq + 1, 'tcp_refused'));
    }
    await c.diagnoser.idle();
    expect(changes).toHaveLength(0);
    expect(c.diagnoser.stats().computations).toBe(computedHealthy);

    // The third refusal from both agents completes the debounce: service_down.
    await post(c, period('app-1', 6, 'tcp_refused'));
    const t0 = performance.now();
    await post(c, period('app-2', 6, 'tcp_refused'));
    const d = await pollUntil(
      'service_down in the diagnosis',
      async () => {
        const doc = await diagnosis(c);
        return doc.hypotheses[0]?.kind === 'service_down' &&
          doc.hypotheses[0].evidence.counts.tcp_refused === 2
          ? doc
          : undefined;
      },
      { timeoutMs: 2_000, intervalMs: 2 },
    );
    const visibleMs = performance.now() - t0;
    // Seen on the first reads: no timer stands between a batch and the document.
    expect(visibleMs).toBeLessThan(250);
    expect(d.healthy).toBe(false);
    expect(d.hypotheses[0]?.components).toEqual(['db-1']);
    await c.diagnoser.idle();
    const kinds = changes.map((ch) => ch.current.hypotheses[0]?.kind);
    // app-1's third refusal alone may raise something (one source refused: path_blocked);
    // app-2's makes it service_down. One event per change, no more.
    expect(kinds.length).toBeGreaterThanOrEqual(1);
    expect(kinds.length).toBeLessThanOrEqual(2);
    expect(kinds.at(-1), JSON.stringify(kinds)).toBe('service_down');

    const metrics = await (await fetch(`${c.url()}/metrics`)).text();
    expect(sumMetric(metrics, 'faultline_diagnosis_healthy', {})).toBe(0);
    expect(sumMetric(metrics, 'faultline_diagnosis_hypotheses', { kind: 'service_down' })).toBe(1);
    expect(sumMetric(metrics, 'faultline_diagnosis_computations_total', {})).toBe(
      c.diagnoser.stats().computations,
    );

    // A retry of an old batch changes nothing and costs no localisation.
    const before = c.diagnoser.stats().computations;
    await post(c, period('app-1', 6, 'tcp_refused'));
    await c.diagnoser.idle();
    expect(c.diagnoser.stats().computations).toBe(before);

    // Recovery: three successes each, and the diagnosis is healthy again.
    for (seq = 6; seq < 9; seq++) {
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq + 1, 'ok'));
    }
    await pollUntil('healthy again', async () => (await diagnosis(c)).healthy, {
      timeoutMs: 2_000,
      intervalMs: 5,
    });
    await c.diagnoser.idle();
    expect(changes.at(-1)?.current.healthy).toBe(true);
  });

  it('a fault opens an incident and recovery closes it: GET /api/v1/incidents, one incident, its postmortem', async () => {
    const c = await start();
    const getJson = async (path: string): Promise<unknown> => {
      const res = await fetchAsViewer(`${c.url()}${path}`, {
        signal: AbortSignal.timeout(5_000),
      });
      expect(res.status, path).toBe(200);
      return res.json();
    };
    let seq = 0;
    for (; seq < 3; seq++)
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq + 1, 'ok'));
    for (; seq < 6; seq++)
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq + 1, 'tcp_refused'));
    await pollUntil(
      'an open incident',
      async () => {
        const { incidents } = (await getJson('/api/v1/incidents')) as {
          incidents: { id: number; closedAtMs?: number; kind: string }[];
        };
        return incidents.length === 1 && incidents[0]!.kind === 'service_down';
      },
      { timeoutMs: 3_000, intervalMs: 10 },
    );
    for (; seq < 9; seq++)
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq + 1, 'ok'));
    const closed = await pollUntil(
      'the incident closed',
      async () => {
        const detail = (await getJson('/api/v1/incidents/1')) as {
          closedAtMs?: number;
          events: { type: string }[];
        };
        return detail.closedAtMs !== undefined ? detail : undefined;
      },
      { timeoutMs: 3_000, intervalMs: 10 },
    );
    expect(closed.events[0]?.type).toBe('opened');
    expect(closed.events.at(-1)?.type).toBe('recovered');
    const res = await fetchAsViewer(`${c.url()}/api/v1/incidents/1/postmortem`);
    expect(res.headers.get('content-type')).toMatch(/^text\/markdown/);
    const md = await res.text();
    expect(md).toMatch(/^# Postmortem \(draft\): incident 1 — /);
    expect(md).toContain('- **Status:** resolved at ');
    expect(md).toContain('`service_down`');
    // Both agents' own views of the fault.
    expect(md).toMatch(/\| app-1 \| 1 \| .* \| tcp_refused \| no \|/);
    expect(md).toMatch(/\| app-2 \| 1 \| .* \| tcp_refused \| no \|/);
  });

  it.each([
    ['on the main thread', () => ({})],
    [
      'in the localiser thread (the build)',
      (): CollectorOptions => {
        ensureBuilt();
        return { localiserWorker: builtLocaliserWorker };
      },
    ],
  ] as const)(
    'the incremental localisation the collector runs (%s) equals a full localise() of its matrix at every step',
    async (_where, options) => {
      const c = await start(options());
      const inventory = localiseInventory(c.config.inventory.components);
      const checks: string[] = [];
      const plan: ['ok' | 'tcp_refused' | 'tcp_timeout', number][] = [
        ['ok', 3],
        ['tcp_refused', 3],
        ['tcp_timeout', 3],
        ['ok', 3],
      ];
      let seq = 0;
      for (const [cls, n] of plan) {
        for (let i = 0; i < n; i++) {
          seq++;
          // app-2 lags a step behind app-1: states change one agent at a time.
          await post(c, period('app-1', seq, cls));
          await c.diagnoser.idle();
          await post(c, period('app-2', seq, cls));
          // A recompute now, whatever triggered one: fresh against fresh.
          c.diagnoser.invalidate('test');
          await c.diagnoser.idle();
          const d = c.diagnosis();
          const full = localise({
            paths: c.matrix.paths(),
            agents: c.matrix.agents(),
            inventory,
            nowMs: d.computedAtMs,
          });
          // The collector adds its settling (collector/settle.ts) to what the localiser says.
          const { settling, settlingSinceMs: _since, ...localised } = d;
          expect(typeof settling, 'settling is always said').toBe('boolean');
          expect(localised, `after ${cls} #${i + 1}`).toEqual(full);
          checks.push(d.hypotheses[0]?.kind ?? 'healthy');
        }
      }
      // The walk went through faults and back, so the comparison covered real changes.
      expect(checks).toContain('service_down');
      expect(checks.at(-1)).toBe('healthy');
    },
  );

  it('agents going silent recompute the diagnosis (markSilent), and it starts computed after a restart', async () => {
    const c = await start();
    for (let seq = 1; seq <= 3; seq++) {
      for (const a of ['app-1', 'app-2']) await post(c, period(a, seq, 'tcp_refused'));
    }
    await pollUntil(
      'service_down',
      async () => (await diagnosis(c)).hypotheses[0]?.kind === 'service_down',
      { timeoutMs: 2_000, intervalMs: 5 },
    );
    const changes: DiagnosisChange[] = [];
    c.diagnoser.onChange((ch) => changes.push(ch));
    // Both agents silent: their stale windows say nothing any more.
    const silenced = c.ingestor.markSilent(Date.now() + 3_600_000, 1_000);
    expect(silenced).toHaveLength(2);
    await c.diagnoser.idle();
    expect(changes).toHaveLength(1);
    expect(changes[0]?.reasons).toEqual(['agent-silent']);
    expect(changes[0]?.current.hypotheses.some((h) => h.kind === 'service_down')).toBe(false);

    // A batch from a silent agent brings it back: recomputed again.
    await post(c, period('app-1', 4, 'tcp_refused'));
    await c.diagnoser.idle();
    expect(changes.length).toBeGreaterThanOrEqual(1);
    expect(c.diagnoser.current().computedAtMs).toBeGreaterThan(
      changes[0]?.current.computedAtMs ?? 0,
    );

    // Restart on the same store: the first read is computed, not the empty document.
    const config = c.config;
    await c.stop();
    collector = await Collector.start(config, silentLog);
    expect(collector.diagnosis().computedAtMs).toBeGreaterThan(0);
    expect(collector.diagnoser.stats().computations).toBe(1);
  });
});
