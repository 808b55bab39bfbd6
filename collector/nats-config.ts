import { z } from 'zod';
import { durationField } from '../lib/config-fields.js';
import { natsFields, natsSection } from '../lib/nats-config.js';

/** The default durable consumer name of a collector. */
export const defaultConsumer = 'faultline-collector';

/**
 * `nats:` of collector.yaml: the agents' fields (servers, login, names) and what only a
 * collector sets — its durable consumer, the zone it takes, how the stream and the plan
 * bucket are created. Durations parse to ms.
 */
export const collectorNatsSchema = natsSection({
  ...natsFields,
  consumer: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected 1–64 characters from A-Z a-z 0-9 _ -')
    .default(defaultConsumer)
    .describe(
      'Durable consumer of this collector. Each name sees every report: two collectors with two names are a highly available pair; collectors sharing one name split the reports.',
    ),
  zone: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe(
      'Take only this zone’s reports (agents publish under their `zone` label): an ingest shard. Absent: every zone.',
    ),
  replicas: z
    .number()
    .int()
    .min(1)
    .max(5)
    .default(1)
    .describe(
      'Replicas of the report stream and the plan bucket, when this collector creates them (3 on a cluster).',
    ),
  maxAge: durationField(60_000, 30 * 86_400_000)
    .default(86_400_000)
    .describe('How long the stream keeps a batch: a collector away longer misses it.'),
  duplicateWindow: durationField(1_000, 86_400_000)
    .default(120_000)
    .describe(
      'Within it, JetStream drops a batch published again with the same id (an agent’s retry).',
    ),
});

/** The parsed collector `nats:` section (durations in ms). */
export type CollectorNatsSection = z.output<typeof collectorNatsSchema>;
