import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { FaultlineError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { fromNatsToken, natsToken } from '../lib/nats.js';
import type { InputStall } from './input-stall.js';
import { ConsumerLoop, consumeDurable, ensureStream } from './nats-consumer.js';
import { shardName } from './nats-config.js';
import type { CollectorNatsSection } from './nats-config.js';
import { hashShardOf } from './shard/changes.js';
import { agentVersionOf } from '../wire/report.js';
import type { ReportBatch } from '../wire/report.js';
import type { Plan } from '../wire/plan.js';
import { validReport } from './api/reports.js';
import type { AgentLiveness, IngestOutcome, ReportBody } from './types.js';

/** What the NATS ingest needs from the collector: the same ingest and plans HTTP uses. */
export interface NatsIngestCore {
  ingest(
    batch: ReportBatch,
    receivedAtMs: number,
    body?: ReportBody,
    credential?: undefined,
    backlog?: number,
    version?: string,
  ): IngestOutcome;
  plan(agent: string): Plan;
  agents(): AgentLiveness[];
  /** Agents that have reported: a cheap sign that one is new. */
  fleetSize(): number;
}

/** Counters since start. */
export interface NatsIngestStats {
  readonly accepted: number;
  readonly duplicates: number;
  /** Batches taken again later: a gap (an earlier batch not yet redelivered), a store failure. */
  readonly retried: number;
  /** Gaps that outlived `gapGiveUpDeliveries`: the missing batches declared lost. */
  readonly gapsDeclared: number;
  /** Batches refused for good (invalid, forbidden, implausible): terminated in the stream. */
  readonly refused: number;
  readonly plansPublished: number;
  /** Batches of other shards' agents, acked unread (a hash shard, or a shard of several zones). */
  readonly skipped: number;
}

/**
 * Whether a report subject's (zone, agent) is in an ingest shard's share (`nats.shard`):
 * its zone is one of `zones`, or its agent's name hashes to `index` of `count`.
 */
export function inShare(s: CollectorNatsSection, zone: string, agent: string): boolean {
  const shard = s.shard;
  if (shard === undefined) return s.zone === undefined || zone === s.zone;
  if (shard.by === 'zone') return shard.zones.includes(zone);
  return hashShardOf(agent, shard.count) === shard.index;
}

/**
 * The durable consumer and the subject filter an ingest collector binds. A shard binds a
 * consumer of its own (`<consumer>-<shard>`): shards sharing one would split the reports
 * at random instead of by their share. One zone is filtered by the server; several zones,
 * or a hash share, by the collector, which acks the other shards' batches unread.
 */
export function reportBinding(s: CollectorNatsSection): { consumer: string; filter: string } {
  const zones =
    s.shard === undefined
      ? s.zone === undefined
        ? []
        : [s.zone]
      : s.shard.by === 'zone'
        ? s.shard.zones
        : [];
  return {
    consumer: s.shard === undefined ? s.consumer : `${s.consumer}-${shardName(s.shard)}`,
    filter: `${s.subject}.${zones.length === 1 ? natsToken(zones[0]!) : '*'}.>`,
  };
}

/** Deliveries of a batch that still finds a gap before its missing ones count as lost. */
const gapGiveUpDeliveries = 30;
const gapRetryMs = 1_000;
const storeRetryMs = 5_000;
/** How often the plans of new agents are looked for. */
const planCheckMs = 1_000;
/**
 * How often the report stream and the consumer are asked whether they have a leader, and how
 * long an answer is waited for: a stream without a leader is known within a second (its
 * consumer may still send heartbeats, but no agent's report gets into it).
 */
const inputCheckMs = 250;
const inputAnswerMs = 750;
/** The server sends the consumer a heartbeat this often while it has no report to deliver. */
const idleHeartbeatMs = 500;
/**
 * A consumer that delivered nothing, not even a heartbeat, for this long is a stall: known
 * before any agent is late (a late-after is at least 1.5 s), so a collector that hears
 * nobody never reads every agent late together and says its own side is cut off.
 */
const inputQuietMs = 1_250;
/**
 * A consumer quiet this long while connected is bound again: after a JetStream heal its
 * pull can stay quiet though the stream and the consumer have leaders again (seen in the
 * lab: reports published, none delivered for 45 s).
 */
const rebindQuietMs = 6_000;
const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

/** The headers the agent's NATS channel sets (agent/nats-channel.ts). */
const headerBacklog = 'Faultline-Backlog';
const headerUserAgent = 'Faultline-User-Agent';

/**
 * The collector's side of `transport: nats`. It makes sure the report stream and the plan
 * bucket exist (creating them with `replicas`), binds its durable consumer (its own name:
 * two collectors with two names each see every report), and feeds each message through the
 * very ingest HTTP batches take (validation, the (agentId, seq) watermark, the store commit,
 * the matrix); it acks a message only after the store committed it (or already had it), so
 * a collector killed mid-stream gets what it had not committed again, and its watermark
 * drops what it had. A batch that comes before an earlier one of its agent (a redelivery
 * still on its way) is taken again a second later; one that is refused for good
 * (invalid, implausible) is terminated in the stream and logged.
 *
 * Plans: every agent's plan is put in the bucket under its name when it changes; agents
 * watch their key.
 */
export class NatsIngest {
  private js: JetStreamClient | undefined;
  private kv: KV | undefined;
  private readonly consumer: ConsumerLoop;
  private planTimer: NodeJS.Timeout | undefined;
  private readonly published = new Map<string, string>();
  private lastFullPassMs = 0;
  private lastFleetSize = -1;
  private planning = false;
  private closed = false;
  /** The stall the leader checks found (see checkInput). */
  private checkStall: InputStall | undefined;
  private inputTimer: NodeJS.Timeout | undefined;
  private checkingInput = false;
  private answersInStall = 0;
  /** When the quiet consumer was last bound again (see rebindQuietMs). */
  private reboundMs = 0;
  /** When the consumer last delivered a report or a heartbeat (undefined: not yet bound). */
  private heardMs: number | undefined;
  private counts = {
    accepted: 0,
    duplicates: 0,
    retried: 0,
    gapsDeclared: 0,
    refused: 0,
    plansPublished: 0,
    skipped: 0,
  };

  constructor(
    private readonly section: CollectorNatsSection,
    private readonly core: NatsIngestCore,
    /** The inventory's agents: they get a plan before they have reported. */
    private readonly inventoryAgents: readonly string[],
    private readonly log: Logger,
    /** How often every agent's plan is recomputed (HTTP agents ask this often). */
    private readonly planRefreshMs = 30_000,
  ) {
    this.consumer = new ConsumerLoop({
      section,
      connectionName: `faultline-collector ${section.consumer}`,
      bind: (nc) => this.bind(nc),
      take: (m) => this.takeOrRetry(m),
      log,
      notReady: 'NATS consumer not ready; retrying',
      logFields: { stream: section.stream, consumer: section.consumer },
    });
  }

  stats(): NatsIngestStats {
    return { ...this.counts };
  }

  /**
   * Since when reports cannot reach this collector, and why, or undefined while they can:
   * its consumer has delivered neither a report nor a heartbeat for {@link inputQuietMs}
   * (the pull is dead: NATS away, or the consumer's leader lost), or the report stream or
   * the consumer has no leader that answers it (a JetStream node lost: a new leader is
   * elected within seconds; the collector's own NATS node cut off from the cluster's
   * quorum: until the heal). Then the agents' silence is the transport's, not theirs
   * (collector.ts does not count it). Read at any moment: a quiet consumer is a stall from
   * the last thing it delivered.
   */
  inputStall(nowMs = Date.now()): InputStall | undefined {
    if (this.checkStall !== undefined) return this.checkStall;
    const heard = this.heardMs;
    if (heard !== undefined && nowMs - heard > inputQuietMs)
      return {
        sinceMs: heard,
        reason: `the consumer ${reportBinding(this.section).consumer} has delivered nothing, not even a heartbeat, for ${seconds(nowMs - heard)}`,
      };
    return undefined;
  }

  /** Called when {@link inputStall} begins or ends. */
  onInputStall: (stall: InputStall | undefined) => void = () => undefined;

  /**
   * Starts connecting, creating what is missing and consuming, in the background: NATS
   * may be away or without a JetStream quorum when the collector starts (the API answers
   * meanwhile), and a consumer lost later is bound again. Resolves at once.
   */
  start(): Promise<void> {
    this.consumer.start();
    this.planTimer = setInterval(() => void this.publishPlans(), planCheckMs);
    this.inputTimer = setInterval(() => void this.checkInput(), inputCheckMs);
    return Promise.resolve();
  }

  /** Stops consuming (unacked messages go to the next run) and disconnects. */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.planTimer !== undefined) clearInterval(this.planTimer);
    if (this.inputTimer !== undefined) clearInterval(this.inputTimer);
    await this.consumer.stop();
  }

  /** The consumer delivered something: a report or a heartbeat. */
  private heard(nowMs = Date.now()): void {
    this.heardMs = nowMs;
    if (this.lastSeenStall === undefined) return;
    this.noteInputStall();
    // Reports flow again: ask at once whether the stream has a leader again.
    if (this.checkStall !== undefined) void this.checkInput();
  }

  /** The stall as the last look found it, to call {@link onInputStall} on a change. */
  private lastSeenStall: InputStall | undefined;

  /** Logs and calls {@link onInputStall} when the stall began or ended since the last look. */
  private noteInputStall(): void {
    const was = this.lastSeenStall;
    const now = this.inputStall();
    this.lastSeenStall = now;
    if ((now === undefined) === (was === undefined)) return;
    if (now !== undefined)
      this.log.warn({ reason: now.reason }, 'reports cannot reach this collector');
    else if (was !== undefined)
      this.log.info({ stalledMs: Date.now() - was.sinceMs }, 'reports reach this collector again');
    this.onInputStall(now);
  }

  /**
   * Asks the report stream and the consumer for their state (each answered by its leader,
   * within a second): whether reports can reach this collector now.
   */
  private async checkInput(): Promise<void> {
    this.noteInputStall();
    if (this.checkingInput || this.closed) return;
    const now = Date.now();
    const quietMs = this.heardMs === undefined ? 0 : now - this.heardMs;
    if (
      quietMs > rebindQuietMs &&
      now - this.reboundMs > rebindQuietMs &&
      this.consumer.connection?.isClosed() === false
    ) {
      this.log.warn({ quietMs }, 'the report consumer is quiet; binding it again');
      this.reboundMs = now;
      this.consumer.rebind();
    }
    this.checkingInput = true;
    let why: string | undefined;
    try {
      const nc = this.consumer.connection;
      if (nc === undefined || nc.isClosed()) {
        why = `not connected to NATS (${this.section.servers.join(', ')})`;
      } else {
        const s = this.section;
        const jsm = await jetstreamManager(nc, { timeout: inputAnswerMs, checkAPI: false });
        const { consumer } = reportBinding(s);
        why = await jsm.streams.info(s.stream).then(
          () => undefined,
          (err: Error) => `the report stream ${s.stream} does not answer: ${err.message}`,
        );
        why ??= await jsm.consumers.info(s.stream, consumer).then(
          () => undefined,
          (err: Error) => `its consumer ${consumer} does not answer: ${err.message}`,
        );
      }
    } catch (err) {
      why = `NATS does not answer: ${(err as Error).message}`;
    } finally {
      this.checkingInput = false;
    }
    if (this.closed) return;
    if (why === undefined) {
      // Two answers in a row end a stall: a leader about to lose its quorum may answer once.
      if (this.checkStall !== undefined && ++this.answersInStall < 2)
        setTimeout(() => void this.checkInput(), 100).unref();
      else this.checkStall = undefined;
    } else {
      this.answersInStall = 0;
      // Dated from the last thing the consumer delivered (nothing after it can be counted
      // on), or from the quiet stall going on; a stall going on keeps its start (its
      // consumer may still send heartbeats while the stream has no leader).
      const since =
        this.checkStall?.sinceMs ??
        this.inputStall()?.sinceMs ??
        Math.min(this.heardMs ?? Number.POSITIVE_INFINITY, Date.now() - inputAnswerMs);
      this.checkStall = { sinceMs: since, reason: why };
    }
    this.noteInputStall();
  }

  /** The stream, the durable consumer and the plan bucket, created when missing. */
  private async bind(nc: NatsConnection): Promise<ConsumerMessages> {
    const s = this.section;
    await ensureStream(
      nc,
      s,
      {
        name: s.stream,
        subjects: [`${s.subject}.>`],
        maxAgeMs: s.maxAge,
        what: 'NATS report stream',
      },
      this.log,
    );
    const jsm = await jetstreamManager(nc, { timeout: s.timeout });
    const { consumer: durable, filter } = reportBinding(s);
    // The ack wait bounds how long a batch delivered to a killed collector waits for its
    // redelivery: longer than the longest ingest of a batch, short for a quick recovery.
    await jsm.consumers.add(s.stream, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: 10_000_000_000,
      max_ack_pending: 1_000,
      filter_subject: filter,
    });
    this.js = jetstream(nc, { timeout: s.timeout });
    this.kv ??= await new Kvm(this.js).create(s.planBucket, { replicas: s.replicas, history: 1 });
    // Heartbeats every 0.5 s: after a node holding the consumer's leader dies, its silence
    // is known within 1.25 s (inputStall).
    const messages = await consumeDurable(nc, s, s.stream, durable, idleHeartbeatMs);
    // The first binding starts the clock; binding again after a quiet spell does not end it.
    this.heardMs ??= Date.now();
    void (async () => {
      for await (const n of messages.status()) if (n.type === 'heartbeat') this.heard();
    })().catch(() => undefined);
    void this.publishPlans();
    this.log.info(
      { stream: s.stream, consumer: durable, filter, planBucket: s.planBucket },
      'consuming reports from NATS',
    );
    return messages;
  }

  /** One message; one that could not be ingested (the store failing) is taken again later. */
  private takeOrRetry(m: JsMsg): void {
    try {
      this.take(m);
    } catch (err) {
      this.log.error({ err, subject: m.subject }, 'report from NATS not ingested; retried');
      this.counts.retried++;
      m.nak(storeRetryMs);
    }
  }

  /** One message: decoded, validated, ingested, and acked only once the store has it. */
  private take(m: JsMsg): void {
    const receivedAtMs = Date.now();
    this.heard(receivedAtMs);
    if (this.section.shard !== undefined) {
      const tokens = m.subject.slice(this.section.subject.length + 1).split('.');
      if (!inShare(this.section, fromNatsToken(tokens[0] ?? ''), fromNatsToken(tokens[1] ?? ''))) {
        this.counts.skipped++;
        m.ack();
        return;
      }
    }
    let batch: ReportBatch;
    try {
      batch = validReport(JSON.parse(gunzipSync(m.data).toString()) as unknown);
      const bad = batch.results.findIndex((r) => r.agent !== batch.agent);
      if (bad >= 0)
        throw new Error(`results[${bad}].agent is not the batch's agent ${batch.agent}`);
      // The subject is the credential: NATS lets an agent's user publish only under its own
      // name, so a batch may speak only for the agent its subject names.
      const named = m.subject.slice(m.subject.lastIndexOf('.') + 1);
      if (named !== natsToken(batch.agent))
        throw new Error(
          `the batch of agent ${JSON.stringify(batch.agent)} came on ${m.subject}, another agent's subject`,
        );
    } catch (err) {
      this.counts.refused++;
      this.log.error(
        { subject: m.subject, err: (err as Error).message },
        'invalid report batch on the stream: terminated',
      );
      // No reason on the TERM: nats-server before 2.10.4 does not take one, and redelivers.
      m.term();
      return;
    }
    const rawBacklog = m.headers?.get(headerBacklog) ?? '';
    const backlog = /^[0-9]{1,9}$/.test(rawBacklog) ? Number(rawBacklog) : 0;
    const version = agentVersionOf(m.headers?.get(headerUserAgent));
    const body: ReportBody = { bytes: Buffer.from(m.data), gzip: true };
    let outcome: IngestOutcome;
    try {
      outcome = this.core.ingest(batch, receivedAtMs, body, undefined, backlog, version);
      if (outcome.status === 'gap' && m.info.deliveryCount >= gapGiveUpDeliveries) {
        // The missing batches never came back (aged out of the stream, or this store is
        // newer than them): declared lost, as an agent whose spool dropped them would.
        const missing = batch.seq - outcome.expectedSeq;
        this.log.error(
          { agent: batch.agent, seq: batch.seq, expectedSeq: outcome.expectedSeq, missing },
          'batches missing from the stream: declared lost',
        );
        this.counts.gapsDeclared++;
        const declared = { ...batch, dropped: { batches: missing, results: 0 } };
        outcome = this.core.ingest(declared, receivedAtMs, undefined, undefined, backlog, version);
      }
    } catch (err) {
      if (!(err instanceof FaultlineError && err.code === 'FL_ERR_STORE')) throw err;
      this.counts.retried++;
      this.log.error({ err, agent: batch.agent, seq: batch.seq }, 'report not stored; retried');
      m.nak(storeRetryMs);
      return;
    }
    switch (outcome.status) {
      case 'accepted':
        this.counts.accepted++;
        m.ack();
        return;
      case 'duplicate':
        this.counts.duplicates++;
        m.ack();
        return;
      case 'gap':
        this.counts.retried++;
        m.nak(gapRetryMs);
        return;
      case 'conflict': {
        // The name is bound to another agent id until it has been silent long enough.
        this.counts.retried++;
        const waitMs = (outcome.freeAtMs ?? receivedAtMs + 60_000) - receivedAtMs;
        m.nak(Math.min(Math.max(waitMs, gapRetryMs), 60_000));
        return;
      }
      case 'forbidden':
      case 'implausible':
        this.counts.refused++;
        this.log.error(
          { agent: batch.agent, seq: batch.seq, reason: outcome.message },
          'report batch refused: terminated',
        );
        m.term();
        return;
    }
  }

  /**
   * Puts plans in the bucket: at once for an agent that has none there yet (a new agent
   * waits for it), and every agent's whose version changed once per `planRefreshMs` — what
   * HTTP agents cost by asking each refresh; recomputing the whole fleet's plans on every
   * change of the fleet took more of the core than ingest itself while 2,000 agents came up.
   * Yields to the loop between agents, so reports keep flowing during a pass.
   */
  private async publishPlans(): Promise<void> {
    if (this.planning || this.closed || this.kv === undefined) return;
    const now = Date.now();
    const full = now - this.lastFullPassMs >= this.planRefreshMs;
    const fleet = this.core.fleetSize();
    if (!full && fleet === this.lastFleetSize) return;
    this.lastFleetSize = fleet;
    const names = new Set([...this.inventoryAgents, ...this.core.agents().map((a) => a.agent)]);
    const due = full ? [...names] : [...names].filter((n) => !this.published.has(n));
    if (due.length === 0) return;
    this.planning = true;
    try {
      for (const name of due) {
        if (this.closed) return;
        const plan = this.core.plan(name);
        if (this.published.get(name) !== plan.version) {
          await this.kv.put(natsToken(name), gzipSync(JSON.stringify(plan)));
          this.published.set(name, plan.version);
          this.counts.plansPublished++;
        } else await yieldToLoop();
      }
      if (full) this.lastFullPassMs = now;
    } catch (err) {
      if (!this.closed) this.log.warn({ err }, 'publishing plans to NATS failed; retrying');
    } finally {
      this.planning = false;
    }
  }
}
