/**
 * Helper processes of the agent benchmark (bench/agent.ts):
 *
 *   agent-worker.js serve <host>...
 *       the target side: on each host a TCP listener and an HTTP server answering 200 "ok";
 *       prints `READY [{"host","tcpPort","httpPort"},…]`, exits when stdin closes
 *   agent-worker.js scrape --exporter URL --targets FILE [--interval-ms 1000] [--timeout-s 1]
 *       stands in for Prometheus scraping blackbox_exporter: one `GET /probe?module=…&target=…`
 *       per target per interval, each target at its own phase of the interval (as Prometheus
 *       spreads scrape loops); stdin `mark` resets the counters, `report` prints
 *       `REPORT {…}` (see ScrapeReport), and closing stdin ends it
 *   agent-worker.js floor --targets FILE [--interval-ms 1000] [--timeout-ms 900]
 *       the same probes with nothing around them (bare sockets, one fping per 100 ms of
 *       icmp targets): what this traffic costs at the least; same stdin protocol as scrape
 */
import { createServer as createHttpServer } from 'node:http';
import { spawn } from 'node:child_process';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

/** One scrape target of the blackbox client. */
export interface ScrapeTarget {
  readonly module: string;
  readonly target: string;
}

/** One target of the floor: the agent's kind and address. */
export interface FloorTarget {
  readonly kind: 'icmp' | 'tcp' | 'http';
  readonly address: string;
}

/** One listening host of `serve`. */
export interface ServeListener {
  readonly host: string;
  readonly tcpPort: number;
  readonly httpPort: number;
}

/** What `scrape` (or `floor`) counted since the last `mark`. */
export interface ScrapeReport {
  readonly elapsedMs: number;
  /** Requests sent to the exporter (floor: probes started). */
  readonly sent: number;
  /** Answers read (any status). */
  readonly completed: number;
  /** Answers with `probe_success 1`. */
  readonly ok: number;
  /** Answers with `probe_success 0`, a non-200 status, or a request error. */
  readonly failed: number;
  /** Ticks dropped because the target's previous scrape had not finished. */
  readonly skipped: number;
  /** How late requests went out against their planned time (ms): the client's own lag. */
  readonly lateP50Ms: number;
  readonly lateP99Ms: number;
  readonly lateMaxMs: number;
  /** One failure, for humans. */
  readonly firstError?: string;
}

// ---------------------------------------------------------------------------------------

async function serve(hosts: readonly string[]): Promise<void> {
  const listen = (
    srv: ReturnType<typeof createTcpServer> | ReturnType<typeof createHttpServer>,
    host: string,
  ): Promise<number> =>
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port: 0, backlog: 4096 }, () =>
        resolve((srv.address() as AddressInfo).port),
      );
    });
  const out: ServeListener[] = [];
  for (const host of hosts) {
    const tcp = createTcpServer({ noDelay: true }, (socket) => {
      socket.on('error', () => undefined);
    });
    const http = createHttpServer({ keepAliveTimeout: 5_000 }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
    http.on('clientError', (_err, socket) => socket.destroy());
    out.push({ host, tcpPort: await listen(tcp, host), httpPort: await listen(http, host) });
  }
  process.stdout.write(`READY ${JSON.stringify(out)}\n`);
  for await (const _line of createInterface({ input: process.stdin })) {
    /* runs until the orchestrator closes stdin */
  }
}

// ---------------------------------------------------------------------------------------

/** FNV-1a: a stable phase per target, as Prometheus derives one from the target's labels. */
function phaseOf(key: string, intervalMs: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0) % intervalMs;
}

// 0.1 ms buckets up to 1 s; beyond goes into the last one (and `max` is exact).
const lateBuckets = 10_000;

class Counters {
  startedAt = performance.now();
  sent = 0;
  completed = 0;
  ok = 0;
  failed = 0;
  skipped = 0;
  late = new Uint32Array(lateBuckets + 1);
  lateCount = 0;
  lateMaxMs = 0;
  firstError: string | undefined;

  recordLate(ms: number): void {
    const i = Math.min(lateBuckets, Math.max(0, Math.floor(ms * 10)));
    this.late[i]!++;
    this.lateCount++;
    if (ms > this.lateMaxMs) this.lateMaxMs = ms;
  }

