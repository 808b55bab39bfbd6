import type { Statements } from './statements.js';

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

/**
 * The sinks' outbox (table `outbox`): deliveries that stay until delivered or declared dead,
 * across restarts. The caller (Store) guards each call.
 */
export class OutboxTable {
  constructor(private readonly stmt: Statements) {}

  /** Queues a delivery for a sink; returns its id. */
  add(sink: string, payload: unknown, nowMs: number): number {
    return Number(
      this.stmt.outboxAdd.run(sink, nowMs, nowMs, JSON.stringify(payload)).lastInsertRowid,
    );
  }

  /** A sink's pending deliveries (not dead), oldest first. */
  pending(sink: string, limit: number): OutboxEntry[] {
    return (this.stmt.outboxPending.all(sink, limit) as OutboxRow[]).map(toOutboxEntry);
  }

  /** Delivered: forgotten. */
  delivered(id: number): void {
    this.stmt.outboxDelete.run(id);
  }

  /** A failed attempt: tried again at `nextAttemptMs`. */
  retry(id: number, nextAttemptMs: number, error: string): void {
    this.stmt.outboxRetry.run(nextAttemptMs, error.slice(0, 2000), id);
  }

  /** Given up on: kept as a dead letter with the reason. */
  dead(id: number, nowMs: number, error: string): void {
    this.stmt.outboxDead.run(nowMs, error.slice(0, 2000), id);
  }

  /** Dead letters, newest first. */
  deadLetters(limit: number): OutboxEntry[] {
    return (this.stmt.deadLetters.all(limit) as OutboxRow[]).map(toOutboxEntry);
  }
}
