import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh, type TestHost } from '../netns.js';
import { pollUntil } from '../poll-until.js';
import { startPostgres, type PostgresServer } from '../postgres.js';
import { startRedis, type RedisServer } from '../redis.js';
import { freePort } from '../server-process.js';
import { claimAddressSpace, sweepPrefix, type AddressSpace } from './address-space.js';

/**
 * The network lab: a declared topology brought up for real. Switches are Linux bridges,
 * hosts are network namespaces with one veth into their switch, uplinks are veth pairs
 * joining two bridges; PostgreSQL, Redis, dnsmasq and a small HTTP app run inside the
 * hosts, an agent runs on every host and the collector runs in the root namespace, on the
 * address of its switch (the "management side"). The collector's inventory is derived from
 * the topology: every host a component with its role and `switch`/`zone` labels, and its
 * services.
 *
 * ```ts
 * const lab = await Lab.up(spec, { cliPath });
 * afterAll(() => lab?.down()); // also runs on SIGINT/SIGTERM and at exit
 * await lab.movePort('db-1', 'vlan-99'); … await lab.movePort('db-1', 'sw-db');
 * ```
 *
 * Every name carries a per-run prefix, addresses come from a locked /24 (./address-space.ts);
 * every process the lab starts dies with the process that started it (parent-death signal)
 * and is ended by PID in `down()`. Needs root.
 */

/** Whether this process can build a lab (root on Linux). */
export const canRunLab = process.platform === 'linux' && process.getuid?.() === 0;

/** A service inside a lab host. */
export type LabServiceSpec =
  | { readonly kind: 'postgres'; readonly name?: string }
  | { readonly kind: 'redis'; readonly name?: string }
  /** The small HTTP app: GET /healthz → 200 "ok". Port default 8080. */
  | { readonly kind: 'http'; readonly name?: string; readonly port?: number }
  /** dnsmasq answering `<host>.lab.internal` for every lab host. */
  | { readonly kind: 'dns'; readonly name?: string };

export interface LabHostSpec {
  /** Component, agent and namespace name suffix. */
  readonly name: string;
  /** The switch its one port is plugged into. */
  readonly switch: string;
  /** Inventory role (database, api, web, cache, dns…); default "other". */
  readonly role?: string;
  readonly services?: readonly LabServiceSpec[];
  /** Run an agent here (default true). */
  readonly agent?: boolean;
}

export interface LabSwitchSpec {
  readonly name: string;
  /** Its `zone` label; default the switch name. */
  readonly zone?: string;
}

/** A topology. The first switch is where the collector sits unless `collectorSwitch` says. */
export interface LabSpec {
  readonly switches: readonly LabSwitchSpec[];
  /** Pairs of switches joined by a cable (a veth pair between the bridges). */
  readonly uplinks?: ReadonlyArray<readonly [string, string]>;
  readonly hosts: readonly LabHostSpec[];
  readonly collectorSwitch?: string;
}

/** Timing of the lab's agents and collector; fast defaults for tests. */
export interface LabOptions {
  /** The built CLI (dist/cli/main.js). */
  readonly cliPath: string;
  readonly probeIntervalMs?: number;
  readonly probeTimeoutMs?: number;
  readonly reportIntervalMs?: number;
  readonly silentAfterMs?: number;
  /** Consecutive failures before a path is failing. */
  readonly debounce?: number;
  /** Log level of agents and collector (default warn). */
  readonly logLevel?: string;
  /**
   * Nice value of everything running inside the hosts (agents and services; default -5).
   * The agents time their probes in-process: on a machine shared with other CPU-heavy
   * work, scheduling delay would show up as path latency the lab did not inject.
   */
  readonly niceness?: number;
}

/** A host of the lab: a namespace with one veth into its switch. */
export interface LabHost extends TestHost {
  readonly spec: LabHostSpec;
  /** The switch the host is declared on (its labels say this, wherever its port is). */
  readonly switchName: string;
  readonly zone: string;
  readonly role: string;
}

