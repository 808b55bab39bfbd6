import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, normalize, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { defaultStopGraceMs } from '../agent/agent.js';
import { defaultMetricsListen, parseAgentConfig } from '../agent/config.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

const unitFile = 'deploy/systemd/faultline-agent.service';
const dockerfile = 'deploy/docker/Dockerfile';
const dockerignore = 'deploy/docker/Dockerfile.dockerignore';
const manifestFile = 'deploy/kubernetes/agent-daemonset.yaml';

const pkg = JSON.parse(read('package.json')) as { version: string; bin: Record<string, string> };
const binPath = pkg.bin.faultline ?? '';

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-deploy-'));
  tempDirs.push(dir);
  return dir;
}

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

// --- systemd ------------------------------------------------------------------------------

/** A unit file as section → key → values (a key may repeat, as ExecReload does). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header !== null) {
      current = new Map();
      sections.set(header[1] ?? '', current);
      continue;
    }
    const eq = line.indexOf('=');
    if (current === undefined || eq < 0) throw new Error(`unparsable unit line: ${line}`);
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

const unitText = read(unitFile);
const unit = parseUnit(unitText);
const service = unit.get('Service') ?? new Map<string, string[]>();
/** The last value of a [Service] key (later assignments win in systemd). */
const svc = (key: string): string | undefined => service.get(key)?.at(-1);

/** The unit as systemd-analyze should see it: as written, unless this machine keeps node elsewhere. */
function unitForAnalyze(text: string): string {
  if (existsSync('/usr/bin/node')) {
    if (text === unitText) return join(root, unitFile);
  } else {
    text = text.replaceAll('/usr/bin/node ', `${process.execPath} `);
  }
  const path = join(tempDir(), 'faultline-agent.service');
  writeFileSync(path, text);
  return path;
}

const hasSystemdAnalyze = process.platform === 'linux' && onPath('systemd-analyze');

