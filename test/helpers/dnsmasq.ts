import type { ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import type { TestHost, TestNet } from '../../lab/netns.js';
import { pollUntil } from '../../lab/poll-until.js';

/** What a test dnsmasq answers. Everything else under `localDomains` is NXDOMAIN. */
export interface DnsRecords {
  /** name → IPv4/IPv6 addresses (A/AAAA; PTR too). */
  readonly hosts?: Readonly<Record<string, readonly string[]>>;
  /** alias → target (the target must be one of `hosts`). */
  readonly cnames?: Readonly<Record<string, string>>;
  /** name → TXT text. */
  readonly txt?: Readonly<Record<string, string>>;
  readonly mx?: ReadonlyArray<{ name: string; exchange: string; preference: number }>;
  /** Domains dnsmasq answers for itself; names in them that it lacks are NXDOMAIN. */
  readonly localDomains?: readonly string[];
}

/** A dnsmasq serving fixed records on a namespace host's address, port 53. */
export interface TestDns {
  /** `ip:53`, for a probe's `server` option. */
  readonly server: string;
  readonly process: ChildProcess;
  /** Stops dnsmasq and waits until it has exited. */
  stop(): Promise<void>;
}

function recordArgs(records: DnsRecords): string[] {
  const args: string[] = [];
  for (const d of records.localDomains ?? []) args.push(`--local=/${d}/`);
  // One --host-record per address: a single one holds at most one IPv4 and one IPv6.
  for (const [name, ips] of Object.entries(records.hosts ?? {})) {
    for (const ip of ips) args.push(`--host-record=${name},${ip}`);
  }
  for (const [alias, to] of Object.entries(records.cnames ?? {}))
    args.push(`--cname=${alias},${to}`);
  for (const [name, text] of Object.entries(records.txt ?? {})) {
    // No shell: quotes would be part of the text. A comma would split it into strings.
    args.push(`--txt-record=${name},${text}`);
  }
  for (const mx of records.mx ?? []) {
    args.push(`--mx-host=${mx.name},${mx.exchange},${mx.preference}`);
  }
  return args;
}

/**
 * Starts dnsmasq in `host`'s namespace with only the given records: no upstream, no
 * /etc/hosts, no config file. Names outside `localDomains` get REFUSED (no upstream).
 * Waits until it answers; `TestNet.destroy()` kills it if the test does not stop it.
 */
export async function startDnsmasq(
  net: TestNet,
  host: TestHost,
  records: DnsRecords,
): Promise<TestDns> {
  const child = net.spawn(host, '/usr/sbin/dnsmasq', [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    `--listen-address=${host.ip}`,
    '--bind-interfaces',
    '--port=53',
    '--user=root',
    // An empty path: no pid file (it would outlive the test).
    '--pid-file=',
    '--log-facility=-',
    ...recordArgs(records),
  ]);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  child.stdout?.resume();
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const server = `${host.ip}:53`;
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([server]);
  await pollUntil(
    `dnsmasq on ${server}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`dnsmasq exited: ${stderr.trim()}`);
      try {
        await resolver.resolve4('readiness.check');
        return true;
      } catch (err) {
        // Any DNS answer (REFUSED, NXDOMAIN) means it is listening.
        const code = (err as { code?: string }).code;
        return code !== 'ECONNREFUSED' && code !== 'ETIMEOUT' ? true : undefined;
      }
    },
    { timeoutMs: 10_000 },
  );
  return {
    server,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await pollUntil('dnsmasq to exit', async () => {
        await Promise.race([exited, new Promise((r) => setTimeout(r, 50))]);
        return child.exitCode !== null || child.signalCode !== null;
      });
    },
  };
}
