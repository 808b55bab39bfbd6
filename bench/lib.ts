import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { sh } from '../lab/netns.js';
import { pollUntil } from '../lab/poll-until.js';

/**
 * Measurement and process plumbing for the benchmarks: CPU time of a process tree from
 * /proc, RSS and open descriptors, TIME_WAIT counts, a veth pair between two namespaces,
 * and a cleanup list that ends every process and namespace a bench made, also on SIGINT.
 */

// One implementation of each for tests and benches.
export { pollUntil, sh };

// ---------------------------------------------------------------------------------------
// CPU, memory, descriptors

let clockTicksPerSecond: number | undefined;

/** The kernel's USER_HZ: the unit of utime/stime in /proc/<pid>/stat. */
export function clockTicks(): number {
  if (clockTicksPerSecond === undefined) {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    clockTicksPerSecond = Number.isFinite(v) && v > 0 ? v : 100;
  }
  return clockTicksPerSecond;
}

interface StatFields {
  readonly ppid: number;
  /** Start time since boot, in ticks: tells a process from a later one reusing its PID. */
  readonly startTicks: number;
  /** utime + stime, in ticks. */
  readonly selfTicks: number;
  /** cutime + cstime: children already waited for, in ticks. */
  readonly reapedTicks: number;
}

function readStat(pid: number): StatFields | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may itself contain spaces or parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state) of proc(5), so field N is fields[N - 3].
  const f = (n: number): number => Number(fields[n - 3]);
  return { ppid: f(4), selfTicks: f(14) + f(15), reapedTicks: f(16) + f(17), startTicks: f(22) };
}

function allStats(): { stats: Map<number, StatFields>; children: Map<number, number[]> } {
  const children = new Map<number, number[]>();
  const stats = new Map<number, StatFields>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = Number(name);
    const s = readStat(p);
    if (s === undefined) continue;
    stats.set(p, s);
    const list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, [p]);
    else list.push(p);
  }
  return { stats, children };
}

/** Every live descendant of `pid` with its start time (for PID-reuse-safe killing). */
export function descendants(pid: number): { pid: number; startTicks: number }[] {
  const { stats, children } = allStats();
  const found: { pid: number; startTicks: number }[] = [];
  const stack = [...(children.get(pid) ?? [])];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    const s = stats.get(p);
    if (s === undefined) continue;
    found.push({ pid: p, startTicks: s.startTicks });
    stack.push(...(children.get(p) ?? []));
  }
  return found;
}

/**
 * CPU milliseconds (user + system) used so far by `pid` and every descendant: live ones
 * from their own counters, exited ones through the cutime/cstime of the parent that
 * reaped them. Counters only grow, so a before/after difference is the work in between.
 */
export function treeCpuMs(pid: number): number {
  const { stats, children } = allStats();
  let ticks = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    const s = stats.get(p);
    if (s === undefined) continue;
    ticks += s.selfTicks + s.reapedTicks;
    stack.push(...(children.get(p) ?? []));
  }
  return (ticks * 1000) / clockTicks();
}

