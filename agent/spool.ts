import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { tightenModes } from '../lib/file-modes.js';
import type { ReportBatch } from '../wire/report.js';
import { syncDir, writeFileAtomic } from './atomic-file.js';
import { loadCursors, loadLosses, saveCursors, saveLosses, type Losses } from './spool-ledger.js';
import type { Logger } from '../lib/logger.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Default bound of the spool on disk: total bytes of the (compressed) batches. */
export const defaultSpoolMaxBytes = 256 * 1024 * 1024;
/** Default bound of the spool on disk: age of the oldest batch. */
export const defaultSpoolMaxAgeMs = 24 * 3_600_000;
/**
 * Default bound of one batch's JSON (uncompressed): half the collector's default body
 * limit (8 MB after decompression), so a burst of failures is never refused as too large.
 */
export const defaultMaxBatchBytes = 4 * 1024 * 1024;
/** Rejected batches kept in `spool/rejected/` for a human to look at; older ones go. */
export const defaultMaxRejected = 100;

/** A batch as the reporter closes it; the spool stamps `agentId`, `seq` and `dropped`. */
export type BatchDraft = Omit<ReportBatch, 'agentId' | 'seq' | 'dropped'>;

/** Batches (and the results in them) that never reached the collector. */
export interface DroppedCount {
  readonly batches: number;
  readonly results: number;
}

/** The oldest batch not yet acknowledged, ready to send. */
export interface SpooledBatch {
  readonly seq: number;
  readonly createdAtMs: number;
  /** Full results in the batch. */
  readonly results: number;
  /** The request body: the batch as gzip-compressed JSON, `dropped` declared when due. */
  readonly body: Buffer;
  /** Batches lost right before this one and declared in it (spool bound, rejection, gap). */
  readonly dropped?: DroppedCount;
}

/** Options of {@link Spool.open}. */
export interface SpoolOptions {
  /** The agent's state directory; the spool lives in `<stateDir>/spool/`. */
  readonly stateDir: string;
  readonly log: Logger;
  /** Most bytes the spooled batches take on disk; beyond, the oldest are dropped. */
  readonly maxBytes?: number;
  /** Oldest batch kept; older ones are dropped. */
  readonly maxAgeMs?: number;
  /** Rejected batches kept for inspection. */
  readonly maxRejected?: number;
  /** A batch's JSON larger than this is split in several (the collector limits bodies). */
  readonly maxBatchBytes?: number;
  /** Wall clock, epoch ms; injectable for tests. */
  readonly now?: () => number;
  /**
   * The destinations reading the spool, each with its own cursor (a collector, …): a batch
   * leaves the spool when every cursor is past it (or a bound drops it). Default: one
   * cursor, {@link defaultCursor}. Cursors persist in `spool/cursors.json`; a name not
   * saved there starts at the oldest batch spooled.
   */
  readonly cursors?: readonly string[];
}

/** The cursor of a spool opened without `cursors` (the one-collector agent). */
export const defaultCursor = 'default';

/** One destination's position in the spool. */
export interface SpoolCursorStats {
  /** Highest seq this destination acknowledged. */
  readonly acked: number;
  /** Batches spooled that this destination has not acknowledged yet. */
  readonly batches: number;
  /** createdAtMs of the oldest of them, or undefined when none waits. */
  readonly oldestCreatedAtMs: number | undefined;
}

/**
 * One destination's view of the spool: what a report destination (a collector, a message
 * bus publisher) needs to deliver every batch in seq order, on its own schedule.
 */
export interface SpoolCursor {
  readonly name: string;
  /** The oldest batch this destination has not acknowledged, with the losses it must declare. */
  peek(): Promise<SpooledBatch | undefined>;
  /** This destination has every batch up to `seq`. */
  ack(seq: number): Promise<void>;
  /** This destination refused batch `seq` as bad: skipped for it, declared as dropped to it. */
  reject(seq: number, reason: string): Promise<void>;
  /** This destination expects `batches` batches before `beforeSeq` that the spool no longer has. */
  declareGap(beforeSeq: number, batches: number): Promise<void>;
  stats(): SpoolCursorStats;
}

