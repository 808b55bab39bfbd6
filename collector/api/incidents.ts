import { z } from 'zod';
import { ApiError, notFound } from '../../wire/errors.js';
import type { RouteContext } from './context.js';
import { noQuerySchema, parseQuery } from './query.js';

/** GET /api/v1/incidents, one incident, and its postmortem (Markdown). */

const incidentIdText = z
  .string()
  .regex(/^[1-9][0-9]{0,14}$/, { error: 'expected an incident id (a positive integer)' });

const IncidentsQuerySchema = z
  .object({
    limit: z
      .string()
      .regex(/^[1-9][0-9]{0,3}$/, { error: 'expected a number of incidents from 1 to 1000' })
      .refine((v) => Number(v) <= 1000, { error: 'expected a number of incidents from 1 to 1000' })
      .optional(),
    before: incidentIdText.optional(),
  })
  .strict();

const IncidentParamsSchema = z.object({ id: incidentIdText }).strict();

function incidentId(params: unknown): number {
  const parsed = IncidentParamsSchema.safeParse(params);
  if (!parsed.success) {
    const raw = (params as { id?: unknown } | null)?.id;
    throw new ApiError(
      'FL_ERR_BAD_REQUEST',
      `invalid incident id ${JSON.stringify(String(raw).slice(0, 40))}: expected a positive integer`,
    );
  }
  return Number(parsed.data.id);
}

/** Registers the incident routes. */
export function registerIncidents({ app, core, access, known }: RouteContext): void {
  // Incidents (collector/incidents.ts), newest first; `before` pages back.
  app.get(known('GET', '/api/v1/incidents'), access.readHook, async (request, reply) => {
    const q = parseQuery(IncidentsQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return {
      incidents: core.incidents(
        q.limit === undefined ? 100 : Number(q.limit),
        q.before === undefined ? undefined : Number(q.before),
      ),
    };
  });

  app.get('/api/v1/incidents/:id', access.readHook, async (request, reply) => {
    parseQuery(noQuerySchema, request.query);
    const id = incidentId(request.params);
    const detail = core.incident(id);
    if (detail === undefined) throw notFound('incident', `no incident ${id}`);
    void reply.header('cache-control', 'no-cache');
    return detail;
  });

  app.get('/api/v1/incidents/:id/postmortem', access.readHook, async (request, reply) => {
    parseQuery(noQuerySchema, request.query);
    const id = incidentId(request.params);
    const md = core.postmortem(id);
    if (md === undefined) throw notFound('incident', `no incident ${id}`);
    void reply.type('text/markdown; charset=utf-8').header('cache-control', 'no-cache');
    return md;
  });
}