/** Resident set size of one process, in bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Open file descriptors (sockets included) of one process. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** TCP sockets in TIME_WAIT with `port` at either end, in the namespace of this process. */
export async function timeWaitCount(port: number): Promise<number> {
  const out = await sh('ss', [
    '-Htan',
    'state',
    'time-wait',
    `( sport = :${port} or dport = :${port} )`,
  ]);
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

/** The median of a list of numbers (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** A TCP port that was free on 127.0.0.1 a moment ago (of this process's namespace). */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------
// Processes and cleanup

/** Every process and namespace a bench started, ended by `cleanup()` (also on SIGINT). */
export class Resources {
  private static readonly live = new Set<Resources>();
  private readonly procs = new Set<ChildProcess>();
  private readonly namespaces: string[] = [];
  private cleaned: Promise<void> | undefined;

  constructor() {
    Resources.live.add(this);
  }

  /** Starts a process (optionally inside a namespace) and tracks it by PID. */
  spawn(
    cmd: string,
    args: readonly string[],
    opts: SpawnOptions & { ns?: string } = {},
  ): ChildProcess {
    const { ns, ...spawnOpts } = opts;
    // `ip netns exec` execs the command, so the PID we get is the process itself.
    const child =
      ns === undefined
        ? spawn(cmd, args, { stdio: 'pipe', ...spawnOpts })
        : spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', ...spawnOpts });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    child.once('error', () => this.procs.delete(child));
    return child;
  }

  /** Records a namespace to delete at cleanup. */
  addNamespace(ns: string): void {
    this.namespaces.push(ns);
  }

  /**
   * Ends one tracked process: `signal` first, SIGKILL if it has not exited after
   * `graceMs`; then any of its descendants still running (an fping it left behind).
   */
  async stop(
    child: ChildProcess,
    signal: NodeJS.Signals = 'SIGTERM',
    graceMs = 2000,
  ): Promise<void> {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const pid = child.pid;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const below = descendants(pid);
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    const timer = new Promise<'late'>((resolve) =>
      setTimeout(() => resolve('late'), graceMs).unref(),
    );
    if ((await Promise.race([exited, timer])) === 'late') {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
      await exited;
    }
    for (const d of below) {
      if (readStat(d.pid)?.startTicks !== d.startTicks) continue;
      try {
        process.kill(d.pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
  }

  /** Ends every tracked process and deletes every namespace. Safe to call twice. */
  cleanup(): Promise<void> {
    Resources.live.delete(this);
    this.cleaned ??= (async () => {
      await Promise.all([...this.procs].map((c) => this.stop(c, 'SIGKILL', 1000)));
      for (const ns of this.namespaces.splice(0))
        await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    })();
    return this.cleaned;
  }

  /** On SIGINT/SIGTERM, cleans up every live `Resources`, then exits with the conventional status. */
  static installSignalHandlers(): void {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        process.stderr.write(`\n${sig}: cleaning up…\n`);
        void Promise.all([...Resources.live].map((r) => r.cleanup())).finally(() =>
          process.exit(sig === 'SIGINT' ? 130 : 143),
        );
      });
    }
  }
}

/** Reads a child's stdout line by line; `next(prefix)` waits for the next line that starts with it. */
export class LineReader {
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private closed = false;

  constructor(child: ChildProcess) {
    if (child.stdout === null) throw new Error('child has no stdout pipe');
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      this.lines.push(line);
      this.waiter?.();
    });
    rl.once('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  async next(prefix: string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(prefix));
      if (i >= 0) {
        const [line] = this.lines.splice(0, i + 1).slice(-1);
        return line as string;
      }
      if (this.closed) throw new Error(`process ended before printing "${prefix}"`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${prefix}" line within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }
}

/** Keeps the last few KB a child wrote to stderr, for error messages. */
export function stderrTail(child: ChildProcess, maxChars = 4000): () => string {
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-maxChars);
  });
  return () => tail.trim();
}

// ---------------------------------------------------------------------------------------
// A veth pair between two namespaces

/** Two namespaces joined directly by one veth pair (no bridge, no root namespace). */
export interface VethPair {
  readonly clientNs: string;
  readonly serverNs: string;
  readonly clientIf: string;
  readonly serverIf: string;
  readonly clientIp: string;
  readonly serverIp: string;
}

/**
 * Makes namespaces `<prefix>-c` and `<prefix>-s` joined by a veth pair, addressed from a
 * random /30 of 198.18.0.0/15 (RFC 2544 benchmarking space; these namespaces have no other
 * link, so nothing is routed anywhere). Both namespaces are registered with `res`.
 */
