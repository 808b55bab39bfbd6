import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { sleepUnlessAborted } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import type { Plan } from '../wire/plan.js';
import type { ProbeResult } from '../wire/result.js';
import { CollectorChannel } from './collector-channel.js';
import type { EnrolState } from './enrol.js';
import { Journal } from './journal.js';
import { replayJournal } from './journal-replay.js';
import { explain } from './link-replies.js';
import { newestPlan } from './plan-choice.js';
import type {
  ChannelCounts,
  DestinationStats,
  PlanChannel,
  ReportDestination,
} from './report-destination.js';
import { Reporter } from './reporter.js';
import type { ReporterStats, ReportedTarget } from './reporter.js';
import { defaultCursor, Spool } from './spool.js';
import type { SpoolStats } from './spool.js';

// The link's parts, one file each: one collector's credential, plan and delivery loop
// (collector-channel.ts), the NATS JetStream stream and plan bucket (nats-channel.ts), what to do after each answer (link-replies.ts), the plan's fetch
// and cache (plan-client.ts), a batch's upload and the health poll (report-upload.ts), the
// choice among the collectors' plans (plan-choice.ts), the replay of a killed run
// (journal-replay.ts).

/** One collector an agent reports to. */
export interface CollectorEndpoint {
  /** Base URL of the collector, e.g. `http://collector:7070` (a path prefix is kept). */
  readonly url: string;
  /**
   * The configured token: exchanged for a per-agent credential (`credential` in the
   * collector's state dir) when it is a bootstrap token, else used directly (see Credentials).
   */
  readonly token: string;
  /** PEM CA certificates to trust for an https collector instead of the system's. */
  readonly ca?: string | Buffer;
}

/** Options of a {@link CollectorLink}. */
export interface CollectorLinkOptions {
  /** The one collector (give `url` and `token`, or `collectors`, or `channels`). */
  readonly url?: string;
  readonly token?: string;
  readonly ca?: string | Buffer;
  /** Every collector to report to (two in two failure domains for HA). */
  readonly collectors?: readonly CollectorEndpoint[];
  /**
   * Channels besides the HTTP collectors that take reports and serve plans too: the NATS
   * transport (nats-channel.ts, built by the caller so its client is loaded only then).
   * Each is opened, fed and stopped by the link; its `name` must differ from the others'.
   */
  readonly channels?: readonly PlanChannel[];
  /** Agent name and labels: the plan request, and every report batch. */
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The agent's state directory: `agent-id`, `spool/`, `journal/`; and per collector its
   * `credential` and `plan.json` — in the directory itself with one collector (the layout
   * of versions before several), in `collectors/<host>_<port>-<hash>/` with several.
   */
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
  /** How often /healthz is asked while a collector is unreachable. Default 1 s. */
  readonly healthPollMs?: number;
  /** Journal the open report period (SIGKILL-safe). Default true. */
  readonly journal?: boolean;
  /**
   * Report destinations besides the collectors (a message-bus publisher…): each reads the
   * spool through its own cursor (named by its `name`, which must differ from the
   * collectors'), and a batch leaves the spool only when they too have it.
   */
  readonly destinations?: readonly ReportDestination[];
  /** Random source in [0, 1) for jitter; injectable for tests. */
  readonly random?: () => number;
}

/**
 * Where a collector's credential and cached plan live under the state dir when the agent
 * reports to several: `collectors/<host>_<port>-<8 hex of the URL's hash>`.
 */
export function collectorStateKey(url: string): string {
  const u = new URL(url);
  const port = u.port === '' ? (u.protocol === 'https:' ? '443' : '80') : u.port;
  const host = u.hostname.replace(/[^A-Za-z0-9.-]/g, '_').slice(0, 64);
  const hash = createHash('sha256').update(url.replace(/\/+$/, '')).digest('hex').slice(0, 8);
  return `${host}_${port}-${hash}`;
}

/**
 * Counters since start: the channels' counts summed (acceptedSeq their highest), and the
 * link's own.
 */
export interface CollectorLinkStats extends Readonly<ChannelCounts> {
  /** Where the credential in use came from. */
  readonly enrolState: EnrolState;
  /** Results replayed from the journal of a killed run at start. */
  readonly replayedResults: number;
  readonly planVersion: string | undefined;
  /** Whether the last exchange with the collector succeeded. */
  readonly connected: boolean;
  readonly spool: SpoolStats | undefined;
  readonly reporter: ReporterStats;
  /** Per collector (with NATS: the stream), in the order given. */
  readonly collectors: readonly CollectorStats[];
  /** Per destination given in `destinations` (not a collector). */
  readonly others: readonly DestinationStats[];
}

/** One collector's counters. */
export type CollectorStats = DestinationStats & { readonly planVersion: string | undefined };

