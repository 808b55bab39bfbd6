import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { sleepUnlessAborted } from '../../lib/duration.js';
import type { AlertBatch, AlertNotice, DeliveryTarget, SendOutcome } from './types.js';

/**
 * Fans alert batches out to delivery targets, each with its own queue and worker, so a
 * receiver that is down or slow never holds up another one nor the caller (`dispatch`
 * returns at once). A failed attempt is retried with exponential backoff and full jitter,
 * a bounded number of times; what still could not be delivered — or is refused outright
 * (a 4xx), or is left when the collector stops — is appended to the dead-letter file as
 * one JSON line with the reason. Nothing is dropped without a record.
 *
 * With a `journal` (the collector's store outbox), every notify message is written there
 * when queued and removed once delivered: one still waiting when the collector stops or
 * crashes is sent by the next dispatcher on the same store, first. State messages are not
 * journalled: the restarted engine sends the current state anyway.
 *
 * A `state` target (Alertmanager) keeps only the newest version of each alert while it
 * waits: a re-send supersedes the one before, so a long outage costs one body per alert,
 * not one per minute. A `notify` target (webhook) gets every message, in order, up to
 * `maxQueue` waiting; past that the oldest goes to the dead-letter file.
 */

/** Retry policy of one delivery. */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 5). */
  readonly maxAttempts: number;
  /** Backoff ceiling before the first retry (default 500 ms); doubles per retry. */
  readonly initialBackoffMs: number;
  /** Largest backoff ceiling (default 30 s). */
  readonly maxBackoffMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  maxAttempts: 5,
  initialBackoffMs: 500,
  maxBackoffMs: 30_000,
};

/** Options of {@link AlertDispatcher}. */
export interface DispatcherOptions {
  readonly targets: readonly DeliveryTarget[];
  /** JSON-lines file of undeliverable messages (created with its directory when needed). */
  readonly deadLetterFile: string;
  /** Where notify messages wait across restarts (see the file comment); Store fits. */
  readonly journal?: DeliveryJournal;
  readonly retry?: Partial<RetryPolicy>;
  /** Most messages waiting per notify target (default 1000). */
  readonly maxQueue?: number;
  /** Uniform [0, 1) for the jitter (default Math.random); tests pass a fixed one. */
  readonly random?: () => number;
  /** Delivery failures and dead letters are logged here; silent when absent. */
  readonly log?: Logger;
}

/** Counters of one target, as `faultline_alerts_*{sink}` exposes them. */
export interface TargetStats {
  readonly sink: string;
  readonly type: string;
  /** Deliveries the receiver accepted (2xx). */
  readonly sent: number;
  /** Delivery attempts that failed (each retry that fails counts). */
  readonly failed: number;
  /** Attempts after the first. */
  readonly retries: number;
  /** Deliveries given up and written to the dead-letter file. */
  readonly deadLetters: number;
  /** Messages (notify) or alerts (state) waiting, the one in flight included. */
  readonly queued: number;
}

/**
 * A durable queue of deliveries per sink, such as collector/store.ts's outbox: a message is
 * added when queued and stays until delivered or dead. Calls may throw (a failing store):
 * the dispatcher then goes on in memory and logs it.
 */
export interface DeliveryJournal {
  outboxAdd(sink: string, payload: unknown, nowMs: number): number;
  outboxPending(
    sink: string,
    limit?: number,
  ): readonly { readonly id: number; readonly payload: unknown }[];
  outboxDelivered(id: number): void;
  outboxRetry(id: number, nextAttemptMs: number, error: string): void;
  outboxDead(id: number, nowMs: number, error: string): void;
}

/** A notify message in the queue; `id` is its journal row when journalled. */
interface Queued {
  readonly body: string;
  readonly id?: number;
}

/** One line of the dead-letter file. */
export interface DeadLetter {
  /** ISO time it was given up. */
  readonly at: string;
  readonly sink: string;
  readonly type: string;
  readonly reason: string;
  readonly attempts: number;
  /** The body that was not delivered (parsed JSON). */
  readonly body: unknown;
}

const defaultMaxQueue = 1000;

interface Counters {
  sent: number;
  failed: number;
  retries: number;
  deadLetters: number;
}

