import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { headers as natsHeaders, InvalidArgumentError } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { KvWatchEntry } from '@nats-io/kv';
import { sleepUnlessAborted } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import { connectNats, natsToken, reportSubject } from '../lib/nats.js';
import type { NatsSection } from '../lib/nats-config.js';
import { PlanSchema } from '../wire/plan.js';
import type { Plan } from '../wire/plan.js';
import type { ProbeResult } from '../wire/result.js';
import { Journal } from './journal.js';
import { replayJournal } from './journal-replay.js';
import {
  backoffDelayMs,
  defaultBackoffBaseMs,
  defaultBackoffCapMs,
  explain,
} from './link-replies.js';
import { PlanClient } from './plan-client.js';
import { userAgent } from './report-upload.js';
import { Reporter } from './reporter.js';
import type { ReporterStats, ReportedTarget } from './reporter.js';
import { Spool } from './spool.js';
import type { SpoolStats } from './spool.js';

const gunzipAsync = promisify(gunzip);

/** Headers of a report batch published to JetStream (the HTTP link sends the same facts). */
export const natsReportHeaders = {
  /** Batches spooled behind this one (HTTP: `faultline-backlog`). */
  backlog: 'Faultline-Backlog',
  /** The agent's version (HTTP: `user-agent`). */
  userAgent: 'Faultline-User-Agent',
  /** `gzip`: the payload is the spooled gzip'd JSON, as the HTTP link posts it. */
  encoding: 'Content-Encoding',
} as const;

/** Options of a {@link NatsLink}. */
export interface NatsLinkOptions {
  /** The `nats:` section: servers, login, stream, subject and plan bucket names. */
  readonly nats: NatsSection;
  /** The subject token after the prefix: the agent's zone (label `zone`, else `default`). */
  readonly zone: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The agent's state directory: `agent-id`, `plan.json`, `spool/`, the journal. */
  readonly stateDir: string;
  readonly log: Logger;
  /** Called when a plan with another version than the current one arrives. */
  readonly onPlan: (plan: Plan) => void;
  readonly spool?: { readonly maxBytes?: number; readonly maxAgeMs?: number };
  readonly earlyFlushMs?: number | false;
  /** How long start() waits for the plan from the KV bucket before the cached one. Default 5 s. */
  readonly startPlanTimeoutMs?: number;
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
  /** Journal the open report period (SIGKILL-safe). Default true. */
  readonly journal?: boolean;
  readonly random?: () => number;
}

/** Counters since start (the delivery metrics read the same fields as the HTTP link's). */
export interface NatsLinkStats {
  /** Publishes of report batches (retries included). */
  readonly posts: number;
  /** Batches JetStream stored. */
  readonly accepted: number;
  /** Batches JetStream already had (a retry whose ack was lost; its dedup window dropped it). */
  readonly duplicates: number;
  /** Batches refused as too large for the servers' max_payload, moved to spool/rejected/. */
  readonly rejected: number;
  readonly retries: number;
  /** Highest seq JetStream acknowledged. */
  readonly acceptedSeq: number;
  readonly replayedResults: number;
  readonly implausibleAcks: 0;
  readonly seqRefusals: 0;
  readonly enrolState: 'none';
  readonly planVersion: string | undefined;
  /** Plans taken from the KV bucket. */
  readonly planFetches: number;
  readonly planFailures: number;
  /** Whether the last publish was acknowledged. */
  readonly connected: boolean;
  readonly spool: SpoolStats | undefined;
  readonly reporter: ReporterStats;
}

/**
 * The agent's side of `transport: nats`. Reports: every spooled batch is published, in seq
 * order and one at a time, to `<subject>.<zone>.<agent>` with `Nats-Msg-Id` = agentId-seq;
 * the spool lets it go only on JetStream's publish ack (stored on the stream's replicas),
 * so an agent cut off from NATS spools exactly as from an HTTP collector and replays in
 * order when it can publish again. A retry whose first ack was lost is dropped by the
 * stream's duplicate window, and beyond it by the collector's (agentId, seq) dedup.
 * Plans: the agent watches its key in the plan bucket (put there by the collectors) and
 * caches the last one in `plan.json` for a start without NATS.
 */
export class NatsLink {
  private readonly reporter: Reporter;
  private readonly journal: Journal | undefined;
  private readonly plans: PlanClient;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private spool: Spool | undefined;
  private current: Plan | undefined;
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private wake: (() => void) | undefined;
  private appended = false;
  private drained: (() => void)[] = [];
  private connected = false;
  private firstPlan: ((plan: Plan) => void) | undefined;
  private stopWatch: (() => void) | undefined;
  private readonly random: () => number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private counts = {
    posts: 0,
    accepted: 0,
    duplicates: 0,
    rejected: 0,
    retries: 0,
    acceptedSeq: 0,
    replayedResults: 0,
    planFetches: 0,
    planFailures: 0,
  };

