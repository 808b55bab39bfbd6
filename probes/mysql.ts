import { connect as netConnect, type Socket } from 'node:net';
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

export const mysqlOptions = z
  .object({
    /**
     * User of the handshake login and of the authenticated check. For a quiet server log,
     * create it without a password and without privileges: the handshake login then
     * succeeds and ends with COM_QUIT.
     */
    user: z
      .string()
      .min(1)
      .max(80)
      .regex(/^[^\0]+$/, 'must not contain NUL')
      .default('faultline'),
    /**
     * Password of `user`. When set (an empty string too), the probe also logs in with
     * mysql2 and runs `SELECT 1` after the handshake check; a refused login is then a
     * protocol_error.
     */
    password: z.string().max(1024).optional(),
    /** Database of the authenticated check; default none. */
    database: z.string().min(1).max(64).optional(),
    /**
     * After the greeting, answer it with a login as `user` and an empty password instead of
     * hanging up. A client that hangs up during the handshake is an aborted connect to the
     * server: logged as "Aborted connection", and counted toward `max_connect_errors`, which
     * blocks the client's host (the agent's, maybe the app's too) once reached. A finished
     * login — accepted or denied — is neither.
     */
    login: z.boolean().default(true),
    /** Address family: 4, 6, or 0 for the resolver's first answer. */
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
  })
  .strict();
export type MysqlOptions = z.infer<typeof mysqlOptions>;

const maxPacketBytes = 64 * 1024;

// Capability flags (MySQL client/server protocol).
const clientLongPassword = 0x1;
const clientProtocol41 = 0x200;
const clientSecureConnection = 0x8000;
const clientPluginAuth = 0x80000;

/**
 * Error codes a server answers a login with when it is alive and serving but refuses *us*:
 * 1044 no access to the database, 1045 access denied, 1251 auth method unsupported by the
 * client, 1698 access denied without password, 3118/4151 account locked (MySQL/MariaDB),
 * 3159 insecure transport refused. Any other code (1040 too many connections, 1129 host
 * blocked, 1203 user over its connection limit…) says it does not give service.
 */
const refusesOnlyUs = new Set([1044, 1045, 1251, 1698, 3118, 3159, 4151]);

interface Packet {
  readonly seq: number;
  readonly payload: Buffer;
}

interface Greeting {
  readonly protocolVersion: number;
  readonly serverVersion: string;
  readonly capabilities: number;
  readonly authPlugin: string | undefined;
}

/** One complete packet (3-byte length, sequence id, payload), or undefined if incomplete. */
function readPacket(buf: Buffer): Packet | undefined {
  if (buf.length < 4) return undefined;
  const length = buf.readUIntLE(0, 3);
  if (length > maxPacketBytes) {
    throw new ProbeFailure(
      classifyProbeCode('FL_MYSQL_UNEXPECTED', 'exchange'),
      { code: 'FL_MYSQL_UNEXPECTED', message: `a ${length}-byte packet is not a MySQL handshake` },
      { received: preview(buf) },
    );
  }
  if (buf.length < 4 + length) return undefined;
  return { seq: buf[3] ?? 0, payload: buf.subarray(4, 4 + length) };
}

/** ERR packet: 0xff, error code (2 bytes), optional '#' + SQLSTATE, message. */
function errFailure(payload: Buffer, context: string): ProbeFailure {
  const errorCode = payload.length >= 3 ? payload.readUInt16LE(1) : 0;
  let rest = payload.subarray(3);
  let sqlstate: string | undefined;
  if (rest[0] === 0x23 && rest.length >= 6) {
    sqlstate = rest.subarray(1, 6).toString('latin1');
    rest = rest.subarray(6);
  }
  return new ProbeFailure(
    'protocol_error',
    { code: String(errorCode), message: `${context}: ${rest.toString('utf8').slice(0, 900)}` },
    { errorCode, ...(sqlstate !== undefined ? { sqlstate } : {}) },
  );
}

function cstring(buf: Buffer, at: number): { value: string; next: number } | undefined {
  const end = buf.indexOf(0, at);
  if (end < 0) return undefined;
  return { value: buf.subarray(at, end).toString('utf8'), next: end + 1 };
}

