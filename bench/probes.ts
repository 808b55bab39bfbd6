/**
 * Probe benchmark (issue 2): Faultline's probes against Prometheus blackbox_exporter, side by
 * side, on loopback and on a veth pair between two namespaces. Prints Markdown.
 *
 *   node dist/bench/probes.js [--n 2000] [--rtt-n 300] [--concurrency 8]
 *       [--soak-n 100000] [--paths loopback,veth] [--kinds tcp,http,icmp] [--json FILE]
 *
 * See bench/README.md for what each figure means.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  blackboxConfig,
  runBench,
  createVethPair,
  freePort,
  LineReader,
  openFds,
  pingMedianMs,
  Resources,
  rssBytes,
  sh,
  stderrTail,
  timeWaitCount,
  treeCpuMs,
  WireCapture,
  type WireRtt,
} from './lib.js';
import type { WorkerReport } from './probe-worker.js';

const exporterBin = '/usr/bin/prometheus-blackbox-exporter';
const workerPath = fileURLToPath(new URL('./probe-worker.js', import.meta.url));

type Kind = 'tcp' | 'http' | 'icmp';
/** `node` is the plain net.connect floor (tcp only), outside the comparison. */
type Side = 'faultline' | 'blackbox' | 'node';
type PathName = 'loopback' | 'veth';

/** Per-kind options for our probes, chosen to do what the blackbox module does. */
const ourOptions: Record<Kind, unknown> = {
  tcp: {},
  http: {},
  // blackbox_exporter sends one echo request per probe.
  icmp: { count: 1 },
};

/** CPU per probe at most this share of blackbox_exporter's (the issue's goal). */
const cpuGoal: Record<Kind, number> = { tcp: 1 / 3, http: 2 / 3, icmp: 1 / 3 };
const rttGoalUs = 100;

interface Settings {
  n: number;
  rttN: number;
  concurrency: number;
  soakN: number;
  soakConcurrency: number;
  warmup: number;
  timeoutMs: number;
  paths: PathName[];
  kinds: Kind[];
  json?: string;
}