/** A lab process with its output tail kept. */
export class LabProcess {
  private output = '';
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-64 * 1024);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  log(): string {
    return this.output;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pid !== undefined && this.running) {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }

  /** SIGKILL and wait until it is gone (bounded). */
  async kill(): Promise<void> {
    this.signal('SIGCONT');
    this.signal('SIGKILL');
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5000))]);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.signal('SIGTERM');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs));
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timer])) === 'timeout') {
      await this.kill();
    }
  }
}

/** `cmd args` made to die with this process (setpriv execs: the PID stays the command's). */
function dying(cmd: string, args: readonly string[]): string[] {
  return ['setpriv', '--pdeathsig', 'KILL', '--', cmd, ...args];
}

const labDomain = 'lab.internal';
const live = new Set<Lab>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once('exit', () => {
    for (const lab of live) lab.downSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void Promise.allSettled([...live].map((lab) => lab.down())).finally(() => {
        process.kill(process.pid, sig);
      });
    });
  }
}

/** A running lab. */
export class Lab {
  /** The collector's base URL (root namespace, on its switch's address). */
  collectorUrl = '';
  readonly token = randomBytes(16).toString('hex');
  /** Temp dir: collector config and data, agent state dirs. */
  readonly dir: string;
  /** Where the collector and the test process sit: `.1` on the collector's switch. */
  readonly gateway: string;
  readonly collectorConfigFile: string;
  private readonly bridges = new Map<string, string>();
  private readonly uplinkIfs = new Map<string, readonly [string, string]>();
  private readonly hostMap = new Map<string, LabHost>();
  private readonly agents = new Map<string, LabProcess>();
  private readonly procs = new Set<LabProcess>();
  private readonly postgres = new Map<string, PostgresServer>();
  private readonly redis = new Map<string, RedisServer>();
  private readonly dns = new Map<string, LabProcess>();
  private collectorProc: LabProcess | undefined;
  private collectorPort = 0;
  private downDone: Promise<void> | undefined;
  private readonly opts: Required<Omit<LabOptions, 'cliPath'>> & { cliPath: string };

  private constructor(
    readonly spec: LabSpec,
    opts: LabOptions,
    private readonly space: AddressSpace,
  ) {
    this.opts = {
      probeIntervalMs: 1000,
      probeTimeoutMs: 800,
      reportIntervalMs: 500,
      silentAfterMs: 3000,
      debounce: 2,
      logLevel: 'warn',
      niceness: -5,
      ...opts,
    };
    this.dir = mkdtempSync(join(tmpdir(), 'faultline-lab-'));
    space.noteDir(this.dir);
    this.gateway = space.address(1);
    this.collectorConfigFile = join(this.dir, 'collector.yaml');
  }

  /** The run's name prefix (namespaces `<prefix>-<host>`, links `<prefix>…`). */
  get prefix(): string {
    return this.space.prefix;
  }

  get subnet(): string {
    return this.space.subnet;
  }

  /** Builds the topology, starts the services, the collector and the agents. */
  static async up(spec: LabSpec, opts: LabOptions): Promise<Lab> {
    if (!canRunLab) throw new Error('the lab needs root on Linux (network namespaces, bridges)');
    checkSpec(spec);
    const lab = new Lab(spec, opts, claimAddressSpace());
    live.add(lab);
    installHandlers();
    try {
      await lab.buildNetwork();
      await lab.startServices();
      await lab.startCollector();
      for (const h of lab.hostMap.values()) if (h.spec.agent !== false) lab.startAgent(h.name);
    } catch (err) {
      await lab.down();
      throw err;
    }
    return lab;
  }

  /** Every host, in declaration order. */
  get hosts(): LabHost[] {
    return [...this.hostMap.values()];
  }

  host(name: string): LabHost {
    const h = this.hostMap.get(name);
    if (h === undefined) throw new Error(`no lab host ${JSON.stringify(name)}`);
    return h;
  }

  /** The bridge interface of a switch. */
  bridge(switchName: string): string {
    const b = this.bridges.get(switchName);
    if (b === undefined) throw new Error(`no lab switch ${JSON.stringify(switchName)}`);
    return b;
  }

