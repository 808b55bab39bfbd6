/**
 * Collector benchmark (issue 4): the real `faultline collector` process, pinned to one core,
 * ingesting report batches from 2,000 simulated agents × 100 paths at a 1 s interval, once
 * healthy and once with 10 % of the paths failing. Prints Markdown.
 *
 *   node dist/bench/collector.js [--duration-s 60] [--warmup-s 40] [--agents 2000]
 *       [--paths 100] [--interval-ms 1000] [--report-interval-ms auto's: 10000]
 *       [--fail-ratio 0.1] [--runs healthy,failing]
 *       [--components 100] [--collector-cpus 0] [--load-cpus 1] [--load-procs 1]
 *       [--gzip-level 1] [--profile] [--node-args="…"] [--json FILE]
 *       [--collector-log FILE]
 *
 * See bench/README.md (section "Collector benchmark") for what each figure means.
 */
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { reportIntervalFor } from '../collector/plan.js';
import type { LoadReport, LoadSettings, Quantiles } from './collector-load.js';
import {
  runBench,
  clockTicks,
  fleetCollectorConfig,
  freePort,
  LineReader,
  Resources,
  rssBytes,
  sh,
  stderrTail,
  treeCpuMs,
} from './lib.js';

const loadPath = fileURLToPath(new URL('./collector-load.js', import.meta.url));
const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/**
 * The young-generation size the systemd unit and the Kubernetes Deployment give the
 * collector (they also cap the old generation, which this machine does not need).
 */
const deployedNodeArgs = '--max-semi-space-size=32';

/** The issue's goal: keeps up on one core, p99 ingest latency under 100 ms. */
const goals = { latencyP99Ms: 100, keepUpRatio: 0.99 } as const;

type RunName = 'healthy' | 'failing';

interface Settings {
  durationS: number;
  warmupS: number;
  agents: number;
  paths: number;
  /** Probe interval. */
  intervalMs: number;
  /** Report period: a whole multiple of the probe interval. */
  reportIntervalMs: number;
  failRatio: number;
  runs: RunName[];
  components: number;
  collectorCpus: string;
  loadCpus: string;
  loadProcs: number;
  gzipLevel: number;
  profile: boolean;
  nodeArgs: string[];
  loadNodeArgs: string[];
  json?: string;
  collectorLog?: string;
}

