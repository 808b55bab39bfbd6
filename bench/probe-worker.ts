/**
 * One side of the probe benchmark, in a process of its own so its CPU can be counted apart.
 *
 *   probe-worker.js ours <kind> <target> <n> <concurrency> [--options JSON]
 *       runs <n> probes of <kind> in-process through runProbe, <concurrency> at a time
 *   probe-worker.js blackbox <kind> <target> <n> <concurrency> --exporter URL
 *       asks blackbox_exporter's /probe for the same probes (keep-alive undici client)
 *   probe-worker.js baseline tcp <host:port> <n> <concurrency>
 *       plain net.connect + reset, no runProbe: the floor for a TCP probe in Node
 *   probe-worker.js serve <host>
 *       the target: a TCP listener and an HTTP server answering 200 "ok"
 *
 * Protocol with bench/probes.ts (stdout lines): after a warm-up it prints `READY {...}`
 * and waits for a `go` line on stdin, then runs and prints `DONE {...}`, and exits when
 * stdin closes, so the orchestrator can read /proc before and after exactly the measured
 * work, with the process still alive.
 */
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { closeIcmpEngines } from '../probes/icmp/echo.js';
import { probeDefinition } from '../probes/registry.js';
import { runProbe } from '../probes/run.js';
import { parseTarget } from '../probes/target.js';

/** What a measured run reports back, as JSON after `DONE `. */
export interface WorkerReport {
  readonly n: number;
  readonly ok: number;
  /** Count per failure class (blackbox: `ok` / `failed`). */
  readonly classes: Record<string, number>;
  readonly elapsedMs: number;
  /** Median of the RTT the side itself reports (see `rttSource`), in ms. */
  readonly rttMedianMs: number;
  /** Which reported figure `rttMedianMs` is. */
  readonly rttSource: string;
  /** Median whole-probe duration the side reports, in ms. */
  readonly totalMedianMs: number;
  /** One failure, for humans, when there were any. */
  readonly firstError?: string;
  readonly memory: NodeJS.MemoryUsage;
}

/** blackbox_exporter module names used for each kind (bench/probes.ts writes the config). */
export const blackboxModules = { tcp: 'tcp_connect', http: 'http_2xx', icmp: 'icmp' } as const;

type BenchKind = keyof typeof blackboxModules;

interface OneProbe {
  ok: boolean;
  cls: string;
  rttMs: number | undefined;
  totalMs: number | undefined;
  error?: string;
}

