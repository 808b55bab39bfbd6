import { existsSync } from 'node:fs';
import type { TestHost } from './netns.js';
import {
  diesWithParent,
  firstBytes,
  freePort,
  inHost,
  makeServerDir,
  ManagedServer,
  type ServerProcess,
} from './server-process.js';

/** Debian's redis-server. */
export const redisServerBin = '/usr/bin/redis-server';

/** Whether the tests can start a Redis server here. */
export const canRunRedis = existsSync(redisServerBin);

export interface RedisServerOptions {
  /** Run inside this TestNet namespace host, listening on its IP; default: 127.0.0.1. */
  readonly host?: TestHost;
  /** Port; default 6379 inside a namespace host, a free port on loopback. */
  readonly port?: number;
  /** `requirepass` for the default user; default none (open server). */
  readonly password?: string;
  /** An extra ACL user with all permissions. */
  readonly aclUser?: { readonly username: string; readonly password: string };
  /** Extra `--name value…` arguments. */
  readonly args?: readonly string[];
}

/** A throwaway Redis server. */
export interface RedisServer extends ServerProcess {
  readonly password: string | undefined;
  readonly aclUser: { readonly username: string; readonly password: string } | undefined;
}

/**
 * Starts a throwaway redis-server in the foreground: no persistence (`--save ''`,
 * `--appendonly no`), working dir in a temp dir, protected mode off (so namespace clients
 * are served), listening on 127.0.0.1 or on the namespace host's IP. Resolves once it
 * answers PING (+PONG, or -NOAUTH when a password is set). End it with `stop()` in afterAll.
 */
export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const port = opts.port ?? (opts.host !== undefined ? 6379 : await freePort());
  const listenIp = opts.host?.ip ?? '127.0.0.1';
  const dir = makeServerDir('redis');
  const args = [
    '--port',
    String(port),
    '--bind',
    listenIp,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--dir',
    dir,
    '--protected-mode',
    'no',
    '--loglevel',
    'warning',
  ];
  if (opts.password !== undefined) args.push('--requirepass', opts.password);
  if (opts.aclUser !== undefined) {
    const { username, password } = opts.aclUser;
    args.push('--user', username, 'on', `>${password}`, '~*', '&*', '+@all');
  }
  args.push(...(opts.args ?? []));
  const launch = inHost(opts.host, ...diesWithParent(redisServerBin, args));
  const server = new ManagedServer(listenIp, port, dir, {
    name: 'redis',
    command: launch.command,
    args: launch.args,
    stopSignal: 'SIGTERM',
    startTimeoutMs: 10_000,
    ready: async () => {
      const reply = (await firstBytes(listenIp, port, 'PING\r\n', 500))?.toString('latin1');
      return reply !== undefined && (reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    },
  });
  try {
    await server.start();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return Object.assign(server, { password: opts.password, aclUser: opts.aclUser });
}
