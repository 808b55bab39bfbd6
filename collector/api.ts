import type { FastifyBodyParser, FastifyInstance } from 'fastify';
import type { CollectorCore } from './types.js';
import { Access } from './api/access.js';
import type { RouteContext } from './api/context.js';
import { registerDiagnosis } from './api/diagnosis.js';
import { registerEnrol } from './api/enrol.js';
import { registerHealth, registerMetrics } from './api/health.js';
import { registerIncidents } from './api/incidents.js';
import type { ApiOptions } from './api/options.js';
import { registerPaths } from './api/paths.js';
import { registerPlan } from './api/plan.js';
import { registerReports } from './api/reports.js';
import { createServer } from './api/server.js';

export type { ApiOptions, ExtraRouteContext, RateLimits } from './api/options.js';
export { defaultRateLimits } from './api/options.js';

/**
 * The collector's HTTP API, versioned under /api/v1. Agent endpoints (reports, plan) need an
 * agent's bearer token; the read endpoints (paths, agents, diagnosis, incidents) need a
 * viewer token, never an agent's, unless `readAccess: 'open'` — and even then agent ids and
 * sequence numbers (what a forged report needs) are shown only to a viewer token. /metrics and
 * /healthz are open and hold neither. Every error answers `{ error: { code, message, … } }`
 * with a stable `FL_ERR_*` code and its status (wire/errors.ts).
 *
 * This file only composes: the server and its error answers (api/server.ts), who may do what
 * (api/access.ts), request bodies (api/body.ts, api/json.ts), queries and issues
 * (api/query.ts), and one routes file per area: reports, enrol, plan, paths (and agents),
 * diagnosis, incidents, health (and metrics). The dashboard adds its own (`routes`).
 */

/**
 * Builds the API on `core` (not listening: the caller calls `listen`). Throws ConfigError on
 * an invalid token list.
 */
export function buildApi(core: CollectorCore, opts: ApiOptions): FastifyInstance {
  // Before the server: an invalid token list throws with nothing to close.
  const access = new Access(core, opts, (token) =>
    app.log.warn({ token }, 'a client still uses a revoked token'),
  );
  const { app, known } = createServer(opts);

  // Only the report and enrol routes take a body; their JSON parsers live in their scopes.
  app.removeAllContentTypeParsers();
  const defaultJsonParse: FastifyBodyParser<string> = app.getDefaultJsonParser('error', 'error');
  const ctx: RouteContext = { app, core, opts, access, known, defaultJsonParse };

  registerReports(ctx);
  registerEnrol(ctx);
  registerPlan(ctx);
  registerPaths(ctx);
  registerDiagnosis(ctx);
  registerIncidents(ctx);
  registerHealth(ctx);
  opts.routes?.(app, { readHook: access.readHook, known });
  registerMetrics(ctx);
  return app;
}