class TargetWorker {
  readonly counters: Counters = { sent: 0, failed: 0, retries: 0, deadLetters: 0 };
  /** state mode: newest version of each alert by fingerprint. */
  private readonly latest = new Map<string, AlertNotice>();
  /** state mode: the newest batch, for encoders that read more than the alerts. */
  private lastBatch: AlertBatch | undefined;
  /** notify mode: encoded bodies in order. */
  private readonly fifo: Queued[] = [];
  private inFlight = 0;
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly target: DeliveryTarget,
    private readonly owner: AlertDispatcher,
  ) {}

  queued(): number {
    return this.latest.size + this.fifo.length + this.inFlight;
  }

  enqueue(batch: AlertBatch): void {
    if (this.target.mode === 'state') {
      if (batch.alerts.length === 0) return;
      this.lastBatch = batch;
      // A resolve is kept even when a newer firing version of the same labels is not yet
      // out: both are states Alertmanager should pass through, in order, but only the last
      // matters for what it shows, which is what it gets.
      for (const a of batch.alerts) this.latest.set(a.fingerprint, a);
    } else {
      if (batch.changes.length === 0) return;
      const body = this.target.encode(batch.changes, batch);
      const id = this.owner.journalCall((j) => j.outboxAdd(this.target.name, { body }, Date.now()));
      this.fifo.push(id === undefined ? { body } : { body, id });
      while (this.fifo.length > this.owner.maxQueue) {
        const dropped = this.fifo.shift();
        if (dropped === undefined) break;
        const why = 'queue full: the receiver is too far behind';
        this.owner.deadLetter(this, dropped.body, why, 0, dropped.id);
      }
    }
    if (!this.running) void this.run();
  }

  /** Queues journalled messages from before a restart, ahead of anything new. */
  requeue(items: readonly Queued[]): void {
    if (items.length === 0) return;
    this.fifo.unshift(...items);
    if (!this.running) void this.run();
  }

  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Everything still waiting at shutdown. */
  drainLeft(): Queued[] {
    const left = [...this.fifo];
    this.fifo.length = 0;
    if (this.latest.size > 0) {
      left.push({ body: this.encodeState([...this.latest.values()]) });
      this.latest.clear();
    }
    return left;
  }

  private encodeState(alerts: AlertNotice[]): string {
    const batch = this.lastBatch;
    if (batch === undefined) throw new Error('a state target encodes only after a batch');
    return this.target.encode(alerts, batch);
  }

  private next(): (Queued & { refresh?: () => string }) | undefined {
    if (this.target.mode === 'notify') return this.fifo.shift();
    if (this.latest.size === 0) return undefined;
    const inFlight = new Map(this.latest);
    this.latest.clear();
    return {
      body: this.encodeState([...inFlight.values()]),
      // Before a retry: fold in newer versions that arrived meanwhile.
      refresh: () => {
        for (const [fp, a] of this.latest) inFlight.set(fp, a);
        this.latest.clear();
        return this.encodeState([...inFlight.values()]);
      },
    };
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (let item = this.next(); item !== undefined; item = this.next()) {
        if (this.owner.stopping.aborted) {
          this.owner.leftOver(this, item, 'collector stopped before delivery', 0);
          continue;
        }
        this.inFlight = 1;
        await this.deliver(item, item.refresh);
        this.inFlight = 0;
      }
    } finally {
      this.inFlight = 0;
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async deliver(item: Queued, refresh: (() => string) | undefined): Promise<void> {
    const policy = this.owner.retry;
    const id = item.id;
    let body = item.body;
    let last: SendOutcome = { status: 'retryable', reason: 'not attempted' };
    let attempts = 0;
    while (attempts < policy.maxAttempts) {
      if (attempts > 0) {
        this.counters.retries++;
        if (refresh !== undefined) body = refresh();
      }
      attempts++;
      try {
        last = await this.target.send(body, this.owner.stopping);
      } catch (err) {
        // A throwing sink is a bug; keep the message rather than lose it.
        last = { status: 'failure', reason: `sink error: ${(err as Error).message}` };
      }
      if (last.status === 'success') {
        this.counters.sent++;
        if (id !== undefined) this.owner.journalCall((j) => j.outboxDelivered(id));
        return;
      }
      this.counters.failed++;
      this.owner.log?.warn(
        { sink: this.target.name, attempt: attempts, reason: last.reason },
        'alert delivery failed',
      );
      if (last.status === 'failure' || this.owner.stopping.aborted) break;
      if (attempts < policy.maxAttempts) {
        const waitMs = this.owner.backoffMs(attempts);
        const reason = last.reason;
        if (id !== undefined) {
          this.owner.journalCall((j) => j.outboxRetry(id, Date.now() + waitMs, reason));
        }
        await this.owner.sleep(waitMs);
        if (this.owner.stopping.aborted) break;
      }
    }
    if (this.owner.stopping.aborted && last.status === 'retryable') {
      const why = `collector stopped before delivery; last attempt: ${last.reason}`;
      this.owner.leftOver(this, { ...item, body }, why, attempts);
      return;
    }
    const why =
      last.status === 'failure'
        ? `refused: ${last.reason}`
        : `gave up after ${attempts} attempts; last: ${last.reason}`;
    this.owner.deadLetter(this, body, why, attempts, id);
  }
}

/** See the file comment. */
export class AlertDispatcher {
  readonly retry: RetryPolicy;
  readonly maxQueue: number;
  readonly log: Logger | undefined;
  private readonly workers: TargetWorker[];
  private readonly random: () => number;
  private readonly deadLetterFile: string;
  private readonly journal: DeliveryJournal | undefined;
  private readonly stopper = new AbortController();
  private closed = false;