export async function createVethPair(res: Resources): Promise<VethPair> {
  const prefix = `flb${randomBytes(3).toString('hex')}`;
  const rnd = randomBytes(2);
  const base = `198.18.${rnd[0] ?? 0}`;
  const quad = ((rnd[1] ?? 0) & 0x3f) * 4;
  const pair: VethPair = {
    clientNs: `${prefix}-c`,
    serverNs: `${prefix}-s`,
    clientIf: `${prefix}c`,
    serverIf: `${prefix}s`,
    clientIp: `${base}.${quad + 1}`,
    serverIp: `${base}.${quad + 2}`,
  };
  res.addNamespace(pair.clientNs);
  res.addNamespace(pair.serverNs);
  await sh('ip', ['netns', 'add', pair.clientNs]);
  await sh('ip', ['netns', 'add', pair.serverNs]);
  // Created inside the client namespace, so a failure below leaves nothing in the root one.
  await sh('ip', [
    '-n',
    pair.clientNs,
    'link',
    'add',
    pair.clientIf,
    'type',
    'veth',
    'peer',
    'name',
    pair.serverIf,
  ]);
  await sh('ip', ['-n', pair.clientNs, 'link', 'set', pair.serverIf, 'netns', pair.serverNs]);
  for (const [ns, ifname, ip] of [
    [pair.clientNs, pair.clientIf, pair.clientIp],
    [pair.serverNs, pair.serverIf, pair.serverIp],
  ] as const) {
    await sh('ip', ['-n', ns, 'addr', 'add', `${ip}/30`, 'dev', ifname]);
    await sh('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  return pair;
}

// ---------------------------------------------------------------------------------------
// Wire references

/** Median RTT in ms that `ping` itself reports (kernel receive timestamps), or NaN. */
export async function pingMedianMs(ip: string, count: number, ns?: string): Promise<number> {
  const args = ['-n', '-c', String(count), '-i', '0.01', '-W', '1', ip];
  const out =
    ns === undefined
      ? await sh('ping', args)
      : await sh('ip', ['netns', 'exec', ns, 'ping', ...args]);
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return median(rtts);
}

/** What a packet capture saw: the median request→answer time in ms and how many pairs. */
export interface WireRtt {
  readonly medianMs: number;
  readonly pairs: number;
  /** Packets the kernel dropped before tcpdump read them (its own count). */
  readonly dropped: number;
}

/**
 * A tcpdump running in a namespace (or the root one) on one interface, capturing either
 * TCP SYN/SYN-ACK on a port or ICMP echo request/reply, with nanosecond timestamps.
 * `stop()` ends it and pairs the packets: the wire's own handshake or echo time.
 */
export class WireCapture {
  private out = '';
  private err = '';
  private from = 0;
  private readonly drained: Promise<void>;
  private constructor(
    private readonly res: Resources,
    private readonly child: ChildProcess,
    private readonly what: 'tcp' | 'icmp',
  ) {
    child.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.err += d.toString()));
    // 'exit' can come before the last output is read; 'close' comes after.
    this.drained = new Promise((resolve) => child.once('close', () => resolve()));
  }

  static async start(
    res: Resources,
    opts: { iface: string; ns?: string; what: 'tcp' | 'icmp'; host: string; port?: number },
  ): Promise<WireCapture> {
    const filter =
      opts.what === 'tcp'
        ? `host ${opts.host} and tcp port ${opts.port ?? 0} and tcp[tcpflags] & tcp-syn != 0`
        : `host ${opts.host} and (icmp[icmptype] == icmp-echo or icmp[icmptype] == icmp-echoreply)`;
    const args = [
      '-i',
      opts.iface,
      '-n',
      '-l',
      '-tt',
      '--time-stamp-precision=nano',
      '--immediate-mode',
      // Headers are all we read; a small snapshot length also means many more slots in the
      // kernel's ring (a slot is snaplen-sized), so a burst of probes is not dropped.
      '-s',
      '128',
      '-B',
      '8192',
      filter,
    ];
    const child = res.spawn('tcpdump', args, { ns: opts.ns });
    const cap = new WireCapture(res, child, opts.what);
    await pollUntil('tcpdump to listen', () => {
      if (child.exitCode !== null) throw new Error(`tcpdump exited: ${cap.err.trim()}`);
      return cap.err.includes('listening on');
    });
    return cap;
  }

  private lineCount(): number {
    let n = 0;
    for (let i = this.out.indexOf('\n', this.from); i >= 0; i = this.out.indexOf('\n', i + 1)) n++;
    return n;
  }

  /**
   * Waits until the capture has seen a packet (so it is really live, which "listening on"
   * alone does not prove), then counts only packets from here on.
   */
  async markLive(timeoutMs = 5000): Promise<void> {
    await pollUntil('tcpdump to capture the warm-up', () => this.out.includes('\n'), { timeoutMs });
    // From the end of the last whole line: a line being written belongs to the warm-up.
    this.from = this.out.lastIndexOf('\n') + 1;
  }

  /**
   * Ends the capture and pairs what it saw since `markLive`. tcpdump drops what it has not
   * yet read when interrupted, and on a busy machine it lags behind, so it is first given
   * time to catch up: until `expectedPackets` lines are in, or nothing new came for 250 ms.
   */
  async stop(expectedPackets = 0): Promise<WireRtt> {
    const deadline = Date.now() + 5000;
    let seen = -1;
    while (Date.now() < deadline) {
      const lines = this.lineCount();
      if (lines >= expectedPackets && lines === seen) break;
      seen = lines;
      await new Promise((r) => setTimeout(r, lines >= expectedPackets ? 50 : 250));
    }
    await this.res.stop(this.child, 'SIGINT', 3000);
    await Promise.race([this.drained, new Promise((r) => setTimeout(r, 3000))]);
    const keep = process.env.FL_BENCH_CAPTURE_DIR;
    if (keep !== undefined && keep !== '') {
      writeFileSync(
        join(keep, `capture-${Date.now()}-${this.what}-from${this.from}.txt`),
        this.out,
      );
    }
    const text = this.out.slice(this.from);
    const paired = this.what === 'tcp' ? pairTcp(text) : pairIcmp(text);
    const dropped = /(\d+) packets? dropped by kernel/.exec(this.err);
    return { ...paired, dropped: dropped === null ? 0 : Number(dropped[1]) };
  }
}