  quantile(q: number): number {
    if (this.lateCount === 0) return 0;
    const rank = Math.ceil(q * this.lateCount);
    let seen = 0;
    for (let i = 0; i < this.late.length; i++) {
      seen += this.late[i]!;
      if (seen >= rank) return Math.min((i + 1) / 10, this.lateMaxMs);
    }
    return this.lateMaxMs;
  }

  report(): ScrapeReport {
    return {
      elapsedMs: performance.now() - this.startedAt,
      sent: this.sent,
      completed: this.completed,
      ok: this.ok,
      failed: this.failed,
      skipped: this.skipped,
      lateP50Ms: this.quantile(0.5),
      lateP99Ms: this.quantile(0.99),
      lateMaxMs: this.lateMaxMs,
      ...(this.firstError === undefined ? {} : { firstError: this.firstError }),
    };
  }
}

/**
 * Runs `tick` for one target at `phase + k·interval` (epoch ms), the phase stable per `key`,
 * until the process ends. A tick that comes late skips to the next point of the grid
 * rather than bursting; `tick` gets how late it is.
 */
function onGrid(key: string, intervalMs: number, tick: (lateMs: number) => void): void {
  const epoch = performance.timeOrigin;
  const phase = phaseOf(key, intervalMs);
  const nextAfter = (nowEpochMs: number): number =>
    phase + Math.ceil((nowEpochMs - phase) / intervalMs) * intervalMs;
  let planned = nextAfter(epoch + performance.now());
  // libuv measures a timer from the loop's cached time, so a timer set late in a busy turn
  // fires early by that turn's length: the slot after the planned one comes next whenever
  // this fires (never the planned one again, which ticked twice per slot, ~10 % more work
  // than asked), and a slot missed altogether is skipped.
  const fire = (): void => {
    const now = epoch + performance.now();
    tick(Math.max(0, now - planned));
    planned = Math.max(planned + intervalMs, nextAfter(now));
    setTimeout(fire, Math.max(0, planned - (epoch + performance.now())));
  };
  setTimeout(fire, Math.max(0, planned - (epoch + performance.now())));
}

/** Serves `mark` and `report` on stdin until it closes. */
async function control(counters: { current: Counters }): Promise<void> {
  process.stdout.write('READY\n');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'mark') {
      counters.current = new Counters();
      process.stdout.write('MARKED\n');
    } else if (line === 'report') {
      process.stdout.write(`REPORT ${JSON.stringify(counters.current.report())}\n`);
    }
  }
}

async function scrape(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      exporter: { type: 'string' },
      targets: { type: 'string' },
      'interval-ms': { type: 'string', default: '1000' },
      'timeout-s': { type: 'string', default: '1' },
      connections: { type: 'string', default: '64' },
    },
  });
  if (values.exporter === undefined || values.targets === undefined)
    throw new Error('scrape needs --exporter URL and --targets FILE');
  const intervalMs = Number(values['interval-ms']);
  const targets = JSON.parse(readFileSync(values.targets, 'utf8')) as ScrapeTarget[];
  const pool = new Pool(values.exporter, {
    connections: Number(values.connections),
    keepAliveTimeout: 60_000,
  });
  const headers = { 'x-prometheus-scrape-timeout-seconds': values['timeout-s'] };
  const counters = { current: new Counters() };
  const successRe = /^probe_success (\S+)$/m;

  for (const t of targets) {
    const path = `/probe?module=${t.module}&target=${encodeURIComponent(t.target)}`;
    let busy = false;
    onGrid(`${t.module}\u0000${t.target}`, intervalMs, (lateMs) => {
      const c = counters.current;
      if (busy) {
        c.skipped++;
        return;
      }
      c.recordLate(lateMs);
      busy = true;
      c.sent++;
      pool.request({ path, method: 'GET', headers }).then(
        async (res) => {
          const text = await res.body.text();
          c.completed++;
          const m = successRe.exec(text);
          if (res.statusCode === 200 && m?.[1] === '1') c.ok++;
          else {
            c.failed++;
            c.firstError ??= `${t.module} ${t.target}: HTTP ${res.statusCode}, probe_success ${m?.[1] ?? 'missing'}`;
          }
          busy = false;
        },
        (err: unknown) => {
          c.failed++;
          c.firstError ??= `${t.module} ${t.target}: ${err instanceof Error ? err.message : String(err)}`;
          busy = false;
        },
      );
    });
  }
  await control(counters);
  await pool.destroy();
}

// ---------------------------------------------------------------------------------------

