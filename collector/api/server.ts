import type { Server as HttpsServer } from 'node:https';
import Fastify, { LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { errorCodeOf } from '../../lib/errors.js';
import { ApiError, notFound } from '../../wire/errors.js';
import {
  defaultConnectionLimits,
  guardConnections,
  serverTimeoutOptions,
} from '../connection-guard.js';
import { tooLarge } from './body.js';
import type { ApiOptions } from './options.js';

/**
 * The API's HTTP server: Fastify over HTTP or HTTPS with the connection guard and timeouts,
 * request lines at debug, and every error — ours, Fastify's, a thrown one — answered as
 * `{ error: { code, message, … } }` (wire/errors.ts). A known path asked with another
 * method is a 405 naming the methods; anything else a 404.
 */

/** A slow or stalled client may hold a request this long. */
const requestTimeoutMs = 60_000;

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('statusCode' in err)) return undefined;
  return typeof err.statusCode === 'number' ? err.statusCode : undefined;
}

/** Any error thrown inside a request, as the API's answer. */
export function toApiError(err: unknown, maxReportBytes: number, requestId: string): ApiError {
  if (err instanceof ApiError) return err;
  switch (errorCodeOf(err)) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return tooLarge(maxReportBytes);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('FL_ERR_MEDIA_TYPE', 'expected content-type application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('FL_ERR_BAD_REQUEST', 'content-length does not match the body');
    default:
      break;
  }
  const status = statusOf(err);
  if (status !== undefined && status >= 400 && status < 500) {
    const message = err instanceof Error ? err.message : 'bad request';
    return new ApiError('FL_ERR_BAD_REQUEST', message);
  }
  return new ApiError(
    'FL_ERR_INTERNAL',
    `internal error; the collector log has the details (request ${requestId})`,
    { requestId },
  );
}

/** Answers `err` as the API's error body, with its status and headers. */
export function sendError(reply: FastifyReply, err: ApiError): FastifyReply {
  return reply
    .code(err.statusCode)
    .headers(err.headers)
    .send({ error: { code: err.code, message: err.message, ...err.extra } });
}

/** Request lines at debug: at 2,000 agents × 1 req/s, info would drown everything else. */
class DebugRequestLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (error) {
      reply.log.error(
        { res: reply, err: error, responseTime: reply.elapsedTime },
        'request errored',
      );
    } else {
      reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
    }
  }
}

/** The server, and how its routes are recorded (for 405 answers). */
export interface ApiServer {
  readonly app: FastifyInstance;
  /** Records a route's path and method (for 405 answers); returns the path. */
  readonly known: (method: 'GET' | 'POST', url: string) => string;
}

/** The Fastify instance with its error and not-found handlers, no routes yet. */
export function createServer(opts: ApiOptions): ApiServer {
  const maxBytes = opts.maxReportBytes;
  const limits = opts.connections ?? defaultConnectionLimits;
  const timeouts = serverTimeoutOptions(limits);
  const base: FastifyServerOptions = {
    bodyLimit: maxBytes,
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    logController: new DebugRequestLog(),
    frameworkErrors: (err, request, reply) => {
      sendError(reply, toApiError(err, maxBytes, String(request.id)));
    },
    ...(opts.log === undefined ? { logger: false } : { loggerInstance: opts.log }),
  };
  // The https overload types the instance with https.Server; callers only listen, inject
  // and close, which are the same on both.
  const app = (opts.tls === undefined
    ? Fastify({ ...base, http: timeouts })
    : Fastify({
        ...(base as unknown as FastifyServerOptions<HttpsServer>),
        https: {
          ...timeouts,
          handshakeTimeout: limits.headersTimeoutMs,
          cert: opts.tls.cert,
          key: opts.tls.key,
        },
      })) as unknown as FastifyInstance;
  guardConnections(app.server, limits.maxConnections);

  /** Path → methods, for telling 405 from 404. */
  const routes = new Map<string, string[]>();
  const known = (method: 'GET' | 'POST', url: string): string => {
    const methods = routes.get(url) ?? [];
    methods.push(...(method === 'GET' ? ['GET', 'HEAD'] : [method]));
    routes.set(url, methods);
    return url;
  };

  app.setErrorHandler((err: unknown, request, reply) => {
    const apiErr = toApiError(err, maxBytes, String(request.id));
    if (apiErr.statusCode >= 500 && apiErr.code === 'FL_ERR_INTERNAL') {
      request.log.error({ err }, 'request failed');
    } else {
      request.log.debug({ code: apiErr.code, statusCode: apiErr.statusCode }, apiErr.message);
    }
    return sendError(reply, apiErr);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    const shown = JSON.stringify(path.length > 200 ? `${path.slice(0, 199)}…` : path);
    const methods = routes.get(path);
    if (methods !== undefined) {
      return sendError(
        reply,
        new ApiError(
          'FL_ERR_METHOD',
          `${request.method} is not allowed on ${shown}: use ${methods.join(' or ')}`,
          {},
          { allow: methods.join(', ') },
        ),
      );
    }
    return sendError(reply, notFound('endpoint', `no such endpoint: ${shown}`));
  });

  return { app, known };
}
