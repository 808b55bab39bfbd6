import { Socket } from 'node:net';
import { z } from 'zod';
import {
  closeGently,
  closeWaitMs,
  runDatabaseProbe,
  type DatabaseProtocol,
  type LoginSession,
} from './db-check.js';
import { classifyProbeCode } from './classify.js';
import { abortConnection, exchange, preview, ProbeFailure, type ProbeClock } from './socket.js';
import type { ProbeDefinition, ProbeOutcome } from './types.js';

// PostgreSQL names: no NUL (the wire format's terminator), at most NAMEDATALEN-1 bytes.
const pgName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[^\0]+$/, 'must not contain NUL');

export const postgresOptions = z
  .object({
    /**
     * Role named in the startup message. It need not exist: the handshake check passes as
     * soon as the server asks for authentication (or refuses the role). Also the login role
     * of the authenticated check.
     */
    user: pgName.default('faultline'),
    /** Database named in the startup message and used by the authenticated check; default: same as `user`. */
    database: pgName.optional(),
    /**
     * Password of `user`. When set (an empty string too), the probe also logs in and runs
     * `SELECT 1` after the handshake check; a refused login is then a protocol_error.
     */
    password: z.string().max(1024).optional(),
    /** Address family: 4, 6, or 0 for the resolver's first answer. */
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
  })
  .strict();
export type PostgresOptions = z.infer<typeof postgresOptions>;

const protocol30 = 196608;
const maxMessageBytes = 64 * 1024;

/** Authentication request codes (the Int32 after 'R') and their names. */
const authMethods: Readonly<Record<number, string>> = {
  0: 'ok',
  2: 'kerberos',
  3: 'cleartext',
  5: 'md5',
  7: 'gss',
  9: 'sspi',
  10: 'sasl',
};

/**
 * SQLSTATEs a server sends before login when it is alive and serving but refuses *us*: who
 * we are (class 28: role, pg_hba.conf, password), or what we asked for (3D000: no such
 * database, 42501: no CONNECT privilege). Every other SQLSTATE — 57P03 starting up / shutting
 * down / in recovery, 53300 too many connections, 53xxx out of resources, 58xxx, XX000… —
 * says the database does not give service.
 */
function refusesOnlyUs(sqlstate: string): boolean {
  return sqlstate.startsWith('28') || sqlstate === '3D000' || sqlstate === '42501';
}

function startupMessage(user: string, database: string | undefined): Buffer {
  const params = [
    'user',
    user,
    ...(database ? ['database', database] : []),
    'application_name',
    'faultline',
  ];
  const body = Buffer.from(params.map((p) => `${p}\0`).join('') + '\0', 'utf8');
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(protocol30, 4);
  return Buffer.concat([head, body]);
}

type FirstMessage =
  | { readonly type: 'auth'; readonly code: number; readonly mechanisms?: string[] }
  | { readonly type: 'error'; readonly fields: ReadonlyMap<string, string> };

/** The server's answer to the startup message, once complete; throws on anything else. */
function parseFirstMessage(buf: Buffer): FirstMessage | undefined {
  const type = String.fromCharCode(buf[0] ?? 0);
  if (type !== 'R' && type !== 'E') {
    throw new ProbeFailure(
      classifyProbeCode('FL_PG_UNEXPECTED', 'exchange'),
      {
        code: 'FL_PG_UNEXPECTED',
        message:
          "the answer to the startup message is not PostgreSQL's (expected an authentication request or an error)",
      },
      { received: preview(buf) },
    );
  }
  if (buf.length < 5) return undefined;
  const length = buf.readUInt32BE(1);
  if (length < 4 || length > maxMessageBytes || (type === 'R' && length < 8)) {
    throw new ProbeFailure(
      classifyProbeCode('FL_PG_BAD_LENGTH', 'exchange'),
      {
        code: 'FL_PG_BAD_LENGTH',
        message: `a '${type}' message of length ${length} is not PostgreSQL's`,
      },
      { received: preview(buf) },
    );
  }
  if (buf.length < 1 + length) return undefined;
  const body = buf.subarray(5, 1 + length);
  if (type === 'R') {
    const code = body.readUInt32BE(0);
    if (code !== 10) return { type: 'auth', code };
    const mechanisms = body
      .subarray(4)
      .toString('utf8')
      .split('\0')
      .filter((m) => m.length > 0);
    return { type: 'auth', code, mechanisms };
  }
  const fields = new Map<string, string>();
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const end = body.indexOf(0, at + 1);
    if (end < 0) break;
    fields.set(String.fromCharCode(body[at] ?? 0), body.subarray(at + 1, end).toString('utf8'));
    at = end + 1;
  }
  return { type: 'error', fields };
}

