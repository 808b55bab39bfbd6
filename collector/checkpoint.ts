import type { PathSummary } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';

/**
 * What a restart rebuilds the path matrix from: the agents and batches the store gives back
 * (collector/paths.ts `RestoreSource`). A home of its own so the store and the matrix do not
 * import each other.
 */

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