describe('systemd unit', () => {
  it('runs the built CLI on the config in its ConfigurationDirectory, as the agent expects', () => {
    const [node, script, ...args] = (svc('ExecStart') ?? '').split(/\s+/);
    expect(node).toBe('/usr/bin/node');
    expect(script?.endsWith(`/${binPath}`)).toBe(true);
    const configDir = `/etc/${svc('ConfigurationDirectory')}`;
    expect(args).toEqual(['agent', '--config', `${configDir}/agent.yaml`]);
    // Reload validates first (so `systemctl reload` reports a bad file), then sends SIGHUP.
    expect(service.get('ExecReload')).toEqual([
      `${node} ${script} agent --check-config --config ${configDir}/agent.yaml`,
      '/bin/kill -HUP $MAINPID',
    ]);
    expect(svc('Restart')).toBe('on-failure');
    expect(svc('KillMode')).toBe('mixed');
    expect(Number.parseInt(svc('TimeoutStopSec') ?? '', 10)).toBeGreaterThan(
      defaultStopGraceMs / 1000 + 5,
    );
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('is sandboxed, without the settings that would break Node or raw sockets', () => {
    expect(svc('DynamicUser')).toBe('yes');
    expect(svc('ProtectSystem')).toBe('strict');
    expect(svc('ProtectHome')).toBe('yes');
    expect(svc('PrivateTmp')).toBe('yes');
    expect(svc('StateDirectory')).toBe('faultline');
    expect(svc('RestrictAddressFamilies')).toBe('AF_INET AF_INET6 AF_UNIX AF_NETLINK');
    expect(svc('SystemCallFilter')).toBe('@system-service');
    expect(svc('SystemCallErrorNumber')).toBe('EPERM');
    expect(svc('MemoryMax')).toMatch(/^\d+M$/);
    // V8's JIT needs W+X pages; a user namespace's CAP_NET_RAW opens no raw socket on the host.
    expect(service.has('MemoryDenyWriteExecute')).toBe(false);
    expect(service.has('PrivateUsers')).toBe(false);
    expect(service.has('PrivateNetwork')).toBe(false);
  });

  it.runIf(hasSystemdAnalyze)('passes systemd-analyze verify without a warning', () => {
    const ok = spawnSync('systemd-analyze', ['verify', unitForAnalyze(unitText)], {
      encoding: 'utf8',
    });
    expect(ok.stderr.trim()).toBe('');
    expect(ok.status).toBe(0);

    // The check above is not vacuous: a misspelt setting only warns (exit 0), so the test
    // must read stderr, and a missing binary fails.
    const typo = spawnSync(
      'systemd-analyze',
      ['verify', unitForAnalyze(unitText.replace('ProtectSystem=', 'ProtectSytem='))],
      { encoding: 'utf8' },
    );
    expect(typo.stderr).toContain("Unknown key 'ProtectSytem'");
    const noBinary = spawnSync(
      'systemd-analyze',
      [
        'verify',
        unitForAnalyze(unitText.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node')),
      ],
      { encoding: 'utf8' },
    );
    expect(noBinary.status).not.toBe(0);
  });

  it.runIf(hasSystemdAnalyze)(
    'rates "OK" or better on systemd-analyze security --offline',
    (ctx) => {
      const run = spawnSync(
        'systemd-analyze',
        ['security', '--offline=yes', '--threshold=25', unitForAnalyze(unitText)],
        { encoding: 'utf8' },
      );
      // --offline arrived in systemd 250.
      if (/unrecognized option|unknown option/i.test(run.stderr)) ctx.skip();
      const m = /Overall exposure level for faultline-agent\.service: ([\d.]+) (\S+)/.exec(
        run.stdout,
      );
      expect(m, run.stdout + run.stderr).not.toBeNull();
      console.log(`systemd-analyze security: exposure ${m?.[1]} ${m?.[2]} (0 best, 10 worst)`);
      expect(Number(m?.[1])).toBeLessThanOrEqual(2.5);
      expect(run.status).toBe(0);
    },
  );
});

// --- the capability model, as the kernel applies it --------------------------------------

interface Privileges {
  uid: number;
  noNewPrivs: boolean;
  /** Lower-case names without CAP_, as setpriv wants them. */
  bounding: string[];
  ambient: string[];
}

function capNames(list: string | undefined): string[] {
  return (list ?? '')
    .split(/\s+/)
    .filter((c) => c !== '')
    .map((c) => c.replace(/^CAP_/i, '').toLowerCase());
}

/**
 * Runs fping and ping at 127.0.0.1 from a Node parent holding `p`, as the agent spawns them;
 * their exit codes (0: replies).
 */
function pingUnder(p: Privileges): { fping: number | null; ping: number | null } {
  const caps = (names: string[]) => ['-all', ...names.map((n) => `+${n}`)].join(',');
  const args = [
    `--reuid=${p.uid}`,
    `--regid=${p.uid}`,
    '--clear-groups',
    `--bounding-set=${caps(p.bounding)}`,
    `--inh-caps=${caps(p.ambient)}`,
    `--ambient-caps=${caps(p.ambient)}`,
    ...(p.noNewPrivs ? ['--no-new-privs'] : []),
  ];
  const script = `
    const { spawnSync } = require('node:child_process');
    const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore', timeout: 3000 }).status;
    console.log(JSON.stringify({
      fping: run('fping', ['-c', '1', '-q', '-t', '500', '127.0.0.1']),
      ping: run('ping', ['-c', '1', '-W', '1', '127.0.0.1']),
    }));`;
  const out = spawnSync('setpriv', [...args, process.execPath, '-e', script], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (out.status !== 0) throw new Error(`setpriv failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as { fping: number | null; ping: number | null };
}

const canDropPrivileges =
  process.platform === 'linux' &&
  process.getuid?.() === 0 &&
  onPath('setpriv') &&
  onPath('fping') &&
  onPath('ping');

describe.runIf(canDropPrivileges)('capabilities: what fping and ping get, per the kernel', () => {
  it('the systemd unit (no_new_privs, ambient CAP_NET_RAW) lets fping and ping reply', () => {
    const fromUnit: Privileges = {
      uid: 65534, // a DynamicUser uid is allocated at start; any unprivileged one behaves alike
      noNewPrivs: svc('NoNewPrivileges') === 'yes',
      bounding: capNames(svc('CapabilityBoundingSet')),
      ambient: capNames(svc('AmbientCapabilities')),
    };
    expect(fromUnit).toMatchObject({ noNewPrivs: true, bounding: ['net_raw'] });
    expect(pingUnder(fromUnit)).toEqual({ fping: 0, ping: 0 });
    // Why the unit needs AmbientCapabilities: under no_new_privs the file capabilities of
    // fping and ping are not granted, and both fail (fping exit 4: no socket).
    const withoutAmbient = pingUnder({ ...fromUnit, ambient: [] });
    expect(withoutAmbient.fping).not.toBe(0);
    expect(withoutAmbient.ping).not.toBe(0);
  });

  it('the DaemonSet (non-root, drop ALL add NET_RAW, escalation allowed) lets them reply', () => {
    const sc = container().securityContext;
    const fromPod: Privileges = {
      uid: podSpec().securityContext.runAsUser,
      // allowPrivilegeEscalation: false is exactly no_new_privs.
      noNewPrivs: sc.allowPrivilegeEscalation === false,
      bounding: sc.capabilities.add.map((c) => c.toLowerCase()),
      ambient: [], // Kubernetes grants a non-root process no ambient capability
    };
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect(pingUnder(fromPod)).toEqual({ fping: 0, ping: 0 });
    // Why allowPrivilegeEscalation must stay true: with false, fping and ping fail.
    const noEscalation = pingUnder({ ...fromPod, noNewPrivs: true });
    expect(noEscalation.fping).not.toBe(0);
    expect(noEscalation.ping).not.toBe(0);
  });
});

// --- Kubernetes ---------------------------------------------------------------------------

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

interface Container {
  image: string;
  args?: unknown;
  command?: unknown;
  env: { name: string; value?: string; valueFrom?: unknown }[];
  ports: { name: string; containerPort: number }[];
  securityContext: {
    runAsNonRoot?: boolean;
    allowPrivilegeEscalation: boolean;
    privileged: boolean;
    readOnlyRootFilesystem: boolean;
    capabilities: { drop: string[]; add: string[] };
  };
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  livenessProbe: { httpGet: { path: string; port: string | number } };
  readinessProbe: { httpGet: { path: string; port: string | number } };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}

interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  hostNetwork: boolean;
  dnsPolicy: string;
  terminationGracePeriodSeconds: number;
  securityContext: { runAsNonRoot: boolean; runAsUser: number };
  containers: Container[];
  volumes: { name: string; configMap?: { name: string } }[];
}

const manifestDocs = parseAllDocuments(read(manifestFile));
const manifest = (Array.isArray(manifestDocs) ? manifestDocs : [])
  .map((d) => d.toJS() as K8sObject | null)
  .filter((o): o is K8sObject => o !== null);

function byKind<T extends K8sObject>(kind: string): T {
  const found = manifest.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} in ${manifestFile}`);
  return found[0] as T;
}
const daemonSet = (): K8sObject & {
  spec: {
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
  };
} => byKind('DaemonSet');
const podSpec = (): PodSpec => (daemonSet().spec.template as unknown as { spec: PodSpec }).spec;
const container = (): Container => {
  const [c, ...more] = podSpec().containers;
  if (c === undefined || more.length > 0) throw new Error('expected one container');
  return c;
};
const configMap = (): K8sObject & { data: Record<string, string> } => byKind('ConfigMap');

/** The file the ConfigMap puts where the pod reads its config. */
function mountedConfig(): { path: string; text: string } {
  const volume = podSpec().volumes.find((v) => v.configMap?.name === configMap().metadata.name);
  const mount = container().volumeMounts.find((m) => m.name === volume?.name);
  if (mount === undefined) throw new Error('the ConfigMap is not mounted');
  return {
    path: posix.join(mount.mountPath, 'agent.yaml'),
    text: configMap().data['agent.yaml'] ?? '',
  };
}

function listenPort(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1));
}

describe('Kubernetes manifest', () => {
  it('parses as YAML: a Namespace, a ServiceAccount, a ConfigMap and a DaemonSet in it', () => {
    for (const doc of Array.isArray(manifestDocs) ? manifestDocs : []) {
      expect(doc.errors).toEqual([]);
      expect(doc.warnings).toEqual([]);
    }
    expect(manifest.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'DaemonSet',
      'Namespace',
      'ServiceAccount',
    ]);
    const ns = byKind('Namespace').metadata;
    // Both hostNetwork and NET_RAW are refused at the "baseline" Pod Security level.
    expect(ns.labels?.['pod-security.kubernetes.io/enforce']).toBe('privileged');
    for (const o of manifest.filter((x) => x.kind !== 'Namespace'))
      expect(o.metadata.namespace).toBe(ns.name);
  });

  it('the ConfigMap holds a valid agent.yaml that names each agent after its node', () => {
    const { text } = mountedConfig();
    const config = parseAgentConfig(text, 'agent.yaml');
    // agent.name unset: the host name, which in a hostNetwork pod is the node's.
    expect((parseYaml(text) as { agent?: object }).agent).not.toHaveProperty('name');
    expect(config.agent.name).toBe(hostname());
    // The kubelet probes and Prometheus scrapes the pod at the node's IP.
    expect(config.metrics.listen).toBe('0.0.0.0:9465');
    expect(config.targets.length).toBeGreaterThan(0);
  });

  it('the DaemonSet probes from the node network and resolves cluster names', () => {
    const ds = daemonSet();
    expect(ds.apiVersion).toBe('apps/v1');
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    const spec = podSpec();
    expect(spec.hostNetwork).toBe(true);
    expect(spec.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(spec.serviceAccountName).toBe(byKind('ServiceAccount').metadata.name);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(defaultStopGraceMs / 1000);
    // The image's CMD does the work (the Dockerfile test checks its config path).
    expect(container().command).toBeUndefined();
    expect(container().args).toBeUndefined();
    expect(container().image).toMatch(new RegExp(`:${pkg.version.replaceAll('.', '\\.')}$`));
  });

  it('runs non-root with a read-only root, NET_RAW only, and a 128Mi memory limit', () => {
    expect(podSpec().securityContext.runAsNonRoot).toBe(true);
    expect(podSpec().securityContext.runAsUser).toBeGreaterThan(0);
    const c = container();
    expect(c.securityContext).toMatchObject({
      privileged: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: true, // fping's file capability (see the capabilities tests)
      capabilities: { drop: ['ALL'], add: ['NET_RAW'] },
    });
    expect(c.resources.limits.memory).toBe('128Mi');
    expect(c.resources.requests.memory).toBeDefined();
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.volumeMounts.every((m) => m.readOnly === true)).toBe(true);
  });

  it('probes /healthz and advertises /metrics on the port the agent listens on', () => {
    const port = listenPort(
      parseAgentConfig(mountedConfig().text, 'agent.yaml').metrics.listen || '',
    );
    const c = container();
    const named = c.ports.find((p) => p.containerPort === port);
    expect(named).toBeDefined();
    for (const probe of [c.livenessProbe, c.readinessProbe]) {
      expect(probe.httpGet.path).toBe('/healthz');
      expect([named?.name, port]).toContain(probe.httpGet.port);
    }
    expect(daemonSet().spec.template.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(port),
      'prometheus.io/path': '/metrics',
    });
  });

  it('defines every env var before another one refers to it with $(VAR)', () => {
    // Kubernetes expands $(VAR) only from variables listed earlier; later ones stay literal.
    const seen = new Set<string>();
    for (const e of container().env) {
      for (const m of (e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
        expect(seen, `${e.name} uses $(${m[1]})`).toContain(m[1]);
      seen.add(e.name);
    }
    expect(seen).toContain('OTEL_RESOURCE_ATTRIBUTES');
  });
});

// --- Dockerfile (no engine here: checked statically) --------------------------------------

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (pending === '' && /^\s*#/.test(raw)) continue; // comments, and the syntax directive
    if (raw.endsWith('\\')) {
      pending += `${raw.slice(0, -1)} `;
      continue;
    }
    const line = (pending + raw).trim();
    pending = '';
    if (line === '') continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (m === null) throw new Error(`unparsable Dockerfile line: ${line}`);
    const op = (m[1] ?? '').toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2] ?? '', stage });
  }
  return out;
}

