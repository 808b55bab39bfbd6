import { closeSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { ConfigError, FaultlineError } from '../lib/errors.js';
import type { ReportBatch } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';
import type { StoredAgent, StoredBatch } from './checkpoint.js';
import type {
  AgentCheckpoint,
  MatrixCheckpoint,
  PathCheckpoint,
  RestoreSource,
  Transition,
} from './paths/checkpoint.js';
import type { Credential, EnrolledCredential } from './auth.js';
import { forbiddenReason } from './auth.js';
import { describeFailure, makeDir, storeError } from './store/errors.js';
import {
  IncidentTable,
  type IncidentEventRecord,
  type IncidentHead,
  type NewIncident,
  type StoredIncident,
  type StoredIncidentEvent,
} from './store/incidents.js';
import type { StoreIngestResult } from './store/ingest.js';
import { enrolLocked, ingestLocked, insertTransition, judge } from './store/ingest.js';
import { migrate } from './store/migrations.js';
import { defaultStoreOptions, type StoreOptions } from './store/options.js';
import { OutboxTable, type OutboxEntry } from './store/outbox.js';
import type {
  AgentListRow,
  BatchRow,
  BindingRow,
  NameBinding,
  ReplayHeadRow,
  ResultRow,
  StoredResult,
  TransitionRow,
} from './store/rows.js';
import { storedSummaries, toBinding, toStoredAgent, toTransition } from './store/rows.js';
import { prepare, type Statements } from './store/statements.js';
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
 * `migrations` (store/migrations.ts).
 *
 * The parts: `store/migrations.ts` (the schema), `store/statements.ts` (the SQL),
 * `store/rows.ts` (what rows read as), `store/ingest.ts` (admitting a batch),
 * `store/incidents.ts` and `store/outbox.ts`.
 */

/** The collector's SQLite store. Synchronous (better-sqlite3): one call at a time. */
export class Store implements RestoreSource {
  /** The database file. */
  readonly file: string;
  readonly dir: string;
  readonly options: StoreOptions;
  private readonly db: Db;
  private readonly stmt: Statements;
  private readonly incidentTable: IncidentTable;
  private readonly outbox: OutboxTable;
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
    this.incidentTable = new IncidentTable(db, this.stmt);
    this.outbox = new OutboxTable(this.stmt);
    this.ingestTx = db.transaction(
      (
        batch: ReportBatch,
        receivedAtMs: number,
        transitions: readonly Transition[],
        body: ReportBody | undefined,
        credential: Credential | undefined,
      ) => ingestLocked(this.stmt, options, batch, receivedAtMs, transitions, body, credential),
    );
    this.enrolTx = db.transaction(
      (e: EnrolledCredential, digest: Buffer, issuedBy: string, nowMs: number) =>
        enrolLocked(this.stmt, options, e, digest, issuedBy, nowMs),
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
    const v = this.guard('read the watermark', () =>
      judge(this.stmt, this.options, batch, credential, nowMs),
    );
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
          if (key !== undefined) insertTransition(this.stmt, key, t);
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
    return this.guard('open an incident', () => this.incidentTable.open(i, event));
  }

  /** Updates an incident's head (and closes it when `closedAtMs` is set) and adds an event. */
  updateIncident(id: number, head: IncidentHead, event: IncidentEventRecord): void {
    this.guard('record an incident event', () => this.incidentTable.update(id, head, event));
  }

  /** Incidents, newest first; `beforeId` pages back. */
  incidents(limit = 100, beforeId = Number.MAX_SAFE_INTEGER): StoredIncident[] {
    return this.guard('read incidents', () => this.incidentTable.list(limit, beforeId));
  }

  incident(id: number): StoredIncident | undefined {
    return this.guard('read an incident', () => this.incidentTable.get(id));
  }

  /** The incident still open, if any (at most one is). */
  openIncidentNow(): StoredIncident | undefined {
    return this.guard('read incidents', () => this.incidentTable.openNow());
  }

  /** An incident's timeline, oldest first. */
  incidentEvents(id: number): StoredIncidentEvent[] {
    return this.guard('read incident events', () => this.incidentTable.events(id));
  }

  /**
   * Queues a delivery for a sink (alerts, webhooks): it stays until delivered or declared
   * dead, across restarts. Returns its id.
   */
  outboxAdd(sink: string, payload: unknown, nowMs: number): number {
    return this.guard('queue a delivery', () => this.outbox.add(sink, payload, nowMs));
  }

  /** A sink's pending deliveries (not dead), oldest first. */
  outboxPending(sink: string, limit = 1000): OutboxEntry[] {
    return this.guard('read pending deliveries', () => this.outbox.pending(sink, limit));
  }

  /** Delivered: forgotten. */
  outboxDelivered(id: number): void {
    this.guard('record a delivery', () => this.outbox.delivered(id));
  }

  /** A failed attempt: tried again at `nextAttemptMs`. */
  outboxRetry(id: number, nextAttemptMs: number, error: string): void {
    this.guard('record a failed delivery', () => this.outbox.retry(id, nextAttemptMs, error));
  }

  /** Given up on: kept as a dead letter with the reason. */
  outboxDead(id: number, nowMs: number, error: string): void {
    this.guard('record a dead letter', () => this.outbox.dead(id, nowMs, error));
  }

  /** Dead letters, newest first. */
  deadLetters(limit = 100): OutboxEntry[] {
    return this.guard('read dead letters', () => this.outbox.deadLetters(limit));
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
}
