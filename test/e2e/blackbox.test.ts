import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt } from '../helpers/cli.js';
import { startDnsmasq, type TestDns } from '../helpers/dnsmasq.js';
import { canUseNetns, TestNet, type TestHost } from '../../lab/netns.js';
import { pollUntil } from '../../lab/poll-until.js';
import { startPrometheus, type TestPrometheus } from '../../lab/prometheus.js';
import { freePort } from '../../lab/server-process.js';
import { TestPki } from '../helpers/tls.js';

/**
 * The real prometheus-blackbox-exporter and two real agents probe the same targets; one
 * Prometheus scrapes all three the way their users do (blackbox: the `__param_target` →
 * `instance` relabelling; the agents: `metrics.probeInstance: address` with honor_labels, or
 * the documented metric_relabel_configs recipe). Then the queries blackbox dashboards and
 * alert rules run must find the same series, by the same labels, with the same values.
 */
const blackboxBin = '/usr/bin/prometheus-blackbox-exporter';

/** Series whose value is a fact of the target, not a timing: blackbox and agents must agree. */
const sameValue = [
  'probe_success',
  'probe_http_status_code',
  'probe_http_ssl',
  'probe_http_version',
  'probe_http_redirects',
  'probe_http_content_length',
  'probe_failed_due_to_regex',
  'probe_ip_protocol',
  'probe_ssl_earliest_cert_expiry',
  'probe_dns_answer_rrs',
  'probe_dns_query_succeeded',
];

/** Timings (values differ) that dashboards read by these labels: the label sets must agree. */
const sameLabels: ReadonlyArray<{ name: string; by: readonly string[] }> = [
  { name: 'probe_duration_seconds', by: ['instance'] },
  { name: 'probe_dns_lookup_time_seconds', by: ['instance'] },
  { name: 'probe_http_duration_seconds', by: ['instance', 'phase'] },
  { name: 'probe_tls_version_info', by: ['instance', 'version'] },
];

/**
 * blackbox_exporter series (for these targets) the agent does not export, and why. A name
 * leaving this list fails the test as surely as one joining it: the README's gap list follows.
 */
const notExported = [
  // Node's resolver API gives the answers only, not the authority and additional sections.
  'probe_dns_additional_rrs',
  'probe_dns_authority_rrs',
  // Per-phase DNS timings (resolve, connect, request): the dns probe times the query as one.
  'probe_dns_duration_seconds',
  // The verified chain's expiry and details (probe_ssl_earliest_cert_expiry covers what was sent).
  'probe_ssl_last_chain_expiry_timestamp_seconds',
  'probe_ssl_last_chain_info',
  // A hash of the resolved address and the decompressed body length: not read by dashboards.
  'probe_http_uncompressed_body_length',
  'probe_ip_addr_hash',
  // The TTL of the echo reply: the agent's ICMP engines do not report it.
  'probe_icmp_reply_hop_limit',
];

type Sample = { metric: Record<string, string>; value: [number, string] };

