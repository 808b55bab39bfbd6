import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestHost } from './netns.js';
import {
  diesWithParent,
  freePort,
  inHost,
  makeServerDir,
  ManagedServer,
  type ServerProcess,
} from './server-process.js';

const run = promisify(execFile);

/** Where Debian's PostgreSQL 15 binaries live. */
export const postgresBin = '/usr/lib/postgresql/15/bin';

/** Whether the tests can start a PostgreSQL server here. */
export const canRunPostgres = existsSync(join(postgresBin, 'postgres'));

/** How pg_hba.conf makes TCP clients authenticate. */
export type PgHostAuth = 'scram-sha-256' | 'password' | 'trust' | 'reject';

export interface PostgresServerOptions {
  /** Run inside this TestNet namespace host, listening on its IP; default: 127.0.0.1. */
  readonly host?: TestHost;
  /** Port; default 5432 inside a namespace host, a free port on loopback. */
  readonly port?: number;
  /** Superuser created by initdb; default "faultline". */
  readonly user?: string;
  /** Its password; default a random one. */
  readonly password?: string;
  /** pg_hba method for TCP clients (any address); default scram-sha-256. */
  readonly hostAuth?: PgHostAuth;
  /** Extra `-c name=value` settings. */
  readonly settings?: Readonly<Record<string, string>>;
}

/** A throwaway PostgreSQL server. */
export interface PostgresServer extends ServerProcess {
  readonly user: string;
  readonly password: string;
  /** A database that exists ("postgres"). */
  readonly database: string;
}

async function sh(cmd: string, args: readonly string[]): Promise<void> {
  try {
    await run(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' } });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * Starts a throwaway PostgreSQL 15 in a temp dir: initdb (superuser `user` with `password`,
 * no fsync), pg_hba letting TCP clients in with `hostAuth`, Unix socket in the temp dir, and
 * the postmaster listening on 127.0.0.1 or on the namespace host's IP. PostgreSQL refuses
 * to run as root, so when the tests run as root it runs as the `postgres` OS user (setpriv
 * execs, so the PID is the postmaster itself).
 *
 * Resolves once the postmaster says it is ready (postmaster.pid status line). End it with
 * `stop()` in afterAll: that shuts it down, removes a leftover shared-memory segment after a
 * crash, and removes the temp dir.
 */
export async function startPostgres(opts: PostgresServerOptions = {}): Promise<PostgresServer> {
  const user = opts.user ?? 'faultline';
  const password = opts.password ?? randomBytes(12).toString('hex');
  const port = opts.port ?? (opts.host !== undefined ? 5432 : await freePort());
  const listenIp = opts.host?.ip ?? '127.0.0.1';
  const dir = makeServerDir('pg');
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  const asRoot = process.getuid?.() === 0;
  // Drops to the postgres OS user and dies with the test process; setpriv execs, so the PID
  // is the server's.
  const asPostgres = (cmd: string, args: readonly string[]): [string, string[]] =>
    asRoot
      ? [
          'setpriv',
          [
            '--reuid=postgres',
            '--regid=postgres',
            '--clear-groups',
            '--pdeathsig',
            'KILL',
            '--',
            cmd,
            ...args,
          ],
        ]
      : diesWithParent(cmd, args);

  let server: ManagedServer | undefined;
  try {
    mkdirSync(sock);
    writeFileSync(join(dir, 'pwfile'), `${password}\n`, { mode: 0o600 });
    if (asRoot) {
      const { uid, gid } = postgresIds();
      for (const p of [dir, sock, join(dir, 'pwfile')]) chownSync(p, uid, gid);
    }
    await sh(
      ...asPostgres(join(postgresBin, 'initdb'), [
        '-D',
        data,
        '-U',
        user,
        `--pwfile=${join(dir, 'pwfile')}`,
        '--auth-local=trust',
        `--auth-host=${opts.hostAuth ?? 'scram-sha-256'}`,
        '--no-sync',
        '--no-instructions',
        '-E',
        'UTF8',
        '--locale=C',
      ]),
    );
    // initdb's host lines cover only loopback; namespace clients come from the bridge.
    const method = opts.hostAuth ?? 'scram-sha-256';
    writeFileSync(
      join(data, 'pg_hba.conf'),
      `local all all trust\nhost all all 0.0.0.0/0 ${method}\nhost all all ::/0 ${method}\n`,
    );

    const settings: Record<string, string> = {
      listen_addresses: listenIp,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      shared_buffers: '16MB',
      max_connections: '20',
      max_wal_senders: '0',
      wal_level: 'minimal',
      // Dynamic shared memory as files in the data dir: nothing left in /dev/shm after a kill.
      dynamic_shared_memory_type: 'mmap',
      logging_collector: 'off',
      ...opts.settings,
    };
    const args = ['-D', data, '-k', sock, '-p', String(port)];
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
    const [cmd, cmdArgs] = asPostgres(join(postgresBin, 'postgres'), args);
    const launch = inHost(opts.host, cmd, cmdArgs);
    const pidFile = join(data, 'postmaster.pid');

    server = new ManagedServer(listenIp, port, dir, {
      name: 'postgres',
      command: launch.command,
      args: launch.args,
      // Fast shutdown: clients are disconnected, shared memory is released.
      stopSignal: 'SIGINT',
      startTimeoutMs: 20_000,
      ready: async () => {
        // Line 1 is the postmaster PID (a stale file from a killed run names a dead one);
        // line 8 is its status, "ready" once it accepts connections.
        const lines = readPidFile(pidFile);
        return (
          lines !== undefined && Number(lines[0]) === server?.pid && lines[7]?.trim() === 'ready'
        );
      },
      afterStop: async () => {
        // A killed postmaster leaves its SysV segment behind; its key is in the PID file.
        const key = readPidFile(pidFile)?.[6]?.trim().split(/\s+/)[0];
        if (key !== undefined && /^\d+$/.test(key) && key !== '0') {
          await sh('ipcrm', ['-M', key]).catch(() => undefined);
        }
      },
    });
    await server.start();
  } catch (err) {
    if (server !== undefined) await server.stop();
    else rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return Object.assign(server, { user, password, database: 'postgres' });
}

function readPidFile(path: string): string[] | undefined {
  try {
    return readFileSync(path, 'utf8').split('\n');
  } catch {
    return undefined;
  }
}

function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const fields = line?.split(':');
  if (fields === undefined || fields.length < 4) {
    throw new Error('no "postgres" OS user: install the postgresql package');
  }
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}
