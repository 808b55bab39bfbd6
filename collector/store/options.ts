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
