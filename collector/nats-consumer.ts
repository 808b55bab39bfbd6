import type { NatsConnection } from '@nats-io/transport-node';
import {
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../lib/logger.js';
import { connectNats } from '../lib/nats.js';
import type { CollectorNatsSection } from './nats-config.js';

/** What a {@link ConsumerLoop} is for: how it binds, what it does with a message, what it logs. */
export interface ConsumerLoopOptions {
  readonly section: CollectorNatsSection;
  /** The NATS connection's name (`faultline-collector <consumer>`, …). */
  readonly connectionName: string;
  /** Creates what is missing (stream, durable consumer) and starts consuming. */
  readonly bind: (nc: NatsConnection) => Promise<ConsumerMessages>;
  /** One message; a throw ends this binding (bound again after a breath). */
  readonly take: (m: JsMsg) => void;
  readonly log: Logger;
  /** Logged (with the error) at the first failure to connect or bind in a row. */
  readonly notReady: string;
  /** Fields of those log lines (stream, consumer). */
  readonly logFields: Readonly<Record<string, unknown>>;
}

/**
 * A JetStream consumer kept bound, in the background: NATS may be away, or without a
 * JetStream quorum, when the collector starts (the API answers meanwhile), and a consumer
 * lost later (its leader's node dead, the consumer deleted) is bound again — after 1 s when
 * it ended, with backoff (250 ms doubling to 5 s) while binding fails. One loop for the
 * report ingest (collector/nats-ingest.ts) and a localiser's change feed
 * (collector/shard/feed.ts).
 */
export class ConsumerLoop {
  private nc: NatsConnection | undefined;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private closed = false;
  private wake: (() => void) | undefined;

  constructor(private readonly o: ConsumerLoopOptions) {}

  /** The connection, once made (to publish beside the consumer). */
  get connection(): NatsConnection | undefined {
    return this.nc;
  }

  /** Ends the current binding: it is bound again after a breath (a pull that went quiet). */
  rebind(): void {
    this.messages?.stop();
  }

  /** Starts connecting, binding and consuming in the background. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops consuming (unacked messages go to the next run) and disconnects. */
  async stop(): Promise<void> {
    this.closed = true;
    this.wake?.();
    this.messages?.stop();
    await this.loop?.catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
  }

  private async pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    const o = this.o;
    let failures = 0;
    while (!this.closed) {
      try {
        this.nc ??= await connectNats(o.section, o.connectionName);
        if (this.closed) return;
        this.messages = await o.bind(this.nc);
        failures = 0;
        for await (const m of this.messages) {
          if (this.closed) break;
          o.take(m);
        }
        // The consumer ended (deleted, or the stream with it): bound again after a breath.
        if (!this.closed) await this.pause(1_000);
      } catch (err) {
        if (this.closed) return;
        failures++;
        const fields = { err: (err as Error).message, ...o.logFields };
        if (failures === 1) o.log.warn(fields, o.notReady);
        else o.log.debug(fields, `${o.notReady} (still)`);
        await this.pause(Math.min(5_000, 250 * 2 ** Math.min(failures, 5)));
      }
    }
  }
}

/** How long a durable consumer's pulls last (see {@link consumeDurable}). */
export const pullExpiresMs = 2_000;

/**
 * Starts consuming a durable consumer that exists, as the report ingest and a localiser's
 * change feed do. Its JetStream API calls wait 2 s at most (or `nats.timeout`, if shorter):
 * after its leader's node is lost, the consumer asks whether it still exists before it pulls
 * again, and a 5 s wait on a leader not yet elected costs the whole wait again after the
 * election. Its pulls last {@link pullExpiresMs}, so the pull is renewed on the new leader
 * within 2 s of its election (5 s pulls took up to 8.5 s; the default 30 s, most of a
 * minute). The server sends a heartbeat every `idleHeartbeatMs` (default: half a pull)
 * while it has nothing to deliver.
 */
export async function consumeDurable(
  nc: NatsConnection,
  s: CollectorNatsSection,
  stream: string,
  durable: string,
  idleHeartbeatMs?: number,
): Promise<ConsumerMessages> {
  const consumer = await jetstream(nc, { timeout: Math.min(s.timeout, 2_000) }).consumers.get(
    stream,
    durable,
  );
  return consumer.consume({
    max_messages: 256,
    expires: pullExpiresMs,
    ...(idleHeartbeatMs === undefined ? {} : { idle_heartbeat: idleHeartbeatMs }),
  });
}

/** A stream {@link ensureStream} creates when it is missing. */
export interface StreamSpec {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly maxAgeMs: number;
  /** What the log line says was created (`NATS report stream created`). */
  readonly what: string;
}

/** Creates the stream when it is missing (file storage, the section's replicas and dedup window). */
export async function ensureStream(
  nc: NatsConnection,
  s: CollectorNatsSection,
  spec: StreamSpec,
  log: Logger,
): Promise<void> {
  const jsm = await jetstreamManager(nc, { timeout: s.timeout });
  try {
    await jsm.streams.info(spec.name);
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
    await jsm.streams.add({
      name: spec.name,
      subjects: [...spec.subjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: s.replicas,
      max_age: spec.maxAgeMs * 1_000_000,
      duplicate_window: s.duplicateWindow * 1_000_000,
    });
    log.info({ stream: spec.name, replicas: s.replicas }, `${spec.what} created`);
  }
}
