import {
  appendFileSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { join } from 'node:path';
import type { ProbeResult } from '../wire/result.js';
import type { Logger } from '../lib/logger.js';

/** What the reporter (and this journal) needs from a target: its plan name and kind. */
export interface ReportedTarget {
  readonly name: string;
  readonly kind: string;
}

/** One journaled result: the target it belongs to and the result itself. */
export interface JournalEntry {
  readonly target: ReportedTarget;
  readonly result: ProbeResult;
}

const openName = 'open.jsonl';
const closedRe = /^closed-(\d+)-(\d+)\.jsonl$/;

/**
 * The open report period on disk, so a SIGKILL does not lose it: every result the reporter
 * observes is appended (one JSON line, a plain write: the page cache survives the death of
 * the process; a host crash may still lose the last lines) to `<stateDir>/journal/open.jsonl`.
 * When the reporter closes a batch the file is renamed `closed-<createdAtMs>-<n>.jsonl`
 * before the batch goes to the spool, and removed once the spool holds it. At the next
 * start, `recover()` returns what no spooled batch carries: the open file, and a closed file
 * whose batch never reached the spool (no spool file with its createdAtMs).
 */
export class Journal {
  private readonly dir: string;
  private fd: number | undefined;
  private n = 0;
  private failed = false;

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.dir = join(stateDir, 'journal');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Appends one result (hot path). A write error is logged once; the journal then stays off. */
  record(result: ProbeResult, target: ReportedTarget): void {
    if (this.failed) return;
    try {
      this.fd ??= openSync(join(this.dir, openName), 'a', 0o600);
      appendFileSync(this.fd, `${JSON.stringify({ t: target.name, k: target.kind, r: result })}\n`);
    } catch (err) {
      this.failed = true;
      this.log.error(
        { err, dir: this.dir },
        'report journal unwritable: a crash may lose the open period',
      );
    }
  }

  /**
   * The batch of `createdAtMs` is closing: the results journaled so far belong to it.
   * Returns the release function to call once the spool holds the batch.
   */
  close(createdAtMs: number): () => void {
    if (this.fd === undefined) return () => undefined;
    const name = `closed-${createdAtMs}-${this.n++}.jsonl`;
    try {
      closeSync(this.fd);
      this.fd = undefined;
      renameSync(join(this.dir, openName), join(this.dir, name));
    } catch (err) {
      this.log.error({ err }, 'report journal rotation failed');
      return () => undefined;
    }
    return () => rmSync(join(this.dir, name), { force: true });
  }

  /** Closes the file (a clean stop: the reporter cut everything into the spool). */
  shutdown(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    rmSync(join(this.dir, openName), { force: true });
  }

  /**
   * What a killed run left: the entries of every journal file whose batch is not in the
   * spool (`spooledCreatedAtMs`: the createdAtMs of the spooled batches), in order; the
   * files are removed by the returned `done()` once the caller has spooled them.
   */
  static recover(
    stateDir: string,
    spooledCreatedAtMs: ReadonlySet<number>,
    log: Logger,
  ): { entries: JournalEntry[]; done: () => void } {
    const dir = join(stateDir, 'journal');
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return { entries: [], done: () => undefined };
    }
    const files: { name: string; order: [number, number] }[] = [];
    for (const name of names) {
      const m = closedRe.exec(name);
      if (m !== null) {
        const at = Number(m[1]);
        if (spooledCreatedAtMs.has(at)) {
          // Spooled before the kill, only the clean-up was missed.
          rmSync(join(dir, name), { force: true });
          continue;
        }
        files.push({ name, order: [at, Number(m[2])] });
      } else if (name === openName) files.push({ name, order: [Infinity, 0] });
    }
    files.sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1]);
    const entries: JournalEntry[] = [];
    for (const f of files) {
      const text = readFileSync(join(dir, f.name), 'utf8');
      for (const line of text.split('\n')) {
        if (line === '') continue;
        try {
          const o = JSON.parse(line) as { t: string; k: string; r: ProbeResult };
          if (typeof o.t === 'string' && typeof o.k === 'string' && typeof o.r === 'object')
            entries.push({ target: { name: o.t, kind: o.k }, result: o.r });
        } catch {
          // The last line of a killed write may be torn.
          log.warn({ file: f.name }, 'torn line in the report journal skipped');
        }
      }
    }
    return {
      entries,
      done: () => {
        for (const f of files) rmSync(join(dir, f.name), { force: true });
      },
    };
  }
}
