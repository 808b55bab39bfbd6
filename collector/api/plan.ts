import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ApiError } from '../../wire/errors.js';
import type { RouteContext } from './context.js';
import { agentNameSchema, parseLabels, parseQuery } from './query.js';

/** GET /api/v1/plan: an agent's plan, with an ETag so an unchanged one costs a 304. */

const PlanQuerySchema = z
  .object({
    agent: agentNameSchema,
    /** `k=v,k2=v2`, parsed by parseLabels. */
    labels: z.string().max(8192).optional(),
  })
  .strict();

/** The ETag of a plan version: the version itself when it is a valid entity tag. */
export function etagFor(version: string): string {
  return /^[\x21\x23-\x7e]{1,128}$/.test(version)
    ? `"${version}"`
    : `"${createHash('sha256').update(version).digest('hex').slice(0, 32)}"`;
}

/** RFC 9110 If-None-Match: weak comparison, `*` matches any current representation. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/** Registers the plan route. */
export function registerPlan({ app, core, access, known }: RouteContext): void {
  app.get(known('GET', '/api/v1/plan'), {
    onRequest: async (request) => {
      access.credentials.set(request, access.requireAgentToken(request));
    },
    handler: async (request, reply) => {
      const credential = access.credentials.get(request)!;
      const query = parseQuery(PlanQuerySchema, request.query);
      const refusal = core.planRefusal(query.agent, credential);
      if (refusal !== undefined) throw new ApiError('FL_ERR_FORBIDDEN', refusal);
      const own = credential.agents?.length === 1 && !credential.agents[0]!.includes('*');
      access.admit(own ? access.planOwnBuckets : access.planSharedBuckets, credential, 'plan');
      const labels = parseLabels(query.labels ?? '');
      const plan = core.plan(query.agent, labels, request.ip);
      const etag = etagFor(plan.version);
      void reply.header('etag', etag).header('cache-control', 'no-cache');
      if (ifNoneMatchHits(request.headers['if-none-match'], etag)) {
        return reply.code(304).send();
      }
      return plan;
    },
  });
}
