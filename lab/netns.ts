import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs a command, throwing with its stderr when it fails. */
export async function sh(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Whether this process may create network namespaces (root on Linux). */
export const canUseNetns = process.platform === 'linux' && process.getuid?.() === 0;

// Test hosts live in 198.18.0.0/15 (RFC 2544, benchmarking): never routed anywhere real.
// Each TestNet takes one /24, locked by a directory so parallel test files never share one.
const lockRoot = '/tmp/faultline-test-subnets';

/** Whether a process with this PID exists (a lock's owner). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function claimSubnet(): number {
  mkdirSync(lockRoot, { recursive: true });
  const start = randomBytes(2).readUInt16BE(0) % 512;
  for (let i = 0; i < 512; i++) {
    const n = (start + i) % 512;
    const dir = `${lockRoot}/${n}`;
    try {
      mkdirSync(dir);
      writeFileSync(`${dir}/pid`, String(process.pid));
      return n;
    } catch {
      // Taken: reclaim it only if its owner is gone.
      try {
        const owner = Number(readFileSync(`${dir}/pid`, 'utf8'));
        if (owner > 0 && !pidAlive(owner)) {
          rmSync(dir, { recursive: true, force: true });
          i--;
        }
      } catch {
        /* a racing claimer is writing its pid; move on */
      }
    }
  }
  throw new Error('no free test subnet in 198.18.0.0/15');
}

/** A namespace host on the test bridge. */
export interface TestHost {
  /** Short name given by the test. */
  readonly name: string;
  /** Network namespace name. */
  readonly ns: string;
  /** The host's address on the test bridge. */
  readonly ip: string;
  /** Interface name inside the namespace. */
  readonly ifname: string;
  /** The root-namespace end of its veth (a bridge port). */
  readonly rootIf: string;
}

/**
 * A throwaway network: a Linux bridge in the root namespace (address .1, so the test
 * process itself can reach every host) and namespace hosts plugged into it. Every name
 * carries a per-run prefix; `destroy()` removes everything and ends every process started
 * through `spawn`, also when a test failed.
 */
export class TestNet {
  readonly prefix: string;
  readonly bridge: string;
  readonly gateway: string;
  private readonly hosts: TestHost[] = [];
  /** Second interfaces of other nets' hosts on this net (`attach`): their namespace is not ours. */
  private readonly legs: TestHost[] = [];
  private readonly procs = new Set<ChildProcess>();
  private nextHost = 2;
  private destroyed = false;

  private constructor(private readonly subnetIndex: number) {
    this.prefix = `fl${randomBytes(3).toString('hex')}`;
    this.bridge = `${this.prefix}br`;
    this.gateway = this.address(1);
  }

  /** This net's `198.18.x.0/24`. */
  get subnet(): string {
    return `${this.address(0)}/24`;
  }

  /** `198.18.x.y` of this net's /24. */
  address(host: number): string {
    return `198.${18 + (this.subnetIndex >> 8)}.${this.subnetIndex & 0xff}.${host}`;
  }

