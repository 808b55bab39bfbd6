import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import ts from 'typescript';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FaultlineError } from '../lib/errors.js';
import { repoRoot } from '../test/helpers/cli.js';
import { pollUntil } from '../lab/poll-until.js';
import { batch, result, summary, t0 } from '../test/helpers/report-batches.js';
import type { Credential } from './auth.js';
import type { Transition } from './paths/checkpoint.js';
import { Store } from './store.js';
import { storeSchemaVersion } from './store/migrations.js';

const isRoot = process.getuid?.() === 0;
const day = 86_400_000;
const pg = 'db-1/tcp/postgres';

const dirs: string[] = [];
const stores: Store[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'faultline-store-'));
  dirs.push(d);
  return d;
}
function open(dir = tempDir(), opts: Parameters<typeof Store.open>[1] = {}): Store {
  const s = Store.open(dir, opts);
  stores.push(s);
  return s;
}
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function thrown(fn: () => unknown): FaultlineError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FaultlineError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

const transition = (seq: number): Transition => ({
  agentId: 'agent-app-1-0001',
  agent: 'app-1',
  target: pg,
  kind: 'tcp',
  fromClass: 'ok',
  toClass: 'tcp_timeout',
  fromState: 'ok',
  toState: 'failing',
  atMs: t0 + seq * 1000,
  resultSeq: seq,
  batchSeq: seq,
});

