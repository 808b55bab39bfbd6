import { Agent as HttpAgent } from 'undici';
import { sleepUnlessAborted } from '../lib/duration.js';
import type { Plan } from '../wire/plan.js';
import type { ProbeResult } from '../wire/result.js';
import { Credentials } from './enrol.js';
import type { EnrolState } from './enrol.js';
import { Journal } from './journal.js';
import { replayJournal } from './journal-replay.js';
import {
  backoffDelayMs,
  defaultAuthRetryMs,
  defaultBackoffBaseMs,
  defaultBackoffCapMs,
  defaultHealthPollMs,
  explain,
  HttpStatusError,
} from './link-replies.js';
import type { Logger } from '../lib/logger.js';
import { PlanClient } from './plan-client.js';
import { ReportUpload, userAgent } from './report-upload.js';
import { Reporter } from './reporter.js';
import type { ReporterStats, ReportedTarget } from './reporter.js';
import { Spool } from './spool.js';
import type { SpooledBatch, SpoolStats } from './spool.js';

// The link's parts, one file each: what to do after each answer (link-replies.ts), the
// plan's fetch and cache (plan-client.ts), a batch's upload and the health poll
// (report-upload.ts), the replay of a killed run (journal-replay.ts).

/** Options of a {@link CollectorLink}. */
export interface CollectorLinkOptions {
  /** Base URL of the collector, e.g. `http://collector:7070` (a path prefix is kept). */
  readonly url: string;
  /**
   * The configured token: exchanged for a per-agent credential (`<stateDir>/credential`)
   * when it is a bootstrap token, else used directly (see Credentials).
   */
  readonly token: string;
  /** PEM CA certificates to trust for an https collector instead of the system's. */
  readonly ca?: string | Buffer;
  /** Agent name and labels: the plan request, and every report batch. */
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The agent's state directory: `agent-id`, `plan.json`, `spool/`. */
  readonly stateDir: string;
  readonly log: Logger;
  /**
   * Called when a plan with another version than the current one arrives (not for the
   * plan start() returns). It should not throw; if it does, the error is logged.
   */
  readonly onPlan: (plan: Plan) => void;
  /** Spool bounds (defaults 256 MB, 24 h). */
  readonly spool?: { readonly maxBytes?: number; readonly maxAgeMs?: number };
  /** Results-only batch after a failure or state change (ms), or false. Default 100 ms. */
  readonly earlyFlushMs?: number | false;
  /** Limit of one HTTP request. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** How long start() waits for a fresh plan before it settles for the cached one. Default 5 s. */
  readonly startPlanTimeoutMs?: number;
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
  readonly authRetryMs?: number;
  /** How often /healthz is asked while the collector is unreachable. Default 1 s. */
  readonly healthPollMs?: number;
  /** Journal the open report period (SIGKILL-safe). Default true. */
  readonly journal?: boolean;
  /** Random source in [0, 1) for jitter; injectable for tests. */
  readonly random?: () => number;
}

/** Counters since start. */
export interface CollectorLinkStats {
  /** POSTs of report batches (retries included). */
  readonly posts: number;
  /** Batches the collector acknowledged as new. */
  readonly accepted: number;
  /** Batches the collector already had (a retry of one whose answer was lost). */
  readonly duplicates: number;
  /** 409 gap answers: the collector expected an earlier seq than the agent still had. */
  readonly gaps: number;
  /** Batches refused as bad (400/413), moved to spool/rejected/. */
  readonly rejected: number;
  /** Acks above the highest seq this agent spooled: refused, the batch kept. */
  readonly implausibleAcks: number;
  /** Refusals of the sequence or identity (FL_ERR_SEQ_*, conflict, forbidden): batch kept. */
  readonly seqRefusals: number;
  /** Where the credential in use came from. */
  readonly enrolState: EnrolState;
  /** Results replayed from the journal of a killed run at start. */
  readonly replayedResults: number;
  /** Failed sends that were retried later (network, 429/503, 5xx, 401/403). */
  readonly retries: number;
  /** Highest seq the collector acknowledged. */
  readonly acceptedSeq: number;
  readonly planVersion: string | undefined;
  readonly planFetches: number;
  readonly planFailures: number;
  /** Whether the last exchange with the collector succeeded. */
  readonly connected: boolean;
  readonly spool: SpoolStats | undefined;
  readonly reporter: ReporterStats;
}

