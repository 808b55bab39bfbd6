import { lookup } from 'node:dns/promises';
import { isIP, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { classifyConnectionError, classifyError, classifyProbeCode, rawError } from './classify.js';
import { round } from './run.js';
import type { ProbeOutcome } from './types.js';
import type { Timings } from '../wire/result.js';

/**
 * The connection mechanics every TCP-based probe shares (tcp, postgres, redis, mysql):
 * resolve, connect with a deadline, exchange bytes, and end with a reset so that no probe
 * socket lingers in TIME_WAIT.
 */

/** Address family choice: 4, 6, or 0 for whatever the resolver returns first. */
export type Family = 0 | 4 | 6;

/** A probe's running deadline and the phase timings taken so far. */
export class ProbeClock {
  readonly timings: Partial<Timings> = {};
  private readonly t0 = performance.now();

  constructor(readonly timeoutMs: number) {}

  /** Milliseconds left before the probe's deadline (never negative). */
  remainingMs(): number {
    return Math.max(0, this.timeoutMs - (performance.now() - this.t0));
  }

  /** A timestamp for measuring one phase. */
  now(): number {
    return performance.now();
  }

  /** Records a phase that began at `since`. */
  mark(phase: Exclude<keyof Timings, 'totalMs'>, since: number): number {
    const ms = round(performance.now() - since);
    this.timings[phase] = ms;
    return ms;
  }

  /** The outcome of a finished probe, carrying the timings taken. */
  outcome(
    cls: ProbeOutcome['class'],
    extra?: { error?: ProbeOutcome['error']; detail?: Record<string, unknown> },
  ): ProbeOutcome {
    const timings = { ...this.timings, totalMs: round(performance.now() - this.t0) };
    return { class: cls, timings, ...extra };
  }
}

/** Raised inside a probe to end it with a failure class; caught by the probe's run. */
export class ProbeFailure extends Error {
  constructor(
    readonly failureClass: ProbeOutcome['class'],
    readonly raw: { code?: string; message: string },
    readonly detail?: Record<string, unknown>,
  ) {
    super(raw.message);
  }
}

function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => ProbeFailure): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    work.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** Resolves `host` to one address (IP literals pass through untimed). */
export async function resolveHost(
  host: string,
  family: Family,
  clock: ProbeClock,
): Promise<string> {
  if (isIP(host) !== 0) return host;
  const t = clock.now();
  try {
    const res = await withDeadline(
      lookup(host, { family, verbatim: true }),
      clock.remainingMs(),
      () =>
        new ProbeFailure(classifyProbeCode('FL_DNS_TIMEOUT', 'dns'), {
          code: 'FL_DNS_TIMEOUT',
          message: `resolving ${host} took longer than the timeout`,
        }),
    );
    clock.mark('dnsMs', t);
    return res.address;
  } catch (err) {
    clock.mark('dnsMs', t);
    if (err instanceof ProbeFailure) throw err;
    throw new ProbeFailure(classifyError(err, 'dns'), rawError(err));
  }
}

/** Connects to ip:port within the clock's deadline. Fails with tcp_refused/timeout/unreachable. */
export function connect(
  ip: string,
  port: number,
  clock: ProbeClock,
  signal: AbortSignal,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    // The handshake starts at the connect(2) call, which Node makes on a later tick than
    // `socket.connect()` (after whatever else this tick runs: at 1,000 probes/s, other
    // probes' work): the clock starts there, when Node says so, not here.
    let t = clock.now();
    const socket = new Socket();
    socket.once('connectionAttempt', () => {
      t = clock.now();
    });
    const finish = (err: ProbeFailure | undefined): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      socket.removeListener('connect', onConnect);
      if (err === undefined) {
        resolve(socket);
      } else {
        socket.destroy();
        reject(err);
      }
    };
    const onConnect = (): void => {
      clock.mark('connectMs', t);
      // Rarely (seen when ARP for a dead host fails while the machine is busy) the kernel
      // ends the handshake with an error that libuv never reads, and Node reports a connect
      // on a socket that is not connected. No peer address means no connection.
      if (socket.remoteAddress === undefined) {
        finish(
          new ProbeFailure(classifyProbeCode('FL_CONNECT_LOST', 'connect'), {
            code: 'FL_CONNECT_LOST',
            message:
              'the handshake failed but its error was lost: the socket is not connected (most likely the host did not answer ARP or an ICMP unreachable came back)',
          }),
        );
        return;
      }
      finish(undefined);
    };
    const onError = (err: Error): void => {
      clock.mark('connectMs', t);
      finish(new ProbeFailure(classifyError(err, 'connect'), rawError(err)));
    };
    const onAbort = (): void =>
      finish(
        new ProbeFailure(classifyProbeCode('FL_ABORTED', 'connect'), {
          code: 'FL_ABORTED',
          message: 'probe aborted during connect',
        }),
      );
    const timer = setTimeout(
      () =>
        finish(
          new ProbeFailure(classifyProbeCode('FL_CONNECT_TIMEOUT', 'connect'), {
            code: 'FL_CONNECT_TIMEOUT',
            message: `no answer to the TCP handshake within ${Math.round(clock.timeoutMs)} ms`,
          }),
        ),
      clock.remainingMs(),
    );
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once('connect', onConnect);
    socket.setNoDelay(true);
    socket.connect({ host: ip, port });
  });
}