  private async buildNetwork(): Promise<void> {
    const p = this.prefix;
    this.spec.switches.forEach((s, i) => this.bridges.set(s.name, `${p}s${i}`));
    for (const [name, br] of this.bridges) {
      await sh('ip', ['link', 'add', br, 'type', 'bridge']);
      // No STP delay: a port forwards at once when plugged (or moved) in.
      await sh('ip', ['link', 'set', br, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
      await sh('ip', ['link', 'set', br, 'up']);
      if (name === this.collectorSwitch) {
        await sh('ip', ['addr', 'add', `${this.gateway}/24`, 'dev', br]);
      }
    }
    // Traffic of the lab's subnet never leaves through the machine's default route.
    await sh('ip', ['route', 'add', 'unreachable', this.subnet, 'metric', '4000']);
    for (const [i, [a, b]] of (this.spec.uplinks ?? []).entries()) {
      const ends = [`${p}u${i}a`, `${p}u${i}b`] as const;
      await sh('ip', ['link', 'add', ends[0], 'type', 'veth', 'peer', 'name', ends[1]]);
      await sh('ip', ['link', 'set', ends[0], 'master', this.bridge(a)]);
      await sh('ip', ['link', 'set', ends[1], 'master', this.bridge(b)]);
      await sh('ip', ['link', 'set', ends[0], 'up']);
      await sh('ip', ['link', 'set', ends[1], 'up']);
      this.uplinkIfs.set(uplinkKey(a, b), ends);
    }
    for (const [i, spec] of this.spec.hosts.entries()) {
      const n = 10 + i;
      const sw = this.spec.switches.find((s) => s.name === spec.switch)!;
      const host: LabHost = {
        name: spec.name,
        ns: `${p}-${spec.name}`,
        ip: this.space.address(n),
        ifname: 'eth0',
        rootIf: `${p}h${n}`,
        spec,
        switchName: spec.switch,
        zone: sw.zone ?? sw.name,
        role: spec.role ?? 'other',
      };
      this.hostMap.set(spec.name, host);
      const tmpIf = `${p}t${n}`;
      await sh('ip', ['netns', 'add', host.ns]);
      await sh('ip', ['link', 'add', host.rootIf, 'type', 'veth', 'peer', 'name', tmpIf]);
      await sh('ip', ['link', 'set', tmpIf, 'netns', host.ns]);
      await sh('ip', ['-n', host.ns, 'link', 'set', tmpIf, 'name', host.ifname]);
      await sh('ip', ['-n', host.ns, 'addr', 'add', `${host.ip}/24`, 'dev', host.ifname]);
      await sh('ip', ['-n', host.ns, 'link', 'set', host.ifname, 'up']);
      await sh('ip', ['-n', host.ns, 'link', 'set', 'lo', 'up']);
      await sh('ip', ['link', 'set', host.rootIf, 'master', this.bridge(spec.switch)]);
      await sh('ip', ['link', 'set', host.rootIf, 'up']);
    }
  }

  private get collectorSwitch(): string {
    return this.spec.collectorSwitch ?? this.spec.switches[0]!.name;
  }

  /** Starts a process inside a host's namespace (dies with this process); ended by `down()`. */
  spawnIn(
    host: LabHost,
    name: string,
    cmd: string,
    args: readonly string[],
    env: Readonly<Record<string, string>> = {},
  ): LabProcess {
    const child = spawn('ip', ['netns', 'exec', host.ns, ...this.niced(dying(cmd, args))], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const proc = new LabProcess(name, child);
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** `argv` run at the lab's nice value (nice execs: the PID stays the command's). */
  private niced(argv: string[]): string[] {
    const n = this.opts.niceness;
    return n === 0 ? argv : ['nice', '-n', String(n), ...argv];
  }

  /** Gives a started server's processes the lab's nice value (its children inherit it). */
  private async renice(pids: readonly number[]): Promise<void> {
    if (this.opts.niceness === 0 || pids.length === 0) return;
    await sh('renice', ['-n', String(this.opts.niceness), '-p', ...pids.map(String)]);
  }

  /** Runs a command inside a host's namespace and returns its stdout. */
  exec(host: LabHost | string, cmd: string, args: readonly string[]): Promise<string> {
    const h = typeof host === 'string' ? this.host(host) : host;
    return sh('ip', ['netns', 'exec', h.ns, cmd, ...args]);
  }

  /** Applies an nftables ruleset (text) inside a host's namespace. */
  async nft(host: LabHost | string, ruleset: string): Promise<void> {
    const h = typeof host === 'string' ? this.host(host) : host;
    await new Promise<void>((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', h.ns, 'nft', '-f', '-'], {
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`nft in ${h.name} failed: ${stderr.trim()}`)),
      );
      child.stdin.end(ruleset);
    });
  }

