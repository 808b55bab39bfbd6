import pino from 'pino';
import type { Logger } from 'pino';

/**
 * Structured JSON-lines logs (pino) on stderr. Child loggers carry agent, target and kind.
 * FAULTLINE_LOG_LEVEL (trace|debug|info|warn|error|silent) sets the level; default info.
 */
export function createLogger(
  bindings: Record<string, string> = {},
  destination?: pino.DestinationStream,
): Logger {
  const level = process.env.FAULTLINE_LOG_LEVEL ?? 'info';
  const opts = { level, base: { ...bindings }, timestamp: pino.stdTimeFunctions.isoTime };
  return pino(opts, destination ?? pino.destination({ dest: 2, sync: true }));
}

export type { Logger };
