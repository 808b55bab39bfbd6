import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import { ConfigError, FaultlineError } from '../lib/errors.js';
import type { PathSummary, ReportBatch } from '../wire/report.js';
import type { FailureClass, ProbeResult } from '../wire/result.js';
import type {
  AgentCheckpoint,
  MatrixCheckpoint,
  PathCheckpoint,
  RestoreSource,
  Transition,
} from './paths/checkpoint.js';
import type { Credential, EnrolledCredential } from './auth.js';
import { credentialNames, forbiddenReason } from './auth.js';
import type { EnrolOutcome, IngestOutcome, ReportBody } from './types.js';

/**
 * The collector's embedded store: one SQLite file, `<dataDir>/faultline.db`.
 *
 * Durability: WAL with `synchronous=NORMAL` by default. A commit has been written to the WAL
 * (in the OS page cache) when `ingest` returns, so an acknowledged batch survives a crash
 * or SIGKILL of the collector process; it can be lost to a power cut or kernel crash that
 * comes before the next WAL checkpoint. `synchronous: 'full'` fsyncs the WAL on every commit
 * and survives those too, at the price of one fsync per batch.
 *
 * The file is opened with an exclusive lock: a second collector on the same data directory
 * is refused instead of silently splitting the watermarks.
 *
 * Tables: agents (identity, watermark, drop counters), batches (one row per accepted batch:
 * when it came, what it held — retention and replay go by it), results (full records as
 * received), transitions (the history timelines read), and the matrix checkpoint. A batch's
 * summaries stay in its `batches` row: they are only ever read back whole (a restart's
 * replay), and one row per summary cost more than everything else ingest does (2,000 agents
 * × 100 paths is 200,000 rows a second at a 1 s period). The row keeps the batch's body as
 * it was received (`body`, gzip'd when it came so — a tenth of the JSON), which costs
 * nothing to produce; serialising the summaries again was a sixth of ingest's time. A batch
 * stored without its body (and rows from before schema 3) keeps them as `summaries_json`.
 * Results are an append-only rowid table without a key of its own: a batch's rows get
 * consecutive ids (one writer, one transaction), and its `batches` row holds where they
 * start. Inserting then appends to the end of one B-tree instead of touching a page per
 * agent, about 1.5× cheaper per row than a (agent, seq, idx) key, and pruning deletes id
 * ranges from the old end.
 * Schema changes are migrations keyed by `PRAGMA user_version`; add one at the end of
 * `migrations`.
 */

/** Store tuning; every field has a default. */
export interface StoreOptions {
  /** Results, summaries and batch rows older than this (by time received) are pruned. */
  readonly retentionMs: number;
  /** Transitions older than this (by when they happened) are pruned. */
  readonly transitionRetentionMs: number;
  /** `normal`: survives process crashes; `full`: also power loss, one fsync per batch. */
  readonly synchronous: 'normal' | 'full';
  /** How long `open` waits for another process holding the file before giving up. */
  readonly lockTimeoutMs: number;
  /** A name bound to an agent id that sent nothing this long may move to another id. */
  readonly releaseAfterMs: number;
  /** Largest seq jump (or declared dropped batches) a batch may make. */
  readonly maxSeqGap: number;
}

export const defaultStoreOptions: StoreOptions = Object.freeze({
  retentionMs: 7 * 86_400_000,
  transitionRetentionMs: 30 * 86_400_000,
  synchronous: 'normal',
  lockTimeoutMs: 1000,
  releaseAfterMs: 3_600_000,
  maxSeqGap: 200_000,
});

/** Which agent id and credential an agent name is bound to (the `bindings` table). */
export interface NameBinding {
  readonly agent: string;
  readonly agentId: string;
  /** Credential id (collector/auth.ts Credential.id); '' for a binding older than credentials. */
  readonly credential: string;
  /** Bound by a credential that names the agent exactly: refused to every other credential. */
  readonly exact: boolean;
  /** When the bound agent id last sent an accepted batch, or was bound (collector clock). */
  readonly lastSeenMs: number;
}

/** An agent as the store knows it. */
export interface StoredAgent {
  readonly agentId: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly firstSeenMs: number;
  /** When its newest accepted batch was received (collector clock). */
  readonly lastSeenMs: number;
  readonly acceptedSeq: number;
  /** Batches missing from the seq series that the agent declared dropped. */
  readonly droppedBatches: number;
  /** Results the agent declared dropped with them. */
  readonly droppedResults: number;
}

/** One accepted batch, read back (restore replays these). */
export interface StoredBatch {
  readonly agentId: string;
  readonly agent: string;
  readonly seq: number;
  readonly receivedAtMs: number;
  readonly results: ProbeResult[];
  readonly summaries: PathSummary[];
}

/** A stored full result with where it came from. */
export interface StoredResult {
  readonly agentId: string;
  readonly batchSeq: number;
  readonly result: ProbeResult;
}

/** What `ingest` did, with the agent's counters after it. */
export interface StoreIngestResult {
  readonly outcome: IngestOutcome;
  readonly droppedBatches: number;
  readonly droppedResults: number;
}

/** Row shape of `agents` as the hot path reads it. */
interface AgentRow {
  agent_key: number;
  name: string;
  labels: string;
  accepted_seq: number;
  dropped_batches: number;
  dropped_results: number;
}

type Verdict =
  | {
      readonly status: 'new';
      readonly row: AgentRow | undefined;
      readonly missing: number;
      /** The name's binding to write with the batch (undefined: it stands as it is). */
      readonly bind: { readonly credential: string; readonly exact: boolean } | undefined;
    }
  | (IngestOutcome & {
      readonly status: 'duplicate' | 'gap' | 'conflict' | 'forbidden' | 'implausible';
    });

/** Row shape of `bindings` joined with the bound agent's last batch. */
interface BindingRow {
  name: string;
  agent_id: string;
  credential: string;
  exact: number;
  bound_at_ms: number;
  last_seen_ms: number | null;
}

function toBinding(r: BindingRow): NameBinding {
  return {
    agent: r.name,
    agentId: r.agent_id,
    credential: r.credential,
    exact: r.exact === 1,
    lastSeenMs: Math.max(r.bound_at_ms, r.last_seen_ms ?? 0),
  };
}

/** A time as people read it in a refusal: ISO 8601, UTC. */
function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

