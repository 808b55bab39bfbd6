import type { LabProcess } from './process.js';
import { pollUntil } from './poll-until.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { startRedis, type RedisServer } from './redis.js';
import type { LabHost } from './spec.js';

/**
 * The real servers inside the lab's hosts, one per declared service kind: PostgreSQL, Redis,
 * the small HTTP app and dnsmasq; and the inventory lines that tell the collector about them.
 */

export const labDomain = 'lab.internal';
/** Size of the HTTP app's health page: a few full-size packets, as a real app's page is. */
export const httpPageBytes = 4096;

/** What the servers need of the lab. */
export interface ServerHost {
  /** Every host, in declaration order. */
  hosts(): LabHost[];
  spawnIn(host: LabHost, name: string, cmd: string, args: readonly string[]): LabProcess;
  exec(host: LabHost, cmd: string, args: readonly string[]): Promise<string>;
  /** Gives a started server's processes the lab's nice value. */
  renice(pids: readonly number[]): Promise<void>;
}

/** The names dnsmasq answers: `<host>.lab.internal` for every host. */
export function dnsName(host: string): string {
  return `${host}.${labDomain}`;
}

/** The servers of a lab's hosts, by host name. */
export class LabServers {
  private readonly postgres = new Map<string, PostgresServer>();
  private readonly redis = new Map<string, RedisServer>();
  private readonly dns = new Map<string, LabProcess>();

  constructor(private readonly lab: ServerHost) {}

  /** Starts every host's declared services, in declaration order. */
  async startAll(): Promise<void> {
    for (const host of this.lab.hosts()) {
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
            await this.lab.renice(pg.pids());
            break;
          }
          case 'redis': {
            const redis = await startRedis({ host });
            this.redis.set(host.name, redis);
            await this.lab.renice(redis.pids());
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
    this.lab.spawnIn(host, `http ${host.name}`, process.execPath, [
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

  /**
   * (Re)starts dnsmasq on `host`: with every lab host's record, or with none (every name
   * under lab.internal is then NXDOMAIN — a broken zone). Resolves once it answers.
   */
  async startDns(h: LabHost, withRecords: boolean): Promise<void> {
    await this.dns.get(h.name)?.stop(2000);
    const records = withRecords
      ? this.lab.hosts().map((x) => `--host-record=${dnsName(x.name)},${x.ip}`)
      : [];
    const proc = this.lab.spawnIn(h, `dnsmasq ${h.name}`, '/usr/sbin/dnsmasq', [
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
        const out = await this.lab.exec(h, 'ss', ['-lnu', 'sport', '= :53']).catch(() => '');
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

  redisOf(host: string): RedisServer {
    const s = this.redis.get(host);
    if (s === undefined) throw new Error(`no redis on lab host ${host}`);
    return s;
  }

  /** Stops the database servers (the HTTP apps and dnsmasq are the lab's processes). */
  async stop(): Promise<void> {
    await Promise.allSettled([
      ...[...this.postgres.values()].map((s) => s.stop()),
      ...[...this.redis.values()].map((s) => s.stop()),
    ]);
  }

  /** Every PID of the database servers (for the synchronous last resort at exit). */
  pids(): number[] {
    return [...this.postgres.values(), ...this.redis.values()].flatMap((s) => s.pids());
  }
}

/** The collector's `inventory:` section: every host a component with its labels and services. */
export function inventoryYaml(hosts: readonly LabHost[]): string[] {
  const lines = ['inventory:', '  components:'];
  for (const h of hosts) {
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
        const target = hosts.find((x) => x.role === 'database') ?? hosts[0]!;
        lines.push(`        - { name: ${name}, kind: dns, query: ${dnsName(target.name)} }`);
      } else {
        lines.push(`        - { name: ${name}, kind: ${s.kind} }`);
      }
    }
  }
  return lines;
}
