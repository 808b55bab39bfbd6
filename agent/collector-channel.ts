import { mkdir } from 'node:fs/promises';
import { abortAfter } from '../lib/abort.js';
import { sleepUnlessAborted } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import type { Plan } from '../wire/plan.js';
import { Credentials } from './enrol.js';
import { CollectorHttp } from './http-client.js';
import {
  backoffDelayMs,
  defaultAuthRetryMs,
  defaultBackoffBaseMs,
  defaultBackoffCapMs,
  defaultHealthPollMs,
  explain,
  HttpStatusError,
} from './link-replies.js';
import { PlanClient } from './plan-client.js';
import { DeliveryChannel } from './report-destination.js';
import type { DeliverySource, DestinationStats, PlanChannel } from './report-destination.js';
import { ReportUpload, userAgent } from './report-upload.js';
import type { SpooledBatch } from './spool.js';

/** Options of one {@link CollectorChannel}. */
export interface CollectorChannelOptions {
  /** Base URL of the collector (a path prefix is kept; no trailing slash needed). */
  readonly url: string;
  /** The configured token (a bootstrap token is exchanged for a per-agent credential). */
  readonly token: string;
  readonly ca?: string | Buffer;
  /** Its spool cursor's name. */
  readonly name: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Where this collector's credential and cached plan live. */
  readonly stateDir: string;
  readonly log: Logger;
  readonly requestTimeoutMs?: number;
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
  readonly authRetryMs?: number;
  readonly healthPollMs?: number;
  readonly random?: () => number;
}

/**
 * One collector, as the agent sees it: its credential (each collector enrols the agent
 * itself), its plan (fetched and cached under its own state dir; the link picks the newest
 * any collector serves), and delivery of the spool through its own cursor — strictly in seq
 * order, one batch at a time, each retried until acknowledged (at-least-once; the
 * collector's dedup on (agentId, seq) makes it exactly once). See CollectorLink for what
 * each answer makes it do.
 */