  private async startServices(): Promise<void> {
    for (const host of this.hostMap.values()) {
      for (const svc of host.spec.services ?? []) {
        switch (svc.kind) {
          case 'postgres': {
            // Room for probes whose connections a cut left half-open, and a short wait for
            // their startup packet: a healed partition must not find the server full.
            const pg = await startPostgres({
              host,
              settings: { max_connections: '100', authentication_timeout: '5s' },
            });
            this.postgres.set(host.name, pg);
            await this.renice(pg.pids());
            break;
          }
          case 'redis': {
            const redis = await startRedis({ host });
            this.redis.set(host.name, redis);
            await this.renice(redis.pids());
            break;
          }
          case 'http':
            await this.startHttpApp(host, svc.port ?? 8080);
            break;
          case 'dns':
            await this.startDns(host, true);
            break;
        }
      }
    }
  }

  private async startHttpApp(host: LabHost, port: number): Promise<void> {
    this.spawnIn(host, `http ${host.name}`, process.execPath, [
      '-e',
      `require('http').createServer((q, s) => {
         s.statusCode = q.url === '/healthz' || q.url === '/' ? 200 : 404;
         s.end(s.statusCode === 200 ? 'ok\\n' : 'not found\\n');
       }).listen(${port}, ${JSON.stringify(host.ip)});`,
    ]);
    await pollUntil(
      `http app on ${host.name}`,
      async () => (await fetch(`http://${host.ip}:${port}/healthz`)).ok,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
  }

  /** The names dnsmasq answers: `<host>.lab.internal` for every host. */
  dnsName(host: string): string {
    return `${host}.${labDomain}`;
  }

  /**
   * (Re)starts dnsmasq on `host`: with every lab host's record, or with none (every name
   * under lab.internal is then NXDOMAIN — a broken zone). Resolves once it answers.
   */
  async startDns(host: LabHost | string, withRecords: boolean): Promise<void> {
    const h = typeof host === 'string' ? this.host(host) : host;
    await this.dns.get(h.name)?.stop(2000);
    const records = withRecords
      ? this.hosts.map((x) => `--host-record=${this.dnsName(x.name)},${x.ip}`)
      : [];
    const proc = this.spawnIn(h, `dnsmasq ${h.name}`, '/usr/sbin/dnsmasq', [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--listen-address=${h.ip}`,
      '--bind-interfaces',
      '--port=53',
      '--user=root',
      '--pid-file=',
      '--log-facility=-',
      `--local=/${labDomain}/`,
      ...records,
    ]);
    this.dns.set(h.name, proc);
    await pollUntil(
      `dnsmasq on ${h.name}`,
      async () => {
        if (!proc.running) throw new Error(`dnsmasq exited: ${proc.log().trim()}`);
        const out = await this.exec(h, 'ss', ['-lnu', 'sport', '= :53']).catch(() => '');
        return out.includes(`${h.ip}:53`);
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
  }

  /** The PostgreSQL server of a host. */
  postgresOf(host: string): PostgresServer {
    const s = this.postgres.get(host);
    if (s === undefined) throw new Error(`no postgres on lab host ${host}`);
    return s;
  }

  /** Starts a host's PostgreSQL again (after a crash or shutdown), at the lab's nice value. */
  async restartPostgres(host: string): Promise<void> {
    const pg = this.postgresOf(host);
    await pg.restart();
    await this.renice(pg.pids());
  }

  redisOf(host: string): RedisServer {
    const s = this.redis.get(host);
    if (s === undefined) throw new Error(`no redis on lab host ${host}`);
    return s;
  }

  /** The collector YAML of this lab: timing from the options, inventory from the topology. */
  collectorYaml(port: number): string {
    const o = this.opts;
    const lines = [
      `listen: ${this.gateway}:${port}`,
      `dataDir: ${join(this.dir, 'data')}`,
      'tokens:',
      `  - { name: lab, token: ${this.token} }`,
      'agents:',
      `  reportInterval: ${o.reportIntervalMs}ms`,
      `  silentAfter: ${o.silentAfterMs}ms`,
      'probes:',
      `  interval: ${o.probeIntervalMs}ms`,
      `  timeout: ${o.probeTimeoutMs}ms`,
      '  options:',
      '    postgres: { user: faultline }',
      'diagnosis:',
      `  debounce: ${o.debounce}`,
      'inventory:',
      '  components:',
    ];
    for (const h of this.hostMap.values()) {
      lines.push(
        `    - name: ${h.name}`,
        `      address: ${h.ip}`,
        `      role: ${h.role}`,
        `      labels: { switch: ${h.switchName}, zone: ${h.zone} }`,
        '      services:',
      );
      const services = h.spec.services ?? [];
      if (services.length === 0) lines[lines.length - 1] = '      services: []';
      for (const s of services) {
        const name = s.name ?? s.kind;
        if (s.kind === 'http') {
          lines.push(
            `        - { name: ${name}, kind: http, port: ${s.port ?? 8080}, path: /healthz }`,
          );
        } else if (s.kind === 'dns') {
          const target = this.hosts.find((x) => x.role === 'database') ?? this.hosts[0]!;
          lines.push(`        - { name: ${name}, kind: dns, query: ${this.dnsName(target.name)} }`);
        } else {
          lines.push(`        - { name: ${name}, kind: ${s.kind} }`);
        }
      }
    }
    return lines.join('\n') + '\n';
  }

  private async startCollector(): Promise<void> {
    this.collectorPort = await freePort();
    writeFileSync(this.collectorConfigFile, this.collectorYaml(this.collectorPort));
    this.collectorUrl = `http://${this.gateway}:${this.collectorPort}`;
    await this.restartCollector();
  }

  /** Starts the collector (again, on the same config and store) and waits for /healthz. */
  async restartCollector(): Promise<void> {
    const [cmd, ...args] = dying(process.execPath, [
      this.opts.cliPath,
      'collector',
      '--config',
      this.collectorConfigFile,
    ]);
    const child = spawn(cmd!, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FAULTLINE_LOG_LEVEL: this.opts.logLevel },
    });
    const proc = new LabProcess('collector', child);
    this.collectorProc = proc;
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    await pollUntil(
      'the lab collector answering /healthz',
      async () => {
        if (!proc.running) throw new Error(`collector exited: ${proc.log().slice(-2000)}`);
        const res = await fetch(`${this.collectorUrl}/healthz`, {
          signal: AbortSignal.timeout(1000),
        });
        return res.status === 200;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
  }

  get collector(): LabProcess | undefined {
    return this.collectorProc;
  }

  /** Starts the agent of a host (again: same name and state dir, so its spool carries over). */
  startAgent(name: string): LabProcess {
    const h = this.host(name);
    const running = this.agents.get(name);
    if (running?.running) throw new Error(`agent ${name} already running`);
    const stateDir = join(this.dir, `agent-${name}`);
    mkdirSync(stateDir, { recursive: true });
    const proc = this.spawnIn(
      h,
      `agent ${name}`,
      process.execPath,
      [
        this.opts.cliPath,
        'agent',
        '--collector',
        this.collectorUrl,
        '--token',
        this.token,
        '--name',
        name,
        '--labels',
        `switch=${h.switchName},zone=${h.zone}`,
        '--state-dir',
        stateDir,
        '--metrics',
        '',
      ],
      { FAULTLINE_LOG_LEVEL: this.opts.logLevel },
    );
    this.agents.set(name, proc);
    return proc;
  }

  agent(name: string): LabProcess {
    const a = this.agents.get(name);
    if (a === undefined) throw new Error(`no agent on lab host ${name}`);
    return a;
  }

  /** GET a JSON document of the collector's API. */
  async get<T>(path: string): Promise<T> {
    const res = await fetch(`${this.collectorUrl}${path}`, { signal: AbortSignal.timeout(3000) });
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  // ---- the network's moving parts -------------------------------------------------------

  /** Plugs a host's switch port into another switch (a port put in the wrong VLAN). */
  async movePort(host: string, toSwitch: string): Promise<void> {
    await sh('ip', ['link', 'set', this.host(host).rootIf, 'master', this.bridge(toSwitch)]);
  }

  /** Takes the cable between two switches down (both ends), or puts it back. */
  async setUplink(a: string, b: string, up: boolean): Promise<void> {
    const ends = this.uplinkIfs.get(uplinkKey(a, b));
    if (ends === undefined) throw new Error(`no uplink between ${a} and ${b}`);
    for (const end of ends) await sh('ip', ['link', 'set', end, up ? 'up' : 'down']);
  }

  /** Takes a host's own interface down, or up again (its subnet route comes back with it). */
  async setHostLink(host: string, up: boolean): Promise<void> {
    const h = this.host(host);
    await sh('ip', ['-n', h.ns, 'link', 'set', h.ifname, up ? 'up' : 'down']);
  }

  // ---- teardown ---------------------------------------------------------------------------

  /** Ends every process, removes every namespace and link, gives the subnet back. Idempotent. */
  down(): Promise<void> {
    this.downDone ??= this.doDown();
    return this.downDone;
  }

  private async doDown(): Promise<void> {
    await Promise.allSettled([...this.agents.values()].map((a) => a.kill()));
    await this.collectorProc?.kill();
    await Promise.allSettled([
      ...[...this.postgres.values()].map((s) => s.stop()),
      ...[...this.redis.values()].map((s) => s.stop()),
    ]);
    await Promise.allSettled([...this.procs].map((p) => p.kill()));
    for (const h of this.hostMap.values()) {
      await sh('ip', ['netns', 'del', h.ns]).catch(() => undefined);
    }
    sweepPrefix(this.prefix, this.subnet);
    this.space.release();
    // A process of the lab may still be finishing a write: retry a busy or refilled dir.
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    live.delete(this);
  }

  /** Synchronous last resort at process exit: kill by PID, sweep the names, release. */
  downSync(): void {
    if (this.downDone !== undefined && !live.has(this)) return;
    for (const p of this.procs) {
      if (p.pid !== undefined && p.running) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const s of [...this.postgres.values(), ...this.redis.values()]) {
      for (const pid of s.pids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    sweepPrefix(this.prefix, this.subnet);
    this.space.release();
    try {
      execFileSync('rm', ['-rf', this.dir]);
    } catch {
      /* best effort */
    }
    live.delete(this);
  }
}

function uplinkKey(a: string, b: string): string {
  return [a, b].sort().join('|');
}

const nameRe = /^[a-z0-9][a-z0-9-]{0,14}$/;

function checkSpec(spec: LabSpec): void {
  const switches = new Set<string>();
  for (const s of spec.switches) {
    if (!nameRe.test(s.name))
      throw new Error(
        `lab switch name ${JSON.stringify(s.name)}: expected [a-z0-9-], 1–15 characters`,
      );
    if (switches.has(s.name)) throw new Error(`lab switch ${s.name} declared twice`);
    switches.add(s.name);
  }
  if (switches.size === 0) throw new Error('a lab needs at least one switch');
  if (spec.collectorSwitch !== undefined && !switches.has(spec.collectorSwitch)) {
    throw new Error(`collectorSwitch ${spec.collectorSwitch}: no such switch`);
  }
  for (const [a, b] of spec.uplinks ?? []) {
    if (!switches.has(a) || !switches.has(b) || a === b) {
      throw new Error(`lab uplink ${a}–${b}: expected two different declared switches`);
    }
  }
  const hosts = new Set<string>();
  if (spec.hosts.length > 240) throw new Error('a lab holds at most 240 hosts');
  for (const h of spec.hosts) {
    if (!nameRe.test(h.name))
      throw new Error(
        `lab host name ${JSON.stringify(h.name)}: expected [a-z0-9-], 1–15 characters`,
      );
    if (hosts.has(h.name)) throw new Error(`lab host ${h.name} declared twice`);
    if (!switches.has(h.switch)) throw new Error(`lab host ${h.name}: no switch ${h.switch}`);
    hosts.add(h.name);
  }
}