const migrations: readonly string[] = [
  // 1: the first schema.
  `
  CREATE TABLE agents (
    agent_key INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    accepted_seq INTEGER NOT NULL,
    dropped_batches INTEGER NOT NULL DEFAULT 0,
    dropped_results INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE batches (
    agent_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    results INTEGER NOT NULL,
    summaries INTEGER NOT NULL,
    first_result_id INTEGER,
    summaries_json TEXT,
    PRIMARY KEY (agent_key, seq)
  ) WITHOUT ROWID;
  CREATE INDEX batches_received ON batches (received_at_ms);
  CREATE INDEX batches_agent_received ON batches (agent_key, received_at_ms);
  CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    agent_key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    record TEXT NOT NULL
  );
  CREATE INDEX results_started ON results (started_at_ms);
  CREATE TABLE transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_key INTEGER NOT NULL,
    agent TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    from_class TEXT,
    to_class TEXT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    result_seq INTEGER,
    batch_seq INTEGER NOT NULL
  );
  CREATE INDEX transitions_at ON transitions (at_ms);
  CREATE INDEX transitions_agent ON transitions (agent_key, batch_seq);
  CREATE TABLE checkpoint_agents (
    agent_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE checkpoint_paths (
    agent TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (agent, target)
  ) WITHOUT ROWID;
  `,
  // 2: incidents and their timelines.
  `
  CREATE TABLE incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    opened_at_ms INTEGER NOT NULL,
    first_failure_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    components TEXT NOT NULL
  );
  CREATE INDEX incidents_open ON incidents (closed_at_ms);
  CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    diagnosis TEXT NOT NULL
  );
  CREATE INDEX incident_events_incident ON incident_events (incident_id, id);
  CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    last_error TEXT,
    dead_at_ms INTEGER
  );
  CREATE INDEX outbox_sink ON outbox (sink, dead_at_ms, id);
  `,
  // 3: a batch's body as received (its summaries are read from it).
  `
  ALTER TABLE batches ADD COLUMN body BLOB;
  ALTER TABLE batches ADD COLUMN body_gzip INTEGER NOT NULL DEFAULT 0;
  `,
  // 4: each agent name bound to one agent id and the credential that sent it; per-agent
  // credentials issued by enrolment (SHA-256 digests only). A store from before binds each
  // name to the id it heard from last, by no known credential ('').
  `
  CREATE TABLE IF NOT EXISTS bindings (
    name TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    credential TEXT NOT NULL,
    exact INTEGER NOT NULL,
    bound_at_ms INTEGER NOT NULL
  );
  INSERT OR IGNORE INTO bindings (name, agent_id, credential, exact, bound_at_ms)
    SELECT a.name, a.agent_id, '', 0, a.first_seen_ms FROM agents a
    WHERE a.agent_key = (SELECT b.agent_key FROM agents b WHERE b.name = a.name
                         ORDER BY b.last_seen_ms DESC, b.agent_key DESC LIMIT 1);
  CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS credentials_agent ON credentials (agent);
  `,
  // 5: one path's newest full results (the dashboard's hover) without a scan of them all.
  `
  CREATE INDEX IF NOT EXISTS results_path ON results (agent_key, target, id);
  `,
];

/** Schema version this code writes. */
export const storeSchemaVersion = migrations.length;

const meanings: readonly (readonly [RegExp, string, (dir: string) => string])[] = [
  [
    /^EROFS$/,
    'read-only file system',
    () => 'remount it read-write or point dataDir at a writable directory',
  ],
  [
    /^(EACCES|EPERM)$/,
    'permission denied',
    (d) => `give the collector's user write access to ${d} or point dataDir elsewhere`,
  ],
  [
    /^(ENOSPC|EDQUOT|SQLITE_FULL)/,
    'disk full',
    (d) => `free space on the file system holding ${d} or point dataDir elsewhere`,
  ],
  [
    /^SQLITE_READONLY/,
    'the database cannot be written',
    (d) => `make ${d} and the files in it writable by the collector's user`,
  ],
  [
    /^SQLITE_(BUSY|LOCKED)/,
    'the store is locked',
    (d) => `another collector is using ${d}: stop it or give this one its own dataDir`,
  ],
  [
    /^SQLITE_(NOTADB|CORRUPT)/,
    'not a Faultline store, or damaged',
    (d) => `move the file out of ${d} (a new store is created) or restore it from a backup`,
  ],
  [/^ENOTDIR$/, 'a path component is not a directory', () => 'point dataDir at a directory'],
  [
    /^SQLITE_(CANTOPEN|IOERR)/,
    'the file could not be opened or written',
    (d) => `check that ${d} exists, is writable and its file system is healthy`,
  ],
];

function errCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'UNKNOWN';
}

