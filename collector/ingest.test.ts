import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { FaultlineError } from '../lib/errors.js';
import { batch, result, summary, t0 } from '../test/helpers/report-batches.js';
import type { PathSummary, ReportBatch } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';
import { Ingest } from './ingest.js';
import type { IngestOptions } from './ingest.js';
import { PathMatrix } from './paths/matrix.js';
import { Store } from './store.js';
import type { PathState } from './types.js';
import { meterText } from '../test/helpers/meter-text.js';

const pg = 'db-1/tcp/postgres';
const icmp = 'db-1/icmp';
const web = 'api-1/http/web';

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'faultline-ingest-'));
  dirs.push(d);
  return d;
}

function setup(dir = tempDir(), opts: Partial<IngestOptions> = {}, matrix = new PathMatrix()) {
  const store = Store.open(dir);
  stores.push(store);
  const ingest = new Ingest(store, matrix, opts);
  return { dir, store, matrix, ingest };
}

const sorted = (ps: PathState[]) =>
  [...ps].sort((a, b) => `${a.agent}/${a.target}`.localeCompare(`${b.agent}/${b.target}`));

/**
 * Two agents, three paths each, one period per batch: postgres fails (timeouts, then
 * refusals) from period 10 to 19 and recovers; icmp gets slow from period 30 on (and still
 * is at the end, so a restore has a degraded path to keep).
 */
function scenario(periods: number): ReportBatch[] {
  const out: ReportBatch[] = [];
  for (const [a, agent] of ['app-1', 'app-2'].entries()) {
    const agentId = `agent-${agent}-0001`;
    let seq = 0;
    let pgWasOk = true;
    for (let k = 0; k < periods; k++) {
      const from = t0 + k * 1000;
      const results: ProbeResult[] = [];
      const summaries: PathSummary[] = [];
      const pgFails = k >= 10 && k < 20;
      const cls = k < 14 ? 'tcp_timeout' : 'tcp_refused';
      for (let p = 0; p < 2; p++) {
        seq++;
        if (pgFails) results.push({ ...result(pg, cls, seq, from + p * 500), agent });
        else if (!pgWasOk) results.push({ ...result(pg, 'ok', seq, from + p * 500), agent });
        pgWasOk = !pgFails;
      }
      summaries.push(
        pgFails
          ? summary(pg, from, seq, { count: 2, ok: 0, failures: { [cls]: 2 } })
          : summary(pg, from, seq, { count: 2, ok: 2, p50: 2 + a }),
      );
      seq += 5;
      const slow = k >= 30;
      summaries.push(
        summary(icmp, from, seq, { count: 5, ok: 5, p50: slow ? 150 : 0.5, loss: 0, kind: 'icmp' }),
      );
      seq += 1;
      summaries.push(summary(web, from, seq, { count: 1, ok: 1, p50: 10 }));
      out.push(batch(k + 1, { agent, agentId, results, summaries, labels: { zone: `z${a}` } }));
    }
  }
  // Interleave the agents as they would arrive.
  return out.sort((x, y) => x.seq - y.seq || x.agent.localeCompare(y.agent));
}

function feed(ingest: Ingest, batches: readonly ReportBatch[]): void {
  for (const b of batches) {
    expect(ingest.accept(b, t0 + b.seq * 1000 + 200)).toEqual({
      status: 'accepted',
      acceptedSeq: b.seq,
    });
  }
}