const usage = `Usage: node dist/bench/collector.js [options]

  --duration-s N       measured window per run (default 60)
  --warmup-s N         unmeasured seconds before it, in which the fleet's start-up
                       storm drains (default 40)
  --agents N           simulated agents (default 2000)
  --paths N            paths per agent (default 100)
  --interval-ms N      probe interval (default 1000)
  --report-interval-ms N  report period, a whole multiple of the probe interval
                       (default: what the collector's reportInterval: auto picks for
                       --agents: 10000 for 2,000)
  --fail-ratio X       share of paths failing in the "failing" run (default 0.1)
  --runs LIST          healthy,failing (default both)
  --components N       inventory components the plan is made from (default 100)
  --collector-cpus L   taskset CPU list of the collector (default 0)
  --load-cpus L        taskset CPU list of the load generators (default 1)
  --load-procs N       load generator processes (default 1)
  --gzip-level N       gzip level of the report bodies (default 1: cheaper for the load
                       generator; the agent uses 6, which the collector inflates as fast)
  --profile            run the collector with --cpu-prof and print where its time goes
  --node-args="ARGS"   node flags for the collector (default: the young-generation size
                       deploy/ runs it with, "--max-semi-space-size=32"; "" for none)
  --load-node-args="ARGS"  extra node flags for the load generators
  --json FILE          also write the raw figures as JSON
  --collector-log FILE copy the collector's stdout and stderr there (with
                       --node-args="--trace-gc": its garbage collections)

Needs Linux (/proc, taskset) and a build (npx tsc -p tsconfig.build.json).
`;

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      'duration-s': { type: 'string', default: '60' },
      'warmup-s': { type: 'string', default: '40' },
      agents: { type: 'string', default: '2000' },
      paths: { type: 'string', default: '100' },
      'interval-ms': { type: 'string', default: '1000' },
      'report-interval-ms': { type: 'string' },
      'fail-ratio': { type: 'string', default: '0.1' },
      runs: { type: 'string', default: 'healthy,failing' },
      components: { type: 'string', default: '100' },
      'collector-cpus': { type: 'string', default: '0' },
      'load-cpus': { type: 'string', default: '1' },
      'load-procs': { type: 'string', default: '1' },
      'gzip-level': { type: 'string', default: '1' },
      profile: { type: 'boolean', default: false },
      'node-args': { type: 'string', default: deployedNodeArgs },
      'load-node-args': { type: 'string', default: '' },
      json: { type: 'string' },
      'collector-log': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const num = (name: keyof typeof values, min: number, max = Infinity): number => {
    const v = Number(values[name]);
    if (!Number.isFinite(v) || v < min || v > max)
      throw new Error(
        `--${name}: expected a number in [${min}, ${max}] (actual: ${String(values[name])})`,
      );
    return v;
  };
  const runs = String(values.runs)
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '');
  for (const r of runs)
    if (r !== 'healthy' && r !== 'failing')
      throw new Error(`--runs: expected healthy and/or failing (actual: ${r})`);
  const cpuList = (name: 'collector-cpus' | 'load-cpus'): string => {
    const v = String(values[name]);
    if (!/^\d+([-,]\d+)*$/.test(v))
      throw new Error(`--${name}: expected a CPU list such as 0 or 1-3`);
    return v;
  };
  const intervalMs = Math.floor(num('interval-ms', 100));
  const agents = Math.floor(num('agents', 1));
  // By default what the collector's `reportInterval: auto` tells a fleet this size.
  const reportIntervalMs =
    values['report-interval-ms'] === undefined
      ? Math.ceil(
          reportIntervalFor(
            { reportIntervalMs: 'auto', silentAfterMs: 'auto', planRefreshMs: 0 },
            agents,
          ) / intervalMs,
        ) * intervalMs
      : Math.floor(num('report-interval-ms', intervalMs));
  if (reportIntervalMs % intervalMs !== 0)
    throw new Error(
      `--report-interval-ms: expected a whole multiple of --interval-ms ${intervalMs} (actual: ${reportIntervalMs})`,
    );
  return {
    durationS: num('duration-s', 1),
    warmupS: num('warmup-s', 0),
    agents,
    paths: Math.floor(num('paths', 1, 50_000)),
    intervalMs,
    reportIntervalMs,
    failRatio: num('fail-ratio', 0, 1),
    runs: runs as RunName[],
    components: Math.floor(num('components', 1)),
    collectorCpus: cpuList('collector-cpus'),
    loadCpus: cpuList('load-cpus'),
    loadProcs: Math.floor(num('load-procs', 1, 64)),
    gzipLevel: Math.floor(num('gzip-level', 0, 9)),
    profile: values.profile === true,
    nodeArgs: String(values['node-args'])
      .split(/\s+/)
      .filter((x) => x !== ''),
    loadNodeArgs: String(values['load-node-args'])
      .split(/\s+/)
      .filter((x) => x !== ''),
    ...(values.json === undefined ? {} : { json: values.json }),
    ...(values['collector-log'] === undefined ? {} : { collectorLog: values['collector-log'] }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number): number => bytes / (1024 * 1024);
/** CLOCK_MONOTONIC in µs: the clock V8 stamps cpuprofile samples with. */
const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

function collectorConfig(s: Settings, dataDir: string, port: number, token: string): unknown {
  return fleetCollectorConfig({
    components: s.components,
    dataDir,
    port,
    token,
    reportIntervalMs: s.reportIntervalMs,
    intervalMs: s.intervalMs,
  });
}

// ---------------------------------------------------------------------------------------
// /proc readings of the collector

function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(
    readFileSync(`/proc/${pid}/status`, 'utf8'),
  );
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** CPU ms of one thread (the main thread's tid is the pid). */
function threadCpuMs(pid: number, tid: number): number {
  const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks();
}

/** The CPUs of a taskset list ("0", "1-3", "0,2"). */
function cpuSet(list: string): Set<number> {
  const out = new Set<number>();
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    for (let c = a; c <= (b ?? a); c++) out.add(c);
  }
  return out;
}

/** Time the given CPUs spent busy (any process), stolen by the hypervisor, and in total (ms). */
interface CpuTimes {
  readonly busyMs: number;
  readonly stealMs: number;
  readonly totalMs: number;
}

function cpuTimes(cpusOf: Set<number>): CpuTimes {
  let busy = 0;
  let steal = 0;
  let total = 0;
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (m === null || !cpusOf.has(Number(m[1]))) continue;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    const f = m[2]!.split(' ').map(Number);
    const at = (i: number): number => f[i] ?? 0;
    const [user, nice, system, idle, iowait, irq, softirq, st] = [0, 1, 2, 3, 4, 5, 6, 7].map(at);
    busy += user! + nice! + system! + irq! + softirq!;
    steal += st!;
    total += user! + nice! + system! + idle! + iowait! + irq! + softirq! + st!;
  }
  const ms = (t: number): number => (t * 1000) / clockTicks();
  return { busyMs: ms(busy), stealMs: ms(steal), totalMs: ms(total) };
}

function dbBytes(dataDir: string): { db: number; wal: number } {
  const size = (f: string): number => {
    try {
      return statSync(join(dataDir, f)).size;
    } catch {
      return 0;
    }
  };
  return { db: size('faultline.db'), wal: size('faultline.db-wal') };
}

/** Row counts and bytes per table of a stopped collector's store (dbstat). */
interface StoreFootprint {
  readonly fileBytes: number;
  readonly rows: Readonly<Record<string, number>>;
  /** Bytes per table including its indexes. */
  readonly tableBytes: Readonly<Record<string, number>>;
}