function medianOf(values: Float64Array, count: number): number {
  const v = Array.from(values.subarray(0, count)).filter((x) => !Number.isNaN(x));
  if (v.length === 0) return Number.NaN;
  v.sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 === 1
    ? (v[mid] as number)
    : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

function ours(
  kind: string,
  rawTarget: string,
  optionsJson: string,
  timeoutMs: number,
): { probe: () => Promise<OneProbe>; rttSource: string } {
  const def = probeDefinition(kind);
  const target = parseTarget(rawTarget, def.target);
  const options = def.options.parse(JSON.parse(optionsJson));
  const rttField = kind === 'icmp' ? 'rttMs' : 'connectMs';
  let seq = 0;
  return {
    rttSource: `timings.${rttField}`,
    probe: async () => {
      const r = await runProbe(def, target, options, { timeoutMs, seq: ++seq });
      const one: OneProbe = {
        ok: r.class === 'ok',
        cls: r.class,
        rttMs: r.timings[rttField],
        totalMs: r.timings.totalMs,
      };
      if (r.error !== undefined) one.error = `${r.class}: ${r.error.code ?? ''} ${r.error.message}`;
      return one;
    },
  };
}

/**
 * The floor for a TCP probe in Node: net.connect, time to 'connect', reset. No deadline,
 * no classification, no result record: what runProbe adds shows against this.
 */
function baseline(rawTarget: string): { probe: () => Promise<OneProbe>; rttSource: string } {
  const colon = rawTarget.lastIndexOf(':');
  const host = rawTarget.slice(0, colon);
  const port = Number(rawTarget.slice(colon + 1));
  return {
    rttSource: "net.connect → 'connect'",
    probe: () =>
      new Promise<OneProbe>((resolve) => {
        const t0 = performance.now();
        const socket = connect({ host, port, noDelay: true });
        socket.once('connect', () => {
          const ms = performance.now() - t0;
          socket.resetAndDestroy();
          resolve({ ok: true, cls: 'ok', rttMs: ms, totalMs: ms });
        });
        socket.once('error', (err: NodeJS.ErrnoException) => {
          socket.destroy();
          resolve({
            ok: false,
            cls: err.code ?? 'error',
            rttMs: undefined,
            totalMs: undefined,
            error: err.message,
          });
        });
      }),
  };
}

function metric(text: string, re: RegExp): number | undefined {
  const m = re.exec(text);
  return m === null ? undefined : Number(m[1]);
}

function blackbox(
  kind: BenchKind,
  rawTarget: string,
  exporter: string,
  timeoutMs: number,
  connections: number,
): { probe: () => Promise<OneProbe>; rttSource: string; close: () => Promise<void> } {
  const pool = new Pool(exporter, { connections, keepAliveTimeout: 60_000 });
  const path = `/probe?module=${blackboxModules[kind]}&target=${encodeURIComponent(rawTarget)}`;
  const rttRe = {
    tcp: /^probe_duration_seconds ([\d.eE+-]+)$/m,
    http: /^probe_http_duration_seconds\{phase="connect"\} ([\d.eE+-]+)$/m,
    icmp: /^probe_icmp_duration_seconds\{phase="rtt"\} ([\d.eE+-]+)$/m,
  }[kind];
  const rttSource = {
    tcp: 'probe_duration_seconds',
    http: 'probe_http_duration_seconds{phase="connect"}',
    icmp: 'probe_icmp_duration_seconds{phase="rtt"}',
  }[kind];
  return {
    rttSource,
    close: () => pool.close(),
    probe: async () => {
      // Prometheus sends its scrape timeout; the exporter bounds the probe by it.
      const res = await pool.request({
        path,
        method: 'GET',
        headers: { 'x-prometheus-scrape-timeout-seconds': String(timeoutMs / 1000 + 0.5) },
      });
      const text = await res.body.text();
      const ok = res.statusCode === 200 && metric(text, /^probe_success ([\d.]+)$/m) === 1;
      const rtt = metric(text, rttRe);
      const total = metric(text, /^probe_duration_seconds ([\d.eE+-]+)$/m);
      const one: OneProbe = {
        ok,
        cls: ok ? 'ok' : 'failed',
        rttMs: rtt === undefined ? undefined : rtt * 1000,
        totalMs: total === undefined ? undefined : total * 1000,
      };
      if (!ok) one.error = `HTTP ${res.statusCode}: ${text.slice(0, 200)}`;
      return one;
    },
  };
}

async function runMany(
  probe: () => Promise<OneProbe>,
  n: number,
  concurrency: number,
  rtt: Float64Array,
  total: Float64Array,
): Promise<{ classes: Record<string, number>; ok: number; firstError?: string }> {
  const classes: Record<string, number> = {};
  let ok = 0;
  let firstError: string | undefined;
  let issued = 0;
  const lane = async (): Promise<void> => {
    while (issued < n) {
      const i = issued++;
      const r = await probe();
      classes[r.cls] = (classes[r.cls] ?? 0) + 1;
      if (r.ok) ok++;
      else firstError ??= r.error;
      if (i < rtt.length) {
        rtt[i] = r.rttMs ?? Number.NaN;
        total[i] = r.totalMs ?? Number.NaN;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, lane));
  return firstError === undefined ? { classes, ok } : { classes, ok, firstError };
}

function lines(): AsyncIterableIterator<string> {
  return createInterface({ input: process.stdin })[Symbol.asyncIterator]();
}

async function measure(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      options: { type: 'string', default: '{}' },
      exporter: { type: 'string' },
      warmup: { type: 'string', default: '200' },
      'timeout-ms': { type: 'string', default: '2000' },
      gc: { type: 'boolean', default: false },
    },
  });
  const [side, kind, target, nText, concText] = positionals;
  if (
    (side !== 'ours' && side !== 'blackbox' && side !== 'baseline') ||
    kind === undefined ||
    target === undefined ||
    nText === undefined ||
    concText === undefined
  ) {
    throw new Error(
      'usage: probe-worker.js ours|blackbox|baseline <kind> <target> <n> <concurrency> [--options JSON] [--exporter URL]',
    );
  }
  const n = Number(nText);
  const concurrency = Number(concText);
  const warmup = Number(values.warmup);
  const timeoutMs = Number(values['timeout-ms']);
  let probe: () => Promise<OneProbe>;
  let rttSource: string;
  let close = async (): Promise<void> => undefined;
  if (side === 'ours') {
    ({ probe, rttSource } = ours(kind, target, values.options, timeoutMs));
    // The icmp engines keep child processes (fping) that must not outlive us.
    close = closeIcmpEngines;
  } else if (side === 'baseline') {
    if (kind !== 'tcp') throw new Error('the baseline exists for tcp only');
    ({ probe, rttSource } = baseline(target));
  } else {
    if (!(kind in blackboxModules)) throw new Error(`no blackbox module for kind ${kind}`);
    if (values.exporter === undefined) throw new Error('blackbox needs --exporter URL');
    ({ probe, rttSource, close } = blackbox(
      kind as BenchKind,
      target,
      values.exporter,
      timeoutMs,
      concurrency,
    ));
  }
  try {
    await measured(probe, rttSource, n, concurrency, warmup, values.gc);
  } finally {
    await close();
  }
}