  static async create(): Promise<TestNet> {
    const net = new TestNet(claimSubnet());
    try {
      await sh('ip', ['link', 'add', net.bridge, 'type', 'bridge']);
      await sh('ip', ['addr', 'add', `${net.gateway}/24`, 'dev', net.bridge]);
      await sh('ip', ['link', 'set', net.bridge, 'up']);
      // A fallback for when the bridge's own route is ignored (a bridge without carrier on a
      // kernel with ignore_routes_with_linkdown): the net's traffic must never leave through
      // the machine's default route, where a sandbox's gateway may accept any TCP connection.
      await sh('ip', ['route', 'add', 'unreachable', net.subnet, 'metric', '4000']);
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** Adds a namespace host with one interface on the bridge. */
  async addHost(name: string): Promise<TestHost> {
    const n = this.nextHost++;
    const ns = `${this.prefix}-${name}`;
    const host: TestHost = {
      name,
      ns,
      ip: this.address(n),
      ifname: 'eth0',
      rootIf: `${this.prefix}h${n}`,
    };
    this.hosts.push(host);
    const tmpIf = `${this.prefix}t${n}`;
    await sh('ip', ['netns', 'add', ns]);
    await sh('ip', ['link', 'add', host.rootIf, 'type', 'veth', 'peer', 'name', tmpIf]);
    await sh('ip', ['link', 'set', tmpIf, 'netns', ns]);
    await sh('ip', ['-n', ns, 'link', 'set', tmpIf, 'name', host.ifname]);
    await sh('ip', ['-n', ns, 'addr', 'add', `${host.ip}/24`, 'dev', host.ifname]);
    await sh('ip', ['-n', ns, 'link', 'set', host.ifname, 'up']);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', this.gateway]);
    await sh('ip', ['link', 'set', host.rootIf, 'master', this.bridge]);
    await sh('ip', ['link', 'set', host.rootIf, 'up']);
    return host;
  }

  /**
   * Plugs a host that already exists (e.g. of another TestNet) into this net as well: a
   * second interface `ifname` with an address of this net and no route beyond its subnet,
   * as a router's second leg. Returns the host as seen from this net; `destroy()` removes
   * the interface, the host's own net removes the namespace.
   */
  async attach(host: TestHost, ifname: string): Promise<TestHost> {
    const n = this.nextHost++;
    const leg: TestHost = {
      name: host.name,
      ns: host.ns,
      ip: this.address(n),
      ifname,
      rootIf: `${this.prefix}h${n}`,
    };
    this.legs.push(leg);
    const tmpIf = `${this.prefix}t${n}`;
    await sh('ip', ['link', 'add', leg.rootIf, 'type', 'veth', 'peer', 'name', tmpIf]);
    await sh('ip', ['link', 'set', tmpIf, 'netns', leg.ns]);
    await sh('ip', ['-n', leg.ns, 'link', 'set', tmpIf, 'name', ifname]);
    await sh('ip', ['-n', leg.ns, 'addr', 'add', `${leg.ip}/24`, 'dev', ifname]);
    await sh('ip', ['-n', leg.ns, 'link', 'set', ifname, 'up']);
    await sh('ip', ['link', 'set', leg.rootIf, 'master', this.bridge]);
    await sh('ip', ['link', 'set', leg.rootIf, 'up']);
    return leg;
  }

  /**
   * Sets the MTU of a host's bridge port — the switch side of its link, as a misconfigured
   * switch port: frames larger than `mtu` toward or from the host are dropped. The bridge
   * keeps its own MTU (Linux would lower it to its smallest port's).
   */
  async setPortMtu(host: TestHost, mtu: number): Promise<void> {
    const bridgeMtu = JSON.parse(await sh('ip', ['-j', 'link', 'show', this.bridge])) as {
      mtu: number;
    }[];
    await sh('ip', ['link', 'set', host.rootIf, 'mtu', String(mtu)]);
    // Setting it explicitly (even to the old value after the port lowered it) pins it.
    await sh('ip', ['link', 'set', this.bridge, 'mtu', String(bridgeMtu[0]?.mtu ?? 1500)]);
  }

  /** Runs a command inside a host's namespace and returns its stdout. */
  exec(host: TestHost, cmd: string, args: readonly string[]): Promise<string> {
    return sh('ip', ['netns', 'exec', host.ns, cmd, ...args]);
  }

  /** Starts a long-running process inside a host's namespace; ended by `destroy()`. */
  spawn(
    host: TestHost,
    cmd: string,
    args: readonly string[],
    opts: SpawnOptions = {},
  ): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', host.ns, cmd, ...args], { stdio: 'pipe', ...opts });
    this.procs.add(child);
    child.once('exit', () => this.procs.delete(child));
    return child;
  }

  /** Applies an nftables ruleset (text) inside a host's namespace. */
  async nft(host: TestHost, ruleset: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', host.ns, 'nft', '-f', '-'], {
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`nft failed: ${stderr.trim()}`)),
      );
      child.stdin.end(ruleset);
    });
  }

  /**
   * What a host does with the ICMP it receives, by an nftables table of its own (`table`,
   * to delete it later): drop it all (silent), reject it with "host unreachable", or drop
   * half of it at random.
   */
  async icmpFilter(
    host: TestHost,
    mode: 'drop' | 'reject' | 'lose-half',
    table = 'fltest',
  ): Promise<void> {
    const verdict = {
      drop: 'drop',
      reject: 'reject with icmp type host-unreachable',
      'lose-half': 'numgen random mod 2 == 0 drop',
    }[mode];
    await this.nft(
      host,
      `table inet ${table} { chain input { type filter hook input priority 0; ip protocol icmp ${verdict}; }; }`,
    );
  }

  /** Takes a host's interface down (inside its namespace): the host drops off the network. */
  async linkDown(host: TestHost): Promise<void> {
    await sh('ip', ['-n', host.ns, 'link', 'set', host.ifname, 'down']);
  }

  async linkUp(host: TestHost): Promise<void> {
    await sh('ip', ['-n', host.ns, 'link', 'set', host.ifname, 'up']);
    await sh('ip', ['-n', host.ns, 'route', 'replace', 'default', 'via', this.gateway]);
  }

  /** Removes every namespace, interface and process this net made. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of this.procs) {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          // `ip netns exec` execs the command, so this PID is the process itself.
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const leg of this.legs) await sh('ip', ['link', 'del', leg.rootIf]).catch(() => undefined);
    for (const host of this.hosts) {
      await sh('ip', ['netns', 'del', host.ns]).catch(() => undefined);
      await sh('ip', ['link', 'del', host.rootIf]).catch(() => undefined);
    }
    await sh('ip', ['link', 'del', this.bridge]).catch(() => undefined);
    await sh('ip', ['route', 'del', 'unreachable', this.subnet, 'metric', '4000']).catch(
      () => undefined,
    );
    rmSync(`${lockRoot}/${this.subnetIndex}`, { recursive: true, force: true });
  }
}