describe('Ingest exactly once', () => {
  it('a batch sent twice is a duplicate: no double counting in the paths or the tables', () => {
    const { store, matrix, ingest } = setup();
    const [b1, b2] = [
      batch(1, { summaries: [summary(pg, t0, 4, { count: 4, ok: 4 })] }),
      batch(2, {
        results: [5, 6, 7].map((s) => result(pg, 'tcp_timeout', s, t0 + 1000 + s)),
        summaries: [summary(pg, t0 + 1000, 7, { count: 3, ok: 0, failures: { tcp_timeout: 3 } })],
      }),
    ];
    ingest.accept(b1, t0);
    ingest.accept(b2, t0 + 1000);
    const paths = matrix.paths();
    const counts = store.counts();
    expect(paths[0]).toMatchObject({ state: 'failing', probes: 7, consecutiveFailures: 3 });

    expect(ingest.accept(b2, t0 + 2000)).toEqual({ status: 'duplicate', acceptedSeq: 2 });
    expect(ingest.accept(b1, t0 + 2000)).toEqual({ status: 'duplicate', acceptedSeq: 2 });
    expect(matrix.paths()).toEqual(paths);
    expect(store.counts()).toEqual(counts);
    expect(store.transitionsSince(0).map((t) => t.toState)).toEqual(['ok', 'failing']);
    // The retry still counts as a heartbeat.
    expect(matrix.agents()[0]?.lastSeenMs).toBe(t0 + 2000);
    expect(ingest.load()).toMatchObject({ accepted: 2, duplicates: 2, refused: 0 });
  });

  it('a gap is refused and changes nothing; a declared drop is accepted and counted', () => {
    const { store, matrix, ingest } = setup();
    ingest.accept(batch(1, { summaries: [summary(pg, t0, 1)] }), t0);
    const paths = matrix.paths();
    const gap = batch(4, {
      results: [1, 2, 3].map((s) => result(pg, 'tcp_reset', 10 + s, t0 + s)),
    });
    expect(ingest.accept(gap, t0 + 100)).toEqual({ status: 'gap', acceptedSeq: 1, expectedSeq: 2 });
    expect(matrix.paths()).toEqual(paths);
    expect(store.counts()).toMatchObject({ batches: 1, results: 0 });

    const declared = { ...gap, dropped: { batches: 2, results: 17 } };
    expect(ingest.accept(declared, t0 + 200)).toEqual({ status: 'accepted', acceptedSeq: 4 });
    expect(matrix.paths()[0]?.state).toBe('failing');
    expect(matrix.agents()[0]).toMatchObject({ acceptedSeq: 4, droppedResults: 17 });
    expect(store.agents()[0]).toMatchObject({ droppedBatches: 2, droppedResults: 17 });
  });

  it('an agent id claimed under another name is a conflict and not a heartbeat', () => {
    const { matrix, ingest } = setup();
    ingest.accept(batch(1), t0);
    const out = ingest.accept(batch(2, { agent: 'app-9' }), t0 + 5000);
    expect(out.status).toBe('conflict');
    expect(matrix.agents()).toMatchObject([{ agent: 'app-1', lastSeenMs: t0, acceptedSeq: 1 }]);
  });

  it('an impersonation (a live name under a new id) and a poisoned seq change no path and are no heartbeat', () => {
    const fleet = { id: 'fleet', label: 'token "fleet"', role: 'agent' as const };
    const { matrix, ingest } = setup();
    ingest.accept(batch(1, { summaries: [summary(pg, t0, 1, { ok: 1 })] }), t0, undefined, fleet);
    const paths = matrix.paths();
    const failing = (b: ReportBatch) => ({
      ...b,
      results: [result(pg, 'tcp_timeout', 9, t0 + 1000)],
      summaries: [summary(pg, t0 + 1000, 9, { count: 5, ok: 0, failures: { tcp_timeout: 5 } })],
    });
    const impostor = failing(batch(1, { agentId: 'agent-impostor-01' }));
    expect(ingest.accept(impostor, t0 + 2000, undefined, fleet).status).toBe('conflict');
    const poison = failing(
      batch(Number.MAX_SAFE_INTEGER, {
        dropped: { batches: Number.MAX_SAFE_INTEGER - 2, results: 0 },
      }),
    );
    expect(ingest.accept(poison, t0 + 3000, undefined, fleet).status).toBe('implausible');
    expect(matrix.paths()).toEqual(paths);
    expect(matrix.agents()).toMatchObject([
      { agentId: 'agent-app-1-0001', lastSeenMs: t0, acceptedSeq: 1 },
    ]);
    expect(ingest.load().refused).toBe(2);
    // The victim's next batch is taken.
    expect(ingest.accept(batch(2), t0 + 4000, undefined, fleet)).toEqual({
      status: 'accepted',
      acceptedSeq: 2,
    });
  });

  it('when the store fails, the matrix is rolled back and the retry counts once', () => {
    const { store, matrix, ingest } = setup();
    ingest.accept(batch(1, { summaries: [summary(pg, t0, 1, { ok: 1 })] }), t0);
    const paths = matrix.paths();
    const agents = matrix.agents();
    const b2 = batch(2, {
      results: [2, 3, 4].map((s) => result(pg, 'tcp_timeout', s, t0 + s)),
      summaries: [summary(pg, t0 + 1000, 4, { count: 3, ok: 0, failures: { tcp_timeout: 3 } })],
    });
    const spy = vi.spyOn(store, 'ingest').mockImplementationOnce(() => {
      throw new FaultlineError('FL_ERR_STORE', 'cannot store a report batch: SQLITE_FULL');
    });
    expect(() => ingest.accept(b2, t0 + 1000)).toThrow(/SQLITE_FULL/);
    spy.mockRestore();
    expect(matrix.paths()).toEqual(paths);
    expect(matrix.agents()).toEqual(agents);
    expect(ingest.load().storeError).toMatch(/SQLITE_FULL/);

    expect(ingest.accept(b2, t0 + 2000)).toEqual({ status: 'accepted', acceptedSeq: 2 });
    expect(ingest.load().storeError).toBeUndefined();
    expect(matrix.paths()[0]).toMatchObject({
      state: 'failing',
      probes: 4,
      consecutiveFailures: 3,
    });
    expect(store.transitionsSince(0).map((t) => `${t.fromState}->${t.toState}`)).toEqual([
      'unknown->ok',
      'ok->failing',
    ]);
  });
});

