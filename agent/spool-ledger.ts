import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../lib/logger.js';
import { writeFileAtomic } from './atomic-file.js';

/*
 * The spool's two small ledgers beside the batches:
 * - `dropped.json`: every batch lost before all destinations had it (a bound, an unreadable
 *   file, a rejection), with its result count, so each destination declares exactly the
 *   batches it is missing. Written before the batch files go, so a crash in between is
 *   completed at the next open.
 * - `cursors.json`: per destination, the highest seq it acknowledged, so a restart resumes
 *   each destination where it was (a stale value only resends what it already has: the
 *   collector deduplicates on seq).
 */

/** Lost batches: seq → results in it. */
export type Losses = Map<number, number>;

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * Reads `dropped.json`: runs of consecutive lost seqs, `{ fromSeq, toSeq, results }`, or the
 * format of versions with one collector, `{ beforeSeq, batches, results }` (a declaration
 * whose carrier batch is neither kept nor still to come was acknowledged before it could be
 * cleared, and is ignored). A run's results go on its first seq: a destination that had part
 * of a run before it was lost is told the run's results whole after a restart (its batch
 * count stays exact).
 */
export async function loadLosses(
  dir: string,
  log: Logger,
  carrierKept: (beforeSeq: number) => boolean,
): Promise<Losses> {
  const out: Losses = new Map();
  let list: unknown;
  try {
    list = await readJson(join(dir, 'dropped.json'));
  } catch (err) {
    log.error({ err }, 'spool dropped.json unreadable; earlier drops will not be declared');
    return out;
  }
  if (list === undefined) return out;
  if (!Array.isArray(list)) {
    log.error('spool dropped.json is not a list; earlier drops will not be declared');
    return out;
  }
  const int = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
  for (const item of list as Array<Record<string, unknown>>) {
    const { fromSeq, toSeq, beforeSeq, batches, results } = item;
    if (int(fromSeq) && int(toSeq) && int(results) && fromSeq >= 1 && toSeq >= fromSeq) {
      for (let s = fromSeq; s <= toSeq; s++) out.set(s, s === fromSeq ? results : 0);
    } else if (int(beforeSeq) && int(batches) && int(results) && batches > 0) {
      if (!carrierKept(beforeSeq)) continue;
      for (let s = beforeSeq - batches; s < beforeSeq; s++)
        if (s >= 1) out.set(s, s === beforeSeq - batches ? results : 0);
    }
  }
  return out;
}

export async function saveLosses(dir: string, losses: Losses): Promise<void> {
  const path = join(dir, 'dropped.json');
  if (losses.size === 0) {
    await rm(path, { force: true });
    return;
  }
  // Runs of consecutive seqs: a spool at its bound behind a collector that is away loses a
  // batch per append, and the file stays a line per run.
  const list: { fromSeq: number; toSeq: number; results: number }[] = [];
  for (const [seq, results] of [...losses].sort((a, b) => a[0] - b[0])) {
    const last = list.at(-1);
    if (last !== undefined && last.toSeq === seq - 1) {
      last.toSeq = seq;
      last.results += results;
    } else list.push({ fromSeq: seq, toSeq: seq, results });
  }
  await writeFileAtomic(path, JSON.stringify(list));
}

/** Reads `cursors.json`: destination name → highest seq acknowledged. */
export async function loadCursors(dir: string, log: Logger): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let saved: unknown;
  try {
    saved = await readJson(join(dir, 'cursors.json'));
  } catch (err) {
    log.error(
      { err },
      'spool cursors.json unreadable; every destination resumes at the oldest batch',
    );
    return out;
  }
  if (typeof saved !== 'object' || saved === null) return out;
  for (const [name, acked] of Object.entries(saved))
    if (Number.isSafeInteger(acked) && (acked as number) >= 0) out.set(name, acked as number);
  return out;
}

/**
 * Writes `cursors.json` (tmp + rename, no fsync: written at every acknowledgement, and a
 * value a crash leaves stale only makes a collector get again what it already has).
 */
export async function saveCursors(dir: string, acked: ReadonlyMap<string, number>): Promise<void> {
  const path = join(dir, 'cursors.json');
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(Object.fromEntries(acked)), { mode: 0o600 });
  await rename(tmp, path);
}
