import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestHost } from './netns.js';
import { pollUntil } from './poll-until.js';

/**
 * The process mechanics shared by the throwaway database servers of the tests
 * (lab/postgres.ts, lab/redis.ts, test/helpers/mysql.ts): start in a temp dir, on loopback or inside
 * a TestNet namespace host, freeze/thaw/kill every process of the server by PID, restart on
 * the same port and data, and stop for good (removing the temp dir).
 *
 * ```ts
 * let db: PostgresServer;
 * beforeAll(async () => { host = await net.addHost('db-1'); db = await startPostgres({ host }); });
 * afterAll(async () => { await db?.stop(); await net?.destroy(); }); // stop before destroy
 * // db.address → "198.18.x.y:5432"; db.freeze()/thaw() hang it; db.kill()/restart() crash it.
 * ```
 *
 * Only processes this module started (and their descendants) are ever signalled, by PID.
 * A server is started ready (its own PID holds the listener and it answers its protocol).
 * Nets under a test that fails to call `stop()`: every server dies with the test process
 * (parent-death signal, even when the worker is SIGKILLed), and an exit handler kills what is
 * left; only the temp dir (and, for a killed PostgreSQL, a 56-byte SysV segment) can remain
 * then.
 */

/** A running throwaway server, as the tests see it. */
export interface ServerProcess {
  /** Address clients connect to: 127.0.0.1, or the namespace host's IP. */
  readonly host: string;
  /** TCP port the server listens on. */
  readonly port: number;
  /** `host:port`, ready to be a probe target. */
  readonly address: string;
  /** The temp dir holding the server's data, sockets and logs; removed by `stop()`. */
  readonly dir: string;
  /** PID of the server's main process (postmaster, redis-server, mariadbd); undefined when down. */
  readonly pid: number | undefined;
  /** The main process and all its descendants, right now (empty when down). */
  pids(): number[];
  /**
   * SIGSTOPs every process of the server and waits until the kernel shows them stopped.
   * The listening socket stays open: new connections still complete the TCP handshake into
   * the listen backlog, but nothing answers — a hung server.
   */
  freeze(): Promise<void>;
  /** SIGCONTs every process of the server and waits until none is stopped. */
  thaw(): Promise<void>;
  /**
   * SIGKILLs every process of the server (a crash) and waits until they are gone. The data
   * dir is kept, so `restart()` brings the same server back on the same port.
   */
  kill(): Promise<void>;
  /** Starts the server again (after `kill()`) on the same port and data; waits until ready. */
  restart(): Promise<void>;
  /** Ends the server (gracefully, then by SIGKILL) and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** Everything the server logged so far (its stdout/stderr, last 256 KiB, or its log file). */
  log(): string;
  /** The last `lines` lines of `log()`, for failure messages. */
  logTail(lines?: number): string;
}

/** How one kind of server is launched and checked; given by each server helper. */
export interface LaunchSpec {
  /** For messages: "postgres", "redis", "mariadb". */
  readonly name: string;
  /** Command and arguments that run the server in the foreground (its PID is the server). */
  readonly command: string;
  readonly args: readonly string[];
  /** Extra environment, on top of a minimal PATH/LANG. */
  readonly env?: Readonly<Record<string, string>>;
  /** Resolves true once the server accepts clients (polled). */
  ready(): Promise<boolean>;
  /** Signal for a graceful stop (default SIGTERM). */
  readonly stopSignal?: NodeJS.Signals;
  /** Extra log text on failure (servers that log to a file). */
  readonly logFile?: string;
  /** Called after the server's processes are gone for good, before the dir is removed. */
  readonly afterStop?: () => Promise<void> | void;
  /** How long startup may take. */
  readonly startTimeoutMs?: number;
}