describe('Ingest restart', () => {
  const batches = scenario(40);

  it('the scenario has the transitions it is meant to have', () => {
    const { store, ingest } = setup();
    feed(ingest, batches);
    const app1 = store
      .transitionsSince(0)
      .filter((t) => t.agent === 'app-1')
      .map((t) => `${t.target} ${t.fromState}->${t.toState} ${t.toClass}`);
    expect(app1).toEqual([
      `${pg} unknown->ok ok`,
      `${icmp} unknown->ok ok`,
      `${web} unknown->ok ok`,
      `${pg} ok->failing tcp_timeout`,
      `${pg} failing->failing tcp_refused`,
      `${pg} failing->ok ok`,
      `${icmp} ok->degraded ok`,
    ]);
  });

  it('close, reopen and restore: the same paths and agents, the watermark kept', () => {
    const first = setup();
    feed(first.ingest, batches);
    const paths = sorted(first.matrix.paths());
    const agents = first.matrix.agents();
    expect(paths.map((p) => p.state)).toContain('degraded');
    first.ingest.close();
    stores.splice(stores.indexOf(first.store), 1);

    const second = setup(first.dir);
    second.ingest.restore();
    expect(sorted(second.matrix.paths())).toEqual(paths);
    expect(second.matrix.agents()).toEqual(agents);
    const last = batches.at(-1)!;
    expect(second.ingest.accept(last, t0 + 99_000)).toEqual({
      status: 'duplicate',
      acceptedSeq: last.seq,
    });
  });

  it('after a crash (no checkpoint, or a stale one) the replay rebuilds the same matrix', () => {
    for (const checkpointAt of [undefined, 15]) {
      const first = setup();
      feed(first.ingest, batches.slice(0, checkpointAt === undefined ? 0 : checkpointAt * 2));
      if (checkpointAt !== undefined) first.ingest.checkpoint();
      feed(first.ingest, batches.slice(checkpointAt === undefined ? 0 : checkpointAt * 2));
      const paths = sorted(first.matrix.paths());
      first.store.close(); // no checkpoint at the end: as if killed

      const second = setup(first.dir);
      second.ingest.restore();
      expect(sorted(second.matrix.paths())).toEqual(paths);
      expect(second.matrix.agents()).toEqual(first.matrix.agents());
    }
  });

  it('a checkpoint written an agent at a time while batches keep coming restores the same matrix', async () => {
    // Both agents' batches in time order, as they arrive.
    const ordered = [...batches].sort((a, b) => a.seq - b.seq || a.agent.localeCompare(b.agent));
    const first = setup();
    feed(first.ingest, ordered.slice(0, 30));
    // One agent per slice: app-1's part now, app-2's after the batches fed meanwhile.
    const writing = first.ingest.checkpointInSlices(1);
    feed(first.ingest, ordered.slice(30, 36));
    expect(await writing).toBe(2);
    const ckpt = first.store.loadCheckpoint();
    expect(ckpt?.agents.map((a) => a.seq).sort()).toEqual([15, 18]);
    feed(first.ingest, ordered.slice(36));
    const paths = sorted(first.matrix.paths());
    first.store.close(); // killed: no checkpoint at the end

    const second = setup(first.dir);
    second.ingest.restore();
    expect(sorted(second.matrix.paths())).toEqual(paths);
    expect(second.matrix.agents()).toEqual(first.matrix.agents());
  });

  it('beyond the replay horizon, state and since come from the stored transitions', () => {
    const first = setup();
    feed(first.ingest, batches.slice(0, 34)); // 17 periods: pg failing since 10, refused since 14
    const paths = sorted(first.matrix.paths());
    first.store.close();

    // Replays only the last 3 s of batches: pg's failure began before, it is known from the
    // transitions only. (Counts and the latency baseline need the checkpoint to be exact.)
    const second = setup(first.dir, { maxReplayMs: 3000 });
    second.ingest.restore();
    const pick = (p: PathState) => [p.agent, p.target, p.state, p.sinceMs, p.lastClass];
    expect(sorted(second.matrix.paths()).map(pick)).toEqual(paths.map(pick));
    expect(second.matrix.path('app-1', pg)).toMatchObject({
      state: 'failing',
      sinceMs: t0 + 14_000,
      lastClass: 'tcp_refused',
    });
    expect(second.matrix.path('app-1', pg)?.consecutiveFailures).toBeGreaterThanOrEqual(3);
  });

  it('an agent that was silent stays silent after a restart, and its return is recorded', () => {
    const first = setup();
    first.ingest.accept(batch(1, { summaries: [summary(pg, t0, 1)] }), t0);
    expect(first.ingest.markSilent(t0 + 60_000, 30_000)).toMatchObject([{ state: 'silent' }]);
    first.ingest.close();
    stores.splice(stores.indexOf(first.store), 1);

    const second = setup(first.dir);
    second.ingest.restore();
    expect(second.matrix.agents()).toMatchObject([{ state: 'silent', lastSeenMs: t0 }]);
    expect(second.ingest.markSilent(t0 + 120_000, 30_000)).toEqual([]);
    second.ingest.accept(batch(1), t0 + 130_000); // a retry: the agent is back
    expect(second.matrix.agents()[0]?.state).toBe('live');
    expect(
      second.store
        .transitionsSince(0)
        .filter((t) => t.kind === 'agent')
        .map((t) => [t.fromState, t.toState, t.atMs]),
    ).toEqual([
      ['live', 'silent', t0],
      ['silent', 'live', t0 + 130_000],
    ]);
  });
});

