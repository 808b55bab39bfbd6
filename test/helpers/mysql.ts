import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestHost } from '../../lab/netns.js';
import {
  diesWithParent,
  firstBytes,
  freePort,
  inHost,
  makeServerDir,
  ManagedServer,
  type ServerProcess,
} from '../../lab/server-process.js';

const run = promisify(execFile);

/** Debian's MariaDB server and its data-dir bootstrapper. */
export const mariadbBin = '/usr/sbin/mariadbd';
export const mariadbInstallDbBin = '/usr/bin/mariadb-install-db';

/** Whether the tests can start a MariaDB server here. */
export const canRunMysql = existsSync(mariadbBin) && existsSync(mariadbInstallDbBin);

export interface MysqlServerOptions {
  /** Run inside this TestNet namespace host, listening on its IP; default: 127.0.0.1. */
  readonly host?: TestHost;
  /** Port; default 3306 inside a namespace host, a free port on loopback. */
  readonly port?: number;
  /** A user allowed from any host with all privileges; default "faultline". */
  readonly user?: string;
  /** Its password; default a random one. */
  readonly password?: string;
  /**
   * A user from any host with no password and no privileges — what an operator creates so
   * that the probe's handshake login succeeds quietly. Default: none.
   */
  readonly passwordlessUser?: string;
  /** Extra `--name=value` server arguments. */
  readonly args?: readonly string[];
}

/** A throwaway MariaDB server. */
export interface MysqlServer extends ServerProcess {
  readonly user: string;
  readonly password: string;
  readonly passwordlessUser: string | undefined;
}

function sqlString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * Starts a throwaway MariaDB (mariadbd from Debian's mariadb-server): mariadb-install-db
 * into a temp dir (≈1 s), then mariadbd listening on 127.0.0.1 or on the namespace host's
 * IP, with small InnoDB buffers, no binlog, no performance schema and no name resolution
 * (so no DNS lookups and no host cache: `max_connect_errors` blocking is never exercised
 * here). An init file creates `user` (and `passwordlessUser`) at every start. Resolves once
 * the server sends its greeting. End it with `stop()` in afterAll.
 */
export async function startMysql(opts: MysqlServerOptions = {}): Promise<MysqlServer> {
  const user = opts.user ?? 'faultline';
  const password = opts.password ?? randomBytes(12).toString('hex');
  const port = opts.port ?? (opts.host !== undefined ? 3306 : await freePort());
  const listenIp = opts.host?.ip ?? '127.0.0.1';
  const dir = makeServerDir('mysql');
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  const common = [
    '--no-defaults',
    `--datadir=${data}`,
    '--skip-name-resolve',
    '--innodb-buffer-pool-size=16M',
    '--innodb-log-file-size=4M',
    ...(asRoot ? ['--user=root'] : []),
  ];

  let server: ManagedServer | undefined;
  try {
    await run(
      mariadbInstallDbBin,
      [...common, '--auth-root-authentication-method=normal', '--skip-test-db'],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' } },
    ).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`mariadb-install-db failed: ${err.stderr?.trim() || err.message}`);
    });
    const initSql = [
      `CREATE USER IF NOT EXISTS ${sqlString(user)}@'%' IDENTIFIED BY ${sqlString(password)};`,
      `GRANT ALL PRIVILEGES ON *.* TO ${sqlString(user)}@'%';`,
    ];
    if (opts.passwordlessUser !== undefined) {
      initSql.push(`CREATE USER IF NOT EXISTS ${sqlString(opts.passwordlessUser)}@'%';`);
    }
    writeFileSync(join(dir, 'init.sql'), initSql.join('\n') + '\n');

    const logFile = join(dir, 'error.log');
    const launch = inHost(
      opts.host,
      ...diesWithParent(mariadbBin, [
        ...common,
        `--port=${port}`,
        `--bind-address=${listenIp}`,
        `--socket=${join(dir, 'mysql.sock')}`,
        `--pid-file=${join(dir, 'mariadbd.pid')}`,
        `--log-error=${logFile}`,
        `--tmpdir=${dir}`,
        `--init-file=${join(dir, 'init.sql')}`,
        '--skip-log-bin',
        '--performance-schema=OFF',
        '--innodb-flush-log-at-trx-commit=0',
        '--innodb-doublewrite=0',
        ...(opts.args ?? []),
      ]),
    );
    server = new ManagedServer(listenIp, port, dir, {
      name: 'mariadb',
      command: launch.command,
      args: launch.args,
      logFile,
      // A throwaway data dir leaves nothing behind: no clean shutdown needed.
      stopSignal: 'SIGKILL',
      startTimeoutMs: 20_000,
      ready: async () => {
        // The greeting: 3-byte length, sequence 0, protocol version 10.
        const greeting = await firstBytes(listenIp, port, undefined, 500);
        return greeting !== undefined && greeting.length > 4 && greeting[4] === 10;
      },
    });
    await server.start();
  } catch (err) {
    if (server !== undefined) await server.stop();
    else rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return Object.assign(server, { user, password, passwordlessUser: opts.passwordlessUser });
}
