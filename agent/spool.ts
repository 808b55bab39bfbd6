import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { tightenModes } from '../lib/file-modes.js';
import type { ReportBatch } from '../wire/report.js';
import { syncDir, writeFileAtomic } from './atomic-file.js';
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
}

/** Counters since open, and the spool's current size. */
export interface SpoolStats {
  /** Batches waiting for the collector. */
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
}

interface Entry {
  readonly seq: number;
  readonly createdAtMs: number;
  readonly results: number;
  readonly bytes: number;
  readonly file: string;
}

/** `dropped.json`: per batch seq, the losses to declare in it. */
type Declarations = Map<number, { batches: number; results: number }>;

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

/**
 * The agent's durable, ordered queue of report batches: `<stateDir>/spool/`, one gzip'd
 * JSON file per batch named by its zero-padded seq, written tmp + fsync + rename. The next
 * seq and the agent id (`<stateDir>/agent-id`, generated once) survive restarts, so a batch
 * keeps its seq across them and the collector can deduplicate retries.
 *
 * Bounded by bytes and by age: over a bound, the OLDEST batches go, and the loss is
 * declared in `dropped` of the batch right after them (the collector accepts a seq gap only
 * when it is declared), counted and logged — never silent. Declarations live in
 * `spool/dropped.json`, written before the files are removed, so a crash in between is
 * completed on the next open.
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
  private declarations: Declarations = new Map();
  // The seq last handed out by peek(): it may be on the wire, so the bounds leave it alone.
  private pinned: number | undefined;
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
    options: SpoolOptions,
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
    const dir = join(options.stateDir, 'spool');
    await mkdir(join(dir, 'rejected'), { recursive: true, mode: 0o700 });
    // A state dir left wider (made by hand, or by an older version) holds the agent's
    // credential and id: it is tightened, with a warning naming each change.
    for (const note of tightenModes(options.stateDir, 'state directory')) {
      options.log.warn({ path: note.path, errorCode: note.errorCode }, note.message);
    }
    const agentId = await loadAgentId(options.stateDir, options.log);
    const spool = new Spool(options, agentId);
    await spool.recover();
    return spool;
  }

  /** Current counters. */
  stats(): SpoolStats {
    return {
      batches: this.entries.length - this.head,
      bytes: this.totalBytes,
      nextSeq: this.nextSeq,
      ...this.counts,
      oldestCreatedAtMs: this.entries[this.head]?.createdAtMs,
    };
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

  /** The oldest batch not yet acknowledged, or undefined when the spool is empty. */
  peek(): Promise<SpooledBatch | undefined> {
    return this.serial(async () => {
      for (;;) {
        const e = this.entries[this.head];
        if (e === undefined) return undefined;
        let body: Buffer;
        try {
          body = await readFile(join(this.dir, e.file));
        } catch (err) {
          if (!isNotFound(err)) throw err;
          this.log.error(
            { seq: e.seq, file: e.file },
            'spooled batch vanished; counted as dropped',
          );
          await this.discard([e], 'missing');
          continue;
        }
        const declared = this.declarations.get(e.seq);
        if (declared !== undefined) {
          try {
            const batch = JSON.parse((await gunzipAsync(body)).toString()) as ReportBatch;
            batch.dropped = { ...declared };
            body = await gzipAsync(JSON.stringify(batch));
          } catch (err) {
            this.log.error({ seq: e.seq, err }, 'spooled batch unreadable; moved to rejected/');
            await this.moveToRejected(e);
            await this.discard([e], 'unreadable');
            continue;
          }
        }
        this.pinned = e.seq;
        return {
          seq: e.seq,
          createdAtMs: e.createdAtMs,
          results: e.results,
          body,
          ...(declared === undefined ? {} : { dropped: { ...declared } }),
        };
      }
    });
  }

  /** The collector has every batch up to `seq`: they leave the spool. */
  ack(seq: number): Promise<void> {
    return this.serial(async () => {
      let changed = false;
      for (const b of [...this.declarations.keys()]) {
        if (b <= seq) {
          this.declarations.delete(b);
          changed = true;
        }
      }
      if (changed) await this.saveDeclarations();
      const gone: Entry[] = [];
      while (this.head < this.entries.length && this.entries[this.head]!.seq <= seq) {
        gone.push(this.entries[this.head]!);
        this.head++;
      }
      this.compact();
      for (const e of gone) {
        this.totalBytes -= e.bytes;
        await rm(join(this.dir, e.file), { force: true });
      }
      this.counts.acked += gone.length;
      if (this.pinned !== undefined && this.pinned <= seq) this.pinned = undefined;
    });
  }

  /**
   * The collector refused batch `seq` as bad (400/413): it moves to `spool/rejected/` and
   * is declared as dropped in the next batch, so the sequence goes on without it.
   */
  reject(seq: number, reason: string): Promise<void> {
    return this.serial(async () => {
      const e = this.entries.slice(this.head).find((x) => x.seq === seq);
      if (e === undefined) return;
      this.log.error(
        { seq, results: e.results, reason, file: join(this.rejectedDir, e.file) },
        'report batch rejected by the collector; moved aside and declared as dropped',
      );
      this.counts.rejectedBatches++;
      await this.moveToRejected(e);
      await this.discard([e], 'rejected');
    });
  }

  /**
   * The collector expects an earlier seq than the oldest batch spooled (it lost state, or a
   * batch was lost): declare in batch `beforeSeq` that `batches` batches before it are gone.
   * The declared results are those the spool knows it lost (possibly 0).
   */
  declareGap(beforeSeq: number, batches: number): Promise<void> {
    return this.serial(async () => {
      const d = this.declarations.get(beforeSeq);
      this.declarations.set(beforeSeq, { batches, results: d?.results ?? 0 });
      await this.saveDeclarations();
    });
  }

  /** Waits for every operation queued so far. */
  async settle(): Promise<void> {
    await this.serial(async () => undefined);
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

  /** The seq that follows `seq` among batches kept (or the next to be appended). */
  private nextKept(seq: number, dropping: ReadonlySet<number>): number {
    for (let i = this.head; i < this.entries.length; i++) {
      const s = this.entries[i]!.seq;
      if (s > seq && !dropping.has(s)) return s;
    }
    return this.nextSeq;
  }

  /**
   * Removes batches from the index and the disk, declaring them in the batch after each
   * (moving any declaration they carried along). Declarations are saved first: a crash
   * after that is completed by recover().
   */
  private async discard(gone: readonly Entry[], reason: string): Promise<void> {
    if (gone.length === 0) return;
    const dropping = new Set(gone.map((e) => e.seq));
    for (const e of [...gone].sort((a, b) => a.seq - b.seq)) {
      const into = this.nextKept(e.seq, dropping);
      const carried = this.declarations.get(e.seq);
      this.declarations.delete(e.seq);
      const d = this.declarations.get(into) ?? { batches: 0, results: 0 };
      d.batches += 1 + (carried?.batches ?? 0);
      d.results += e.results + (carried?.results ?? 0);
      this.declarations.set(into, d);
    }
    await this.saveDeclarations();
    const kept = this.entries.slice(this.head).filter((e) => !dropping.has(e.seq));
    this.entries = kept;
    this.head = 0;
    for (const e of gone) {
      this.totalBytes -= e.bytes;
      await rm(join(this.dir, e.file), { force: true });
    }
    if (this.pinned !== undefined && dropping.has(this.pinned)) this.pinned = undefined;
    if (reason !== 'rejected') {
      const results = gone.reduce((n, e) => n + e.results, 0);
      this.counts.droppedBatches += gone.length;
      this.counts.droppedResults += results;
    }
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
      if (e.seq === this.pinned) continue;
      gone.push(e);
      if (old) byAge++;
      bytes -= e.bytes;
      left--;
    }
    if (gone.length === 0) return;
    const results = gone.reduce((n, e) => n + e.results, 0);
    await this.discard(gone, 'bound');
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

  private async moveToRejected(e: Entry): Promise<void> {
    try {
      await rename(join(this.dir, e.file), join(this.rejectedDir, e.file));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const files = (await readdir(this.rejectedDir)).filter((f) => batchFileRe.test(f)).sort();
    for (const f of files.slice(0, Math.max(0, files.length - this.maxRejected)))
      await rm(join(this.rejectedDir, f), { force: true });
  }

  private async saveDeclarations(): Promise<void> {
    const path = join(this.dir, 'dropped.json');
    if (this.declarations.size === 0) {
      await rm(path, { force: true });
      return;
    }
    const list = [...this.declarations]
      .sort((a, b) => a[0] - b[0])
      .map(([beforeSeq, d]) => ({ beforeSeq, ...d }));
    await writeFileAtomic(path, JSON.stringify(list));
  }

  private async recover(): Promise<void> {
    const names = await readdir(this.dir);
    const found: Entry[] = [];
    for (const name of names) {
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

    let savedNext = 0;
    try {
      savedNext = Number((await readFile(join(this.dir, 'next-seq'), 'utf8')).trim());
      if (!Number.isSafeInteger(savedNext) || savedNext < 1) {
        this.log.error(
          { value: savedNext },
          'spool next-seq unreadable; deriving it from the batches',
        );
        savedNext = 0;
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.nextSeq = Math.max(1, savedNext, (found[found.length - 1]?.seq ?? 0) + 1);

    this.declarations = await this.loadDeclarations();
    // Complete a drop a crash interrupted: the files a declaration covers are gone by intent.
    const covered = new Set<number>();
    for (const [before, d] of this.declarations)
      for (let s = before - d.batches; s < before; s++) covered.add(s);
    const kept: Entry[] = [];
    for (const e of found) {
      if (covered.has(e.seq)) await rm(join(this.dir, e.file), { force: true });
      else kept.push(e);
    }
    const keptSeqs = new Set(kept.map((e) => e.seq));
    for (const before of [...this.declarations.keys()]) {
      if (!keptSeqs.has(before) && before !== this.nextSeq && before < this.nextSeq) {
        // Its batch was acknowledged before the declaration could be cleared.
        this.declarations.delete(before);
      }
    }

    this.entries = kept;
    this.head = 0;
    this.totalBytes = kept.reduce((n, e) => n + e.bytes, 0);
    const empty = kept.filter((e) => e.bytes === 0);
    if (empty.length > 0) {
      this.log.error({ seqs: empty.map((e) => e.seq) }, 'empty spool files; counted as dropped');
      await this.discard(empty, 'unreadable');
    }
    await this.saveDeclarations();
    await this.enforceBounds();
    if (kept.length > 0) {
      this.log.info(
        {
          batches: this.entries.length,
          bytes: this.totalBytes,
          firstSeq: this.entries[0]?.seq,
          nextSeq: this.nextSeq,
        },
        'spooled report batches recovered',
      );
    }
  }

  private async loadDeclarations(): Promise<Declarations> {
    const out: Declarations = new Map();
    let text: string;
    try {
      text = await readFile(join(this.dir, 'dropped.json'), 'utf8');
    } catch (err) {
      if (isNotFound(err)) return out;
      throw err;
    }
    try {
      const list = JSON.parse(text) as unknown;
      if (!Array.isArray(list)) throw new Error('not a list');
      for (const item of list as Array<Record<string, unknown>>) {
        const { beforeSeq, batches, results } = item;
        if (
          Number.isSafeInteger(beforeSeq) &&
          Number.isSafeInteger(batches) &&
          Number.isSafeInteger(results) &&
          (batches as number) > 0
        )
          out.set(beforeSeq as number, { batches: batches as number, results: results as number });
      }
    } catch (err) {
      this.log.error({ err }, 'spool dropped.json unreadable; earlier drops will not be declared');
    }
    return out;
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