  constructor(private readonly options: NatsLinkOptions) {
    this.random = options.random ?? Math.random;
    this.baseMs = options.backoff?.baseMs ?? defaultBackoffBaseMs;
    this.capMs = options.backoff?.capMs ?? defaultBackoffCapMs;
    this.journal =
      options.journal === false ? undefined : new Journal(options.stateDir, options.log);
    // Only its plan.json cache is used: the plan itself comes from the KV bucket.
    this.plans = new PlanClient({
      base: '',
      dispatcher: undefined as never,
      agent: options.agent,
      labels: options.labels,
      stateDir: options.stateDir,
      log: options.log,
      token: () => Promise.reject(new Error('no HTTP with transport nats')),
      refused: () => Promise.resolve(false),
      headers: () => ({}),
      signal: () => this.abort.signal,
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
    this.observed++;
    this.reporter.observe(result, target);
  };

  /** Probe results handed to the link since start. */
  private observed = 0;

  /** The plan in force (from the bucket or cached), if any. */
  plan(): Plan | undefined {
    return this.current;
  }

  stats(): NatsLinkStats {
    return {
      ...this.counts,
      implausibleAcks: 0,
      seqRefusals: 0,
      enrolState: 'none',
      planVersion: this.current?.version,
      connected: this.connected,
      spool: this.spool?.stats(),
      reporter: this.reporter.stats(),
    };
  }

  /**
   * Opens the spool (replaying a killed run's journal), connects to NATS (in the
   * background when it is away: the agent probes and spools meanwhile), waits up to
   * `startPlanTimeoutMs` for the plan from the bucket, else takes the cached one, and
   * starts reporting. Returns that plan, or undefined when there is none yet.
   */
  async start(): Promise<Plan | undefined> {
    const o = this.options;
    this.spool = await Spool.open({ stateDir: o.stateDir, log: o.log, ...o.spool });
    if (this.journal !== undefined) {
      const replayed = await replayJournal(this.spool, o);
      if (replayed > 0) this.counts.replayedResults = replayed;
    }
    this.spool.onAppend(() => {
      this.appended = true;
      this.wake?.();
    });
    const cached = await this.plans.loadCached();
    const fresh = new Promise<Plan>((resolve) => {
      this.firstPlan = resolve;
    });
    this.loops = [this.connectThenRun()];
    const plan = await Promise.race([
      fresh,
      sleepUnlessAborted(o.startPlanTimeoutMs ?? 5_000, this.abort.signal).then(() => undefined),
    ]);
    this.firstPlan = undefined;
    const chosen = plan ?? this.current ?? cached;
    if (plan === undefined && cached !== undefined) {
      o.log.warn(
        { planVersion: cached.version, targets: cached.targets.length },
        'no plan from NATS at start: probing with the cached plan',
      );
    }
    if (chosen !== undefined) {
      this.current = chosen;
      this.reporter.setPlan(chosen);
    }
    this.reporter.start();
    return chosen;
  }

  /** Spools the open batch, gives delivery up to `drainMs`, then stops and disconnects. */
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
    this.stopWatch?.();
    await Promise.allSettled(this.loops);
    await this.spool?.settle();
    await this.nc?.close().catch(() => undefined);
    // What this run produced, to audit a store against: results observed, and the batches,
    // full results and summaries they made.
    this.options.log.info(
      {
        spooled: this.spool?.stats().batches ?? 0,
        acceptedSeq: this.counts.acceptedSeq,
        observed: this.observed,
        replayedResults: this.counts.replayedResults,
        ...this.reporter.stats(),
      },
      'NATS link stopped',
    );
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async connectThenRun(): Promise<void> {
    const o = this.options;
    try {
      this.nc = await connectNats(o.nats, `faultline-agent ${o.agent}`);
    } catch (err) {
      // Only a refused login or a bad option ends here: an unreachable server is retried.
      o.log.error({ err: explain(err) }, 'cannot connect to NATS: reports stay in the spool');
      return;
    }
    if (this.stopped) {
      await this.nc.close();
      return;
    }
    void this.watchStatus(this.nc);
    this.js = jetstream(this.nc, { timeout: o.nats.timeout });
    await Promise.allSettled([this.sendLoop(), this.planLoop()]);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect')
        this.options.log.info({ event: s.type, server: s.server }, 'NATS connection');
    }
  }

  // ---- plan ----------------------------------------------------------------------------

  /** Watches this agent's key in the plan bucket; re-opens it after an error. */
  private async planLoop(): Promise<void> {
    const { log, nats } = this.options;
    let failures = 0;
    while (!this.stopped) {
      try {
        const kv = await new Kvm(this.js!).open(nats.planBucket);
        const watch = await kv.watch({ key: natsToken(this.options.agent), ignoreDeletes: true });
        this.stopWatch = () => watch.stop();
        failures = 0;
        for await (const e of watch) {
          if (this.stopped) break;
          await this.takePlan(e);
        }
      } catch (err) {
        if (this.stopped) return;
        failures++;
        this.counts.planFailures++;
        const fields = { err: explain(err), bucket: nats.planBucket, failures };
        if (failures === 1) log.warn(fields, 'watching the plan bucket failed; retrying');
        await sleepUnlessAborted(
          backoffDelayMs(failures, this.baseMs, this.capMs, this.random),
          this.abort.signal,
        );
      }
    }
  }

  private async takePlan(e: KvWatchEntry): Promise<void> {
    const { log } = this.options;
    if (e.operation !== 'PUT') return;
    let plan: Plan;
    try {
      let raw = Buffer.from(e.value);
      if (raw[0] === 0x1f && raw[1] === 0x8b) raw = await gunzipAsync(raw);
      plan = PlanSchema.parse(JSON.parse(raw.toString()));
    } catch (err) {
      this.counts.planFailures++;
      log.error({ err: explain(err), revision: e.revision }, 'invalid plan in the bucket; ignored');
      return;
    }
    this.counts.planFetches++;
    if (plan.version === this.current?.version) {
      this.firstPlan?.(plan);
      return;
    }
    const previous = this.current?.version;
    await this.plans.save(plan);
    this.current = plan;
    this.reporter.setPlan(plan);
    if (this.firstPlan !== undefined) {
      this.firstPlan(plan);
      return;
    }
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

  // ---- reports -------------------------------------------------------------------------

  private async waitForAppend(): Promise<void> {
    if (this.appended || this.stopped) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    this.wake = undefined;
  }

  private async sendLoop(): Promise<void> {
    const spool = this.spool!;
    const o = this.options;
    const subject = reportSubject(o.nats, o.zone, o.agent);
    let attempt = 0;
    while (!this.stopped) {
      this.appended = false;
      const batch = await spool.peek().catch((err: unknown) => {
        o.log.error({ err }, 'reading the spool failed');
        return null;
      });
      if (batch === null) {
        await sleepUnlessAborted(this.capMs, this.abort.signal);
        continue;
      }
      if (batch === undefined) {
        for (const resolve of this.drained.splice(0)) resolve();
        await this.waitForAppend();
        continue;
      }
      const h = natsHeaders();
      h.set(natsReportHeaders.encoding, 'gzip');
      h.set(natsReportHeaders.userAgent, userAgent);
      const nextSeq = spool.stats().nextSeq;
      h.set(natsReportHeaders.backlog, String(Math.max(0, nextSeq - 1 - batch.seq)));
      this.counts.posts++;
      try {
        const ack = await this.js!.publish(subject, batch.body, {
          msgID: `${spool.agentId}-${batch.seq}`,
          headers: h,
          timeout: o.nats.timeout,
        });
        if (ack.duplicate) this.counts.duplicates++;
        else this.counts.accepted++;
      } catch (err) {
        if (this.stopped) return;
        if (isPayloadTooLarge(err)) {
          this.counts.rejected++;
          await spool.reject(
            batch.seq,
            `larger than the NATS servers' max_payload: ${explain(err)}`,
          );
          continue;
        }
        this.counts.retries++;
        attempt++;
        if (this.connected || attempt === 1) {
          o.log.warn(
            { err: explain(err), seq: batch.seq, spooled: spool.stats().batches },
            'report delivery to NATS failing; batches stay in the spool',
          );
        }
        this.connected = false;
        await sleepUnlessAborted(
          backoffDelayMs(attempt, this.baseMs, Math.min(this.capMs, 5_000), this.random),
          this.abort.signal,
        );
        continue;
      }
      if (!this.connected && attempt > 0) {
        o.log.info({ seq: batch.seq, spooled: spool.stats().batches }, 'NATS taking reports again');
      }
      attempt = 0;
      this.connected = true;
      this.counts.acceptedSeq = Math.max(this.counts.acceptedSeq, batch.seq);
      await spool.ack(batch.seq);
    }
  }
}

/**
 * A publish refused because the payload is over the server's max_payload (the client checks
 * it before sending: the only invalid argument a valid subject and a Buffer can get).
 */
function isPayloadTooLarge(err: unknown): boolean {
  return err instanceof InvalidArgumentError;
}
