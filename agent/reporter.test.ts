import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { pollUntil } from '../lab/poll-until.js';
import { PathSummarySchema } from '../wire/report.js';
import type { FailureClass, ProbeResult, Timings } from '../wire/result.js';
import { mainTiming, Reporter } from './reporter.js';
import type { ReporterOptions } from './reporter.js';
import type { BatchDraft } from './spool.js';

const log = pino({ level: 'silent' });

let seq = 0;
function result(
  target: string,
  kind: string,
  cls: FailureClass,
  timings: Partial<Timings> = {},
  detail?: Record<string, unknown>,
): ProbeResult {
  seq++;
  return {
    agent: 'a1',
    target,
    address: '198.18.0.10:1',
    kind,
    class: cls,
    seq,
    startedAtMs: 1_700_000_000_000 + seq,
    timings: { totalMs: 5, ...timings },
    ...(detail === undefined ? {} : { detail }),
  };
}

describe('Reporter', () => {
  let reporter: Reporter | undefined;
  afterEach(async () => {
    await reporter?.stop();
    reporter = undefined;
  });

  function make(over: Partial<ReporterOptions> = {}): { r: Reporter; batches: BatchDraft[] } {
    const batches: BatchDraft[] = [];
    reporter = new Reporter({
      agent: 'a1',
      labels: { zone: 'a' },
      log,
      sink: {
        append: async (d) => {
          batches.push(d);
          return batches.length;
        },
      },
      earlyFlushMs: false,
      ...over,
    });
    return { r: reporter, batches };
  }

  function feed(r: Reporter, res: ProbeResult): void {
    r.observe(res, { name: res.target, kind: res.kind });
  }

  it('summarises a period: counts, failures by class, latency percentiles of the main timing', async () => {
    let now = 10_000;
    const { r, batches } = make({ now: () => now, planVersion: 'v7' });
    // Shuffled 1..100 ms connect times: the percentiles must not depend on arrival order.
    const ms = Array.from({ length: 100 }, (_, i) => ((i * 37) % 100) + 1);
    for (const m of ms) feed(r, result('db/tcp', 'tcp', 'ok', { connectMs: m, totalMs: 500 }));
    feed(r, result('db/tcp', 'tcp', 'tcp_timeout'));
    feed(r, result('db/tcp', 'tcp', 'tcp_timeout'));
    feed(r, result('db/tcp', 'tcp', 'tcp_refused'));
    now = 11_000;
    await r.cut();

    expect(batches).toHaveLength(1);
    const b = batches[0]!;
    expect(b).toMatchObject({
      agent: 'a1',
      labels: { zone: 'a' },
      createdAtMs: 11_000,
      planVersion: 'v7',
    });
    expect(b.summaries).toHaveLength(1);
    const s = PathSummarySchema.parse(b.summaries[0]);
    expect(s).toEqual({
      target: 'db/tcp',
      kind: 'tcp',
      fromMs: 10_000,
      toMs: 11_000,
      count: 103,
      ok: 100,
      failures: { tcp_timeout: 2, tcp_refused: 1 },
      latencyMs: { min: 1, p50: 50, p90: 90, p99: 99, max: 100 },
      lastClass: 'tcp_refused',
      lastSeq: seq,
    });
  });

  it.each([
    ['icmp', 'rttMs'],
    ['mtu', 'rttMs'],
    ['tcp', 'connectMs'],
    ['http', 'firstByteMs'],
    ['postgres', 'firstByteMs'],
    ['redis', 'firstByteMs'],
    ['mysql', 'firstByteMs'],
    ['dns', 'totalMs'],
  ])('the main timing of %s is %s', (kind, timing) => {
    expect(mainTiming(kind)).toBe(timing);
  });

  it('icmp: latency from rttMs, loss over the period weighted by packets sent', async () => {
    const { r, batches } = make();
    feed(
      r,
      result('db/icmp', 'icmp', 'ok', { rttMs: 2, totalMs: 900 }, { sent: 4, lossRatio: 0.5 }),
    );
    feed(r, result('db/icmp', 'icmp', 'ok', { rttMs: 4, totalMs: 900 }, { sent: 4, lossRatio: 0 }));
    feed(r, result('db/icmp', 'icmp', 'icmp_timeout', {}, { sent: 2, lossRatio: 1 }));
    await r.cut();
    const s = batches[0]!.summaries[0]!;
    expect(s.latencyMs).toMatchObject({ min: 2, max: 4 });
    expect(s.lossRatio).toBeCloseTo((2 + 0 + 2) / 10);
    // The sample the ratio is of: the collector tests the loss against background loss.
    expect(s.echoes).toBe(10);
  });

  it('mtu: an echo kind too, latency from rttMs and loss weighted by packets sent', async () => {
    const { r, batches } = make();
    feed(r, result('db/mtu', 'mtu', 'ok', { rttMs: 3, totalMs: 500 }, { sent: 3, lossRatio: 0 }));
    feed(r, result('db/mtu', 'mtu', 'icmp_timeout', {}, { sent: 1, lossRatio: 1 }));
    await r.cut();
    const s = batches[0]!.summaries[0]!;
    expect(s.latencyMs).toMatchObject({ min: 3, max: 3 });
    expect(s.lossRatio).toBeCloseTo(1 / 4);
    expect(s.echoes).toBe(4);
  });

  it('sends in full every class change and the results confirming it — in order; an ok first result and a failure that persists are only summarised', async () => {
    const { r, batches } = make({ confirmResults: 1 });
    const sequence: FailureClass[] = [
      'ok', // first, ok: no news (the summary says it)
      'ok',
      'ok',
      'tcp_timeout', // change: sent
      'tcp_timeout', // confirms it: sent
      'tcp_timeout',
      'tcp_timeout',
      'tcp_refused', // change: sent
      'ok', // change: sent
      'ok', // confirms it: sent
    ];
    const fed = sequence.map((c) => result('db/tcp', 'tcp', c, { connectMs: 1 }));
    for (const f of fed) feed(r, f);
    await r.cut();
    const sent = batches[0]!.results;
    expect(sent.map((x) => x.class)).toEqual([
      'tcp_timeout',
      'tcp_timeout',
      'tcp_refused',
      'ok',
      'ok',
    ]);
    // Sent as recorded: original seq and timestamps.
    expect(sent.map((x) => x.seq)).toEqual([3, 4, 7, 8, 9].map((i) => fed[i]!.seq));
    expect(sent[0]!.startedAtMs).toBe(fed[3]!.startedAtMs);
    // The summary still counts every probe, the ones not sent in full too.
    expect(batches[0]!.summaries[0]).toMatchObject({
      count: 10,
      ok: 5,
      failures: { tcp_timeout: 4, tcp_refused: 1 },
    });
    // The state is kept across periods: an ok after an ok is not news in the next one.
    feed(r, result('db/tcp', 'tcp', 'ok', { connectMs: 1 }));
    await r.cut();
    expect(batches[1]!.results).toEqual([]);
    expect(batches[1]!.summaries[0]).toMatchObject({ count: 1, ok: 1, failures: {} });
  });

  it('an empty period is still a batch (the heartbeat); a silent path has no summary', async () => {
    const { r, batches } = make({ planVersion: 'v1' });
    feed(r, result('a/tcp', 'tcp', 'ok'));
    feed(r, result('b/tcp', 'tcp', 'ok'));
    await r.cut();
    feed(r, result('a/tcp', 'tcp', 'ok'));
    await r.cut();
    await r.cut();
    expect(batches.map((b) => b.summaries.map((s) => s.target))).toEqual([
      ['a/tcp', 'b/tcp'],
      ['a/tcp'],
      [],
    ]);
    expect(batches[2]).toMatchObject({ results: [], summaries: [], planVersion: 'v1' });
  });

  it('splits summaries over batches and closes a batch early when results pile up', async () => {
    const { r, batches } = make({ maxSummariesPerBatch: 2, maxResultsPerBatch: 3 });
    for (let i = 0; i < 5; i++) feed(r, result(`t${i}/tcp`, 'tcp', 'tcp_refused'));
    // 5 first results, failures (state changes): 3 closed a batch early, 2 wait.
    expect(batches).toHaveLength(1);
    expect(batches[0]).toMatchObject({ summaries: [] });
    expect(batches[0]!.results.map((x) => x.target)).toEqual(['t0/tcp', 't1/tcp', 't2/tcp']);
    await r.cut();
    expect(batches.slice(1).map((b) => [b.results.length, b.summaries.length])).toEqual([
      [2, 2],
      [0, 2],
      [0, 1],
    ]);
  });

  it('setPlan: the new version goes on the next batches', async () => {
    const { r, batches } = make({ planVersion: 'v1' });
    await r.cut();
    r.setPlan({ version: 'v2', reportIntervalMs: 1000, targets: [] });
    await r.cut();
    expect(batches.map((b) => b.planVersion)).toEqual(['v1', 'v2']);
  });

  it('cuts batches on period boundaries while running (heartbeats)', async () => {
    const { r, batches } = make({ reportIntervalMs: 100 });
    r.start();
    await pollUntil('3 heartbeats', () => batches.length >= 3, { timeoutMs: 3000 });
    const gaps = batches.slice(1, 3).map((b, i) => b.createdAtMs - batches[i]!.createdAtMs);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(50);
  });

  it('a failure is sent within earlyFlushMs, not at the end of a long period', async () => {
    const { r, batches } = make({ reportIntervalMs: 60_000, earlyFlushMs: 30, confirmResults: 0 });
    r.start();
    const t0 = Date.now();
    feed(r, result('db/tcp', 'tcp', 'ok')); // a first ok: no news, waits for the period
    feed(r, result('db/tcp', 'tcp', 'ok'));
    feed(r, result('db/tcp', 'tcp', 'tcp_timeout'));
    // Far inside the 60 s period, with room for a test host whose other suites load it (a
    // 2 s bound once timed out in the full suite on two cores).
    await pollUntil('the failure flushed', () => batches.length === 1, { timeoutMs: 10_000 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(batches[0]!.results.map((x) => x.class)).toEqual(['tcp_timeout']);
    expect(batches[0]!.summaries).toEqual([]);
    // The summary of the period still counts every probe when the period closes.
    await r.stop();
    expect(batches[1]!.summaries[0]).toMatchObject({
      count: 3,
      ok: 2,
      failures: { tcp_timeout: 1 },
    });
  });

  it('a confirmation burst: trigger and burst sent in full, flushed at its start and its end, no countdown of later rounds', async () => {
    // earlyFlushMs far beyond the test: only the burst's own flushes can send a batch.
    const { r, batches } = make({ reportIntervalMs: 60_000, earlyFlushMs: 50_000 });
    r.start();
    const burst = (cls: FailureClass, index: number): ProbeResult => ({
      ...result('db/tcp', 'tcp', cls),
      confirm: { of: 3, index },
    });
    feed(r, result('db/tcp', 'tcp', 'ok'));
    feed(r, result('db/tcp', 'tcp', 'ok'));
    feed(r, burst('tcp_refused', 0)); // the trigger: at once
    expect(batches.map((b) => b.results.map((x) => x.confirm?.index))).toEqual([[0]]);
    feed(r, burst('tcp_refused', 1));
    feed(r, burst('tcp_refused', 2));
    expect(batches).toHaveLength(1); // the middle of the burst waits for its end
    feed(r, burst('tcp_refused', 3));
    expect(batches.map((b) => b.results.map((x) => x.confirm?.index))).toEqual([[0], [1, 2, 3]]);
    expect(batches[1]!.results.every((x) => x.class === 'tcp_refused')).toBe(true);
    // The burst confirmed it: later rounds of the same class are summarised only.
    feed(r, result('db/tcp', 'tcp', 'tcp_refused'));
    feed(r, result('db/tcp', 'tcp', 'tcp_refused'));
    await r.stop();
    expect(batches[2]!.results).toEqual([]);
    // The summary counts the scheduled rounds and the trigger, not the re-probes: they
    // confirm one sample and would weigh it four times in the window's ratios.
    expect(batches[2]!.summaries[0]).toMatchObject({
      count: 5,
      ok: 2,
      failures: { tcp_refused: 3 },
    });
  });

  it('a burst that disagrees with its trigger (one lost probe) falls back on later rounds in full', async () => {
    const { r, batches } = make({ confirmResults: 2 });
    const burst = (cls: FailureClass, index: number): ProbeResult => ({
      ...result('db/icmp', 'icmp', cls),
      confirm: { of: 2, index },
    });
    feed(r, result('db/icmp', 'icmp', 'ok'));
    feed(r, burst('icmp_timeout', 0));
    feed(r, burst('ok', 1));
    feed(r, burst('ok', 2));
    feed(r, result('db/icmp', 'icmp', 'ok'));
    feed(r, result('db/icmp', 'icmp', 'ok'));
    feed(r, result('db/icmp', 'icmp', 'ok'));
    await r.cut();
    expect(
      batches.flatMap((b) => b.results.map((x) => `${x.class}:${x.confirm?.index ?? '-'}`)),
    ).toEqual(['icmp_timeout:0', 'ok:1', 'ok:2', 'ok:-', 'ok:-']);
  });

  it('stop closes the open period into the sink; a failing sink is counted, not thrown', async () => {
    const { r, batches } = make();
    r.start();
    feed(r, result('db/tcp', 'tcp', 'ok'));
    await r.stop();
    expect(batches).toHaveLength(1);
    expect(batches[0]!.summaries).toHaveLength(1);

    const bad = new Reporter({
      agent: 'a1',
      labels: {},
      log,
      earlyFlushMs: false,
      sink: { append: () => Promise.reject(new Error('ENOSPC')) },
    });
    feed(bad, result('db/tcp', 'tcp', 'ok'));
    await bad.stop();
    expect(bad.stats()).toMatchObject({ batches: 1, appendFailures: 1 });
  });
});