function storeFootprint(dataDir: string): StoreFootprint {
  const file = join(dataDir, 'faultline.db');
  const db = new Database(file, { readonly: true });
  try {
    const rows: Record<string, number> = {};
    for (const t of ['agents', 'batches', 'results', 'transitions', 'checkpoint_paths'])
      rows[t] = db.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number;
    // Summaries live in their batch's row.
    rows.summaries = db
      .prepare('SELECT coalesce(sum(summaries), 0) FROM batches')
      .pluck()
      .get() as number;
    const tableBytes: Record<string, number> = {};
    const stat = db
      .prepare(
        `SELECT coalesce(m.tbl_name, d.name) AS tbl, sum(d.pgsize) AS bytes
         FROM dbstat d LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY tbl`,
      )
      .all() as { tbl: string; bytes: number }[];
    for (const r of stat) tableBytes[r.tbl] = r.bytes;
    return { fileBytes: statSync(file).size, rows, tableBytes };
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------
// One run

interface RunResult {
  readonly run: RunName;
  readonly failRatio: number;
  readonly windowMs: number;
  readonly load: LoadReport;
  readonly planTargets: number;
  readonly collectorCpuMs: number;
  readonly collectorMainThreadCpuMs: number;
  readonly loadCpuMs: number;
  /** The collector's CPUs over the window: busy (everything on them), steal, total. */
  readonly collectorCpus: CpuTimes;
  readonly rssAtMarkBytes: number;
  readonly peakRssInWindowBytes: number;
  readonly hwmBytes: number;
  readonly dbAtMark: { db: number; wal: number };
  readonly dbAtEnd: { db: number; wal: number };
  readonly footprint?: StoreFootprint;
  readonly profile?: ProfileBreakdown;
  readonly error?: undefined;
}

/** A run that could not be measured. */
interface FailedRun {
  readonly run: RunName;
  readonly error: string;
}

/** Sums the load processes' reports. */
function mergeReports(parts: readonly LoadReport[]): LoadReport {
  const sum = (f: (r: LoadReport) => number): number => parts.reduce((a, r) => a + f(r), 0);
  const max = (f: (r: LoadReport) => number): number => Math.max(...parts.map(f));
  const statuses: Record<string, number> = {};
  for (const r of parts)
    for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  // Quantiles do not add up; with several processes the worst one's is shown.
  const worst = (f: (r: LoadReport) => Quantiles): Quantiles => ({
    n: sum((r) => f(r).n),
    p50: max((r) => f(r).p50),
    p90: max((r) => f(r).p90),
    p99: max((r) => f(r).p99),
    max: max((r) => f(r).max),
  });
  const offered = sum((r) => r.offeredBatches);
  return {
    elapsedMs: max((r) => r.elapsedMs),
    offeredBatches: offered,
    offeredPathResults: sum((r) => r.offeredPathResults),
    acceptedBatches: sum((r) => r.acceptedBatches),
    acceptedPathResults: sum((r) => r.acceptedPathResults),
    acceptedSummaries: sum((r) => r.acceptedSummaries),
    acceptedFullResults: sum((r) => r.acceptedFullResults),
    duplicates: sum((r) => r.duplicates),
    statuses,
    networkErrors: sum((r) => r.networkErrors),
    latencyMs: parts.length === 1 ? parts[0]!.latencyMs : worst((r) => r.latencyMs),
    ackLatencyMs: parts.length === 1 ? parts[0]!.ackLatencyMs : worst((r) => r.ackLatencyMs),
    deliveryMs: parts.length === 1 ? parts[0]!.deliveryMs : worst((r) => r.deliveryMs),
    backlogAtMarkBatches: sum((r) => r.backlogAtMarkBatches),
    backlogBatches: sum((r) => r.backlogBatches),
    meanBodyBytes: sum((r) => r.meanBodyBytes * r.offeredBatches) / offered,
    meanJsonBytes: sum((r) => r.meanJsonBytes * r.offeredBatches) / offered,
    loopDelayP99Ms: max((r) => r.loopDelayP99Ms),
    loopDelayMaxMs: max((r) => r.loopDelayMaxMs),
    cutLateP99Ms: max((r) => r.cutLateP99Ms),
    sampleErrors: parts.flatMap((r) => r.sampleErrors).slice(0, 5),
  };
}

/** Temporary directories of runs in progress, removed at the end or on SIGINT/SIGTERM. */
const liveDirs = new Set<string>();

async function runOnce(res: Resources, s: Settings, run: RunName): Promise<RunResult> {
  const failRatio = run === 'failing' ? s.failRatio : 0;
  const dir = mkdtempSync(join(tmpdir(), 'fl-bench-collector-'));
  liveDirs.add(dir);
  const dataDir = join(dir, 'data');
  const profDir = join(dir, 'prof');
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  const file = join(dir, 'collector.yaml');
  writeFileSync(file, stringify(collectorConfig(s, dataDir, port, token)));
  const nodeArgs = [
    ...s.nodeArgs,
    ...(s.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
  ];
  const collector = res.spawn(
    'taskset',
    ['-c', s.collectorCpus, process.execPath, ...nodeArgs, cliPath, 'collector', '--config', file],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FAULTLINE_LOG_LEVEL: process.env.FAULTLINE_LOG_LEVEL ?? 'warn' },
    },
  );
  const collectorErr = stderrTail(collector, 8000);
  if (s.collectorLog !== undefined) {
    const log = createWriteStream(s.collectorLog);
    collector.stdout?.on('data', (d: Buffer) => log.write(d));
    collector.stderr?.on('data', (d: Buffer) => log.write(d));
    collector.once('close', () => log.end());
  }
  const loads: ReturnType<Resources['spawn']>[] = [];
  const loadErrs: (() => string)[] = [];
  let stopped = false;
  const stopCollector = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // SIGTERM: it checkpoints the matrix and closes the store (and writes its profile).
    await res.stop(collector, 'SIGTERM', 60_000);
  };
  try {
    // `taskset` execs node, so this PID is the collector itself.
    const pid = collector.pid as number;
    await new LineReader(collector).next('Faultline collector on', 60_000).catch((e: unknown) => {
      throw new Error(
        `the collector did not start: ${e instanceof Error ? e.message : String(e)} ${collectorErr()}`,
      );
    });
    const url = `http://127.0.0.1:${port}`;
    const readers: LineReader[] = [];
    const perProc = Math.ceil(s.agents / s.loadProcs);
    let planTargets = 0;
    for (let p = 0; p < s.loadProcs; p++) {
      const firstAgent = p * perProc;
      const agents = Math.min(perProc, s.agents - firstAgent);
      if (agents <= 0) break;
      const ls: LoadSettings = {
        url,
        token,
        firstAgent,
        agents,
        totalAgents: s.agents,
        paths: s.paths,
        intervalMs: s.reportIntervalMs,
        probesPerReport: s.reportIntervalMs / s.intervalMs,
        failRatio,
        gzipLevel: s.gzipLevel,
        // Enough for the warm-up and the window, with a margin for start-up.
        rounds: Math.ceil(((s.warmupS + s.durationS) * 1000) / s.reportIntervalMs) + 5,
      };
      // Unpinned while it makes the batches (worker threads on every CPU, the collector idle),
      // then pinned with all its threads before the run.
      const child = res.spawn(process.execPath, [...s.loadNodeArgs, loadPath, JSON.stringify(ls)], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      loads.push(child);
      loadErrs.push(stderrTail(child));
      const reader = new LineReader(child);
      readers.push(reader);
      process.stderr.write(`  ${run}: the load generator makes every batch of the run…\n`);
      const ready = JSON.parse((await reader.next('READY ', 600_000)).slice(6)) as {
        planTargets: number;
        batches: number;
        megabytes: number;
        prepareS: number;
      };
      process.stderr.write(
        `  ${run}: ${ready.batches} batches (${ready.megabytes.toFixed(0)} MB gzip'd) made in ${ready.prepareS.toFixed(1)} s\n`,
      );
      planTargets = ready.planTargets;
      await sh('taskset', ['-a', '-p', '-c', s.loadCpus, String(child.pid)]);
    }
    const tell = (word: string): void => {
      for (const c of loads) c.stdin?.write(`${word}\n`);
    };
    const alive = (): void => {
      if (collector.exitCode !== null || collector.signalCode !== null)
        throw new Error(`the collector exited: ${collectorErr()}`);
      loads.forEach((c, i) => {
        if (c.exitCode !== null) throw new Error(`a load generator exited: ${loadErrs[i]!()}`);
      });
    };
    tell('start');
    process.stderr.write(`  ${run}: warming up for ${s.warmupS} s…\n`);
    await sleep(s.warmupS * 1000);
    alive();

    tell('mark');
    for (const r of readers) await r.next('MARKED', 10_000);
    const cpuSetCollector = cpuSet(s.collectorCpus);
    const core0 = cpuTimes(cpuSetCollector);
    const cpu0 = treeCpuMs(pid);
    const main0 = threadCpuMs(pid, pid);
    const loadCpu0 = loads.reduce((a, c) => a + treeCpuMs(c.pid as number), 0);
    const t0 = performance.now();
    const mono0 = monoUs();
    const rssAtMark = rssBytes(pid);
    const dbAtMark = dbBytes(dataDir);
    let peakRss = rssAtMark;
    const sampler = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, procStatus(pid, 'VmRSS'));
      } catch {
        /* exited: caught below */
      }
    }, 250);
    process.stderr.write(`  ${run}: measuring for ${s.durationS} s…\n`);
    try {
      const endAt = t0 + s.durationS * 1000;
      while (performance.now() < endAt) {
        await sleep(Math.min(1000, endAt - performance.now()));
        alive();
      }
    } finally {
      clearInterval(sampler);
    }
    tell('report');
    const reports: LoadReport[] = [];
    for (const r of readers)
      reports.push(JSON.parse((await r.next('REPORT ', 30_000)).slice(7)) as LoadReport);
    const cpu1 = treeCpuMs(pid);
    const core1 = cpuTimes(cpuSetCollector);
    const main1 = threadCpuMs(pid, pid);
    const loadCpu1 = loads.reduce((a, c) => a + treeCpuMs(c.pid as number), 0);
    const t1 = performance.now();
    const mono1 = monoUs();
    const dbAtEnd = dbBytes(dataDir);
    const hwm = procStatus(pid, 'VmHWM');

    tell('stop');
    for (const r of readers) await r.next('STOPPED ', 20_000).catch(() => undefined);
    process.stderr.write(`  ${run}: stopping the collector (checkpoint)…\n`);
    await stopCollector();
    const footprint = storeFootprint(dataDir);
    const profile = s.profile ? profileBreakdown(profDir, mono0, mono1) : undefined;
    return {
      run,
      failRatio,
      windowMs: t1 - t0,
      load: mergeReports(reports),
      planTargets,
      collectorCpuMs: cpu1 - cpu0,
      collectorMainThreadCpuMs: main1 - main0,
      loadCpuMs: loadCpu1 - loadCpu0,
      collectorCpus: {
        busyMs: core1.busyMs - core0.busyMs,
        stealMs: core1.stealMs - core0.stealMs,
        totalMs: core1.totalMs - core0.totalMs,
      },
      rssAtMarkBytes: rssAtMark,
      peakRssInWindowBytes: peakRss,
      hwmBytes: hwm,
      dbAtMark,
      dbAtEnd,
      footprint,
      ...(profile === undefined ? {} : { profile }),
    };
  } finally {
    for (const c of loads) await res.stop(c, 'SIGTERM', 5000);
    await stopCollector();
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  }
}

