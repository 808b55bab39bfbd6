import type { CollectorCore } from '../types.js';
import type { RouteContext } from './context.js';

/** GET /healthz and /metrics: open, holding neither agent ids nor paths' names. */

/** Registers /healthz. */
export function registerHealth({ app, core, known }: RouteContext): void {
  app.get(known('GET', '/healthz'), async (request, reply) => {
    let health: ReturnType<CollectorCore['health']>;
    try {
      health = core.health();
    } catch (err) {
      request.log.error({ err }, 'health check failed');
      health = { ok: false, agents: 0, paths: 0, detail: 'the health check itself failed' };
    }
    if (health.ok) return { status: 'ok', ...health };
    void reply.code(503);
    return {
      status: 'unhealthy',
      ...health,
      error: {
        code: 'FL_ERR_UNHEALTHY',
        message: health.detail ?? 'the collector is not healthy',
      },
    };
  });
}

/** Registers /metrics when the collector has a metrics handler. */
export function registerMetrics({ app, opts, known }: RouteContext): void {
  const metrics = opts.metricsHandler;
  if (metrics !== undefined) {
    app.get(known('GET', '/metrics'), async (_request, reply) => {
      const text = await metrics();
      void reply.type('text/plain; version=0.0.4; charset=utf-8');
      return text;
    });
  }
}
