import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../../lib/logger.js';
import type { CollectorNatsSection } from '../nats-config.js';
import { ConsumerLoop, consumeDurable } from '../nats-consumer.js';
import { BadChange, ChangeOrder, decodeChange } from './changes.js';
import type { ShardFedMatrix } from './fed-matrix.js';
import { ensureChangeStream, resyncSubject } from './publisher.js';

/** Deliveries of a change that still finds a gap before the missing ones are given up on. */
const gapGiveUpDeliveries = 10;
const gapRetryMs = 500;

/** Counters since start. */
export interface LocaliserFeedStats {
  readonly applied: number;
  readonly duplicates: number;
  readonly gaps: number;
  readonly gapsGivenUp: number;
  readonly refused: number;
  readonly bytes: number;
}

/**
 * The localiser's side of the change stream (`nats.role: localiser`): a durable consumer
 * (`nats.consumer`) on `<changeSubject>.*`, each message applied to the fed matrix in its
 * shard's order, once (ChangeOrder), and acked after. A redelivery is dropped; one ahead of
 * a missing one is taken again shortly; a gap that does not fill is given up on, and the
 * shard is asked for a snapshot. At start (when its state, in memory, is empty) it asks
 * every shard for one.
 */
export class LocaliserFeed {
  private readonly consumer: ConsumerLoop;
  private readonly order = new ChangeOrder();
  private counts = { applied: 0, duplicates: 0, gaps: 0, gapsGivenUp: 0, refused: 0, bytes: 0 };

  constructor(
    private readonly section: CollectorNatsSection,
    private readonly matrix: ShardFedMatrix,
    private readonly log: Logger,
  ) {
    this.consumer = new ConsumerLoop({
      section,
      connectionName: `faultline-localiser ${section.consumer}`,
      bind: (nc) => this.bind(nc),
      take: (m) => this.take(m),
      log,
      notReady: 'NATS change consumer not ready; retrying',
      logFields: { stream: section.changeStream },
    });
  }

  stats(): LocaliserFeedStats {
    return { ...this.counts };
  }

  /** Where each shard's changes stand. */
  positions(): ReturnType<ChangeOrder['positions']> {
    return this.order.positions();
  }

  /** Starts consuming in the background (NATS may not be there yet). Resolves at once. */
  start(): Promise<void> {
    this.consumer.start();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    await this.consumer.stop();
  }

  /** The change stream and this localiser's durable consumer; asks every shard for a snapshot. */
  private async bind(nc: NatsConnection): Promise<ConsumerMessages> {
    const s = this.section;
    await ensureChangeStream(nc, s, this.log);
    const jsm = await jetstreamManager(nc, { timeout: s.timeout });
    // New: what came before this consumer existed is in the snapshots asked for below.
    await jsm.consumers.add(s.changeStream, {
      durable_name: s.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      ack_wait: 10_000_000_000,
      max_ack_pending: 1_000,
      filter_subject: `${s.changeSubject}.*`,
    });
    const messages = await consumeDurable(nc, s, s.changeStream, s.consumer);
    nc.publish(resyncSubject(s));
    this.log.info(
      { stream: s.changeStream, consumer: s.consumer },
      'localising from the shards’ changes',
    );
    return messages;
  }

  private take(m: JsMsg): void {
    let c;
    try {
      c = decodeChange(m.data);
    } catch (err) {
      if (!(err instanceof BadChange)) throw err;
      this.counts.refused++;
      this.log.error({ subject: m.subject, err: err.message }, 'invalid change: terminated');
      m.term();
      return;
    }
    this.counts.bytes += m.data.length;
    let verdict = this.order.verdict(c);
    if (verdict === 'gap') {
      if (m.info.deliveryCount < gapGiveUpDeliveries) {
        this.counts.gaps++;
        m.nak(gapRetryMs);
        return;
      }
      this.counts.gapsGivenUp++;
      this.log.warn(
        { shard: c.shard, epoch: c.epoch, seq: c.seq, at: this.order.positions().get(c.shard) },
        'changes missing from the stream: taking what came, and asking for a snapshot',
      );
      // Only that shard's snapshot: every shard's at once (a million paths) clogged the
      // stream and made more gaps.
      this.consumer.connection?.publish(resyncSubject(this.section), c.shard);
      verdict = 'apply';
    }
    if (verdict === 'duplicate') {
      this.counts.duplicates++;
      m.ack();
      return;
    }
    try {
      this.matrix.applyChange(c);
    } catch (err) {
      this.log.error({ err, shard: c.shard, seq: c.seq }, 'change not applied; retried');
      m.nak(gapRetryMs);
      return;
    }
    this.order.commit(c);
    this.counts.applied++;
    m.ack();
  }
}
