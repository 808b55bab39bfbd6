import type { FastifyBodyParser, FastifyInstance } from 'fastify';
import type { CollectorCore } from '../types.js';
import type { Access } from './access.js';
import type { ApiOptions } from './options.js';

/** What each area's routes are registered with (collector/api.ts builds it). */
export interface RouteContext {
  readonly app: FastifyInstance;
  readonly core: CollectorCore;
  readonly opts: ApiOptions;
  readonly access: Access;
  /** Records a route's path and method (for 405 answers); returns the path. */
  readonly known: (method: 'GET' | 'POST', url: string) => string;
  /** Fastify's JSON parser (secure-json-parse), for the routes that take a body. */
  readonly defaultJsonParse: FastifyBodyParser<string>;
}