/** `<what>: <code> (<meaning>); <what to do>` — the code is errno or SQLite's. */
function describeFailure(what: string, err: unknown, dir: string): string {
  const code = errCode(err);
  for (const [re, meaning, advice] of meanings) {
    if (re.test(code)) return `${what}: ${code} (${meaning}); ${advice(dir)}`;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return `${what}: ${code} (${msg})`;
}

/** A store that cannot work (runtime: disk full, I/O error, locked). */
export function storeError(what: string, err: unknown, dir: string): FaultlineError {
  if (err instanceof FaultlineError) return err;
  return new FaultlineError('FL_ERR_STORE', describeFailure(what, err, dir), { cause: err });
}

const emptyLabels: Readonly<Record<string, string>> = Object.freeze({});

function parseLabels(json: string): Readonly<Record<string, string>> {
  if (json === '{}') return emptyLabels;
  return JSON.parse(json) as Record<string, string>;
}

/** The collector's SQLite store. Synchronous (better-sqlite3): one call at a time. */
export class Store implements RestoreSource {
  /** The database file. */
  readonly file: string;
  readonly dir: string;
  readonly options: StoreOptions;
  private readonly db: Db;
  private readonly stmt: ReturnType<typeof prepare>;
  private readonly ingestTx: (
    batch: ReportBatch,
    receivedAtMs: number,
    transitions: readonly Transition[],
    body: ReportBody | undefined,
    credential: Credential | undefined,
  ) => StoreIngestResult;
  private readonly enrolTx: (
    e: EnrolledCredential,
    digest: Buffer,
    issuedBy: string,
    nowMs: number,
  ) => EnrolOutcome;
  private closed = false;

  private constructor(db: Db, dir: string, file: string, options: StoreOptions) {
    this.db = db;
    this.dir = dir;
    this.file = file;
    this.options = options;
    this.stmt = prepare(db);
    this.ingestTx = db.transaction(
      (
        batch: ReportBatch,
        receivedAtMs: number,
        transitions: readonly Transition[],
        body: ReportBody | undefined,
        credential: Credential | undefined,
      ) => this.ingestLocked(batch, receivedAtMs, transitions, body, credential),
    );
    this.enrolTx = db.transaction(
      (e: EnrolledCredential, digest: Buffer, issuedBy: string, nowMs: number) =>
        this.enrolLocked(e, digest, issuedBy, nowMs),
    );
  }

  /**
   * Opens (creating when missing) `<dataDir>/faultline.db`, migrates it and takes its lock.
   * Throws a ConfigError with code FL_ERR_STORE naming the path, the errno or SQLite code,
   * and what to do, when the directory or file cannot be written or is in use.
   */
  static open(dataDir: string, options: Partial<StoreOptions> = {}): Store {
    const opts: StoreOptions = Object.freeze({ ...defaultStoreOptions, ...options });
    const dir = resolve(dataDir);
    const file = join(dir, 'faultline.db');
    const fail = (what: string, err: unknown): ConfigError =>
      new ConfigError(describeFailure(what, err, dir), { code: 'FL_ERR_STORE', cause: err });
    try {
      makeDir(dir);
    } catch (err) {
      throw fail(`cannot create the data directory ${dir}`, err);
    }
    // SQLite says only SQLITE_CANTOPEN; opening the file ourselves first gets the errno.
    try {
      // 0600: the store holds credentials' digests and the fleet's history. SQLite gives
      // the -wal and -shm files the database file's mode.
      closeSync(openSync(file, 'a', 0o600));
    } catch (err) {
      throw fail(`cannot open the store ${file} for writing`, err);
    }
    let db: Db | undefined;
    try {
      db = new Database(file, { timeout: opts.lockTimeoutMs });
      db.pragma('locking_mode = EXCLUSIVE');
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
      if (mode !== 'wal') {
        throw Object.assign(new Error(`journal_mode is ${mode}`), { code: 'SQLITE_CANTOPEN' });
      }
      db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      db.pragma('cache_size = -32768');
      db.pragma('journal_size_limit = 67108864');
      db.pragma('foreign_keys = OFF');
      migrate(db, file);
      // Takes the exclusive lock now (a no-op write), not at the first batch.
      db.exec('BEGIN EXCLUSIVE; COMMIT');
      return new Store(db, dir, file, opts);
    } catch (err) {
      try {
        db?.close();
      } catch {
        // already failing; the first error is the one to report
      }
      if (err instanceof FaultlineError) throw err;
      throw fail(`cannot open the store ${file}`, err);
    }
  }

  /**
   * What `ingest` would answer now, without writing: the API's quick check before the
   * path matrix is touched.
   */
  verdict(
    batch: ReportBatch,
    credential?: Credential,
    nowMs: number = Date.now(),
  ): IngestOutcome | { readonly status: 'new' } {
    const v = this.guard('read the watermark', () => this.judge(batch, credential, nowMs));
    return v.status === 'new' ? { status: 'new' } : v;
  }

  /** The agent id and credential `agent` is bound to, if any. */
  binding(agent: string): NameBinding | undefined {
    return this.guard('read a name binding', () => {
      const row = this.stmt.binding.get(agent) as BindingRow | undefined;
      return row === undefined ? undefined : toBinding(row);
    });
  }

  /**
   * Why `credential` may not act as `agent` (a plan request), or undefined: its patterns do
   * not allow the name, or the name is bound to a credential that names it exactly.
   */
  refusal(agent: string, credential: Credential): string | undefined {
    const reason = forbiddenReason(credential, agent);
    if (reason !== undefined) return reason;
    const b = this.binding(agent);
    if (b !== undefined && b.exact && b.credential !== credential.id) {
      return `agent ${JSON.stringify(agent)} is bound to its own credential; ${credential.label} may not act as it`;
    }
    return undefined;
  }

  /** The enrolled credential whose secret has this SHA-256 digest. */
  enrolledByDigest(digest: Buffer): EnrolledCredential | undefined {
    return this.guard('read enrolled credentials', () => {
      const row = this.stmt.credentialByDigest.get(digest) as
        { id: string; agent: string; agent_id: string } | undefined;
      return row === undefined
        ? undefined
        : { id: row.id, agent: row.agent, agentId: row.agent_id };
    });
  }

  /**
   * Records a per-agent credential (`digest`: SHA-256 of its secret) for `e.agent` and
   * `e.agentId`, issued by the bootstrap token `issuedBy`, and binds the name to it: every
   * earlier credential of the name is deleted (its secret is then unknown). Refused with
   * `conflict` when the name is bound to another agent id that sent something within
   * `releaseAfterMs`, or the agent id belongs to another name.
   */
  enrol(e: EnrolledCredential, digest: Buffer, issuedBy: string, nowMs: number): EnrolOutcome {
    return this.guard('enrol an agent', () => this.enrolTx(e, digest, issuedBy, nowMs));
  }

  /**
   * Stores a validated batch and the transitions it caused, in one transaction: the
   * watermark decides (duplicate: nothing written; gap or conflict: refused), then the
   * batch, its results and summaries, the agent's watermark and drop counters, and the
   * transitions. `body` is the batch as received: kept for its summaries instead of
   * serialising them again (it must be the bytes `batch` was parsed from). Returns when
   * committed (see the durability note above).
   */
  ingest(
    batch: ReportBatch,
    receivedAtMs: number,
    transitions: readonly Transition[],
    body?: ReportBody,
    credential?: Credential,
  ): StoreIngestResult {
    return this.guard('store a report batch', () =>
      this.ingestTx(batch, receivedAtMs, transitions, body, credential),
    );
  }

  /** Records transitions that came from no batch (agents going silent). */
  addTransitions(transitions: readonly Transition[]): void {
    if (transitions.length === 0) return;
    this.guard('store transitions', () =>
      this.db.transaction(() => {
        for (const t of transitions) {
          const key = this.stmt.agentKey.pluck().get(t.agentId) as number | undefined;
          if (key !== undefined) this.insertTransition(key, t);
        }
      })(),
    );
  }

  /** Every agent, oldest `lastSeenMs` first. */
  agents(): StoredAgent[] {
    return this.guard('read agents', () =>
      (this.stmt.agents.all() as AgentListRow[]).map(toStoredAgent),
    );
  }

  /**
   * Transitions that happened at or after `sinceMs`, in the order they were recorded: per
   * path that is the order they happened, so each one's `fromState` is the previous one's
   * `toState` (an agent delivering a spool late records old `atMs` late).
   */
  transitionsSince(sinceMs: number, limit = 100_000): Transition[] {
    return this.guard('read transitions', () =>
      (this.stmt.transitionsSince.all(sinceMs, limit) as TransitionRow[]).map(toTransition),
    );
  }

  /** Full results of probes started at or after `sinceMs`, oldest first. */
  recentResults(sinceMs: number, limit = 100_000): StoredResult[] {
    return this.guard('read results', () =>
      (this.stmt.recentResults.all(sinceMs, limit) as ResultRow[]).map((r) => ({
        agentId: r.agent_id,
        batchSeq: r.seq,
        result: JSON.parse(r.record) as ProbeResult,
      })),
    );
  }

  lastPathTransitions(agentId: string, beforeSeq: number): Transition[] {
    return this.guard('read transitions', () =>
      (this.stmt.lastPathTransitions.all(agentId, beforeSeq) as TransitionRow[]).map(toTransition),
    );
  }

  /**
   * The newest full results of one path (agent name, plan target), newest first: failures
   * and state changes (successes arrive as summaries). Of the agent id that reported last
   * under the name.
   */
  pathResults(agent: string, target: string, limit = 10): ProbeResult[] {
    return this.guard('read results', () =>
      (this.stmt.pathResults.pluck().all(agent, target, limit) as string[]).map(
        (r) => JSON.parse(r) as ProbeResult,
      ),
    );
  }

  /** The newest state changes of one path (agent name, plan target), newest first. */
  pathTransitions(agent: string, target: string, limit = 200): Transition[] {
    return this.guard('read transitions', () =>
      (this.stmt.pathTransitions.all(agent, target, limit) as TransitionRow[]).map(toTransition),
    );
  }

  lastAgentTransition(agentId: string): Transition | undefined {
    return this.guard('read transitions', () => {
      const row = this.stmt.lastAgentTransition.get(agentId) as TransitionRow | undefined;
      return row === undefined ? undefined : toTransition(row);
    });
  }

  firstSeqReceivedSince(agentId: string, sinceMs: number): number | undefined {
    return this.guard('read batches', () => {
      const seq = this.stmt.firstSeqSince.pluck().get(agentId, sinceMs) as number | null;
      return seq ?? undefined;
    });
  }

  batchReceivedAt(agentId: string, seq: number): number | undefined {
    return this.guard('read batches', () => {
      const at = this.stmt.batchReceivedAt.pluck().get(agentId, seq) as number | undefined;
      return at;
    });
  }

  /** Stored batches of an agent from `fromSeq` on, in seq order. */
  *replay(agentId: string, fromSeq: number): Generator<StoredBatch> {
    const head = this.guard(
      'read batches',
      () => this.stmt.replayHead.all(agentId, fromSeq) as ReplayHeadRow[],
    );
    for (const b of head) {
      yield this.guard('read batches', () => ({
        agentId,
        agent: b.name,
        seq: b.seq,
        receivedAtMs: b.received_at_ms,
        results:
          b.first_result_id === null
            ? []
            : (
                this.stmt.batchResults
                  .pluck()
                  .all(b.first_result_id, b.first_result_id + b.results) as string[]
              ).map((j) => JSON.parse(j) as ProbeResult),
        summaries: storedSummaries(b),
      }));
    }
  }

  /** Replaces the matrix checkpoint (path scalars and the watermarks they reflect). */
  saveCheckpoint(c: MatrixCheckpoint): void {
    this.guard('write the checkpoint', () =>
      this.db.transaction(() => {
        this.stmt.clearCheckpointAgents.run();
        this.stmt.clearCheckpointPaths.run();
        for (const a of c.agents) this.stmt.insertCheckpointAgent.run(a.agentId, a.seq);
        for (const p of c.paths)
          this.stmt.insertCheckpointPath.run(p.agent, p.target, JSON.stringify(p));
      })(),
    );
  }

  /**
   * Replaces some agents' parts of the checkpoint, in one transaction: each agent's
   * watermark and every path of it (paths it no longer has go).
   */
  saveAgentCheckpoints(list: readonly AgentCheckpoint[]): void {
    if (list.length === 0) return;
    this.guard('write the checkpoint', () =>
      this.db.transaction(() => {
        for (const a of list) {
          this.stmt.deleteCheckpointPathsOf.run(a.agent);
          this.stmt.upsertCheckpointAgent.run(a.agentId, a.seq);
          for (const p of a.paths)
            this.stmt.insertCheckpointPath.run(p.agent, p.target, JSON.stringify(p));
        }
      })(),
    );
  }

  loadCheckpoint(): MatrixCheckpoint | undefined {
    return this.guard('read the checkpoint', () => {
      const agents = this.stmt.checkpointAgents.all() as { agent_id: string; seq: number }[];
      if (agents.length === 0) return undefined;
      const paths = (this.stmt.checkpointPaths.pluck().all() as string[]).map(
        (j) => JSON.parse(j) as PathCheckpoint,
      );
      return { agents: agents.map((a) => ({ agentId: a.agent_id, seq: a.seq })), paths };
    });
  }

  /**
   * Deletes up to about `maxRows` rows past retention in one short transaction, oldest
   * first: batches received before `nowMs - retentionMs` (with their summaries) and results,
   * transitions older than `transitionRetentionMs`. Call again while `done` is false
   * (yielding between calls), so ingest never waits behind one long delete.
   */
  prune(nowMs: number, maxRows = 5000): { readonly deletedRows: number; readonly done: boolean } {
    return this.guard('prune old rows', () =>
      this.db.transaction(() => {
        let deleted = 0;
        const old = this.stmt.oldBatches.all(
          nowMs - this.options.retentionMs,
          maxRows,
        ) as BatchRow[];
        let batchesDone = old.length < maxRows;
        for (const b of old) {
          if (deleted >= maxRows) {
            batchesDone = false;
            break;
          }
          if (b.first_result_id !== null) {
            deleted += this.stmt.deleteResults.run(
              b.first_result_id,
              b.first_result_id + b.results,
            ).changes;
          }
          deleted += this.stmt.deleteBatch.run(b.agent_key, b.seq).changes;
        }
        const room = Math.max(0, maxRows - deleted);
        const t = this.stmt.deleteOldTransitions.run(
          nowMs - this.options.transitionRetentionMs,
          room,
        ).changes;
        deleted += t;
        return { deletedRows: deleted, done: batchesDone && t < room };
      })(),
    );
  }

  /**
   * Opens an incident with its first event, in one transaction; returns its id.
   * `components` and the event's diagnosis are stored as JSON.
   */
  openIncident(i: NewIncident, event: IncidentEventRecord): number {
    return this.guard('open an incident', () =>
      this.db.transaction(() => {
        const id = Number(
          this.stmt.insertIncident.run(
            i.openedAtMs,
            i.firstFailureMs,
            i.kind,
            i.summary,
            JSON.stringify(i.components),
          ).lastInsertRowid,
        );
        this.insertIncidentEvent(id, event);
        return id;
      })(),
    );
  }

  /** Updates an incident's head (and closes it when `closedAtMs` is set) and adds an event. */
  updateIncident(id: number, head: IncidentHead, event: IncidentEventRecord): void {
    this.guard('record an incident event', () =>
      this.db.transaction(() => {
        this.stmt.updateIncident.run(
          head.firstFailureMs,
          head.kind,
          head.summary,
          JSON.stringify(head.components),
          head.closedAtMs ?? null,
          id,
        );
        this.insertIncidentEvent(id, event);
      })(),
    );
  }

  /** Incidents, newest first; `beforeId` pages back. */
  incidents(limit = 100, beforeId = Number.MAX_SAFE_INTEGER): StoredIncident[] {
    return this.guard('read incidents', () =>
      (this.stmt.incidents.all(beforeId, limit) as IncidentRow[]).map(toStoredIncident),
    );
  }

  incident(id: number): StoredIncident | undefined {
    return this.guard('read an incident', () => {
      const row = this.stmt.incident.get(id) as IncidentRow | undefined;
      return row === undefined ? undefined : toStoredIncident(row);
    });
  }

  /** The incident still open, if any (at most one is). */
  openIncidentNow(): StoredIncident | undefined {
    return this.guard('read incidents', () => {
      const row = this.stmt.openIncident.get() as IncidentRow | undefined;
      return row === undefined ? undefined : toStoredIncident(row);
    });
  }

  /** An incident's timeline, oldest first. */
  incidentEvents(id: number): StoredIncidentEvent[] {
    return this.guard('read incident events', () =>
      (this.stmt.incidentEvents.all(id) as IncidentEventRow[]).map((r) => ({
        atMs: r.at_ms,
        type: r.type,
        diagnosis: JSON.parse(r.diagnosis) as unknown,
      })),
    );
  }

  /**
   * Queues a delivery for a sink (alerts, webhooks): it stays until delivered or declared
   * dead, across restarts. Returns its id.
   */
  outboxAdd(sink: string, payload: unknown, nowMs: number): number {
    return this.guard('queue a delivery', () =>
      Number(this.stmt.outboxAdd.run(sink, nowMs, nowMs, JSON.stringify(payload)).lastInsertRowid),
    );
  }

  /** A sink's pending deliveries (not dead), oldest first. */
  outboxPending(sink: string, limit = 1000): OutboxEntry[] {
    return this.guard('read pending deliveries', () =>
      (this.stmt.outboxPending.all(sink, limit) as OutboxRow[]).map(toOutboxEntry),
    );
  }

  /** Delivered: forgotten. */
  outboxDelivered(id: number): void {
    this.guard('record a delivery', () => this.stmt.outboxDelete.run(id));
  }

  /** A failed attempt: tried again at `nextAttemptMs`. */
  outboxRetry(id: number, nextAttemptMs: number, error: string): void {
    this.guard('record a failed delivery', () =>
      this.stmt.outboxRetry.run(nextAttemptMs, error.slice(0, 2000), id),
    );
  }

  /** Given up on: kept as a dead letter with the reason. */
  outboxDead(id: number, nowMs: number, error: string): void {
    this.guard('record a dead letter', () =>
      this.stmt.outboxDead.run(nowMs, error.slice(0, 2000), id),
    );
  }

  /** Dead letters, newest first. */
  deadLetters(limit = 100): OutboxEntry[] {
    return this.guard('read dead letters', () =>
      (this.stmt.deadLetters.all(limit) as OutboxRow[]).map(toOutboxEntry),
    );
  }

  /** Whether the store answers a query (for /healthz; cheap). */
  healthy(): boolean {
    if (this.closed) return false;
    try {
      this.db.pragma('user_version', { simple: true });
      return true;
    } catch {
      return false;
    }
  }

  /** Row counts, for tests and diagnostics: O(rows), not for a health check. */
  counts(): {
    readonly agents: number;
    readonly batches: number;
    readonly results: number;
    readonly summaries: number;
    readonly transitions: number;
  } {
    return this.guard('count rows', () => {
      const n = (table: string): number =>
        this.db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
      return {
        agents: n('agents'),
        batches: n('batches'),
        results: n('results'),
        summaries: this.db
          .prepare('SELECT coalesce(sum(summaries), 0) FROM batches')
          .pluck()
          .get() as number,
        transitions: n('transitions'),
      };
    });
  }

  /** Closes the database (checkpointing the WAL into the main file). Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  // ---- internals ----

  private guard<T>(what: string, fn: () => T): T {
    if (this.closed) {
      throw new FaultlineError('FL_ERR_STORE', `cannot ${what}: the store ${this.file} is closed`);
    }
    try {
      return fn();
    } catch (err) {
      throw storeError(`cannot ${what} in ${this.file}`, err, this.dir);
    }
  }

  /**
   * The verdict on a batch sent with `credential` (undefined: a trusted caller, treated as a
   * fleet token with no name). In order: the credential must allow the name (and an enrolled
   * one its agent id); a name bound to a credential that names it exactly is refused to every
   * other; the agent id must not belong to another name; a name bound to another agent id
   * moves only for a credential naming it exactly, or once that id has been silent for
   * `releaseAfterMs`; then the watermark: a duplicate, a seq jump or declared drop beyond
   * `maxSeqGap` (implausible), a gap, or new.
   */
  private judge(batch: ReportBatch, credential: Credential | undefined, nowMs: number): Verdict {
    const row = this.stmt.agent.get(batch.agentId) as AgentRow | undefined;
    const acceptedSeq = row?.accepted_seq ?? 0;
    const name = JSON.stringify(batch.agent);
    if (credential !== undefined) {
      const reason = forbiddenReason(credential, batch.agent, batch.agentId);
      if (reason !== undefined) return { status: 'forbidden', acceptedSeq, message: reason };
    }
    const credentialId = credential?.id ?? '';
    const exact = credential !== undefined && credentialNames(credential, batch.agent);
    const bindingRow = this.stmt.binding.get(batch.agent) as BindingRow | undefined;
    const bound = bindingRow === undefined ? undefined : toBinding(bindingRow);
    if (bound !== undefined && bound.exact && bound.credential !== credentialId) {
      return {
        status: 'forbidden',
        acceptedSeq,
        message: `agent ${name} is bound to its own credential; ${credential?.label ?? 'this caller'} may not report as it`,
      };
    }
    if (row !== undefined && row.name !== batch.agent) {
      return {
        status: 'conflict',
        acceptedSeq,
        message: `agent id ${batch.agentId} belongs to agent "${row.name}", not "${batch.agent}"`,
      };
    }
    if (bound !== undefined && bound.agentId !== batch.agentId && !exact) {
      const freeAtMs = bound.lastSeenMs + this.options.releaseAfterMs;
      if (nowMs < freeAtMs) {
        return {
          status: 'conflict',
          acceptedSeq,
          freeAtMs,
          message: `agent ${name} is bound to another agent id, live ${Math.max(0, Math.round((nowMs - bound.lastSeenMs) / 1000))} s ago; the name is free for a new agent id at ${isoTime(freeAtMs)} (after ${Math.round(this.options.releaseAfterMs / 1000)} s of silence), or use a credential that names this agent`,
        };
      }
    }
    const bind =
      bound === undefined ||
      bound.agentId !== batch.agentId ||
      bound.credential !== credentialId ||
      bound.exact !== exact
        ? { credential: credentialId, exact }
        : undefined;
    const maxGap = this.options.maxSeqGap;
    const declared = batch.dropped?.batches ?? 0;
    const implausible = (what: string): Verdict => ({
      status: 'implausible',
      acceptedSeq,
      message: `${what} is more than any agent's spool holds (identity.maxSeqGap ${maxGap}): refused, nothing changed`,
    });
    // An id never seen starts its watermark at its first batch: a new or rebuilt collector
    // must not refuse agents that have been running (and numbering) for a while.
    if (row === undefined) {
      if (declared > maxGap) return implausible(`declaring ${declared} dropped batches`);
      return { status: 'new', row, missing: 0, bind };
    }
    if (batch.seq <= acceptedSeq) return { status: 'duplicate', acceptedSeq };
    const missing = batch.seq - acceptedSeq - 1;
    if (missing > maxGap) {
      return implausible(`seq ${batch.seq} skipping ${missing} batches past ${acceptedSeq}`);
    }
    if (declared > maxGap) return implausible(`declaring ${declared} dropped batches`);
    if (missing === 0 || declared >= missing) return { status: 'new', row, missing, bind };
    return { status: 'gap', acceptedSeq, expectedSeq: acceptedSeq + 1 };
  }

  private enrolLocked(
    e: EnrolledCredential,
    digest: Buffer,
    issuedBy: string,
    nowMs: number,
  ): EnrolOutcome {
    const row = this.stmt.agent.get(e.agentId) as AgentRow | undefined;
    if (row !== undefined && row.name !== e.agent) {
      return {
        status: 'conflict',
        message: `agent id ${e.agentId} belongs to agent "${row.name}", not "${e.agent}"`,
      };
    }
    const bindingRow = this.stmt.binding.get(e.agent) as BindingRow | undefined;
    const bound = bindingRow === undefined ? undefined : toBinding(bindingRow);
    if (bound !== undefined && bound.agentId !== e.agentId) {
      const freeAtMs = bound.lastSeenMs + this.options.releaseAfterMs;
      if (nowMs < freeAtMs) {
        return {
          status: 'conflict',
          freeAtMs,
          message: `agent ${JSON.stringify(e.agent)} is bound to another agent id; the name is free for a new agent id at ${isoTime(freeAtMs)} (after ${Math.round(this.options.releaseAfterMs / 1000)} s of silence)`,
        };
      }
    }
    this.stmt.deleteCredentials.run(e.agent);
    this.stmt.insertCredential.run(e.id, digest, e.agent, e.agentId, issuedBy, nowMs);
    this.stmt.upsertBinding.run(e.agent, e.agentId, `enrolled:${e.id}`, 1, nowMs);
    return { status: 'enrolled' };
  }

  private ingestLocked(
    batch: ReportBatch,
    receivedAtMs: number,
    transitions: readonly Transition[],
    body: ReportBody | undefined,
    credential: Credential | undefined,
  ): StoreIngestResult {
    const v = this.judge(batch, credential, receivedAtMs);
    if (v.status !== 'new') {
      const row = this.stmt.agent.get(batch.agentId) as AgentRow | undefined;
      return {
        outcome: v,
        droppedBatches: row?.dropped_batches ?? 0,
        droppedResults: row?.dropped_results ?? 0,
      };
    }
    const s = this.stmt;
    const labels = batch.labels === undefined ? undefined : JSON.stringify(batch.labels);
    let key: number;
    let droppedBatches: number;
    let droppedResults: number;
    const row = v.row;
    if (row === undefined) {
      droppedBatches = batch.dropped?.batches ?? 0;
      droppedResults = batch.dropped?.results ?? 0;
      key = Number(
        s.insertAgent.run(
          batch.agentId,
          batch.agent,
          labels ?? '{}',
          receivedAtMs,
          receivedAtMs,
          batch.seq,
          droppedBatches,
          droppedResults,
        ).lastInsertRowid,
      );
    } else {
      key = row.agent_key;
      // Declared drops the collector had in fact accepted (lost acks) lost nothing.
      droppedBatches = row.dropped_batches + v.missing;
      droppedResults = row.dropped_results + (v.missing > 0 ? (batch.dropped?.results ?? 0) : 0);
      s.updateAgent.run(
        receivedAtMs,
        batch.seq,
        droppedBatches,
        droppedResults,
        labels ?? row.labels,
        key,
      );
    }
    const results = batch.results;
    const summaries = batch.summaries;
    let firstResult: number | bigint | null = null;
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const id = s.insertResult.run(
        key,
        batch.seq,
        i,
        r.target,
        r.kind,
        r.class,
        r.startedAtMs,
        JSON.stringify(r),
      ).lastInsertRowid;
      if (i === 0) firstResult = id;
    }
    s.insertBatch.run(
      key,
      batch.seq,
      receivedAtMs,
      batch.createdAtMs,
      results.length,
      summaries.length,
      firstResult,
      summaries.length === 0 || body !== undefined ? null : JSON.stringify(summaries),
      summaries.length === 0 || body === undefined ? null : body.bytes,
      body?.gzip === true ? 1 : 0,
    );
    for (const t of transitions) this.insertTransition(key, t);
    if (v.bind !== undefined) {
      s.upsertBinding.run(
        batch.agent,
        batch.agentId,
        v.bind.credential,
        v.bind.exact ? 1 : 0,
        receivedAtMs,
      );
    }
    return {
      outcome: { status: 'accepted', acceptedSeq: batch.seq },
      droppedBatches,
      droppedResults,
    };
  }

  private insertIncidentEvent(id: number, e: IncidentEventRecord): void {
    this.stmt.insertIncidentEvent.run(id, e.atMs, e.type, JSON.stringify(e.diagnosis));
  }

  private insertTransition(key: number, t: Transition): void {
    this.stmt.insertTransition.run(
      key,
      t.agent,
      t.target,
      t.kind,
      t.fromClass,
      t.toClass,
      t.fromState,
      t.toState,
      t.atMs,
      t.resultSeq,
      t.batchSeq,
    );
  }
}

