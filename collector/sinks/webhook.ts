import { createHmac } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { errnoText } from '../../lib/config-file.js';
import { httpUrlField, postBody, sinkNameField, sinkTimeoutField } from './http.js';
import type {
  AlertBatch,
  AlertNotice,
  DeliveryTarget,
  IncidentRef,
  SinkConfigBase,
  SinkDefinition,
} from './types.js';

/**
 * A generic webhook: one POST per batch of alert status changes (fired, resolved), with the
 * diagnosis and the incidents, signed with HMAC-SHA256 when a secret is set; or, with
 * `format: slack`, a Slack incoming-webhook message (`{text, blocks}`). Retries, backoff and
 * the dead-letter file are the dispatcher's.
 *
 * Verifying a delivery: `X-Faultline-Signature: sha256=<hex>` is the HMAC-SHA256 of the raw
 * body with the secret; compare in constant time. The body's `sentAt` (also in
 * `X-Faultline-Timestamp`, Unix seconds) is covered by the signature: refuse old ones to
 * stop replays.
 */

export const signatureHeader = 'x-faultline-signature';
export const timestampHeader = 'x-faultline-timestamp';

export const webhookFormats = ['json', 'slack'] as const;
export type WebhookFormat = (typeof webhookFormats)[number];

/** A resolved `type: webhook` entry. Holds the secret: never log it. */
export interface WebhookSinkConfig extends SinkConfigBase {
  readonly type: 'webhook';
  readonly url: string;
  /** HMAC key, from `secret` or `secretFile`; without it nothing is signed. */
  readonly secret?: string;
  readonly format: WebhookFormat;
  readonly timeoutMs: number;
}

const minSecretChars = 16;
const maxSecretChars = 4096;

// The secret's value is checked in resolve, where messages can leave it out.
const secretSlot = z
  .unknown()
  .meta({ type: 'string', minLength: minSecretChars, maxLength: maxSecretChars });

const schema = z
  .object({
    type: z.literal('webhook'),
    name: sinkNameField(),
    url: httpUrlField().describe(
      'Where to POST (a Slack incoming-webhook URL with format: slack).',
    ),
    secret: secretSlot
      .optional()
      .describe(
        `HMAC-SHA256 key (${minSecretChars}+ characters) signing each body: header X-Faultline-Signature: sha256=<hex>. Or secretFile.`,
      ),
    secretFile: z
      .string()
      .min(1)
      .max(4096)
      .optional()
      .describe('A file holding the secret (surrounding whitespace ignored), instead of `secret`.'),
    format: z
      .enum(webhookFormats, {
        error: (iss) =>
          iss.input === undefined ? undefined : `expected one of: ${webhookFormats.join(', ')}`,
      })
      .default('json')
      .describe(
        'json: the alerts, the diagnosis and the incidents; slack: a Slack incoming-webhook message.',
      ),
    timeout: sinkTimeoutField(),
  })
  .strict()
  .describe('A webhook: one signed POST per change (fired, resolved), retried with backoff.');

/** The hex HMAC-SHA256 of `body` with `secret`, as sent after `sha256=`. */
export function signBody(body: string, secret: string): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

function alertJson(a: AlertNotice): Record<string, unknown> {
  return {
    status: a.status,
    fingerprint: a.fingerprint,
    labels: a.labels,
    annotations: a.annotations,
    startsAt: new Date(a.startsAtMs).toISOString(),
    endsAt: new Date(a.endsAtMs).toISOString(),
    ...(a.generatorUrl === undefined ? {} : { generatorURL: a.generatorUrl }),
    ...(a.incident === undefined ? {} : { incident: a.incident }),
  };
}

/** The incidents of `alerts`, each once, in order of appearance. */
function incidentsOf(alerts: readonly AlertNotice[]): IncidentRef[] {
  const seen = new Map<string, IncidentRef>();
  for (const a of alerts) if (a.incident !== undefined) seen.set(a.incident.id, a.incident);
  return [...seen.values()];
}

/** The `format: json` body: version 1 of the Faultline webhook payload. */
export function webhookJsonBody(alerts: readonly AlertNotice[], batch: AlertBatch): string {
  return JSON.stringify({
    version: 1,
    sender: 'faultline',
    sentAt: new Date(batch.sentAtMs).toISOString(),
    status: batch.firing > 0 ? 'firing' : 'resolved',
    firing: batch.firing,
    alerts: alerts.map(alertJson),
    incidents: incidentsOf(alerts),
    diagnosis: batch.diagnosis,
  });
}

// Slack caps a message at 50 blocks and a section's text at 3000 characters.
const maxSlackAlerts = 10;
const maxSlackSectionChars = 2900;

/** Slack mrkdwn needs &, < and > escaped; everything else is literal. */
function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function slackHeadline(a: AlertNotice): string {
  const severity = a.labels.severity ?? 'unknown';
  return a.status === 'firing'
    ? `:red_circle: FIRING (${severity}) ${a.labels.alertname ?? 'Faultline'}`
    : `:large_green_circle: RESOLVED ${a.labels.alertname ?? 'Faultline'}`;
}

