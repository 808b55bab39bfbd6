import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { cliPath, ensureBuilt, repoRoot } from '../helpers/cli.js';
import { CollectorProcess } from '../helpers/collector-process.js';
import { OtlpReceiver } from '../helpers/otlp-receiver.js';
import { pollUntil } from '../../lab/poll-until.js';
import { prometheusBin, startPrometheus, type TestPrometheus } from '../../lab/prometheus.js';
import { diesWithParent, freePort } from '../../lab/server-process.js';
import { TestPki } from '../helpers/tls.js';
import { viewersYaml } from '../helpers/viewer.js';

/**
 * The Grafana dashboards (deploy/grafana/*.json) and the Prometheus rules
 * (deploy/prometheus/) against a real Prometheus that scrapes a real collector and a real
 * agent (the collector's plan: real local targets, some failing). Every panel query of
 * every dashboard — found by walking the JSON, so a new panel is covered without touching
 * this file — is run through Prometheus' HTTP API with the dashboard variables filled in,
 * and must return data; every rule must be healthy, and one must fire for the failing
 * target.
 */

const grafanaDir = join(repoRoot, 'deploy/grafana');
const rulesFile = join(repoRoot, 'deploy/prometheus/faultline-rules.yaml');
const ruleManifest = join(repoRoot, 'deploy/prometheus/faultline-prometheusrule.yaml');
const token = randomBytes(16).toString('hex');
const prefix = `fl-grafana-${process.pid}-`;
const dirs: string[] = [];
function tempDir(name: string): string {
  const d = mkdtempSync(join(tmpdir(), `${prefix}${name}-`));
  dirs.push(d);
  return d;
}

interface Target {
  readonly expr?: string;
  readonly refId?: string;
}
interface Panel {
  readonly id?: number;
  readonly type?: string;
  readonly title?: string;
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}
interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query?: string | { readonly query?: string };
}
interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly Variable[] };
  readonly annotations?: { readonly list: readonly { readonly expr?: string }[] };
}

const dashboards: { file: string; doc: Dashboard }[] = readdirSync(grafanaDir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((file) => ({
    file,
    doc: JSON.parse(readFileSync(join(grafanaDir, file), 'utf8')) as Dashboard,
  }));

/** Every panel with queries, rows' panels included. */
function panelsOf(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [
    ...(p.targets !== undefined && p.targets.length > 0 ? [p] : []),
    ...panelsOf(p.panels ?? []),
  ]);
}

/** Grafana's built-in interval variables, as Grafana would fill them at a 1 s scrape. */
const builtins: Record<string, string> = {
  __rate_interval: '1m',
  __interval: '15s',
  __range: '5m',
};

/** `expr` with `$name` and `${name}` replaced from `values` (built-ins included). */
function substitute(expr: string, values: Readonly<Record<string, string>>): string {
  const all = { ...builtins, ...values };
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const name = braced ?? bare ?? '';
    const v = all[name];
    if (v === undefined) throw new Error(`unknown dashboard variable ${whole} in ${expr}`);
    return v;
  });
}

/** `label_values(selector, label)` → a PromQL query with one series per value. */
function labelValuesQuery(q: string): { expr: string; label: string } {
  const m = /^label_values\((.*),\s*(\w+)\)$/.exec(q.trim());
  if (m === null) throw new Error(`unsupported variable query ${q}`);
  return { expr: `group by (${m[2]!}) (${m[1]!})`, label: m[2]! };
}