/** pg's login and SELECT 1 over a connection of its own. */
async function pgSession(
  ip: string,
  port: number,
  options: PostgresOptions,
  password: string,
): Promise<LoginSession> {
  // Loaded on first use: an agent that never logs in to a database does not carry the driver.
  const { default: pg } = await import('pg');
  // Our own socket: pg connects it, and we can always tear it down (pg has no destroy()).
  const socket = new Socket();
  let connected = false;
  socket.once('connect', () => (connected = true));
  const client = new pg.Client({
    host: ip,
    port,
    user: options.user,
    password,
    database: options.database ?? options.user,
    application_name: 'faultline',
    // Nothing from PG* environment variables or files: the probe checks what it was told to.
    ssl: false,
    stream: () => socket,
  });
  client.on('error', () => undefined);
  return {
    async check() {
      await client.connect();
      await client.query('SELECT 1');
    },
    cancel: () => abortConnection(socket),
    connected: () => connected,
    refusal: (err) =>
      err instanceof pg.DatabaseError && err.code !== undefined
        ? new ProbeFailure(
            'protocol_error',
            { code: err.code, message: err.message.slice(0, 1024) },
            { query: 'failed', sqlstate: err.code },
          )
        : undefined,
    // Terminate lets the server close first; a reset would be logged by the server.
    end: () => client.end(),
    destroy: () => socket.destroy(),
  };
}

/**
 * The startup handshake: alive and speaking PostgreSQL (an authentication request, or a
 * refusal of this client) goes on; any other answer decides the probe.
 */
async function handshake(
  socket: Socket,
  options: PostgresOptions,
  clock: ProbeClock,
  detail: Record<string, unknown>,
): Promise<ProbeOutcome | undefined> {
  const first = await exchange(
    socket,
    startupMessage(options.user, options.database),
    parseFirstMessage,
    clock,
    {
      maxBytes: maxMessageBytes + 1,
    },
  );
  if (first.type === 'auth') {
    detail.authCode = first.code;
    detail.authMethod = authMethods[first.code] ?? 'unknown';
    if (first.mechanisms !== undefined) detail.saslMechanisms = first.mechanisms;
    // Logged in already (trust): Terminate makes the server close first, quietly.
    if (first.code === 0) socket.write(Buffer.from([0x58, 0, 0, 0, 4]));
    await closeGently(socket, Math.min(closeWaitMs, clock.remainingMs()));
    return undefined;
  }
  const sqlstate = first.fields.get('C');
  const message = (first.fields.get('M') ?? '').slice(0, 1024);
  await closeGently(socket, Math.min(closeWaitMs, clock.remainingMs()));
  if (sqlstate === undefined) {
    return clock.outcome(classifyProbeCode('FL_PG_NO_SQLSTATE', 'exchange'), {
      error: {
        code: 'FL_PG_NO_SQLSTATE',
        message: `an ErrorResponse without SQLSTATE: ${message}`,
      },
      detail,
    });
  }
  detail.sqlstate = sqlstate;
  const severity = first.fields.get('V') ?? first.fields.get('S');
  if (severity !== undefined) detail.severity = severity;
  if (!refusesOnlyUs(sqlstate)) {
    return clock.outcome('protocol_error', { error: { code: sqlstate, message }, detail });
  }
  return undefined;
}

const protocol: DatabaseProtocol<PostgresOptions> = {
  defaultPort: 5432,
  handshake,
  login: (ip, port, options, password) => pgSession(ip, port, options, password),
};

/**
 * PostgreSQL wire handshake: sends a StartupMessage (protocol 3.0) and reads the first
 * message. An authentication request of any kind, or a refusal of the role, database or
 * client address (SQLSTATE class 28, 3D000, 42501), means the server is alive and speaking
 * its protocol: ok. Any other ErrorResponse (57P03 starting up / shutting down, 53300 too
 * many connections…) or other bytes is protocol_error; silence is protocol_timeout.
 * With `password` set, it then logs in with `pg` and runs `SELECT 1`.
 */
export const postgres: ProbeDefinition<PostgresOptions> = {
  kind: 'postgres',
  transport: 'tcp',
  description: 'PostgreSQL startup handshake (alive and serving?), optionally a login and SELECT 1',
  target: { form: 'hostPort', defaultPort: 5432 },
  options: postgresOptions,
  mainTiming: 'firstByteMs',
  run: (target, options, ctx) => runDatabaseProbe(protocol, target, options, ctx),
};
