import type { SpoolCursor, SpoolCursorStats } from './spool.js';

/*
 * A place the agent's report batches go. The agent keeps one spool; each destination reads
 * it through its own cursor, at its own pace, so one that is down or cut off delays no other.
 * A collector is one kind (collector-channel.ts); a message-bus publisher would be another:
 * it needs only this interface and a line where the link builds its destinations.
 */

/** What a destination is given to deliver from. */
export interface DeliverySource {
  /** Its cursor over the agent's spool: peek, ack, reject, declareGap. */
  readonly cursor: SpoolCursor;
  /** The highest seq spooled so far (an ack above it is implausible). */
  highestSpooled(): number;
  /** Calls `listener` after every append to the spool; returns the unsubscribe function. */
  onAppend(listener: () => void): () => void;
}

/** Delivery counters of one destination since start. */
export interface DestinationStats {
  /** Its spool cursor's name. */
  readonly name: string;
  /** Where it is, for humans and the `collector` label of the agent's metrics (a URL). */
  readonly label: string;
  readonly posts: number;
  readonly accepted: number;
  readonly duplicates: number;
  readonly gaps: number;
  readonly rejected: number;
  readonly implausibleAcks: number;
  readonly seqRefusals: number;
  readonly retries: number;
  /** Highest seq the destination acknowledged. */
  readonly acceptedSeq: number;
  /** Whether the last exchange with it succeeded. */
  readonly connected: boolean;
  /** Where its credential came from (none, saved, enrolled, direct). */
  readonly enrolState: string;
  /** Its position in the spool. */
  readonly spool: SpoolCursorStats | undefined;
}

/** A report destination with its own cursor over the spool. */
export interface ReportDestination {
  /** The spool cursor's name: unique among the agent's destinations, stable across restarts. */
  readonly name: string;
  /** Starts delivering, in seq order, until stop(); returns at once. */
  deliver(source: DeliverySource): void;
  /** Resolves when its cursor has nothing left to send (at once when it is empty). */
  drained(): Promise<void>;
  /** Whether the last exchange succeeded (a stop waits for the drain only of those). */
  connected(): boolean;
  /** Aborts every request and ends its loops. */
  stop(): Promise<void>;
  stats(): DestinationStats;
}
