import { z } from 'zod';
import type { ConfigPath } from '../lib/config-file.js';
import { natsSectionSchema, transportSchema } from '../lib/nats-config.js';
import type { NatsSection, Transport } from '../lib/nats-config.js';

/* `collector:` and `collectors:` of the agent config: where the plan comes from and reports go. */

/** How one collector is reached. */
const connection = {
  url: z
    .string()
    .regex(/^https?:\/\/[^\s]+$/, 'expected an http(s) URL such as https://collector:7070')
    .describe(
      'Collector URL: the agent takes its plan from it and reports to it (then `targets` must be empty).',
    ),
  token: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Bearer token (a bootstrap token is exchanged for a per-agent one at first contact). Prefer `tokenFile` or FAULTLINE_TOKEN.',
    ),
  tokenFile: z.string().min(1).optional().describe('File holding the token (first line).'),
  caFile: z
    .string()
    .min(1)
    .optional()
    .describe('PEM CA certificates trusted for an https collector instead of the system ones.'),
  requireTls: z
    .boolean()
    .default(false)
    .describe('Refuse to start unless the collector URL is https:// (or loopback).'),
};

const stateDir = z
  .string()
  .min(1)
  .describe('Where the spool, the cached plan, the credential and the journal live.');

const planPolicy = z
  .object({
    allowTargets: z
      .array(z.string().min(1).max(256))
      .max(10_000)
      .optional()
      .describe(
        'Where plan targets may point: CIDR blocks, addresses, host names (`*.` prefix wildcard). Absent: anywhere.',
      ),
    allowTcpSend: z
      .boolean()
      .default(false)
      .describe('Run tcp targets whose plan carries a raw payload (`send`).'),
    allowHttpMethods: z
      .array(z.enum(['GET', 'HEAD', 'POST']))
      .default(['GET', 'HEAD'])
      .describe('HTTP methods a plan may use.'),
    allowHttpHeaders: z
      .boolean()
      .default(false)
      .describe('Run http targets whose plan carries custom request headers or a body.'),
  })
  .strict()
  .describe('What a plan from the collector may make this agent do.');

const oneToken = {
  message: 'give token or tokenFile, not both',
  path: ['tokenFile'],
};

export const collectorSchema = z
  .object({
    ...connection,
    url: connection.url
      .optional()
      .describe(
        'Collector URL: the agent takes its plan from it and reports to it (then `targets` must be empty). Required unless `transport: nats`.',
      ),
    stateDir,
    plan: planPolicy.prefault({}),
    transport: transportSchema,
    nats: natsSectionSchema.optional(),
  })
  .strict()
  .refine((c) => !(c.token !== undefined && c.tokenFile !== undefined), oneToken)
  .refine((c) => c.transport !== 'http' || c.url !== undefined, {
    message: 'the collector URL is required (or `transport: nats` with a `nats:` section)',
    path: ['url'],
  })
  .refine((c) => c.transport !== 'nats' || c.nats !== undefined, {
    message: 'transport: nats needs a `nats:` section (servers, at least)',
    path: ['nats'],
  })
  .describe(
    'Take the plan from a collector and report to it, instead of `targets` (over HTTP, or through NATS JetStream with `transport: nats`).',
  );

export const collectorsSchema = z
  .array(
    z
      .object({
        ...connection,
        stateDir: stateDir
          .optional()
          .describe(
            "The agent's one state dir (spool, journal; each collector's credential and cached plan under `collectors/`): give it in one item, or the same in several.",
          ),
        plan: planPolicy
          .optional()
          .describe(
            'What a plan may make this agent do, whichever collector serves it: give it in one item, or the same in several.',
          ),
        transport: z
          .literal('http', {
            error:
              'collectors: reports over HTTP; for NATS give one `collector:` with `transport: nats` (every collector has its own durable consumer on the one stream)',
          })
          .optional()
          .describe('Always http here (NATS: `collector:` with `transport: nats`).'),
      })
      .strict()
      .refine((c) => !(c.token !== undefined && c.tokenFile !== undefined), oneToken),
  )
  .min(1)
  .max(16)
  .describe(
    'Report to every one of these collectors over HTTP (two in two failure domains for HA), instead of `collector`: each has its own cursor over the one spool; the agent follows the newest plan any of them serves. (With NATS, `collector: {transport: nats}`: every collector has its own durable consumer on the one stream.)',
  );

