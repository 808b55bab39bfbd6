import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { Agent as HttpAgent, request } from 'undici';
import type { Dispatcher } from 'undici';
import { sleepUnlessAborted } from '../lib/duration.js';
import { errorCodeOf } from '../lib/errors.js';
import { faultlineVersion } from '../lib/version.js';
import type { ApiErrorCode } from '../wire/errors.js';
import { PlanSchema } from '../wire/plan.js';
import type { Plan } from '../wire/plan.js';
import { ReportAckSchema, agentUserAgent } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';
import { Credentials, EnrolError } from './enrol.js';
import type { EnrolState } from './enrol.js';
import { Journal } from './journal.js';
import type { Logger } from './logger.js';
import { Reporter } from './reporter.js';
import type { ReporterStats, ReportedTarget } from './reporter.js';
import { Spool, writeFileAtomic } from './spool.js';
import type { SpooledBatch, SpoolStats } from './spool.js';

/** Every request says which agent version sends it (the collector's Agents view shows it). */
const userAgent = agentUserAgent(faultlineVersion);

const gunzipAsync = promisify(gunzip);

/** Backoff after a failed send: full jitter between 0 and min(cap, base × 2^(attempt−1)). */
export const defaultBackoffBaseMs = 250;
export const defaultBackoffCapMs = 30_000;
/** After 401/403 (or a refusal the agent cannot fix by itself): retry this slowly. */
export const defaultAuthRetryMs = 60_000;
/** A collector's Retry-After is honoured up to this long. */
export const maxRetryAfterMs = 600_000;
/**
 * While the collector is unreachable, its /healthz is asked this often (±25% jitter): a
 * request that costs it nothing, so delivery resumes within about this long of its return
 * instead of after a backoff of up to `capMs`.
 */
export const defaultHealthPollMs = 1_000;

/** Refusals that say the sequence or the identity is wrong, never the batch: it is kept. */
export const seqRefusalCodes: ReadonlySet<string> = new Set<ApiErrorCode>([
  'FL_ERR_SEQ_GAP',
  'FL_ERR_SEQ_IMPLAUSIBLE',
  'FL_ERR_AGENT_CONFLICT',
  'FL_ERR_FORBIDDEN',
  'FL_ERR_ENROL_REQUIRED',
]);

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

/** Full-jitter exponential backoff: uniformly random in [0, min(capMs, baseMs × 2^(attempt−1))]. */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(0, attempt - 1), 30));
  return Math.floor(random() * ceiling);
}

/** Retry-After as milliseconds (delta-seconds or an HTTP date), or undefined. */
export function parseRetryAfterMs(
  value: string | string[] | undefined,
  nowMs: number = Date.now(),
): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (v === undefined || v === '') return undefined;
  if (/^\d+$/.test(v)) return Math.min(maxRetryAfterMs, Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(maxRetryAfterMs, Math.max(0, at - nowMs));
}

/** What to do after one POST of a batch. */
export type SendOutcome =
  | { readonly kind: 'acked'; readonly acceptedSeq: number; readonly duplicate: boolean }
  | { readonly kind: 'gap'; readonly expectedSeq: number }
  | { readonly kind: 'wait'; readonly delayMs: number; readonly why: string }
  | { readonly kind: 'backoff'; readonly why: string; readonly unreachable?: boolean }
  | {
      readonly kind: 'slow';
      readonly why: string;
      readonly code?: string;
      readonly status?: number;
    }
  | { readonly kind: 'reject'; readonly why: string };

class HttpStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function explain(err: unknown): string {
  const code = errorCodeOf(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code === undefined ? msg : `${code}: ${msg}`;
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
  private planEtag: string | undefined;
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
    if (this.journal !== undefined) await this.replayJournal(this.spool);
    this.spool.onAppend(() => {
      this.appended = true;
      this.wake?.();
    });
    const cached = await this.loadCachedPlan();
    let plan: Plan | undefined;
    let fresh = false;
    try {
      plan = await this.fetchPlan(this.options.startPlanTimeoutMs ?? 5_000);
      fresh = true;
      if (plan.version !== cached?.version) await this.savePlan(plan);
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

  /**
   * What a SIGKILLed run journaled but never spooled: replayed into one batch (its failures
   * in full) before anything new is reported. Summaries of the killed period cover the
   * results journaled since its last batch; ok results before an early flush are not in them.
   */
  private async replayJournal(spool: Spool): Promise<void> {
    const { log } = this.options;
    const recovered = Journal.recover(this.options.stateDir, new Set(spool.createdAtMs()), log);
    const { done } = recovered;
    // Results of another name (the state dir reused under a new --name) would be refused.
    const entries = recovered.entries.filter((e) => e.result.agent === this.options.agent);
    if (entries.length < recovered.entries.length) {
      log.warn(
        { results: recovered.entries.length - entries.length },
        'journaled results of another agent name not replayed',
      );
    }
    if (entries.length === 0) {
      done();
      return;
    }
    let clockMs = Math.min(...entries.map((e) => e.result.startedAtMs));
    const endMs = Math.max(
      ...entries.map((e) => e.result.startedAtMs + Math.ceil(e.result.timings.totalMs)),
    );
    const replay = new Reporter({
      agent: this.options.agent,
      labels: this.options.labels,
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
    if (replay.stats().appendFailures > 0) return; // kept for the next start
    done();
    this.counts.replayedResults = entries.length;
    log.warn(
      { results: entries.length, failures: entries.filter((e) => e.result.class !== 'ok').length },
      'the previous run was killed: its open report period replayed from the journal',
    );
  }

  // ---- plan ----------------------------------------------------------------------------

  private async fetchPlan(timeoutMs: number): Promise<Plan> {
    this.counts.planFetches++;
    const current = this.current;
    const conditional: Record<string, string> =
      current !== undefined && this.planEtag !== undefined
        ? { 'if-none-match': this.planEtag }
        : {};
    const labels = Object.entries(this.options.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const qs = new URLSearchParams({ agent: this.options.agent, labels });
    const token = await this.token(timeoutMs);
    const res = await request(`${this.base}/api/v1/plan?${qs.toString()}`, {
      method: 'GET',
      headers: this.headers(token, {
        accept: 'application/json',
        'accept-encoding': 'gzip',
        ...conditional,
      }),
      dispatcher: this.http,
      signal: this.signal(timeoutMs),
    });
    let raw = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode === 304 && current !== undefined) return current;
    if (res.statusCode !== 200) {
      const code = replyCode(raw.toString());
      if (res.statusCode === 401 || (res.statusCode === 403 && code === 'FL_ERR_ENROL_REQUIRED'))
        await this.credentials!.refused(token, code);
      throw new HttpStatusError(
        res.statusCode,
        `plan request answered ${res.statusCode}: ${raw.toString().slice(0, 200)}`,
      );
    }
    if (res.headers['content-encoding'] === 'gzip') raw = await gunzipAsync(raw);
    const parsed = PlanSchema.safeParse(JSON.parse(raw.toString()) as unknown);
    const etag = res.headers.etag;
    this.planEtag = typeof etag === 'string' ? etag : undefined;
    if (!parsed.success) {
      this.planEtag = undefined;
      const first = parsed.error.issues[0];
      throw new Error(
        `the collector sent an invalid plan: ${first?.path.join('.') ?? ''}: ${first?.message ?? ''}`,
      );
    }
    return parsed.data;
  }

  private async loadCachedPlan(): Promise<Plan | undefined> {
    const path = join(this.options.stateDir, 'plan.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return PlanSchema.parse(JSON.parse(text));
    } catch (err) {
      this.options.log.error({ file: path, err: explain(err) }, 'cached plan unreadable; ignored');
      return undefined;
    }
  }

  private async savePlan(plan: Plan): Promise<void> {
    try {
      await writeFileAtomic(join(this.options.stateDir, 'plan.json'), JSON.stringify(plan));
    } catch (err) {
      this.options.log.error({ err: explain(err) }, 'could not cache the plan');
    }
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
        await this.savePlan(plan);
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
      const outcome = await this.send(batch);
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
            if (await this.untilHealthy(delayMs)) attempt = 0;
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

  private async send(batch: SpooledBatch): Promise<SendOutcome> {
    let token: string;
    try {
      token = await this.token(this.requestTimeoutMs);
    } catch (err) {
      if (err instanceof EnrolError) {
        if (err.retryAfterMs !== undefined)
          return { kind: 'wait', delayMs: this.jittered(err.retryAfterMs), why: err.message };
        if (err.statusCode !== undefined && err.statusCode < 500)
          return {
            kind: 'slow',
            why: err.message,
            ...(err.code === undefined ? {} : { code: err.code }),
          };
        return { kind: 'backoff', why: err.message };
      }
      return { kind: 'backoff', why: `enrolment: ${explain(err)}`, unreachable: true };
    }
    this.counts.posts++;
    let statusCode: number;
    let headers: Dispatcher.ResponseData['headers'];
    let text: string;
    try {
      const res = await request(`${this.base}/api/v1/reports`, {
        method: 'POST',
        headers: this.headers(token, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          accept: 'application/json',
          // Batches spooled behind this one: while it replays a backlog, the collector does
          // not count this agent's (past) view in the diagnosis.
          'faultline-backlog': String(this.backlogAfter(batch.seq)),
        }),
        body: batch.body,
        dispatcher: this.http,
        signal: this.signal(this.requestTimeoutMs),
      });
      statusCode = res.statusCode;
      headers = res.headers;
      text = await res.body.text();
    } catch (err) {
      return { kind: 'backoff', why: explain(err), unreachable: true };
    }
    const outcome = classifyReply(statusCode, headers, text, this.random);
    if (outcome.kind === 'slow' && outcome.code !== undefined && seqRefusalCodes.has(outcome.code))
      this.counts.seqRefusals++;
    if (
      outcome.kind === 'slow' &&
      (outcome.status === 401 || outcome.code === 'FL_ERR_ENROL_REQUIRED') &&
      (await this.credentials!.refused(token, outcome.code))
    ) {
      // A per-agent credential the collector forgot: enrol again at once.
      return { kind: 'backoff', why: outcome.why };
    }
    return outcome;
  }

  /**
   * Waits up to `delayMs` for the collector to come back, asking its /healthz every
   * `healthPollMs` (jittered) — a question every period, its wait included, so that a
   * request stuck on a cut (its SYN lost) ends where the next one starts: the collector is
   * heard again within about one period after the heal, not two.
   */
  private async untilHealthy(delayMs: number): Promise<boolean> {
    const until = Date.now() + delayMs;
    let askedAt = Date.now();
    while (!this.stopped) {
      const left = until - Date.now();
      if (left <= 0) return false;
      const periodMs = Math.round(this.healthPollMs * (0.75 + this.random() * 0.5));
      const stepMs = Math.min(left, Math.max(0, askedAt + periodMs - Date.now()));
      await sleepUnlessAborted(stepMs, this.abort.signal);
      if (this.stopped) return false;
      askedAt = Date.now();
      try {
        const res = await request(`${this.base}/healthz`, {
          method: 'GET',
          headers: { 'user-agent': userAgent },
          dispatcher: this.http,
          signal: this.signal(Math.max(250, this.healthPollMs)),
        });
        await res.body.dump();
        if (res.statusCode === 200) return true;
      } catch {
        // Still away.
      }
    }
    return false;
  }
}

type IncomingHttpHeaders = Dispatcher.ResponseData['headers'];

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The collector's FL_ERR_* code of an error answer (`{error: {code}}`), if any. */
export function replyCode(text: string): string | undefined {
  const body = parseJson(text) as { error?: { code?: unknown }; code?: unknown } | undefined;
  const code = body?.error?.code ?? body?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Maps one answer of `POST /api/v1/reports` to what the link does next. 400/413/422 mean
 * this batch is bad (it is set aside); 415 and 401/403 mean the agent and the collector
 * disagree about everything, so no batch is blamed for it.
 */
export function classifyReply(
  status: number,
  headers: IncomingHttpHeaders,
  text: string,
  random: () => number,
): SendOutcome {
  const brief = text.slice(0, 300);
  const code = replyCode(text);
  // The sequence or the identity is refused, not the batch: never set it aside for it.
  if (code !== undefined && seqRefusalCodes.has(code) && status !== 409)
    return { kind: 'slow', why: `${status} ${code}: ${brief}`, code, status };
  if (status === 409 && code !== undefined && code !== 'FL_ERR_SEQ_GAP')
    return { kind: 'slow', why: `409 ${code}: ${brief}`, code, status };
  if (status === 200) {
    const ack = ReportAckSchema.safeParse(parseJson(text));
    if (ack.success)
      return { kind: 'acked', acceptedSeq: ack.data.acceptedSeq, duplicate: ack.data.duplicate };
    return { kind: 'backoff', why: `200 with an unexpected body: ${brief}` };
  }
  if (status === 409) {
    // The collector's errors are `{error: {code, message, expectedSeq, …}}`; a flat body is
    // accepted too.
    const body = parseJson(text) as
      { expectedSeq?: unknown; error?: { expectedSeq?: unknown } } | undefined;
    const expected = body?.error?.expectedSeq ?? body?.expectedSeq;
    if (typeof expected === 'number' && Number.isSafeInteger(expected) && expected >= 0)
      return { kind: 'gap', expectedSeq: expected };
    return { kind: 'slow', why: `409 conflict: ${brief}` };
  }
  if (status === 429 || status === 503) {
    const ms = parseRetryAfterMs(headers['retry-after']);
    if (ms !== undefined)
      return {
        kind: 'wait',
        delayMs: Math.round(ms + random() * ms * 0.1),
        why: `collector busy (${status})`,
      };
    return { kind: 'backoff', why: `collector busy (${status})` };
  }
  if (status === 401 || status === 403)
    return {
      kind: 'slow',
      why: `${status}: token unknown or revoked: ${brief}`,
      status,
      ...(code === undefined ? {} : { code }),
    };
  if (status === 415)
    return { kind: 'slow', why: `415: the collector refuses the encoding: ${brief}` };
  if (status === 400 || status === 413 || status === 422)
    return { kind: 'reject', why: `${status}: ${brief}` };
  return { kind: 'backoff', why: `${status}: ${brief}` };
}
