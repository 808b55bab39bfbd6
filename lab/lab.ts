import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh, type TestHost } from './netns.js';
import { pollUntil } from './poll-until.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { startRedis, type RedisServer } from './redis.js';
import { freePort } from './server-process.js';
import { claimAddressSpace, sweepPrefix, type AddressSpace } from './address-space.js';

/**
 * The network lab: a declared topology brought up for real. Switches are Linux bridges,
 * hosts are network namespaces with one veth into their switch, uplinks are veth pairs
 * joining two bridges; PostgreSQL, Redis, dnsmasq and a small HTTP app run inside the
 * hosts, an agent runs on every host and the collector runs in the root namespace, on the
 * address of its switch (the "management side") — or, with `collectorHost`, inside a lab
 * host, on that host's address (see {@link LabSpec.collectorHost}). The collector's inventory
 * is derived from the topology: every host a component with its role and `switch`/`zone`
 * labels, and its services.
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
  /**
   * The small HTTP app: GET /healthz → 200, "ok" and ~4 KB more (a page is bigger than one
   * packet: a path that loses full-size frames times out after the handshake). Port default 8080.
   */
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

/**
 * A topology. The test process sits in the root namespace on `.1` of one switch (the first
 * unless `collectorSwitch` says; the collector host's switch with `collectorHost`); the
 * collector sits there too unless `collectorHost` puts it on a host.
 */
export interface LabSpec {
  readonly switches: readonly LabSwitchSpec[];
  /** Pairs of switches joined by a cable (a veth pair between the bridges). */
  readonly uplinks?: ReadonlyArray<readonly [string, string]>;
  readonly hosts: readonly LabHostSpec[];
  /** The switch of the root namespace's address (and of the collector, without `collectorHost`). */
  readonly collectorSwitch?: string;
  /**
   * Runs the collector inside this host's namespace, listening on the host's address: the
   * host's agent (if it has one) is then the collector's local agent, and a fault of the
   * host's port cuts the collector off like any other host. Agents reach it only through the
   * lab's switches. Beside its switch port, the host gets an out-of-band management link to
   * the root namespace (`mgmt0`, {@link Lab.managementAddress} at the root end) that carries
   * only the test process's calls to the collector's API and the collector's alerts to a
   * receiver listening on `managementAddress` — the way a pager's path is not the
   * production LAN. Exclusive with `collectorSwitch`.
   */
  readonly collectorHost?: string;
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
  /**
   * More top-level YAML for the collector's config (e.g. an `alerts:` section), made once the
   * network and services are up and before the collector starts, so a receiver can first be
   * started on {@link Lab.managementAddress}.
   */
  readonly extraCollectorYaml?: (lab: Lab) => Promise<string> | string;
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
/** Size of the HTTP app's health page: a few full-size packets, as a real app's page is. */
export const httpPageBytes = 4096;
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

/** The collector host's end of the management link, and its address there. */
const mgmtIfname = 'mgmt0';
/** Host numbers of the management link's two ends in the lab's /24 (hosts take .10–.249). */
const mgmtRootHost = 253;
const mgmtCollectorHost = 254;

/** A running lab. */
export class Lab {
  /**
   * The collector's base URL for the test process: on its switch's address in the root
   * namespace, or (with `collectorHost`) across the management link.
   */
  collectorUrl = '';
  /** The collector's base URL for the agents: across the lab's switches. */
  agentCollectorUrl = '';
  readonly token = randomBytes(16).toString('hex');
  /** The viewer token of the lab's collector: the read endpoints (get, fetchApi) send it. */
  readonly viewerToken = randomBytes(16).toString('hex');
  /** Temp dir: collector config and data, agent state dirs. */
  readonly dir: string;
  /** Where the test process sits: `.1` on the collector's switch (the collector too, unless on a host). */
  readonly gateway: string;
  /**
   * The root namespace's address the collector reaches (start an alert receiver on it):
   * the management link's root end with `collectorHost`, else the gateway.
   */
  readonly managementAddress: string;
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
  /** The collector's port: known from the moment `extraCollectorYaml` is called. */
  get apiPort(): number {
    return this.collectorPort;
  }
  private downDone: Promise<void> | undefined;
  private readonly opts: Required<Omit<LabOptions, 'cliPath' | 'extraCollectorYaml'>> &
    Pick<LabOptions, 'cliPath' | 'extraCollectorYaml'>;

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
    this.managementAddress =
      spec.collectorHost === undefined ? this.gateway : space.address(mgmtRootHost);
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

