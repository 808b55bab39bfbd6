import { z } from 'zod';
import { agentNameSchema, asNumber, durationField, isRecord } from '../lib/config-fields.js';
import { pathSchema, readTextFile } from './config-report.js';
import type { Report } from './config-report.js';

/**
 * The collector config's `tokens`, `viewers`, `readAccess` and `identity` sections: who may
 * report, enrol and read (collector/auth.ts checks the secrets they hold), and how agent
 * names are bound to agent ids (collector/store.ts).
 */

const minTokenChars = 16;
const maxTokenChars = 1024;
// RFC 6750 b64token: what can follow "Bearer " without quoting.
const tokenRe = /^[A-Za-z0-9\-._~+/]+=*$/;

/** One agent token (collector/auth.ts TokenEntry). The secret is never shown in messages. */
export interface CollectorToken {
  /** Name for logs and messages. */
  readonly name: string;
  /** The secret, from `token` or read from `tokenFile`. */
  readonly token: string;
  /** Refused with a message naming it, so its owner knows to rotate. */
  readonly revoked: boolean;
  /** `agent`: reports and fetches plans; `bootstrap`: may only enrol (POST /api/v1/enrol). */
  readonly role: TokenRole;
  /**
   * The agent names the token may use (`*` the only wildcard); absent: any name (a fleet
   * token).
   */
  readonly agents?: readonly string[];
}

/** One viewer token: what the read endpoints take (no role, no agent names). */
export type ViewerToken = Pick<CollectorToken, 'name' | 'token' | 'revoked'>;

/** Who may use the read endpoints (paths, agents, diagnosis, incidents). */
export const readAccessModes = ['token', 'open'] as const;
export type ReadAccess = (typeof readAccessModes)[number];
/** What a token may do: report (`agent`) or only exchange itself for a per-agent one. */
export const tokenRoles = ['agent', 'bootstrap'] as const;
export type TokenRole = (typeof tokenRoles)[number];

/** A name pattern of a token's `agents`: an agent name in which `*` matches any run of characters. */
const agentPatternRe = /^[A-Za-z0-9._:*-]{1,128}$/;

// A token's value is checked in resolveConfig, where its messages can leave it out: zod's
// own issues would print it as the "actual" value. The JSON Schema shows it as a string.
const secretSlot = z.unknown().meta({
  type: 'string',
  minLength: minTokenChars,
  maxLength: maxTokenChars,
  pattern: tokenRe.source,
});

export const tokenSchema = z
  .object({
    name: agentNameSchema.describe('Name of the token in logs and refusals (never the secret).'),
    token: secretSlot
      .optional()
      .describe(
        `The secret agents send as "Authorization: Bearer …": ${minTokenChars}–${maxTokenChars} characters from A-Z a-z 0-9 - . _ ~ + / (e.g. \`openssl rand -hex 32\`). Or tokenFile.`,
      ),
    tokenFile: pathSchema
      .optional()
      .describe('A file holding the secret (surrounding whitespace ignored), instead of `token`.'),
    revoked: z
      .boolean()
      .default(false)
      .describe('Refuse this token, naming it, so its holder knows to rotate.'),
    role: z
      .enum(tokenRoles)
      .default('agent')
      .describe(
        'agent: reports and fetches plans with this token. bootstrap: may only enrol (POST /api/v1/enrol), exchanging itself for a per-agent secret bound to one name and agent id.',
      ),
    agents: z
      .array(
        z.string().regex(agentPatternRe, {
          error:
            'expected an agent name or pattern: 1–128 characters from A-Z a-z 0-9 . _ : - and * (any run of characters)',
        }),
      )
      .min(1)
      .optional()
      .describe(
        'The agent names this token may use, e.g. [db-1] or ["web-*"]; `*` is the only wildcard. Absent: any name (a fleet token: any holder can report as any agent not yet bound to a per-agent credential).',
      ),
  })
  .strict();

// A viewer entry is an agent token's entry with the same grammar, read the same way.
export const viewerSchema = tokenSchema
  .pick({ name: true, token: true, tokenFile: true, revoked: true })
  .extend({
    token: secretSlot
      .optional()
      .describe(
        `The secret readers (faultline status, scripts, dashboards) send as "Authorization: Bearer …" to the read endpoints; same grammar as an agent token. Or tokenFile.`,
      ),
  })
  .strict();
export const identitySchema = z
  .object({
    releaseAfter: durationField(1000)
      .prefault('1h')
      .describe(
        'A name bound to an agent id that has sent nothing this long may be taken by another agent id (a reinstalled host); before that, a batch or enrolment under a new id is refused with 409.',
      ),
    maxSeqGap: z
      .number()
      .int()
      .min(1)
      .max(Number.MAX_SAFE_INTEGER)
      .default(200_000)
      .describe(
        'Largest jump of a batch seq past the accepted one (or dropped batches declared) that is taken; larger ones are refused with 400 FL_ERR_SEQ_IMPLAUSIBLE. Default: a full 24 h spool at two batches a second.',
      ),
  })
  .strict()
  .describe('How agent names are bound to agent ids and credentials.');