/**
 * mkdir -p that reports the real errno: Node's recursive mkdir says ENOENT where the
 * file system said EROFS or EACCES, so each missing level is made on its own.
 */
function makeDir(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      // The data dir itself private (0700); parents made on the way as usual.
      mkdirSync(d, d === dir ? 0o700 : undefined);
    } catch (err) {
      if (errCode(err) !== 'EEXIST') throw err;
    }
  }
}

function migrate(db: Db, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > migrations.length) {
    throw new ConfigError(
      `cannot open the store ${file}: its schema version ${version} is newer than this collector's (${migrations.length}); run a newer Faultline or point dataDir elsewhere`,
      { code: 'FL_ERR_STORE' },
    );
  }
  for (let v = version; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

function prepare(db: Db) {
  const p = (sql: string): Statement => db.prepare(sql);
  const agentByIdJoin = 'JOIN agents a ON a.agent_key = t.agent_key';
  const transitionCols = `a.agent_id, t.agent, t.target, t.kind, t.from_class, t.to_class,
    t.from_state, t.to_state, t.at_ms, t.result_seq, t.batch_seq`;
  return {
    agent: p(
      `SELECT agent_key, name, labels, accepted_seq, dropped_batches, dropped_results
       FROM agents WHERE agent_id = ?`,
    ),
    agentKey: p('SELECT agent_key FROM agents WHERE agent_id = ?'),
    binding: p(
      `SELECT b.name, b.agent_id, b.credential, b.exact, b.bound_at_ms, a.last_seen_ms
       FROM bindings b LEFT JOIN agents a ON a.agent_id = b.agent_id WHERE b.name = ?`,
    ),
    upsertBinding: p(
      `INSERT INTO bindings (name, agent_id, credential, exact, bound_at_ms) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET agent_id = excluded.agent_id,
         credential = excluded.credential, exact = excluded.exact, bound_at_ms = excluded.bound_at_ms`,
    ),
    credentialByDigest: p('SELECT id, agent, agent_id FROM credentials WHERE digest = ?'),
    deleteCredentials: p('DELETE FROM credentials WHERE agent = ?'),
    insertCredential: p(
      `INSERT INTO credentials (id, digest, agent, agent_id, issued_by, issued_at_ms)
       VALUES (?, ?, ?, ?, ?, ?)`,
    ),
    insertAgent: p(
      `INSERT INTO agents (agent_id, name, labels, first_seen_ms, last_seen_ms, accepted_seq,
         dropped_batches, dropped_results) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    updateAgent: p(
      `UPDATE agents SET last_seen_ms = max(last_seen_ms, ?), accepted_seq = ?,
         dropped_batches = ?, dropped_results = ?, labels = ? WHERE agent_key = ?`,
    ),
    insertBatch: p(
      `INSERT INTO batches (agent_key, seq, received_at_ms, created_at_ms, results, summaries,
         first_result_id, summaries_json, body, body_gzip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertResult: p(
      `INSERT INTO results (agent_key, seq, idx, target, kind, class, started_at_ms, record)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertTransition: p(
      `INSERT INTO transitions (agent_key, agent, target, kind, from_class, to_class,
         from_state, to_state, at_ms, result_seq, batch_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    agents: p(
      `SELECT agent_id, name, labels, first_seen_ms, last_seen_ms, accepted_seq,
         dropped_batches, dropped_results FROM agents ORDER BY last_seen_ms, agent_key`,
    ),
    transitionsSince: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE t.at_ms >= ? ORDER BY t.id LIMIT ?`,
    ),
    pathResults: p(
      `SELECT r.record FROM results r
       WHERE r.agent_key = (SELECT agent_key FROM agents WHERE name = ?
                            ORDER BY last_seen_ms DESC, agent_key DESC LIMIT 1)
         AND r.target = ?
       ORDER BY r.id DESC LIMIT ?`,
    ),
    recentResults: p(
      `SELECT a.agent_id, r.seq, r.record FROM results r JOIN agents a ON a.agent_key = r.agent_key
       WHERE r.started_at_ms >= ? ORDER BY r.started_at_ms, r.id LIMIT ?`,
    ),
    lastPathTransitions: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE t.id IN (
         SELECT max(t2.id) FROM transitions t2 JOIN agents a2 ON a2.agent_key = t2.agent_key
         WHERE a2.agent_id = ? AND t2.batch_seq < ? AND t2.kind <> 'agent'
         GROUP BY t2.target)
       ORDER BY t.id`,
    ),
    pathTransitions: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE t.agent_key IN (SELECT agent_key FROM agents WHERE name = ?) AND t.target = ?
       ORDER BY t.id DESC LIMIT ?`,
    ),
    lastAgentTransition: p(
      `SELECT ${transitionCols} FROM transitions t ${agentByIdJoin}
       WHERE a.agent_id = ? AND t.kind = 'agent' ORDER BY t.id DESC LIMIT 1`,
    ),
    firstSeqSince: p(
      `SELECT min(b.seq) FROM batches b JOIN agents a ON a.agent_key = b.agent_key
       WHERE a.agent_id = ? AND b.received_at_ms >= ?`,
    ),
    batchReceivedAt: p(
      `SELECT b.received_at_ms FROM batches b JOIN agents a ON a.agent_key = b.agent_key
       WHERE a.agent_id = ? AND b.seq = ?`,
    ),
    replayHead: p(
      `SELECT a.name, b.seq, b.received_at_ms, b.results, b.summaries, b.first_result_id,
         b.summaries_json, b.body, b.body_gzip
       FROM batches b JOIN agents a ON a.agent_key = b.agent_key
       WHERE a.agent_id = ? AND b.seq >= ? ORDER BY b.seq`,
    ),
    batchResults: p('SELECT record FROM results WHERE id >= ? AND id < ? ORDER BY id'),
    clearCheckpointAgents: p('DELETE FROM checkpoint_agents'),
    clearCheckpointPaths: p('DELETE FROM checkpoint_paths'),
    insertCheckpointAgent: p('INSERT INTO checkpoint_agents (agent_id, seq) VALUES (?, ?)'),
    upsertCheckpointAgent: p(
      'INSERT INTO checkpoint_agents (agent_id, seq) VALUES (?, ?) ON CONFLICT (agent_id) DO UPDATE SET seq = excluded.seq',
    ),
    deleteCheckpointPathsOf: p('DELETE FROM checkpoint_paths WHERE agent = ?'),
    insertCheckpointPath: p('INSERT INTO checkpoint_paths (agent, target, state) VALUES (?, ?, ?)'),
    checkpointAgents: p('SELECT agent_id, seq FROM checkpoint_agents'),
    checkpointPaths: p('SELECT state FROM checkpoint_paths'),
    oldBatches: p(
      `SELECT agent_key, seq, results, summaries, first_result_id
       FROM batches WHERE received_at_ms < ? ORDER BY received_at_ms LIMIT ?`,
    ),
    deleteResults: p('DELETE FROM results WHERE id >= ? AND id < ?'),
    deleteBatch: p('DELETE FROM batches WHERE agent_key = ? AND seq = ?'),
    insertIncident: p(
      `INSERT INTO incidents (opened_at_ms, first_failure_ms, kind, summary, components)
       VALUES (?, ?, ?, ?, ?)`,
    ),
    updateIncident: p(
      `UPDATE incidents SET first_failure_ms = ?, kind = ?, summary = ?, components = ?,
         closed_at_ms = ? WHERE id = ?`,
    ),
    insertIncidentEvent: p(
      'INSERT INTO incident_events (incident_id, at_ms, type, diagnosis) VALUES (?, ?, ?, ?)',
    ),
    incidents: p(`SELECT * FROM incidents WHERE id < ? ORDER BY id DESC LIMIT ?`),
    incident: p('SELECT * FROM incidents WHERE id = ?'),
    openIncident: p('SELECT * FROM incidents WHERE closed_at_ms IS NULL ORDER BY id DESC LIMIT 1'),
    incidentEvents: p(
      'SELECT at_ms, type, diagnosis FROM incident_events WHERE incident_id = ? ORDER BY id',
    ),
    outboxAdd: p(
      'INSERT INTO outbox (sink, created_at_ms, next_attempt_ms, payload) VALUES (?, ?, ?, ?)',
    ),
    outboxPending: p(
      'SELECT * FROM outbox WHERE sink = ? AND dead_at_ms IS NULL ORDER BY id LIMIT ?',
    ),
    outboxDelete: p('DELETE FROM outbox WHERE id = ?'),
    outboxRetry: p(
      'UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, last_error = ? WHERE id = ?',
    ),
    outboxDead: p(
      'UPDATE outbox SET attempts = attempts + 1, dead_at_ms = ?, last_error = ? WHERE id = ?',
    ),
    deadLetters: p(
      'SELECT * FROM outbox WHERE dead_at_ms IS NOT NULL ORDER BY dead_at_ms DESC, id DESC LIMIT ?',
    ),
    deleteOldTransitions: p(
      `DELETE FROM transitions WHERE id IN (
         SELECT id FROM transitions WHERE at_ms < ? ORDER BY at_ms LIMIT ?)`,
    ),
  };
}

/** What opens an incident. */
export interface NewIncident {
  /** When the diagnosis turned unhealthy (detection). */
  readonly openedAtMs: number;
  /** The earliest failure the diagnosis explains. */
  readonly firstFailureMs: number;
  /** The leading hypothesis. */
  readonly kind: string;
  readonly summary: string;
  /** Every component the incident's hypotheses named so far, sorted. */
  readonly components: readonly string[];
}

/** An incident's head as it changes; `closedAtMs` set closes it. */
export interface IncidentHead extends Omit<NewIncident, 'openedAtMs'> {
  readonly closedAtMs?: number;
}

export interface StoredIncident extends NewIncident {
  readonly id: number;
  readonly closedAtMs?: number;
}

/** One entry of an incident's timeline, with the diagnosis at that moment. */
export interface IncidentEventRecord {
  readonly atMs: number;
  /** `opened`, `leading_changed`, `hypotheses_changed`, `recovered`. */
  readonly type: string;
  readonly diagnosis: unknown;
}

export type StoredIncidentEvent = IncidentEventRecord;

/** A queued delivery of a sink. */
export interface OutboxEntry {
  readonly id: number;
  readonly sink: string;
  readonly createdAtMs: number;
  /** Failed attempts so far. */
  readonly attempts: number;
  readonly nextAttemptMs: number;
  readonly payload: unknown;
  readonly lastError?: string;
  /** Set on a dead letter: when it was given up. */
  readonly deadAtMs?: number;
}

interface OutboxRow {
  id: number;
  sink: string;
  created_at_ms: number;
  attempts: number;
  next_attempt_ms: number;
  payload: string;
  last_error: string | null;
  dead_at_ms: number | null;
}

function toOutboxEntry(r: OutboxRow): OutboxEntry {
  return {
    id: r.id,
    sink: r.sink,
    createdAtMs: r.created_at_ms,
    attempts: r.attempts,
    nextAttemptMs: r.next_attempt_ms,
    payload: JSON.parse(r.payload) as unknown,
    ...(r.last_error === null ? {} : { lastError: r.last_error }),
    ...(r.dead_at_ms === null ? {} : { deadAtMs: r.dead_at_ms }),
  };
}

interface IncidentRow {
  id: number;
  opened_at_ms: number;
  first_failure_ms: number;
  closed_at_ms: number | null;
  kind: string;
  summary: string;
  components: string;
}

interface IncidentEventRow {
  at_ms: number;
  type: string;
  diagnosis: string;
}

function toStoredIncident(r: IncidentRow): StoredIncident {
  return {
    id: r.id,
    openedAtMs: r.opened_at_ms,
    firstFailureMs: r.first_failure_ms,
    ...(r.closed_at_ms === null ? {} : { closedAtMs: r.closed_at_ms }),
    kind: r.kind,
    summary: r.summary,
    components: JSON.parse(r.components) as string[],
  };
}

interface AgentListRow {
  agent_id: string;
  name: string;
  labels: string;
  first_seen_ms: number;
  last_seen_ms: number;
  accepted_seq: number;
  dropped_batches: number;
  dropped_results: number;
}

function toStoredAgent(r: AgentListRow): StoredAgent {
  return {
    agentId: r.agent_id,
    agent: r.name,
    labels: parseLabels(r.labels),
    firstSeenMs: r.first_seen_ms,
    lastSeenMs: r.last_seen_ms,
    acceptedSeq: r.accepted_seq,
    droppedBatches: r.dropped_batches,
    droppedResults: r.dropped_results,
  };
}

interface TransitionRow {
  agent_id: string;
  agent: string;
  target: string;
  kind: string;
  from_class: string | null;
  to_class: string | null;
  from_state: string;
  to_state: string;
  at_ms: number;
  result_seq: number | null;
  batch_seq: number;
}

function toTransition(r: TransitionRow): Transition {
  return {
    agentId: r.agent_id,
    agent: r.agent,
    target: r.target,
    kind: r.kind,
    fromClass: r.from_class as FailureClass | null,
    toClass: r.to_class as FailureClass | null,
    fromState: r.from_state,
    toState: r.to_state,
    atMs: r.at_ms,
    resultSeq: r.result_seq,
    batchSeq: r.batch_seq,
  };
}

interface ResultRow {
  agent_id: string;
  seq: number;
  record: string;
}

interface BatchRow {
  agent_key: number;
  seq: number;
  results: number;
  summaries: number;
  first_result_id: number | null;
}

interface ReplayHeadRow {
  name: string;
  seq: number;
  received_at_ms: number;
  results: number;
  summaries: number;
  first_result_id: number | null;
  summaries_json: string | null;
  body: Buffer | null;
  body_gzip: number;
}

/** A stored batch's summaries: from its body as received, or as stored apart. */
export function storedSummaries(
  b: Pick<ReplayHeadRow, 'summaries_json' | 'body' | 'body_gzip'>,
): PathSummary[] {
  if (b.body !== null) {
    // Validated when it was received; the JSON of a strict schema parses to the same value.
    const json = b.body_gzip === 1 ? gunzipSync(b.body) : b.body;
    return (JSON.parse(json.toString('utf8')) as { summaries: PathSummary[] }).summaries;
  }
  return b.summaries_json === null ? [] : (JSON.parse(b.summaries_json) as PathSummary[]);
}
