import { z } from 'zod';
import { classifyError, rawError } from './classify.js';
import { finishWithLoginCheck, shutDownClient, timedCheck } from './db-check.js';
import { exchange, preview, ProbeClock, ProbeFailure, withConnection } from './socket.js';
import type { ProbeDefinition } from './types.js';

export const redisOptions = z
  .object({
    /** ACL user of the authenticated check (Redis 6+); default: the `default` user. */
    username: z.string().min(1).max(256).optional(),
    /**
     * Password. When set, the probe also logs in (ioredis: AUTH) and runs PING after the
     * handshake check; a refused login is then a protocol_error.
     */
    password: z.string().max(1024).optional(),
    /** Address family: 4, 6, or 0 for the resolver's first answer. */
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
  })
  .strict();
export type RedisOptions = z.infer<typeof redisOptions>;

const maxLineBytes = 4096;
const closeWaitMs = 250;

/**
 * RESP error codes (the first word of an error reply, which RESP defines as the error's
 * kind) that mean the server is alive and serving but refuses this client: it wants a
 * password (NOAUTH), the user lacks a permission (NOPERM), or protected mode refuses
 * non-local clients (DENIED). Every other code (LOADING, BUSY, MASTERDOWN, ERR max clients…)
 * says it does not give service.
 */
const refusesOnlyUs = new Set(['NOAUTH', 'NOPERM', 'DENIED']);

type Reply =
  | { readonly kind: 'simple'; readonly text: string }
  | { readonly kind: 'error'; readonly code: string; readonly text: string };

/** The first RESP reply line, once complete; throws on anything that is not RESP. */
function parseReply(buf: Buffer): Reply | undefined {
  const type = String.fromCharCode(buf[0] ?? 0);
  if (!'+-$*:'.includes(type)) {
    throw new ProbeFailure(
      'protocol_error',
      { code: 'FL_REDIS_UNEXPECTED', message: 'the answer to PING is not a RESP reply' },
      { received: preview(buf) },
    );
  }
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    if (buf.length > maxLineBytes) {
      throw new ProbeFailure(
        'protocol_error',
        {
          code: 'FL_REDIS_UNEXPECTED',
          message: `no end of line in the first ${maxLineBytes} bytes`,
        },
        { received: preview(buf) },
      );
    }
    return undefined;
  }
  const text = buf.subarray(1, end).toString('utf8');
  if (type === '+') return { kind: 'simple', text };
  if (type === '-') return { kind: 'error', code: errorCodeOf(text), text };
  throw new ProbeFailure(
    'protocol_error',
    { code: 'FL_REDIS_UNEXPECTED', message: `PING was answered with a '${type}' reply` },
    { received: preview(buf) },
  );
}

/** RESP's error kind: the first word of the error text (uppercase by convention). */
function errorCodeOf(text: string): string {
  return text.split(' ', 1)[0] ?? '';
}

/** Logs in with ioredis and runs PING; returns facts for `detail`. */
async function authenticatedCheck(
  ip: string,
  port: number,
  options: RedisOptions,
  password: string,
  clock: ProbeClock,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  // Loaded on first use: an agent that never logs in to a database does not carry the driver.
  const { Redis } = await import('ioredis');
  let connected = false;
  const client = new Redis({
    host: ip,
    port,
    ...(options.username !== undefined ? { username: options.username } : {}),
    password,
    lazyConnect: true,
    // One attempt, within our deadline: no retries, no queue, no reconnects.
    connectTimeout: Math.max(1, Math.round(clock.remainingMs())),
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    reconnectOnError: () => false,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    autoResubscribe: false,
  });
  // ioredis reports a refused AUTH only as an 'error' event; the commands after it then
  // fail with a generic "connection closed". Keep the server's reply to classify by.
  let authReply: Error | undefined;
  client.on('error', (err: Error) => {
    if (err.name === 'ReplyError') authReply ??= err;
  });
  client.once('connect', () => (connected = true));
  try {
    const { queryMs } = await timedCheck(
      clock,
      signal,
      async () => {
        await client.connect();
        // Typed as 'PONG' by ioredis; a proxy or a renamed command may answer otherwise.
        const pong: string = await client.ping();
        if (pong !== 'PONG') {
          throw new ProbeFailure(
            'protocol_error',
            { code: 'FL_REDIS_UNEXPECTED', message: `PING answered ${pong.slice(0, 80)}` },
            { query: 'failed' },
          );
        }
      },
      () => client.disconnect(),
      () => connected,
    );
    return { query: 'ok', queryMs };
  } catch (thrown) {
    if (thrown instanceof ProbeFailure) throw thrown;
    const err = authReply ?? thrown;
    // ioredis raises a server's error reply as a ReplyError whose message is the reply text.
    if (err instanceof Error && err.name === 'ReplyError') {
      const code = errorCodeOf(err.message);
      throw new ProbeFailure(
        'protocol_error',
        { code, message: err.message.slice(0, 1024) },
        { query: 'failed', errorCode: code },
      );
    }
    throw new ProbeFailure(classifyError(err, 'exchange'), rawError(err), { query: 'failed' });
  } finally {
    // QUIT lets the server close first; disconnect() then ends whatever is left.
    await shutDownClient(
      () => (client.status === 'ready' ? client.quit() : Promise.resolve()),
      () => client.disconnect(),
      Math.min(closeWaitMs, clock.remainingMs()),
    );
  }
}

/**
 * Redis handshake: sends an inline PING and reads the first reply line. +PONG is ok; an error
 * reply is judged by its RESP error code (its first word): NOAUTH, NOPERM and DENIED mean
 * alive but refusing this client (ok, `authRequired` for NOAUTH); LOADING, BUSY, MASTERDOWN
 * and any other code are protocol_error. Silence is protocol_timeout. With `password` set,
 * it then logs in with ioredis and runs PING.
 */
export const redis: ProbeDefinition<RedisOptions> = {
  kind: 'redis',
  transport: 'tcp',
  description: 'Redis PING (alive and serving?), optionally AUTH and PING',
  target: { form: 'hostPort', defaultPort: 6379 },
  options: redisOptions,
  mainTiming: 'firstByteMs',
  async run(target, options, ctx) {
    const clock = new ProbeClock(ctx.timeoutMs);
    const port = target.port ?? 6379;
    return withConnection(
      target.host,
      port,
      options.family,
      clock,
      ctx.signal,
      async (socket, ip) => {
        const reply = await exchange(socket, Buffer.from('PING\r\n'), parseReply, clock, {
          maxBytes: maxLineBytes + 2,
        });
        const detail: Record<string, unknown> = { ip };
        if (reply.kind === 'simple') {
          if (reply.text !== 'PONG') {
            return clock.outcome('protocol_error', {
              error: {
                code: 'FL_REDIS_UNEXPECTED',
                message: `PING was answered +${reply.text.slice(0, 80)}`,
              },
              detail,
            });
          }
          detail.reply = 'PONG';
          detail.authRequired = false;
        } else {
          detail.errorCode = reply.code;
          if (!refusesOnlyUs.has(reply.code)) {
            return clock.outcome('protocol_error', {
              error: { code: reply.code.slice(0, 64), message: reply.text.slice(0, 1024) },
              detail,
            });
          }
          if (reply.code === 'NOAUTH') detail.authRequired = true;
        }
        const password = options.password;
        return finishWithLoginCheck(
          clock,
          detail,
          password === undefined
            ? undefined
            : () => authenticatedCheck(ip, port, options, password, clock, ctx.signal),
        );
      },
    );
  },
};