/** The `format: slack` body: Slack incoming-webhook `{text, blocks}`. */
export function slackBody(alerts: readonly AlertNotice[], batch: AlertBatch): string {
  const text = alerts.map((a) => `${slackHeadline(a)}: ${a.annotations.summary ?? ''}`).join('\n');
  const blocks: Record<string, unknown>[] = [];
  for (const a of alerts.slice(0, maxSlackAlerts)) {
    const summary = slackEscape(a.annotations.summary ?? '');
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: clip(`*${slackHeadline(a)}*\n${summary}`, maxSlackSectionChars),
      },
    });
    const facts = [
      `*component:* ${slackEscape(a.labels.component ?? '')}`,
      `*since:* ${new Date(a.startsAtMs).toISOString()}`,
    ];
    if (a.annotations.ruled_out !== undefined) {
      facts.push(`*ruled out:* ${slackEscape(a.annotations.ruled_out)}`);
    }
    blocks.push({
      type: 'context',
      elements: [{ type: 'mrkdwn', text: clip(facts.join('  ·  '), maxSlackSectionChars) }],
    });
    const links: string[] = [];
    if (a.generatorUrl !== undefined) links.push(`<${a.generatorUrl}|Open in Faultline>`);
    if (a.incident?.url !== undefined) links.push(`<${a.incident.url}|Incident ${a.incident.id}>`);
    if (a.annotations.runbook_url !== undefined) {
      links.push(`<${a.annotations.runbook_url}|Runbook>`);
    }
    if (links.length > 0) {
      blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: links.join('  ·  ') }] });
    }
    blocks.push({ type: 'divider' });
  }
  if (alerts.length > maxSlackAlerts) {
    blocks.push({
      type: 'context',
      elements: [
        { type: 'mrkdwn', text: `…and ${alerts.length - maxSlackAlerts} more alert changes` },
      ],
    });
  }
  blocks.push({
    type: 'context',
    elements: [
      {
        type: 'mrkdwn',
        text: `${batch.firing} Faultline alert${batch.firing === 1 ? '' : 's'} firing`,
      },
    ],
  });
  return JSON.stringify({ text: clip(text, 3000), blocks });
}

function secretProblem(secret: string): string | undefined {
  if (secret.length < minSecretChars) {
    return `expected at least ${minSecretChars} characters (has ${secret.length}; the value is never shown)`;
  }
  if (secret.length > maxSecretChars) return `expected at most ${maxSecretChars} characters`;
  return undefined;
}

/** The `webhook` sink kind (and Slack, with `format: slack`). */
export const webhookSink: SinkDefinition<WebhookSinkConfig> = {
  type: 'webhook',
  description: 'a generic signed JSON webhook, or a Slack incoming webhook (format: slack)',
  schema,
  resolve(entry, name, report) {
    let secret: string | undefined;
    if (entry.secret !== undefined && entry.secretFile !== undefined) {
      report(['secretFile'], 'secret and secretFile are mutually exclusive: keep one', undefined, {
        pointAt: 'key',
      });
      return undefined;
    }
    if (entry.secret !== undefined) {
      if (typeof entry.secret !== 'string') {
        report(['secret'], 'expected a string (the value is never shown)');
        return undefined;
      }
      const why = secretProblem(entry.secret);
      if (why !== undefined) {
        report(['secret'], why);
        return undefined;
      }
      secret = entry.secret;
    } else if (typeof entry.secretFile === 'string') {
      const file = entry.secretFile;
      let text: string;
      try {
        if (statSync(file).isDirectory()) {
          report(['secretFile'], 'cannot read the secret file: it is a directory', file);
          return undefined;
        }
        text = readFileSync(file, 'utf8').trim();
      } catch (err) {
        report(['secretFile'], `cannot read the secret file: ${errnoText(err)}`, file);
        return undefined;
      }
      const why = secretProblem(text);
      if (why !== undefined) {
        report(['secretFile'], `the secret in the file: ${why}`, file);
        return undefined;
      }
      secret = text;
    }
    const format = entry.format === 'slack' ? 'slack' : 'json';
    return {
      type: 'webhook',
      name,
      url: String(entry.url),
      ...(secret === undefined ? {} : { secret }),
      format,
      timeoutMs: typeof entry.timeout === 'number' ? entry.timeout : 10_000,
    };
  },
  targets(config, env) {
    const target: DeliveryTarget = {
      name: config.name,
      type: 'webhook',
      mode: 'notify',
      encode: config.format === 'slack' ? slackBody : webhookJsonBody,
      send: (body, signal) => {
        const headers: Record<string, string> = {
          'user-agent': env.userAgent,
          [timestampHeader]: String(Math.floor(Date.now() / 1000)),
        };
        if (config.secret !== undefined) {
          headers[signatureHeader] = `sha256=${signBody(body, config.secret)}`;
        }
        return postBody(config.url, body, headers, config.timeoutMs, signal);
      },
    };
    return [target];
  },
};
