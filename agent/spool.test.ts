import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReportBatch } from '../wire/report.js';
import { ReportBatchSchema } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';
import { Spool } from './spool.js';
import type { BatchDraft, SpoolOptions, SpooledBatch } from './spool.js';

const log = pino({ level: 'silent' });

function result(i: number): ProbeResult {
  return {
    agent: 'a1',
    target: 'db-1/tcp',
    address: '198.18.0.10:5432',
    kind: 'tcp',
    class: 'tcp_timeout',
    seq: i,
    startedAtMs: 1_700_000_000_000 + i,
    timings: { totalMs: 1000 },
  };
}

function draft(createdAtMs: number, results = 1, pad = 0): BatchDraft {
  return {
    agent: 'a1',
    labels: { zone: 'a' },
    createdAtMs,
    planVersion: 'p1',
    // Random padding does not compress: it makes batch sizes predictable for the bounds.
    results: Array.from({ length: results }, (_, i) => ({
      ...result(i),
      ...(pad > 0 ? { detail: { pad: randomBytes(pad).toString('base64') } } : {}),
    })),
    summaries: [],
  };
}

function decode(b: SpooledBatch): ReportBatch {
  return ReportBatchSchema.parse(JSON.parse(gunzipSync(b.body).toString()));
}

describe('Spool', () => {
  let dir: string;
  const open = (o: Partial<SpoolOptions> = {}): Promise<Spool> =>
    // A fixed clock: the small createdAtMs values below are all within maxAge of it.
    Spool.open({ stateDir: dir, log, now: () => 50_000, ...o });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'faultline-spool-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('tightens a state dir left wider (0755, a credential 0644) to 0700/0600, warning for each', async () => {
    await chmod(dir, 0o755);
    await writeFile(join(dir, 'credential'), 'secret-0123456789abcdef\n', { mode: 0o644 });
    await chmod(join(dir, 'credential'), 0o644);
    const warnings: string[] = [];
    const spy = pino(
      { level: 'warn' },
      { write: (l: string) => warnings.push((JSON.parse(l) as { msg: string }).msg) },
    );
    await open({ log: spy });
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'credential'))).mode & 0o777).toBe(0o600);
    expect(warnings.filter((m) => m.startsWith('tightened '))).toHaveLength(2);
  });

  it('keeps batches in seq order, stamps agentId and seq, and acks remove them', async () => {
    const spool = await open();
    expect(spool.agentId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect((await readFile(join(dir, 'agent-id'), 'utf8')).trim()).toBe(spool.agentId);
    expect(await spool.peek()).toBeUndefined();
    expect(await spool.append(draft(1000, 2))).toBe(1);
    expect(await spool.append(draft(2000, 0))).toBe(2);
    expect(await spool.append(draft(3000, 1))).toBe(3);

    const first = await spool.peek();
    expect(first).toMatchObject({ seq: 1, createdAtMs: 1000, results: 2 });
    const batch = decode(first!);
    expect(batch).toMatchObject({ agentId: spool.agentId, seq: 1, agent: 'a1', createdAtMs: 1000 });
    expect(batch.results.map((r) => r.startedAtMs)).toEqual([1_700_000_000_000, 1_700_000_000_001]);
    expect(batch.dropped).toBeUndefined();
    // Peeking again is the same batch until it is acked.
    expect((await spool.peek())?.seq).toBe(1);

    await spool.ack(2);
    expect((await spool.peek())?.seq).toBe(3);
    expect(spool.stats()).toMatchObject({ batches: 1, appended: 3, acked: 2, nextSeq: 4 });
    expect((await readdir(join(dir, 'spool'))).filter((f) => f.endsWith('.json.gz'))).toHaveLength(
      1,
    );
  });

  it('splits a batch larger than maxBatchBytes into consecutive ones, order kept', async () => {
    const spool = await open({ maxBatchBytes: 3000 });
    const big = draft(1000, 20);
    expect(JSON.stringify(big).length).toBeGreaterThan(3000);
    const last = await spool.append(big);
    expect(last).toBeGreaterThan(1);
    const got: ProbeResult[] = [];
    for (let seq = 1; seq <= last; seq++) {
      const b = await spool.peek();
      expect(b?.seq).toBe(seq);
      const batch = decode(b!);
      expect(JSON.stringify(batch).length).toBeLessThanOrEqual(3000);
      got.push(...batch.results);
      await spool.ack(seq);
    }
    expect(got).toEqual(big.results);
  });

  it('survives a restart: same agent id, unacked batches still there, seq never reused', async () => {
    const a = await open();
    await a.append(draft(1000));
    await a.append(draft(2000));
    await a.ack(1);
    await a.settle();

    const b = await open();
    expect(b.agentId).toBe(a.agentId);
    expect((await b.peek())?.seq).toBe(2);
    expect(await b.append(draft(3000))).toBe(3);
    await b.ack(3);

    // Empty spool: the next seq comes from next-seq, not from the (absent) files.
    const c = await open();
    expect(await c.peek()).toBeUndefined();
    expect(await c.append(draft(4000))).toBe(4);
  });

  it('tolerates a torn write: leftover tmp files are removed and the spool works', async () => {
    const a = await open();
    await a.append(draft(1000));
    await writeFile(join(dir, 'spool', '000000000002-2000-1.json.gz.999.tmp'), 'garbage');
    await writeFile(join(dir, 'spool', 'next-seq.999.tmp'), '7');
    const b = await open();
    const files = await readdir(join(dir, 'spool'));
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect((await b.peek())?.seq).toBe(1);
    expect(await b.append(draft(2000))).toBe(2);
  });

  it('an unreadable agent-id is replaced; a valid one is kept', async () => {
    await writeFile(join(dir, 'agent-id'), 'no!\n');
    const a = await open();
    expect(a.agentId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    await writeFile(join(dir, 'agent-id'), 'my-agent-id_0001\n');
    expect((await open()).agentId).toBe('my-agent-id_0001');
  });

  it('over maxBytes drops the OLDEST batches and declares them in the next one sent', async () => {
    const spool = await open({ maxBytes: 12_000 });
    // 2 × 1.5 kB random bytes, ~4 kB each compressed: 3 fit.
    for (let i = 1; i <= 8; i++) await spool.append(draft(i * 1000, 2, 1500));
    const s = spool.stats();
    expect(s.bytes).toBeLessThanOrEqual(12_000);
    expect(s.batches).toBe(3);
    expect(s.droppedBatches).toBe(5);
    expect(s.droppedResults).toBe(10);

    const head = await spool.peek();
    expect(head?.seq).toBe(6);
    expect(head?.dropped).toEqual({ batches: 5, results: 10 });
    expect(decode(head!).dropped).toEqual({ batches: 5, results: 10 });

    // The declaration survives a restart.
    const again = await open({ maxBytes: 12_000 });
    expect((await again.peek())?.dropped).toEqual({ batches: 5, results: 10 });
    await again.ack(6);
    const next = await again.peek();
    expect(next?.seq).toBe(7);
    expect(next?.dropped).toBeUndefined();
  });

  it('drops batches older than maxAge', async () => {
    let now = 100_000;
    const spool = await open({ maxAgeMs: 10_000, now: () => now });
    await spool.append(draft(now - 20_000, 3));
    // The only batch is kept even when old: something must carry the declaration.
    expect(spool.stats().batches).toBe(1);
    await spool.append(draft(now - 15_000, 1));
    await spool.append(draft(now, 1));
    expect(spool.stats()).toMatchObject({ batches: 1, droppedBatches: 2, droppedResults: 4 });
    now += 1000;
    expect(await spool.peek()).toMatchObject({ seq: 3, dropped: { batches: 2, results: 4 } });
  });

  it('when everything spooled is dropped, the next appended batch carries the count', async () => {
    let now = 100_000;
    const spool = await open({ maxAgeMs: 10_000, now: () => now });
    await spool.append(draft(now, 2));
    await spool.append(draft(now, 2));
    await spool.ack(2);
    await spool.append(draft(now, 2)); // 3
    now += 60_000;
    await spool.append(draft(now, 1)); // 4: 3 is too old now
    expect(await spool.peek()).toMatchObject({ seq: 4, dropped: { batches: 1, results: 2 } });
  });

  it('never drops the batch on the wire (the last peeked); declares a later gap after it', async () => {
    const spool = await open({ maxBytes: 8_000 });
    await spool.append(draft(1000, 1, 2400));
    expect((await spool.peek())?.seq).toBe(1);
    for (let i = 2; i <= 5; i++) await spool.append(draft(i * 1000, 1, 2400));
    expect((await spool.peek())?.seq).toBe(1);
    await spool.ack(1);
    const next = await spool.peek();
    expect(next?.seq).toBeGreaterThan(2);
    expect(next?.dropped?.batches).toBe(next!.seq - 2);
  });

  it('reject moves a batch to rejected/ and declares it in the next', async () => {
    const spool = await open();
    await spool.append(draft(1000, 4));
    await spool.append(draft(2000, 1));
    await spool.reject(1, '400: bad');
    expect(await readdir(join(dir, 'spool', 'rejected'))).toEqual(['000000000001-1000-4.json.gz']);
    expect(await spool.peek()).toMatchObject({ seq: 2, dropped: { batches: 1, results: 4 } });
    expect(spool.stats()).toMatchObject({ rejectedBatches: 1, droppedBatches: 0 });
  });

  it('keeps at most maxRejected rejected batches', async () => {
    const spool = await open({ maxRejected: 2 });
    for (let i = 1; i <= 4; i++) await spool.append(draft(i));
    for (let i = 1; i <= 4; i++) await spool.reject(i, 'bad');
    expect((await readdir(join(dir, 'spool', 'rejected'))).sort()).toEqual([
      '000000000003-3-1.json.gz',
      '000000000004-4-1.json.gz',
    ]);
  });

  it('declareGap puts the count the collector is missing on the head', async () => {
    const spool = await open();
    await spool.append(draft(1000));
    await spool.append(draft(2000));
    await spool.ack(1);
    await spool.declareGap(2, 1);
    expect((await spool.peek())?.dropped).toEqual({ batches: 1, results: 0 });
  });

  it('completes a drop a crash interrupted, and counts an empty batch file as dropped', async () => {
    const a = await open();
    for (let i = 1; i <= 4; i++) await a.append(draft(i * 1000, 1));
    await a.settle();
    // Crash after the declaration was written, before batches 1 and 2 were removed.
    await writeFile(
      join(dir, 'spool', 'dropped.json'),
      JSON.stringify([{ beforeSeq: 3, batches: 2, results: 2 }]),
    );
    const b = await open();
    expect(b.stats().batches).toBe(2);
    expect(await b.peek()).toMatchObject({ seq: 3, dropped: { batches: 2, results: 2 } });

    await writeFile(join(dir, 'spool', '000000000005-5000-3.json.gz'), '');
    const c = await open();
    await c.ack(3);
    expect(await c.peek()).toMatchObject({ seq: 4 });
    await c.ack(4);
    expect(await c.peek()).toBeUndefined();
    // 5 was empty: declared on the next batch.
    expect(await c.append(draft(6000))).toBe(6);
    expect((await c.peek())?.dropped).toEqual({ batches: 1, results: 3 });
  });
  describe('several cursors (one per collector)', () => {
    it('keeps a batch until every cursor acked it; each cursor reads every seq in order', async () => {
      const spool = await open({ cursors: ['a', 'b'] });
      for (let i = 1; i <= 3; i++) await spool.append(draft(i * 1000, i));
      const a = spool.cursor('a');
      const b = spool.cursor('b');
      expect((await a.peek())?.seq).toBe(1);
      await a.ack(1);
      await a.ack(2);
      expect((await a.peek())?.seq).toBe(3);
      // b is behind: nothing left the spool.
      expect(spool.stats().batches).toBe(3);
      expect((await b.peek())?.seq).toBe(1);
      await b.ack(1);
      expect(spool.stats()).toMatchObject({ batches: 2, acked: 1 });
      expect(spool.stats().cursors).toEqual({
        a: { acked: 2, batches: 1, oldestCreatedAtMs: 3000 },
        b: { acked: 1, batches: 2, oldestCreatedAtMs: 2000 },
      });
      await b.ack(3);
      await a.ack(3);
      expect(spool.stats().batches).toBe(0);
      expect(await a.peek()).toBeUndefined();
      expect(await b.peek()).toBeUndefined();
      expect(() => spool.cursor('c')).toThrow(/no spool cursor "c"/);
      expect(() => spool.peek()).toThrow(/several cursors/);
    });

    it('resumes each cursor where it was after a restart', async () => {
      const first = await open({ cursors: ['a', 'b'] });
      for (let i = 1; i <= 4; i++) await first.append(draft(i * 1000));
      await first.cursor('a').ack(3);
      await first.cursor('b').ack(1);
      await first.settle();
      const again = await open({ cursors: ['a', 'b'] });
      expect((await again.cursor('a').peek())?.seq).toBe(4);
      expect((await again.cursor('b').peek())?.seq).toBe(2);
      expect(again.stats().batches).toBe(3);
      // A collector removed from the list no longer holds batches back; one added starts
      // at the oldest batch the spool has.
      const third = await open({ cursors: ['a', 'c'] });
      expect((await third.cursor('c').peek())?.seq).toBe(2);
      await third.cursor('c').ack(4);
      // b's hold on 2 and 3 is gone; a still waits for 4.
      expect(third.stats().batches).toBe(1);
    });

    it('a spool of the one-collector layout upgrades: the new cursors start at its oldest batch', async () => {
      const legacy = await open();
      for (let i = 1; i <= 3; i++) await legacy.append(draft(i * 1000));
      await legacy.ack(1);
      await legacy.settle();
      await rm(join(dir, 'spool', 'cursors.json'));
      const spool = await open({ cursors: ['x', 'y'] });
      expect((await spool.cursor('x').peek())?.seq).toBe(2);
      expect((await spool.cursor('y').peek())?.seq).toBe(2);
    });

    it('a bound drops for everyone; each cursor is told exactly the batches it misses', async () => {
      const spool = await open({ cursors: ['a', 'b'], maxBytes: 12_000 });
      const a = spool.cursor('a');
      const b = spool.cursor('b');
      await spool.append(draft(1000, 2, 1500));
      await spool.append(draft(2000, 2, 1500));
      await a.ack(2);
      // b is cut off: 6 more batches, only 3 fit; 1..5 go (a already had 1 and 2).
      for (let i = 3; i <= 8; i++) await spool.append(draft(i * 1000, 2, 1500));
      expect(spool.stats()).toMatchObject({ batches: 3, droppedBatches: 5, droppedResults: 10 });
      expect(await a.peek()).toMatchObject({ seq: 6, dropped: { batches: 3, results: 6 } });
      expect(await b.peek()).toMatchObject({ seq: 6, dropped: { batches: 5, results: 10 } });
      expect(decode((await b.peek())!).dropped).toEqual({ batches: 5, results: 10 });
      // On disk, a run per stretch of consecutive losses.
      expect(JSON.parse(await readFile(join(dir, 'spool', 'dropped.json'), 'utf8'))).toEqual([
        { fromSeq: 1, toSeq: 5, results: 10 },
      ]);
      // The losses survive a restart, per cursor.
      await a.ack(6);
      await spool.settle();
      const again = await open({ cursors: ['a', 'b'], maxBytes: 12_000 });
      expect((await again.cursor('a').peek())?.dropped).toBeUndefined();
      expect(await again.cursor('b').peek()).toMatchObject({
        seq: 6,
        dropped: { batches: 5, results: 10 },
      });
      await again.cursor('b').ack(6);
      expect((await again.cursor('b').peek())?.dropped).toBeUndefined();
      expect(
        JSON.parse(await readFile(join(dir, 'spool', 'dropped.json'), 'utf8').catch(() => '[]')),
      ).toEqual([]);
    });

    it('a batch one cursor refuses is skipped and declared to it alone', async () => {
      const spool = await open({ cursors: ['a', 'b'] });
      await spool.append(draft(1000, 4));
      await spool.append(draft(2000, 1));
      const a = spool.cursor('a');
      const b = spool.cursor('b');
      await a.reject(1, '400: bad');
      expect(await readdir(join(dir, 'spool', 'rejected'))).toEqual([
        '000000000001-1000-4.json.gz',
      ]);
      expect(await a.peek()).toMatchObject({ seq: 2, dropped: { batches: 1, results: 4 } });
      const forB = await b.peek();
      expect(forB?.seq).toBe(1);
      expect(forB?.dropped).toBeUndefined();
      await b.ack(2);
      // Batch 1 left the spool, but a has not declared it yet: it survives a restart as a loss.
      await spool.settle();
      const again = await open({ cursors: ['a', 'b'] });
      expect(await again.cursor('a').peek()).toMatchObject({
        seq: 2,
        dropped: { batches: 1, results: 4 },
      });
    });

    it('declareGap is per cursor', async () => {
      const spool = await open({ cursors: ['a', 'b'] });
      await spool.append(draft(1000));
      await spool.append(draft(2000));
      await spool.cursor('a').ack(1);
      await spool.cursor('b').ack(1);
      await spool.cursor('a').declareGap(2, 1);
      expect((await spool.cursor('a').peek())?.dropped).toEqual({ batches: 1, results: 0 });
      expect((await spool.cursor('b').peek())?.dropped).toBeUndefined();
    });
  });
});