const docker = parseDockerfile(read(dockerfile));
const lastStage = Math.max(...docker.map((i) => i.stage));
const final = (op: string): Instruction[] =>
  docker.filter((i) => i.stage === lastStage && i.op === op);
const jsonForm = (i: Instruction | undefined): unknown => JSON.parse(i?.args ?? 'null');

/** `COPY [--flag]... src... dest` → flags, sources and destination. */
function copyParts(i: Instruction): { from?: string; sources: string[]; dest: string } {
  const words = i.args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return {
    ...(from === undefined ? {} : { from }),
    sources: rest.slice(0, -1),
    dest: rest.at(-1) ?? '',
  };
}

/** Repository files `entry` imports, transitively (relative imports only). */
function importClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() ?? '';
    if (seen.has(file)) continue;
    seen.add(file);
    const text = read(file);
    for (const m of text.matchAll(/(?:from|import\()\s*'(\.\.?\/[^']+)'/g)) {
      const target = normalize(join(dirname(file), m[1] ?? '')).replace(/\.js$/, '.ts');
      queue.push(target);
    }
  }
  return seen;
}

describe('Dockerfile', () => {
  it('builds on Node 20 Debian bookworm images in two stages', () => {
    const froms = docker.filter((i) => i.op === 'FROM').map((i) => i.args.split(/\s+/)[0]);
    expect(froms.length).toBe(2);
    for (const image of froms)
      expect(image).toMatch(/^node:20(?:\.\d+){0,2}-bookworm(?:-slim)?(?:@sha256:[0-9a-f]{64})?$/);
    // fping is what makes ICMP cheap (and its file capability what makes it work non-root).
    expect(final('RUN').some((i) => /apt-get install .*\bfping\b/.test(i.args))).toBe(true);
  });

  it('copies only files that exist, all let through by its .dockerignore', () => {
    const ignore = read(dockerignore)
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    const allowed = new Set(ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1)));
    const copies = docker.filter((i) => i.op === 'COPY').map(copyParts);
    const local = copies.filter((c) => c.from === undefined).flatMap((c) => c.sources);
    expect(local.length).toBeGreaterThan(0);
    for (const src of local) {
      expect(existsSync(join(root, src)), src).toBe(true);
      expect(allowed.has(src), `${src} is excluded from the build context`).toBe(true);
    }
    // Everything the CLI imports (hence what tsc must compile) is copied in.
    const copiedDirs = local.filter((s) => s.endsWith('/'));
    for (const file of importClosure(binPath.replace(/^dist\//, '').replace(/\.js$/, '.ts'))) {
      expect(
        copiedDirs.some((d) => file.startsWith(d)),
        `${file} is not copied`,
      ).toBe(true);
    }
    for (const cfg of ['tsconfig.json', 'tsconfig.build.json']) expect(local).toContain(cfg);
  });

  it('runs the CLI from /app as a numeric non-root user, the DaemonSet’s', () => {
    const users = final('USER');
    expect(users.length).toBe(1);
    const uid = Number((users[0]?.args ?? '').split(':')[0]);
    expect(uid).toBeGreaterThan(0);
    expect(podSpec().securityContext.runAsUser).toBe(uid);
    expect(jsonForm(final('ENTRYPOINT')[0])).toEqual(['node', `/app/${binPath}`]);
    expect(final('WORKDIR').at(-1)?.args).toBe('/app');
    const dist = final('COPY')
      .map(copyParts)
      .find((c) => c.sources.includes('/src/dist'));
    expect(posix.resolve('/app', dist?.dest ?? '')).toBe('/app/dist');
  });

  it('reads its config where the Kubernetes ConfigMap is mounted', () => {
    expect(jsonForm(final('CMD')[0])).toEqual(['agent', '--config', mountedConfig().path]);
  });

  it('checks health on the default metrics port, which it exposes', () => {
    const port = listenPort(defaultMetricsListen);
    const health = final('HEALTHCHECK')[0]?.args ?? '';
    expect(health).toContain(`http://127.0.0.1:${port}/healthz`);
    expect(final('EXPOSE').map((i) => i.args)).toEqual([String(port)]);
  });
});