  /** The host the collector runs on (`collectorHost`), if it runs on one. */
  get collectorHost(): LabHost | undefined {
    return this.spec.collectorHost === undefined ? undefined : this.host(this.spec.collectorHost);
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
      // Set, not derived: a bridge whose MTU was never set follows its smallest port, and a
      // port's MTU lowered (a fault) would shrink the root namespace's own packets with it.
      // (Setting the MTU it has already is a no-op that leaves it derived: hence two steps.)
      await sh('ip', ['link', 'set', br, 'mtu', '1499']);
      await sh('ip', ['link', 'set', br, 'mtu', '1500']);
      await noOffloads(br);
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
      for (const end of ends) await noOffloads(end);
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
      await noOffloads(host.rootIf);
      await noOffloads(host.ifname, host.ns);
    }
    const ctl = this.collectorHost;
    if (ctl !== undefined) await this.buildManagementLink(ctl);
  }

  /**
   * The collector host's out-of-band link to the root namespace (see LabSpec.collectorHost):
   * a veth with a /32 at each end, so only these two addresses route over it. Inside the
   * host, a connection to its end on the collector's port is forwarded to the collector on
   * the host's lab address, and nothing else is accepted from the link.
   */
  private async buildManagementLink(host: LabHost): Promise<void> {
    const rootIf = `${this.prefix}mg`;
    const tmpIf = `${this.prefix}mt`;
    const rootAddr = this.managementAddress;
    const hostAddr = this.space.address(mgmtCollectorHost);
    await sh('ip', ['link', 'add', rootIf, 'type', 'veth', 'peer', 'name', tmpIf]);
    await sh('ip', ['link', 'set', tmpIf, 'netns', host.ns]);
    await sh('ip', ['-n', host.ns, 'link', 'set', tmpIf, 'name', mgmtIfname]);
    await sh('ip', ['-n', host.ns, 'addr', 'add', `${hostAddr}/32`, 'dev', mgmtIfname]);
    await sh('ip', ['-n', host.ns, 'link', 'set', mgmtIfname, 'up']);
    await sh('ip', [
      '-n',
      host.ns,
      'route',
      'add',
      `${rootAddr}/32`,
      'dev',
      mgmtIfname,
      'src',
      hostAddr,
    ]);
    await sh('ip', ['addr', 'add', `${rootAddr}/32`, 'dev', rootIf]);
    await sh('ip', ['link', 'set', rootIf, 'up']);
    await sh('ip', ['route', 'add', `${hostAddr}/32`, 'dev', rootIf, 'src', rootAddr]);
  }

  /** Forwards the management link's collector port to the collector; nothing else gets in. */
  private async guardManagementLink(host: LabHost, port: number): Promise<void> {
    const hostAddr = this.space.address(mgmtCollectorHost);
    await this.nft(
      host,
      `table ip flmgmt {
         chain prerouting {
           type nat hook prerouting priority dstnat; policy accept;
           iifname "${mgmtIfname}" ip daddr ${hostAddr} tcp dport ${port} dnat to ${host.ip}
         }
         chain input {
           type filter hook input priority filter; policy accept;
           iifname "${mgmtIfname}" ct state established,related accept
           iifname "${mgmtIfname}" ip daddr ${host.ip} tcp dport ${port} accept
           iifname "${mgmtIfname}" drop
         }
       }`,
    );
  }

