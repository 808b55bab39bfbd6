import { z } from 'zod';
import { durationField } from './config-fields.js';

/**
 * The `nats:` section shared by agent.yaml and collector.yaml (`transport: nats`): where
 * the NATS servers are, how to log in, and the names of the JetStream stream, subjects and
 * KV bucket the two sides meet at. Both sides must agree on the names; the defaults do.
 */

/** Stream of report batches (subjects `<reportSubject>.<zone>.<agent>`). */
export const defaultReportStream = 'FAULTLINE_REPORTS';
/** Subject prefix of report batches. */
export const defaultReportSubject = 'faultline.reports';
/** KV bucket of plans, one key per agent. */
export const defaultPlanBucket = 'faultline-plans';

// Stream, bucket and consumer names: NATS refuses . * > and white space in them.
const natsNameRe = /^[A-Za-z0-9_-]{1,64}$/;
const natsNameHelp = 'expected 1–64 characters from A-Z a-z 0-9 _ -';
const subjectRe = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** The fields of `nats:` both sides have. */
export const natsFields = {
  servers: z
    .array(
      z
        .string()
        .regex(
          /^((nats|tls):\/\/)?[^\s/]+:\d{1,5}$/,
          'expected nats://host:port (or tls://host:port, or host:port)',
        ),
    )
    .min(1)
    .describe('NATS servers to connect to (any one will do; the client learns the cluster).'),
  token: z.string().min(1).optional().describe('NATS token. Prefer `tokenFile`.'),
  tokenFile: z.string().min(1).optional().describe('File holding the NATS token (first line).'),
  user: z.string().min(1).optional().describe('NATS user (with `password`).'),
  password: z.string().min(1).optional().describe('NATS password of `user`.'),
  credsFile: z
    .string()
    .min(1)
    .optional()
    .describe('NATS credentials file (JWT + nkey seed), as `nsc` writes it.'),
  caFile: z
    .string()
    .min(1)
    .optional()
    .describe('PEM CA certificates trusted for tls:// servers instead of the system ones.'),
  stream: z
    .string()
    .regex(natsNameRe, natsNameHelp)
    .default(defaultReportStream)
    .describe('JetStream stream the report batches go to.'),
  subject: z
    .string()
    .regex(subjectRe, 'expected dot-separated tokens of A-Z a-z 0-9 _ -')
    .default(defaultReportSubject)
    .describe('Subject prefix of report batches: `<subject>.<zone>.<agent>`.'),
  planBucket: z
    .string()
    .regex(natsNameRe, natsNameHelp)
    .default(defaultPlanBucket)
    .describe('JetStream KV bucket holding each agent’s plan (key: the agent).'),
  timeout: durationField(100, 120_000)
    .default(5_000)
    .describe('How long a publish waits for JetStream’s ack before it is retried.'),
};

interface Login {
  readonly token?: string | undefined;
  readonly tokenFile?: string | undefined;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  readonly credsFile?: string | undefined;
}

/** `nats:` of agent.yaml (`fields`: natsFields) or collector.yaml (natsFields and its own). */
export function natsSection<F extends typeof natsFields>(fields: F) {
  const login = (n: unknown): Login => n as Login;
  return z
    .object(fields)
    .strict()
    .refine((n) => !(login(n).token !== undefined && login(n).tokenFile !== undefined), {
      message: 'give token or tokenFile, not both',
      path: ['tokenFile'],
    })
    .refine((n) => (login(n).user === undefined) === (login(n).password === undefined), {
      message: 'give user and password together',
      path: ['password'],
    })
    .refine(
      (n) => {
        const l = login(n);
        return (
          [l.token ?? l.tokenFile, l.user, l.credsFile].filter((x) => x !== undefined).length <= 1
        );
      },
      { message: 'give one way to log in: token(File), user + password, or credsFile', path: [] },
    )
    .describe('NATS JetStream as the transport of reports and plans (`transport: nats`).');
}

/** `nats:` of agent.yaml. */
export const natsSectionSchema = natsSection(natsFields);

/** The parsed `nats:` section. */
export type NatsSection = z.output<typeof natsSectionSchema>;

/** The transports a report can take: HTTP to one collector (the default), or NATS JetStream. */
export const transports = ['http', 'nats'] as const;
export type Transport = (typeof transports)[number];

/** `transport:` of agent.yaml and collector.yaml. */
export const transportSchema = z
  .enum(transports)
  .default('http')
  .describe(
    'http: report to the collector over HTTP (the default). nats: through NATS JetStream (`nats:`), for fleets one collector cannot take, or two collectors that each see every report.',
  );