/** Counters since open, and the spool's current size. */
export interface SpoolStats {
  /** Batches waiting for at least one destination. */
  readonly batches: number;
  readonly bytes: number;
  /** The seq the next appended batch gets. */
  readonly nextSeq: number;
  readonly appended: number;
  readonly acked: number;
  /** Dropped by the bounds (bytes, age) or unreadable. */
  readonly droppedBatches: number;
  readonly droppedResults: number;
  /** Refused by the collector as bad (400/413) and moved to `rejected/`. */
  readonly rejectedBatches: number;
  /** createdAtMs of the oldest batch waiting, or undefined when none waits. */
  readonly oldestCreatedAtMs: number | undefined;
  /** Per destination: its position. */
  readonly cursors: Readonly<Record<string, SpoolCursorStats>>;
}

interface Entry {
  readonly seq: number;
  readonly createdAtMs: number;
  readonly results: number;
  readonly bytes: number;
  readonly file: string;
}

const agentIdRe = /^[A-Za-z0-9_-]{8,64}$/;
// seq-createdAtMs-results: the index is rebuilt from names alone, without reading batches.
const batchFileRe = /^(\d{12,})-(\d+)-(\d+)\.json\.gz$/;
const seqDigits = 12;

function batchFileName(seq: number, createdAtMs: number, results: number): string {
  return `${String(seq).padStart(seqDigits, '0')}-${createdAtMs}-${results}.json.gz`;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** One destination's state in the spool. */
interface CursorState {
  acked: number;
  /** Seqs this destination refused as bad (results in each): skipped for it, declared to it. */
  readonly skipped: Map<number, number>;
  /** A gap the destination wants declared on batch `beforeSeq` (it lost state). */
  gap: { readonly beforeSeq: number; readonly batches: number } | undefined;
  /** The seq last handed out by peek(): it may be on the wire, so the bounds leave it alone. */
  pinned: number | undefined;
}

/**
 * The agent's durable, ordered queue of report batches: `<stateDir>/spool/`, one gzip'd
 * JSON file per batch named by its zero-padded seq, written tmp + fsync + rename. The next
 * seq and the agent id (`<stateDir>/agent-id`, generated once) survive restarts, so a batch
 * keeps its seq across them and each collector can deduplicate retries.
 *
 * One spool, one sequence, several readers: each destination (collector) has its own
 * {@link SpoolCursor} and sees the agent's one gap-free seq sequence; a batch leaves the
 * spool when every cursor acknowledged it. One destination down delays nobody else.
 *
 * Bounded by bytes and by age: over a bound, the OLDEST batches go (whoever still waits for
 * them), and each destination that missed them is told in `dropped` of the next batch it
 * gets (the collector accepts a seq gap only when it is declared) — counted and logged,
 * never silent. Losses live in `spool/dropped.json`, written before the files are removed,
 * so a crash in between is completed on the next open.
 *
 * All operations run one at a time, in call order.
 */
export class Spool {
  private readonly dir: string;
  private readonly rejectedDir: string;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly maxRejected: number;
  private readonly maxBatchBytes: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private entries: Entry[] = [];
  private head = 0;
  private totalBytes = 0;
  private nextSeq = 1;
  private losses: Losses = new Map();
  /** Losses up to this seq were forgotten (every destination was past them). */
  private forgottenUpTo = -1;
  private readonly cursors = new Map<string, CursorState>();
  private readonly views = new Map<string, SpoolCursor>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly appendListeners = new Set<() => void>();
  private counts = {
    appended: 0,
    acked: 0,
    droppedBatches: 0,
    droppedResults: 0,
    rejectedBatches: 0,
  };

  private constructor(
    private readonly options: SpoolOptions,
    /** Stable id of this agent, from `<stateDir>/agent-id`. */
    readonly agentId: string,
  ) {
    this.dir = join(options.stateDir, 'spool');
    this.rejectedDir = join(this.dir, 'rejected');
    this.maxBytes = options.maxBytes ?? defaultSpoolMaxBytes;
    this.maxAgeMs = options.maxAgeMs ?? defaultSpoolMaxAgeMs;
    this.maxRejected = options.maxRejected ?? defaultMaxRejected;
    this.maxBatchBytes = options.maxBatchBytes ?? defaultMaxBatchBytes;
    this.now = options.now ?? Date.now;
    this.log = options.log;
  }

  /** Opens (creating) the spool and recovers what a previous run left. */
  static async open(options: SpoolOptions): Promise<Spool> {
    const names = options.cursors ?? [defaultCursor];
    if (names.length === 0 || new Set(names).size !== names.length)
      throw new Error(`spool cursors must be distinct and at least one (got ${names.join(', ')})`);
    const dir = join(options.stateDir, 'spool');
    await mkdir(join(dir, 'rejected'), { recursive: true, mode: 0o700 });
    // A state dir left wider (made by hand, or by an older version) holds the agent's
    // credential and id: it is tightened, with a warning naming each change.
    for (const note of tightenModes(options.stateDir, 'state directory')) {
      options.log.warn({ path: note.path, errorCode: note.errorCode }, note.message);
    }
    const agentId = await loadAgentId(options.stateDir, options.log);
    const spool = new Spool(options, agentId);
    await spool.recover(names);
    return spool;
  }

  /** The cursor of destination `name` (one of those the spool was opened with). */
  cursor(name: string): SpoolCursor {
    const view = this.views.get(name);
    if (view === undefined)
      throw new Error(`no spool cursor "${name}" (known: ${[...this.views.keys()].join(', ')})`);
    return view;
  }

  /** Current counters. */
  stats(): SpoolStats {
    const cursors: Record<string, SpoolCursorStats> = {};
    for (const [name, c] of this.cursors) cursors[name] = this.cursorStats(c);
    return {
      batches: this.entries.length - this.head,
      bytes: this.totalBytes,
      nextSeq: this.nextSeq,
      ...this.counts,
      oldestCreatedAtMs: this.entries[this.head]?.createdAtMs,
      cursors,
    };
  }

  // The one-destination spool's shortcuts (a spool opened without `cursors`).

  /** The oldest batch the only cursor has not acknowledged. */
  peek(): Promise<SpooledBatch | undefined> {
    return this.only().peek();
  }

  /** The only destination has every batch up to `seq`: they leave the spool. */
  ack(seq: number): Promise<void> {
    return this.only().ack(seq);
  }

  /**
   * The only destination refused batch `seq` as bad (400/413): it moves to
   * `spool/rejected/` and is declared as dropped in the next batch.
   */
  reject(seq: number, reason: string): Promise<void> {
    return this.only().reject(seq, reason);
  }

  /** See {@link SpoolCursor.declareGap}. */
  declareGap(beforeSeq: number, batches: number): Promise<void> {
    return this.only().declareGap(beforeSeq, batches);
  }

  /** createdAtMs of every batch waiting (the journal's recovery matches on it). */
  createdAtMs(): number[] {
    return this.entries.slice(this.head).map((e) => e.createdAtMs);
  }

  /** Calls `listener` after every append; returns the unsubscribe function. */
  onAppend(listener: () => void): () => void {
    this.appendListeners.add(listener);
    return () => this.appendListeners.delete(listener);
  }

  /**
   * Stores a batch durably and returns its seq; then enforces the bounds. A batch whose
   * JSON passes `maxBatchBytes` is split (results and summaries halved, order kept) into
   * several consecutive batches, and the last seq is returned.
   */
  append(draft: BatchDraft): Promise<number> {
    return this.serial(async () => {
      const seq = await this.store(draft);
      await this.enforceBounds();
      for (const listener of this.appendListeners) listener();
      return seq;
    });
  }

  /** Waits for every operation queued so far. */
  async settle(): Promise<void> {
    await this.serial(async () => undefined);
  }

  private only(): SpoolCursor {
    if (this.views.size !== 1)
      throw new Error('the spool has several cursors: use spool.cursor(name)');
    return this.views.values().next().value!;
  }

  private makeCursor(name: string, acked: number): void {
    const c: CursorState = { acked, skipped: new Map(), gap: undefined, pinned: undefined };
    this.cursors.set(name, c);
    this.views.set(name, {
      name,
      peek: () => this.serial(() => this.peekFor(c)),
      ack: (seq) => this.serial(() => this.ackFor(c, seq)),
      reject: (seq, reason) => this.serial(() => this.rejectFor(name, c, seq, reason)),
      declareGap: (beforeSeq, batches) =>
        this.serial(async () => {
          c.gap = { beforeSeq, batches };
        }),
      stats: () => this.cursorStats(c),
    });
  }

  /** Index of the first kept entry with a seq above `seq`. */
  private firstAfter(seq: number): number {
    let lo = this.head;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first entry cursor `c` still has to deliver. */
  private nextFor(c: CursorState): number {
    let i = this.firstAfter(c.acked);
    while (i < this.entries.length && c.skipped.has(this.entries[i]!.seq)) i++;
    return i;
  }

  private cursorStats(c: CursorState): SpoolCursorStats {
    const i = this.nextFor(c);
    let batches = this.entries.length - i;
    for (const s of c.skipped.keys())
      if (this.entries[i] !== undefined && s > this.entries[i].seq) batches--;
    return {
      acked: c.acked,
      batches: Math.max(0, batches),
      oldestCreatedAtMs: this.entries[i]?.createdAtMs,
    };
  }

  /** What `c` must be told is lost before batch `seq`: every seq between its ack and it. */
  private declaration(c: CursorState, seq: number): DroppedCount | undefined {
    let batches = Math.max(0, seq - c.acked - 1);
    let results = 0;
    if (batches > 0) {
      for (const [s, r] of this.losses) if (s > c.acked && s < seq) results += r;
      for (const [s, r] of c.skipped)
        if (s > c.acked && s < seq && !this.losses.has(s)) results += r;
    }
    if (c.gap !== undefined && c.gap.beforeSeq === seq) batches = c.gap.batches;
    return batches > 0 ? { batches, results } : undefined;
  }

  private async peekFor(c: CursorState): Promise<SpooledBatch | undefined> {
    for (;;) {
      const e = this.entries[this.nextFor(c)];
      if (e === undefined) return undefined;
      let body: Buffer;
      try {
        body = await readFile(join(this.dir, e.file));
      } catch (err) {
        if (!isNotFound(err)) throw err;
        this.log.error({ seq: e.seq, file: e.file }, 'spooled batch vanished; counted as dropped');
        await this.discard([e]);
        continue;
      }
      const declared = this.declaration(c, e.seq);
      if (declared !== undefined) {
        try {
          const batch = JSON.parse((await gunzipAsync(body)).toString()) as ReportBatch;
          batch.dropped = { ...declared };
          body = await gzipAsync(JSON.stringify(batch));
        } catch (err) {
          this.log.error({ seq: e.seq, err }, 'spooled batch unreadable; moved to rejected/');
          await this.copyToRejected(e);
          await this.discard([e]);
          continue;
        }
      }
      c.pinned = e.seq;
      return {
        seq: e.seq,
        createdAtMs: e.createdAtMs,
        results: e.results,
        body,
        ...(declared === undefined ? {} : { dropped: declared }),
      };
    }
  }

  private async ackFor(c: CursorState, seq: number): Promise<void> {
    if (c.pinned !== undefined && c.pinned <= seq) c.pinned = undefined;
    if (seq <= c.acked) return;
    c.acked = Math.min(seq, this.nextSeq - 1);
    if (c.gap !== undefined && c.gap.beforeSeq <= c.acked) c.gap = undefined;
    for (const s of [...c.skipped.keys()]) if (s <= c.acked) c.skipped.delete(s);
    await this.saveCursors();
    await this.release();
  }

  private async rejectFor(
    name: string,
    c: CursorState,
    seq: number,
    reason: string,
  ): Promise<void> {
    const e = this.entries.slice(this.head).find((x) => x.seq === seq);
    if (e === undefined || seq <= c.acked) return;
    this.log.error(
      { seq, results: e.results, reason, cursor: name, file: join(this.rejectedDir, e.file) },
      'report batch rejected; kept in rejected/ and declared as dropped to the destination that refused it',
    );
    this.counts.rejectedBatches++;
    await this.copyToRejected(e);
    c.skipped.set(seq, e.results);
    if (c.pinned === seq) c.pinned = undefined;
    await this.release();
  }

  private saveCursors(): Promise<void> {
    const acked = new Map<string, number>();
    for (const [name, c] of this.cursors) acked.set(name, c.acked);
    return saveCursors(this.dir, acked);
  }

  /**
   * Batches every destination is past (acknowledged, or skipped after a refusal) leave the
   * spool; a skip some destination has not yet declared becomes a loss (kept across a
   * restart). Losses every destination is past are forgotten.
   */
  private async release(): Promise<void> {
    const all = [...this.cursors.values()];
    const gone: Entry[] = [];
    let lossesChanged = false;
    while (this.head < this.entries.length) {
      const e = this.entries[this.head]!;
      if (!all.every((c) => c.acked >= e.seq || c.skipped.has(e.seq))) break;
      if (all.some((c) => c.acked < e.seq)) {
        this.losses.set(e.seq, e.results);
        lossesChanged = true;
      } else this.counts.acked++;
      gone.push(e);
      this.head++;
    }
    // Losses every destination is past are forgotten; scanned only when the slowest moved.
    const slowest = Math.min(...all.map((c) => c.acked));
    if (slowest > this.forgottenUpTo) {
      this.forgottenUpTo = slowest;
      for (const s of [...this.losses.keys()]) {
        if (s <= slowest) {
          this.losses.delete(s);
          lossesChanged = true;
        }
      }
    }
    if (lossesChanged) await saveLosses(this.dir, this.losses);
    this.compact();
    for (const e of gone) {
      this.totalBytes -= e.bytes;
      await rm(join(this.dir, e.file), { force: true });
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  private isPinned(seq: number): boolean {
    for (const c of this.cursors.values()) if (c.pinned === seq) return true;
    return false;
  }

  /**
   * Removes batches from the index and the disk as lost: each destination still waiting
   * for them is told in the next batch it gets. The losses are saved first: a crash after
   * that is completed by recover().
   */
  private async discard(gone: readonly Entry[]): Promise<void> {
    if (gone.length === 0) return;
    const dropping = new Set(gone.map((e) => e.seq));
    for (const e of gone) this.losses.set(e.seq, e.results);
    await saveLosses(this.dir, this.losses);
    this.entries = this.entries.slice(this.head).filter((e) => !dropping.has(e.seq));
    this.head = 0;
    for (const e of gone) {
      this.totalBytes -= e.bytes;
      await rm(join(this.dir, e.file), { force: true });
    }
    for (const c of this.cursors.values())
      if (c.pinned !== undefined && dropping.has(c.pinned)) c.pinned = undefined;
    this.counts.droppedBatches += gone.length;
    this.counts.droppedResults += gone.reduce((n, e) => n + e.results, 0);
  }

  private async enforceBounds(): Promise<void> {
    const oldestKeptMs = this.now() - this.maxAgeMs;
    const gone: Entry[] = [];
    let bytes = this.totalBytes;
    let byAge = 0;
    let left = this.entries.length - this.head;
    for (let i = this.head; i < this.entries.length && left > 1; i++) {
      const e = this.entries[i]!;
      const old = e.createdAtMs < oldestKeptMs;
      if (bytes <= this.maxBytes && !old) break;
      if (this.isPinned(e.seq)) continue;
      gone.push(e);
      if (old) byAge++;
      bytes -= e.bytes;
      left--;
    }
    if (gone.length === 0) return;
    const results = gone.reduce((n, e) => n + e.results, 0);
    await this.discard(gone);
    this.log.warn(
      {
        batches: gone.length,
        results,
        byAge,
        firstSeq: gone[0]!.seq,
        lastSeq: gone[gone.length - 1]!.seq,
        maxBytes: this.maxBytes,
        maxAgeMs: this.maxAgeMs,
        totalDroppedBatches: this.counts.droppedBatches,
      },
      'spool full: oldest report batches dropped (declared to the collector in the next batch)',
    );
  }

  private async copyToRejected(e: Entry): Promise<void> {
    try {
      await copyFile(join(this.dir, e.file), join(this.rejectedDir, e.file));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const files = (await readdir(this.rejectedDir)).filter((f) => batchFileRe.test(f)).sort();
    for (const f of files.slice(0, Math.max(0, files.length - this.maxRejected)))
      await rm(join(this.rejectedDir, f), { force: true });
  }

  private async recover(names: readonly string[]): Promise<void> {
    const found: Entry[] = [];
    for (const name of await readdir(this.dir)) {
      if (name.endsWith('.tmp')) {
        // A write torn by a crash: never renamed, so never acknowledged to anyone.
        this.log.warn({ file: name }, 'removing an unfinished spool file');
        await rm(join(this.dir, name), { force: true });
        continue;
      }
      const m = batchFileRe.exec(name);
      if (m === null) continue;
      const size = (await stat(join(this.dir, name))).size;
      found.push({
        seq: Number(m[1]),
        createdAtMs: Number(m[2]),
        results: Number(m[3]),
        bytes: size,
        file: name,
      });
    }
    found.sort((a, b) => a.seq - b.seq);
    this.nextSeq = Math.max(1, await this.savedNextSeq(), (found.at(-1)?.seq ?? 0) + 1);

    const foundSeqs = new Set(found.map((e) => e.seq));
    this.losses = await loadLosses(
      this.dir,
      this.log,
      (before) => foundSeqs.has(before) || before >= this.nextSeq,
    );
    // Complete a drop a crash interrupted: the files of lost batches are gone by intent.
    const kept: Entry[] = [];
    for (const e of found) {
      if (this.losses.has(e.seq)) await rm(join(this.dir, e.file), { force: true });
      else kept.push(e);
    }
    this.entries = kept;
    this.head = 0;
    this.totalBytes = kept.reduce((n, e) => n + e.bytes, 0);

    // A destination not saved yet (the first start, an added collector, a spool of a
    // version with one collector) starts at the oldest batch or loss the spool still has.
    const saved = await loadCursors(this.dir, this.log);
    const start = Math.min(kept[0]?.seq ?? this.nextSeq, ...this.losses.keys(), this.nextSeq) - 1;
    for (const name of names)
      this.makeCursor(name, Math.min(saved.get(name) ?? start, this.nextSeq - 1));
    await this.saveCursors();
    await this.release();

    const empty = kept.filter((e) => e.bytes === 0);
    if (empty.length > 0) {
      this.log.error({ seqs: empty.map((e) => e.seq) }, 'empty spool files; counted as dropped');
      await this.discard(empty);
    }
    await saveLosses(this.dir, this.losses);
    await this.enforceBounds();
    if (kept.length > 0) {
      this.log.info(
        {
          batches: this.entries.length - this.head,
          bytes: this.totalBytes,
          firstSeq: this.entries[this.head]?.seq,
          nextSeq: this.nextSeq,
          cursors: Object.fromEntries([...this.cursors].map(([n, c]) => [n, c.acked])),
        },
        'spooled report batches recovered',
      );
    }
  }

  private async savedNextSeq(): Promise<number> {
    try {
      const saved = Number((await readFile(join(this.dir, 'next-seq'), 'utf8')).trim());
      if (Number.isSafeInteger(saved) && saved >= 1) return saved;
      this.log.error({ value: saved }, 'spool next-seq unreadable; deriving it from the batches');
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return 0;
  }

  private async store(draft: BatchDraft): Promise<number> {
    const seq = this.nextSeq;
    const batch: ReportBatch = { ...draft, agentId: this.agentId, seq };
    const json = JSON.stringify(batch);
    const { results, summaries } = draft;
    if (Buffer.byteLength(json) > this.maxBatchBytes && results.length + summaries.length > 1) {
      const r = Math.ceil(results.length / 2);
      const s = Math.ceil(summaries.length / 2);
      await this.store({
        ...draft,
        results: results.slice(0, r),
        summaries: summaries.slice(0, s),
      });
      return this.store({ ...draft, results: results.slice(r), summaries: summaries.slice(s) });
    }
    const body = await gzipAsync(json);
    const file = batchFileName(seq, draft.createdAtMs, results.length);
    await writeFileAtomic(join(this.dir, file), body, false);
    this.nextSeq = seq + 1;
    await writeFileAtomic(join(this.dir, 'next-seq'), `${this.nextSeq}\n`, false);
    await syncDir(this.dir);
    this.entries.push({
      seq,
      createdAtMs: draft.createdAtMs,
      results: results.length,
      bytes: body.length,
      file,
    });
    this.totalBytes += body.length;
    this.counts.appended++;
    return seq;
  }
}

async function loadAgentId(stateDir: string, log: Logger): Promise<string> {
  const path = join(stateDir, 'agent-id');
  try {
    const id = (await readFile(path, 'utf8')).trim();
    if (agentIdRe.test(id)) return id;
    log.error({ file: path }, 'agent-id file is not a valid id; generating a new one');
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  // 16 random bytes: 22 url-safe characters.
  const id = randomBytes(16).toString('base64url');
  await writeFileAtomic(path, `${id}\n`);
  log.info({ agentId: id }, 'generated a new agent id');
  return id;
}
