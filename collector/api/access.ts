import type { FastifyRequest } from 'fastify';
import { ApiError } from '../../wire/errors.js';
import { createTokenAuth } from '../auth.js';
import type { AuthResult, Credential, TokenAuth } from '../auth.js';
import { TokenBuckets } from '../rate-limit.js';
import type { CollectorCore } from '../types.js';
import { defaultRateLimits, type ApiOptions } from './options.js';

/**
 * Who may do what: agent tokens (and enrolled credentials) report and fetch plans, bootstrap
 * tokens only enrol, viewer tokens read — never an agent's — unless reading is open; plan
 * and enrol requests are rate-limited per credential (429 FL_ERR_RATE + Retry-After).
 */
export class Access {
  private readonly auth: TokenAuth;
  private readonly viewerAuth: TokenAuth;
  private readonly readAccess: 'token' | 'open';
  private readonly warnedRevoked = new Set<string>();
  readonly planOwnBuckets: TokenBuckets;
  readonly planSharedBuckets: TokenBuckets;
  readonly enrolBuckets: TokenBuckets;
  /** The read endpoints' hook: a viewer token, or none when reading is open. */
  readonly readHook: { onRequest: (request: FastifyRequest) => Promise<void> };
  /** The credential each request was admitted with, from its onRequest hook to its handler. */
  readonly credentials = new WeakMap<FastifyRequest, Credential>();

  /** `revokedInUse`: told the first time a client uses a revoked token (for a warning). */
  constructor(
    core: CollectorCore,
    opts: ApiOptions,
    private readonly revokedInUse: (token: string) => void,
  ) {
    this.auth = createTokenAuth(opts.tokens, (digest) => core.enrolled(digest));
    const rates = { ...defaultRateLimits, ...opts.rateLimits };
    this.planOwnBuckets = new TokenBuckets(rates.planOwn);
    this.planSharedBuckets = new TokenBuckets(rates.planShared);
    this.enrolBuckets = new TokenBuckets(rates.enrol);
    this.viewerAuth = createTokenAuth(opts.viewers ?? []);
    this.readAccess = opts.readAccess ?? 'token';
    this.readHook = { onRequest: async (request) => void this.readerOf(request) };
  }

  /** Throws 429 FL_ERR_RATE when `c` has used up its `what` requests for now. */
  admit(buckets: TokenBuckets, c: Credential, what: string): void {
    const a = buckets.take(c.id);
    if (a.ok) return;
    throw new ApiError(
      'FL_ERR_RATE',
      `too many ${what} requests for ${c.label}: retry in ${a.retryAfterS} s`,
      { retryAfterS: a.retryAfterS },
      { 'retry-after': String(a.retryAfterS) },
    );
  }

  /** Throws unless the request carries an active token; returns its credential. */
  requireToken(request: FastifyRequest): Credential {
    const result = this.auth.check(request.headers.authorization);
    if (result.status === 'ok') return result.credential;
    throw this.refusal(result);
  }

  /** The answer to a request whose token did not pass (agent or viewer list alike). */
  private refusal(result: Exclude<AuthResult, { status: 'ok' }>): ApiError {
    // Connection: close — an unauthenticated client's body is not worth draining.
    const refuse = { connection: 'close', 'www-authenticate': 'Bearer realm="faultline"' };
    switch (result.status) {
      case 'missing':
        return new ApiError(
          'FL_ERR_AUTH',
          'missing bearer token: send "Authorization: Bearer <token>"',
          {},
          refuse,
        );
      case 'malformed':
        return new ApiError(
          'FL_ERR_AUTH',
          'malformed Authorization header: expected "Bearer <token>"',
          {},
          refuse,
        );
      case 'unknown':
        return new ApiError('FL_ERR_AUTH', 'unknown token', {}, refuse);
      case 'revoked':
        if (!this.warnedRevoked.has(result.name)) {
          this.warnedRevoked.add(result.name);
          this.revokedInUse(result.name);
        }
        return new ApiError(
          'FL_ERR_TOKEN_REVOKED',
          `token '${result.name}' is revoked`,
          {},
          {
            connection: 'close',
          },
        );
    }
  }

  /**
   * Who is reading: 'viewer' with a viewer token, 'anyone' with no token when reading is
   * open. Throws 401 for a missing (unless open), malformed or unknown token, 403
   * FL_ERR_FORBIDDEN for an agent's token (a stolen agent token must not map the fleet), 403
   * FL_ERR_TOKEN_REVOKED for a revoked viewer token. A token that is sent is checked even
   * when reading is open, so a wrong one is noticed rather than silently read as no token.
   */
  readerOf(request: FastifyRequest): 'viewer' | 'anyone' {
    const header = request.headers.authorization;
    const result = this.viewerAuth.check(header);
    if (result.status === 'ok') return 'viewer';
    if (result.status === 'missing' && this.readAccess === 'open') return 'anyone';
    if (result.status === 'unknown') {
      const asAgent = this.auth.check(header).status;
      if (asAgent === 'ok' || asAgent === 'revoked') {
        throw new ApiError(
          'FL_ERR_FORBIDDEN',
          "agent tokens cannot read; use a viewer token (the collector config's viewers)",
        );
      }
    }
    throw this.refusal(result);
  }

  /** Throws unless the request carries a credential that reports (not a bootstrap token). */
  requireAgentToken(request: FastifyRequest): Credential {
    const credential = this.requireToken(request);
    if (credential.role === 'bootstrap') {
      throw new ApiError(
        'FL_ERR_ENROL_REQUIRED',
        `${credential.label} is a bootstrap token: enrol first: POST /api/v1/enrol with {"agent", "agentId"}, then report with the token it returns`,
        {},
        { connection: 'close' },
      );
    }
    return credential;
  }
}
