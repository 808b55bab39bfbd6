import { z } from 'zod';
import type { PathFilter } from '../types.js';
import type { RouteContext } from './context.js';
import { agentNameSchema, noQuerySchema, parseQuery } from './query.js';

/** GET /api/v1/paths and /api/v1/agents: the path matrix and the agents' liveness. */

const pathStates = ['ok', 'failing', 'degraded', 'unknown'] as const;

const PathsQuerySchema = z
  .object({
    agent: agentNameSchema.optional(),
    component: z
      .string()
      .regex(/^\P{Cc}{1,128}$/u, { error: 'expected a component name (1–128 characters)' })
      .optional(),
    kind: z
      .string()
      .regex(/^[a-z0-9_-]{1,32}$/, { error: 'expected a probe kind such as tcp or postgres' })
      .optional(),
    state: z.enum(pathStates).optional(),
  })
  .strict();

/** Registers the paths and agents routes. */
export function registerPaths({ app, core, access, known }: RouteContext): void {
  app.get(known('GET', '/api/v1/paths'), access.readHook, async (request) => {
    const filter: PathFilter = parseQuery(PathsQuerySchema, request.query);
    return { paths: core.paths(filter) };
  });

  app.get(known('GET', '/api/v1/agents'), async (request) => {
    const reader = access.readerOf(request);
    parseQuery(noQuerySchema, request.query);
    const agents = core.agents();
    // An agent id and its accepted seq are what a forged report needs: viewers only.
    if (reader === 'viewer') return { agents };
    return { agents: agents.map(({ agentId: _id, acceptedSeq: _seq, ...rest }) => rest) };
  });
}
