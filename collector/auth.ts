import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../lib/errors.js';

/** What a configured token may do: report (`agent`) or only enrol (`bootstrap`). */
export type CredentialRole = 'agent' | 'bootstrap';

/** One agent token as configured: a name for logs and messages, never the secret itself. */
export interface TokenEntry {
  readonly name: string;
  readonly token: string;
  /** A revoked token is refused with 403 naming it, so its owner knows to rotate. */
  readonly revoked?: boolean;
  /** Default `agent`. */
  readonly role?: CredentialRole;
  /** The agent names it may use (`*` the only wildcard); absent: any name (a fleet token). */
  readonly agents?: readonly string[];
}

/** A per-agent secret issued by `POST /api/v1/enrol`, as the store keeps it (digest only). */
export interface EnrolledCredential {
  /** Stable id of the credential (not the secret). */
  readonly id: string;
  /** The one agent name it may use. */
  readonly agent: string;
  /** The one agent id it may use. */
  readonly agentId: string;
}

/**
 * Who sent a request: a configured token or an enrolled per-agent credential. The binding
 * of agent names (collector/store.ts) records `id`.
 */
export interface Credential {
  /** The token's name, or `enrolled:<id>` for an enrolled credential. */
  readonly id: string;
  /** How messages name it: `token "fleet"`, `the enrolled credential of "db-1"`. */
  readonly label: string;
  readonly role: CredentialRole;
  /** Agent name patterns it may use; absent: any name. An enrolled credential: its one name. */
  readonly agents?: readonly string[];
  /** Enrolled credentials only: the one agent id it may use. */
  readonly agentId?: string;
}

/** What a bearer token check concluded. */
export type AuthResult =
  | { readonly status: 'ok'; readonly name: string; readonly credential: Credential }
  | { readonly status: 'missing' }
  | { readonly status: 'malformed' }
  | { readonly status: 'unknown' }
  | { readonly status: 'revoked'; readonly name: string };

/** Checks `Authorization: Bearer …` headers against the configured tokens. */
export interface TokenAuth {
  check(authorization: string | undefined): AuthResult;
}

/** Finds an enrolled credential by the SHA-256 digest of its secret (the store's). */
export type EnrolledLookup = (digest: Buffer) => EnrolledCredential | undefined;

interface StoredToken {
  readonly digest: Buffer;
  readonly revoked: boolean;
  readonly credential: Credential;
}

const bearerRe = /^Bearer +(\S+) *$/i;

/** SHA-256 of a secret: what is kept of tokens and enrolled credentials. */
export function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The credential of an enrolled secret. */
export function enrolledCredential(e: EnrolledCredential): Credential {
  return {
    id: `enrolled:${e.id}`,
    label: `the enrolled credential of ${JSON.stringify(e.agent)}`,
    role: 'agent',
    agents: [e.agent],
    agentId: e.agentId,
  };
}

/** Whether `name` matches `pattern`, in which `*` matches any run of characters (none too). */
export function matchesPattern(pattern: string, name: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === name;
  const head = parts[0]!;
  const tail = parts[parts.length - 1]!;
  if (name.length < head.length + tail.length) return false;
  if (!name.startsWith(head) || !name.endsWith(tail)) return false;
  let at = head.length;
  const end = name.length - tail.length;
  for (const middle of parts.slice(1, -1)) {
    const found = name.indexOf(middle, at);
    if (found < 0 || found + middle.length > end) return false;
    at = found + middle.length;
  }
  return true;
}

/** Whether the credential may use the agent name (and, for an enrolled one, the agent id). */
export function credentialAllows(c: Credential, agent: string, agentId?: string): boolean {
  if (c.agentId !== undefined && agentId !== undefined && agentId !== c.agentId) return false;
  return c.agents === undefined || c.agents.some((p) => matchesPattern(p, agent));
}

/**
 * Whether the credential names the agent exactly: an enrolled credential for it, or a
 * pattern without `*` equal to the name. Such a credential may move the name to a new
 * agent id, and a name it bound is refused to every other credential.
 */
export function credentialNames(c: Credential, agent: string): boolean {
  return c.agents !== undefined && c.agents.some((p) => p === agent && !p.includes('*'));
}

/** Why the credential may not use `agent` (for 403 FL_ERR_FORBIDDEN), or undefined. */
export function forbiddenReason(
  c: Credential,
  agent: string,
  agentId?: string,
): string | undefined {
  if (c.agentId !== undefined && agentId !== undefined && agentId !== c.agentId) {
    return `${c.label} is bound to agent id ${c.agentId}, not ${agentId}`;
  }
  if (credentialAllows(c, agent)) return undefined;
  return `${c.label} may not act as agent ${JSON.stringify(agent)} (it may use: ${(c.agents ?? []).join(', ')})`;
}

/**
 * Builds the token check. Tokens are kept only as SHA-256 digests and compared with
 * `timingSafeEqual`: equal-length digests make the compare constant-time whatever the
 * presented token's length, and every configured token is compared (no early exit), so the
 * time taken says nothing about which token, if any, was close. A secret that is no
 * configured token is looked up among the enrolled credentials by its digest (`enrolled`):
 * an index lookup on the hash of a random 256-bit secret tells a timing observer nothing.
 *
 * Throws ConfigError on an empty token or a duplicate name.
 */
export function createTokenAuth(
  tokens: readonly TokenEntry[],
  enrolled?: EnrolledLookup,
): TokenAuth {
  const stored: StoredToken[] = [];
  const names = new Set<string>();
  for (const [i, t] of tokens.entries()) {
    if (t.token === '') throw new ConfigError(`tokens[${i}].token: expected a non-empty token`);
    if (names.has(t.name)) {
      throw new ConfigError(`tokens[${i}].name: duplicate token name ${JSON.stringify(t.name)}`);
    }
    names.add(t.name);
    stored.push({
      digest: digestOf(t.token),
      revoked: t.revoked === true,
      credential: {
        id: t.name,
        label: `token ${JSON.stringify(t.name)}`,
        role: t.role ?? 'agent',
        ...(t.agents === undefined ? {} : { agents: [...t.agents] }),
      },
    });
  }
  return {
    check(authorization) {
      if (authorization === undefined || authorization === '') return { status: 'missing' };
      const m = bearerRe.exec(authorization);
      const presented = m?.[1];
      if (presented === undefined) return { status: 'malformed' };
      const digest = digestOf(presented);
      let active: StoredToken | undefined;
      let revoked: StoredToken | undefined;
      for (const s of stored) {
        if (timingSafeEqual(digest, s.digest)) {
          // The same secret listed twice, once revoked: revocation wins.
          if (s.revoked) revoked ??= s;
          else active ??= s;
        }
      }
      if (revoked !== undefined) return { status: 'revoked', name: revoked.credential.id };
      if (active !== undefined) {
        return { status: 'ok', name: active.credential.id, credential: active.credential };
      }
      const e = enrolled?.(digest);
      if (e !== undefined) {
        const credential = enrolledCredential(e);
        return { status: 'ok', name: credential.id, credential };
      }
      return { status: 'unknown' };
    },
  };
}