describe.runIf(existsBinary(prometheusBin))('Grafana dashboards and Prometheus rules', () => {
  let collector: CollectorProcess | undefined;
  let agent: ChildProcess | undefined;
  let agentLog = '';
  let prom: TestPrometheus | undefined;
  let receiver: OtlpReceiver | undefined;
  let pki: TestPki | undefined;
  const servers: (NetServer | HttpServer | HttpsServer)[] = [];
  let agentMetricsPort = 0;
  let collectorPort = 0;

  /** Paths of the plan the per-path dashboard is tried with: echo, https, a refused port. */
  const paths = {
    icmp: { agent: 'prober', target: 'web/icmp', kind: 'icmp' },
    https: { agent: 'prober', target: 'secure/site/http', kind: 'http' },
    http: { agent: 'prober', target: 'web/site/http', kind: 'http' },
    refused: { agent: 'prober', target: 'db/postgres/tcp', kind: 'tcp' },
  };

  beforeAll(async () => {
    ensureBuilt();
    const listen = async <S extends NetServer | HttpServer | HttpsServer>(
      s: S,
    ): Promise<number> => {
      servers.push(s);
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      return (s.address() as { port: number }).port;
    };
    // A port nobody listens on: connections to it are refused.
    const closedPort = await freePort();
    // The prober resets its connections: a reset socket is no failure of the test.
    const tcpPort = await listen(
      createNetServer((sock) => {
        sock.on('error', () => undefined);
        sock.end();
      }),
    );
    const httpPort = await listen(createHttpServer((_req, res) => res.writeHead(200).end('ok')));
    pki = await TestPki.create();
    const cert = await pki.issue({ cn: 'secure.test', sans: ['DNS:secure.test', 'IP:127.0.0.1'] });
    const httpsPort = await listen(
      createHttpsServer({ key: cert.key, cert: cert.cert }, (_req, res) =>
        res.writeHead(200).end('ok'),
      ),
    );

    const dir = tempDir('collector');
    collectorPort = await freePort();
    const config = join(dir, 'collector.yaml');
    writeFileSync(
      config,
      [
        `listen: 127.0.0.1:${collectorPort}`,
        `dataDir: ${join(dir, 'data')}`,
        'tokens:',
        `  - { name: fleet, token: ${token} }`,
        ...viewersYaml,
        'probes:',
        '  interval: 1s',
        '  mesh: false',
        'inventory:',
        '  components:',
        '    - name: web',
        '      address: 127.0.0.1',
        '      role: web',
        '      labels: { zone: a }',
        '      services:',
        `        - { name: site, kind: http, port: ${httpPort}, path: / }`,
        `        - { name: api, kind: tcp, port: ${tcpPort} }`,
        '    - name: secure',
        '      address: 127.0.0.1',
        '      role: web',
        '      labels: { zone: a }',
        `      services: [{ name: site, kind: http, port: ${httpsPort}, path: /, tls: true }]`,
        '    - name: db',
        '      address: 127.0.0.1',
        '      role: database',
        '      labels: { zone: b }',
        `      services: [{ name: postgres, kind: tcp, port: ${closedPort} }]`,
        '',
      ].join('\n'),
    );
    // Both push OTLP too (the OTLP panel reads faultline_otlp_exports_total).
    receiver = await OtlpReceiver.start();
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_METRIC_EXPORT_INTERVAL: '1000' };
    Object.assign(process.env, otel);
    try {
      collector = await CollectorProcess.start(config, `http://127.0.0.1:${collectorPort}`);
    } finally {
      for (const k of Object.keys(otel)) delete process.env[k];
    }
    agentMetricsPort = await freePort();
    // The dashboards' per-phase panel reads the opt-in series (per-target histograms, every
    // blackbox series): the agent exports them here, as its README says to for that panel.
    const agentConfig = join(tempDir('agent'), 'agent.yaml');
    writeFileSync(
      agentConfig,
      [
        'agent: { name: prober }',
        `metrics: { listen: "127.0.0.1:${agentMetricsPort}", histograms: true, blackbox: full }`,
        `collector: { url: "${collector.url}", token: "${token}", stateDir: "${tempDir('state')}" }`,
        '',
      ].join('\n'),
    );
    const [cmd, args] = diesWithParent(process.execPath, [
      cliPath,
      'agent',
      '--config',
      agentConfig,
    ]);
    agent = spawn(cmd, args, {
      env: { ...process.env, ...otel, FAULTLINE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    agent.stderr?.on('data', (d: Buffer) => (agentLog = (agentLog + d.toString()).slice(-8000)));

    // `for:` shortened to 1 s: the rules are the file's, the test need not wait out holds.
    const rules = readFileSync(rulesFile, 'utf8').replace(/^(\s+for:) .*$/gm, '$1 1s');
    prom = await startPrometheus(
      [`127.0.0.1:${collectorPort}`, `127.0.0.1:${agentMetricsPort}`],
      1,
      { rules },
    );
  }, 90_000);

  afterAll(async () => {
    if (agent?.pid !== undefined && agent.exitCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      process.kill(agent.pid, 'SIGKILL');
      await exited;
    }
    await collector?.kill();
    await prom?.stop();
    await receiver?.close();
    for (const s of servers) await new Promise((r) => s.close(r));
    await pki?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** Waits until Prometheus has what the queries read: failures, a cert, rates. */
  async function seriesReady(): Promise<void> {
    const p = prom!;
    const need = [
      'faultline_path_state{target="db/postgres/tcp",state="failing"}',
      `probe_ssl_earliest_cert_expiry{target="${paths.https.target}"}`,
      `faultline_probe_icmp_loss_ratio{target="${paths.icmp.target}"}`,
      'faultline_otlp_exports_total{outcome="success"}',
      'faultline_diagnosis_hypothesis_confidence',
      // Rates over [1m] need two samples of a counter that moved.
      'rate(faultline_probe_results_total[1m]) > 0',
      'rate(faultline_ingest_batches_total[1m]) > 0',
    ];
    await pollUntil(
      'Prometheus has scraped failing paths, a certificate, echo loss and rates',
      async () => {
        if (agent?.exitCode !== null) throw new Error(`agent exited: ${agentLog}`);
        for (const q of need) if ((await p.query(q)).length === 0) return false;
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  }

  it('the dashboards are well-formed: a Prometheus datasource variable, every query on it, unique panel ids', () => {
    expect(dashboards.map((d) => d.file)).toEqual(['faultline-fleet.json', 'faultline-path.json']);
    for (const { file, doc } of dashboards) {
      const ds = doc.templating.list.find((v) => v.type === 'datasource');
      expect(ds, file).toMatchObject({ name: 'datasource', query: 'prometheus' });
      const all = panelsOf(doc.panels);
      expect(all.length, file).toBeGreaterThan(5);
      for (const p of all) {
        expect(p.datasource, `${file}: ${p.title}`).toEqual({
          type: 'prometheus',
          uid: '${datasource}',
        });
        for (const t of p.targets ?? []) expect(t.expr, `${file}: ${p.title}`).toBeTruthy();
      }
      const ids = [...doc.panels, ...doc.panels.flatMap((p) => p.panels ?? [])].map((p) => p.id);
      expect(new Set(ids).size, file).toBe(ids.length);
    }
  });

  it('the rules file passes promtool, and the PrometheusRule carries the same groups', () => {
    const out = execFileSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
    const plain = YAML.parse(readFileSync(rulesFile, 'utf8')) as { groups: unknown };
    const manifest = YAML.parse(readFileSync(ruleManifest, 'utf8')) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string };
      spec: { groups: unknown };
    };
    expect(manifest).toMatchObject({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: 'faultline' },
    });
    expect(manifest.spec.groups).toEqual(plain.groups);
  });

  it('every panel query of the fleet dashboard returns data from a Prometheus scraping a real collector and agent', async () => {
    await seriesReady();
    const { doc } = dashboards.find((d) => d.file === 'faultline-fleet.json')!;
    const empty: string[] = [];
    let ran = 0;
    for (const p of panelsOf(doc.panels)) {
      for (const t of p.targets ?? []) {
        const expr = substitute(t.expr!, { datasource: 'prometheus' });
        ran++;
        if ((await prom!.query(expr)).length === 0) empty.push(`${p.title} [${t.refId}]: ${expr}`);
      }
    }
    expect(empty).toEqual([]);
    expect(ran).toBeGreaterThan(10);
    // The OTLP panel's data is real pushes: both processes reached the receiver.
    const services = new Set(receiver!.exports.map((e) => e.resource['service.name']));
    expect([...services].sort()).toEqual(['faultline-agent', 'faultline-collector']);
    expect(receiver!.errors).toEqual([]);
    // Annotations are queries too: they must at least be valid PromQL.
    for (const a of doc.annotations?.list ?? [])
      if (a.expr !== undefined) await prom!.query(substitute(a.expr, {}));
  }, 90_000);

  it('every panel query of the per-path dashboard returns data for a path it is about, with the variables its own queries list', async () => {
    await seriesReady();
    const { doc } = dashboards.find((d) => d.file === 'faultline-path.json')!;
    // The variables: each one's query lists the value the test picks.
    const chosen = paths.https;
    for (const v of doc.templating.list.filter((x) => x.type === 'query')) {
      const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
      const { expr, label } = labelValuesQuery(substitute(q, chosen));
      const values = (await prom!.query(expr)).map((r) => r.metric[label]);
      expect(values, `variable ${v.name}`).toContain(chosen[v.name as keyof typeof chosen]);
    }
    // A panel about echo loss has data for an echo path, certificate expiry for an https
    // one, the collector's view for a failing one: each query must have data for one of them.
    const empty: string[] = [];
    for (const p of panelsOf(doc.panels)) {
      for (const t of p.targets ?? []) {
        let found = false;
        for (const vars of Object.values(paths)) {
          const expr = substitute(t.expr!, { datasource: 'prometheus', ...vars });
          if ((await prom!.query(expr)).length > 0) {
            found = true;
            break;
          }
        }
        if (!found) empty.push(`${p.title} [${t.refId}]: ${t.expr}`);
      }
    }
    expect(empty).toEqual([]);
    // The https path alone fills the latency, phases and certificate panels.
    for (const title of ['Latency against baseline', 'Phases', 'Certificate expiry']) {
      const p = panelsOf(doc.panels).find((x) => x.title === title)!;
      for (const t of p.targets ?? []) {
        const expr = substitute(t.expr!, { datasource: 'prometheus', ...paths.https });
        expect((await prom!.query(expr)).length, `${title}: ${expr}`).toBeGreaterThan(0);
      }
    }
  }, 90_000);

  it('every rule is loaded and healthy, and one fires for the refused target', async () => {
    await seriesReady();
    const base = prom!.url;
    const firing = await pollUntil(
      'FaultlineTargetFailing firing for db/postgres/tcp',
      async () => {
        const res = (await (await fetch(`${base}/api/v1/alerts`)).json()) as {
          data: { alerts: { labels: Record<string, string>; state: string }[] };
        };
        return res.data.alerts.find(
          (a) =>
            a.state === 'firing' &&
            a.labels.alertname === 'FaultlineTargetFailing' &&
            a.labels.target === 'db/postgres/tcp',
        );
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    expect(firing.labels).toMatchObject({ component: 'db', kind: 'tcp', class: 'tcp_refused' });
    const rules = (await (await fetch(`${base}/api/v1/rules`)).json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    const declared = (
      YAML.parse(readFileSync(rulesFile, 'utf8')) as { groups: { rules: { alert: string }[] }[] }
    ).groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(loaded.map((r) => r.name).sort()).toEqual([...declared].sort());
    for (const r of loaded) expect(r, r.name).toMatchObject({ health: 'ok' });
  }, 60_000);
});

function existsBinary(path: string): boolean {
  try {
    execFileSync(path, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
