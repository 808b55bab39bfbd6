import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, runCli } from '../helpers/cli.js';
import { canUseNetns, TestNet, type TestHost } from '../../lab/netns.js';
import { OtlpReceiver } from '../helpers/otlp-receiver.js';
import { pollUntil } from '../../lab/poll-until.js';
import { startPrometheus, type TestPrometheus } from '../../lab/prometheus.js';
import { freePort } from '../../lab/server-process.js';

/** A real agent process, started through the CLI as an operator would. */
class AgentProcess {
  stderr = '';
  readonly exited: Promise<number | null>;
  private constructor(readonly child: ChildProcess) {
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }
  static start(configPath: string, env: NodeJS.ProcessEnv = {}): AgentProcess {
    const child = spawn(process.execPath, [cliPath, 'agent', '--config', configPath], {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return new AgentProcess(child);
  }
  logLines(): Array<Record<string, unknown>> {
    return this.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  signal(sig: NodeJS.Signals): void {
    if (this.child.pid !== undefined && this.child.exitCode === null)
      process.kill(this.child.pid, sig);
  }
  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return res.text();
}

describe.runIf(canUseNetns)('faultline agent, for real', () => {
  let net: TestNet;
  let web: TestHost;
  let walled: TestHost;
  let dir: string;
  let prom: TestPrometheus | undefined;
  let receiver: OtlpReceiver;
  let agent: AgentProcess | undefined;
  let metricsPort: number;

  function config(extraTargets = ''): string {
    return `
agent:
  name: app-1
  labels: { zone: a, switch: sw-1 }
metrics:
  listen: 127.0.0.1:${metricsPort}
  histograms: true
  blackbox: full
defaults:
  interval: 1s
  timeout: 600ms
targets:
  - name: web-icmp
    kind: icmp
    address: ${web.ip}
    labels: { zone: b, switch: sw-2, role: api }
  - name: web-tcp
    kind: tcp
    address: ${web.ip}:8080
    labels: { zone: b, switch: sw-2, role: api }
  - name: web-http
    kind: http
    address: http://${web.ip}:8080/healthz
    labels: { zone: b, switch: sw-2, role: api }
  - name: web-closed
    kind: tcp
    address: ${web.ip}:9
    labels: { zone: b }
  - name: walled-tcp
    kind: tcp
    address: ${walled.ip}:5432
    labels: { zone: c, role: database }
${extraTargets}`;
  }

  beforeAll(async () => {
    ensureBuilt();
    net = await TestNet.create();
    web = await net.addHost('web');
    walled = await net.addHost('walled');
    // A real HTTP service inside the web host.
    net.spawn(web, process.execPath, [
      '-e',
      "require('http').createServer((q,s)=>s.end('ok')).listen(8080,'0.0.0.0')",
    ]);
    await net.nft(
      walled,
      'table inet fltest { chain input { type filter hook input priority 0; tcp dport 5432 drop; }; }',
    );
    await pollUntil('web service up', async () => (await fetch(`http://${web.ip}:8080/`)).ok);
    dir = mkdtempSync(join(tmpdir(), 'faultline-agent-e2e-'));
    metricsPort = await freePort();
    writeFileSync(join(dir, 'agent.yaml'), config());
    receiver = await OtlpReceiver.start();
    agent = AgentProcess.start(join(dir, 'agent.yaml'), {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      // Long enough that only the shutdown flush delivers.
      OTEL_METRIC_EXPORT_INTERVAL: '600000',
    });
    await pollUntil(
      'agent metrics endpoint',
      async () => (await scrape(metricsPort)).includes('probe_success'),
      {
        timeoutMs: 15_000,
      },
    );
  }, 60_000);

  afterAll(async () => {
    await agent?.kill();
    await prom?.stop();
    await receiver?.close();
    await net?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('Prometheus scrapes it: PromQL finds healthy paths, the failing ones, and their failure classes', async () => {
    prom = await startPrometheus([`127.0.0.1:${metricsPort}`]);
    const p = prom;
    const success = await pollUntil(
      'all five paths in Prometheus',
      async () => {
        const r = await p.query('probe_success{job="faultline"}');
        return r.length === 5 ? r : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    const byTarget: Record<string, (typeof success)[number]> = Object.fromEntries(
      success.map((s) => [s.metric.target ?? '', s]),
    );
    expect(byTarget['web-http']?.value[1]).toBe('1');
    expect(byTarget['web-icmp']?.value[1]).toBe('1');
    expect(byTarget['web-tcp']?.value[1]).toBe('1');
    expect(byTarget['web-closed']?.value[1]).toBe('0');
    expect(byTarget['walled-tcp']?.value[1]).toBe('0');
    expect(byTarget['web-http']?.metric).toMatchObject({
      agent: 'app-1',
      kind: 'http',
      zone: 'b',
      switch: 'sw-2',
      role: 'api',
    });

    const failing = await p.query('faultline_probe_state{class!="ok"} == 1');
    expect(Object.fromEntries(failing.map((s) => [s.metric.target, s.metric.class]))).toEqual({
      'web-closed': 'tcp_refused',
      'walled-tcp': 'tcp_timeout',
    });

    // Phase timings of the HTTP path are there as a histogram with a phase label.
    const phases = await p.query(
      'count by (phase) (faultline_probe_duration_seconds_count{target="web-http"})',
    );
    expect(phases.map((s) => s.metric.phase).sort()).toEqual(
      expect.arrayContaining(['connect', 'first_byte', 'total']),
    );
    const rtt = await p.query('probe_icmp_duration_seconds{target="web-icmp",phase="rtt"}');
    expect(Number(rtt[0]?.value[1])).toBeGreaterThan(0);
    expect(Number(rtt[0]?.value[1])).toBeLessThan(0.05);
    // The agent's own health.
    const lag = await p.query('faultline_agent_schedule_lag_seconds_count');
    expect(Number(lag[0]?.value[1])).toBeGreaterThan(0);
  }, 40_000);

  it('SIGHUP with a broken config is refused and the running config kept; a good one is applied', async () => {
    const a = agent!;
    const file = join(dir, 'agent.yaml');
    writeFileSync(
      file,
      config().replace(
        'kind: tcp\n    address: ' + web.ip + ':8080',
        'kind: tcp\n    address: "-x"',
      ),
    );
    a.signal('SIGHUP');
    const refused = await pollUntil('reload refused log line', () =>
      a
        .logLines()
        .find((l) => l.msg === 'configuration reload refused; keeping the running configuration'),
    );
    expect(refused.reason).toMatch(/agent\.yaml:\d+:\d+: targets\[1\]\.address: .*-x/);
    // Still probing the old targets.
    const before = await scrape(metricsPort);
    expect(before).toContain('target="web-tcp"');

    writeFileSync(
      file,
      config(`  - name: web-extra\n    kind: tcp\n    address: ${web.ip}:8080\n`),
    );
    a.signal('SIGHUP');
    await pollUntil(
      'new target probed',
      async () =>
        (await scrape(metricsPort)).includes('probe_success{agent="app-1",target="web-extra"'),
      {
        timeoutMs: 10_000,
      },
    );
    expect(a.child.exitCode).toBeNull();
  }, 30_000);

  it('SIGTERM finishes, flushes the last metrics over OTLP, and exits 0', async () => {
    const a = agent!;
    a.signal('SIGTERM');
    expect(await a.exited).toBe(0);
    agent = undefined;
    expect(receiver.errors).toEqual([]);
    const point = receiver.latest('faultline.probe.results', {
      target: 'walled-tcp',
      class: 'tcp_timeout',
    });
    expect(point?.point.value).toBeGreaterThan(0);
    expect(receiver.exports[0]?.resource['service.name']).toBe('faultline-agent');
    const stopped = a.logLines().find((l) => l.msg === 'agent stopped');
    expect(stopped).toBeDefined();
    // One state-change line per failing path, not one per round.
    const failingLines = a
      .logLines()
      .filter((l) => l.msg === 'path failing' && l.target === 'walled-tcp');
    expect(failingLines).toHaveLength(1);
  }, 20_000);
});

describe('faultline agent: bad configs', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'faultline-agent-cfg-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('an invalid config at start exits 2 naming file, line, path and what was expected', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'agent:\n  name: a\ntargets:\n  - name: x\n    kind: tcp\n    address: db\n    intervl: 1s\n',
    );
    const r = await runCli(['agent', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:6:14: targets[0].address:`);
    expect(r.stderr).toContain('port is missing');
    expect(r.stderr).toContain(
      `${file}:7:5: targets[0].intervl: unknown key "intervl" (did you mean "interval"?)`,
    );
  });

  it('--check-config validates without starting', async () => {
    const r = await runCli(['agent', '--config', 'deploy/examples/agent.yaml', '--check-config']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/valid — agent app-1, \d+ targets/);
  });
});