// ---------------------------------------------------------------------------------------
// Where the collector's time goes: its --cpu-prof, main thread, within the window

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Share of the main thread's samples in the window, by category and by function. */
export interface ProfileBreakdown {
  readonly samples: number;
  /** Whether the samples could be limited to the measured window (else: the whole run). */
  readonly windowed: boolean;
  readonly categories: readonly { readonly name: string; readonly share: number }[];
  readonly topSelf: readonly { readonly name: string; readonly share: number }[];
  /**
   * The longest spells the main thread never went idle (each holds every request that came
   * meanwhile): when it began (ms into the window), how long, and its commonest frames.
   */
  readonly stalls: readonly {
    readonly atMs: number;
    readonly ms: number;
    readonly top: readonly { readonly name: string; readonly share: number }[];
  }[];
}

/**
 * Categories, tried from the sampled (leaf) frame towards the root: the first frame a rule
 * names decides. Native frames (empty url) are named by their function only where that is
 * unambiguous; otherwise their JS caller decides.
 */
const categoryRules: readonly (readonly [string, (f: CpuProfileNode['callFrame']) => boolean])[] = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['zod validation', (f) => f.url.includes('/node_modules/zod/')],
  [
    'JSON.parse (body)',
    (f) => f.url.includes('/secure-json-parse/') || (f.url === '' && f.functionName === 'parse'),
  ],
  ['JSON.stringify (store rows)', (f) => f.url === '' && f.functionName === 'stringify'],
  [
    'SQLite (better-sqlite3)',
    (f) =>
      f.url.includes('/better-sqlite3/') ||
      (f.url === '' && ['run', 'get', 'all', 'transaction'].includes(f.functionName)),
  ],
  [
    'store (JS)',
    (f) => f.url.includes('/collector/store.js') || f.url.includes('/collector/store/'),
  ],
  ['path matrix', (f) => f.url.includes('/collector/paths/')],
  ['ingest (JS)', (f) => f.url.includes('/collector/ingest.js')],
  [
    'api: body checks, gunzip glue',
    (f) => f.url.includes('/collector/api.js') || f.url.includes('/collector/api/'),
  ],
  ['zlib (gunzip)', (f) => f.url.includes('node:zlib') || f.url.includes('internal/zlib')],
  ['streams', (f) => f.url.includes('node:internal/streams') || f.url.includes('node:stream')],
  [
    'fastify',
    (f) =>
      /\/node_modules\/(fastify|@fastify|avvio|find-my-way|light-my-request|fast-json-stringify|fast-querystring|process-warning|abstract-logging|rfdc|toad-cache)/.test(
        f.url,
      ),
  ],
  ['pino (logging)', (f) => f.url.includes('/node_modules/pino')],
  [
    'HTTP/net (node)',
    (f) =>
      /node:(_http|http|net|internal\/http|internal\/stream_base|internal\/net)/.test(f.url) ||
      f.url.startsWith('node:_http'),
  ],
  ['collector upkeep', (f) => f.url.includes('/collector/collector.js')],
  ['(program: native, uncategorised)', (f) => f.functionName === '(program)'],
];

