import pino from 'pino';
import type { Logger } from 'pino';

/** The part of Faultline a log line comes from: its `component` key. */
export type LogComponent = 'agent' | 'collector';

/**
 * Structured JSON-lines logs (pino) on stderr, each line with exactly one `component` key:
 * it is bound here, at the root, and nowhere else — a pino child given `component` again
 * writes the key twice in one line (`{"component":"collector",…,"component":"agent"}`), which
 * JSON readers resolve differently. A part that logs as another component (the collector's
 * local agent) gets a root logger of its own. Child loggers carry agent, target and kind.
 * FAULTLINE_LOG_LEVEL (trace|debug|info|warn|error|silent) sets the level; default info.
 */
export function createLogger(
  component: LogComponent,
  bindings: Record<string, string> = {},
  destination?: pino.DestinationStream,
): Logger {
  const level = process.env.FAULTLINE_LOG_LEVEL ?? 'info';
  const opts = {
    level,
    base: { component, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return pino(opts, destination ?? pino.destination({ dest: 2, sync: true }));
}

export type { Logger };