export class CollectorChannel extends DeliveryChannel implements PlanChannel {
  readonly base: string;
  private readonly http: CollectorHttp;
  private credentials: Credentials | undefined;
  private readonly plans: PlanClient;
  private readonly upload: ReportUpload;
  private served: Plan | undefined;
  private onServed: ((plan: Plan) => void) | undefined;
  private lastProblem: string | undefined;
  private lastPlanAuthFailure = false;
  private readonly requestTimeoutMs: number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly authRetryMs: number;
  private readonly random: () => number;
  constructor(private readonly options: CollectorChannelOptions) {
    super(options.name);
    this.base = options.url.replace(/\/+$/, '');
    this.http = new CollectorHttp({
      keepAliveMs: 30_000,
      connections: 4,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.baseMs = options.backoff?.baseMs ?? defaultBackoffBaseMs;
    this.capMs = options.backoff?.capMs ?? defaultBackoffCapMs;
    this.authRetryMs = options.authRetryMs ?? defaultAuthRetryMs;
    this.random = options.random ?? Math.random;
    const auth = {
      token: (timeoutMs: number) => this.token(timeoutMs),
      refused: (token: string, code: string | undefined) => this.credentials!.refused(token, code),
      headers: (token: string, extra: Record<string, string> = {}) => ({
        authorization: `Bearer ${token}`,
        'user-agent': userAgent,
        ...extra,
      }),
      signal: (timeoutMs: number) => this.signal(timeoutMs),
    };
    this.plans = new PlanClient({
      base: this.base,
      http: this.http,
      agent: options.agent,
      labels: options.labels,
      stateDir: options.stateDir,
      log: options.log,
      ...auth,
    });
    this.upload = new ReportUpload({
      base: this.base,
      http: this.http,
      requestTimeoutMs: this.requestTimeoutMs,
      healthPollMs: options.healthPollMs ?? defaultHealthPollMs,
      random: this.random,
      abort: this.abort.signal,
      stopped: () => this.stopped,
      counts: this.counts,
      ...auth,
    });
  }

  /**
   * Creates its state dir and readies the credential for the agent's id (it enrols at the
   * first request that needs it); `onServed` is called with each plan this collector serves
   * whose version differs from the last.
   */
  async open(agentId: string, onServed: (plan: Plan) => void): Promise<void> {
    this.onServed = onServed;
    await mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    this.credentials = new Credentials({
      base: this.base,
      token: this.options.token,
      agent: this.options.agent,
      agentId,
      stateDir: this.options.stateDir,
      http: this.http,
      log: this.options.log,
      timeoutMs: this.requestTimeoutMs,
    });
  }

  /** The last plan this collector served (or the one cached from it). */
  servedPlan(): Plan | undefined {
    return this.served;
  }

  /** This collector's cached plan, if any. */
  loadCached(): Promise<Plan | undefined> {
    return this.plans.loadCached();
  }

  /** Asks this collector for its plan once (at start); caches and remembers it. */
  async fetchFirstPlan(timeoutMs: number, cached: Plan | undefined): Promise<Plan> {
    this.counts.planFetches++;
    const plan = await this.plans.fetch(undefined, timeoutMs);
    if (plan.version !== cached?.version) await this.plans.save(plan);
    this.served = plan;
    return plan;
  }

  /** Keeps asking for the plan; `fresh`: the first fetch succeeded. */
  startPlanLoop(fresh: boolean, cached: Plan | undefined): void {
    if (!fresh) this.served ??= cached;
    this.loops.push(this.planLoop(fresh));
  }

  protected close(): Promise<void> {
    this.http.close();
    return Promise.resolve();
  }

  stats(): DestinationStats & { readonly planVersion: string | undefined } {
    return this.destinationStats(
      this.base,
      this.credentials?.state() ?? 'none',
      this.served?.version,
    );
  }

  private signal(timeoutMs: number): AbortSignal {
    return abortAfter(this.abort.signal, timeoutMs);
  }

  /** The credential to send (enrolling first when needed); throws when there is none yet. */
  private async token(timeoutMs: number): Promise<string> {
    return this.credentials!.get(this.signal(timeoutMs));
  }

  private jittered(ms: number): number {
    return Math.round(ms + this.random() * ms * 0.1);
  }

  // ---- plan ----------------------------------------------------------------------------

  private async planLoop(fresh: boolean): Promise<void> {
    const { log } = this.options;
    // Without a fresh plan, ask again soon (with backoff), not a whole refresh interval later.
    let failures = fresh ? 0 : 1;
    while (!this.stopped) {
      const refreshMs = this.served?.refreshIntervalMs;
      let delayMs: number;
      if (failures === 0 && refreshMs !== undefined) delayMs = refreshMs;
      else {
        delayMs = backoffDelayMs(failures, this.baseMs, refreshMs ?? this.capMs, this.random);
        if (failures > 0 && this.lastPlanAuthFailure) delayMs = this.jittered(this.authRetryMs);
      }
      await sleepUnlessAborted(delayMs, this.abort.signal);
      if (this.stopped) return;
      try {
        this.counts.planFetches++;
        const plan = await this.plans.fetch(this.served, this.requestTimeoutMs);
        if (failures > 0) log.info({ planVersion: plan.version }, 'plan fetched');
        failures = 0;
        this.lastPlanAuthFailure = false;
        if (plan.version === this.served?.version) continue;
        await this.plans.save(plan);
        this.served = plan;
        this.onServed?.(plan);
      } catch (err) {
        if (this.stopped) return;
        failures++;
        this.counts.planFailures++;
        const status = err instanceof HttpStatusError ? err.statusCode : undefined;
        this.lastPlanAuthFailure = status === 401 || status === 403;
        const fields = { err: explain(err), failures, planVersion: this.served?.version ?? null };
        if (this.lastPlanAuthFailure)
          log.error(fields, 'plan refused: token unknown or revoked (retrying slowly)');
        else if (failures === 1) log.warn(fields, 'plan refresh failed; keeping the current plan');
        else log.debug(fields, 'plan refresh failed again');
      }
    }
  }

  // ---- reports -------------------------------------------------------------------------

  private noteProblem(why: string, fields: Record<string, unknown>): void {
    if (this.isConnected || this.lastProblem !== why) {
      this.options.log.warn(
        { ...fields, reason: why, spooled: this.source?.cursor.stats().batches ?? 0 },
        'report delivery failing; batches stay in the spool',
      );
    }
    this.isConnected = false;
    this.lastProblem = why;
  }

  protected async sendLoop(source: DeliverySource): Promise<void> {
    const { cursor } = source;
    const { log } = this.options;
    const state = { attempt: 0 };
    while (!this.stopped) {
      this.pace.beforePeek();
      let batch: SpooledBatch | undefined;
      try {
        batch = await cursor.peek();
      } catch (err) {
        log.error({ err }, 'reading the spool failed');
        await sleepUnlessAborted(this.jittered(this.capMs), this.abort.signal);
        continue;
      }
      if (batch === undefined) {
        await this.pace.idle(() => this.stopped);
        continue;
      }
      const backlog = Math.max(0, source.highestSpooled() - batch.seq);
      const outcome = await this.upload.send(batch, backlog);
      if (this.stopped && outcome.kind !== 'acked') return;
      await this.handle(source, batch, outcome, state);
    }
  }

  private async handle(
    source: DeliverySource,
    batch: SpooledBatch,
    outcome: Awaited<ReturnType<ReportUpload['send']>>,
    state: { attempt: number },
  ): Promise<void> {
    const { cursor } = source;
    const { log } = this.options;
    switch (outcome.kind) {
      case 'acked': {
        if (!this.isConnected && this.lastProblem !== undefined) {
          log.info(
            { spooled: cursor.stats().batches, seq: batch.seq },
            'collector accepting reports again',
          );
        }
        const highestSpooled = source.highestSpooled();
        if (outcome.acceptedSeq > highestSpooled) {
          // Someone else reported under this agent's id (or the collector is not the real
          // one): believing it would skip this agent's seq past batches it never sent, or
          // past the largest exact integer. The batch stays; nothing is acknowledged.
          this.counts.implausibleAcks++;
          this.isConnected = false;
          state.attempt++;
          const delayMs = Math.max(
            this.baseMs,
            backoffDelayMs(state.attempt, this.baseMs * 4, this.capMs, this.random),
          );
          log.error(
            { acceptedSeq: outcome.acceptedSeq, highestSpooled, seq: batch.seq, delayMs },
            'implausible ack: the collector claims seqs this agent never produced; batch kept, retrying (seq not skipped ahead)',
          );
          await sleepUnlessAborted(delayMs, this.abort.signal);
          return;
        }
        this.answered();
        this.lastProblem = undefined;
        state.attempt = 0;
        if (outcome.duplicate) this.counts.duplicates++;
        else this.counts.accepted++;
        this.counts.acceptedSeq = Math.max(this.counts.acceptedSeq, outcome.acceptedSeq);
        await cursor.ack(outcome.acceptedSeq);
        if (outcome.acceptedSeq < batch.seq) {
          // A 200 whose watermark stays below the batch: resending at once would spin.
          log.error(
            { seq: batch.seq, acceptedSeq: outcome.acceptedSeq },
            'collector answered 200 but did not take the batch; retrying later',
          );
          await sleepUnlessAborted(this.jittered(this.capMs), this.abort.signal);
        }
        return;
      }
      case 'gap': {
        this.counts.gaps++;
        const expected = outcome.expectedSeq;
        const missing = batch.seq - expected;
        if (expected < batch.seq && batch.dropped?.batches !== missing) {
          log.error(
            { seq: batch.seq, expectedSeq: expected, missingBatches: missing },
            'collector expects batches the agent no longer has (collector lost state?): declaring them dropped',
          );
          await cursor.declareGap(batch.seq, missing);
        } else {
          log.error(
            { seq: batch.seq, expectedSeq: expected, declared: batch.dropped ?? null },
            'collector refuses the sequence and the agent cannot repair it; batch kept, retrying slowly',
          );
          this.counts.seqRefusals++;
          this.isConnected = false;
          await sleepUnlessAborted(this.jittered(this.authRetryMs), this.abort.signal);
        }
        return;
      }
      case 'reject':
        this.counts.rejected++;
        await cursor.reject(batch.seq, outcome.why);
        return;
      case 'wait':
        this.counts.retries++;
        this.noteProblem(outcome.why, { seq: batch.seq, retryAfterMs: outcome.delayMs });
        await sleepUnlessAborted(outcome.delayMs, this.abort.signal);
        return;
      case 'backoff': {
        this.counts.retries++;
        state.attempt++;
        const delayMs = backoffDelayMs(state.attempt, this.baseMs, this.capMs, this.random);
        this.noteProblem(outcome.why, { seq: batch.seq, attempt: state.attempt, delayMs });
        if (
          outcome.unreachable === true &&
          delayMs > (this.options.healthPollMs ?? defaultHealthPollMs)
        ) {
          // Unreachable: ask /healthz cheaply and resume the moment it answers.
          if (await this.upload.untilHealthy(delayMs)) state.attempt = 0;
        } else await sleepUnlessAborted(delayMs, this.abort.signal);
        return;
      }
      case 'slow':
        this.counts.retries++;
        this.isConnected = false;
        log.error(
          { seq: batch.seq, reason: outcome.why, code: outcome.code ?? null },
          'reports refused; batch kept, retrying slowly',
        );
        await sleepUnlessAborted(this.jittered(this.authRetryMs), this.abort.signal);
        return;
    }
  }
}
