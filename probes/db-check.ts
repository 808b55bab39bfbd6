import type { Socket } from 'node:net';
import { classifyProbeCode } from './classify.js';
import { round } from './run.js';
import { ProbeFailure, type ProbeClock } from './socket.js';
import type { ProbeOutcome } from './types.js';

/**
 * Plumbing shared by the database probes (postgres, redis, mysql): closing a handshake
 * connection the way the server expects, and running a client library's authenticated
 * check inside the probe's deadline.
 */

/**
 * Ends a connection with a FIN and waits (at most `waitMs`) for the server to close its
 * side. Database servers log a reset during login ("could not receive data from client:
 * Connection reset by peer") but not an orderly close, so the database probes end this way
 * rather than with `abortConnection`'s reset. The price is a TIME_WAIT entry on the agent's
 * side whenever the server did not close first.
 */
export function closeGently(socket: Socket, waitMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) {
      resolve();
      return;
    }
    const finish = (): void => {
      clearTimeout(timer);
      socket.removeListener('close', finish);
      resolve();
    };
    const timer = setTimeout(finish, waitMs);
    socket.once('close', finish);
    socket.on('error', () => undefined);
    // Drain whatever the server still sends so that its FIN is read.
    socket.resume();
    socket.end();
  });
}

/** What a finished authenticated check took. */
export interface CheckTiming {
  /** Milliseconds from starting the client to the query's answer. */
  readonly queryMs: number;
}

/**
 * Runs `work` (a client library's connect + query) within the probe's remaining time. When
 * the deadline passes first, `cancel` tears the client down and the check fails with
 * protocol_timeout (or tcp_timeout when `connected()` says the TCP handshake never finished).
 * An error from `work` is thrown as is, for the probe to classify from its code.
 */
export async function timedCheck(
  clock: ProbeClock,
  signal: AbortSignal,
  work: () => Promise<void>,
  cancel: () => void,
  connected: () => boolean,
): Promise<CheckTiming> {
  const t = clock.now();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    const giveUp = (code: 'FL_QUERY_TIMEOUT' | 'FL_ABORTED'): void => {
      const wasConnected = connected();
      cancel();
      reject(
        new ProbeFailure(
          classifyProbeCode(code, wasConnected ? 'exchange' : 'connect'),
          {
            code,
            message:
              code === 'FL_ABORTED'
                ? 'probe aborted during the authenticated check'
                : wasConnected
                  ? 'the authenticated check got no answer before the timeout'
                  : 'the authenticated check could not connect before the timeout',
          },
          { query: 'timeout' },
        ),
      );
    };
    timer = setTimeout(() => giveUp('FL_QUERY_TIMEOUT'), clock.remainingMs());
    onAbort = () => giveUp('FL_ABORTED');
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  // The losing side of the race must not surface as an unhandled rejection.
  deadline.catch(() => undefined);
  try {
    await Promise.race([work(), deadline]);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
  }
  return { queryMs: round(clock.now() - t) };
}

/**
 * Awaits a client's orderly shutdown (which lets the server close first), for at most
 * `waitMs`; then `destroy` ends whatever is left.
 */
export async function shutDownClient(
  end: () => Promise<unknown>,
  destroy: () => void,
  waitMs: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      end().catch(() => undefined),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs))),
    ]);
  } finally {
    clearTimeout(timer);
    destroy();
  }
}

/**
 * The end of every database probe: `ok` with the handshake's facts, or, when a password is
 * configured, `ok` only once the authenticated check passed — its failure class otherwise,
 * with the handshake's facts kept beside the check's.
 */
export async function finishWithLoginCheck(
  clock: ProbeClock,
  detail: Record<string, unknown>,
  check: (() => Promise<Record<string, unknown>>) | undefined,
): Promise<ProbeOutcome> {
  if (check === undefined) return clock.outcome('ok', { detail });
  try {
    Object.assign(detail, await check());
  } catch (err) {
    if (!(err instanceof ProbeFailure)) throw err;
    return clock.outcome(err.failureClass, {
      error: err.raw,
      detail: { ...detail, ...err.detail },
    });
  }
  return clock.outcome('ok', { detail });
}