// Not skipped when blackbox_exporter is missing: scripts/install-system-deps.sh installs it.
describe.runIf(canUseNetns)(
  'blackbox_exporter compatibility, against the real blackbox_exporter',
  () => {
    let net: TestNet;
    let ns: TestHost;
    let dns: TestDns;
    let pki: TestPki;
    let dir: string;
    let http: Server;
    let https: Server;
    let httpsChain: Server;
    let tcp: ReturnType<typeof createNetServer>;
    let tcpHello: ReturnType<typeof createNetServer>;
    let prom: TestPrometheus | undefined;
    const children: ChildProcess[] = [];
    /** Agent address (its `instance` in address mode) → blackbox target of the same check. */
    const pairs = new Map<string, string>();

    function start(command: string, args: string[]): ChildProcess & { stderrText: () => string } {
      const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      children.push(child);
      return Object.assign(child, { stderrText: () => stderr });
    }

    beforeAll(async () => {
      ensureBuilt();
      dir = mkdtempSync(join(tmpdir(), 'faultline-bbx-e2e-'));
      net = await TestNet.create();
      ns = await net.addHost('ns');
      dns = await startDnsmasq(net, ns, {
        hosts: { 'web.fl.test': ['198.51.100.7', '198.51.100.8'] },
        localDomains: ['fl.test'],
      });
      pki = await TestPki.create();
      const cert = await pki.issue({ cn: 'localhost', sans: ['IP:127.0.0.1'], selfSigned: true });
      // Signed by the test CA, which expires first (2 days against 30) and is sent along.
      const chained = await pki.issue({ cn: 'localhost', sans: ['IP:127.0.0.1'] });

      const handler = (req: IncomingMessage, res: ServerResponse): void => {
        if (req.url === '/redirect') res.writeHead(302, { location: '/' }).end();
        else if (req.url === '/regex') res.end('hello world');
        else if (req.url === '/missing') res.writeHead(404).end('not found');
        else res.end('hello');
      };
      http = createHttpServer(handler);
      https = createHttpsServer({ key: cert.key, cert: cert.cert }, handler);
      httpsChain = createHttpsServer(
        { key: chained.key, cert: chained.cert + pki.ca.cert },
        handler,
      );
      tcp = createNetServer((s) => s.on('error', () => undefined).end());
      tcpHello = createNetServer((s) => s.on('error', () => undefined).end('hello\n'));
      const listen = (s: Server | ReturnType<typeof createNetServer>): Promise<number> =>
        new Promise((resolve) =>
          s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)),
        );
      const [httpPort, httpsPort, chainPort, tcpPort, helloPort, closedPort] = await Promise.all([
        listen(http),
        listen(https),
        listen(httpsChain),
        listen(tcp),
        listen(tcpHello),
        freePort(),
      ]);

      // One check each: the agent's target, blackbox's module and target.
      const checks = [
        { name: 'web-http', kind: 'http', address: `http://127.0.0.1:${httpPort}/` },
        {
          name: 'web-redirect',
          kind: 'http',
          address: `http://127.0.0.1:${httpPort}/redirect`,
          options: '{ followRedirects: true }',
        },
        {
          name: 'web-regex',
          kind: 'http',
          address: `http://127.0.0.1:${httpPort}/regex`,
          options: '{ failIfBodyMatches: hello }',
          module: 'http_regex',
        },
        { name: 'web-404', kind: 'http', address: `http://127.0.0.1:${httpPort}/missing` },
        {
          name: 'web-https',
          kind: 'http',
          address: `https://127.0.0.1:${httpsPort}/`,
          options: '{ tlsVerify: false }',
        },
        {
          name: 'web-chain',
          kind: 'http',
          address: `https://127.0.0.1:${chainPort}/`,
          options: '{ tlsVerify: false }',
        },
        { name: 'db-tcp', kind: 'tcp', address: `127.0.0.1:${tcpPort}` },
        { name: 'closed-tcp', kind: 'tcp', address: `127.0.0.1:${closedPort}` },
        {
          name: 'expect-tcp',
          kind: 'tcp',
          address: `127.0.0.1:${helloPort}`,
          options: '{ expect: "^bye" }',
          module: 'tcp_expect',
        },
        { name: 'lo-icmp', kind: 'icmp', address: '127.0.0.1' },
        { name: 'ns-icmp', kind: 'icmp', address: ns.ip },
        // blackbox's target is the resolver, the name is in the module; the agent's the name.
        {
          name: 'ns-dns',
          kind: 'dns',
          address: 'web.fl.test',
          options: `{ server: "${dns.server}", recordType: A }`,
          module: 'dns_a',
          bbTarget: dns.server,
        },
      ];
      const moduleOf: Record<string, string> = {
        http: 'http_2xx',
        tcp: 'tcp_connect',
        icmp: 'icmp',
      };
      for (const c of checks) pairs.set(c.address, c.bbTarget ?? c.address);

      writeFileSync(
        join(dir, 'blackbox.yml'),
        [
          'modules:',
          '  http_2xx: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4, tls_config: { insecure_skip_verify: true } } }',
          '  http_regex: { prober: http, timeout: 2s, http: { preferred_ip_protocol: ip4, fail_if_body_matches_regexp: [hello] } }',
          '  tcp_connect: { prober: tcp, timeout: 2s, tcp: { preferred_ip_protocol: ip4 } }',
          '  tcp_expect: { prober: tcp, timeout: 2s, tcp: { preferred_ip_protocol: ip4, query_response: [{ expect: "^bye" }] } }',
          '  icmp: { prober: icmp, timeout: 2s, icmp: { preferred_ip_protocol: ip4 } }',
          '  dns_a: { prober: dns, timeout: 2s, dns: { preferred_ip_protocol: ip4, query_name: web.fl.test, query_type: A } }',
          '',
        ].join('\n'),
      );
      const bbPort = await freePort();
      const bb = start(blackboxBin, [
        `--config.file=${join(dir, 'blackbox.yml')}`,
        `--web.listen-address=127.0.0.1:${bbPort}`,
      ]);
      await pollUntil('blackbox_exporter to listen', async () => {
        if (bb.exitCode !== null) throw new Error(`blackbox_exporter exited: ${bb.stderrText()}`);
        return (await fetch(`http://127.0.0.1:${bbPort}/-/healthy`)).ok;
      });

      const targetsYaml = checks
        .map(
          (c) =>
            `  - { name: ${c.name}, kind: ${c.kind}, address: "${c.address}"${c.options === undefined ? '' : `, options: ${c.options}`} }`,
        )
        .join('\n');
      const agentPorts: number[] = [];
      for (const mode of ['address', 'scrape']) {
        const port = await freePort();
        agentPorts.push(port);
        writeFileSync(
          join(dir, `agent-${mode}.yaml`),
          `agent: { name: bb-${mode} }\n` +
            `metrics: { listen: "127.0.0.1:${port}", probeInstance: ${mode}, blackbox: full }\n` +
            // Long timeouts: on a loaded machine a slow round must not read as a disagreement.
            'defaults: { interval: 2s, timeout: 1500ms }\n' +
            `targets:\n${targetsYaml}\n`,
        );
        const agent = start(process.execPath, [
          cliPath,
          'agent',
          '--config',
          join(dir, `agent-${mode}.yaml`),
        ]);
        await pollUntil(`agent (${mode}) metrics`, async () => {
          if (agent.exitCode !== null) throw new Error(`agent exited: ${agent.stderrText()}`);
          return (await fetch(`http://127.0.0.1:${port}/metrics`)).ok;
        });
      }

      const bbTargets = checks
        .map(
          (c) =>
            `      - { targets: ["${c.bbTarget ?? c.address}"], labels: { module: ${c.module ?? moduleOf[c.kind]} } }`,
        )
        .join('\n');
      prom = await startPrometheus([], 1, {
        scrapeConfigs: [
          // Opt-in: the agent sets instance itself; honor_labels keeps it.
          '  - job_name: faultline',
          '    honor_labels: true',
          `    static_configs: [{ targets: ["127.0.0.1:${agentPorts[0]}"] }]`,
          // The README's recipe for an agent left at probeInstance: scrape.
          '  - job_name: faultline-relabel',
          `    static_configs: [{ targets: ["127.0.0.1:${agentPorts[1]}"] }]`,
          '    metric_relabel_configs:',
          '      - { source_labels: [address], regex: "(.+)", target_label: instance }',
          // blackbox_exporter as its README says to scrape it.
          '  - job_name: blackbox',
          '    metrics_path: /probe',
          '    static_configs:',
          bbTargets,
          '    relabel_configs:',
          '      - { source_labels: [__address__], target_label: __param_target }',
          '      - { source_labels: [module], target_label: __param_module }',
          '      - { source_labels: [__param_target], target_label: instance }',
          `      - { target_label: __address__, replacement: "127.0.0.1:${bbPort}" }`,
        ].join('\n'),
      });
      const p = prom;
      await pollUntil(
        'every check of the three in Prometheus',
        async () => {
          const r = await p.query('count by (job) (probe_success)');
          return r.length === 3 && r.every((s) => Number(s.value[1]) === checks.length);
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
    }, 90_000);

    afterAll(async () => {
      await prom?.stop();
      await Promise.all(
        children.map(async (c) => {
          if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
            const exited = new Promise((r) => c.once('exit', r));
            process.kill(c.pid, 'SIGKILL');
            await exited;
          }
        }),
      );
      for (const s of [http, https, httpsChain, tcp, tcpHello]) s?.close();
      for (const s of [http, https, httpsChain]) s?.closeAllConnections();
      await dns?.stop();
      await net?.destroy();
      await pki?.destroy();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    /** `instance,label…` → value of a query, blackbox's instances mapped to the agent's. */
    async function table(
      expr: string,
      job: string,
      by: readonly string[],
    ): Promise<Record<string, string>> {
      const fromBlackbox = new Map([...pairs].map(([agent, bb]) => [bb, agent]));
      const rows = await prom!.query(`max by (${by.join(',')}) (${expr.replace('$job', job)})`);
      return Object.fromEntries(
        rows.map((s: Sample) => {
          const instance = s.metric.instance ?? '';
          const key = [
            job === 'blackbox' ? (fromBlackbox.get(instance) ?? `unpaired ${instance}`) : instance,
            ...by.slice(1).map((l) => s.metric[l] ?? ''),
          ].join(',');
          return [key, s.value[1]];
        }),
      );
    }

    /** The two tables once they agree (results settle within a round or two), else both. */
    async function agreement(
      expr: string,
      job: string,
      by: readonly string[],
      values = true,
    ): Promise<{ ours: Record<string, string>; blackbox: Record<string, string> }> {
      let last = { ours: {} as Record<string, string>, blackbox: {} as Record<string, string> };
      const same = (a: Record<string, string>, b: Record<string, string>): boolean =>
        JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
      const keysOnly = (t: Record<string, string>): Record<string, string> =>
        Object.fromEntries(Object.keys(t).map((k) => [k, '']));
      try {
        return await pollUntil(
          `${expr} of ${job} and blackbox to agree`,
          async () => {
            const [ours, blackbox] = await Promise.all([
              table(expr, job, by),
              table(expr, 'blackbox', by),
            ]);
            last = values
              ? { ours, blackbox }
              : { ours: keysOnly(ours), blackbox: keysOnly(blackbox) };
            return Object.keys(blackbox).length > 0 && same(last.ours, last.blackbox)
              ? last
              : undefined;
          },
          { timeoutMs: 10_000, intervalMs: 500 },
        );
      } catch {
        return last;
      }
    }

    for (const job of ['faultline', 'faultline-relabel']) {
      describe(
        job === 'faultline' ? 'probeInstance: address' : 'probeInstance: scrape + relabel recipe',
        () => {
          it('the dashboards’ target list (label_values(probe_success, instance)) names the same targets', async () => {
            const { ours, blackbox } = await agreement(
              'probe_success{job="$job"}',
              job,
              ['instance'],
              false,
            );
            expect(Object.keys(ours).sort()).toEqual([...pairs.keys()].sort());
            expect(ours).toEqual(blackbox);
          });

          it.each(sameValue)('%s: same series by instance, same values', async (name) => {
            const { ours, blackbox } = await agreement(`${name}{job="$job"}`, job, ['instance']);
            expect(Object.keys(blackbox).length, `blackbox exports ${name}`).toBeGreaterThan(0);
            expect(ours).toEqual(blackbox);
          });

          it.each(sameLabels)('$name by $by: the same label sets', async ({ name, by }) => {
            const { ours, blackbox } = await agreement(`${name}{job="$job"}`, job, by, false);
            expect(Object.keys(blackbox).length, `blackbox exports ${name}`).toBeGreaterThan(0);
            expect(ours).toEqual(blackbox);
          });

          it('probe_icmp_duration_seconds: every phase the agent exports is one of blackbox’s', async () => {
            const by = ['instance', 'phase'];
            const ours = await table('probe_icmp_duration_seconds{job="$job"}', job, by);
            const blackbox = await table('probe_icmp_duration_seconds{job="$job"}', 'blackbox', by);
            expect(Object.keys(ours).sort()).toEqual([
              `127.0.0.1,resolve`,
              `127.0.0.1,rtt`,
              `${ns.ip},resolve`,
              `${ns.ip},rtt`,
            ]);
            for (const key of Object.keys(ours)) expect(blackbox).toHaveProperty([key]);
          });
        },
      );
    }

    it('the probe_* names blackbox exports here are all the agent’s but the listed few', async () => {
      const names = async (job: string): Promise<Set<string>> =>
        new Set(
          (await prom!.query(`count by (__name__) ({job="${job}",__name__=~"probe_.+"})`)).map(
            (s) => s.metric.__name__ ?? '',
          ),
        );
      const [ours, blackbox] = await Promise.all([names('faultline'), names('blackbox')]);
      const missing = [...blackbox].filter((n) => !ours.has(n)).sort();
      expect(missing).toEqual([...notExported].sort());
      for (const name of [...sameValue, ...sameLabels.map((s) => s.name)])
        expect(ours.has(name), name).toBe(true);
    });

    it('the values agree on what they say: https is ssl 1 with its TLS version, a regex failure is 1, a 404 is 404', async () => {
      const one = async (expr: string): Promise<Sample[]> => prom!.query(expr);
      const https = [...pairs.keys()].find((a) => a.startsWith('https://'))!;
      const [ssl] = await one(`probe_http_ssl{job="faultline",instance="${https}"}`);
      expect(ssl?.value[1]).toBe('1');
      const [tls] = await one(`probe_tls_version_info{job="faultline",instance="${https}"}`);
      expect(tls?.metric.version).toBe('TLS 1.3');
      const [regex] = await one('probe_failed_due_to_regex{job="faultline",target="web-regex"}');
      expect(regex?.value[1]).toBe('1');
      const [status] = await one('probe_http_status_code{job="faultline",target="web-404"}');
      expect(status?.value[1]).toBe('404');
      // The chain's CA expires before its leaf: the earliest expiry is the CA's.
      const [chainExpiry] = await one(
        'probe_ssl_earliest_cert_expiry{job="faultline",target="web-chain"}',
      );
      expect(Number(chainExpiry?.value[1])).toBe(
        Date.parse(new X509Certificate(pki.ca.cert).validTo) / 1000,
      );
      const [answers] = await one('probe_dns_answer_rrs{job="faultline",target="ns-dns"}');
      expect(answers?.value[1]).toBe('2');
      const [unmatched] = await one(
        'probe_failed_due_to_regex{job="faultline",target="expect-tcp"}',
      );
      expect(unmatched?.value[1]).toBe('1');
    });
  },
);