/** A destination that took a batch this recently still answers at the stop (see `stop`). */
export const recentAnswerMs = 5_000;

/**
 * The agent's side of its collectors — one, or several in different failure domains: the
 * plan (the newest any collector serves, see newestPlan; each collector's cached under its
 * own state dir), and delivery of the spooled report batches to every collector, each
 * through its own cursor over the one spool (CollectorChannel): strictly in seq order, one
 * at a time, each retried until that collector acknowledges it (at-least-once; the
 * collector's dedup on (agentId, seq) makes it exactly once). A batch leaves the spool when
 * every collector has it (or a spool bound drops it, declared to each that missed it); a
 * collector down or cut off delays no other. Owns the Spool and the Reporter: wire
 * `agent.onResult(link.observe)`.
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
 * batch refused as bad (400/413/422 without such a code) is copied to `spool/rejected/` and
 * skipped for the collector that refused it (declared to it as dropped; the others still
 * get it).
 *
 * Each collector's credential comes from Credentials (enrol.ts), its own; the open report
 * period is journaled (see Journal) and replayed at start when a previous run was killed.
 *
 * With `transport: nats` the one channel is the JetStream stream and the plan bucket
 * (NatsChannel, given in `channels`): the same batching, spool, cursor, replay order and
 * plan choice, the plan coming from the bucket's watch instead of GET /api/v1/plan.
 */
export class CollectorLink {
  private readonly reporter: Reporter;
  private readonly journal: Journal | undefined;
  private readonly channels: readonly PlanChannel[];
  private spool: Spool | undefined;
  private current: Plan | undefined;
  private replayedResults = 0;
  /** Probe results handed to the link since start (what a store is audited against). */
  private observed = 0;
  private stopping = false;

  constructor(private readonly options: CollectorLinkOptions) {
    const endpoints = endpointsOf(options);
    const several = endpoints.length + (options.channels?.length ?? 0) > 1;
    const collectors = endpoints.map((e) => {
      const key = collectorStateKey(e.url);
      return new CollectorChannel({
        url: e.url,
        token: e.token,
        ...(e.ca === undefined ? {} : { ca: e.ca }),
        name: several ? key : defaultCursor,
        agent: options.agent,
        labels: options.labels,
        stateDir: several ? join(options.stateDir, 'collectors', key) : options.stateDir,
        log: several ? options.log.child({ collector: e.url }) : options.log,
        ...(options.requestTimeoutMs === undefined
          ? {}
          : { requestTimeoutMs: options.requestTimeoutMs }),
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
        ...(options.authRetryMs === undefined ? {} : { authRetryMs: options.authRetryMs }),
        ...(options.healthPollMs === undefined ? {} : { healthPollMs: options.healthPollMs }),
        ...(options.random === undefined ? {} : { random: options.random }),
      });
    });
    this.channels = [...collectors, ...(options.channels ?? [])];
    this.journal =
      options.journal === false ? undefined : new Journal(options.stateDir, options.log);
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
    this.observed++;
    this.reporter.observe(result, target);
  };

  /** The plan in force (fetched or cached), if any. */
  plan(): Plan | undefined {
    return this.current;
  }

  /** Counters since start. */
  stats(): CollectorLinkStats {
    const collectors = this.channels.map((c) => c.stats());
    const sum = (k: keyof ChannelCounts): number =>
      this.channels.reduce((n, c) => n + c.counts[k], 0);
    return {
      posts: sum('posts'),
      accepted: sum('accepted'),
      duplicates: sum('duplicates'),
      gaps: sum('gaps'),
      rejected: sum('rejected'),
      implausibleAcks: sum('implausibleAcks'),
      seqRefusals: sum('seqRefusals'),
      retries: sum('retries'),
      planFetches: sum('planFetches'),
      planFailures: sum('planFailures'),
      acceptedSeq: Math.max(0, ...collectors.map((c) => c.acceptedSeq)),
      replayedResults: this.replayedResults,
      enrolState: collectors[0]!.enrolState as EnrolState,
      planVersion: this.current?.version,
      connected: collectors.some((c) => c.connected),
      spool: this.spool?.stats(),
      reporter: this.reporter.stats(),
      collectors,
      others: (this.options.destinations ?? []).map((d) => d.stats()),
    };
  }