/**
 * The floor: the same traffic with nothing around it. tcp is connect + reset; http is a
 * connect, one hand-written GET, the first bytes of the answer, reset; icmp targets due
 * within 100 ms share one `fping -C 1` (as our fping engine batches them). No deadlines
 * beyond a socket timeout, no result records, no metrics.
 */
async function floor(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      targets: { type: 'string' },
      'interval-ms': { type: 'string', default: '1000' },
      'timeout-ms': { type: 'string', default: '900' },
    },
  });
  if (values.targets === undefined) throw new Error('floor needs --targets FILE');
  const intervalMs = Number(values['interval-ms']);
  const timeoutMs = Number(values['timeout-ms']);
  const targets = JSON.parse(readFileSync(values.targets, 'utf8')) as FloorTarget[];
  const counters = { current: new Counters() };
  const fail = (c: Counters, what: string): void => {
    c.completed++;
    c.failed++;
    c.firstError ??= what;
  };

  // icmp: one fping per 100 ms window of due targets.
  let pending: { ip: string; c: Counters; done: () => void }[] = [];
  const flush = (): void => {
    const batch = pending;
    pending = [];
    const child = spawn(
      'fping',
      // 1 ms between targets (fping's default 10 ms would stretch a batch of 50 to half a second).
      [
        '-C',
        '1',
        '-q',
        '-i',
        '1',
        '-t',
        String(Math.max(50, timeoutMs - 200)),
        ...batch.map((b) => b.ip),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.setEncoding('latin1');
    child.stderr.on('data', (d: string) => (err += d));
    child.once('close', () => {
      const answered = new Set<string>();
      for (const line of err.split('\n')) {
        const m = /^(\S+)\s+: (\S+)/.exec(line);
        if (m !== null && m[2] !== '-') answered.add(m[1] ?? '');
      }
      for (const b of batch) {
        if (answered.has(b.ip)) {
          b.c.completed++;
          b.c.ok++;
        } else fail(b.c, `icmp ${b.ip}: no reply`);
        b.done();
      }
    });
  };

  for (const t of targets) {
    let busy = false;
    const done = (): void => {
      busy = false;
    };
    let start: (c: Counters) => void;
    if (t.kind === 'icmp') {
      start = (c) => {
        if (pending.length === 0) setTimeout(flush, 100);
        pending.push({ ip: t.address, c, done });
      };
    } else {
      const url = t.kind === 'http' ? new URL(t.address) : undefined;
      const hostPort = url === undefined ? t.address : url.host;
      const colon = hostPort.lastIndexOf(':');
      const host = hostPort.slice(0, colon);
      const port = Number(hostPort.slice(colon + 1));
      const request =
        url === undefined
          ? undefined
          : `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`;
      start = (c) => {
        const socket = connect({ host, port, noDelay: true });
        socket.setTimeout(timeoutMs);
        let ended = false;
        const end = (ok: boolean, why: string): void => {
          // Once: a connect that timed out can still fail later (EHOSTUNREACH once ARP
          // gives up), which counted the probe twice.
          if (ended) return;
          ended = true;
          // A reset waits for the connection; one still connecting is closed at once.
          if (socket.connecting) socket.destroy();
          else socket.resetAndDestroy();
          if (ok) {
            c.completed++;
            c.ok++;
          } else fail(c, `${t.kind} ${t.address}: ${why}`);
          done();
        };
        socket.once('timeout', () => end(false, 'timeout'));
        socket.once('error', (err) => end(false, err.message));
        socket.once('connect', () => {
          if (request === undefined) end(true, '');
          else socket.write(request);
        });
        if (request !== undefined)
          socket.once('data', (d: Buffer) =>
            end(d.toString('latin1', 0, 12) === 'HTTP/1.1 200', 'status'),
          );
      };
    }
    onGrid(`${t.kind}\u0000${t.address}`, intervalMs, (lateMs) => {
      const c = counters.current;
      if (busy) {
        c.skipped++;
        return;
      }
      busy = true;
      c.recordLate(lateMs);
      c.sent++;
      start(c);
    });
  }
  await control(counters);
}

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'serve') await serve(rest.length > 0 ? rest : ['127.0.0.1']);
  else if (mode === 'scrape') await scrape(rest);
  else if (mode === 'floor') await floor(rest);
  else throw new Error(`unknown mode "${mode ?? ''}": expected serve, scrape or floor`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `agent-worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
