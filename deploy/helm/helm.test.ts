import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { parseCollectorConfig } from '../../collector/config.js';
import { plainListenWarning } from '../../collector/connection-guard.js';
import { renderChart, type RenderOptions } from '../../test/helpers/helm-subset.js';
import {
  expectAgentPod,
  expectEnvInOrder,
  expectHealthProbes,
  expectHeapBelowLimit,
  expectRestrictedPod,
  onlyContainer,
  parseManifests,
  type K8sObject,
  type PodSpec,
  type Workload,
} from '../k8s-checks.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const chartDir = join(root, 'deploy/helm/faultline');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

/** Where the chart's copies come from: Helm reads no file outside the chart. */
const dashboardSources = join(root, 'deploy/grafana');
const rulesSource = join(root, 'deploy/prometheus/faultline-rules.yaml');
const dashboardCopies = join(chartDir, 'files/dashboards');
const rulesCopy = join(chartDir, 'files/prometheus-rules.yaml');

const hasHelm = spawnSync('sh', ['-c', 'command -v helm'], { stdio: 'ignore' }).status === 0;

const tempDirs: string[] = [];
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

const fleet = 'f'.repeat(64);
const viewer = 'v'.repeat(64);
const withTokens = { tokens: { fleet, viewer } };

/**
 * The chart rendered as `helm template` would: by the subset renderer, and where a `helm`
 * binary is on PATH by helm too, which must agree object for object.
 */
function render(opts: Partial<RenderOptions> & { chart?: string } = {}): K8sObject[] {
  const o: RenderOptions = {
    releaseName: opts.releaseName ?? 'faultline',
    namespace: opts.namespace ?? 'faultline',
    values: opts.values ?? withTokens,
  };
  const dir = opts.chart ?? chartDir;
  const objects = parseManifests(renderChart(dir, o), `${dir} rendered`);
  if (hasHelm) {
    const valuesFile = join(mkdtempSync(join(tmpdir(), 'faultline-helm-')), 'values.yaml');
    tempDirs.push(posix.dirname(valuesFile));
    // YAML 1.1, as helm reads it: "yes" stays a string.
    writeFileSync(valuesFile, stringifyYaml(o.values ?? {}, { version: '1.1' }));
    const out = execFileSync(
      'helm',
      ['template', o.releaseName, dir, '--namespace', o.namespace, '-f', valuesFile],
      { encoding: 'utf8' },
    );
    // Helm orders objects by kind (install order); compare them by identity.
    const byId = (l: K8sObject[]) =>
      [...l].sort((a, b) => {
        const ka = `${a.kind}/${a.metadata.namespace ?? ''}/${a.metadata.name}`;
        const kb = `${b.kind}/${b.metadata.namespace ?? ''}/${b.metadata.name}`;
        return ka < kb ? -1 : ka > kb ? 1 : 0;
      });
    expect(byId(parseManifests(out, 'helm template'))).toEqual(byId(objects));
  }
  return objects;
}

const ofKind = <T extends K8sObject>(objects: K8sObject[], kind: string): T[] =>
  objects.filter((o): o is T => o.kind === kind);
/** The collector's ConfigMap (the others are the Grafana dashboards of files/dashboards). */
function collectorConfigMap(objects: K8sObject[]): ConfigMapObject {
  return one<ConfigMapObject>(
    objects.filter(
      (o) =>
        o.kind !== 'ConfigMap' ||
        (o as Partial<ConfigMapObject>).data?.['collector.yaml'] !== undefined,
    ),
    'ConfigMap',
  );
}

function one<T extends K8sObject>(objects: K8sObject[], kind: string): T {
  const found = ofKind<T>(objects, kind);
  expect(
    found.map((o) => o.metadata.name),
    kind,
  ).toHaveLength(1);
  return found[0] as T;
}

