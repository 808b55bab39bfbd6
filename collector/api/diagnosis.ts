import type { RouteContext } from './context.js';
import { noQuerySchema, parseQuery } from './query.js';

/** Registers GET /api/v1/diagnosis. */
export function registerDiagnosis({ app, core, access, known }: RouteContext): void {
  // The diagnosis document (wire/diagnosis.ts), kept current by collector/diagnosis.ts: this
  // only serialises it, so polling it costs no localisation. Errors: FL_ERR_BAD_REQUEST for
  // any query parameter, FL_ERR_METHOD, FL_ERR_INTERNAL.
  app.get(known('GET', '/api/v1/diagnosis'), access.readHook, async (request, reply) => {
    parseQuery(noQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return core.diagnosis();
  });
}