describe('Ingest backpressure', () => {
  it('is overloaded while ingest takes most of the wall time, and recovers when idle', () => {
    let nowMs = 0;
    // A partial refusal picks this report when the refused share is over a half.
    const { store, ingest } = setup(tempDir(), { clockMs: () => nowMs, random: () => 0.5 });
    const real = store.verdict.bind(store);
    // Each batch "takes" 950 ms of a 1 s window.
    vi.spyOn(store, 'verdict').mockImplementation((b) => {
      nowMs += 950;
      return real(b);
    });
    expect(ingest.overloaded()).toBe(false);
    let seq = 1;
    const loaded: boolean[] = [];
    for (let w = 0; w < 4; w++) {
      ingest.accept(batch(seq++), t0);
      nowMs += 50;
      loaded.push(ingest.overloaded());
    }
    expect(loaded).toEqual([false, false, true, true]);
    nowMs += 5000;
    expect(ingest.overloaded()).toBe(false);
    expect(ingest.load().busyRatio).toBeLessThan(0.1);
  });

  it('is overloaded while the event loop is saturated, even when accept itself is quick', () => {
    let nowMs = 0;
    let loopBusyMs = 0;
    const { ingest } = setup(tempDir(), {
      clockMs: () => nowMs,
      loopBusyMs: () => loopBusyMs,
      random: () => 0.5,
    });
    // HTTP, gunzip and parsing keep the loop 95% busy; accept takes no (fake) time at all.
    let seq = 1;
    const loaded: boolean[] = [];
    for (let w = 0; w < 5; w++) {
      ingest.accept(batch(seq++), t0);
      nowMs += 1000;
      loopBusyMs += 950;
      loaded.push(ingest.overloaded());
    }
    // The EWMA needs a few saturated seconds (0.48, 0.71, 0.83, 0.89: past the half-refused
    // point, 0.875, in the fourth): one busy second is not overload.
    expect(loaded).toEqual([false, false, false, true, true]);
    expect(ingest.load().busyRatio).toBeGreaterThan(0.8);
    // Idle again: the load decays and reports flow.
    nowMs += 5000;
    loopBusyMs += 10;
    expect(ingest.overloaded()).toBe(false);
  });

  it('refuses a share of reports that grows with the load: none, some, all', async () => {
    let nowMs = 0;
    let loopBusyMs = 0;
    let r = 0;
    // 100 reports per second, picked evenly over [0, 1).
    const { ingest } = setup(tempDir(), {
      clockMs: () => nowMs,
      loopBusyMs: () => loopBusyMs,
      random: () => (r++ % 100) / 100,
    });
    const refusedAt = (busy: number): number => {
      // Long enough at this load for the EWMA to settle, then one second of reports.
      for (let w = 0; w < 20; w++) {
        nowMs += 1000;
        loopBusyMs += busy * 1000;
        ingest.overloaded();
      }
      nowMs += 1000;
      loopBusyMs += busy * 1000;
      let refused = 0;
      for (let i = 0; i < 100; i++) if (ingest.overloaded()) refused++;
      return refused;
    };
    expect(refusedAt(0.6)).toBe(0);
    expect(refusedAt(0.78)).toBe(0);
    // Between 0.8 (all taken) and 0.95 (all refused): at 0.875, half.
    expect(refusedAt(0.875)).toBeGreaterThanOrEqual(45);
    expect(refusedAt(0.875)).toBeLessThanOrEqual(55);
    expect(refusedAt(0.99)).toBe(100);
    expect(refusedAt(0.3)).toBe(0);
    const metrics = meterText();
    ingest.instrument(metrics.meter);
    expect(await metrics.render()).toMatch(/^faultline_ingest_overloaded_total [1-9]\d*$/m);
  });

  it('is overloaded when single batches take longer than maxBatchMs on average', () => {
    let nowMs = 0;
    const { store, ingest } = setup(tempDir(), { clockMs: () => nowMs, maxBatchMs: 100 });
    const real = store.verdict.bind(store);
    vi.spyOn(store, 'verdict').mockImplementation((b) => {
      nowMs += 2000;
      return real(b);
    });
    ingest.accept(batch(1), t0);
    expect(ingest.overloaded()).toBe(true);
  });
});

