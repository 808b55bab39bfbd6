/**
 * Agent benchmark (issue 3): the real `faultline agent` process with 1,000 targets at a 1 s
 * interval (icmp, tcp and http against loopback and namespace hosts), side by side with
 * blackbox_exporter scraped for the same targets at the same rate. Prints Markdown.
 *
 *   node dist/bench/agent.js [--duration-s 60] [--warmup-s 5] [--targets 1000]
 *       [--interval-ms 1000] [--hosts 4] [--scrape-interval-s 15] [--icmp-count 1]
 *       [--sides ours,blackbox] [--failing 0.1] [--flap-ms 2000] [--confirm-count 3]
 *       [--adaptive-timeout true] [--json FILE]
 *
 * See bench/README.md (section "Agent benchmark") for what each figure means.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { get as httpGet } from 'node:http';
import { createServer, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { TestNet, type TestHost } from '../lab/netns.js';
import { planCollectorConfig } from './agent-plan.js';
import type { FloorTarget, ScrapeReport, ScrapeTarget, ServeListener } from './agent-worker.js';
import {
  blackboxConfig,
  runBench,
  startCollector,
  descendants,
  freePort,
  LineReader,
  pollUntil,
  Resources,
  rssBytes,
  rssTrend,
  sh,
  stderrTail,
  treeCpuMs,
} from './lib.js';

const exporterBin = '/usr/bin/prometheus-blackbox-exporter';
const workerPath = fileURLToPath(new URL('./agent-worker.js', import.meta.url));
const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** The issue's goals for the agent. */
const goals = { cpuPercent: 5, rssMb: 80, lagP99Ms: 20 } as const;

type Kind = 'icmp' | 'tcp' | 'http';
const kinds: readonly Kind[] = ['icmp', 'tcp', 'http'];
const blackboxModule: Record<Kind, string> = { icmp: 'icmp', tcp: 'tcp_connect', http: 'http_2xx' };
type Side = 'ours' | 'blackbox' | 'floor';

interface Settings {
  durationS: number;
  warmupS: number;
  targets: number;
  intervalMs: number;
  hosts: number;
  scrapeIntervalS: number;
  icmpCount: number;
  sides: Side[];
  /** Which kinds the targets cycle through (all three by default). */
  kinds: Kind[];
  /** Extra `node` flags for the agent process (e.g. --cpu-prof). */
  nodeArgs: string[];
  /** The agent's MALLOC_ARENA_MAX (0: glibc's default). */
  mallocArenaMax: number;
  /** Niceness of the measured processes (0: as this one). */
  nice: number;
  /** Share of the targets made tcp probes of a port that refuses (or flaps, see flapMs). */
  failing: number;
  /** The failing targets' port listens and refuses in turns this long (0: always refuses). */
  flapMs: number;
  /** How the failing targets fail: refused (tcp, at once) or timeout (every kind, in full). */
  failingMode: 'refused' | 'timeout';
  /** The agent's `defaults.confirm.count` (absent: its default). */
  confirmCount?: number;
  /** The agent's `defaults.adaptiveTimeout` (absent: its default). */
  adaptiveTimeout?: boolean;
  /** The agent's own RSS is read this often in the window, for its trend (a soak). */
  rssEveryS: number;
  /** Ours as deployed: its plan from a real collector (same targets), reporting to it. */
  managed: boolean;
  json?: string;
}

const usage = `Usage: node dist/bench/agent.js [options]

  --duration-s N         measured window per side (default 60)
  --warmup-s N           unmeasured seconds before it (default 5)
  --targets N            targets, a third each icmp/tcp/http (default 1000)
  --interval-ms N        probe interval of every target (default 1000)
  --hosts N              namespace hosts (default 4); half the targets are on them
  --scrape-interval-s N  how often the agent's /metrics is scraped (default 15)
  --icmp-count N         echo requests per icmp probe (default 1, as blackbox_exporter)
  --sides LIST           ours,blackbox,floor (default all three; floor is the same
                         traffic from bare sockets and fping, for scale)
  --kinds LIST           kinds the targets cycle through (default icmp,tcp,http)
  --node-args="ARGS"     node flags for the agent (default --max-semi-space-size=1
                         --v8-pool-size=1, the NODE_OPTIONS deploy/ sets; e.g.
                         --node-args="--cpu-prof")
  --malloc-arena-max=N   the agent's MALLOC_ARENA_MAX (default 2, as deploy/ sets it;
                         0 leaves glibc's default)
  --nice=N               run every measured process under \`nice -n N\` (default 0); a
                         negative N keeps a busy machine's other work off the figures
  --failing R            share of the targets (0..1) made tcp probes of a local port
                         that refuses: the price of failures and their confirmation
                         bursts (default 0)
  --failing-mode M       refused (default): the failing targets are tcp probes of a
                         port that refuses; timeout: they keep their kind and probe
                         an address on the test bridge nobody holds, so each waits out
                         its timeout (the costlier failure: socket, timer, confirmations)
  --flap-ms N            that port listens and refuses in turns of N ms, so each
                         failing target changes class (and bursts) every N ms
                         (default 0: it always refuses)
  --confirm-count N      the agent's defaults.confirm.count (0: no bursts)
  --adaptive-timeout B   the agent's defaults.adaptiveTimeout (true or false)
  --rss-every-s N        read the agent's own RSS every N s in the window (default 30) and
                         report its trend: the soak's "no growth after warm-up" (each
                         reading is also printed as it is taken when the window is 5
                         minutes or more)
  --managed              ours as it is deployed: a real \`faultline collector\` (not
                         measured) serves the agent the same targets as its plan (an
                         inventory component per http target, which brings its icmp and
                         tcp targets along) and takes its reports every second
  --json FILE            also write the raw figures as JSON

Needs root (namespaces, raw ICMP), fping, and ${exporterBin}.
`;