/** The server's first packet: a protocol-10 greeting, or an ERR (too many connections, host blocked…). */
function parseGreeting(buf: Buffer): Greeting | undefined {
  const packet = readPacket(buf);
  if (packet === undefined) return undefined;
  const p = packet.payload;
  if (p[0] === 0xff) throw errFailure(p, 'the server refused the connection');
  const version = cstring(p, 1);
  if (packet.seq !== 0 || p[0] !== 10 || version === undefined || p.length < version.next + 15) {
    throw new ProbeFailure(
      classifyProbeCode('FL_MYSQL_UNEXPECTED', 'exchange'),
      {
        code: 'FL_MYSQL_UNEXPECTED',
        message: 'the first packet is not a MySQL protocol-10 greeting',
      },
      { received: preview(buf), ...(p[0] !== undefined ? { protocolVersion: p[0] } : {}) },
    );
  }
  // connection id (4), auth data part 1 (8), filler (1), capabilities low (2)
  let at = version.next + 4 + 8 + 1;
  let capabilities = p.readUInt16LE(at);
  at += 2;
  let authPlugin: string | undefined;
  if (p.length >= at + 16) {
    capabilities |= p.readUInt16LE(at + 3) << 16;
    const authDataLength = p[at + 5] ?? 0;
    at += 16;
    if (capabilities & clientSecureConnection) at += Math.max(13, authDataLength - 8);
    if (capabilities & clientPluginAuth)
      authPlugin = cstring(p, at)?.value ?? p.subarray(at).toString('utf8');
  }
  return {
    protocolVersion: 10,
    serverVersion: version.value,
    capabilities: capabilities >>> 0,
    authPlugin,
  };
}

/** HandshakeResponse41: `user`, an empty auth response, the server's own auth plugin. */
function loginPacket(user: string, greeting: Greeting): Buffer {
  const plugin = (greeting.capabilities & clientPluginAuth) !== 0;
  const caps =
    clientLongPassword |
    clientProtocol41 |
    clientSecureConnection |
    (plugin ? clientPluginAuth : 0);
  const fixed = Buffer.alloc(32);
  fixed.writeUInt32LE(caps >>> 0, 0);
  fixed.writeUInt32LE(1 << 24, 4);
  fixed[8] = 33; // utf8_general_ci
  const parts = [fixed, Buffer.from(`${user}\0`, 'utf8'), Buffer.from([0])];
  if (plugin)
    parts.push(Buffer.from(`${greeting.authPlugin ?? 'mysql_native_password'}\0`, 'utf8'));
  return packet(1, Buffer.concat(parts));
}

function packet(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq;
  return Buffer.concat([head, payload]);
}

const comQuit = packet(0, Buffer.from([0x01]));

type LoginResult = 'ok' | 'denied' | 'incomplete';

/** Answers the greeting with a login; resolves how the server took it, or throws on a service fault. */
async function handshakeLogin(
  socket: Socket,
  user: string,
  greeting: Greeting,
  clock: ProbeClock,
  detail: Record<string, unknown>,
): Promise<LoginResult> {
  let reply = await exchange(socket, loginPacket(user, greeting), readPacket, clock);
  if (reply.payload[0] === 0xfe) {
    // Auth switch: answer with an empty auth response (an empty password), once.
    reply = await exchange(socket, packet(reply.seq + 1, Buffer.alloc(0)), readPacket, clock);
  }
  const head = reply.payload[0];
  if (head === 0x00) {
    socket.write(comQuit);
    return 'ok';
  }
  if (head === 0xff) {
    const failure = errFailure(reply.payload, 'the server refused the login');
    const errorCode = failure.detail?.errorCode as number;
    if (refusesOnlyUs.has(errorCode)) {
      detail.loginErrorCode = errorCode;
      return 'denied';
    }
    throw failure;
  }
  // More auth data wanted (e.g. caching_sha2 full auth needs TLS or a key): we stop here.
  if (head === 0x01 || head === 0xfe) return 'incomplete';
  throw new ProbeFailure(
    classifyProbeCode('FL_MYSQL_UNEXPECTED', 'exchange'),
    { code: 'FL_MYSQL_UNEXPECTED', message: 'the answer to the login is not a MySQL packet' },
    { received: preview(reply.payload) },
  );
}

interface ServerError {
  readonly errno?: number;
  readonly code?: string;
  readonly sqlState?: string;
}

