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
import {
  backoffDelayMs,
  defaultAuthRetryMs,
  defaultBackoffBaseMs,
  defaultBackoffCapMs,
  explain,
} from './link-replies.js';
import { PlanCache } from './plan-client.js';
import { DeliveryChannel } from './report-destination.js';
import type { DeliverySource, DestinationStats, PlanChannel } from './report-destination.js';
import { userAgent } from './report-upload.js';

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

/** Options of a {@link NatsChannel}. */
export interface NatsChannelOptions {
  /** The `nats:` section: servers, login, stream, subject and plan bucket names. */
  readonly nats: NatsSection;
  /** The subject token after the prefix: the agent's zone (label `zone`, else `default`). */
  readonly zone: string;
  /** Its spool cursor's name. */
  readonly name: string;
  readonly agent: string;
  /** Where its cached plan (`plan.json`) lives. */
  readonly stateDir: string;
  readonly log: Logger;
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
  /** How long after a refused login it tries again. Default 60 s. */
  readonly authRetryMs?: number;
  readonly random?: () => number;
}

/**
 * The agent's side of `transport: nats`, one channel of the CollectorLink (which batches,
 * spools, keeps the cursor and chooses the plan, as for an HTTP collector). Reports: every
 * batch of its cursor is published, in seq order and one at a time, to
 * `<subject>.<zone>.<agent>` with `Nats-Msg-Id` = agentId-seq; the cursor lets it go only
 * on JetStream's publish ack (stored on the stream's replicas), so an agent cut off from
 * NATS spools exactly as from an HTTP collector and replays in order when it can publish
 * again. A retry whose first ack was lost is dropped by the stream's duplicate window, and
 * beyond it by the collector's (agentId, seq) dedup. A batch over the servers'
 * max_payload is rejected (spool/rejected/, declared as dropped). Plans: it watches the
 * agent's key in the plan bucket (put there by the collectors) and caches the last one.
 * It connects in the background at open(), for ever: the agent probes and spools meanwhile.
 */
export class NatsChannel extends DeliveryChannel implements PlanChannel {
  private readonly cache: PlanCache;
  private nc: NatsConnection | undefined;
  /** Resolves with the JetStream client once connected (undefined when that failed for good). */
  private js: Promise<JetStreamClient | undefined> = Promise.resolve(undefined);
  private agentId = '';
  private onServed: ((plan: Plan) => void) | undefined;
  /** The last plan served: from the bucket, or the cached one. */
  private served: Plan | undefined;
  /** Whether a plan came from the bucket since start. */
  private fromBucket = false;
  private firstWaiters: ((plan: Plan) => void)[] = [];
  /** startPlanLoop ran: a new plan from the bucket goes to onServed. */
  private following = false;
  private stopWatch: (() => void) | undefined;
  /** Ends the send loop's wait after a failed publish (at a reconnect). */
  private retryNow: AbortController | undefined;
  private readonly random: () => number;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly authRetryMs: number;

  constructor(private readonly options: NatsChannelOptions) {
    super(options.name);
    this.cache = new PlanCache(options.stateDir, options.log);
    this.random = options.random ?? Math.random;
    this.baseMs = options.backoff?.baseMs ?? defaultBackoffBaseMs;
    this.capMs = options.backoff?.capMs ?? defaultBackoffCapMs;
    this.authRetryMs = options.authRetryMs ?? defaultAuthRetryMs;
  }

  /** Starts connecting (in the background) and watching the agent's key in the plan bucket. */
  open(agentId: string, onServed: (plan: Plan) => void): Promise<void> {
    this.agentId = agentId;
    this.onServed = onServed;
    this.js = this.connect();
    this.loops.push(this.planLoop());
    return Promise.resolve();
  }

  loadCached(): Promise<Plan | undefined> {
    return this.cache.load();
  }

  /** The plan from the bucket, waiting up to `timeoutMs` for it. */
  async fetchFirstPlan(timeoutMs: number): Promise<Plan> {
    if (this.fromBucket && this.served !== undefined) return this.served;
    const timer = new AbortController();
    const plan = await Promise.race([
      new Promise<Plan>((resolve) => this.firstWaiters.push(resolve)),
      sleepUnlessAborted(timeoutMs, AbortSignal.any([this.abort.signal, timer.signal])).then(
        () => undefined,
      ),
    ]);
    timer.abort();
    this.firstWaiters = [];
    if (plan === undefined) {
      const { nats } = this.options;
      throw new Error(
        `no plan in the NATS bucket ${nats.planBucket} within ${timeoutMs} ms (servers ${nats.servers.join(', ')}${this.nc === undefined ? ', not connected' : ''})`,
      );
    }
    return plan;
  }

  startPlanLoop(fresh: boolean, cached: Plan | undefined): void {
    this.following = true;
    if (fresh) return;
    // A plan from the bucket after fetchFirstPlan gave up: the link has not seen it yet.
    if (this.fromBucket && this.served !== undefined) this.onServed?.(this.served);
    else this.served ??= cached;
  }

  servedPlan(): Plan | undefined {
    return this.served;
  }

  protected override beforeJoin(): void {
    this.stopWatch?.();
  }

  protected async close(): Promise<void> {
    // A connection still being made is closed when it comes (connect()).
    await this.nc?.close().catch(() => undefined);
  }

  stats(): DestinationStats & { readonly planVersion: string | undefined } {
    return this.destinationStats(this.options.nats.servers.join(','), 'none', this.served?.version);
  }