function pairTcp(text: string): Omit<WireRtt, 'dropped'> {
  // 1700000000.123456789 IP 1.2.3.4.5555 > 1.2.3.5.80: Flags [S], ...
  const re = /^(\d+\.\d+) IP (\S+) > (\S+): Flags \[(S|S\.)\]/;
  const synAt = new Map<string, number>();
  const rtts: number[] = [];
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m === null) continue;
    const t = Number(m[1]) * 1000;
    if (m[4] === 'S') {
      const key = `${m[2]}>${m[3]}`;
      if (!synAt.has(key)) synAt.set(key, t);
    } else {
      const key = `${m[3]}>${m[2]}`;
      const sent = synAt.get(key);
      if (sent !== undefined) {
        rtts.push(t - sent);
        synAt.delete(key);
      }
    }
  }
  return { medianMs: median(rtts), pairs: rtts.length };
}

function pairIcmp(text: string): Omit<WireRtt, 'dropped'> {
  // 1700000000.123456789 IP 1.2.3.4 > 1.2.3.5: ICMP echo request, id 7, seq 1, length 64
  const re = /^(\d+\.\d+) IP (\S+) > (\S+): ICMP echo (request|reply), id (\d+), seq (\d+)/;
  const sentAt = new Map<string, number>();
  const rtts: number[] = [];
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (m === null) continue;
    const t = Number(m[1]) * 1000;
    if (m[4] === 'request') {
      const key = `${m[2]}>${m[3]}#${m[5]}#${m[6]}`;
      if (!sentAt.has(key)) sentAt.set(key, t);
    } else {
      const key = `${m[3]}>${m[2]}#${m[5]}#${m[6]}`;
      const sent = sentAt.get(key);
      if (sent !== undefined) {
        rtts.push(t - sent);
        sentAt.delete(key);
      }
    }
  }
  return { medianMs: median(rtts), pairs: rtts.length };
}

/** blackbox_exporter's config for the benches: modules tcp_connect, http_2xx and icmp (IPv4). */
export function blackboxConfig(timeoutMs: number): string {
  const t = `${timeoutMs / 1000}s`;
  return [
    'modules:',
    '  tcp_connect:',
    '    prober: tcp',
    `    timeout: ${t}`,
    '    tcp:',
    '      preferred_ip_protocol: ip4',
    '  http_2xx:',
    '    prober: http',
    `    timeout: ${t}`,
    '    http:',
    '      preferred_ip_protocol: ip4',
    '  icmp:',
    '    prober: icmp',
    `    timeout: ${t}`,
    '    icmp:',
    '      preferred_ip_protocol: ip4',
    // A full-size echo (1500-byte packet) with Don't Fragment: what sees a smaller MTU.
    '  icmp_mtu:',
    '    prober: icmp',
    `    timeout: ${t}`,
    '    icmp:',
    '      preferred_ip_protocol: ip4',
    '      dont_fragment: true',
    '      payload_size: 1472',
    '',
  ].join('\n');
}

/**
 * Runs a bench's `main` and exits with its code (0 when it returns nothing), or with 1 and
 * the error's stack on stderr, prefixed by the bench's name.
 */
