import { join } from 'node:path';
import pino from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Collector } from '../../collector/collector.js';
import { parseCollectorConfig } from '../../collector/config.js';
import { pollUntil } from '../../lab/poll-until.js';

/**
 * A collector in this process with `transport: nats` (one inventory host, `db`), started
 * and bound: returns once its durable `consumer` exists on the report stream. `lines`: more
 * top-level config lines (`agents: {…}`); `nats`: more fields of its `nats:` section.
 */
export async function startNatsCollector(o: {
  readonly dir: string;
  readonly url: string;
  readonly consumer: string;
  readonly token: string;
  /** A connection to the server, to see the consumer bound. */
  readonly nc: NatsConnection;
  readonly lines?: readonly string[];
  readonly nats?: string;
}): Promise<Collector> {
  const config = parseCollectorConfig(
    [
      'listen: 127.0.0.1:0',
      `dataDir: ${join(o.dir, 'data')}`,
      `tokens: [{ name: t, token: ${o.token} }]`,
      ...(o.lines ?? []),
      'inventory:',
      '  components:',
      '    - { name: db, address: 127.0.0.1, role: database, services: [] }',
      'transport: nats',
      `nats: { servers: [${o.url}], consumer: ${o.consumer}${o.nats === undefined ? '' : `, ${o.nats}`} }`,
      '',
    ].join('\n'),
    'collector.yaml',
  );
  const collector = await Collector.start(config, pino({ level: 'silent' }));
  const jsm = await jetstreamManager(o.nc);
  await pollUntil(`the consumer ${o.consumer} bound`, async () => {
    await jsm.consumers.info('FAULTLINE_REPORTS', o.consumer);
    return true;
  });
  return collector;
}
