import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { cliPath } from './cli.js';
import type { TestHost, TestNet } from '../../lab/netns.js';
import { pollUntil } from '../../lab/poll-until.js';
import { diesWithParent } from '../../lab/server-process.js';
import { fetchAsViewer } from './viewer.js';

/**
 * Real `faultline collector` and `faultline agent --collector` processes for end-to-end
 * tests: started through the built CLI as an operator would, logs kept, signalled by PID
 * only. Both die with the test process (parent-death signal) should its afterAll never run.
 *
 * ```ts
 * const collector = await CollectorProcess.start(configFile, `http://${net.gateway}:${port}`);
 * const a = AgentProcess.start(net, hostA, ['--collector', collector.url, '--token', T, …]);
 * afterAll(async () => { await a?.kill(); await collector?.kill(); await net?.destroy(); });
 * ```
 */

/** A CLI process with its output kept and its exit awaited. */
export class CliProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null) resolve(child.exitCode);
      else child.once('exit', (code) => resolve(code));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The JSON log lines (pino on stderr). */
  logLines(): Record<string, unknown>[] {
    return this.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pid !== undefined && this.running) process.kill(this.pid, sig);
  }

  /** SIGTERM and the exit code. */
  async stop(): Promise<number | null> {
    this.signal('SIGTERM');
    return this.exited;
  }

  /** SIGKILL (a crash) and wait until it is gone. */
  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }
}

/** A `faultline collector --config FILE` in the root namespace. */
export class CollectorProcess extends CliProcess {
  private constructor(
    child: ChildProcess,
    readonly configFile: string,
    /** Base URL it answers on (from the config's listen address). */
    readonly url: string,
  ) {
    super(child);
  }

  /** Starts it and waits until /healthz answers 200. */
  static async start(configFile: string, url: string): Promise<CollectorProcess> {
    const [cmd, args] = diesWithParent(process.execPath, [
      cliPath,
      'collector',
      '--config',
      configFile,
    ]);
    const child = spawn(cmd, args, {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const c = new CollectorProcess(child, configFile, url);
    try {
      await pollUntil(
        'the collector answering /healthz',
        async () => {
          if (!c.running) throw new Error(`collector exited: ${c.stderr.slice(-2000)}`);
          const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
          return res.status === 200;
        },
        { timeoutMs: 15_000, intervalMs: 25 },
      );
    } catch (err) {
      await c.kill();
      throw err;
    }
    return c;
  }

  /** The same config (same data dir and port) started again, after a stop or kill. */
  restart(): Promise<CollectorProcess> {
    return CollectorProcess.start(this.configFile, this.url);
  }

  /** GET a JSON document of the API, as a viewer (the test config's viewers: see viewer.ts). */
  async get<T>(path: string): Promise<T> {
    const res = await fetchAsViewer(`${this.url}${path}`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }
}

/** A `faultline agent --collector …` inside a namespace host (it probes from there). */
export class AgentProcess extends CliProcess {
  private constructor(
    child: ChildProcess,
    readonly net: TestNet,
    readonly host: TestHost,
  ) {
    super(child);
  }

  /** Starts `faultline agent <args>` in `host`; `env` is added to this process's environment. */
  static start(
    net: TestNet,
    host: TestHost,
    args: readonly string[],
    env: NodeJS.ProcessEnv = {},
  ): AgentProcess {
    const [cmd, cmdArgs] = diesWithParent(process.execPath, [cliPath, 'agent', ...args]);
    const child = net.spawn(host, cmd, cmdArgs, {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new AgentProcess(child, net, host);
  }

  /** GET a URL from inside the agent's namespace (its /metrics listens on its own loopback). */
  async fetchText(url: string): Promise<string> {
    return this.net.exec(this.host, process.execPath, [
      '-e',
      `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.text()).then((t) => process.stdout.write(t))
        .catch((e) => { console.error(String(e)); process.exit(1); });`,
    ]);
  }
}

/**
 * Sums the samples of one metric in Prometheus text whose labels include all of `match`.
 * Label values are compared unescaped; good enough for the plain names tests use.
 */
export function sumMetric(text: string, name: string, match: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const close = line.lastIndexOf('}');
    const labels: Record<string, string> = {};
    if (close > 0) {
      const body = line.slice(name.length + 1, close);
      for (const m of body.matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[m[1]!] = m[2]!;
      }
    }
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    sum += Number(
      line
        .slice(close > 0 ? close + 1 : name.length)
        .trim()
        .split(/\s+/)[0],
    );
  }
  return sum;
}

/**
 * A TCP relay from `host:<free port>` to `127.0.0.1:toPort`: lets namespace hosts reach a
 * test server that listens on loopback only (via the bridge's gateway address).
 */
export async function relayToLoopback(
  host: string,
  toPort: number,
): Promise<{ readonly port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = createConnection({ host: '127.0.0.1', port: toPort });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