  private async connect(): Promise<JetStreamClient | undefined> {
    const o = this.options;
    for (let failures = 1; this.nc === undefined; failures++) {
      try {
        this.nc = await connectNats(o.nats, `faultline-agent ${o.agent}`);
      } catch (err) {
        // Only a refused login or a bad option ends here (an unreachable server is retried
        // inside): tried again slowly, as an HTTP collector's 401, for a rotated credential.
        if (this.stopped) return undefined;
        const fields = { err: explain(err), retryInMs: this.authRetryMs, failures };
        if (failures === 1)
          o.log.error(fields, 'cannot connect to NATS: reports stay in the spool; retrying slowly');
        else o.log.debug(fields, 'cannot connect to NATS yet');
        await sleepUnlessAborted(this.authRetryMs, this.abort.signal);
        if (this.stopped) return undefined;
      }
    }
    if (this.stopped) {
      await this.nc.close().catch(() => undefined);
      return undefined;
    }
    void this.watchStatus(this.nc);
    return jetstream(this.nc, { timeout: o.nats.timeout });
  }

  /** The JetStream client once connected; undefined when that failed for good or at the stop. */
  private client(): Promise<JetStreamClient | undefined> {
    const stopped = new Promise<undefined>((resolve) => {
      if (this.stopped) resolve(undefined);
      else this.abort.signal.addEventListener('abort', () => resolve(undefined), { once: true });
    });
    return Promise.race([this.js, stopped]);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect')
        this.options.log.info({ event: s.type, server: s.server }, 'NATS connection');
      // Connected again (to another server, maybe): a batch waiting to be retried goes now.
      if (s.type === 'reconnect') this.retryNow?.abort();
    }
  }

  private backoff(attempt: number, capMs = this.capMs): Promise<void> {
    return sleepUnlessAborted(
      backoffDelayMs(attempt, this.baseMs, capMs, this.random),
      this.abort.signal,
    );
  }

  // ---- plan ----------------------------------------------------------------------------

  /** Watches this agent's key in the plan bucket; re-opens it after an error. */
  private async planLoop(): Promise<void> {
    const { log, nats } = this.options;
    const js = await this.client();
    if (js === undefined) return;
    let failures = 0;
    while (!this.stopped) {
      try {
        const kv = await new Kvm(js).open(nats.planBucket);
        const watch = await kv.watch({ key: natsToken(this.options.agent), ignoreDeletes: true });
        this.stopWatch = () => watch.stop();
        if (this.stopped) watch.stop();
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
        await this.backoff(failures);
      }
    }
  }

  private async takePlan(e: KvWatchEntry): Promise<void> {
    if (e.operation !== 'PUT') return;
    let plan: Plan;
    try {
      let raw = Buffer.from(e.value);
      if (raw[0] === 0x1f && raw[1] === 0x8b) raw = await gunzipAsync(raw);
      plan = PlanSchema.parse(JSON.parse(raw.toString()));
    } catch (err) {
      this.counts.planFailures++;
      this.options.log.error(
        { err: explain(err), revision: e.revision },
        'invalid plan in the bucket; ignored',
      );
      return;
    }
    this.counts.planFetches++;
    this.fromBucket = true;
    const changed = plan.version !== this.served?.version;
    if (changed) {
      await this.cache.save(plan);
      this.served = plan;
    }
    for (const resolve of this.firstWaiters.splice(0)) resolve(plan);
    if (changed && this.following) this.onServed?.(plan);
  }

  // ---- reports -------------------------------------------------------------------------

  protected async sendLoop(source: DeliverySource): Promise<void> {
    const js = await this.client();
    if (js === undefined) return;
    const { cursor } = source;
    const o = this.options;
    const subject = reportSubject(o.nats, o.zone, o.agent);
    let attempt = 0;
    while (!this.stopped) {
      this.pace.beforePeek();
      const batch = await cursor.peek().catch((err: unknown) => {
        o.log.error({ err }, 'reading the spool failed');
        return null;
      });
      if (batch === null) {
        await sleepUnlessAborted(this.capMs, this.abort.signal);
        continue;
      }
      if (batch === undefined) {
        await this.pace.idle(() => this.stopped);
        continue;
      }
      const h = natsHeaders();
      h.set(natsReportHeaders.encoding, 'gzip');
      h.set(natsReportHeaders.userAgent, userAgent);
      h.set(natsReportHeaders.backlog, String(Math.max(0, source.highestSpooled() - batch.seq)));
      this.counts.posts++;
      try {
        const ack = await js.publish(subject, batch.body, {
          msgID: `${this.agentId}-${batch.seq}`,
          headers: h,
          timeout: o.nats.timeout,
        });
        if (ack.duplicate) this.counts.duplicates++;
        else this.counts.accepted++;
      } catch (err) {
        if (this.stopped) return;
        if (isPayloadTooLarge(err)) {
          this.counts.rejected++;
          await cursor.reject(
            batch.seq,
            `larger than the NATS servers' max_payload: ${explain(err)}`,
          );
          continue;
        }
        this.counts.retries++;
        attempt++;
        if (this.isConnected || attempt === 1) {
          o.log.warn(
            { err: explain(err), seq: batch.seq, spooled: cursor.stats().batches },
            'report delivery to NATS failing; batches stay in the spool',
          );
        }
        this.isConnected = false;
        this.retryNow = new AbortController();
        await sleepUnlessAborted(
          backoffDelayMs(attempt, this.baseMs, Math.min(this.capMs, 5_000), this.random),
          AbortSignal.any([this.abort.signal, this.retryNow.signal]),
        );
        this.retryNow = undefined;
        continue;
      }
      if (!this.isConnected && attempt > 0) {
        o.log.info(
          { seq: batch.seq, spooled: cursor.stats().batches },
          'NATS taking reports again',
        );
      }
      attempt = 0;
      this.answered();
      this.counts.acceptedSeq = Math.max(this.counts.acceptedSeq, batch.seq);
      await cursor.ack(batch.seq);
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