  /**
   * Opens the spool (recovering what a previous run left), gets the plan — the newest fresh
   * one the collectors answer with within `startPlanTimeoutMs`, else the newest cached one —
   * and starts reporting. Returns that plan, or undefined when there is none yet (the link
   * keeps asking, and calls `onPlan` when one comes).
   */
  async start(): Promise<Plan | undefined> {
    const { log } = this.options;
    this.spool = await Spool.open({
      stateDir: this.options.stateDir,
      log,
      ...this.options.spool,
      cursors: this.destinations().map((d) => d.name),
    });
    for (const c of this.channels) await c.open(this.spool.agentId, () => this.choosePlan());
    if (this.journal !== undefined) {
      const replayed = await replayJournal(this.spool, this.options);
      if (replayed > 0) this.replayedResults = replayed;
    }
    const timeoutMs = this.options.startPlanTimeoutMs ?? 5_000;
    const first = await Promise.all(
      this.channels.map(async (c) => {
        const cached = await c.loadCached();
        try {
          return { cached, fresh: await c.fetchFirstPlan(timeoutMs, cached) };
        } catch (err) {
          c.counts.planFailures++;
          return { cached, fresh: undefined, err };
        }
      }),
    );
    let plan = newestPlan(first.map((f) => f.fresh));
    if (plan === undefined) {
      const cached = newestPlan(first.map((f) => f.cached));
      const err = explain(first[0]?.err);
      if (cached !== undefined) {
        log.warn(
          { err, planVersion: cached.version, targets: cached.targets.length },
          'collector unreachable at start: probing with the cached plan',
        );
        plan = cached;
      } else {
        log.error({ err }, 'collector unreachable at start and no cached plan: waiting for one');
      }
    }
    if (plan !== undefined) {
      this.current = plan;
      this.reporter.setPlan(plan);
    }
    this.reporter.start();
    const spool = this.spool;
    first.forEach((f, i) => this.channels[i]!.startPlanLoop(f.fresh !== undefined, f.cached));
    for (const d of this.destinations()) {
      d.deliver({
        cursor: spool.cursor(d.name),
        highestSpooled: () => spool.stats().nextSeq - 1,
        onAppend: (listener) => spool.onAppend(listener),
      });
    }
    return plan;
  }

  /**
   * Closes the current batch into the spool (nothing is lost), gives delivery up to
   * `drainMs` to send what is spooled to the collectors that answer — the last exchange
   * succeeded, or one did within {@link recentAnswerMs} (one failure a moment ago, a NATS
   * node restarting, is retried within the drain) — then aborts every request and stops.
   * Whatever is left is sent after the next start.
   */
  async stop(drainMs = 1_000): Promise<void> {
    this.stopping = true;
    await this.reporter.stop();
    const nowMs = Date.now();
    const answering = this.destinations().filter(
      (c) => c.connected() || nowMs - (c.answeredAtMs?.() ?? -Infinity) < recentAnswerMs,
    );
    if (drainMs > 0 && (this.spool?.stats().batches ?? 0) > 0 && answering.length > 0) {
      const abort = new AbortController();
      await Promise.race([
        Promise.all(answering.map((c) => c.drained())),
        sleepUnlessAborted(drainMs, abort.signal),
      ]);
      abort.abort();
    }
    await Promise.allSettled(this.destinations().map((c) => c.stop()));
    await this.spool?.settle();
    // What this run produced, to audit a store against: results observed, and the batches,
    // full results and summaries they made.
    const s = this.stats();
    this.options.log.info(
      {
        spooled: s.spool?.batches ?? 0,
        acceptedSeq: s.acceptedSeq,
        observed: this.observed,
        replayedResults: this.replayedResults,
        ...s.reporter,
      },
      'collector link stopped',
    );
  }

  /** Every report destination: the collectors, then the others. */
  private destinations(): readonly ReportDestination[] {
    return [...this.channels, ...(this.options.destinations ?? [])];
  }

  /** A collector served another plan: follow the newest any of them serves. */
  private choosePlan(): void {
    if (this.stopping) return;
    const { log } = this.options;
    const plan = newestPlan(this.channels.map((c) => c.servedPlan()));
    if (plan === undefined || plan.version === this.current?.version) return;
    const previous = this.current?.version;
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
  }
}

/** The collectors of `options`: `collectors`, or the one `url` and `token` (none with `channels`). */
function endpointsOf(options: CollectorLinkOptions): readonly CollectorEndpoint[] {
  if (options.collectors !== undefined) {
    if (options.url !== undefined)
      throw new Error('CollectorLink: give url (one collector) or collectors, not both');
    if (options.collectors.length === 0)
      throw new Error('CollectorLink: collectors is empty (give at least one)');
    const keys = new Set(options.collectors.map((c) => collectorStateKey(c.url)));
    if (keys.size !== options.collectors.length)
      throw new Error('CollectorLink: the same collector URL is given twice');
    return options.collectors;
  }
  if (options.url === undefined && (options.channels?.length ?? 0) > 0) return [];
  if (options.url === undefined || options.token === undefined)
    throw new Error('CollectorLink: give url and token, or collectors, or channels');
  return [
    {
      url: options.url,
      token: options.token,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    },
  ];
}