export function runBench(name: string, main: () => Promise<number | void>): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      process.stderr.write(
        `${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}

/**
 * The lab timing of the detection bench and the tools beside it: probes every second with an
 * 800 ms timeout, reports every second, silent after 3 s, a debounce of 3 — the settings the
 * usual stack is compared at (1 s scrape, `for: 2s`).
 */
export const detectionLabTiming = Object.freeze({
  probeIntervalMs: 1000,
  probeTimeoutMs: 800,
  reportIntervalMs: 1000,
  silentAfterMs: 3000,
  debounce: 3,
});

/** The inventory of bench:collector (and bench:dashboard): one service per host. */
const fleetServices = [
  { role: 'database', service: { kind: 'postgres' } },
  { role: 'api', service: { kind: 'http', port: 8080, path: '/healthz' } },
  { role: 'cache', service: { kind: 'redis' } },
  { role: 'web', service: { kind: 'http', port: 80, path: '/' } },
  { role: 'queue', service: { name: 'amqp', kind: 'tcp', port: 5672 } },
  { role: 'database', service: { kind: 'mysql' } },
] as const;

/**
 * The collector config of the simulated fleet: `components` hosts with one service each,
 * labelled by zone, switch and rack, in RFC 2544 benchmarking space (nothing probes these
 * addresses: the agents are simulated); mesh off, as they have no hosts of their own.
 */
export function fleetCollectorConfig(o: {
  readonly components: number;
  readonly dataDir: string;
  readonly port: number;
  readonly token: string;
  readonly viewer?: string;
  readonly reportIntervalMs: number;
  readonly intervalMs: number;
}): unknown {
  const components = [];
  for (let i = 0; i < o.components; i++) {
    const shape = fleetServices[i % fleetServices.length]!;
    components.push({
      name: `${shape.role}-${String(i).padStart(3, '0')}`,
      address: `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      role: shape.role,
      labels: { zone: `z${i % 3}`, switch: `sw-${i % 8}`, rack: `r${i % 20}` },
      services: [shape.service],
    });
  }
  return {
    listen: `127.0.0.1:${o.port}`,
    dataDir: o.dataDir,
    tokens: [{ name: 'bench', token: o.token }],
    ...(o.viewer === undefined ? {} : { viewers: [{ name: 'bench', token: o.viewer }] }),
    agents: {
      reportInterval: `${o.reportIntervalMs}ms`,
      silentAfter: `${Math.max(10_000, o.reportIntervalMs * 10)}ms`,
    },
    probes: { interval: `${o.intervalMs}ms`, layers: ['icmp', 'tcp', 'protocol'], mesh: false },
    inventory: { components },
  };
}

/**
 * The trend of a process's RSS read at a steady pace: the readings (MB), their least-squares
 * slope per hour, and the mean of the last third less that of the first — "no growth after
 * warm-up" is a slope and a difference near zero over a long window.
 */
export function rssTrend(
  mbs: readonly number[],
  everyS: number,
): {
  readonly slopeMbPerHour: number;
  readonly lastLessFirstThirdMb: number;
} {
  const n = mbs.length;
  if (n < 3) return { slopeMbPerHour: Number.NaN, lastLessFirstThirdMb: Number.NaN };
  const meanX = (n - 1) / 2;
  const meanY = mbs.reduce((a, y) => a + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  mbs.forEach((y, i) => {
    sxy += (i - meanX) * (y - meanY);
    sxx += (i - meanX) ** 2;
  });
  const third = Math.floor(n / 3);
  const mean = (xs: readonly number[]): number => xs.reduce((a, y) => a + y, 0) / xs.length;
  return {
    slopeMbPerHour: (sxy / sxx) * (3600 / everyS),
    lastLessFirstThirdMb: mean(mbs.slice(n - third)) - mean(mbs.slice(0, third)),
  };
}

/**
 * Starts `faultline collector --config <file>` (`cli` is dist/cli/main.js), logging warnings
 * only, and resolves once it listens; rejects with its stderr when it ends before that.
 */
export async function startCollector(
  res: Resources,
  cli: string,
  file: string,
): Promise<ChildProcess> {
  const collector = res.spawn(process.execPath, [cli, 'collector', '--config', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FAULTLINE_LOG_LEVEL: 'warn' },
  });
  const collectorErr = stderrTail(collector, 8000);
  await new LineReader(collector).next('Faultline collector on', 60_000).catch((e: unknown) => {
    throw new Error(`the collector did not start: ${String(e)} ${collectorErr()}`);
  });
  return collector;
}
