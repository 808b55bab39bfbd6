import { z } from 'zod';
import type { Socket } from 'node:net';
import { runDatabaseProbe, type DatabaseProtocol, type LoginSession } from './db-check.js';
import { classifyProbeCode } from './classify.js';
import { exchange, preview, ProbeFailure, type ProbeClock } from './socket.js';
import type { ProbeDefinition, ProbeOutcome } from './types.js';

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
      classifyProbeCode('FL_REDIS_UNEXPECTED', 'exchange'),
      { code: 'FL_REDIS_UNEXPECTED', message: 'the answer to PING is not a RESP reply' },
      { received: preview(buf) },
    );
  }
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    if (buf.length > maxLineBytes) {
      throw new ProbeFailure(
        classifyProbeCode('FL_REDIS_UNEXPECTED', 'exchange'),
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
  if (type === '-') return { kind: 'error', code: respErrorKind(text), text };
  throw new ProbeFailure(
    classifyProbeCode('FL_REDIS_UNEXPECTED', 'exchange'),
    { code: 'FL_REDIS_UNEXPECTED', message: `PING was answered with a '${type}' reply` },
    { received: preview(buf) },
  );
}

/** RESP's error kind: the first word of the error text (uppercase by convention). */
function respErrorKind(text: string): string {
  return text.split(' ', 1)[0] ?? '';
}

/** ioredis's login (AUTH) and PING. */
async function redisSession(
  ip: string,
  port: number,
  options: RedisOptions,
  password: string,
  clock: ProbeClock,
): Promise<LoginSession> {
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
  return {
    async check() {
      await client.connect();
      // Typed as 'PONG' by ioredis; a proxy or a renamed command may answer otherwise.
      const pong: string = await client.ping();
      if (pong !== 'PONG') {
        throw new ProbeFailure(
          classifyProbeCode('FL_REDIS_UNEXPECTED', 'exchange'),
          { code: 'FL_REDIS_UNEXPECTED', message: `PING answered ${pong.slice(0, 80)}` },
          { query: 'failed' },
        );
      }
    },
    cancel: () => client.disconnect(),
    connected: () => connected,
    refusal(thrown) {
      const err = authReply ?? thrown;
      // ioredis raises a server's error reply as a ReplyError whose message is the reply text.
      if (!(err instanceof Error && err.name === 'ReplyError')) return undefined;
      const code = respErrorKind(err.message);
      return new ProbeFailure(
        'protocol_error',
        { code, message: err.message.slice(0, 1024) },
        { query: 'failed', errorCode: code },
      );
    },
    // QUIT lets the server close first; disconnect() then ends whatever is left.
    end: () => (client.status === 'ready' ? client.quit() : Promise.resolve()),
    destroy: () => client.disconnect(),
  };
}

/** The inline PING: +PONG, or an error reply judged by its RESP error code. */
async function handshake(
  socket: Socket,
  _options: RedisOptions,
  clock: ProbeClock,
  detail: Record<string, unknown>,
): Promise<ProbeOutcome | undefined> {
  const reply = await exchange(socket, Buffer.from('PING\r\n'), parseReply, clock, {
    maxBytes: maxLineBytes + 2,
  });
  if (reply.kind === 'simple') {
    if (reply.text !== 'PONG') {
      return clock.outcome(classifyProbeCode('FL_REDIS_UNEXPECTED', 'exchange'), {
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
  return undefined;
}

const protocol: DatabaseProtocol<RedisOptions> = {
  defaultPort: 6379,
  handshake,
  login: redisSession,
};

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
  run: (target, options, ctx) => runDatabaseProbe(protocol, target, options, ctx),
};
