import { Journal } from './journal.js';
import type { Logger } from '../lib/logger.js';
import { Reporter } from './reporter.js';
import type { Spool } from './spool.js';

/** Who replays: the agent's name and labels, and where its journal is. */
export interface JournalReplayOptions {
  readonly stateDir: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly log: Logger;
}

/**
 * What a SIGKILLed run journaled but never spooled: replayed into one batch (its failures
 * in full) before anything new is reported. Summaries of the killed period cover the
 * results journaled since its last batch; ok results before an early flush are not in them.
 * Returns how many results were replayed (0 when there were none, or when the batch could
 * not be spooled: the journal is then kept for the next start).
 */
export async function replayJournal(spool: Spool, options: JournalReplayOptions): Promise<number> {
  const { log } = options;
  const recovered = Journal.recover(options.stateDir, new Set(spool.createdAtMs()), log);
  const { done } = recovered;
  // Results of another name (the state dir reused under a new --name) would be refused.
  const entries = recovered.entries.filter((e) => e.result.agent === options.agent);
  if (entries.length < recovered.entries.length) {
    log.warn(
      { results: recovered.entries.length - entries.length },
      'journaled results of another agent name not replayed',
    );
  }
  if (entries.length === 0) {
    done();
    return 0;
  }
  let clockMs = Math.min(...entries.map((e) => e.result.startedAtMs));
  const endMs = Math.max(
    ...entries.map((e) => e.result.startedAtMs + Math.ceil(e.result.timings.totalMs)),
  );
  const replay = new Reporter({
    agent: options.agent,
    labels: options.labels,
    log,
    earlyFlushMs: false,
    // Every result after a path's first failure goes in full: it is all there is of them.
    confirmResults: Number.MAX_SAFE_INTEGER,
    now: () => clockMs,
    sink: { append: (draft) => spool.append(draft) },
  });
  for (const e of entries) replay.observe(e.result, e.target);
  clockMs = endMs;
  await replay.cut();
  if (replay.stats().appendFailures > 0) return 0; // kept for the next start
  done();
  log.warn(
    { results: entries.length, failures: entries.filter((e) => e.result.class !== 'ok').length },
    'the previous run was killed: its open report period replayed from the journal',
  );
  return entries.length;
}
