import type { Socket } from 'node:net';
import { classifyError, classifyProbeCode, rawError } from './classify.js';
import { round } from './run.js';
import { ProbeClock, ProbeFailure, withConnection } from './socket.js';
import type { ProbeContext, ProbeOutcome, Target } from './types.js';

/**
 * The skeleton every database probe shares (postgres, redis, mysql): a handshake on a
 * fresh connection that tells "alive and serving" from "up but refusing service", closed
 * the way the server expects, then — when a password is configured — a client library's
 * login and query inside the probe's deadline. Each database's file holds only its
 * protocol: a {@link DatabaseProtocol}.
 */

/** How long a database probe waits for the server to close first. */
export const closeWaitMs = 250;

/** The options every database kind has. */
export interface DatabaseOptions {
  /** Address family: 4, 6, or 0 for the resolver's first answer. */
  readonly family: 0 | 4 | 6;
  /** When set, the authenticated check runs after the handshake. */
  readonly password?: string | undefined;
}

/** One database's protocol, as {@link runDatabaseProbe} drives it. */
export interface DatabaseProtocol<O extends DatabaseOptions> {
  /** The port when the target names none. */
  readonly defaultPort: number;
  /**
   * The handshake on the probe's connection: records what the server said in `detail`
   * and returns the outcome when it already decides the probe (a refusal of service), or
   * undefined to go on. A ProbeFailure it throws is the probe's failure.
   */
  handshake(
    socket: Socket,
    options: O,
    clock: ProbeClock,
    detail: Record<string, unknown>,
  ): Promise<ProbeOutcome | undefined>;
  /** The client library's session for the authenticated check, over a connection of its own. */
  login(
    ip: string,
    port: number,
    options: O,
    password: string,
    clock: ProbeClock,
  ): Promise<LoginSession>;
}

/** A client library's login and check query, as {@link loginCheck} runs it. */
export interface LoginSession {
  /** Connects, logs in and runs the check query (SELECT 1, PING). */
  check(): Promise<void>;
  /** Tears the connection down at once: the deadline passed. */
  cancel(): void;
  /** Whether its TCP handshake finished. */
  connected(): boolean;
  /** The server's own refusal in `err` as a protocol_error, or undefined for anything else. */
  refusal(err: unknown): ProbeFailure | undefined;
  /** Ends the session so that the server closes first (Terminate, QUIT, COM_QUIT). */
  end(failed: boolean): Promise<unknown>;
  /** Ends whatever is left. */
  destroy(): void;
}

/** Runs one database probe: connection, handshake, and the login check when configured. */
export async function runDatabaseProbe<O extends DatabaseOptions>(
  protocol: DatabaseProtocol<O>,
  target: Target,
  options: O,
  ctx: ProbeContext,
): Promise<ProbeOutcome> {
  const clock = new ProbeClock(ctx.timeoutMs);
  const port = target.port ?? protocol.defaultPort;
  return withConnection(
    target.host,
    port,
    options.family,
    clock,
    ctx.signal,
    async (socket, ip) => {
      const detail: Record<string, unknown> = { ip };
      const decided = await protocol.handshake(socket, options, clock, detail);
      if (decided !== undefined) return decided;
      const password = options.password;
      return finishWithLoginCheck(
        clock,
        detail,
        password === undefined
          ? undefined
          : async () =>
              loginCheck(
                await protocol.login(ip, port, options, password, clock),
                clock,
                ctx.signal,
              ),
      );
    },
  );
}

/**
 * The authenticated check: the session's login and query within the probe's remaining
 * time; the facts for `detail`, or a ProbeFailure (the server's refusal a protocol_error,
 * anything else classified by its code). The session always ends, the server closing first.
 */
export async function loginCheck(
  session: LoginSession,
  clock: ProbeClock,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  let failed = false;
  try {
    const { queryMs } = await timedCheck(
      clock,
      signal,
      () => session.check(),
      () => session.cancel(),
      () => session.connected(),
    );
    return { query: 'ok', queryMs };
  } catch (err) {
    failed = true;
    if (err instanceof ProbeFailure) throw err;
    throw (
      session.refusal(err) ??
      new ProbeFailure(classifyError(err, 'exchange'), rawError(err), { query: 'failed' })
    );
  } finally {
    await shutDownClient(
      () => session.end(failed),
      () => session.destroy(),
      Math.min(closeWaitMs, clock.remainingMs()),
    );
  }
}

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