/**
 * The agent's side of the collector: fetches and caches the plan, and delivers the spooled
 * report batches — strictly in seq order, one at a time, each retried until the collector
 * acknowledges it (at-least-once; the collector's dedup on (agentId, seq) makes it exactly
 * once). Owns the Spool and the Reporter: wire `agent.onResult(link.observe)`.
 *
 * Replies: 200 acks everything up to `acceptedSeq` — unless `acceptedSeq` is above every
 * seq this agent spooled: that ack is implausible (someone else reported under its id, or
 * the answer is not the real collector's), counted, and the batch kept and retried with
 * backoff; the agent never skips its own seq ahead. 409 with `expectedSeq` (the collector
 * lost state, or a batch went missing) declares the missing batches as dropped in the
 * oldest spooled batch and sends it again — the agent cannot resend what it no longer has,
 * so it says so instead; 429/503 wait for Retry-After (plus up to 10% jitter), else
 * backoff; network errors and other 5xx back off with full jitter, and while the collector
 * is unreachable its /healthz is asked every ~`healthPollMs` so delivery resumes as soon as
 * it is back; 401/403 retry slowly (the token may be rotated; a per-agent credential the
 * collector forgot is replaced by enrolling again); a refusal of the sequence or the
 * identity (FL_ERR_SEQ_GAP, FL_ERR_SEQ_IMPLAUSIBLE, FL_ERR_AGENT_CONFLICT,
 * FL_ERR_FORBIDDEN, FL_ERR_ENROL_REQUIRED) keeps the batch and retries slowly; only a
 * batch refused as bad (400/413/422 without such a code) moves to `spool/rejected/`.
 *
 * The credential comes from {@link Credentials} (enrolment); the open report period is
 * journaled (see Journal) and replayed at start when a previous run was killed.
 */
export class CollectorLink {
  private readonly base: string;
  private readonly http: HttpAgent;
  private readonly reporter: Reporter;
  private readonly journal: Journal | undefined;
  private credentials: Credentials | undefined;
  private spool: Spool | undefined;
  private current: Plan | undefined;
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private wake: (() => void) | undefined;
  private appended = false;
  private drained: (() => void)[] = [];
  private connected = false;
  private lastProblem: string | undefined;
  private lastPlanAuthFailure = false;
  private readonly plans: PlanClient;
  private readonly upload: ReportUpload;
  private readonly requestTimeoutMs: number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly authRetryMs: number;
  private readonly healthPollMs: number;
  private readonly random: () => number;
  private counts = {
    implausibleAcks: 0,
    seqRefusals: 0,
    replayedResults: 0,
    posts: 0,
    accepted: 0,
    duplicates: 0,
    gaps: 0,
    rejected: 0,
    retries: 0,
    acceptedSeq: 0,
    planFetches: 0,
    planFailures: 0,
  };

  constructor(private readonly options: CollectorLinkOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.http = new HttpAgent({
      keepAliveTimeout: 30_000,
      connections: 4,
      ...(options.ca === undefined ? {} : { connect: { ca: options.ca } }),
    });
    this.healthPollMs = options.healthPollMs ?? defaultHealthPollMs;
    this.journal =
      options.journal === false ? undefined : new Journal(options.stateDir, options.log);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.baseMs = options.backoff?.baseMs ?? defaultBackoffBaseMs;
    this.capMs = options.backoff?.capMs ?? defaultBackoffCapMs;
    this.authRetryMs = options.authRetryMs ?? defaultAuthRetryMs;
    this.random = options.random ?? Math.random;
    this.plans = new PlanClient({
      base: this.base,
      dispatcher: this.http,
      agent: options.agent,
      labels: options.labels,
      stateDir: options.stateDir,
      log: options.log,
      token: (timeoutMs) => this.token(timeoutMs),
      refused: (token, code) => this.credentials!.refused(token, code),
      headers: (token, extra) => this.headers(token, extra),
      signal: (timeoutMs) => this.signal(timeoutMs),
    });
    this.upload = new ReportUpload({
      base: this.base,
      dispatcher: this.http,
      requestTimeoutMs: this.requestTimeoutMs,
      healthPollMs: this.healthPollMs,
      random: this.random,
      abort: this.abort.signal,
      stopped: () => this.stopped,
      counts: this.counts,
      token: (timeoutMs) => this.token(timeoutMs),
      refused: (token, code) => this.credentials!.refused(token, code),
      headers: (token, extra) => this.headers(token, extra),
      signal: (timeoutMs) => this.signal(timeoutMs),
    });
    this.reporter = new Reporter({
      agent: options.agent,
      labels: options.labels,
      log: options.log,
      ...(options.earlyFlushMs === undefined ? {} : { earlyFlushMs: options.earlyFlushMs }),
      ...(this.journal === undefined ? {} : { journal: this.journal }),
      sink: {
        append: (draft) => {
          if (this.spool === undefined) return Promise.reject(new Error('spool not open'));
          return this.spool.append(draft);
        },
      },
    });
  }