const live = new Set<ManagedServer>();
// A safety net for a test that forgot stop(): nothing it started outlives the worker.
process.once('exit', () => {
  for (const server of live) server.killNowSync();
});

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A free TCP port on 127.0.0.1 for a server started later. Taken below the kernel's
 * ephemeral range (ip_local_port_range), so that no outgoing connection (of which the probe
 * tests make many) and no port-0 listener can grab it between this check and the server's
 * bind, nor while a killed server is down before its restart.
 */
export async function freePort(): Promise<number> {
  let low = 32768;
  try {
    low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
    );
  } catch {
    /* not Linux: keep the IANA default */
  }
  const base = 10_000;
  const span = Math.max(1000, low - base);
  for (let i = 0; i < 50; i++) {
    const port = base + randomInt(span);
    if (await portIsFree(port)) return port;
  }
  throw new Error(`no free port found in ${base}–${base + span}`);
}

/**
 * Connects to host:port, optionally sends `send`, and resolves with the first bytes that
 * arrive — or undefined on refusal, close or silence within `timeoutMs`. For readiness
 * checks; the socket is always destroyed.
 */
export function firstBytes(
  host: string,
  port: number,
  send: Buffer | string | undefined,
  timeoutMs = 1000,
): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const done = (value: Buffer | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once('connect', () => {
      if (send !== undefined) socket.write(send);
    });
    socket.once('data', (d: Buffer) => done(d));
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(undefined));
  });
}

/** A fresh temp dir for one server (under the OS temp dir, named after the kind). */
export function makeServerDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `faultline-${prefix}-`));
}

/** `command args…` run inside `host`'s namespace when given (ip netns exec execs: same PID). */
export function inHost(
  host: TestHost | undefined,
  command: string,
  args: readonly string[],
): { command: string; args: string[] } {
  if (host === undefined) return { command, args: [...args] };
  return { command: 'ip', args: ['netns', 'exec', host.ns, command, ...args] };
}

/** A `ready` check for a server with an HTTP health endpoint: true once `url` answers 2xx. */
export function httpReady(url: string): () => Promise<boolean> {
  return async () => {
    try {
      return (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      return false;
    }
  };
}

/**
 * `command args…` made to die with the test process: setpriv sets the parent-death signal
 * (SIGKILL) and execs, so the PID stays the server's. This is the net under a test worker
 * that is itself killed before any afterAll or exit handler could run.
 */
export function diesWithParent(command: string, args: readonly string[]): [string, string[]] {
  return ['setpriv', ['--pdeathsig', 'KILL', '--', command, ...args]];
}

/** State letter from /proc/<pid>/stat (R, S, D, T, t, Z…), or undefined when gone. */
export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: state follows the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

function isGone(pid: number): boolean {
  const state = procState(pid);
  return state === undefined || state === 'Z' || state === 'X';
}

/** `root` and all its live descendants. */
export function processTree(root: number): number[] {
  if (isGone(root)) return [];
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const tree: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (isGone(pid)) continue;
    tree.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/**
 * Whether one of `pids` holds a listening TCP socket on `port` (in its own network
 * namespace). Tells our server apart from another process already answering on that port.
 */
export function listensOn(pids: readonly number[], port: number): boolean {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m?.[1] !== undefined) inodes.add(m[1]);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pids[0]}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && inodes.has(f[9] ?? '')) return true;
    }
  }
  return false;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** One server process under a test's control. */