/** How the agent was started, as a sentence of the report ('' for node's defaults). */
function ranWith(s: Settings): string {
  const how = [
    ...(s.nodeArgs.length === 0 ? [] : [`\`node ${s.nodeArgs.join(' ')}\``]),
    ...(s.mallocArenaMax > 0 ? [`MALLOC_ARENA_MAX=${s.mallocArenaMax}`] : []),
  ];
  return how.length === 0 ? '' : ` The agent ran with ${how.join(' and ')}.`;
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      'duration-s': { type: 'string', default: '60' },
      'warmup-s': { type: 'string', default: '5' },
      targets: { type: 'string', default: '1000' },
      'interval-ms': { type: 'string', default: '1000' },
      hosts: { type: 'string', default: '4' },
      'scrape-interval-s': { type: 'string', default: '15' },
      'icmp-count': { type: 'string', default: '1' },
      sides: { type: 'string', default: 'ours,blackbox,floor' },
      kinds: { type: 'string', default: 'icmp,tcp,http' },
      // As deploy/ runs the agent (NODE_OPTIONS in the systemd unit, the DaemonSet, the chart).
      'node-args': { type: 'string', default: '--max-semi-space-size=1 --v8-pool-size=1' },
      // As deploy/ runs the agent (MALLOC_ARENA_MAX beside NODE_OPTIONS; deploy/k8s-checks.ts).
      'malloc-arena-max': { type: 'string', default: '2' },
      nice: { type: 'string', default: '0' },
      failing: { type: 'string', default: '0' },
      'flap-ms': { type: 'string', default: '0' },
      'failing-mode': { type: 'string', default: 'refused' },
      'confirm-count': { type: 'string' },
      'adaptive-timeout': { type: 'string' },
      'rss-every-s': { type: 'string', default: '30' },
      managed: { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const num = (name: keyof typeof values, min: number): number => {
    const v = Number(values[name]);
    if (!Number.isFinite(v) || v < min)
      throw new Error(`--${name}: expected a number >= ${min} (actual: ${String(values[name])})`);
    return v;
  };
  const sides = String(values.sides)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const s of sides)
    if (s !== 'ours' && s !== 'blackbox' && s !== 'floor')
      throw new Error(`--sides: expected some of ours, blackbox, floor (actual: ${s})`);
  const list = (v: string | boolean | undefined): string[] =>
    String(v)
      .split(/[\s,]+/)
      .filter((x) => x !== '');
  const chosen = list(values.kinds);
  for (const k of chosen)
    if (!(kinds as readonly string[]).includes(k))
      throw new Error(`--kinds: expected some of ${kinds.join(', ')} (actual: ${k})`);
  return {
    durationS: num('duration-s', 1),
    warmupS: num('warmup-s', 0),
    targets: Math.floor(num('targets', 3)),
    intervalMs: Math.floor(num('interval-ms', 100)),
    hosts: Math.floor(num('hosts', 1)),
    scrapeIntervalS: num('scrape-interval-s', 1),
    icmpCount: Math.floor(num('icmp-count', 1)),
    sides: sides as Side[],
    kinds: chosen as Kind[],
    nice: Math.trunc(num('nice', -20)),
    failing: Math.min(1, num('failing', 0)),
    flapMs: Math.floor(num('flap-ms', 0)),
    rssEveryS: num('rss-every-s', 1),
    managed: values.managed === true,
    failingMode: failingModeOf(String(values['failing-mode'])),
    ...(values['confirm-count'] === undefined
      ? {}
      : { confirmCount: Math.floor(num('confirm-count', 0)) }),
    ...(values['adaptive-timeout'] === undefined
      ? {}
      : { adaptiveTimeout: values['adaptive-timeout'] !== 'false' }),
    mallocArenaMax: Math.floor(num('malloc-arena-max', 0)),
    nodeArgs: String(values['node-args'])
      .split(/\s+/)
      .filter((x) => x !== ''),
    ...(values.json === undefined ? {} : { json: values.json }),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a measured process, under `nice -n` when asked (nice execs the command, so the PID
 * is the process itself, and its threads and children inherit the niceness).
 */
function spawnMeasured(
  res: Resources,
  s: Settings,
  cmd: string,
  args: readonly string[],
  opts: Parameters<Resources['spawn']>[2] = {},
): ReturnType<Resources['spawn']> {
  return s.nice === 0
    ? res.spawn(cmd, args, opts)
    : res.spawn('nice', ['-n', String(s.nice), cmd, ...args], opts);
}

// ---------------------------------------------------------------------------------------
// The target side

/** One probe target, as both sides see it. */
interface BenchTarget {
  readonly name: string;
  readonly kind: Kind;
  /** The agent's `address` and the exporter's `target`: host, host:port or URL. */
  readonly address: string;
  readonly place: string;
}

// Extra addresses per namespace host, so every icmp target is a different IP (neither
// side can then share an echo between targets) and connections spread over many tuples.
const addressesPerHost = 50;
const loopbackListeners = 8;

interface TargetSide {
  readonly net: TestNet;
  readonly targets: BenchTarget[];
}

async function startServers(
  res: Resources,
  hosts: readonly string[],
  ns?: string,
): Promise<ServeListener[]> {
  const child = res.spawn(process.execPath, [workerPath, 'serve', ...hosts], {
    ...(ns === undefined ? {} : { ns }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const err = stderrTail(child);
  try {
    return JSON.parse(
      (await new LineReader(child).next('READY ', 30_000)).slice(6),
    ) as ServeListener[];
  } catch (e) {
    throw new Error(
      `target servers did not start: ${e instanceof Error ? e.message : String(e)} ${err()}`,
    );
  }
}

/**
 * A port on 127.3.0.1 that refuses connections, or (flapMs > 0) listens and refuses in
 * turns of flapMs: the failing targets of `--failing`. Served by this process, which is
 * not measured.
 */
function failingModeOf(raw: string): Settings['failingMode'] {
  if (raw === 'refused' || raw === 'timeout') return raw;
  throw new Error(`--failing-mode: expected refused or timeout (actual: ${raw})`);
}

async function flappingPort(flapMs: number): Promise<number> {
  const port = await freePort();
  if (flapMs <= 0) return port;
  let server: Server | undefined;
  const open = (): void => {
    server = createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end();
    });
    server.on('error', () => undefined);
    server.listen(port, '127.3.0.1');
    server.unref(); // it lives as long as the bench and holds nothing up
  };
  open();
  const timer = setInterval(() => {
    if (server !== undefined) {
      server.close();
      server = undefined;
    } else open();
  }, flapMs);
  timer.unref();
  return port;
}

/**
 * Namespace hosts on a test bridge, each with `addressesPerHost` addresses and a TCP+HTTP
 * server, plus servers on a few 127.2.0.x addresses; targets alternate kind (icmp, tcp,
 * http) and, within a kind, loopback and namespace hosts.
 */
async function targetSide(
  res: Resources,
  s: Settings,
  onNet: (net: TestNet) => void,
): Promise<TargetSide> {
  const net = await TestNet.create();
  onNet(net);
  const hosts: { host: TestHost; ips: string[]; listener: ServeListener }[] = [];
  for (let h = 0; h < s.hosts; h++) {
    const host = await net.addHost(`h${h}`);
    const ips = [host.ip];
    const batch: string[] = [];
    for (let k = 0; k < addressesPerHost; k++) {
      const n = 10 + h * addressesPerHost + k;
      if (n > 250) break;
      const ip = net.address(n);
      ips.push(ip);
      batch.push(`addr add ${ip}/24 dev ${host.ifname}`);
    }
    const file = join(tmpdir(), `${net.prefix}-h${h}.ip`);
    writeFileSync(file, `${batch.join('\n')}\n`);
    try {
      await sh('ip', ['-n', host.ns, '-batch', file]);
    } finally {
      rmSync(file, { force: true });
    }
    // Inside its own namespace 0.0.0.0 is only that host's addresses.
    const [listener] = await startServers(res, ['0.0.0.0'], host.ns);
    if (listener === undefined) throw new Error(`no listener on namespace host h${h}`);
    hosts.push({ host, ips, listener });
  }
  const loopHosts = Array.from({ length: loopbackListeners }, (_, i) => `127.2.0.${i + 1}`);
  const loop = await startServers(res, loopHosts);

  const targets: BenchTarget[] = [];
  // Per kind: targets so far on loopback and on namespace hosts.
  const counters: Record<Kind, { loop: number; ns: number }> = {
    icmp: { loop: 0, ns: 0 },
    tcp: { loop: 0, ns: 0 },
    http: { loop: 0, ns: 0 },
  };
  const nsIps = hosts.flatMap((h) => h.ips.map((ip) => ({ ip, h })));
  for (let i = 0; i < s.targets; i++) {
    const kind = s.kinds[i % s.kinds.length] as Kind;
    const onNs = Math.floor(i / s.kinds.length) % 2 === 1;
    const j = onNs ? counters[kind].ns++ : counters[kind].loop++;
    let address: string;
    let place: string;
    if (!onNs) {
      place = 'loopback';
      if (kind === 'icmp') address = `127.1.${(j / 250) | 0}.${(j % 250) + 1}`;
      else {
        const l = loop[j % loop.length] as ServeListener;
        address = kind === 'tcp' ? `${l.host}:${l.tcpPort}` : `http://${l.host}:${l.httpPort}/`;
      }
    } else {
      const { ip, h } = nsIps[j % nsIps.length] as (typeof nsIps)[number];
      place = h.host.name;
      address =
        kind === 'icmp'
          ? ip
          : kind === 'tcp'
            ? `${ip}:${h.listener.tcpPort}`
            : `http://${ip}:${h.listener.httpPort}/`;
    }
    targets.push({ name: `${kind}-${place}-${j}`, kind, address, place });
  }
  if (s.failing > 0 && s.failingMode === 'timeout') {
    const every = Math.max(1, Math.round(1 / s.failing));
    // Addresses on the bridge's /24 above every host's (10 + 4 × 50 at most): no one answers
    // ARP. Each target its own address and port (the floor keys its targets by address).
    const silent = Array.from({ length: 45 }, (_, k) => net.address(210 + k));
    let echoes = 0;
    for (let i = 0; i < targets.length; i += every) {
      const t = targets[i]!;
      if (t.kind === 'icmp' && echoes === silent.length)
        throw new Error(`--failing-mode timeout: at most ${silent.length} icmp targets fail`);
      const ip = t.kind === 'icmp' ? silent[echoes++]! : silent[i % silent.length]!;
      const port = 20_000 + i;
      const address =
        t.kind === 'icmp' ? ip : t.kind === 'tcp' ? `${ip}:${port}` : `http://${ip}:${port}/`;
      targets[i] = { name: `${t.kind}-silent-${i}`, kind: t.kind, address, place: 'failing' };
    }
  } else if (s.failing > 0) {
    const port = await flappingPort(s.flapMs);
    const every = Math.max(1, Math.round(1 / s.failing));
    for (let i = 0; i < targets.length; i += every) {
      targets[i] = {
        name: `tcp-failing-${i}`,
        kind: 'tcp',
        address: `127.3.0.1:${port}`,
        place: 'failing',
      };
    }
  }
  return { net, targets };
}

// ---------------------------------------------------------------------------------------
// Measurements

/** Peak RSS over time of a set of processes, sampled; /proc readings only. */
class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  /** Highest sum seen of the descendants' RSS (bytes). */
  peakChildrenBytes = 0;

  private readonly parentComm: string;

  constructor(private readonly pid: number) {
    this.parentComm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  }

  start(everyMs = 100): void {
    this.timer = setInterval(() => {
      let sum = 0;
      for (const d of descendants(this.pid)) {
        try {
          // A child between fork and exec still shows the parent's pages: not fping yet.
          if (readFileSync(`/proc/${d.pid}/comm`, 'utf8').trim() === this.parentComm) continue;
          sum += rssBytes(d.pid);
        } catch {
          /* exited meanwhile */
        }
      }
      if (sum > this.peakChildrenBytes) this.peakChildrenBytes = sum;
    }, everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** VmHWM: the process's own peak resident set, in bytes. */
function peakRssBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** The few figures the bench reads from the agent's /metrics. */
interface AgentCounters {
  completed: number;
  started: number;
  skipped: number;
  /** Results per failure class. */
  classes: Record<string, number>;
  /** Schedule lag histogram: cumulative count per `le`. */
  lag: Map<number, number>;
}

function labelValue(line: string, name: string): string | undefined {
  const at = line.indexOf(`${name}="`);
  if (at < 0) return undefined;
  const from = at + name.length + 2;
  return line.slice(from, line.indexOf('"', from));
}

function sampleValue(line: string): number {
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

function parseAgentMetrics(text: string): AgentCounters {
  const c: AgentCounters = { completed: 0, started: 0, skipped: 0, classes: {}, lag: new Map() };
  let from = 0;
  while (from < text.length) {
    let to = text.indexOf('\n', from);
    if (to < 0) to = text.length;
    const line = text.slice(from, to);
    from = to + 1;
    if (line.startsWith('faultline_agent_probes_total{')) {
      const result = labelValue(line, 'result');
      if (result === 'completed') c.completed = sampleValue(line);
      else if (result === 'started') c.started = sampleValue(line);
      else if (result === 'skipped') c.skipped = sampleValue(line);
    } else if (line.startsWith('faultline_probe_results_total{')) {
      const cls = labelValue(line, 'class') ?? '?';
      c.classes[cls] = (c.classes[cls] ?? 0) + sampleValue(line);
    } else if (line.startsWith('faultline_agent_schedule_lag_seconds_bucket{')) {
      const le = labelValue(line, 'le') ?? '+Inf';
      c.lag.set(le === '+Inf' ? Infinity : Number(le), sampleValue(line));
    }
  }
  return c;
}

/**
 * Quantile `q` of the lag observed between two scrapes, as Prometheus' histogram_quantile
 * computes it from the bucket increases: linear inside the bucket that holds the rank.
 */
function windowLagQuantileS(a: AgentCounters, b: AgentCounters, q: number): number {
  const les = [...b.lag.keys()].sort((x, y) => x - y);
  const inc = (le: number): number => (b.lag.get(le) ?? 0) - (a.lag.get(le) ?? 0);
  const total = inc(Infinity);
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let lowerLe = 0;
  let below = 0;
  for (const le of les) {
    const upTo = inc(le);
    if (upTo >= rank) {
      if (le === Infinity) return lowerLe;
      return lowerLe + ((le - lowerLe) * (rank - below)) / Math.max(1, upTo - below);
    }
    lowerLe = le;
    below = upTo;
  }
  return lowerLe;
}

/** One side's figures over the measured window. */
interface SideResult {
  readonly side: Side;
  readonly label: string;
  readonly windowMs: number;
  readonly cpuMs: number;
  /** Shares of `cpuMs` (blackbox: exporter and client). */
  readonly cpuParts: Record<string, number>;
  /** Peak RSS the row reports: agent + fping, or the exporter. */
  readonly peakRssMb: number;
  readonly rssParts: Record<string, number>;
  /** p99 lag over the window (ours: from the exported histogram; blackbox: client lateness). */
  readonly lagP99Ms: number;
  /** Ours: the scheduler's exact p99 since the agent started, warm-up included. */
  readonly lagP99SinceStartMs?: number;
  readonly lagNote: string;
  readonly probes: number;
  readonly failed: number;
  readonly failedBy: Record<string, number>;
  readonly notes: string[];
  /** Ours: the agent's own RSS (MB) read every `rssEveryS` through the window. */
  readonly rssMb?: readonly number[];
  readonly error?: string;
}

const mb = (bytes: number): number => bytes / (1024 * 1024);

/** The notes' line on the agent's RSS through the window. */
function rssTrendNote(rssMb: readonly number[], everyS: number): string {
  if (rssMb.length === 0) return 'agent RSS: no reading';
  const t = rssTrend(rssMb, everyS);
  return `agent RSS through the window (${rssMb.length} readings, every ${everyS} s): ${fmt(rssMb[0]!, 1)} → ${fmt(rssMb.at(-1)!, 1)} MB, min ${fmt(Math.min(...rssMb), 1)}, max ${fmt(Math.max(...rssMb), 1)}; least-squares slope ${fmt(t.slopeMbPerHour, 2)} MB/h; last third less first third ${fmt(t.lastLessFirstThirdMb, 2)} MB`;
}

/** The sum of a metric's samples in Prometheus text (every label set). */
function sumPlain(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------
// Ours: the real agent process

/** A real collector (not measured) whose plan gives the agent `targets`; its URL and token. */
async function startPlanCollector(
  res: Resources,
  s: Settings,
  dir: string,
  targets: readonly BenchTarget[],
): Promise<{ url: string; token: string }> {
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  const config = planCollectorConfig(s, targets, {
    listen: `127.0.0.1:${port}`,
    dataDir: join(dir, 'collector-data'),
    tokens: [{ name: 'bench', token }],
  });
  const file = join(dir, 'collector.yaml');
  writeFileSync(file, stringify(config));
  await startCollector(res, cliPath, file);
  return { url: `http://127.0.0.1:${port}`, token };
}

async function runOurs(
  res: Resources,
  s: Settings,
  dir: string,
  targets: readonly BenchTarget[],
): Promise<SideResult> {
  const port = await freePort();
  const standalone = {
    defaults: {
      interval: `${s.intervalMs}ms`,
      options: { icmp: { count: s.icmpCount } },
      ...(s.confirmCount === undefined ? {} : { confirm: { count: s.confirmCount } }),
      ...(s.adaptiveTimeout === undefined ? {} : { adaptiveTimeout: s.adaptiveTimeout }),
    },
    targets: targets.map((t) => ({
      name: t.name,
      kind: t.kind,
      address: t.address,
      labels: { place: t.place },
    })),
  };
  const managed = s.managed ? await startPlanCollector(res, s, dir, targets) : undefined;
  const config = {
    agent: { name: 'bench', labels: { zone: 'bench' } },
    metrics: { listen: `127.0.0.1:${port}` },
    ...(managed === undefined
      ? standalone
      : {
          collector: { url: managed.url, token: managed.token, stateDir: join(dir, 'agent-state') },
        }),
  };
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, stringify(config));
  const base = `http://127.0.0.1:${port}`;
  const child = spawnMeasured(
    res,
    s,
    process.execPath,
    [...s.nodeArgs, cliPath, 'agent', '--config', file],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        FAULTLINE_LOG_LEVEL: process.env.FAULTLINE_LOG_LEVEL ?? 'info',
        ...(s.mallocArenaMax > 0 ? { MALLOC_ARENA_MAX: String(s.mallocArenaMax) } : {}),
      },
    },
  );
  const err = stderrTail(child, 8000);
  const pid = child.pid as number;
  let sampler: RssSampler | undefined;
  try {
    let planTargets = 0;
    await pollUntil(
      managed === undefined
        ? 'the agent to answer /healthz'
        : 'the agent to probe the plan of its collector',
      async () => {
        if (child.exitCode !== null) throw new Error(`agent exited: ${err()}`);
        const r = await fetch(`${base}/healthz`);
        if (!r.ok) return false;
        planTargets = ((await r.json()) as { targets?: number }).targets ?? 0;
        return managed === undefined || planTargets > 0;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    // Made now, after `nice` (if any) has exec'd node: it tells fping from a forked agent by name.
    sampler = new RssSampler(pid);
    sampler.start();
    await sleep(s.warmupS * 1000);

    // Timed from the request to the answer's last byte, as a scraper sees it (curl's
    // time_total): node:http and raw chunks, since fetch's own decoding of a 0.8 MB page
    // took ~30 ms of this process's time on top.
    const scrape = (): Promise<{ text: string; ms: number }> =>
      new Promise((resolve, reject) => {
        const t = performance.now();
        httpGet(`${base}/metrics`, (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.once('error', reject);
          r.once('end', () => {
            const ms = performance.now() - t;
            resolve({ text: Buffer.concat(chunks).toString(), ms });
          });
        }).once('error', reject);
      });
    // Prometheus' scrapes fall inside the window: every scrape-interval from its start.
    const cpu0 = treeCpuMs(pid);
    const t0 = performance.now();
    const scrapes: { bytes: number; ms: number }[] = [];
    const first = await scrape();
    scrapes.push({ bytes: first.text.length, ms: first.ms });
    const c0 = parseAgentMetrics(first.text);
    const endAt = t0 + s.durationS * 1000;
    // The agent's own RSS through the window, for its trend (a soak's "no growth").
    const rssMb: number[] = [];
    const readRss = (): void => {
      try {
        rssMb.push(mb(rssBytes(pid)));
      } catch {
        return; // exited: the scrape loop reports it
      }
      if (s.durationS >= 300)
        process.stderr.write(
          `  agent RSS ${fmt(rssMb.at(-1) ?? Number.NaN, 1)} MB at ${Math.round((performance.now() - t0) / 1000)} s\n`,
        );
    };
    readRss();
    const rssTimer = setInterval(readRss, s.rssEveryS * 1000);
    for (let next = t0 + s.scrapeIntervalS * 1000; next < endAt; next += s.scrapeIntervalS * 1000) {
      await sleep(next - performance.now());
      const r = await scrape();
      scrapes.push({ bytes: r.text.length, ms: r.ms });
      if (child.exitCode !== null) throw new Error(`agent exited: ${err()}`);
    }
    await sleep(endAt - performance.now());
    const cpu1 = treeCpuMs(pid);
    const t1 = performance.now();
    clearInterval(rssTimer);
    readRss();
    const last = await scrape();
    const c1 = parseAgentMetrics(last.text);
    const health = (await (await fetch(`${base}/healthz`)).json()) as {
      lagP99Ms?: number;
      inFlight?: number;
    };
    const agentHwm = peakRssBytes(pid);
    sampler.stop();

    const windowMs = t1 - t0;
    const confirmDelta = (what: string): number =>
      sumPlain(last.text, `faultline_agent_confirm_${what}_total`) -
      sumPlain(first.text, `faultline_agent_confirm_${what}_total`);
    const failedBy: Record<string, number> = {};
    let failed = 0;
    for (const [cls, n] of Object.entries(c1.classes)) {
      const d = n - (c0.classes[cls] ?? 0);
      if (cls !== 'ok' && d > 0) {
        failedBy[cls] = d;
        failed += d;
      }
    }
    const completed = c1.completed - c0.completed;
    const windowP99S = windowLagQuantileS(c0, c1, 0.99);
    const avgScrapeMb = mb(scrapes.reduce((a, x) => a + x.bytes, 0) / scrapes.length);
    const avgScrapeMs = scrapes.reduce((a, x) => a + x.ms, 0) / scrapes.length;
    return {
      side: 'ours',
      label: 'Faultline agent (+ fping children)',
      windowMs,
      cpuMs: cpu1 - cpu0,
      cpuParts: {},
      peakRssMb: mb(agentHwm + sampler.peakChildrenBytes),
      rssParts: { agent: mb(agentHwm), fping: mb(sampler.peakChildrenBytes) },
      lagP99Ms: windowP99S * 1000,
      lagP99SinceStartMs: health.lagP99Ms ?? Number.NaN,
      lagNote: `histogram_quantile(0.99) over the window of the agent's own faultline_agent_schedule_lag_seconds; the scheduler's exact p99 since start, start-up and warm-up included, is ${fmt(health.lagP99Ms ?? Number.NaN, 0)} ms`,
      probes: (completed * 1000) / windowMs,
      failed,
      failedBy,
      notes: [
        `${scrapes.length} scrapes of /metrics in the window: ${fmt(avgScrapeMb, 2)} MB each, answered in ${fmt(avgScrapeMs, 0)} ms on average`,
        `skipped rounds (previous still running): ${c1.skipped - c0.skipped}`,
        `confirmation bursts in the window: ${confirmDelta('bursts')}, their re-probes ${confirmDelta('probes')}, changes left unconfirmed by the budget ${confirmDelta('skipped')}`,
        rssTrendNote(rssMb, s.rssEveryS),
        ...(managed === undefined
          ? []
          : [
              `managed: ${planTargets} targets from the plan of a real collector (not measured), reporting to it every second`,
            ]),
      ],
      rssMb,
    };
  } catch (e) {
    sampler?.stop();
    return failedSide('ours', e, err());
  } finally {
    await res.stop(child, 'SIGTERM', 10_000);
  }
}

// ---------------------------------------------------------------------------------------
// Peer: blackbox_exporter and a client scraping it like Prometheus would

async function runBlackbox(
  res: Resources,
  s: Settings,
  dir: string,
  targets: readonly BenchTarget[],
): Promise<SideResult> {
  // The agent's default timeout: 90% of the interval.
  const timeoutS = Math.round(s.intervalMs * 0.9) / 1000;
  const configFile = join(dir, 'blackbox.yml');
  writeFileSync(configFile, blackboxConfig(timeoutS * 1000));
  const scrapeFile = join(dir, 'scrape-targets.json');
  const list: ScrapeTarget[] = targets.map((t) => ({
    module: blackboxModule[t.kind],
    target: t.address,
  }));
  writeFileSync(scrapeFile, JSON.stringify(list));

  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const exporter = spawnMeasured(
    res,
    s,
    exporterBin,
    [`--config.file=${configFile}`, `--web.listen-address=${listen}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exporterErr = stderrTail(exporter, 20_000);
  let client: ReturnType<Resources['spawn']> | undefined;
  let clientErr = (): string => '';
  const samplers: RssSampler[] = [];
  try {
    await pollUntil(
      'blackbox_exporter to listen',
      () => {
        if (exporter.exitCode !== null) throw new Error(`exited: ${exporterErr()}`);
        return exporterErr().includes('Listening on');
      },
      { timeoutMs: 15_000 },
    );
    const exporterPid = exporter.pid as number;
    client = spawnMeasured(res, s, process.execPath, [
      workerPath,
      'scrape',
      '--exporter',
      `http://${listen}`,
      '--targets',
      scrapeFile,
      '--interval-ms',
      String(s.intervalMs),
      // Prometheus sends its scrape timeout; a 1 s scrape interval allows at most 1 s.
      '--timeout-s',
      String(s.intervalMs / 1000),
      // Prometheus' scrape loops do not share a small pool: a slow answer holds up no other target.
      '--connections',
      String(targets.length),
    ]);
    clientErr = stderrTail(client);
    const clientPid = client.pid as number;
    const out = new LineReader(client);
    await out.next('READY', 30_000);
    const exporterSampler = new RssSampler(exporterPid);
    exporterSampler.start();
    samplers.push(exporterSampler);
    await sleep(s.warmupS * 1000);

    client.stdin?.write('mark\n');
    await out.next('MARKED', 10_000);
    const exp0 = treeCpuMs(exporterPid);
    const cli0 = treeCpuMs(clientPid);
    const t0 = performance.now();
    await sleep(s.durationS * 1000);
    const exp1 = treeCpuMs(exporterPid);
    const cli1 = treeCpuMs(clientPid);
    const t1 = performance.now();
    client.stdin?.write('report\n');
    const report = JSON.parse((await out.next('REPORT ', 10_000)).slice(7)) as ScrapeReport;
    const exporterHwm = peakRssBytes(exporterPid);
    const clientHwm = peakRssBytes(clientPid);
    const windowMs = t1 - t0;
    return {
      side: 'blackbox',
      label: 'blackbox_exporter + scraping client¹',
      windowMs,
      cpuMs: exp1 - exp0 + (cli1 - cli0),
      cpuParts: { exporter: exp1 - exp0, client: cli1 - cli0 },
      peakRssMb: mb(exporterHwm + exporterSampler.peakChildrenBytes),
      rssParts: { exporter: mb(exporterHwm), client: mb(clientHwm) },
      lagP99Ms: report.lateP99Ms,
      lagNote: "client-side: how late the scraper's requests went out against their planned time",
      probes: (report.completed * 1000) / report.elapsedMs,
      failed: report.failed,
      failedBy: report.failed > 0 ? { failed: report.failed } : {},
      notes: [
        `requests sent ${report.sent}, answered ${report.completed}, skipped ticks ${report.skipped}`,
        ...(report.firstError === undefined ? [] : [`first failure: ${report.firstError}`]),
      ],
    };
  } catch (e) {
    return failedSide('blackbox', e, `${exporterErr().slice(-1000)} ${clientErr()}`);
  } finally {
    for (const sm of samplers) sm.stop();
    if (client !== undefined) {
      client.stdin?.end();
      await res.stop(client, 'SIGTERM', 5000);
    }
    await res.stop(exporter, 'SIGTERM', 5000);
  }
}

// ---------------------------------------------------------------------------------------
// Floor: the same traffic with nothing around it, for scale

async function runFloor(
  res: Resources,
  s: Settings,
  dir: string,
  targets: readonly BenchTarget[],
): Promise<SideResult> {
  const file = join(dir, 'floor-targets.json');
  const list: FloorTarget[] = targets.map((t) => ({ kind: t.kind, address: t.address }));
  writeFileSync(file, JSON.stringify(list));
  const child = spawnMeasured(res, s, process.execPath, [
    workerPath,
    'floor',
    '--targets',
    file,
    '--interval-ms',
    String(s.intervalMs),
    '--timeout-ms',
    String(Math.round(s.intervalMs * 0.9)),
  ]);
  const err = stderrTail(child);
  const pid = child.pid as number;
  let sampler: RssSampler | undefined;
  try {
    const out = new LineReader(child);
    await out.next('READY', 30_000);
    sampler = new RssSampler(pid);
    sampler.start();
    await sleep(s.warmupS * 1000);
    child.stdin?.write('mark\n');
    await out.next('MARKED', 10_000);
    const cpu0 = treeCpuMs(pid);
    const t0 = performance.now();
    await sleep(s.durationS * 1000);
    const cpu1 = treeCpuMs(pid);
    const t1 = performance.now();
    child.stdin?.write('report\n');
    const report = JSON.parse((await out.next('REPORT ', 10_000)).slice(7)) as ScrapeReport;
    const hwm = peakRssBytes(pid);
    sampler.stop();
    return {
      side: 'floor',
      label: 'floor: bare sockets + fping²',
      windowMs: t1 - t0,
      cpuMs: cpu1 - cpu0,
      cpuParts: {},
      peakRssMb: mb(hwm + sampler.peakChildrenBytes),
      rssParts: { node: mb(hwm), fping: mb(sampler.peakChildrenBytes) },
      lagP99Ms: report.lateP99Ms,
      lagNote: 'lateness of its own timers against the planned time',
      probes: (report.completed * 1000) / report.elapsedMs,
      failed: report.failed,
      failedBy: report.failed > 0 ? { failed: report.failed } : {},
      notes: [
        `probes started ${report.sent}, finished ${report.completed}, skipped ticks ${report.skipped}`,
        ...(report.firstError === undefined ? [] : [`first failure: ${report.firstError}`]),
      ],
    };
  } catch (e) {
    sampler?.stop();
    return failedSide('floor', e, err());
  } finally {
    child.stdin?.end();
    await res.stop(child, 'SIGTERM', 5000);
  }
}

function failedSide(side: Side, e: unknown, tail: string): SideResult {
  return {
    side,
    label: side,
    windowMs: Number.NaN,
    cpuMs: Number.NaN,
    cpuParts: {},
    peakRssMb: Number.NaN,
    rssParts: {},
    lagP99Ms: Number.NaN,
    lagNote: '',
    probes: Number.NaN,
    failed: Number.NaN,
    failedBy: {},
    notes: [],
    error: `${e instanceof Error ? e.message : String(e)}${tail.trim() === '' ? '' : ` — ${tail.trim().split('\n').slice(-3).join(' | ')}`}`,
  };
}

// ---------------------------------------------------------------------------------------
// Report

function fmt(v: number, digits: number): string {
  if (v === Infinity) return '+Inf';
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

const cpuPercent = (r: SideResult): number => (r.cpuMs / r.windowMs) * 100;

function report(
  s: Settings,
  results: readonly SideResult[],
  header: { load0: number[]; load1: number[]; exporterVersion: string; fpingVersion: string },
  targets: readonly BenchTarget[],
): string {
  const out: string[] = [];
  const count = (pred: (t: BenchTarget) => boolean): number => targets.filter(pred).length;
  out.push('## Agent benchmark: Faultline agent vs blackbox_exporter');
  out.push('');
  out.push(
    `${new Date().toISOString()} · Linux ${release()} · ${cpus().length} × ${cpus()[0]?.model ?? '?'} · Node ${process.version} · ${header.exporterVersion} · ${header.fpingVersion}`,
  );
  out.push(
    `Load average at start ${header.load0.map((l) => l.toFixed(2)).join(' ')}, at end ${header.load1.map((l) => l.toFixed(2)).join(' ')}.`,
  );
  out.push('');
  out.push(
    `${targets.length} targets at ${s.intervalMs} ms: ${kinds.map((k) => `${count((t) => t.kind === k)} ${k}`).join(', ')}; ` +
      `${count((t) => t.place === 'loopback')} on loopback, ${count((t) => t.place !== 'loopback')} on ${s.hosts} namespace hosts. ` +
      `icmp sends ${s.icmpCount} echo request${s.icmpCount === 1 ? '' : 's'} per probe. ` +
      `Measured for ${s.durationS} s after ${s.warmupS} s of warm-up; the agent's /metrics is scraped every ${s.scrapeIntervalS} s within the window.` +
      (s.nice === 0 ? '' : ` Every measured process ran under \`nice -n ${s.nice}\`.`) +
      ranWith(s),
  );
  out.push('');
  out.push(
    '| side | CPU % of one core | peak RSS MB | p99 lag ms | probes/s achieved | failed probes |',
  );
  out.push('|---|---:|---:|---:|---:|---:|');
  for (const r of results) {
    if (r.error !== undefined) {
      out.push(`| ${r.label} | error: ${r.error.replace(/\|/g, '\\|')} | | | | |`);
      continue;
    }
    const parts = Object.entries(r.cpuParts);
    const cpu =
      fmt(cpuPercent(r), 2) +
      (parts.length > 0
        ? ` (${parts.map(([k, v]) => `${k} ${fmt((v / r.windowMs) * 100, 2)}`).join(' + ')})`
        : '');
    const rss =
      r.side === 'ours'
        ? `${fmt(r.peakRssMb, 1)} (agent ${fmt(r.rssParts.agent ?? NaN, 1)} + fping ${fmt(r.rssParts.fping ?? NaN, 1)})`
        : r.side === 'floor'
          ? `${fmt(r.peakRssMb, 1)} (node ${fmt(r.rssParts.node ?? NaN, 1)} + fping ${fmt(r.rssParts.fping ?? NaN, 1)})`
          : `${fmt(r.peakRssMb, 1)} (exporter; client ${fmt(r.rssParts.client ?? NaN, 1)})`;
    const lag =
      r.side === 'ours'
        ? fmt(r.lagP99Ms, 1)
        : r.side === 'floor'
          ? `${fmt(r.lagP99Ms, 1)} (timer lateness)`
          : `${fmt(r.lagP99Ms, 1)} (client lateness)`;
    const failedBy = Object.entries(r.failedBy);
    const failed =
      `${r.failed}` +
      (failedBy.length > 0 && r.side === 'ours'
        ? ` (${failedBy.map(([k, v]) => `${k} ${v}`).join(', ')})`
        : '');
    out.push(`| ${r.label} | ${cpu} | ${rss} | ${lag} | ${fmt(r.probes, 1)} | ${failed} |`);
  }
  out.push('');
  const ours = results.find((r) => r.side === 'ours' && r.error === undefined);
  const bb = results.find((r) => r.side === 'blackbox' && r.error === undefined);
  const fl = results.find((r) => r.side === 'floor' && r.error === undefined);
  if (ours !== undefined && bb !== undefined) {
    const ratio = cpuPercent(ours) / cpuPercent(bb);
    const vsExporter = ours.cpuMs / (bb.cpuParts.exporter ?? NaN);
    out.push(
      `**CPU ours / blackbox = ${fmt(ratio, 3)}** (against the exporter alone, without the scraping client: ${fmt(vsExporter, 3)}; per probe achieved: ${fmt(ratio * (bb.probes / ours.probes), 3)}).`,
    );
    out.push('');
  }
  if (ours !== undefined && fl !== undefined) {
    out.push(
      `CPU ours / floor = ${fmt(cpuPercent(ours) / cpuPercent(fl), 2)}: what the agent adds to the bare cost of the same traffic.`,
    );
    out.push('');
  }
  if (ours !== undefined) {
    const mark = (ok: boolean): string => (ok ? '✅' : '❌');
    const cpu = cpuPercent(ours);
    out.push('Goals (issue 3):');
    out.push('');
    out.push(
      `- ${mark(cpu < goals.cpuPercent)} CPU ${fmt(cpu, 2)} % < ${goals.cpuPercent} % of one core`,
    );
    out.push(
      `- ${mark(ours.peakRssMb < goals.rssMb)} peak RSS ${fmt(ours.peakRssMb, 1)} MB < ${goals.rssMb} MB`,
    );
    out.push(
      `- ${mark(ours.lagP99Ms < goals.lagP99Ms)} p99 schedule lag ${fmt(ours.lagP99Ms, 1)} ms < ${goals.lagP99Ms} ms`,
    );
    if (bb !== undefined)
      out.push(
        `- ${mark(cpu < cpuPercent(bb))} less CPU than blackbox_exporter + scraper (${fmt(cpuPercent(bb), 2)} %)`,
      );
    out.push('');
  }
  out.push(
    '¹ The scraping client stands in for Prometheus: one `GET /probe` per target per interval, each target at its own phase, a keep-alive connection per target; it reads each answer and checks `probe_success`. Its CPU is counted with the exporter, as Prometheus would spend it.',
  );
  if (fl !== undefined) {
    out.push('');
    out.push(
      '² The floor is not a competitor: the same targets at the same phases from one Node process doing only the network work (tcp connect + reset; http connect, one GET, first bytes, reset; icmp: one `fping -C 1` per 100 ms of due targets), no timeouts beyond a socket timer, no results, no metrics. On loopback and veth the kernel work of both ends of every connection is charged to the prober, here as for the other rows.',
    );
  }
  out.push('');
  for (const r of results) {
    if (r.error !== undefined) continue;
    out.push(`- ${r.label}: p99 lag is the ${r.lagNote}; ${r.notes.join('; ')}.`);
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const s = settings();
  if (process.getuid?.() !== 0) {
    process.stderr.write(`bench/agent needs root (namespaces, raw ICMP sockets).\n\n${usage}`);
    return 2;
  }
  if (s.sides.includes('blackbox')) accessSync(exporterBin, constants.X_OK);
  const fpingVersion = (await sh('fping', ['-v']).catch((e: unknown) => String(e))).trim();
  const exporterVersion = (
    (await sh(exporterBin, ['--version']).catch(() => '')).split('\n')[0] ?? ''
  ).trim();

  const res = new Resources();
  let net: TestNet | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'fl-bench-agent-'));
  let cleaned: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaned ??= (async () => {
      await res.cleanup();
      await net?.destroy();
      rmSync(dir, { recursive: true, force: true });
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up…\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }

  try {
    const load0 = loadavg();
    process.stderr.write(`setting up ${s.hosts} namespace hosts and target servers…\n`);
    const side = await targetSide(res, s, (n) => (net = n));
    const results: SideResult[] = [];
    for (const which of s.sides) {
      process.stderr.write(
        `${which}: ${s.targets} targets, ${s.warmupS} s warm-up + ${s.durationS} s measured…\n`,
      );
      results.push(
        which === 'ours'
          ? await runOurs(res, s, dir, side.targets)
          : which === 'blackbox'
            ? await runBlackbox(res, s, dir, side.targets)
            : await runFloor(res, s, dir, side.targets),
      );
    }
    const text = report(
      s,
      results,
      { load0, load1: loadavg(), exporterVersion, fpingVersion },
      side.targets,
    );
    process.stdout.write(text);
    if (s.json !== undefined)
      writeFileSync(s.json, `${JSON.stringify({ settings: s, results }, null, 2)}\n`);
    return results.some((r) => r.error !== undefined) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

runBench('bench/agent', main);
