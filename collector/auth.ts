import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../lib/errors.js';

/** One agent token as configured: a name for logs and messages, never the secret itself. */
export interface TokenEntry {
  readonly name: string;
  readonly token: string;
  /** A revoked token is refused with 403 naming it, so its owner knows to rotate. */
  readonly revoked?: boolean;
}

/** What a bearer token check concluded. */
export type AuthResult =
  | { readonly status: 'ok'; readonly name: string }
  | { readonly status: 'missing' }
  | { readonly status: 'malformed' }
  | { readonly status: 'unknown' }
  | { readonly status: 'revoked'; readonly name: string };

/** Checks `Authorization: Bearer …` headers against the configured tokens. */
export interface TokenAuth {
  check(authorization: string | undefined): AuthResult;
}

interface StoredToken {
  readonly name: string;
  readonly digest: Buffer;
  readonly revoked: boolean;
}

const bearerRe = /^Bearer +(\S+) *$/i;

function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Builds the token check. Tokens are kept only as SHA-256 digests and compared with
 * `timingSafeEqual`: equal-length digests make the compare constant-time whatever the
 * presented token's length, and every configured token is compared (no early exit), so the
 * time taken says nothing about which token, if any, was close.
 *
 * Throws ConfigError on an empty token or a duplicate name.
 */
export function createTokenAuth(tokens: readonly TokenEntry[]): TokenAuth {
  const stored: StoredToken[] = [];
  const names = new Set<string>();
  for (const [i, t] of tokens.entries()) {
    if (t.token === '') throw new ConfigError(`tokens[${i}].token: expected a non-empty token`);
    if (names.has(t.name)) {
      throw new ConfigError(`tokens[${i}].name: duplicate token name ${JSON.stringify(t.name)}`);
    }
    names.add(t.name);
    stored.push({ name: t.name, digest: digestOf(t.token), revoked: t.revoked === true });
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
      if (revoked !== undefined) return { status: 'revoked', name: revoked.name };
      if (active !== undefined) return { status: 'ok', name: active.name };
      return { status: 'unknown' };
    },
  };
}