export class ManagedServer implements ServerProcess {
  readonly address: string;
  private child: ChildProcess | undefined;
  private output = '';
  private stopped = false;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly dir: string,
    private readonly spec: LaunchSpec,
  ) {
    this.address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  }

  get pid(): number | undefined {
    const pid = this.child?.pid;
    return pid !== undefined && !isGone(pid) ? pid : undefined;
  }

  pids(): number[] {
    const pid = this.pid;
    return pid === undefined ? [] : processTree(pid);
  }

  log(): string {
    let text = this.output;
    if (this.spec.logFile !== undefined) {
      try {
        text += readFileSync(this.spec.logFile, 'utf8');
      } catch {
        /* not written yet */
      }
    }
    return text;
  }

  logTail(lines = 30): string {
    return this.log().split('\n').slice(-lines).join('\n');
  }

  /** Starts the server and waits until `spec.ready()`; on failure, ends it and throws with its log. */
  async start(): Promise<void> {
    if (this.stopped) throw new Error(`${this.spec.name}: already stopped for good`);
    if (this.pid !== undefined) throw new Error(`${this.spec.name}: already running`);
    live.add(this);
    const child = spawn(this.spec.command, this.spec.args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', ...this.spec.env },
    });
    this.child = child;
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-256 * 1024);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let exited = false;
    let spawnError: Error | undefined;
    child.once('exit', () => (exited = true));
    child.once('error', (err) => {
      spawnError = err;
      exited = true;
    });
    try {
      const outcome = await pollUntil(
        `${this.spec.name} on ${this.address} to accept clients`,
        async () => {
          if (exited) return 'exited';
          // Our process must hold the listener: another one on the port must not pass for it.
          if (!listensOn(this.pids(), this.port)) return false;
          return (await this.spec.ready()) && 'ready';
        },
        { timeoutMs: this.spec.startTimeoutMs ?? 20_000, intervalMs: 50 },
      );
      if (outcome === 'exited') {
        throw new Error(
          `${this.spec.name} exited during startup${spawnError ? `: ${spawnError.message}` : ''}`,
        );
      }
    } catch (err) {
      await this.kill();
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(`${why}\n--- ${this.spec.name} log ---\n${this.logTail()}`);
    }
  }

  async restart(): Promise<void> {
    if (this.pid !== undefined) await this.kill();
    await this.start();
  }

  async freeze(): Promise<void> {
    // Repeat until stable: a stopped parent cannot fork, so the set stops growing.
    await pollUntil(`${this.spec.name} processes to be stopped`, () => {
      const pids = this.pids();
      for (const pid of pids) signal(pid, 'SIGSTOP');
      return pids.length > 0 && pids.every((pid) => procState(pid) === 'T');
    });
  }

  async thaw(): Promise<void> {
    await pollUntil(`${this.spec.name} processes to run again`, () => {
      const pids = this.pids();
      for (const pid of pids) signal(pid, 'SIGCONT');
      return pids.every((pid) => procState(pid) !== 'T');
    });
  }

  async kill(): Promise<void> {
    const main = this.pid;
    if (main === undefined) return;
    // Stop the main process first so that it forks nothing between the snapshot and the kill,
    // and its children cannot be reparented out of the snapshot.
    signal(main, 'SIGSTOP');
    const pids = processTree(main);
    for (const pid of pids) signal(pid, 'SIGKILL');
    await pollUntil(`${this.spec.name} processes to be gone`, () => pids.every(isGone));
    await this.waitChildExit();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      const main = this.pid;
      if (main !== undefined) {
        const pids = this.pids();
        for (const pid of pids) signal(pid, 'SIGCONT');
        signal(main, this.spec.stopSignal ?? 'SIGTERM');
        try {
          await pollUntil(`${this.spec.name} to shut down`, () => pids.every(isGone), {
            timeoutMs: 10_000,
          });
        } catch {
          this.stopped = false;
          await this.kill();
          this.stopped = true;
        }
        await this.waitChildExit();
      }
      await this.spec.afterStop?.();
    } finally {
      live.delete(this);
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  /** Synchronous last resort on process exit. */
  killNowSync(): void {
    const main = this.pid;
    if (main === undefined) return;
    signal(main, 'SIGSTOP');
    for (const pid of processTree(main)) signal(pid, 'SIGKILL');
  }

  private async waitChildExit(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // Reaped by libuv right after the kill; bounded anyway.
    await pollUntil(
      `${this.spec.name} child to be reaped`,
      () => child.exitCode !== null || child.signalCode !== null,
      { timeoutMs: 5_000, intervalMs: 10 },
    );
  }
}