/** `collector:` of the agent config, or one item of `collectors:` with the agent-wide keys filled. */
export interface AgentCollectorConfig {
  /** The collector's URL; absent only with `transport: nats` (`collector:` alone). */
  readonly url?: string;
  readonly token?: string;
  readonly tokenFile?: string;
  readonly caFile?: string;
  readonly requireTls: boolean;
  readonly stateDir: string;
  readonly plan: {
    readonly allowTargets?: readonly string[];
    readonly allowTcpSend: boolean;
    readonly allowHttpMethods: readonly ('GET' | 'HEAD' | 'POST')[];
    readonly allowHttpHeaders: boolean;
  };
  /** How reports and plans travel: HTTP to `url` (also when absent: every item of `collectors:`), or NATS JetStream. */
  readonly transport?: Transport;
  readonly nats?: NatsSection;
}

const defaultPlanPolicy: AgentCollectorConfig['plan'] = {
  allowTcpSend: false,
  allowHttpMethods: ['GET', 'HEAD'],
  allowHttpHeaders: false,
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The collectors of a parsed config: `collector:` as one, or `collectors:` with the
 * agent-wide `stateDir` and `plan` (given in one item, or identically in several) filled
 * into every item. Reports both keys at once, a missing or differing state dir or plan,
 * and the same URL twice. Undefined when the config has neither.
 */
export function resolveCollectors(
  cfg: Record<string, unknown>,
  report: (path: ConfigPath, message: string) => void,
): AgentCollectorConfig[] | undefined {
  if (cfg.collector !== undefined && cfg.collectors !== undefined) {
    report(
      ['collectors'],
      'give `collector` (one) or `collectors` (a list), not both: move the one into the list',
    );
    return undefined;
  }
  if (isRecord(cfg.collector)) return [cfg.collector as unknown as AgentCollectorConfig];
  if (!Array.isArray(cfg.collectors)) return undefined;
  const items = (cfg.collectors as unknown[]).filter(isRecord);
  const agreed = (key: 'stateDir' | 'plan'): { value: unknown; ok: boolean } => {
    let value: unknown;
    let firstAt = -1;
    let ok = true;
    items.forEach((item, i) => {
      if (item[key] === undefined) return;
      if (firstAt < 0) {
        value = item[key];
        firstAt = i;
      } else if (JSON.stringify(item[key]) !== JSON.stringify(value)) {
        report(
          ['collectors', i, key],
          `every collector shares the agent's one ${key}: this differs from collectors[${firstAt}].${key} (give it once, or the same everywhere)`,
        );
        ok = false;
      }
    });
    return { value, ok };
  };
  const dir = agreed('stateDir');
  const plan = agreed('plan');
  if (dir.value === undefined && items.length > 0) {
    report(
      ['collectors', 0, 'stateDir'],
      "stateDir is required: where the spool, the journal and each collector's credential live (give it in one item)",
    );
  }
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    if (typeof item.url !== 'string') return;
    const url = item.url.replace(/\/+$/, '');
    const before = seen.get(url);
    if (before !== undefined)
      report(
        ['collectors', i, 'url'],
        `the same collector as collectors[${before}].url: give each once`,
      );
    else seen.set(url, i);
  });
  if (!dir.ok || !plan.ok || typeof dir.value !== 'string') return undefined;
  return items.map((item) => ({
    ...(item as unknown as AgentCollectorConfig),
    stateDir: dir.value as string,
    plan: (plan.value ?? defaultPlanPolicy) as AgentCollectorConfig['plan'],
  }));
}