function settings(): Settings {
  const env = process.env;
  const { values } = parseArgs({
    options: {
      n: { type: 'string', default: env.FL_BENCH_N ?? '2000' },
      'rtt-n': { type: 'string', default: env.FL_BENCH_RTT_N ?? '300' },
      concurrency: { type: 'string', default: env.FL_BENCH_CONCURRENCY ?? '8' },
      'soak-n': { type: 'string', default: env.FL_BENCH_SOAK_N ?? '100000' },
      'soak-concurrency': { type: 'string', default: env.FL_BENCH_SOAK_CONCURRENCY ?? '16' },
      warmup: { type: 'string', default: env.FL_BENCH_WARMUP ?? '200' },
      'timeout-ms': { type: 'string', default: '2000' },
      paths: { type: 'string', default: env.FL_BENCH_PATHS ?? 'loopback,veth' },
      kinds: { type: 'string', default: env.FL_BENCH_KINDS ?? 'tcp,http,icmp' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(
      'usage: node dist/bench/probes.js [--n 2000] [--rtt-n 300] [--concurrency 8] [--soak-n 100000]\n' +
        '         [--soak-concurrency 16] [--warmup 200] [--paths loopback,veth] [--kinds tcp,http,icmp] [--json FILE]\n' +
        '--soak-n 0 skips the soak. Environment: FL_BENCH_N, FL_BENCH_RTT_N, FL_BENCH_CONCURRENCY, FL_BENCH_SOAK_N,\n' +
        'FL_BENCH_SOAK_CONCURRENCY, FL_BENCH_WARMUP, FL_BENCH_PATHS, FL_BENCH_KINDS.\n',
    );
    process.exit(0);
  }
  const int = (name: string, text: string, min: number): number => {
    const v = Number(text);
    if (!Number.isInteger(v) || v < min)
      throw new Error(`--${name} must be an integer ≥ ${min} (actual: ${text})`);
    return v;
  };
  const list = <T extends string>(name: string, text: string, allowed: readonly T[]): T[] => {
    const items = text
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    for (const i of items)
      if (!allowed.includes(i as T))
        throw new Error(`--${name}: "${i}" is not one of ${allowed.join(', ')}`);
    return items as T[];
  };
  const s: Settings = {
    n: int('n', values.n, 1),
    rttN: int('rtt-n', values['rtt-n'], 1),
    concurrency: int('concurrency', values.concurrency, 1),
    soakN: int('soak-n', values['soak-n'], 0),
    soakConcurrency: int('soak-concurrency', values['soak-concurrency'], 1),
    warmup: int('warmup', values.warmup, 0),
    timeoutMs: int('timeout-ms', values['timeout-ms'], 100),
    paths: list('paths', values.paths, ['loopback', 'veth'] as const),
    kinds: list('kinds', values.kinds, ['tcp', 'http', 'icmp'] as const),
  };
  if (values.json !== undefined) s.json = values.json;
  return s;
}

/** Where the probes run and what they aim at. */
interface Path {
  readonly name: PathName;
  /** Namespace the probers run in (undefined: this one). */
  readonly clientNs?: string;
  /** Interface a capture watches, in the client namespace. */
  readonly iface: string;
  readonly serverIp: string;
  tcpPort: number;
  httpPort: number;
  exporterUrl: string;
  exporterPid: number;
}

/** What a worker prints once warmed up. */
interface Ready {
  readonly warmupOk: number;
  readonly warmupN: number;
  readonly firstError?: string;
  readonly memory: NodeJS.MemoryUsage;
}

/** One measured worker run. */
interface Run {
  readonly report?: WorkerReport;
  readonly cpuMs: number;
  /** blackbox: the exporter's share of `cpuMs`. */
  readonly exporterCpuMs: number;
  readonly wire?: WireRtt;
  readonly error?: string;
}

interface Row {
  path: PathName;
  kind: Kind;
  side: Side;
  rtt: Run;
  throughput: Run;
}

interface SoakSample {
  readonly rss: number;
  readonly heapUsed: number;
  readonly fds: number;
  readonly timeWait: number;
}

interface Soak {
  readonly n: number;
  readonly concurrency: number;
  readonly report?: WorkerReport;
  readonly before: SoakSample;
  readonly after: SoakSample;
  readonly error?: string;
}

function targetFor(kind: Kind, path: Path): string {
  if (kind === 'tcp') return `${path.serverIp}:${path.tcpPort}`;
  if (kind === 'http') return `http://${path.serverIp}:${path.httpPort}/`;
  return path.serverIp;
}

/**
 * Runs one worker: warm-up, then /proc CPU counters read just before `go` and just after
 * `DONE`, so process start and module loading are not counted. `onReady`/`onDone` let a
 * caller mark a capture live or read RSS and descriptors while the worker is still alive.
 */
async function runWorker(
  res: Resources,
  args: string[],
  opts: {
    ns?: string;
    exporterPid?: number;
    timeoutMs: number;
    /** Extra `node` flags for the worker (e.g. --expose-gc). */
    nodeArgs?: string[];
    onReady?: (pid: number, ready: Ready) => Promise<void>;
    onDone?: (pid: number) => Promise<void>;
    onReport?: (report: WorkerReport) => void;
  },
): Promise<Run> {
  const child = res.spawn(process.execPath, [...(opts.nodeArgs ?? []), workerPath, ...args], {
    ns: opts.ns,
  });
  const err = stderrTail(child);
  const out = new LineReader(child);
  try {
    const ready = JSON.parse((await out.next('READY ', 120_000)).slice(6)) as Ready;
    if (ready.warmupN > 0 && ready.warmupOk === 0) {
      return {
        cpuMs: Number.NaN,
        exporterCpuMs: Number.NaN,
        error: `warm-up failed: ${ready.firstError ?? 'no probe succeeded'}`,
      };
    }
    const pid = child.pid as number;
    await opts.onReady?.(pid, ready);
    const exp0 = opts.exporterPid === undefined ? 0 : treeCpuMs(opts.exporterPid);
    const cpu0 = treeCpuMs(pid);
    child.stdin?.write('go\n');
    const report = JSON.parse((await out.next('DONE ', opts.timeoutMs)).slice(5)) as WorkerReport;
    const cpu1 = treeCpuMs(pid);
    opts.onReport?.(report);
    const exp1 = opts.exporterPid === undefined ? 0 : treeCpuMs(opts.exporterPid);
    await opts.onDone?.(pid);
    const exporterCpuMs = exp1 - exp0;
    return { report, cpuMs: cpu1 - cpu0 + exporterCpuMs, exporterCpuMs };
  } catch (e) {
    const tail = err();
    return {
      cpuMs: Number.NaN,
      exporterCpuMs: Number.NaN,
      error: `${e instanceof Error ? e.message : String(e)}${tail === '' ? '' : ` — ${tail.split('\n').slice(-3).join(' | ')}`}`,
    };
  } finally {
    child.stdin?.end();
    await res.stop(child, 'SIGTERM', 5000);
  }
}

async function startTarget(
  res: Resources,
  host: string,
  ns?: string,
): Promise<{ tcpPort: number; httpPort: number }> {
  const child = res.spawn(process.execPath, [workerPath, 'serve', host], { ns });
  const err = stderrTail(child);
  try {
    return JSON.parse((await new LineReader(child).next('READY ', 30_000)).slice(6)) as {
      tcpPort: number;
      httpPort: number;
    };
  } catch (e) {
    throw new Error(
      `target server did not start: ${e instanceof Error ? e.message : String(e)} ${err()}`,
    );
  }
}

async function startExporter(
  res: Resources,
  configFile: string,
  port: number,
  ns?: string,
): Promise<{ url: string; pid: number }> {
  const listen = `127.0.0.1:${port}`;
  const child = res.spawn(
    exporterBin,
    [`--config.file=${configFile}`, `--web.listen-address=${listen}`],
    { ns, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const err = stderrTail(child, 20_000);
  const deadline = Date.now() + 15_000;
  while (!err().includes('Listening on')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`blackbox_exporter did not start: ${err()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { url: `http://${listen}`, pid: child.pid as number };
}

async function benchPath(
  res: Resources,
  s: Settings,
  name: PathName,
  configFile: string,
  rows: Row[],
  pings: Map<PathName, number>,
): Promise<void> {
  let clientNs: string | undefined;
  let serverNs: string | undefined;
  // A loopback address of our own (not 127.0.0.1), so that the capture sees only our
  // probes even while other programs ping or connect on lo.
  const r = randomBytes(3);
  let serverIp = `127.${100 + ((r[0] ?? 0) % 150)}.${r[1] ?? 0}.${1 + ((r[2] ?? 0) % 250)}`;
  let iface = 'lo';
  if (name === 'veth') {
    const pair = await createVethPair(res);
    clientNs = pair.clientNs;
    serverNs = pair.serverNs;
    serverIp = pair.serverIp;
    iface = pair.clientIf;
  }
  const ports = await startTarget(res, serverIp, serverNs);
  // A fresh namespace has every port free; in this one, ask the kernel for one.
  const exporter = await startExporter(
    res,
    configFile,
    clientNs === undefined ? await freePort() : 9115,
    clientNs,
  );
  const path: Path = {
    name,
    ...(clientNs === undefined ? {} : { clientNs }),
    iface,
    serverIp,
    tcpPort: ports.tcpPort,
    httpPort: ports.httpPort,
    exporterUrl: exporter.url,
    exporterPid: exporter.pid,
  };
  pings.set(name, await pingMedianMs(serverIp, 50, clientNs).catch(() => Number.NaN));
  for (const kind of s.kinds) {
    const target = targetFor(kind, path);
    const one = async (
      side: Side,
      n: number,
      concurrency: number,
      capture: boolean,
    ): Promise<Run> => {
      const args =
        side === 'node'
          ? ['baseline', kind, target, String(n), String(concurrency)]
          : side === 'faultline'
            ? [
                'ours',
                kind,
                target,
                String(n),
                String(concurrency),
                '--options',
                JSON.stringify(ourOptions[kind]),
              ]
            : [
                'blackbox',
                kind,
                target,
                String(n),
                String(concurrency),
                '--exporter',
                path.exporterUrl,
              ];
      // An RTT run measures no CPU, so a short warm-up (JIT, connection pools) is enough.
      const warmup = capture ? Math.min(s.warmup, 50) : s.warmup;
      args.push('--warmup', String(warmup), '--timeout-ms', String(s.timeoutMs));
      // The capture starts before the worker, sees its warm-up (proof that it is live), and
      // counts from READY on: only the measured probes are paired.
      const cap = capture
        ? await WireCapture.start(res, {
            iface: path.iface,
            ...(path.clientNs === undefined ? {} : { ns: path.clientNs }),
            what: kind === 'icmp' ? 'icmp' : 'tcp',
            host: path.serverIp,
            port: kind === 'http' ? path.httpPort : path.tcpPort,
          })
        : undefined;
      let wire: WireRtt | undefined;
      const run = await runWorker(res, args, {
        ...(path.clientNs === undefined ? {} : { ns: path.clientNs }),
        ...(side === 'blackbox' ? { exporterPid: path.exporterPid } : {}),
        timeoutMs: 60_000 + Math.ceil(n / concurrency) * s.timeoutMs,
        onReady: cap === undefined ? undefined : () => cap.markLive(),
        onDone:
          cap === undefined
            ? undefined
            : async () => {
                // Two packets per probe: SYN and SYN-ACK, or echo request and reply.
                wire = await cap.stop(2 * n);
              },
      });
      if (cap !== undefined && wire === undefined) await cap.stop().catch(() => undefined);
      return wire === undefined ? run : { ...run, wire };
    };
    const sides: Side[] =
      kind === 'tcp' ? ['faultline', 'blackbox', 'node'] : ['faultline', 'blackbox'];
    for (const side of sides) {
      process.stderr.write(`${name} ${kind} ${side}: rtt run (c=1, n=${s.rttN})…\n`);
      const rtt = await one(side, s.rttN, 1, true);
      process.stderr.write(
        `${name} ${kind} ${side}: throughput run (c=${s.concurrency}, n=${s.n})…\n`,
      );
      const throughput = await one(side, s.n, s.concurrency, false);
      rows.push({ path: name, kind, side, rtt, throughput });
    }
  }
}

async function soak(res: Resources, s: Settings): Promise<Soak> {
  const ports = await startTarget(res, '127.0.0.1');
  const zero = { rss: 0, heapUsed: 0, fds: 0, timeWait: 0 };
  let before: SoakSample = zero;
  let after: SoakSample = zero;
  const sample = async (pid: number, heapUsed: number): Promise<SoakSample> => ({
    rss: rssBytes(pid),
    heapUsed,
    fds: openFds(pid),
    timeWait: await timeWaitCount(ports.tcpPort),
  });
  let heapAtEnd = 0;
  process.stderr.write(`soak: faultline tcp loopback, n=${s.soakN}, c=${s.soakConcurrency}…\n`);
  const run = await runWorker(
    res,
    [
      'ours',
      'tcp',
      `127.0.0.1:${ports.tcpPort}`,
      String(s.soakN),
      String(s.soakConcurrency),
      '--warmup',
      String(Math.max(s.warmup, 2000)),
      '--timeout-ms',
      String(s.timeoutMs),
      '--gc',
    ],
    {
      timeoutMs: 600_000,
      nodeArgs: ['--expose-gc'],
      onReady: async (pid, ready) => {
        before = await sample(pid, ready.memory.heapUsed);
      },
      onDone: async (pid) => {
        after = await sample(pid, heapAtEnd);
      },
      onReport: (report) => {
        heapAtEnd = report.memory.heapUsed;
      },
    },
  );
  return {
    n: s.soakN,
    concurrency: s.soakConcurrency,
    before,
    after,
    ...(run.report ? { report: run.report } : {}),
    ...(run.error ? { error: run.error } : {}),
  };
}

// ---------------------------------------------------------------------------------------
// Printing

const sideLabel: Record<Side, string> = {
  faultline: 'faultline',
  blackbox: 'blackbox_exporter',
  node: 'plain net.connect (floor)',
};
const fmt = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const us = (ms: number | undefined): number => (ms === undefined ? Number.NaN : ms * 1000);
const perProbe = (run: Run): number =>
  run.report === undefined ? Number.NaN : run.cpuMs / run.report.n;
const rate = (run: Run): number =>
  run.report === undefined ? Number.NaN : run.report.n / (run.report.elapsedMs / 1000);

function okCell(run: Run): string {
  if (run.report === undefined) return `failed: ${run.error ?? '?'}`;
  const { ok, n, classes, firstError } = run.report;
  if (ok === n) return `${ok}/${n}`;
  const others = Object.entries(classes)
    .filter(([c]) => c !== 'ok')
    .map(([c, k]) => `${c} ${k}`)
    .join(', ');
  return `${ok}/${n} (${others}${firstError === undefined ? '' : `; ${firstError.slice(0, 80)}`})`;
}

function cpuCell(run: Run, side: Side): string {
  const total = perProbe(run);
  if (side !== 'blackbox' || run.report === undefined) return fmt(total, 3);
  const exp = run.exporterCpuMs / run.report.n;
  return `${fmt(total, 3)} (${fmt(exp, 3)} + ${fmt(total - exp, 3)} scrape)`;
}

function findRow(rows: Row[], path: PathName, kind: Kind, side: Side): Row | undefined {
  return rows.find((r) => r.path === path && r.kind === kind && r.side === side);
}

function ratio(rows: Row[], path: PathName, kind: Kind): number {
  const ours = findRow(rows, path, kind, 'faultline');
  const bb = findRow(rows, path, kind, 'blackbox');
  if (ours === undefined || bb === undefined) return Number.NaN;
  return perProbe(ours.throughput) / perProbe(bb.throughput);
}

/** Ours against the exporter's own CPU, the scraping client left out. */
function ratioExporterOnly(rows: Row[], path: PathName, kind: Kind): number {
  const ours = findRow(rows, path, kind, 'faultline');
  const bb = findRow(rows, path, kind, 'blackbox');
  if (ours?.throughput.report === undefined || bb?.throughput.report === undefined)
    return Number.NaN;
  return perProbe(ours.throughput) / (bb.throughput.exporterCpuMs / bb.throughput.report.n);
}

function rttDeltaUs(run: Run): number {
  return us(run.report?.rttMedianMs) - us(run.wire?.medianMs);
}

async function printReport(
  s: Settings,
  rows: Row[],
  pings: Map<PathName, number>,
  soakResult: Soak | undefined,
): Promise<string> {
  const out: string[] = [];
  const exporterVersion =
    (await sh(exporterBin, ['--version']).catch((e: unknown) => String(e))).split('\n')[0] ?? '';
  const cpu = cpus()[0]?.model ?? '?';
  out.push('## Probe benchmark: Faultline vs blackbox_exporter');
  out.push('');
  out.push(
    `${new Date().toISOString()} · Linux ${release()} · ${cpus().length} × ${cpu} · Node ${process.version} · ${exporterVersion.trim()} · ` +
      `load average (1/5/15 min) at start ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  out.push('');
  out.push(
    `Throughput runs: ${s.n} probes at concurrency ${s.concurrency}, after ${s.warmup} warm-up probes. RTT runs: ${s.rttN} probes at concurrency 1 (after ${Math.min(s.warmup, 50)}), ` +
      `tcpdump on the client's interface as the wire reference. CPU = user+system of the prober's process tree (blackbox: exporter + scraping client). ` +
      `Loopback: a 127.x.y.z address of its own on lo; veth: two namespaces joined directly by one veth pair (198.18.x.y/30), probers in one, target in the other.`,
  );
  out.push('');
  out.push(
    '| path | kind | side | ok/n | probes/s | CPU-ms/probe | ours ÷ blackbox | RTT reported (µs, median) | wire (µs) | Δ vs wire (µs) |',
  );
  out.push('|---|---|---|---|--:|--:|--:|--:|--:|--:|');
  for (const r of rows) {
    const wire = r.rtt.wire;
    out.push(
      [
        '',
        r.path,
        r.kind,
        sideLabel[r.side],
        okCell(r.throughput) +
          (r.rtt.report === undefined && r.throughput.report !== undefined
            ? ` · rtt run ${okCell(r.rtt)}`
            : ''),
        fmt(rate(r.throughput), 0),
        cpuCell(r.throughput, r.side),
        r.side === 'faultline' ? fmt(ratio(rows, r.path, r.kind), 2) : '',
        fmt(us(r.rtt.report?.rttMedianMs), 1),
        wire === undefined
          ? 'n/a'
          : `${fmt(us(wire.medianMs), 1)} (${wire.pairs}${wire.dropped > 0 ? `, ${wire.dropped} dropped` : ''})`,
        fmt(rttDeltaUs(r.rtt), 1),
        '',
      ]
        .join(' | ')
        .trim(),
    );
  }
  out.push('');
  const sources = new Map<string, string>();
  for (const r of rows)
    if (r.rtt.report !== undefined) sources.set(`${r.side} ${r.kind}`, r.rtt.report.rttSource);
  out.push(
    `RTT reported: ${[...sources].map(([k, v]) => `${k} = \`${v}\``).join('; ')}. Wire: tcpdump, SYN → SYN-ACK (tcp, http) or echo request → reply (icmp); ` +
      `(n) = pairs seen, and the kernel drops tcpdump reports, if any. ping's own median RTT: ${[...pings].map(([p, ms]) => `${p} ${fmt(us(ms), 1)} µs`).join(', ')}.`,
  );
  out.push('');
  out.push('### Goals');
  out.push('');
  out.push(
    '| path | kind | CPU ours ÷ blackbox (exporter + scrape) | goal | CPU | ours ÷ exporter alone | our RTT Δ vs wire (µs) | RTT ≤ 100 µs |',
  );
  out.push('|---|---|--:|--:|---|--:|--:|---|');
  for (const path of s.paths) {
    for (const kind of s.kinds) {
      const ours = findRow(rows, path, kind, 'faultline');
      if (ours === undefined) continue;
      const q = ratio(rows, path, kind);
      const d = rttDeltaUs(ours.rtt);
      const verdict = (ok: boolean, v: number): string =>
        Number.isFinite(v) ? (ok ? 'pass' : '**FAIL**') : 'n/a';
      out.push(
        `| ${path} | ${kind} | ${fmt(q, 2)} | ≤ ${fmt(cpuGoal[kind], 2)} | ${verdict(q <= cpuGoal[kind], q)} | ${fmt(ratioExporterOnly(rows, path, kind), 2)} | ${fmt(d, 1)} | ${verdict(Math.abs(d) <= rttGoalUs, d)} |`,
      );
    }
  }
  if (soakResult !== undefined) {
    const { before, after } = soakResult;
    const mb = (b: number): string => (b / (1024 * 1024)).toFixed(1);
    const fdOk = Math.abs(after.fds - before.fds) <= 2;
    const rssOk = after.rss - before.rss < 10 * 1024 * 1024;
    const twOk = after.timeWait - before.timeWait <= 2;
    const pass = (ok: boolean): string => (ok ? 'pass' : '**FAIL**');
    out.push('');
    out.push(
      `### Soak: faultline tcp on loopback, ${soakResult.n} probes at concurrency ${soakResult.concurrency}`,
    );
    out.push('');
    if (soakResult.report === undefined) {
      out.push(`failed: ${soakResult.error ?? '?'}`);
    } else {
      const r = soakResult.report;
      out.push(
        `${okCell({ report: r, cpuMs: 0, exporterCpuMs: 0 })} ok, ${fmt(r.n / (r.elapsedMs / 1000), 0)} probes/s. Memory read after a full GC (node --expose-gc).`,
      );
      out.push('');
      out.push('| measure | after warm-up | at end | growth | limit | verdict |');
      out.push('|---|--:|--:|--:|---|---|');
      out.push(
        `| JS heap used after a full GC (MB) | ${mb(before.heapUsed)} | ${mb(after.heapUsed)} | ${mb(after.heapUsed - before.heapUsed)} | (for reading RSS) | |`,
      );
      out.push(
        `| RSS (MB) | ${mb(before.rss)} | ${mb(after.rss)} | ${mb(after.rss - before.rss)} | < 10 MB | ${pass(rssOk)} |`,
      );
      out.push(
        `| open fds | ${before.fds} | ${after.fds} | ${after.fds - before.fds} | ±2 | ${pass(fdOk)} |`,
      );
      out.push(
        `| TIME_WAIT sockets on the target port | ${before.timeWait} | ${after.timeWait} | ${after.timeWait - before.timeWait} | ≤ 2 | ${pass(twOk)} |`,
      );
    }
  }
  out.push('');
  return out.join('\n');
}

const loadAtStart = loadavg();

async function main(): Promise<void> {
  const s = settings();
  Resources.installSignalHandlers();
  const dir = mkdtempSync(join(tmpdir(), 'faultline-bench-'));
  const rows: Row[] = [];
  const pings = new Map<PathName, number>();
  let soakResult: Soak | undefined;
  try {
    const configFile = join(dir, 'blackbox.yml');
    writeFileSync(configFile, blackboxConfig(s.timeoutMs));
    accessSync(exporterBin, constants.X_OK); // fails early, naming the path, when the exporter is missing
    const isRoot = process.getuid?.() === 0;
    for (const name of s.paths) {
      if (name === 'veth' && !isRoot) {
        process.stderr.write('veth path skipped: creating namespaces needs root\n');
        continue;
      }
      const pathRes = new Resources();
      try {
        await benchPath(pathRes, s, name, configFile, rows, pings);
      } finally {
        await pathRes.cleanup();
      }
    }
    if (s.soakN > 0) {
      const soakRes = new Resources();
      try {
        soakResult = await soak(soakRes, s);
      } finally {
        await soakRes.cleanup();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const text = await printReport(s, rows, pings, soakResult);
  process.stdout.write(text);
  if (s.json !== undefined)
    writeFileSync(
      s.json,
      JSON.stringify(
        { settings: s, rows, pings: Object.fromEntries(pings), soak: soakResult },
        null,
        2,
      ),
    );
}

runBench('bench/probes', main);