  constructor(opts: DispatcherOptions) {
    this.retry = { ...defaultRetryPolicy, ...opts.retry };
    this.maxQueue = opts.maxQueue ?? defaultMaxQueue;
    this.random = opts.random ?? Math.random;
    this.deadLetterFile = opts.deadLetterFile;
    this.journal = opts.journal;
    this.log = opts.log;
    const names = new Set<string>();
    this.workers = opts.targets.map((t) => {
      if (names.has(t.name)) throw new Error(`two alert delivery targets named ${t.name}`);
      names.add(t.name);
      return new TargetWorker(t, this);
    });
    this.restoreOutbox();
  }

  /** Queues what the journal still holds for each notify target (from before a restart). */
  private restoreOutbox(): void {
    for (const w of this.workers) {
      if (w.target.mode !== 'notify') continue;
      const pending = this.journalCall((j) => j.outboxPending(w.target.name, this.maxQueue)) ?? [];
      const items: Queued[] = [];
      for (const entry of pending) {
        const body = (entry.payload as { body?: unknown } | null)?.body;
        if (typeof body === 'string') items.push({ body, id: entry.id });
        else {
          const why = 'unreadable journal entry';
          this.journalCall((j) => j.outboxDead(entry.id, Date.now(), why));
        }
      }
      w.requeue(items);
    }
  }

  /** Runs `fn` on the journal, if any; a failing journal is logged and the result undefined. */
  journalCall<T>(fn: (journal: DeliveryJournal) => T): T | undefined {
    if (this.journal === undefined) return undefined;
    try {
      return fn(this.journal);
    } catch (err) {
      this.log?.error({ err }, 'the alert delivery journal failed; going on in memory');
      return undefined;
    }
  }

  /**
   * A message left undelivered by the stop: a journalled one stays in the journal for the
   * next run; anything else is dead-lettered.
   */
  leftOver(worker: TargetWorker, item: Queued, reason: string, attempts: number): void {
    if (item.id !== undefined) return;
    this.deadLetter(worker, item.body, reason, attempts);
  }

  /** Aborted when the dispatcher is closing for good (sends and backoffs end early). */
  get stopping(): AbortSignal {
    return this.stopper.signal;
  }

  /** Queues `batch` for every target and returns at once. Ignored after `close()`. */
  dispatch(batch: AlertBatch): void {
    if (this.closed) return;
    for (const w of this.workers) w.enqueue(batch);
  }

  /** Resolves once no target has anything queued or in flight. */
  async idle(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.idle()));
  }

  stats(): TargetStats[] {
    return this.workers.map((w) => ({
      sink: w.target.name,
      type: w.target.type,
      ...w.counters,
      queued: w.queued(),
    }));
  }

  /** Ceiling doubles per retry up to maxBackoffMs; the wait is uniform below it (full jitter). */
  backoffMs(failedAttempts: number): number {
    const ceiling = Math.min(
      this.retry.maxBackoffMs,
      this.retry.initialBackoffMs * 2 ** Math.max(0, failedAttempts - 1),
    );
    return Math.floor(this.random() * ceiling);
  }

  /** Waits `ms`, or less when the dispatcher closes. */
  sleep(ms: number): Promise<void> {
    return sleepUnlessAborted(ms, this.stopper.signal);
  }

  /**
   * Appends one undeliverable body to the dead-letter file (and marks its journal entry
   * dead); counts it even if that fails.
   */
  deadLetter(
    worker: TargetWorker,
    body: string,
    reason: string,
    attempts: number,
    journalId?: number,
  ): void {
    worker.counters.deadLetters++;
    if (journalId !== undefined) {
      this.journalCall((j) => j.outboxDead(journalId, Date.now(), reason));
    }
    let parsed: unknown = body;
    try {
      parsed = JSON.parse(body);
    } catch {
      /* keep the text */
    }
    const record: DeadLetter = {
      at: new Date().toISOString(),
      sink: worker.target.name,
      type: worker.target.type,
      reason,
      attempts,
      body: parsed,
    };
    try {
      mkdirSync(dirname(this.deadLetterFile), { recursive: true });
      appendFileSync(this.deadLetterFile, `${JSON.stringify(record)}\n`);
      this.log?.error(
        { sink: worker.target.name, reason, attempts, file: this.deadLetterFile },
        'alert not delivered: written to the dead-letter file',
      );
    } catch (err) {
      // The last place left: the log gets the whole record.
      this.log?.error({ err, record }, 'alert not delivered, and the dead-letter file failed');
    }
  }

  /**
   * Stops taking batches, lets queued deliveries finish for up to `drainMs`, then aborts
   * what is in flight; whatever is left stays in the journal (notify messages, when there is
   * one) or goes to the dead-letter file. Idempotent.
   */
  async close(drainMs = 2_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)));
    await Promise.race([this.idle(), deadline]);
    clearTimeout(timer);
    this.stopper.abort();
    await this.idle();
    for (const w of this.workers) {
      for (const item of w.drainLeft()) {
        this.leftOver(w, item, 'collector stopped before delivery', 0);
      }
    }
  }
}