describe('Store watermark', () => {
  it('stores a batch once: a retry is a duplicate and writes nothing', () => {
    const store = open();
    const b = batch(1, {
      results: [result(pg, 'tcp_timeout', 1, t0)],
      summaries: [summary(pg, t0, 1, { count: 1, ok: 0, failures: { tcp_timeout: 1 } })],
    });
    expect(store.ingest(b, t0, [transition(1)]).outcome).toEqual({
      status: 'accepted',
      acceptedSeq: 1,
    });
    const counts = store.counts();
    expect(counts).toEqual({ agents: 1, batches: 1, results: 1, summaries: 1, transitions: 1 });
    expect(store.verdict(b)).toEqual({ status: 'duplicate', acceptedSeq: 1 });
    expect(store.ingest(b, t0 + 5, [transition(1)]).outcome).toEqual({
      status: 'duplicate',
      acceptedSeq: 1,
    });
    expect(store.counts()).toEqual(counts);
    expect(store.recentResults(0).map((r) => r.result)).toEqual(b.results);
    expect(store.transitionsSince(0)).toEqual([transition(1)]);
  });

  it('refuses a gap; accepts one the agent declares dropped and counts it', () => {
    const store = open();
    store.ingest(batch(1), t0, []);
    expect(store.ingest(batch(3), t0, []).outcome).toEqual({
      status: 'gap',
      acceptedSeq: 1,
      expectedSeq: 2,
    });
    // Declaring fewer batches than are missing does not explain the gap.
    expect(
      store.ingest(batch(5, { dropped: { batches: 2, results: 7 } }), t0, []).outcome.status,
    ).toBe('gap');
    const ok = store.ingest(batch(5, { dropped: { batches: 3, results: 40 } }), t0 + 1, []);
    expect(ok).toEqual({
      outcome: { status: 'accepted', acceptedSeq: 5 },
      droppedBatches: 3,
      droppedResults: 40,
    });
    // Declared drops of batches the collector had accepted (its acks were lost) lost nothing.
    store.ingest(batch(6, { dropped: { batches: 1, results: 9 } }), t0 + 2, []);
    expect(store.agents()[0]).toMatchObject({
      acceptedSeq: 6,
      droppedBatches: 3,
      droppedResults: 40,
      lastSeenMs: t0 + 2,
    });
    expect(store.counts().batches).toBe(3);
  });

  it('starts an agent it never saw at its first batch, whatever its seq', () => {
    const store = open();
    expect(store.ingest(batch(5000), t0, []).outcome).toEqual({
      status: 'accepted',
      acceptedSeq: 5000,
    });
  });

  it('refuses an agent id used under another name', () => {
    const store = open();
    store.ingest(batch(1), t0, []);
    expect(store.ingest(batch(2, { agent: 'impostor' }), t0, []).outcome).toEqual({
      status: 'conflict',
      acceptedSeq: 1,
      message: 'agent id agent-app-1-0001 belongs to agent "app-1", not "impostor"',
    });
    expect(store.counts().batches).toBe(1);
  });

  it('keeps agents, labels and watermarks across a close and reopen', () => {
    const dir = tempDir();
    const first = open(dir);
    first.ingest(batch(1, { labels: { zone: 'b', rack: 'r1' } }), t0, []);
    first.ingest(batch(2, { results: [result(pg, 'ok', 9, t0)] }), t0 + 1000, [transition(2)]);
    const agents = first.agents();
    first.close();
    const again = open(dir);
    expect(again.agents()).toEqual(agents);
    expect(agents[0]).toMatchObject({ labels: { zone: 'a' }, acceptedSeq: 2, firstSeenMs: t0 });
    expect(again.verdict(batch(2))).toEqual({ status: 'duplicate', acceptedSeq: 2 });
    expect(again.verdict(batch(3))).toEqual({ status: 'new' });
    expect([...again.replay('agent-app-1-0001', 2)]).toMatchObject([
      { seq: 2, agent: 'app-1', receivedAtMs: t0 + 1000, results: [{ seq: 9 }], summaries: [] },
    ]);
  });

  it("replays a batch's summaries from its body as received, gzip'd or not, and from a store made before bodies were kept", () => {
    const dir = tempDir();
    const summaries = (seq: number) => [
      summary(pg, t0 + seq * 1000, seq, { count: 10, ok: 9, failures: { tcp_timeout: 1 } }),
      summary('db-1/icmp', t0 + seq * 1000, seq, { count: 10, ok: 10, loss: 0.1 }),
    ];
    const b = (seq: number) => batch(seq, { summaries: summaries(seq) });
    const first = open(dir);
    // Seq 1 as a store before schema 3 wrote it (no body): the summaries apart.
    first.ingest(b(1), t0, []);
    first.close();
    const raw = new Database(join(dir, 'faultline.db'));
    raw.exec('ALTER TABLE batches DROP COLUMN body; ALTER TABLE batches DROP COLUMN body_gzip');
    raw.pragma('user_version = 2');
    raw.close();
    const again = open(dir);
    const json = Buffer.from(JSON.stringify(b(2)));
    again.ingest(b(2), t0 + 1000, [], { bytes: json, gzip: false });
    again.ingest(b(3), t0 + 2000, [], { bytes: gzipSync(JSON.stringify(b(3))), gzip: true });
    expect([...again.replay('agent-app-1-0001', 1)].map((r) => r.summaries)).toEqual([
      summaries(1),
      summaries(2),
      summaries(3),
    ]);
    // The body is kept as it came (a tenth of the JSON when gzip'd), not serialised again.
    again.close();
    stores.splice(stores.indexOf(again), 1);
    const rows = new Database(join(dir, 'faultline.db'), { readonly: true });
    const stored = rows
      .prepare('SELECT seq, summaries_json, body, body_gzip FROM batches ORDER BY seq')
      .all() as {
      seq: number;
      summaries_json: string | null;
      body: Buffer | null;
      body_gzip: number;
    }[];
    rows.close();
    expect(
      stored.map((r) => [r.seq, r.summaries_json !== null, r.body?.length, r.body_gzip]),
    ).toEqual([
      [1, true, undefined, 0],
      [2, false, json.length, 0],
      [3, false, gzipSync(JSON.stringify(b(3))).length, 1],
    ]);
  });

  it('a second collector on the same data directory is refused, naming why', () => {
    const dir = tempDir();
    open(dir);
    const err = thrown(() => Store.open(dir, { lockTimeoutMs: 50 }));
    expect(err.code).toBe('FL_ERR_STORE');
    expect(err.message).toBe(
      `cannot open the store ${dir}/faultline.db: SQLITE_BUSY (the store is locked); another collector is using ${dir}: stop it or give this one its own dataDir`,
    );
  });

  it('refuses a file that is not a store, and a store from a newer Faultline', () => {
    const junk = tempDir();
    writeFileSync(join(junk, 'faultline.db'), 'this is not a database, just some text'.repeat(200));
    const err = thrown(() => Store.open(junk));
    expect(err.message).toBe(
      `cannot open the store ${junk}/faultline.db: SQLITE_NOTADB (not a Faultline store, or damaged); move the file out of ${junk} (a new store is created) or restore it from a backup`,
    );

    const newer = tempDir();
    open(newer).close();
    const raw = new Database(join(newer, 'faultline.db'));
    raw.pragma('user_version = 99');
    raw.close();
    expect(thrown(() => Store.open(newer)).message).toBe(
      `cannot open the store ${newer}/faultline.db: its schema version 99 is newer than this collector's (${storeSchemaVersion}); run a newer Faultline or point dataDir elsewhere`,
    );
  });
});