/**
 * Reads from a connected socket until `done` says the bytes so far are a complete answer
 * (returns a value), the peer closes or resets, or the deadline passes. Optionally writes
 * `send` first. Records `firstByteMs` from the write (or from connect when nothing is sent).
 *
 * Fails with protocol_timeout on silence, tcp_reset on a reset, and protocol_error when the
 * peer closes before `done` accepts what it sent.
 */
export function exchange<T>(
  socket: Socket,
  send: Buffer | undefined,
  done: (received: Buffer) => T | undefined,
  clock: ProbeClock,
  opts: { maxBytes?: number } = {},
): Promise<T> {
  const maxBytes = opts.maxBytes ?? 64 * 1024;
  return new Promise<T>((resolve, reject) => {
    const t = clock.now();
    let received: Buffer = Buffer.alloc(0);
    let firstByte = false;
    const finish = (value: T | undefined, err?: ProbeFailure): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('end', onEnd);
      if (err !== undefined) reject(err);
      else resolve(value as T);
    };
    const onData = (chunk: Buffer): void => {
      if (!firstByte) {
        firstByte = true;
        clock.mark('firstByteMs', t);
      }
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      let value: T | undefined;
      try {
        value = done(received);
      } catch (err) {
        finish(
          undefined,
          err instanceof ProbeFailure
            ? err
            : new ProbeFailure(classifyError(err, 'exchange'), rawError(err)),
        );
        return;
      }
      if (value !== undefined) finish(value);
      else if (received.length >= maxBytes) {
        finish(
          undefined,
          new ProbeFailure(
            classifyProbeCode('FL_ANSWER_TOO_LONG', 'exchange'),
            {
              code: 'FL_ANSWER_TOO_LONG',
              message: `no expected answer in the first ${maxBytes} bytes`,
            },
            {
              received: preview(received),
            },
          ),
        );
      }
    };
    const onError = (err: Error): void => {
      finish(undefined, new ProbeFailure(classifyConnectionError(err), rawError(err)));
    };
    const onEnd = (): void => {
      finish(
        undefined,
        new ProbeFailure(
          classifyProbeCode('FL_PEER_CLOSED', 'exchange'),
          {
            code: 'FL_PEER_CLOSED',
            message:
              received.length === 0
                ? 'the peer closed the connection without answering'
                : 'the peer closed the connection before a complete answer',
          },
          { received: preview(received) },
        ),
      );
    };
    const timer = setTimeout(
      () =>
        finish(
          undefined,
          new ProbeFailure(
            classifyProbeCode('FL_ANSWER_TIMEOUT', 'exchange'),
            {
              code: 'FL_ANSWER_TIMEOUT',
              message:
                received.length === 0
                  ? 'connected, but no answer before the timeout'
                  : 'connected, but the answer was incomplete at the timeout',
            },
            { received: preview(received) },
          ),
        ),
      clock.remainingMs(),
    );
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('end', onEnd);
    if (send !== undefined && send.length > 0) socket.write(send);
  });
}

/** Ends a probe connection with a reset, so it never sits in TIME_WAIT on our side. */
export function abortConnection(socket: Socket): void {
  if (socket.destroyed) return;
  // A reset on a connection the peer already closed fails (EINVAL) asynchronously; that is fine.
  socket.on('error', () => undefined);
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Printable first bytes of an answer, for humans reading a protocol_error. */
export function preview(buf: Buffer, max = 120): string {
  return buf
    .subarray(0, max)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '.');
}

/**
 * Runs a connection-based probe body with the shared failure handling: a ProbeFailure
 * becomes its class, the socket is always reset, and timings are kept.
 */
export async function withConnection(
  host: string,
  port: number,
  family: Family,
  clock: ProbeClock,
  signal: AbortSignal,
  body: (socket: Socket, ip: string) => Promise<ProbeOutcome>,
): Promise<ProbeOutcome> {
  let socket: Socket | undefined;
  let ip: string | undefined;
  try {
    ip = await resolveHost(host, family, clock);
    socket = await connect(ip, port, clock, signal);
    return await body(socket, ip);
  } catch (err) {
    if (err instanceof ProbeFailure) {
      // The address tried stays on a failure (which host of a name failed; its IP version).
      const detail = ip === undefined ? err.detail : { ip, ...err.detail };
      return clock.outcome(err.failureClass, {
        error: err.raw,
        ...(detail ? { detail } : {}),
      });
    }
    throw err;
  } finally {
    if (socket !== undefined) abortConnection(socket);
  }
}
