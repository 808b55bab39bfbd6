import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ProbeResult } from '../wire/result.js';
import { Journal } from './journal.js';
import { Reporter } from './reporter.js';
import type { BatchDraft } from './spool.js';

const log = pino({ level: 'silent' });

let seq = 0;
function result(cls: ProbeResult['class'], target = 'db-1/tcp'): ProbeResult {
  seq++;
  return {
    agent: 'app-1',
    target,
    address: '10.0.0.5:5432',
    kind: 'tcp',
    class: cls,
    seq,
    startedAtMs: 1_700_000_000_000 + seq,
    timings: { totalMs: 1 },
  };
}

describe('Journal: the open report period survives a kill', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'faultline-journal-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function reporter(journal: Journal, drafts: BatchDraft[]): Reporter {
    return new Reporter({
      agent: 'app-1',
      labels: {},
      log,
      earlyFlushMs: false,
      journal,
      sink: {
        append: (d) => {
          drafts.push(d);
          return Promise.resolve(drafts.length);
        },
      },
    });
  }

  it('what was observed but never cut is recovered in order (a killed run), nothing else', async () => {
    const drafts: BatchDraft[] = [];
    const j = new Journal(dir, log);
    const r = reporter(j, drafts);
    r.observe(result('ok'), { name: 'db-1/tcp', kind: 'tcp' });
    await r.cut(); // spooled: not recovered
    const open = [result('tcp_timeout'), result('ok'), result('tcp_refused')];
    for (const x of open) r.observe(x, { name: 'db-1/tcp', kind: 'tcp' });
    // Killed here: no cut, no stop.
    const { entries, done } = Journal.recover(dir, new Set(), log);
    expect(entries.map((e) => e.result)).toEqual(open);
    expect(entries[0]!.target).toEqual({ name: 'db-1/tcp', kind: 'tcp' });
    done();
    expect(await readdir(join(dir, 'journal'))).toEqual([]);
  });

  it('a closed period whose batch reached the spool is not replayed twice', () => {
    const j = new Journal(dir, log);
    j.record(result('tcp_timeout'), { name: 'a', kind: 'tcp' });
    j.close(1234); // rotated, killed before the release
    j.record(result('tcp_timeout'), { name: 'b', kind: 'tcp' });
    const spooled = Journal.recover(dir, new Set([1234]), log);
    expect(spooled.entries.map((e) => e.target.name)).toEqual(['b']);
  });

  it('a closed period whose batch never reached the spool is replayed before the open one', () => {
    const j = new Journal(dir, log);
    j.record(result('tcp_timeout'), { name: 'a', kind: 'tcp' });
    j.close(1234);
    j.record(result('tcp_refused'), { name: 'b', kind: 'tcp' });
    const { entries } = Journal.recover(dir, new Set(), log);
    expect(entries.map((e) => e.target.name)).toEqual(['a', 'b']);
  });

  it('a clean stop leaves nothing to replay; a torn last line is skipped', async () => {
    const drafts: BatchDraft[] = [];
    const j = new Journal(dir, log);
    const r = reporter(j, drafts);
    r.start();
    r.observe(result('tcp_timeout'), { name: 'db-1/tcp', kind: 'tcp' });
    await r.stop();
    expect(Journal.recover(dir, new Set(), log).entries).toEqual([]);
    const { appendFileSync } = await import('node:fs');
    appendFileSync(join(dir, 'journal', 'open.jsonl'), '{"t":"x","k":"tcp","r":{"cla');
    expect(Journal.recover(dir, new Set(), log).entries).toEqual([]);
  });
});