describe("Store: one path's newest results (the dashboard's hover)", () => {
  it('newest first, of that agent and target only, at most the limit; read through its index', () => {
    const dir = tempDir();
    const store = open(dir);
    const other = 'db-2/tcp/postgres';
    store.ingest(
      batch(1, {
        results: [
          result(pg, 'tcp_timeout', 1, t0),
          result(other, 'tcp_refused', 2, t0 + 10),
          result(pg, 'tcp_refused', 3, t0 + 20),
        ],
      }),
      t0,
      [],
    );
    store.ingest(batch(2, { results: [result(pg, 'ok', 4, t0 + 1000)] }), t0 + 1000, []);
    store.ingest(
      batch(1, {
        agent: 'app-2',
        agentId: 'agent-app-2-0001',
        results: [{ ...result(pg, 'dns_error', 5, t0), agent: 'app-2' }],
      }),
      t0,
      [],
    );
    expect(store.pathResults('app-1', pg).map((r) => [r.seq, r.class])).toEqual([
      [4, 'ok'],
      [3, 'tcp_refused'],
      [1, 'tcp_timeout'],
    ]);
    expect(store.pathResults('app-1', pg, 2).map((r) => r.seq)).toEqual([4, 3]);
    expect(store.pathResults('app-1', other).map((r) => r.seq)).toEqual([2]);
    expect(store.pathResults('app-2', pg).map((r) => r.seq)).toEqual([5]);
    expect(store.pathResults('app-3', pg)).toEqual([]);
    // A path's newest results are found through results_path, not a scan of every result.
    stores.splice(stores.indexOf(store), 1);
    store.close();
    const raw = new Database(join(dir, 'faultline.db'), { readonly: true });
    try {
      const plan = raw
        .prepare(
          `EXPLAIN QUERY PLAN SELECT r.record FROM results r
           WHERE r.agent_key = 1 AND r.target = ? ORDER BY r.id DESC LIMIT 10`,
        )
        .all(pg) as { detail: string }[];
      expect(plan.map((p) => p.detail).join('; ')).toMatch(/USING INDEX results_path/);
      expect(plan.map((p) => p.detail).join('; ')).not.toMatch(/TEMP B-TREE/);
    } finally {
      raw.close();
    }
  });
});

describe('Store retention', () => {
  it('prunes batches, results and summaries past retention, and old transitions, in small steps', () => {
    const store = open(tempDir(), { retentionMs: 7 * day, transitionRetentionMs: 8 * day });
    for (let d = 0; d < 10; d++) {
      const at = t0 + d * day;
      store.ingest(
        batch(d + 1, {
          results: [result(pg, 'tcp_timeout', d, at)],
          summaries: [summary(pg, at, d), summary('db-1/icmp', at, d, { kind: 'icmp' })],
        }),
        at,
        [{ ...transition(d + 1), atMs: at }],
      );
    }
    const now = t0 + 9 * day + 1;
    let steps = 0;
    let deleted = 0;
    for (let done = false; !done; steps++) {
      const r = store.prune(now, 4);
      expect(r.deletedRows).toBeLessThanOrEqual(4 + 1); // a batch's rows go together
      deleted += r.deletedRows;
      done = r.done;
    }
    expect(steps).toBeGreaterThan(2);
    // Days 0-2 are older than 7 days (2 rows each: the batch with its summaries, the
    // result); transitions of days 0-1 older than 8.
    expect(deleted).toBe(3 * 2 + 2);
    expect(store.counts()).toEqual({
      agents: 1,
      batches: 7,
      results: 7,
      summaries: 14,
      transitions: 8,
    });
    expect(store.recentResults(0)[0]?.result.startedAtMs).toBe(t0 + 3 * day);
    expect(store.prune(now)).toEqual({ deletedRows: 0, done: true });
    // The watermark outlives its batches.
    expect(store.verdict(batch(10))).toEqual({ status: 'duplicate', acceptedSeq: 10 });
  });
});

