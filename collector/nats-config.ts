import { z } from 'zod';
import { durationField } from '../lib/config-fields.js';
import { inputBlindAfterMs } from './input-stall.js';
import { natsFields, natsSection } from '../lib/nats-config.js';

/** The default durable consumer name of a collector. */
export const defaultConsumer = 'faultline-collector';
/** Stream of the ingest shards' path-state changes and agent liveness (`role: ingest`). */
export const defaultChangeStream = 'FAULTLINE_CHANGES';
/** Subject prefix of the changes: `<changeSubject>.<shard>`; resync requests on `<changeSubject>-resync`. */
export const defaultChangeSubject = 'faultline.changes';

/** What one collector does with `transport: nats` (see `role`). */
export const collectorRoles = ['both', 'ingest', 'localiser'] as const;
export type CollectorRole = (typeof collectorRoles)[number];

const shardNameRe = /^[A-Za-z0-9_-]{1,64}$/;

/** `nats.shard:` of an ingest collector: which report subjects it takes. */
const shardSchema = z
  .discriminatedUnion(
    'by',
    [
      z
        .object({
          by: z.literal('zone').describe('Take the reports of the agents of these zones.'),
          zones: z
            .array(z.string().min(1).max(128))
            .min(1, 'expected at least one zone')
            .describe('The zones (the agents’ `zone` label) this shard takes.'),
          name: z
            .string()
            .regex(shardNameRe, 'expected 1–64 characters from A-Z a-z 0-9 _ -')
            .optional(),
        })
        .strict(),
      z
        .object({
          by: z
            .literal('hash')
            .describe('Take the agents whose name hashes to `index` of `count`.'),
          index: z.number().int().min(0).describe('This shard’s share, 0 … count − 1.'),
          count: z.number().int().min(1).max(1024).describe('How many hash shards there are.'),
          name: z
            .string()
            .regex(shardNameRe, 'expected 1–64 characters from A-Z a-z 0-9 _ -')
            .optional(),
        })
        .strict(),
    ],
    { error: 'expected by: zone (with zones: […]) or by: hash (with index and count)' },
  )
  .refine((s) => s.by !== 'hash' || s.index < s.count, {
    message: 'expected index < count (hash shards are numbered 0 … count − 1)',
    path: ['index'],
  })
  .describe(
    'With role: ingest, the share of the report subjects this collector takes: by zone, or by a hash of the agent name. Absent: every report.',
  );

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
  role: z
    .enum(collectorRoles)
    .default('both')
    .describe(
      'both: ingest the reports and diagnose them (one collector, the default). ingest: a shard that keeps the path matrix of its share (`shard:`) and publishes only path-state changes and agent liveness to `changeStream`. localiser: consumes that stream (its durable consumer is `consumer`) and keeps the one global diagnosis, alerts and incidents.',
    ),
  shard: shardSchema.optional(),
  changeStream: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected 1–64 characters from A-Z a-z 0-9 _ -')
    .default(defaultChangeStream)
    .describe('JetStream stream of the shards’ changes (role ingest and localiser).'),
  changeSubject: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/,
      'expected dot-separated tokens of A-Z a-z 0-9 _ -',
    )
    .default(defaultChangeSubject)
    .describe('Subject prefix of the changes: `<changeSubject>.<shard>`.'),
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
  blindAfter: durationField(1_000, 3_600_000)
    .default(inputBlindAfterMs)
    .describe(
      'How long reports may be unable to reach this collector (no connection, or the report stream or its consumer without a leader that answers) before its diagnosis says it is blind (FaultlineCollectorCutOff). Meanwhile the agents’ liveness holds: their silence is the transport’s. Longer than a JetStream leader election (4–9 s) and the consumer’s renewal (2 s).',
    ),
}).superRefine((n, ctx) => {
  if (n.shard !== undefined && n.zone !== undefined)
    ctx.addIssue({
      code: 'custom',
      message: 'give zone or shard, not both (shard: { by: zone, zones: [...] } takes zones)',
      path: ['zone'],
    });
  if (n.shard !== undefined && n.role !== 'ingest')
    ctx.addIssue({
      code: 'custom',
      message: `a share of the reports is for role: ingest (this collector is role: ${n.role})`,
      path: ['shard'],
    });
  if (n.zone !== undefined && n.role === 'localiser')
    ctx.addIssue({
      code: 'custom',
      message: 'a localiser takes no reports: zone is for role: both or ingest',
      path: ['zone'],
    });
});

/** The parsed collector `nats:` section (durations in ms). */
export type CollectorNatsSection = z.output<typeof collectorNatsSchema>;

/** The parsed `nats.shard:` of an ingest collector. */
export type ShardSection = NonNullable<CollectorNatsSection['shard']>;

/**
 * The name a shard signs its changes with: `shard.name`, else from its share
 * (`zone-<zones>`, `hash-<index>of<count>`).
 */
export function shardName(s: ShardSection): string {
  if (s.name !== undefined) return s.name;
  return s.by === 'zone' ? `zone-${s.zones.join('-')}` : `hash-${s.index}of${s.count}`;
}