describe('Ingest speed (printed, not asserted)', () => {
  it('batches of 100 summaries', () => {
    const { dir, store, matrix, ingest } = setup();
    const agents = 200;
    const rounds = 10;
    const make = (a: number, k: number): ReportBatch => {
      const summaries: PathSummary[] = [];
      for (let p = 0; p < 100; p++) {
        summaries.push(
          summary(`c${p}/tcp/svc`, t0 + k * 1000, k * 100 + p, {
            count: 1,
            ok: 1,
            p50: 1 + p / 100,
          }),
        );
      }
      return batch(k + 1, { agent: `a${a}`, agentId: `agent-bench-${a}`, summaries });
    };
    const all: ReportBatch[] = [];
    for (let k = 0; k < rounds; k++) for (let a = 0; a < agents; a++) all.push(make(a, k));
    const start = performance.now();
    const cpu0 = process.cpuUsage();
    for (const b of all) ingest.accept(b, t0 + b.seq * 1000);
    const tookMs = performance.now() - start;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const rows = all.length * 100;
    const bytes =
      statSync(join(dir, 'faultline.db')).size + statSync(join(dir, 'faultline.db-wal')).size;

    const m2 = new PathMatrix();
    const s2 = performance.now();
    for (const b of all) m2.apply(b, 0).commit({ acceptedSeq: b.seq, droppedResults: 0 });
    const matrixMs = performance.now() - s2;
    const viewStart = performance.now();
    const n = matrix.paths().length;
    const viewMs = performance.now() - viewStart;
    const checkpointStart = performance.now();
    ingest.checkpoint();
    const checkpointMs = performance.now() - checkpointStart;

    console.log(
      `ingest: ${all.length} batches × 100 summaries in ${tookMs.toFixed(0)} ms = ` +
        `${Math.round((rows / tookMs) * 1000)} paths/s stored+applied ` +
        `(${(tookMs / all.length).toFixed(3)} ms/batch; ${Math.round((rows / cpuMs) * 1000)} paths/s of CPU time); matrix alone ${Math.round((rows / matrixMs) * 1000)} paths/s; ` +
        `paths() of ${n} paths in ${viewMs.toFixed(1)} ms; checkpoint of them ${checkpointMs.toFixed(1)} ms; store ≈ ${Math.round(bytes / rows)} bytes/summary`,
    );
    expect(store.counts().summaries).toBe(rows);
    expect(n).toBe(agents * 100);
  });
});