describe.runIf(isRoot)('Store on a broken file system', () => {
  const mounts: string[] = [];
  function mountTmpfs(options: string): string {
    const d = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', d]);
    mounts.push(d);
    return d;
  }
  afterAll(() => {
    for (const s of stores.splice(0)) s.close();
    for (const m of mounts) {
      try {
        execFileSync('umount', [m]);
      } catch {
        execFileSync('umount', ['-l', m]);
      }
    }
  });

  it('a read-only data directory: the error names the path, EROFS and what to do', () => {
    const ro = mountTmpfs('ro,size=1m');
    const sub = thrown(() => Store.open(join(ro, 'data')));
    expect(sub).toBeInstanceOf(FaultlineError);
    expect(sub.code).toBe('FL_ERR_STORE');
    expect(sub.message).toBe(
      `cannot create the data directory ${ro}/data: EROFS (read-only file system); remount it read-write or point dataDir at a writable directory`,
    );
    expect(thrown(() => Store.open(ro)).message).toBe(
      `cannot open the store ${ro}/faultline.db for writing: EROFS (read-only file system); remount it read-write or point dataDir at a writable directory`,
    );
  });

  it('a full disk at start: SQLITE_FULL, naming the directory to free', () => {
    const full = mountTmpfs('size=64k');
    try {
      writeFileSync(join(full, 'filler'), Buffer.alloc(1024 * 1024));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    const err = thrown(() => Store.open(full));
    expect(err.code).toBe('FL_ERR_STORE');
    expect(err.message).toBe(
      `cannot open the store ${full}/faultline.db: SQLITE_FULL (disk full); free space on the file system holding ${full} or point dataDir elsewhere`,
    );
  });

  it('the disk filling up while running: the batch is refused whole, and taken once there is room', () => {
    const dir = mountTmpfs('size=512k');
    writeFileSync(join(dir, 'filler'), Buffer.alloc(128 * 1024));
    const store = open(dir);
    const big = (seq: number) =>
      batch(seq, {
        results: Array.from({ length: 40 }, (_, i) => ({
          ...result(pg, 'tcp_timeout', seq * 100 + i, t0),
          error: { message: 'x'.repeat(1000) },
        })),
      });
    let seq = 1;
    let failure: FaultlineError | undefined;
    for (; seq < 200 && failure === undefined; seq++) {
      try {
        store.ingest(big(seq), t0, []);
      } catch (err) {
        failure = err as FaultlineError;
      }
    }
    const failed = seq - 1;
    expect(failure?.code).toBe('FL_ERR_STORE');
    expect(failure?.message).toBe(
      `cannot store a report batch in ${dir}/faultline.db: SQLITE_FULL (disk full); free space on the file system holding ${dir} or point dataDir elsewhere`,
    );
    expect(store.agents()[0]?.acceptedSeq).toBe(failed - 1);
    expect(store.verdict(big(failed))).toEqual({ status: 'new' });
    unlinkSync(join(dir, 'filler'));
    expect(store.ingest(big(failed), t0, []).outcome).toEqual({
      status: 'accepted',
      acceptedSeq: failed,
    });
  });
});

describe('Store durability', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** Compiles store.ts (and what it imports at run time) for a plain node child. */
  function buildChild(dir: string): string {
    const parts = ['errors', 'incidents', 'ingest', 'migrations', 'options', 'outbox', 'rows'];
    const files = [...parts, 'statements'].map((p) => `collector/store/${p}.ts`);
    for (const f of ['collector/store.ts', ...files, 'collector/auth.ts', 'lib/errors.ts']) {
      const out = ts.transpileModule(readFileSync(join(repoRoot, f), 'utf8'), {
        compilerOptions: {
          module: ts.ModuleKind.ES2022,
          target: ts.ScriptTarget.ES2022,
          verbatimModuleSyntax: true,
        },
      }).outputText;
      const dest = join(dir, f.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, out);
    }
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));
    const main = join(dir, 'child.js');
    writeFileSync(
      main,
      `import { writeSync } from 'node:fs';
import { Store } from './collector/store.js';
const store = Store.open(process.argv[2]);
const stopAt = Date.now() + 20000;
for (let seq = 1; Date.now() < stopAt; seq++) {
  const summaries = Array.from({ length: 20 }, (_, i) => ({
    target: 'c' + i + '/tcp', kind: 'tcp', fromMs: seq * 1000, toMs: seq * 1000 + 1000,
    count: 1, ok: 1, failures: {}, lastClass: 'ok', lastSeq: seq * 100 + i,
  }));
  store.ingest({ agentId: 'agent-crash-0001', agent: 'crash', seq, createdAtMs: seq,
    results: [], summaries }, Date.now(), []);
  writeSync(1, 'ack ' + seq + '\\n');
}
`,
    );
    return main;
  }

  it('every batch acknowledged before a SIGKILL is in the store after it', async () => {
    const work = tempDir();
    const data = join(work, 'data');
    const main = buildChild(join(work, 'child'));
    const proc = spawn(process.execPath, [main, data], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise((r) => proc.on('exit', r));
    await pollUntil(`500 acks (stderr: ${err})`, () => (out.match(/\n/g)?.length ?? 0) >= 500);
    proc.kill('SIGKILL');
    await exited;
    expect(proc.signalCode).toBe('SIGKILL');
    const acked = Math.max(...[...out.matchAll(/ack (\d+)\n/g)].map((m) => Number(m[1])));

    const store = open(data);
    const agent = store.agents()[0];
    expect(agent?.acceptedSeq).toBeGreaterThanOrEqual(acked);
    const seqs = [...store.replay('agent-crash-0001', 1)].map((b) => {
      expect(b.summaries).toHaveLength(20);
      return b.seq;
    });
    expect(seqs.slice(0, acked)).toEqual(Array.from({ length: acked }, (_, i) => i + 1));
  });
});