/** mysql2's login and SELECT 1 over a connection of its own. */
async function mysqlSession(
  ip: string,
  port: number,
  options: MysqlOptions,
  password: string,
  clock: ProbeClock,
): Promise<LoginSession> {
  // Loaded on first use: an agent that never logs in to a database does not carry the driver.
  const { default: mysql2 } = await import('mysql2');
  // Our own socket: we know when TCP connected, and can always tear it down.
  const socket = netConnect({ host: ip, port });
  let connected = false;
  socket.once('connect', () => (connected = true));
  socket.setNoDelay(true);
  const conn = mysql2.createConnection({
    host: ip,
    port,
    user: options.user,
    password,
    ...(options.database !== undefined ? { database: options.database } : {}),
    stream: socket,
    connectTimeout: Math.max(1, Math.round(clock.remainingMs())),
  });
  conn.on('error', () => undefined);
  return {
    check: () =>
      new Promise<void>((resolve, reject) => {
        conn.query('SELECT 1', (err) => (err ? reject(err) : resolve()));
      }),
    cancel: () => abortConnection(socket),
    connected: () => connected,
    refusal(err) {
      const e = err as ServerError;
      // A server's ERR packet carries a SQLSTATE; a socket error does not.
      if (typeof e.sqlState !== 'string' || typeof e.errno !== 'number') return undefined;
      return new ProbeFailure(
        'protocol_error',
        {
          code: e.code ?? String(e.errno),
          message: err instanceof Error ? err.message.slice(0, 1024) : String(err),
        },
        {
          query: 'failed',
          errorCode: e.errno,
          ...(e.code !== undefined ? { errorName: e.code } : {}),
          sqlstate: e.sqlState,
        },
      );
    },
    // COM_QUIT lets the server close first; an aborted session is logged by the server.
    // After a failure the server has hung up (or is hung): nothing to wait for.
    end: (failed) =>
      failed ? Promise.resolve() : new Promise<void>((resolve) => conn.end(() => resolve())),
    destroy: () => conn.destroy(),
  };
}

/** The greeting, and unless `login` is off a login with an empty password; closed gently. */
async function handshake(
  socket: Socket,
  options: MysqlOptions,
  clock: ProbeClock,
  detail: Record<string, unknown>,
): Promise<ProbeOutcome | undefined> {
  try {
    const greeting = await exchange(socket, undefined, parseGreeting, clock);
    detail.serverVersion = greeting.serverVersion.slice(0, 120);
    if (greeting.authPlugin !== undefined) detail.authPlugin = greeting.authPlugin.slice(0, 64);
    const canLogin =
      (greeting.capabilities & clientProtocol41) !== 0 &&
      (greeting.capabilities & clientSecureConnection) !== 0;
    detail.login =
      options.login && canLogin
        ? await handshakeLogin(socket, options.user, greeting, clock, detail)
        : 'skipped';
  } catch (err) {
    if (!(err instanceof ProbeFailure)) throw err;
    return clock.outcome(err.failureClass, {
      error: err.raw,
      detail: { ...detail, ...err.detail },
    });
  }
  await closeGently(socket, Math.min(closeWaitMs, clock.remainingMs()));
  return undefined;
}

const protocol: DatabaseProtocol<MysqlOptions> = {
  defaultPort: 3306,
  handshake,
  login: mysqlSession,
};

/**
 * MySQL/MariaDB handshake: the server speaks first. A protocol-10 greeting is ok (detail:
 * serverVersion); an ERR packet instead (1040 too many connections, 1129 host blocked…) is
 * protocol_error with its errorCode; silence is protocol_timeout. Unless `login` is off, the
 * probe then logs in as `user` with an empty password so the server sees a finished
 * handshake; an access-denied answer still means alive (ok, `login: 'denied'`). With
 * `password` set, it then logs in with mysql2 and runs `SELECT 1`.
 */
export const mysql: ProbeDefinition<MysqlOptions> = {
  kind: 'mysql',
  transport: 'tcp',
  description:
    'MySQL/MariaDB greeting and login handshake (alive and serving?), optionally SELECT 1',
  target: { form: 'hostPort', defaultPort: 3306 },
  options: mysqlOptions,
  mainTiming: 'firstByteMs',
  run: (target, options, ctx) => runDatabaseProbe(protocol, target, options, ctx),
};