  /** Feeds one probe result to the reporter; shaped for `agent.onResult`. */
  readonly observe = (result: ProbeResult, target: ReportedTarget): void => {
    this.reporter.observe(result, target);
  };

  /** The plan in force (fetched or cached), if any. */
  plan(): Plan | undefined {
    return this.current;
  }

  /** Counters since start. */
  stats(): CollectorLinkStats {
    return {
      ...this.counts,
      planVersion: this.current?.version,
      connected: this.connected,
      enrolState: this.credentials?.state() ?? 'none',
      spool: this.spool?.stats(),
      reporter: this.reporter.stats(),
    };
  }

  /**
   * Opens the spool (recovering what a previous run left), gets the plan — a fresh one if
   * the collector answers within `startPlanTimeoutMs`, else the cached `plan.json` — and
   * starts reporting. Returns that plan, or undefined when there is none yet (the link
   * keeps asking, and calls `onPlan` when one comes).
   */
  async start(): Promise<Plan | undefined> {
    const { log } = this.options;
    this.spool = await Spool.open({ stateDir: this.options.stateDir, log, ...this.options.spool });
    this.credentials = new Credentials({
      base: this.base,
      token: this.options.token,
      agent: this.options.agent,
      agentId: this.spool.agentId,
      stateDir: this.options.stateDir,
      dispatcher: this.http,
      log,
      timeoutMs: this.requestTimeoutMs,
    });
    if (this.journal !== undefined) {
      const replayed = await replayJournal(this.spool, this.options);
      if (replayed > 0) this.counts.replayedResults = replayed;
    }
    this.spool.onAppend(() => {
      this.appended = true;
      this.wake?.();
    });
    const cached = await this.plans.loadCached();
    let plan: Plan | undefined;
    let fresh = false;
    try {
      plan = await this.fetchPlan(this.options.startPlanTimeoutMs ?? 5_000);
      fresh = true;
      if (plan.version !== cached?.version) await this.plans.save(plan);
    } catch (err) {
      this.counts.planFailures++;
      if (cached !== undefined) {
        log.warn(
          { err: explain(err), planVersion: cached.version, targets: cached.targets.length },
          'collector unreachable at start: probing with the cached plan',
        );
        plan = cached;
      } else {
        log.error(
          { err: explain(err) },
          'collector unreachable at start and no cached plan: waiting for one',
        );
      }
    }
    if (plan !== undefined) {
      this.current = plan;
      this.reporter.setPlan(plan);
    }
    this.reporter.start();
    this.loops = [this.sendLoop(), this.planLoop(fresh)];
    return plan;
  }

