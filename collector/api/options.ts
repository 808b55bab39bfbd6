import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { TokenEntry } from '../auth.js';
import type { ConnectionLimits } from '../connection-guard.js';
import type { RateLimit } from '../rate-limit.js';

/** Options of `buildApi` (collector/api.ts). */
export interface ApiOptions {
  /** Agent tokens; a revoked one is refused with 403 naming it. */
  readonly tokens: readonly TokenEntry[];
  /** Viewer tokens, for the read endpoints; a revoked one is refused with 403 naming it. */
  readonly viewers?: readonly TokenEntry[];
  /**
   * `token` (the default): the read endpoints need a viewer token. `open`: anyone may read,
   * but /agents leaves out agent ids and sequence numbers unless a viewer token is sent.
   * Either way a token that is sent must be a viewer's: an agent's is refused with 403.
   */
  readonly readAccess?: 'token' | 'open';
  /** Largest report body in bytes, applied to the compressed and to the decompressed body. */
  readonly maxReportBytes: number;
  /** Largest `results` (and `summaries`) array in one batch; the schema's own cap otherwise. */
  readonly maxResultsPerBatch?: number;
  /** Serve HTTPS with this certificate and key (PEM text). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Request lines are logged at debug only; server errors at error. Silent when absent. */
  readonly log?: Logger;
  /** Prometheus text for `GET /metrics`; the route answers 404 when absent. */
  readonly metricsHandler?: () => Promise<string>;
  /** Per-credential limits of plan and enrol requests (defaults: {@link defaultRateLimits}). */
  readonly rateLimits?: Partial<RateLimits>;
  /** Connection cap and header/keep-alive timeouts; `defaultConnectionLimits` when absent. */
  readonly connections?: ConnectionLimits;
  /**
   * More routes (the dashboard's, collector/dashboard.ts), given the read check and the 405
   * bookkeeping so they answer like these.
   */
  readonly routes?: (app: FastifyInstance, ctx: ExtraRouteContext) => void;
}

/** What {@link ApiOptions.routes} is lent. */
export interface ExtraRouteContext {
  /** The read endpoints' hook: a viewer token, or none when reading is open. */
  readonly readHook: { onRequest: (request: FastifyRequest) => Promise<void> };
  /** Records a route's path and method (for 405 answers); returns the path. */
  readonly known: (method: 'GET' | 'POST', url: string) => string;
}

/** Token buckets per credential (429 FL_ERR_RATE + Retry-After beyond them). */
export interface RateLimits {
  /** Plan requests of a credential for one agent (an enrolled one, or a token naming one). */
  readonly planOwn: RateLimit;
  /** Plan requests of a credential for many agents (a fleet or a group token): a whole fleet restarting at once. */
  readonly planShared: RateLimit;
  /** Enrolments per bootstrap token. */
  readonly enrol: RateLimit;
}

export const defaultRateLimits: RateLimits = Object.freeze({
  planOwn: { burst: 20, perSecond: 1 },
  planShared: { burst: 5000, perSecond: 200 },
  enrol: { burst: 1000, perSecond: 20 },
});