describe('Store identity: names bound to agent ids and credentials (issue 13)', () => {
  const minute = 60_000;
  const fleet: Credential = { id: 'fleet', label: 'token "fleet"', role: 'agent' };
  const fleet2: Credential = { id: 'fleet-2', label: 'token "fleet-2"', role: 'agent' };
  const exact: Credential = {
    id: 'app-1',
    label: 'token "app-1"',
    role: 'agent',
    agents: ['app-1'],
  };
  const web: Credential = { id: 'web', label: 'token "web"', role: 'agent', agents: ['web-*'] };
  const opened = () => open(tempDir(), { maxSeqGap: 100, releaseAfterMs: 10 * minute });
  const other = (seq: number, over = {}) => batch(seq, { agentId: 'agent-other-0002', ...over });

  it('refuses a seq jump or a declared drop beyond maxSeqGap, changing nothing', () => {
    const store = opened();
    store.ingest(batch(1), t0, [], undefined, fleet);
    const poison = batch(Number.MAX_SAFE_INTEGER, {
      dropped: { batches: Number.MAX_SAFE_INTEGER - 2, results: 0 },
    });
    expect(store.verdict(poison, fleet, t0)).toMatchObject({
      status: 'implausible',
      acceptedSeq: 1,
    });
    expect(store.ingest(poison, t0, [], undefined, fleet2).outcome).toEqual({
      status: 'implausible',
      acceptedSeq: 1,
      message: `seq ${Number.MAX_SAFE_INTEGER} skipping ${Number.MAX_SAFE_INTEGER - 2} batches past 1 is more than any agent's spool holds (identity.maxSeqGap 100): refused, nothing changed`,
    });
    // A jump within the bound but a declared drop beyond it.
    expect(
      store.ingest(batch(50, { dropped: { batches: 101, results: 0 } }), t0, [], undefined, fleet)
        .outcome.status,
    ).toBe('implausible');
    // Exactly the bound is taken.
    expect(store.agents()[0]?.acceptedSeq).toBe(1);
    expect(
      store.ingest(batch(102, { dropped: { batches: 100, results: 0 } }), t0, [], undefined, fleet)
        .outcome,
    ).toEqual({ status: 'accepted', acceptedSeq: 102 });
  });

  it('a name bound to a live agent id is refused to a new id (409 with when it frees), then released', () => {
    const store = opened();
    store.ingest(batch(1), t0, [], undefined, fleet);
    expect(store.binding('app-1')).toEqual({
      agent: 'app-1',
      agentId: 'agent-app-1-0001',
      credential: 'fleet',
      exact: false,
      lastSeenMs: t0,
    });
    store.ingest(batch(2), t0 + minute, [], undefined, fleet);
    const out = store.ingest(other(1), t0 + 2 * minute, [], undefined, fleet).outcome;
    expect(out).toMatchObject({ status: 'conflict', freeAtMs: t0 + 11 * minute });
    expect(out.status === 'conflict' && out.message).toContain(
      `free for a new agent id at ${new Date(t0 + 11 * minute).toISOString()}`,
    );
    expect(store.counts().batches).toBe(2);
    // Silent for releaseAfter: the name moves.
    expect(store.ingest(other(1), t0 + 11 * minute, [], undefined, fleet).outcome.status).toBe(
      'accepted',
    );
    expect(store.binding('app-1')?.agentId).toBe('agent-other-0002');
  });

  it('a credential naming the agent exactly may move it; then no other credential may use it', () => {
    const store = opened();
    store.ingest(batch(1), t0, [], undefined, fleet);
    expect(store.ingest(other(1), t0 + 1, [], undefined, exact).outcome.status).toBe('accepted');
    expect(store.binding('app-1')).toMatchObject({ credential: 'app-1', exact: true });
    const refused = store.ingest(other(2), t0 + 2, [], undefined, fleet).outcome;
    expect(refused).toMatchObject({ status: 'forbidden' });
    expect(refused.status === 'forbidden' && refused.message).toBe(
      'agent "app-1" is bound to its own credential; token "fleet" may not report as it',
    );
    expect(store.refusal('app-1', fleet)).toMatch(/bound to its own credential/);
    expect(store.refusal('app-1', exact)).toBeUndefined();
    // Patterns: a web-* token is refused any other name.
    expect(
      store.ingest(batch(1, { agent: 'db-1', agentId: 'agent-db-1-0001' }), t0, [], undefined, web)
        .outcome,
    ).toMatchObject({
      status: 'forbidden',
      message: 'token "web" may not act as agent "db-1" (it may use: web-*)',
    });
  });

  it('enrols: a digest bound to one name and id; again revokes the old; a live other id: conflict', () => {
    const store = opened();
    const d1 = Buffer.alloc(32, 1);
    const d2 = Buffer.alloc(32, 2);
    const e = { id: 'c1', agent: 'app-1', agentId: 'agent-app-1-0001' };
    expect(store.enrol(e, d1, 'boot', t0)).toEqual({ status: 'enrolled' });
    expect(store.enrolledByDigest(d1)).toEqual(e);
    expect(store.binding('app-1')).toMatchObject({ credential: 'enrolled:c1', exact: true });
    expect(store.enrol({ ...e, id: 'c2' }, d2, 'boot', t0 + 1)).toEqual({ status: 'enrolled' });
    expect(store.enrolledByDigest(d1)).toBeUndefined();
    expect(store.enrolledByDigest(d2)?.id).toBe('c2');
    const stolen = { id: 'c3', agent: 'app-1', agentId: 'agent-other-0002' };
    expect(store.enrol(stolen, Buffer.alloc(32, 3), 'boot', t0 + minute)).toMatchObject({
      status: 'conflict',
      freeAtMs: t0 + 1 + 10 * minute,
    });
    expect(store.enrolledByDigest(d2)?.id).toBe('c2');
    // Its id under another name: conflict too.
    store.ingest(batch(1), t0 + 2, [], undefined, {
      ...exact,
      id: 'enrolled:c2',
      agentId: e.agentId,
    });
    expect(
      store.enrol({ ...e, id: 'c4', agent: 'app-9' }, Buffer.alloc(32, 4), 'boot', t0 + 3),
    ).toMatchObject({
      status: 'conflict',
      message: 'agent id agent-app-1-0001 belongs to agent "app-1", not "app-9"',
    });
  });

  it('a store from before bindings binds each name to the id it heard from last', () => {
    const dir = tempDir();
    // Released at once: the name moves to the second id, as it did before bindings.
    const first = open(dir, { releaseAfterMs: 0 });
    first.ingest(batch(1), t0, []);
    first.ingest(other(1), t0 + 5, []);
    first.close();
    const raw = new Database(join(dir, 'faultline.db'));
    raw.exec('DROP TABLE bindings; DROP TABLE credentials');
    raw.pragma('user_version = 3');
    raw.close();
    const again = open(dir);
    expect(again.binding('app-1')).toEqual({
      agent: 'app-1',
      agentId: 'agent-other-0002',
      credential: '',
      exact: false,
      lastSeenMs: t0 + 5,
    });
    expect(again.agents()).toHaveLength(2);
  });
});