  private get collectorSwitch(): string {
    const ctl = this.spec.hosts.find((h) => h.name === this.spec.collectorHost);
    return this.spec.collectorSwitch ?? ctl?.switch ?? this.spec.switches[0]!.name;
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

  /**
   * Gives a started server's processes the lab's nice value (its children inherit it). A
   * process that ended between being listed and reniced (PostgreSQL's short-lived start-up
   * children) is no error; any other refusal is.
   */
  private async renice(pids: readonly number[]): Promise<void> {
    if (this.opts.niceness === 0 || pids.length === 0) return;
    try {
      await sh('renice', ['-n', String(this.opts.niceness), '-p', ...pids.map(String)]);
    } catch (err) {
      const refusals = (err as Error).message.split('\n').filter((l) => l.includes('renice:'));
      const onlyGone = refusals.length > 0 && refusals.every((l) => l.includes('No such process'));
      if (!onlyGone) throw err;
    }
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
    // The page is sent with its headers in one write: every segment of the answer is full-size.
    this.spawnIn(host, `http ${host.name}`, process.execPath, [
      '-e',
      `const page = 'ok\\n' + '<!-- ${host.name} -->'.padEnd(${httpPageBytes} - 4, '.') + '\\n';
       require('http').createServer((q, s) => {
         s.statusCode = q.url === '/healthz' || q.url === '/' ? 200 : 404;
         s.end(s.statusCode === 200 ? page : 'not found\\n');
       }).listen(${port}, ${JSON.stringify(host.ip)});`,
    ]);
    await pollUntil(
      `http app on ${host.name}`,
      async () => {
        const res = await fetch(`http://${host.ip}:${port}/healthz`);
        return res.ok && (await res.text()).length === httpPageBytes;
      },
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
      `listen: ${this.collectorHost?.ip ?? this.gateway}:${port}`,
      `dataDir: ${join(this.dir, 'data')}`,
      'tokens:',
      `  - { name: lab, token: ${this.token} }`,
      'viewers:',
      `  - { name: lab, token: ${this.viewerToken} }`,
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
    const extra = (await this.opts.extraCollectorYaml?.(this)) ?? '';
    writeFileSync(
      this.collectorConfigFile,
      this.collectorYaml(this.collectorPort) + (extra === '' ? '' : `${extra.trimEnd()}\n`),
    );
    const ctl = this.collectorHost;
    if (ctl === undefined) {
      this.collectorUrl = `http://${this.gateway}:${this.collectorPort}`;
      this.agentCollectorUrl = this.collectorUrl;
    } else {
      await this.guardManagementLink(ctl, this.collectorPort);
      this.collectorUrl = `http://${this.space.address(mgmtCollectorHost)}:${this.collectorPort}`;
      this.agentCollectorUrl = `http://${ctl.ip}:${this.collectorPort}`;
    }
    await this.restartCollector();
  }

  /**
   * Starts the collector (again, on the same config and store) and waits for /healthz (asked
   * the way the test process asks: across the management link when it runs on a host). On a
   * host it runs at the root namespace's priority, not the lab's nice value: where it stands
   * moves, not how fast it runs.
   */
  async restartCollector(): Promise<void> {
    const ctl = this.collectorHost;
    const argv = dying(process.execPath, [
      this.opts.cliPath,
      'collector',
      '--config',
      this.collectorConfigFile,
    ]);
    const [cmd, ...args] = ctl === undefined ? argv : ['ip', 'netns', 'exec', ctl.ns, ...argv];
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
        this.agentCollectorUrl,
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

  /** GET `path` of the collector's API with the lab's viewer token. */
  fetchApi(path: string): Promise<Response> {
    return fetch(`${this.collectorUrl}${path}`, {
      headers: { authorization: `Bearer ${this.viewerToken}` },
      signal: AbortSignal.timeout(3000),
    });
  }

  /** GET a JSON document of the collector's API, as a viewer. */
  async get<T>(path: string): Promise<T> {
    const res = await this.fetchApi(path);
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

  /**
   * Takes a host's switch port down or up (the switch side of its cable: the host's own
   * interface loses its carrier, keeps its address and routes).
   */
  async setSwitchPort(host: string, up: boolean): Promise<void> {
    await sh('ip', ['link', 'set', this.host(host).rootIf, up ? 'up' : 'down']);
  }

  /** The MTU of a host's switch port (the bridge side of its cable). */
  async switchPortMtu(host: string): Promise<number> {
    const out = await sh('ip', ['-j', 'link', 'show', 'dev', this.host(host).rootIf]);
    const mtu = (JSON.parse(out) as { mtu?: number }[])[0]?.mtu;
    if (mtu === undefined) throw new Error(`no MTU for ${host}'s switch port in ${out}`);
    return mtu;
  }

  /**
   * Sets the MTU of a host's switch port. Smaller than the host's: frames up to it pass,
   * bigger ones vanish both ways (the bridge will not send them out of the port, the veth
   * will not take them in from the host), with no ICMP "fragmentation needed" — a switch,
   * not a router.
   */
  async setSwitchPortMtu(host: string, mtu: number): Promise<void> {
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 9000) {
      throw new Error(`MTU ${mtu}: expected 68–9000`);
    }
    await sh('ip', ['link', 'set', this.host(host).rootIf, 'mtu', String(mtu)]);
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

/**
 * Segmentation and receive offloads off on a lab interface: a real NIC cuts a large send into
 * MTU-sized frames before they reach the wire, but a veth or bridge passes the one large
 * "GSO" packet along, and Linux lets such packets past a smaller MTU downstream. With the
 * offloads on, a switch port's lowered MTU would stop pings and never TCP.
 */
async function noOffloads(ifname: string, ns?: string): Promise<void> {
  const args = ['-K', ifname, 'tso', 'off', 'gso', 'off', 'gro', 'off'];
  if (ns === undefined) await sh('ethtool', args);
  else await sh('ip', ['netns', 'exec', ns, 'ethtool', ...args]);
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
  if (spec.collectorHost !== undefined && spec.collectorSwitch !== undefined) {
    throw new Error('collectorHost and collectorSwitch: give one (the host says its switch)');
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
  if (spec.collectorHost !== undefined && !hosts.has(spec.collectorHost)) {
    throw new Error(`collectorHost ${spec.collectorHost}: no such host`);
  }
}