  /**
   * Closes the current batch into the spool (nothing is lost), gives delivery up to
   * `drainMs` to send what is spooled, then aborts every request and stops. Whatever is
   * left is sent after the next start.
   */
  async stop(drainMs = 1_000): Promise<void> {
    await this.reporter.stop();
    if (drainMs > 0 && (this.spool?.stats().batches ?? 0) > 0 && this.connected) {
      await Promise.race([
        new Promise<void>((resolve) => this.drained.push(resolve)),
        sleepUnlessAborted(drainMs, this.abort.signal),
      ]);
    }
    this.abort.abort();
    this.wake?.();
    await Promise.allSettled(this.loops);
    await this.spool?.settle();
    await this.http.destroy();
    this.options.log.info(
      { spooled: this.spool?.stats().batches ?? 0, acceptedSeq: this.counts.acceptedSeq },
      'collector link stopped',
    );
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private signal(timeoutMs: number): AbortSignal {
    return AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]);
  }

  /** The credential to send (enrolling first when needed); throws when there is none yet. */
  private async token(timeoutMs: number): Promise<string> {
    return this.credentials!.get(this.signal(timeoutMs));
  }

  private headers(token: string, extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${token}`, 'user-agent': userAgent, ...extra };
  }

  // ---- plan ----------------------------------------------------------------------------

  private fetchPlan(timeoutMs: number): Promise<Plan> {
    this.counts.planFetches++;
    return this.plans.fetch(this.current, timeoutMs);
  }

  private async planLoop(fresh: boolean): Promise<void> {
    const { log } = this.options;
    // Without a fresh plan, ask again soon (with backoff), not a whole refresh interval later.
    let failures = fresh ? 0 : 1;
    while (!this.stopped) {
      const refreshMs = this.current?.refreshIntervalMs;
      let delayMs: number;
      if (failures === 0 && refreshMs !== undefined) delayMs = refreshMs;
      else {
        delayMs = backoffDelayMs(failures, this.baseMs, refreshMs ?? this.capMs, this.random);
        if (failures > 0 && this.lastPlanAuthFailure) delayMs = this.jittered(this.authRetryMs);
      }
      await sleepUnlessAborted(delayMs, this.abort.signal);
      if (this.stopped) return;
      try {
        const plan = await this.fetchPlan(this.requestTimeoutMs);
        if (failures > 0) log.info({ planVersion: plan.version }, 'plan fetched');
        failures = 0;
        this.lastPlanAuthFailure = false;
        if (plan.version === this.current?.version) continue;
        const previous = this.current?.version;
        await this.plans.save(plan);
        this.current = plan;
        this.reporter.setPlan(plan);
        log.info(
          { planVersion: plan.version, previous: previous ?? null, targets: plan.targets.length },
          'new plan',
        );
        try {
          this.options.onPlan(plan);
        } catch (err) {
          log.error({ err }, 'applying the new plan failed');
        }
      } catch (err) {
        if (this.stopped) return;
        failures++;
        this.counts.planFailures++;
        const status = err instanceof HttpStatusError ? err.statusCode : undefined;
        this.lastPlanAuthFailure = status === 401 || status === 403;
        const fields = { err: explain(err), failures, planVersion: this.current?.version ?? null };
        if (this.lastPlanAuthFailure)
          log.error(fields, 'plan refused: token unknown or revoked (retrying slowly)');
        else if (failures === 1) log.warn(fields, 'plan refresh failed; keeping the current plan');
        else log.debug(fields, 'plan refresh failed again');
      }
    }
  }

  // ---- reports -------------------------------------------------------------------------

  private jittered(ms: number): number {
    return Math.round(ms + this.random() * ms * 0.1);
  }

  private async waitForAppend(): Promise<void> {
    if (this.appended || this.stopped) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    this.wake = undefined;
  }

  private noteProblem(why: string, fields: Record<string, unknown>): void {
    const { log } = this.options;
    if (this.connected || this.lastProblem !== why) {
      log.warn(
        { ...fields, reason: why, spooled: this.spool?.stats().batches ?? 0 },
        'report delivery failing; batches stay in the spool',
      );
    }
    this.connected = false;
    this.lastProblem = why;
  }

  private async sendLoop(): Promise<void> {
    const spool = this.spool!;
    const { log } = this.options;
    let attempt = 0;
    while (!this.stopped) {
      this.appended = false;
      let batch: SpooledBatch | undefined;
      try {
        batch = await spool.peek();
      } catch (err) {
        log.error({ err }, 'reading the spool failed');
        await sleepUnlessAborted(this.jittered(this.capMs), this.abort.signal);
        continue;
      }
      if (batch === undefined) {
        for (const resolve of this.drained.splice(0)) resolve();
        await this.waitForAppend();
        continue;
      }
      const outcome = await this.upload.send(batch, this.backlogAfter(batch.seq));
      if (this.stopped && outcome.kind !== 'acked') return;
      switch (outcome.kind) {
        case 'acked': {
          if (!this.connected && this.lastProblem !== undefined) {
            log.info(
              { spooled: spool.stats().batches, seq: batch.seq },
              'collector accepting reports again',
            );
          }
          const highestSpooled = spool.stats().nextSeq - 1;
          if (outcome.acceptedSeq > highestSpooled) {
            // Someone else reported under this agent's id (or the collector is not the real
            // one): believing it would skip this agent's seq past batches it never sent, or
            // past the largest exact integer. The batch stays; nothing is acknowledged.
            this.counts.implausibleAcks++;
            this.connected = false;
            attempt++;
            const delayMs = Math.max(
              this.baseMs,
              backoffDelayMs(attempt, this.baseMs * 4, this.capMs, this.random),
            );
            log.error(
              {
                acceptedSeq: outcome.acceptedSeq,
                highestSpooled,
                seq: batch.seq,
                agentId: spool.agentId,
                delayMs,
              },
              'implausible ack: the collector claims seqs this agent never produced; batch kept, retrying (seq not skipped ahead)',
            );
            await sleepUnlessAborted(delayMs, this.abort.signal);
            break;
          }
          this.connected = true;
          this.lastProblem = undefined;
          attempt = 0;
          if (outcome.duplicate) this.counts.duplicates++;
          else this.counts.accepted++;
          this.counts.acceptedSeq = Math.max(this.counts.acceptedSeq, outcome.acceptedSeq);
          await spool.ack(outcome.acceptedSeq);
          if (outcome.acceptedSeq < batch.seq) {
            // A 200 whose watermark stays below the batch: resending at once would spin.
            log.error(
              { seq: batch.seq, acceptedSeq: outcome.acceptedSeq },
              'collector answered 200 but did not take the batch; retrying later',
            );
            await sleepUnlessAborted(this.jittered(this.capMs), this.abort.signal);
          }
          break;
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
            await spool.declareGap(batch.seq, missing);
          } else {
            log.error(
              { seq: batch.seq, expectedSeq: expected, declared: batch.dropped ?? null },
              'collector refuses the sequence and the agent cannot repair it; batch kept, retrying slowly',
            );
            this.counts.seqRefusals++;
            this.connected = false;
            await sleepUnlessAborted(this.jittered(this.authRetryMs), this.abort.signal);
          }
          break;
        }
        case 'reject':
          this.counts.rejected++;
          await spool.reject(batch.seq, outcome.why);
          break;
        case 'wait':
          this.counts.retries++;
          this.noteProblem(outcome.why, { seq: batch.seq, retryAfterMs: outcome.delayMs });
          await sleepUnlessAborted(outcome.delayMs, this.abort.signal);
          break;
        case 'backoff': {
          this.counts.retries++;
          attempt++;
          const delayMs = backoffDelayMs(attempt, this.baseMs, this.capMs, this.random);
          this.noteProblem(outcome.why, { seq: batch.seq, attempt, delayMs });
          if (outcome.unreachable === true && delayMs > this.healthPollMs) {
            // Unreachable: ask /healthz cheaply and resume the moment it answers.
            if (await this.upload.untilHealthy(delayMs)) attempt = 0;
          } else await sleepUnlessAborted(delayMs, this.abort.signal);
          break;
        }
        case 'slow':
          this.counts.retries++;
          this.connected = false;
          log.error(
            { seq: batch.seq, reason: outcome.why, code: outcome.code ?? null },
            'reports refused; batch kept, retrying slowly',
          );
          await sleepUnlessAborted(this.jittered(this.authRetryMs), this.abort.signal);
          break;
      }
    }
  }

  /** Batches spooled after `seq`. */
  private backlogAfter(seq: number): number {
    return Math.max(0, (this.spool?.stats().nextSeq ?? seq + 1) - 1 - seq);
  }
}