async function measured(
  probe: () => Promise<OneProbe>,
  rttSource: string,
  n: number,
  concurrency: number,
  warmup: number,
  collect: boolean,
): Promise<void> {
  // With --gc (and node --expose-gc) memory is read after repeated full collections with
  // turns of the event loop between them, so that finalizers run and caches V8 ages out
  // over several collections are gone: what is retained, not what is merely uncollected.
  const settle = async (): Promise<void> => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!collect || gc === undefined) return;
    for (let i = 0; i < 10; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
  };
  // Allocated before the warm-up so that the measured run's memory is only the probes'.
  const rtt = new Float64Array(n);
  const total = new Float64Array(n);
  const warm = await runMany(probe, warmup, concurrency, new Float64Array(0), new Float64Array(0));
  const input = lines();
  await settle();
  process.stdout.write(
    `READY ${JSON.stringify({ warmupOk: warm.ok, warmupN: warmup, firstError: warm.firstError, memory: process.memoryUsage() })}\n`,
  );
  for (;;) {
    const next = await input.next();
    if (next.done === true) return;
    if (next.value.trim() === 'go') break;
  }
  const t0 = performance.now();
  const res = await runMany(probe, n, concurrency, rtt, total);
  const elapsedMs = performance.now() - t0;
  // Medians first: their scratch arrays are garbage that the collection below removes.
  const rttMedianMs = medianOf(rtt, n);
  const totalMedianMs = medianOf(total, n);
  await settle();
  const report: WorkerReport = {
    n,
    ok: res.ok,
    classes: res.classes,
    elapsedMs,
    rttMedianMs,
    rttSource,
    totalMedianMs,
    ...(res.firstError === undefined ? {} : { firstError: res.firstError }),
    memory: process.memoryUsage(),
  };
  process.stdout.write(`DONE ${JSON.stringify(report)}\n`);
  // Stay alive (sockets, fds, RSS as they are) until the orchestrator has looked.
  while ((await input.next()).done !== true);
}

async function serve(host: string): Promise<void> {
  const tcp = createTcpServer({ noDelay: true }, (socket) => {
    socket.on('error', () => undefined);
  });
  const http = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end('ok');
  });
  http.on('clientError', (_err, socket) => socket.destroy());
  const listen = (srv: typeof tcp | typeof http): Promise<number> =>
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port: 0, backlog: 4096 }, () =>
        resolve((srv.address() as AddressInfo).port),
      );
    });
  const tcpPort = await listen(tcp);
  const httpPort = await listen(http);
  process.stdout.write(`READY ${JSON.stringify({ tcpPort, httpPort })}\n`);
  const input = lines();
  while ((await input.next()).done !== true);
  process.exit(0);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === 'serve') await serve(argv[1] ?? '127.0.0.1');
  else await measure(argv);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `probe-worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