function profileBreakdown(profDir: string, fromUs: number, toUs: number): ProfileBreakdown {
  if (!existsSync(profDir)) throw new Error(`no profile was written to ${profDir}`);
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${profDir}`);
  const p = JSON.parse(readFileSync(join(profDir, files[0]!), 'utf8')) as CpuProfile;
  const byId = new Map<number, CpuProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Sample times: startTime + running sum of deltas (µs, CLOCK_MONOTONIC like hrtime).
  const times: number[] = [];
  let t = p.startTime;
  for (const d of p.timeDeltas) times.push((t += d));
  // Should the clocks not line up, the whole run is counted (and the report says so).
  const windowed = times.some((x) => x >= fromUs && x <= toUs);
  const inWindow = (i: number): boolean => !windowed || (times[i]! >= fromUs && times[i]! <= toUs);
  const categoryOf = new Map<number, string>();
  const category = (id: number): string => {
    const known = categoryOf.get(id);
    if (known !== undefined) return known;
    let found = 'other JS';
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const f = byId.get(n)!.callFrame;
      const rule = categoryRules.find(([, test]) => test(f));
      if (rule !== undefined) {
        found = rule[0];
        break;
      }
    }
    categoryOf.set(id, found);
    return found;
  };
  const cats = new Map<string, number>();
  const self = new Map<string, number>();
  let total = 0;
  const spells: { from: number; to: number; frames: Map<string, number> }[] = [];
  let spell: (typeof spells)[number] | undefined;
  for (let i = 0; i < p.samples.length; i++) {
    if (!inWindow(i)) continue;
    const id = p.samples[i]!;
    const cat = category(id);
    if (cat === 'idle') {
      spell = undefined;
      continue;
    }
    total++;
    cats.set(cat, (cats.get(cat) ?? 0) + 1);
    const f = byId.get(id)!.callFrame;
    const where =
      f.url === '' ? '' : ` ${f.url.replace(/^.*\/(node_modules\/)?/, '')}:${f.lineNumber + 1}`;
    const key = `${f.functionName || '(anonymous)'}${where}`;
    self.set(key, (self.get(key) ?? 0) + 1);
    if (spell === undefined) {
      spell = { from: times[i - 1] ?? times[i]!, to: times[i]!, frames: new Map() };
      spells.push(spell);
    }
    spell.to = times[i]!;
    spell.frames.set(key, (spell.frames.get(key) ?? 0) + 1);
  }
  const sorted = (m: Map<string, number>, k: number, of = total) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, n]) => ({ name, share: n / of }));
  const windowStart = windowed ? fromUs : p.startTime;
  const stalls = spells
    .sort((a, b) => b.to - b.from - (a.to - a.from))
    .slice(0, 5)
    .map((x) => ({
      atMs: (x.from - windowStart) / 1000,
      ms: (x.to - x.from) / 1000,
      top: sorted(
        x.frames,
        4,
        [...x.frames.values()].reduce((a, b) => a + b, 0),
      ),
    }));
  return {
    samples: total,
    windowed,
    categories: sorted(cats, 30),
    topSelf: sorted(self, 15),
    stalls,
  };
}

// ---------------------------------------------------------------------------------------
// Report

function fmt(v: number, digits: number): string {
  if (v === Infinity) return '+Inf';
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

/** 123456 → "123,456". */
function int(v: number): string {
  return Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a';
}

interface Derived {
  readonly perS: (n: number) => number;
  readonly cpuShare: number;
  readonly acceptedPathResultsPerS: number;
  readonly offeredPathResultsPerS: number;
  readonly perCore: number;
  readonly keepsUp: boolean;
  readonly latencyOk: boolean;
  readonly dbGrowthBytes: number;
}

function derive(r: RunResult): Derived {
  const perS = (n: number): number => (n * 1000) / r.windowMs;
  const cpuShare = r.collectorCpuMs / r.windowMs;
  const acceptedPathResultsPerS = perS(r.load.acceptedPathResults);
  const offeredPathResultsPerS = perS(r.load.offeredPathResults);
  const st = r.load.statuses;
  const refused = Object.entries(st)
    .filter(([k]) => k !== '200')
    .reduce((a, [, v]) => a + v, 0);
  return {
    perS,
    cpuShare,
    acceptedPathResultsPerS,
    offeredPathResultsPerS,
    perCore: acceptedPathResultsPerS / cpuShare,
    // Accepted what was offered, without refusals, and without a backlog building up.
    keepsUp:
      acceptedPathResultsPerS >= goals.keepUpRatio * offeredPathResultsPerS &&
      r.load.backlogBatches - r.load.backlogAtMarkBatches <=
        (1 - goals.keepUpRatio) * r.load.offeredBatches &&
      refused === 0 &&
      r.load.networkErrors === 0,
    latencyOk: r.load.latencyMs.p99 < goals.latencyP99Ms,
    dbGrowthBytes: r.dbAtEnd.db + r.dbAtEnd.wal - (r.dbAtMark.db + r.dbAtMark.wal),
  };
}

function report(
  s: Settings,
  results: readonly (RunResult | FailedRun)[],
  header: { load0: number[]; load1: number[] },
): string {
  const out: string[] = [];
  out.push('## Collector benchmark: ingest throughput on one core');
  out.push('');
  out.push(
    `${new Date().toISOString()} · Linux ${release()} · ${cpus().length} × ${cpus()[0]?.model ?? '?'} · Node ${process.version}`,
  );
  out.push(
    `Load average at start ${header.load0.map((l) => l.toFixed(2)).join(' ')}, at end ${header.load1.map((l) => l.toFixed(2)).join(' ')}.`,
  );
  out.push('');
  const planTargets = results.find((r) => r.error === undefined)?.planTargets ?? 0;
  out.push(
    `${int(s.agents)} simulated agents × ${s.paths} paths probed every ${s.intervalMs} ms (the plan of a ${s.components}-component inventory has ${planTargets} targets; each agent reports ${s.paths} of them): ` +
      `one gzip'd (level ${s.gzipLevel}) report batch per agent every ${s.reportIntervalMs} ms (a summary per path covering ${s.reportIntervalMs / s.intervalMs} probe${s.reportIntervalMs === s.intervalMs ? '' : 's'}; state changes and their confirmations in full), agents spread evenly over the period, each on its own keep-alive connection. ` +
      `Collector pinned to CPU ${s.collectorCpus} (\`taskset\`, its threads included), ${s.loadProcs} load generator process${s.loadProcs === 1 ? '' : 'es'} to CPU ${s.loadCpus}. ` +
      `Measured for ${s.durationS} s after ${s.warmupS} s of warm-up.${s.profile ? ' **Profiled run (--cpu-prof): figures include the profiler’s overhead.**' : ''}`,
  );
  out.push('');
  const ok = results.filter((r): r is RunResult => r.error === undefined);
  const d = ok.map(derive);
  const row = (label: string, f: (r: RunResult, x: Derived) => string): void => {
    out.push(`| ${label} | ${ok.map((r, i) => f(r, d[i]!)).join(' | ')} |`);
  };
  out.push(
    `| | ${ok.map((r) => (r.run === 'healthy' ? 'healthy' : `${fmt(r.failRatio * 100, 0)} % of paths failing`)).join(' | ')} |`,
  );
  out.push(`|---|${ok.map(() => '---:').join('|')}|`);
  row(
    'offered: batches/s · path results/s',
    (r, x) => `${fmt(x.perS(r.load.offeredBatches), 0)} · ${int(x.offeredPathResultsPerS)}`,
  );
  row('**accepted: path results/s**', (r, x) => `**${int(x.acceptedPathResultsPerS)}**`);
  row(
    'accepted: batches/s · summaries/s · full results/s',
    (r, x) =>
      `${fmt(x.perS(r.load.acceptedBatches), 0)} · ${int(x.perS(r.load.acceptedSummaries))} · ${int(x.perS(r.load.acceptedFullResults))}`,
  );
  row(
    'collector CPU, % of one core (main thread)',
    (r, x) =>
      `${fmt(x.cpuShare * 100, 1)} (${fmt((r.collectorMainThreadCpuMs / r.windowMs) * 100, 1)})`,
  );
  row(
    `CPU ${s.collectorCpus} busy: collector + everything else (other processes, interrupts) · hypervisor steal, %`,
    (r) => {
      const c = r.collectorCpus;
      const pct = (ms: number): string => fmt((ms / c.totalMs) * 100, 1);
      return `${pct(r.collectorCpuMs)} + ${pct(Math.max(0, c.busyMs - r.collectorCpuMs))} · ${pct(c.stealMs)}`;
    },
  );
  row('**path results/s per core**', (_r, x) => `**${int(x.perCore)}**`);
  row(
    '**ingest latency p50 / p99 / max, ms** (request → answer; no answer: until it failed)',
    (r) =>
      `${fmt(r.load.latencyMs.p50, 1)} / **${fmt(r.load.latencyMs.p99, 1)}** / ${fmt(r.load.latencyMs.max, 0)}`,
  );
  row(
    '… of the 200 answers only: p50 / p99, ms',
    (r) => `${fmt(r.load.ackLatencyMs.p50, 1)} / ${fmt(r.load.ackLatencyMs.p99, 1)}`,
  );
  row(
    'batch cut → ack p99 / max, ms',
    (r) => `${fmt(r.load.deliveryMs.p99, 0)} / ${fmt(r.load.deliveryMs.max, 0)}`,
  );
  row('HTTP 200 / 503 / other · no answer', (r) => {
    const st = r.load.statuses;
    const other = Object.entries(st)
      .filter(([k]) => k !== '200' && k !== '503')
      .reduce((a, [, v]) => a + v, 0);
    return `${int(st['200'] ?? 0)} / ${int(st['503'] ?? 0)} / ${int(other)} · ${int(r.load.networkErrors)}`;
  });
  row(
    "backlog in the agents' queues at mark → end, batches",
    (r) => `${int(r.load.backlogAtMarkBatches)} → ${int(r.load.backlogBatches)}`,
  );
  row(
    'collector RSS: at mark / peak in window / VmHWM, MB',
    (r) =>
      `${fmt(mb(r.rssAtMarkBytes), 0)} / ${fmt(mb(r.peakRssInWindowBytes), 0)} / ${fmt(mb(r.hwmBytes), 0)}`,
  );
  row('DB growth in window (db + wal), MB/min', (r, x) =>
    fmt(mb(x.dbGrowthBytes) / (r.windowMs / 60_000), 1),
  );
  row('DB after stop: MB · bytes per stored summary (batches table)', (r) => {
    const f = r.footprint;
    if (f === undefined) return 'n/a';
    const sumBytes = f.tableBytes.batches ?? Number.NaN;
    return `${fmt(mb(f.fileBytes), 0)} · ${fmt(sumBytes / (f.rows.summaries ?? Number.NaN), 0)}`;
  });
  row(
    'request body: gzip / JSON bytes',
    (r) => `${int(r.load.meanBodyBytes)} / ${int(r.load.meanJsonBytes)}`,
  );
  row(
    'load generator: CPU % · loop delay p99 ms · cut late p99 ms',
    (r) =>
      `${fmt((r.loadCpuMs / r.windowMs) * 100, 0)} · ${fmt(r.load.loopDelayP99Ms, 1)} · ${fmt(r.load.cutLateP99Ms, 0)}`,
  );
  out.push('');
  const mark = (b: boolean): string => (b ? '✅' : '❌');
  out.push(
    `Goal (issue 4): the collector keeps up on one core with p99 ingest latency under ${goals.latencyP99Ms} ms.`,
  );
  out.push('');
  ok.forEach((r, i) => {
    const x = d[i]!;
    out.push(
      `- ${r.run}: ${mark(x.keepsUp)} keeps up (accepted ${fmt((x.acceptedPathResultsPerS / x.offeredPathResultsPerS) * 100, 1)} % of offered, ${int(
        x.perS(
          Object.entries(r.load.statuses)
            .filter(([k]) => k !== '200')
            .reduce((a, [, v]) => a + v, 0),
        ),
      )} refusals/s, CPU ${fmt(x.cpuShare * 100, 0)} % of its core) · ` +
        `${mark(x.latencyOk)} p99 ${fmt(r.load.latencyMs.p99, 1)} ms < ${goals.latencyP99Ms} ms`,
    );
  });
  for (const r of results) if (r.error !== undefined) out.push(`- ${r.run}: ❌ error: ${r.error}`);
  out.push('');
  for (const r of ok) {
    if (r.load.sampleErrors.length > 0)
      out.push(
        `${r.run}: sample refusals: ${r.load.sampleErrors.map((e) => `\`${e.replace(/`/g, "'")}\``).join('; ')}`,
      );
  }
  for (const r of ok) {
    const p = r.profile;
    if (p === undefined) continue;
    out.push('');
    out.push(
      `### Where the collector's main thread goes (${r.run}; ${int(p.samples)} non-idle samples${p.windowed ? ' in the window' : ', whole run'})`,
    );
    out.push('');
    out.push(
      `Main thread ${fmt((r.collectorMainThreadCpuMs / r.windowMs) * 100, 1)} % of a core, other threads (libuv's pool: gunzip of bodies streamed; V8's GC helpers) ${fmt(((r.collectorCpuMs - r.collectorMainThreadCpuMs) / r.windowMs) * 100, 1)} %.`,
    );
    out.push('');
    out.push('| category | share of main-thread CPU |');
    out.push('|---|---:|');
    for (const c of p.categories) out.push(`| ${c.name} | ${fmt(c.share * 100, 1)} % |`);
    out.push('');
    out.push('| top self time | share |');
    out.push('|---|---:|');
    for (const c of p.topSelf) out.push(`| \`${c.name}\` | ${fmt(c.share * 100, 1)} % |`);
    out.push('');
    out.push('| longest spells without idle: at, ms · length, ms | commonest frames |');
    out.push('|---|---|');
    for (const x of p.stalls)
      out.push(
        `| ${fmt(x.atMs, 0)} · **${fmt(x.ms, 0)}** | ${x.top.map((t) => `\`${t.name}\` ${fmt(t.share * 100, 0)} %`).join(', ')} |`,
      );
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const s = settings();
  if (!existsSync(cliPath) || !existsSync(loadPath)) {
    process.stderr.write('bench/collector: build first: npx tsc -p tsconfig.build.json\n');
    return 2;
  }
  const res = new Resources();
  let cleaned: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaned ??= (async () => {
      await res.cleanup();
      for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
      liveDirs.clear();
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up…\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  try {
    const load0 = loadavg();
    const results: (RunResult | FailedRun)[] = [];
    for (const run of s.runs) {
      process.stderr.write(`${run}: ${s.agents} agents × ${s.paths} paths…\n`);
      try {
        results.push(await runOnce(res, s, run));
      } catch (e) {
        results.push({ run, error: e instanceof Error ? e.message : String(e) });
      }
    }
    process.stdout.write(report(s, results, { load0, load1: loadavg() }));
    if (s.json !== undefined)
      writeFileSync(s.json, `${JSON.stringify({ settings: s, results }, null, 2)}\n`);
    return results.some((r) => r.error !== undefined) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

runBench('bench/collector', main);
