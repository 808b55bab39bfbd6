import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimAddressSpace, sweepPrefix, type AddressSpace } from './address-space.js';
import {
  buildNetwork,
  guardManagementLink,
  mgmtCollectorHost,
  mgmtRootHost,
  mgmtSecondCollectorHost,
  nftIn,
  uplinkKey,
  type LabNetwork,
} from './network.js';
import { sh } from './netns.js';
import { pollUntil } from './poll-until.js';
import type { PostgresServer } from './postgres.js';
import { dying, LabProcess, niced, renice } from './process.js';
import type { RedisServer } from './redis.js';
import { freePort } from './server-process.js';
import { dnsName, inventoryYaml, LabServers } from './services.js';
import { canRunLab, checkSpec, type LabHost, type LabOptions, type LabSpec } from './spec.js';

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
  /**
   * The collector's base URL for the test process: on its switch's address in the root
   * namespace, or (with `collectorHost`) across the management link.
   */
  collectorUrl = '';
  /** The collector's base URL for the agents: across the lab's switches. */
  agentCollectorUrl = '';
  /** With `secondCollectorHost`: the second collector's URL for the test process (its management link). */
  secondCollectorUrl = '';
  /** With `secondCollectorHost`: the second collector's URL for the agents. */
  secondAgentCollectorUrl = '';
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
  /** The second collector's config (with `secondCollectorHost`). */
  readonly secondCollectorConfigFile: string;
  private readonly network: LabNetwork = {
    bridges: new Map(),
    uplinkIfs: new Map(),
    hosts: new Map(),
  };
  private readonly agents = new Map<string, LabProcess>();
  private readonly procs = new Set<LabProcess>();
  private readonly servers = new LabServers({
    hosts: () => this.hosts,
    spawnIn: (host, name, cmd, args) => this.spawnIn(host, name, cmd, args),
    exec: (host, cmd, args) => this.exec(host, cmd, args),
    renice: (pids) => this.renice(pids),
  });
  private collectorProc: LabProcess | undefined;
  private secondCollectorProc: LabProcess | undefined;
  private collectorPort = 0;
  /** The collector's port: known from the moment `extraCollectorYaml` is called. */
  get apiPort(): number {
    return this.collectorPort;
  }
  private downDone: Promise<void> | undefined;
  private readonly opts: Required<
    Omit<LabOptions, 'cliPath' | 'extraCollectorYaml' | 'secondCollectorYaml'>
  > &
    Pick<LabOptions, 'cliPath' | 'extraCollectorYaml' | 'secondCollectorYaml'>;

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
    this.secondCollectorConfigFile = join(this.dir, 'collector-2.yaml');
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
      await buildNetwork(spec, lab.space, lab.gateway, lab.network);
      await lab.servers.startAll();
      await lab.startCollector();
      for (const h of lab.network.hosts.values())
        if (h.spec.agent !== false) lab.startAgent(h.name);
    } catch (err) {
      await lab.down();
      throw err;
    }
    return lab;
  }

  /** Every host, in declaration order. */
  get hosts(): LabHost[] {
    return [...this.network.hosts.values()];
  }

  host(name: string): LabHost {
    const h = this.network.hosts.get(name);
    if (h === undefined) throw new Error(`no lab host ${JSON.stringify(name)}`);
    return h;
  }

  /** The host the collector runs on (`collectorHost`), if it runs on one. */
  get collectorHost(): LabHost | undefined {
    return this.spec.collectorHost === undefined ? undefined : this.host(this.spec.collectorHost);
  }

  /** The host of the second collector (`secondCollectorHost`), if there is one. */
  get secondCollectorHost(): LabHost | undefined {
    const name = this.spec.secondCollectorHost;
    return name === undefined ? undefined : this.host(name);
  }

  /** The bridge interface of a switch. */
  bridge(switchName: string): string {
    const b = this.network.bridges.get(switchName);
    if (b === undefined) throw new Error(`no lab switch ${JSON.stringify(switchName)}`);
    return b;
  }

  /** Starts a process inside a host's namespace (dies with this process); ended by `down()`. */
  spawnIn(
    host: LabHost,
    name: string,
    cmd: string,
    args: readonly string[],
    env: Readonly<Record<string, string>> = {},
  ): LabProcess {
    const child = spawn(
      'ip',
      ['netns', 'exec', host.ns, ...niced(dying(cmd, args), this.opts.niceness)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
      },
    );
    const proc = new LabProcess(name, child);
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** Gives a started server's processes the lab's nice value (its children inherit it). */
  private renice(pids: readonly number[]): Promise<void> {
    return renice(pids, this.opts.niceness);
  }

  /** Runs a command inside a host's namespace and returns its stdout. */
  exec(host: LabHost | string, cmd: string, args: readonly string[]): Promise<string> {
    const h = typeof host === 'string' ? this.host(host) : host;
    return sh('ip', ['netns', 'exec', h.ns, cmd, ...args]);
  }

  /** Applies an nftables ruleset (text) inside a host's namespace. */
  async nft(host: LabHost | string, ruleset: string): Promise<void> {
    await nftIn(typeof host === 'string' ? this.host(host) : host, ruleset);
  }

  /** The names dnsmasq answers: `<host>.lab.internal` for every host. */
  dnsName(host: string): string {
    return dnsName(host);
  }

  /**
   * (Re)starts dnsmasq on `host`: with every lab host's record, or with none (every name
   * under lab.internal is then NXDOMAIN — a broken zone). Resolves once it answers.
   */
  async startDns(host: LabHost | string, withRecords: boolean): Promise<void> {
    await this.servers.startDns(typeof host === 'string' ? this.host(host) : host, withRecords);
  }

  /** The PostgreSQL server of a host. */
  postgresOf(host: string): PostgresServer {
    return this.servers.postgresOf(host);
  }

  /** Starts a host's PostgreSQL again (after a crash or shutdown), at the lab's nice value. */
  async restartPostgres(host: string): Promise<void> {
    const pg = this.postgresOf(host);
    await pg.restart();
    await this.renice(pg.pids());
  }

  redisOf(host: string): RedisServer {
    return this.servers.redisOf(host);
  }

  /**
   * The collector YAML of this lab: timing from the options, inventory from the topology
   * (`second`: the second collector's, on its host with its own store).
   */
  collectorYaml(port: number, second = false): string {
    const o = this.opts;
    const host = second ? this.secondCollectorHost : this.collectorHost;
    const lines = [
      `listen: ${host?.ip ?? this.gateway}:${port}`,
      `dataDir: ${join(this.dir, second ? 'data-2' : 'data')}`,
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
      ...inventoryYaml(this.hosts),
    ];
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
      await guardManagementLink(ctl, this.collectorPort, this.space);
      this.collectorUrl = `http://${this.space.address(mgmtCollectorHost)}:${this.collectorPort}`;
      this.agentCollectorUrl = `http://${ctl.ip}:${this.collectorPort}`;
    }
    await this.restartCollector();
    const second = this.secondCollectorHost;
    if (second !== undefined) {
      // The same port on another host: the same config but for where it stands and stores.
      const yaml =
        this.collectorYaml(this.collectorPort, true) + (extra === '' ? '' : `${extra.trimEnd()}\n`);
      writeFileSync(this.secondCollectorConfigFile, this.opts.secondCollectorYaml?.(yaml) ?? yaml);
      await guardManagementLink(second, this.collectorPort, this.space, mgmtSecondCollectorHost);
      this.secondCollectorUrl = `http://${this.space.address(mgmtSecondCollectorHost)}:${this.collectorPort}`;
      this.secondAgentCollectorUrl = `http://${second.ip}:${this.collectorPort}`;
      this.secondCollectorProc = await this.spawnCollector(
        second,
        this.secondCollectorConfigFile,
        this.secondCollectorUrl,
        'collector 2',
      );
    }
  }

  /**
   * Starts the collector (again, on the same config and store) and waits for /healthz (asked
   * the way the test process asks: across the management link when it runs on a host). On a
   * host it runs at the root namespace's priority, not the lab's nice value: where it stands
   * moves, not how fast it runs.
   */
  async restartCollector(): Promise<void> {
    this.collectorProc = await this.spawnCollector(
      this.collectorHost,
      this.collectorConfigFile,
      this.collectorUrl,
      'collector',
    );
  }

  private async spawnCollector(
    ctl: LabHost | undefined,
    configFile: string,
    url: string,
    name: string,
  ): Promise<LabProcess> {
    const argv = dying(process.execPath, [this.opts.cliPath, 'collector', '--config', configFile]);
    const [cmd, ...args] = ctl === undefined ? argv : ['ip', 'netns', 'exec', ctl.ns, ...argv];
    const child = spawn(cmd!, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FAULTLINE_LOG_LEVEL: this.opts.logLevel },
    });
    const proc = new LabProcess(name, child);
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    await pollUntil(
      `the lab ${name} answering /healthz`,
      async () => {
        if (!proc.running) throw new Error(`${name} exited: ${proc.log().slice(-2000)}`);
        const res = await fetch(`${url}/healthz`, {
          signal: AbortSignal.timeout(1000),
        });
        return res.status === 200;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    return proc;
  }

  get collector(): LabProcess | undefined {
    return this.collectorProc;
  }

  /** The second collector's process (`secondCollectorHost`). */
  get secondCollector(): LabProcess | undefined {
    return this.secondCollectorProc;
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
        ...(this.secondAgentCollectorUrl === ''
          ? []
          : ['--collector', this.secondAgentCollectorUrl]),
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

  /** GET `path` of the collector's API (or of the one at `base`) with the lab's viewer token. */
  fetchApi(path: string, base = this.collectorUrl): Promise<Response> {
    return fetch(`${base}${path}`, {
      headers: { authorization: `Bearer ${this.viewerToken}` },
      signal: AbortSignal.timeout(3000),
    });
  }

  /** GET a JSON document of the collector's API (or of the one at `base`), as a viewer. */
  async get<T>(path: string, base = this.collectorUrl): Promise<T> {
    const res = await this.fetchApi(path, base);
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
    const ends = this.network.uplinkIfs.get(uplinkKey(a, b));
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
    await this.secondCollectorProc?.kill();
    await this.servers.stop();
    await Promise.allSettled([...this.procs].map((p) => p.kill()));
    for (const h of this.network.hosts.values()) {
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
    for (const pid of this.servers.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
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