/** A copy of the chart with extra files under files/ (the dashboards and rules at merge). */
function chartWith(files: Record<string, string>): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'faultline-chart-')), 'faultline');
  tempDirs.push(posix.dirname(dir));
  cpSync(chartDir, dir, { recursive: true });
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(posix.dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

type SecretObject = K8sObject & { stringData: Record<string, string> };
type ConfigMapObject = K8sObject & { data: Record<string, string> };
const podOf = (w: Workload): PodSpec => w.spec.template.spec;

/**
 * collector.yaml of the ConfigMap with the pod's mount paths moved into a stage directory
 * holding the token Secret's files, then parsed by the collector's own config loader.
 */
function loadCollectorConfig(objects: K8sObject[], tls = true) {
  const sts = one<Workload>(objects, 'StatefulSet');
  const pod = podOf(sts);
  const c = onlyContainer(pod);
  const cm = collectorConfigMap(objects);
  const secret = one<SecretObject>(objects, 'Secret');
  const stage = mkdtempSync(join(tmpdir(), 'faultline-helm-pod-'));
  tempDirs.push(stage);
  // One pass, longest path first: a staged path (itself under /tmp) is not rewritten again.
  const paths = c.volumeMounts.map((m) => m.mountPath).sort((a, b) => b.length - a.length);
  const mountPathRe = new RegExp(
    `(${paths.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})(?=/|$)`,
    'gm',
  );
  let text = (cm.data['collector.yaml'] ?? '').replace(mountPathRe, (p) => join(stage, p));
  for (const m of c.volumeMounts) {
    const volume = pod.volumes.find((v) => v.name === m.name);
    mkdirSync(join(stage, m.mountPath), { recursive: true });
    if (volume?.configMap !== undefined) {
      expect(volume.configMap.name).toBe(cm.metadata.name);
      expect(c.args).toEqual(['collector', '--config', posix.join(m.mountPath, 'collector.yaml')]);
    }
    if (volume?.secret?.secretName === secret.metadata.name) {
      for (const [k, v] of Object.entries(secret.stringData))
        writeFileSync(join(stage, m.mountPath, k), v, { mode: 0o600 });
    }
  }
  // The certificate files are not staged: their Secret is the operator's.
  if (tls) text = text.replace(/^tls:\n(?: {2}.*\n)+/m, '');
  return {
    config: parseCollectorConfig(text, 'collector.yaml'),
    raw: parseYaml(cm.data['collector.yaml'] ?? '') as Record<string, unknown>,
    stage,
  };
}

describe('Helm chart', () => {
  it('renders the collector, the agents and their Service, ServiceAccounts and token Secret', () => {
    const objects = render();
    const dashboards = ofKind<ConfigMapObject>(objects, 'ConfigMap').filter(
      (c) => c.metadata.labels?.grafana_dashboard !== undefined,
    );
    // One per dashboard of files/dashboards (deploy/grafana's), and the rest:
    expect(dashboards.length).toBe(
      readdirSync(join(chartDir, 'files', 'dashboards')).filter((f) => f.endsWith('.json')).length,
    );
    expect(
      objects
        .filter((o) => !dashboards.includes(o as ConfigMapObject))
        .map((o) => o.kind)
        .sort(),
    ).toEqual([
      'ConfigMap',
      'DaemonSet',
      'Secret',
      'Service',
      'ServiceAccount',
      'ServiceAccount',
      'StatefulSet',
    ]);
    for (const o of objects) expect(o.metadata.namespace, o.kind).toBe('faultline');
    // The chart's names are the kustomizations' (one README for both).
    expect(one(objects, 'StatefulSet').metadata.name).toBe('faultline-collector');
    expect(one(objects, 'DaemonSet').metadata.name).toBe('faultline-agent');
    // Another release name gets its own objects.
    const other = render({ releaseName: 'edge', namespace: 'mon' });
    expect(one(other, 'StatefulSet').metadata.name).toBe('edge-faultline-collector');
    for (const o of other) expect(o.metadata.namespace).toBe('mon');
  });

  it('carries the version of package.json: chart, appVersion and image', () => {
    const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as {
      version: string;
      appVersion: string;
    };
    expect(chart).toMatchObject({ version: pkg.version, appVersion: pkg.version });
    const objects = render();
    for (const w of [one<Workload>(objects, 'StatefulSet'), one<Workload>(objects, 'DaemonSet')])
      expect(onlyContainer(podOf(w)).image).toBe(`faultline:${pkg.version}`);
  });

  it('the collector: one replica of a StatefulSet, its store on a ReadWriteOnce claim, a "restricted" pod', () => {
    const objects = render();
    const sts = one<Workload>(objects, 'StatefulSet');
    expect(sts.apiVersion).toBe('apps/v1');
    expect(sts.spec.replicas).toBe(1);
    expect(sts.spec.template.metadata.labels).toMatchObject(sts.spec.selector.matchLabels);
    const claims = sts.spec.volumeClaimTemplates ?? [];
    expect(claims.map((c) => c.spec.accessModes)).toEqual([['ReadWriteOnce']]);
    const c = onlyContainer(podOf(sts));
    const dataMount = c.volumeMounts.find((m) => m.name === claims[0]?.metadata.name);
    const { raw } = loadCollectorConfig(objects);
    expect(dataMount?.mountPath).toBe(raw.dataDir);
    expectRestrictedPod(podOf(sts), [raw.dataDir as string, '/tmp']);
    expectHeapBelowLimit(c);
    expectEnvInOrder(c);
    // A changed collector.yaml changes the pod template, so the pod restarts with it.
    const changed = render({
      values: { ...withTokens, collector: { config: { probes: { interval: '7s' } } } },
    });
    expect(one<Workload>(changed, 'StatefulSet').spec.template.metadata.annotations).not.toEqual(
      sts.spec.template.metadata.annotations,
    );
  });

  it('collector.yaml loads, its tokens files of the Secret, serving TLS on the Service port', () => {
    const objects = render();
    const { config, stage } = loadCollectorConfig(objects);
    expect(config.listen).toBe('0.0.0.0:7070');
    expect(config.tokens).toEqual([{ name: 'fleet', token: fleet, revoked: false, role: 'agent' }]);
    expect(config.viewers).toEqual([{ name: 'ops', token: viewer, revoked: false }]);
    expect(config.inventory.components.map((x) => x.name)).toContain('kube-apiserver');
    expect(config.dataDir.startsWith(stage)).toBe(true);
    const cm = collectorConfigMap(objects);
    const raw = parseYaml(cm.data['collector.yaml'] ?? '') as {
      tls: { cert: string; key: string };
      tokens: { token?: string }[];
    };
    for (const t of raw.tokens) expect(t.token).toBeUndefined();
    expect(cm.data['collector.yaml']).not.toContain(fleet);
    // TLS from the kubernetes.io/tls Secret named in the values, mounted where tls: says.
    const sts = one<Workload>(objects, 'StatefulSet');
    const pod = podOf(sts);
    const tlsVolume = pod.volumes.find((v) => v.secret?.secretName === 'faultline-collector-tls');
    const tlsMount = onlyContainer(pod).volumeMounts.find((m) => m.name === tlsVolume?.name);
    expect(raw.tls).toEqual({
      cert: `${tlsMount?.mountPath}/tls.crt`,
      key: `${tlsMount?.mountPath}/tls.key`,
    });
    expect(plainListenWarning(config.listen, true)).toBeUndefined();
    const c = onlyContainer(pod);
    expectHealthProbes(c, 7070, 'HTTPS');
    const svc = one<
      K8sObject & {
        spec: {
          type: string;
          selector: Record<string, string>;
          ports: { port: number; targetPort: string }[];
        };
      }
    >(objects, 'Service');
    expect(svc.spec.type).toBe('ClusterIP');
    expect(sts.spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.ports).toEqual([expect.objectContaining({ port: 7070, targetPort: 'api' })]);
    expect(c.ports.find((p) => p.name === 'api')?.containerPort).toBe(7070);
  });

  it('the agents: a DaemonSet on the node network with NET_RAW only and the measured memory limit, reporting to the collector Service over TLS', () => {
    const objects = render({
      values: { ...withTokens, agent: { labels: { zone: 'a', rack: 'r1' } } },
    });
    const ds = one<Workload>(objects, 'DaemonSet');
    const pod = podOf(ds);
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    expect(pod.serviceAccountName).toBe(
      ofKind(objects, 'ServiceAccount').find((s) => s.metadata.name === pod.serviceAccountName)
        ?.metadata.name,
    );
    const c = onlyContainer(pod);
    const state = c.volumeMounts.find((m) => m.name === 'state');
    expectAgentPod(pod, [state?.mountPath ?? '?']);
    expectEnvInOrder(c, ['OTEL_RESOURCE_ATTRIBUTES']);
    expectHealthProbes(c, 9465);
    const args = c.args as string[];
    const flag = (name: string): string | undefined => args[args.indexOf(name) + 1];
    expect(args[0]).toBe('agent');
    const svc = one(objects, 'Service');
    expect(flag('--collector')).toBe(`https://${svc.metadata.name}.faultline.svc:7070`);
    expect(flag('--state-dir')).toBe(state?.mountPath);
    expect(flag('--metrics')).toBe('0.0.0.0:9465');
    expect(flag('--labels')).toBe('rack=r1,zone=a');
    // The token and the CA as files: never a flag or an environment variable.
    expect(args).not.toContain('--token');
    const mountOfFile = (file: string | undefined) => {
      const m = c.volumeMounts.find((v) => file?.startsWith(`${v.mountPath}/`));
      return { mount: m, volume: pod.volumes.find((v) => v.name === m?.name) };
    };
    const token = mountOfFile(flag('--token-file'));
    const secret = one<SecretObject>(objects, 'Secret');
    expect(token.volume?.secret?.secretName).toBe(secret.metadata.name);
    expect(token.volume?.secret?.items).toEqual([{ key: 'fleet.token', path: 'fleet.token' }]);
    expect(secret.stringData[posix.basename(flag('--token-file') ?? '')]).toBe(fleet);
    const ca = mountOfFile(flag('--ca-file'));
    expect(ca.volume?.secret?.secretName).toBe('faultline-collector-ca');
    for (const name of ['FAULTLINE_TOKEN', 'FAULTLINE_VIEWER_TOKEN'])
      expect(c.env.map((e) => e.name)).not.toContain(name);
  });

  it('tokens from an existing Secret, or a clear error when none is given', () => {
    const objects = render({ values: { tokens: { existingSecret: 'mine' } } });
    expect(ofKind(objects, 'Secret')).toEqual([]);
    for (const kind of ['StatefulSet', 'DaemonSet']) {
      const names = podOf(one<Workload>(objects, kind)).volumes.map((v) => v.secret?.secretName);
      expect(names, kind).toContain('mine');
    }
    expect(() =>
      renderChart(chartDir, { releaseName: 'faultline', namespace: 'faultline' }),
    ).toThrow(
      'tokens: set tokens.existingSecret (a Secret with fleet.token and viewer.token), or tokens.fleet and tokens.viewer',
    );
    if (hasHelm) {
      const run = spawnSync('helm', ['template', 'faultline', chartDir], { encoding: 'utf8' });
      expect(run.status).not.toBe(0);
      expect(run.stderr).toContain('tokens: set tokens.existingSecret');
    }
  });

  it('collector.config leaves the chart’s keys alone: a clear error otherwise', () => {
    for (const key of ['listen', 'tls', 'dataDir', 'tokens', 'viewers']) {
      expect(() =>
        renderChart(chartDir, {
          releaseName: 'faultline',
          namespace: 'faultline',
          values: { ...withTokens, collector: { config: { [key]: 'x' } } },
        }),
      ).toThrow(
        "collector.config: listen, tls, dataDir, tokens and viewers are the chart's (collector.port, tls.*, tokens.*); leave them out",
      );
    }
  });

  it('tls.enabled false: plain HTTP everywhere, and no CA asked for', () => {
    const objects = render({ values: { ...withTokens, tls: { enabled: false } } });
    const { config } = loadCollectorConfig(objects, false);
    expect(config.tls).toBeUndefined();
    const sts = onlyContainer(podOf(one<Workload>(objects, 'StatefulSet')));
    expectHealthProbes(sts, 7070, 'HTTP');
    const args = onlyContainer(podOf(one<Workload>(objects, 'DaemonSet'))).args as string[];
    expect(args[args.indexOf('--collector') + 1]).toMatch(/^http:\/\//);
    expect(args).not.toContain('--ca-file');
  });

  it('a ServiceMonitor for the collector and a PodMonitor for the agents, on ports that exist', () => {
    const objects = render({
      values: {
        ...withTokens,
        monitoring: {
          serviceMonitor: { enabled: true, labels: { release: 'kps' } },
          podMonitor: { enabled: true, labels: { release: 'kps' } },
        },
      },
    });
    type Monitor = K8sObject & {
      spec: {
        selector: { matchLabels: Record<string, string> };
        endpoints?: {
          port: string;
          path: string;
          scheme?: string;
          tlsConfig?: { serverName: string; ca: { secret: { name: string; key: string } } };
        }[];
        podMetricsEndpoints?: { port: string; path: string }[];
      };
    };
    const sm = one<Monitor>(objects, 'ServiceMonitor');
    const pm = one<Monitor>(objects, 'PodMonitor');
    for (const m of [sm, pm]) {
      expect(m.apiVersion).toBe('monitoring.coreos.com/v1');
      expect(m.metadata.labels).toMatchObject({ release: 'kps' });
    }
    const svc = one<K8sObject & { spec: { ports: { name: string }[] } }>(objects, 'Service');
    expect(svc.metadata.labels).toMatchObject(sm.spec.selector.matchLabels);
    expect(sm.spec.endpoints).toHaveLength(1);
    const ep = sm.spec.endpoints?.[0];
    expect(svc.spec.ports.map((p) => p.name)).toContain(ep?.port);
    expect(ep).toMatchObject({ path: '/metrics', scheme: 'https' });
    expect(ep?.tlsConfig).toEqual({
      serverName: 'faultline-collector.faultline.svc',
      ca: { secret: { name: 'faultline-collector-ca', key: 'ca.crt' } },
    });
    const ds = one<Workload>(objects, 'DaemonSet');
    expect(ds.spec.template.metadata.labels).toMatchObject(pm.spec.selector.matchLabels);
    const agentPorts = onlyContainer(podOf(ds)).ports.map((p) => p.name);
    for (const e of pm.spec.podMetricsEndpoints ?? []) {
      expect(agentPorts).toContain(e.port);
      expect(e.path).toBe('/metrics');
    }
    // Off by default: their CRDs may not be installed.
    expect(ofKind(render(), 'ServiceMonitor')).toEqual([]);
    expect(ofKind(render(), 'PodMonitor')).toEqual([]);
  });

  it('the Grafana dashboards as one ConfigMap each, with the sidecar label, content as in files/dashboards', () => {
    const fleetJson = `${JSON.stringify({ title: 'Faultline fleet', panels: [{ id: 1 }] }, null, 2)}\n`;
    const pathJson = `${JSON.stringify({ title: 'Faultline path', panels: [] }, null, 2)}\n`;
    const chart = chartWith({
      'files/dashboards/faultline-fleet.json': fleetJson,
      'files/dashboards/faultline-path.json': pathJson,
      'files/dashboards/notes.txt': 'not a dashboard',
    });
    const cms = ofKind<ConfigMapObject>(render({ chart }), 'ConfigMap').filter(
      (c) => c.metadata.labels?.grafana_dashboard !== undefined,
    );
    expect(cms.map((c) => c.metadata.name)).toEqual([
      'faultline-dashboard-faultline-fleet',
      'faultline-dashboard-faultline-path',
    ]);
    for (const cm of cms) expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    expect(cms[0]?.data).toEqual({ 'faultline-fleet.json': fleetJson.trimEnd() });
    expect(JSON.parse(cms[1]?.data['faultline-path.json'] ?? '')).toEqual(JSON.parse(pathJson));
    // Another sidecar label, folder annotation and namespace, as kube-prometheus-stack may use.
    const other = ofKind<ConfigMapObject>(
      render({
        chart,
        values: {
          ...withTokens,
          grafana: {
            dashboards: {
              label: 'grafana_dash',
              labelValue: 'yes',
              namespace: 'monitoring',
              annotations: { grafana_folder: 'Faultline' },
            },
          },
        },
      }),
      'ConfigMap',
    ).filter((c) => c.metadata.labels?.grafana_dash !== undefined);
    expect(other).toHaveLength(2);
    for (const cm of other) {
      expect(cm.metadata.labels?.grafana_dash).toBe('yes');
      expect(cm.metadata.namespace).toBe('monitoring');
      expect(cm.metadata.annotations).toEqual({ grafana_folder: 'Faultline' });
    }
    const off = render({
      chart,
      values: { ...withTokens, grafana: { dashboards: { enabled: false } } },
    });
    expect(ofKind(off, 'ConfigMap')).toHaveLength(1);
  });

  it('the PrometheusRule holds files/prometheus-rules.yaml as its spec', () => {
    const rules = [
      '# a plain Prometheus rules file',
      'groups:',
      '  - name: faultline',
      '    rules:',
      '      - alert: FaultlineNotHealthy',
      '        expr: faultline_diagnosis_healthy == 0',
      '        for: 1m',
      '        annotations:',
      '          summary: |',
      '            {{ $labels.instance }} says the system is not healthy',
      '',
    ].join('\n');
    const chart = chartWith({ 'files/prometheus-rules.yaml': rules });
    const values = {
      ...withTokens,
      monitoring: { prometheusRule: { enabled: true, labels: { release: 'kps' } } },
    };
    const rule = one<K8sObject & { spec: unknown }>(render({ chart, values }), 'PrometheusRule');
    expect(rule.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(rule.metadata.labels).toMatchObject({ release: 'kps' });
    expect(rule.spec).toEqual(parseYaml(rules));
    // Off by default; and nothing when the chart holds no rules file.
    expect(ofKind(render({ chart }), 'PrometheusRule')).toEqual([]);
    expect(ofKind(render({ values }), 'PrometheusRule')).toEqual(
      existsSync(rulesCopy) ? [expect.anything()] : [],
    );
  });

  it('its copies of the dashboards and rules are byte for byte those under deploy/', () => {
    const sources = existsSync(dashboardSources)
      ? readdirSync(dashboardSources)
          .filter((f) => f.endsWith('.json'))
          .sort()
      : [];
    const copies = readdirSync(dashboardCopies)
      .filter((f) => f.endsWith('.json'))
      .sort();
    // Every dashboard of deploy/grafana/ is shipped, and nothing else.
    expect(copies).toEqual(sources);
    for (const f of sources) {
      expect(
        readFileSync(join(dashboardCopies, f)).equals(readFileSync(join(dashboardSources, f))),
        f,
      ).toBe(true);
    }
    expect(existsSync(rulesCopy)).toBe(existsSync(rulesSource));
    if (existsSync(rulesSource))
      expect(readFileSync(rulesCopy).equals(readFileSync(rulesSource))).toBe(true);
  });

  it.runIf(hasHelm)('passes helm lint', () => {
    const run = spawnSync(
      'helm',
      ['lint', chartDir, '--set', `tokens.fleet=${fleet},tokens.viewer=${viewer}`],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });
});