/** Why a secret is unusable, without showing it; undefined when it is fine. */
function tokenProblem(token: string): string | undefined {
  if (token.length < minTokenChars) {
    return `expected at least ${minTokenChars} characters (has ${token.length}; the value is never shown)`;
  }
  if (token.length > maxTokenChars) return `expected at most ${maxTokenChars} characters`;
  if (!tokenRe.test(token)) {
    return 'expected only A-Z a-z 0-9 - . _ ~ + / (and "=" at the end); the value is never shown';
  }
  return undefined;
}

/** Where a secret was first seen: no two entries of `tokens` and `viewers` share one. */
export type SecretsSeen = Map<string, { path: PropertyKey[] }>;

export function resolveTokens(
  list: unknown,
  report: Report,
  secrets: SecretsSeen,
): CollectorToken[] {
  if (Array.isArray(list) && list.length === 0) {
    report(['tokens'], 'expected at least one token: agents need one to report');
    return [];
  }
  const tokens = resolveSecretList(list, 'tokens', report, secrets);
  if (
    Array.isArray(list) &&
    tokens.length > 0 &&
    tokens.length === list.length &&
    tokens.every((t) => t.revoked)
  ) {
    report(['tokens'], 'every token is revoked: no agent could report; add one that is not');
  }
  return tokens;
}

/**
 * The entries of `tokens` or `viewers`: names unique within the list, each secret from
 * `token` or `tokenFile`, checked against the token grammar, and unlike every other secret
 * of either list (an agent token that also read would make the split meaningless).
 */
export function resolveSecretList(
  list: unknown,
  section: 'tokens' | 'viewers',
  report: Report,
  secrets: SecretsSeen,
): CollectorToken[] {
  const tokens: CollectorToken[] = [];
  if (!Array.isArray(list)) return tokens;
  const firstByName = new Map<string, number>();
  list.forEach((t: unknown, i) => {
    if (!isRecord(t)) return;
    const at = (...rest: PropertyKey[]): PropertyKey[] => [section, i, ...rest];
    const name = typeof t.name === 'string' ? t.name : undefined;
    if (name !== undefined) {
      const first = firstByName.get(name);
      if (first === undefined) firstByName.set(name, i);
      else {
        report(at('name'), `duplicate token name ${JSON.stringify(name)}`, undefined, {
          related: { path: [section, first, 'name'], label: 'first used' },
        });
      }
    }
    let secret: string | undefined;
    let key = 'token';
    if (t.token !== undefined && t.tokenFile !== undefined) {
      report(at('tokenFile'), 'token and tokenFile are mutually exclusive: keep one', undefined, {
        pointAt: 'key',
      });
      return;
    } else if (t.token !== undefined) {
      if (typeof t.token !== 'string') {
        report(at('token'), 'expected a string (the value is never shown)');
        return;
      }
      const problem = tokenProblem(t.token);
      if (problem !== undefined) report(at('token'), problem);
      else secret = t.token;
    } else if (typeof t.tokenFile === 'string') {
      key = 'tokenFile';
      const text = readTextFile(t.tokenFile, 'token file', at('tokenFile'), report);
      if (text === undefined) return;
      const problem = tokenProblem(text.trim());
      if (problem !== undefined)
        report(at('tokenFile'), `the token in the file: ${problem}`, t.tokenFile);
      else secret = text.trim();
    } else if (t.tokenFile === undefined) {
      report(
        at(),
        `expected token or tokenFile: the secret ${section === 'tokens' ? 'agents' : 'readers'} send`,
      );
      return;
    }
    if (secret === undefined || name === undefined) return;
    const first = secrets.get(secret);
    if (first === undefined) secrets.set(secret, { path: at(key) });
    else {
      report(at(key), 'the same secret as another token: give each token its own', undefined, {
        related: { path: first.path, label: 'first used' },
      });
      return;
    }
    const role: TokenRole = t.role === 'bootstrap' ? 'bootstrap' : 'agent';
    const patterns = Array.isArray(t.agents)
      ? t.agents.filter((p): p is string => typeof p === 'string')
      : undefined;
    if (patterns !== undefined) {
      const firstAt = new Map<string, number>();
      patterns.forEach((p, pi) => {
        const first = firstAt.get(p);
        if (first === undefined) firstAt.set(p, pi);
        else {
          report(at('agents', pi), `${JSON.stringify(p)} is listed twice`, undefined, {
            related: { path: at('agents', first), label: 'first listed' },
          });
        }
      });
    }
    tokens.push({
      name,
      token: secret,
      revoked: t.revoked === true,
      role,
      ...(patterns === undefined ? {} : { agents: patterns }),
    });
  });
  return tokens;
}

/** The `identity:` section, resolved. */
export function resolveIdentity(raw: unknown): CollectorConfigIdentity {
  const identity: Record<string, unknown> = isRecord(raw) ? raw : {};
  return {
    releaseAfterMs: asNumber(identity.releaseAfter) ?? 0,
    maxSeqGap: asNumber(identity.maxSeqGap) ?? 0,
  };
}

/** How agent names are bound to agent ids and credentials (collector/store.ts). */
export interface CollectorConfigIdentity {
  /** A name bound to an agent id silent this long may be taken by another id. */
  readonly releaseAfterMs: number;
  /** Largest seq jump (or declared dropped batches) a batch may make. */
  readonly maxSeqGap: number;
}
