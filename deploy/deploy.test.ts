import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, normalize, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { defaultStopGraceMs } from '../agent/agent.js';
import { defaultMetricsListen, parseAgentConfig } from '../agent/config.js';
import { defaultCollectorListen, parseCollectorConfig } from '../collector/config.js';
import { ConfigError } from '../lib/errors.js';
import { plainListenWarning } from '../collector/connection-guard.js';
import { pollUntil } from '../lab/poll-until.js';
import {
  agentMemoryLimit,
  agentMemoryRequest,
  agentMallocArenaMax,
  agentNodeOptions,
  expectAgentPod,
  expectEnvInOrder,
  expectHeapBelowLimit,
  expectRestrictedPod,
  onlyContainer,
  type Container,
  type K8sObject,
  type PodSpec,
  type Volume,
  type Workload,
} from './k8s-checks.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

const unitFile = 'deploy/systemd/faultline-agent.service';
const collectorUnitFile = 'deploy/systemd/faultline-collector.service';
const dockerfile = 'deploy/docker/Dockerfile';
const dockerignore = 'deploy/docker/Dockerfile.dockerignore';
const manifestFile = 'deploy/kubernetes/agent/agent-daemonset.yaml';
const collectorManifestFile = 'deploy/kubernetes/collector/collector.yaml';

const pkg = JSON.parse(read('package.json')) as { version: string; bin: Record<string, string> };
const binPath = pkg.bin.faultline ?? '';
/** The CLI's entry point among the sources (cli/main.ts). */
const cliSource = binPath.replace(/^dist\//, '').replace(/\.js$/, '.ts');

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

function listenPort(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1));
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

/**
 * A [Service] section's `Environment=` assignments as systemd reads them: each line a
 * space-separated list of `KEY=value`, an assignment in double quotes when its value has spaces.
 */
function environmentOf(service: Map<string, string[]>): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of service.get('Environment') ?? [])
    for (const m of line.matchAll(/"([^"]*)"|(\S+)/g)) {
      const assignment = m[1] ?? m[2] ?? '';
      const eq = assignment.indexOf('=');
      if (eq > 0) env.set(assignment.slice(0, eq), assignment.slice(eq + 1));
    }
  return env;
}

interface Unit {
  file: string;
  text: string;
  sections: Map<string, Map<string, string[]>>;
  /** [Service] key → every value it is given. */
  service: Map<string, string[]>;
  /** The last value of a [Service] key (later assignments win in systemd). */
  svc: (key: string) => string | undefined;
}

function loadUnit(file: string): Unit {
  const text = read(file);
  const sections = parseUnit(text);
  const service = sections.get('Service') ?? new Map<string, string[]>();
  return { file, text, sections, service, svc: (key) => service.get(key)?.at(-1) };
}

const agentUnit = loadUnit(unitFile);
const collectorUnit = loadUnit(collectorUnitFile);
const { sections: unit, service, svc } = agentUnit;

/** The unit as systemd-analyze should see it: as written, unless this machine keeps node elsewhere. */
function unitForAnalyze(u: Unit, text = u.text): string {
  if (existsSync('/usr/bin/node')) {
    if (text === u.text) return join(root, u.file);
  } else {
    text = text.replaceAll('/usr/bin/node ', `${process.execPath} `);
  }
  const path = join(tempDir(), posix.basename(u.file));
  writeFileSync(path, text);
  return path;
}

const hasSystemdAnalyze = process.platform === 'linux' && onPath('systemd-analyze');

/**
 * `systemd-analyze security --offline` of a unit: its overall exposure (0 best, 10 worst),
 * or undefined where systemd is older than 250 (no --offline).
 */
function exposure(u: Unit): { score: number; rating: string } | undefined {
  const run = spawnSync(
    'systemd-analyze',
    ['security', '--offline=yes', '--threshold=25', unitForAnalyze(u)],
    { encoding: 'utf8' },
  );
  if (/unrecognized option|unknown option/i.test(run.stderr)) return undefined;
  const name = posix.basename(u.file).replaceAll('.', '\\.');
  const m = new RegExp(`Overall exposure level for ${name}: ([\\d.]+) (\\S+)`).exec(run.stdout);
  if (m === null || run.status !== 0) throw new Error(run.stdout + run.stderr);
  return { score: Number(m[1]), rating: m[2] ?? '' };
}

/** A systemd size (`192M`, `1G`) in MiB. */
function unitMiB(size: string | undefined): number {
  const m = /^(\d+)([MG])$/.exec(size ?? '');
  if (m === null) throw new Error(`not a size in M or G: ${size}`);
  return Number(m[1]) * (m[2] === 'G' ? 1024 : 1);
}

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
    // What bench:agent measured, as the Kubernetes limit; pressure only above the peak.
    expect(unitMiB(svc('MemoryMax'))).toBe(Number.parseInt(agentMemoryLimit, 10));
    expect(unitMiB(svc('MemoryHigh'))).toBeGreaterThan(Number.parseInt(agentMemoryRequest, 10));
    expect(unitMiB(svc('MemoryHigh'))).toBeLessThan(unitMiB(svc('MemoryMax')));
    // The V8 settings bench:agent measured with, as on Kubernetes.
    expect(environmentOf(service).get('NODE_OPTIONS')).toBe(agentNodeOptions);
    expect(environmentOf(service).get('MALLOC_ARENA_MAX')).toBe(agentMallocArenaMax);
    // V8's JIT needs W+X pages; a user namespace's CAP_NET_RAW opens no raw socket on the host.
    expect(service.has('MemoryDenyWriteExecute')).toBe(false);
    expect(service.has('PrivateUsers')).toBe(false);
    expect(service.has('PrivateNetwork')).toBe(false);
  });

  it.runIf(hasSystemdAnalyze)(
    'rates "OK" or better on systemd-analyze security --offline',
    (ctx) => {
      const rated = exposure(agentUnit);
      if (rated === undefined) return ctx.skip();
      console.log(
        `systemd-analyze security: exposure ${rated.score} ${rated.rating} (0 best, 10 worst)`,
      );
      expect(rated.score).toBeLessThanOrEqual(2.5);
    },
  );
});

describe('systemd unit of the collector', () => {
  const { service: cService, svc: cSvc } = collectorUnit;

  it('runs the collector on collector.yaml in its ConfigurationDirectory, like the agent', () => {
    const [node, script, ...args] = (cSvc('ExecStart') ?? '').split(/\s+/);
    expect([node, script]).toEqual((svc('ExecStart') ?? '').split(/\s+/).slice(0, 2));
    expect(args).toEqual([
      'collector',
      '--config',
      `/etc/${cSvc('ConfigurationDirectory')}/collector.yaml`,
    ]);
    // The collector rereads nothing on SIGHUP (which would end it): no reload.
    expect(cService.has('ExecReload')).toBe(false);
    expect(cSvc('Restart')).toBe('on-failure');
    expect(cSvc('KillMode')).toBe('mixed');
    expect(collectorUnit.sections.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('holds no capability at all and writes only its StateDirectory (and a private /tmp)', () => {
    // Empty: not even what a root process would start with.
    expect(cService.get('CapabilityBoundingSet')).toEqual(['']);
    expect(cService.has('AmbientCapabilities')).toBe(false);
    expect(cSvc('NoNewPrivileges')).toBe('yes');
    expect(cSvc('DynamicUser')).toBe('yes');
    expect(cSvc('ProtectSystem')).toBe('strict');
    expect(cSvc('PrivateTmp')).toBe('yes');
    expect(cSvc('StateDirectory')).toBe('faultline-collector');
    expect(cSvc('StateDirectoryMode')).toBe('0700');
    for (const key of [
      'ReadWritePaths',
      'ReadWriteDirectories',
      'BindPaths',
      'CacheDirectory',
      'LogsDirectory',
      'RuntimeDirectory',
    ])
      expect(cService.has(key), key).toBe(false);
    // With no CAP_NET_RAW to keep in the host's user namespace, it gets one of its own.
    expect(cSvc('PrivateUsers')).toBe('yes');
    expect(cSvc('ProcSubset')).toBe('pid');
    expect(cService.get('SystemCallFilter')).toEqual([
      '@system-service',
      '~@privileged @resources',
    ]);
    // ~@resources refuses Node's own raise of the open-file limit: one fd per agent.
    expect(Number(cSvc('LimitNOFILE'))).toBeGreaterThanOrEqual(65536);
  });

  it('keeps every other setting of the agent’s sandbox', () => {
    // What differs on purpose; everything else the agent's unit sets, this one sets alike.
    const own = new Set([
      'User',
      'Group',
      'ExecStart',
      'ExecReload',
      'EnvironmentFile',
      'Environment',
      'SyslogIdentifier',
      'TimeoutStopSec',
      'SystemCallFilter', // @system-service, then ~@privileged @resources (above)
      'StateDirectory',
      'CapabilityBoundingSet',
      'AmbientCapabilities',
      'MemoryHigh',
      'MemoryMax',
      'TasksMax',
    ]);
    for (const [key, values] of service) {
      if (!own.has(key)) expect(cService.get(key), key).toEqual(values);
    }
    expect(cService.get('Environment')).toContain('NODE_ENV=production');
    expect(cSvc('EnvironmentFile')).toBe('-/etc/default/faultline-collector');
  });

  it('caps the V8 heap below MemoryHigh', () => {
    const env = (cService.get('Environment') ?? []).join(' ');
    const heapMiB = Number(/NODE_OPTIONS=--max-old-space-size=(\d+)\b/.exec(env)?.[1]);
    expect(heapMiB).toBeGreaterThan(0);
    expect(heapMiB).toBeLessThan(unitMiB(cSvc('MemoryHigh')));
    expect(unitMiB(cSvc('MemoryHigh'))).toBeLessThan(unitMiB(cSvc('MemoryMax')));
  });

  it.runIf(hasSystemdAnalyze)(
    'rates better than the agent on systemd-analyze security --offline',
    (ctx) => {
      const agent = exposure(agentUnit);
      const collector = exposure(collectorUnit);
      if (agent === undefined || collector === undefined) return ctx.skip();
      console.log(
        `systemd-analyze security: collector ${collector.score}, agent ${agent.score} (0 best, 10 worst)`,
      );
      expect(collector.score).toBeLessThan(agent.score);
      expect(collector.score).toBeLessThanOrEqual(1.5);
    },
  );
});

describe('systemd-analyze verify', () => {
  for (const u of [agentUnit, collectorUnit]) {
    it.runIf(hasSystemdAnalyze)(`passes ${posix.basename(u.file)} without a warning`, () => {
      const ok = spawnSync('systemd-analyze', ['verify', unitForAnalyze(u)], {
        encoding: 'utf8',
      });
      expect(ok.stderr.trim()).toBe('');
      expect(ok.status).toBe(0);

      // The check above is not vacuous: a misspelt setting only warns (exit 0), so the test
      // must read stderr, and a missing binary fails.
      const typo = spawnSync(
        'systemd-analyze',
        ['verify', unitForAnalyze(u, u.text.replace('ProtectSystem=', 'ProtectSytem='))],
        { encoding: 'utf8' },
      );
      expect(typo.stderr).toContain("Unknown key 'ProtectSytem'");
      const noBinary = spawnSync(
        'systemd-analyze',
        [
          'verify',
          unitForAnalyze(u, u.text.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node')),
        ],
        { encoding: 'utf8' },
      );
      expect(noBinary.status).not.toBe(0);
    });
  }
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

/** setpriv's flags for `p`. */
function setprivArgs(p: Privileges, gid = p.uid, groups: number[] = []): string[] {
  const caps = (names: string[]) => ['-all', ...names.map((n) => `+${n}`)].join(',');
  return [
    `--reuid=${p.uid}`,
    `--regid=${gid}`,
    groups.length === 0 ? '--clear-groups' : `--groups=${groups.join(',')}`,
    `--bounding-set=${caps(p.bounding)}`,
    `--inh-caps=${caps(p.ambient)}`,
    `--ambient-caps=${caps(p.ambient)}`,
    ...(p.noNewPrivs ? ['--no-new-privs'] : []),
  ];
}

interface PingedUnder {
  fping: number | null;
  ping: number | null;
  /** The agent's own ICMP socket: `raw`, `ping` (a ping socket), or the errno refusing both. */
  socket: string;
}

/**
 * Runs fping and ping at 127.0.0.1 from a Node parent holding `p`, as the agent spawns them
 * (their exit codes, 0: replies), and opens the agent's own ICMP socket in that parent.
 */
function pingUnder(p: Privileges): PingedUnder {
  const addon = join(root, 'native/icmp/build/Release/faultline_icmp.node');
  const script = `
    const { spawnSync } = require('node:child_process');
    const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore', timeout: 3000 }).status;
    let socket;
    try {
      const addon = require(${JSON.stringify(addon)});
      const s = addon.open(4, false, () => {});
      socket = s.raw ? 'raw' : 'ping';
      addon.close(s.handle);
    } catch (e) {
      socket = e.code ?? String(e);
    }
    console.log(JSON.stringify({
      fping: run('fping', ['-c', '1', '-q', '-t', '500', '127.0.0.1']),
      ping: run('ping', ['-c', '1', '-W', '1', '127.0.0.1']),
      socket,
    }));`;
  const out = spawnSync('setpriv', [...setprivArgs(p), process.execPath, '-e', script], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (out.status !== 0) throw new Error(`setpriv failed: ${out.stderr}`);
  return JSON.parse(out.stdout) as PingedUnder;
}

const canDropPrivileges =
  process.platform === 'linux' && process.getuid?.() === 0 && onPath('setpriv');

describe.runIf(canDropPrivileges && onPath('fping') && onPath('ping'))(
  'capabilities: what fping and ping get, per the kernel',
  () => {
    it('the systemd unit (no_new_privs, ambient CAP_NET_RAW) lets fping and ping reply', () => {
      const fromUnit: Privileges = {
        uid: 65534, // a DynamicUser uid is allocated at start; any unprivileged one behaves alike
        noNewPrivs: svc('NoNewPrivileges') === 'yes',
        bounding: capNames(svc('CapabilityBoundingSet')),
        ambient: capNames(svc('AmbientCapabilities')),
      };
      expect(fromUnit).toMatchObject({ noNewPrivs: true, bounding: ['net_raw'] });
      // The ambient capability is the agent's own too: its ICMP socket is a raw one.
      expect(pingUnder(fromUnit)).toEqual({ fping: 0, ping: 0, socket: 'raw' });
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
      // The agent process itself holds no capability: its own ICMP socket is a ping socket
      // where net.ipv4.ping_group_range allows it (the node's sysctl, with hostNetwork), else
      // refused (then fping serves it).
      const pinged = pingUnder(fromPod);
      expect(pinged).toMatchObject({ fping: 0, ping: 0 });
      expect(['ping', 'EPERM', 'EACCES']).toContain(pinged.socket);
      // Why allowPrivilegeEscalation must stay true: with false, fping and ping fail.
      const noEscalation = pingUnder({ ...fromPod, noNewPrivs: true });
      expect(noEscalation.fping).not.toBe(0);
      expect(noEscalation.ping).not.toBe(0);
    });
  },
);

// --- Kubernetes ---------------------------------------------------------------------------

interface Manifest {
  file: string;
  docs: ReturnType<typeof parseAllDocuments>;
  objects: K8sObject[];
}

/** A multi-document manifest; `version: '1.1'` reads it as kubectl's go-yaml does. */
function loadManifest(file: string, options: { version?: '1.1' | '1.2' } = {}): Manifest {
  const docs = parseAllDocuments(read(file), options);
  const objects = (Array.isArray(docs) ? docs : [])
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return { file, docs, objects };
}

function kindIn<T extends K8sObject>(m: Manifest, kind: string): T {
  const found = m.objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} in ${m.file}`);
  return found[0] as T;
}

/** The mount of the volume that `pick` selects. */
function mountOf(spec: PodSpec, pick: (v: Volume) => boolean): Container['volumeMounts'][number] {
  const volume = spec.volumes.find(pick);
  const mount = onlyContainer(spec).volumeMounts.find((m) => m.name === volume?.name);
  if (mount === undefined) throw new Error('no such volume mounted');
  return mount;
}

const agentManifest = loadManifest(manifestFile);
const manifest = agentManifest.objects;
const byKind = <T extends K8sObject>(kind: string): T => kindIn<T>(agentManifest, kind);
const daemonSet = (): Workload => byKind('DaemonSet');
const podSpec = (): PodSpec => daemonSet().spec.template.spec;
const container = (): Container => onlyContainer(podSpec());
const configMap = (): K8sObject & { data: Record<string, string> } => byKind('ConfigMap');

/** The file the ConfigMap puts where the pod reads its config. */
function mountedConfig(): { path: string; text: string } {
  const mount = mountOf(podSpec(), (v) => v.configMap?.name === configMap().metadata.name);
  return {
    path: posix.join(mount.mountPath, 'agent.yaml'),
    text: configMap().data['agent.yaml'] ?? '',
  };
}

describe('Kubernetes manifest', () => {
  it('parses as YAML: a Namespace, a ServiceAccount, a ConfigMap and a DaemonSet in it', () => {
    for (const doc of Array.isArray(agentManifest.docs) ? agentManifest.docs : []) {
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

  it('runs non-root with a read-only root, NET_RAW only, and the memory limit bench:agent measured', () => {
    expectAgentPod(podSpec());
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
    expectEnvInOrder(container(), ['OTEL_RESOURCE_ATTRIBUTES']);
  });
});

// --- Kubernetes: the collector -------------------------------------------------------------

// kubectl reads YAML 1.1, where the Secret's `defaultMode: 0440` is octal.
const collectorManifest = loadManifest(collectorManifestFile, { version: '1.1' });
const cKind = <T extends K8sObject>(kind: string): T => kindIn<T>(collectorManifest, kind);
const deployment = (): Workload => cKind('Deployment');
const cPodSpec = (): PodSpec => deployment().spec.template.spec;
const cContainer = (): Container => onlyContainer(cPodSpec());
const cConfigMap = (): K8sObject & { data: Record<string, string> } => cKind('ConfigMap');
type SecretObject = K8sObject & { type?: string; stringData: Record<string, string> };
const cSecrets = (): SecretObject[] =>
  collectorManifest.objects.filter((o): o is SecretObject => o.kind === 'Secret');
const cSecretNamed = (name: string): SecretObject => {
  const found = cSecrets().find((o) => o.metadata.name === name);
  if (found === undefined) throw new Error(`no Secret ${name} in ${collectorManifestFile}`);
  return found;
};
/** The agent tokens, and the collector's TLS certificate and key. */
const tokenSecretName = 'faultline-collector-tokens';
const tlsSecretName = 'faultline-collector-tls';
const cService = (): K8sObject & {
  spec: {
    type: string;
    selector: Record<string, string>;
    ports: { name: string; port: number; targetPort: string | number }[];
  };
} => cKind('Service');
const cClaim = (): K8sObject & {
  spec: { accessModes: string[]; resources: { requests: { storage: string } } };
} => cKind('PersistentVolumeClaim');

const secretMount = () => mountOf(cPodSpec(), (v) => v.secret?.secretName === tokenSecretName);
const tlsMount = () => mountOf(cPodSpec(), (v) => v.secret?.secretName === tlsSecretName);
const dataMount = () => mountOf(cPodSpec(), (v) => v.persistentVolumeClaim !== undefined);

/** collector.yaml as written in the ConfigMap, and where the pod finds it. */
function collectorConfigFile(): { path: string; text: string } {
  const mount = mountOf(cPodSpec(), (v) => v.configMap?.name === cConfigMap().metadata.name);
  return {
    path: posix.join(mount.mountPath, 'collector.yaml'),
    text: cConfigMap().data['collector.yaml'] ?? '',
  };
}

interface StagedPod {
  /** Where the pod's path `p` is staged. */
  at: (p: string) => string;
  /** The staged collector.yaml, its paths pointing into the stage. */
  configFile: string;
  /** The mount paths the pod can write to, staged. */
  writable: string[];
}

/**
 * The collector pod's volumes laid out in a temporary directory as the kubelet lays them out
 * (ConfigMap files 0644; Secret files root:fsGroup with defaultMode; the claim and emptyDirs
 * setgid fsGroup), each Secret's values replaced by `secrets[its name]`, and collector.yaml
 * rewritten to point there. `listen` replaces its listen address.
 */
function stageCollectorPod(
  secrets: Record<string, Record<string, string>>,
  listen?: string,
): StagedPod {
  const base = tempDir();
  chmodSync(base, 0o755);
  const at = (p: string): string => join(base, 'pod', p);
  const spec = cPodSpec();
  const fsGroup = spec.securityContext.fsGroup ?? 0;
  const mounts = onlyContainer(spec).volumeMounts;
  // One pass, longest first: a staged path (itself under /tmp) is not rewritten again.
  const paths = mounts.map((m) => m.mountPath).sort((a, b) => b.length - a.length);
  const mountPathRe = new RegExp(
    paths.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'),
    'g',
  );
  let text = collectorConfigFile().text.replace(mountPathRe, (p) => at(p));
  if (listen !== undefined) text = text.replace(/^listen: .*$/m, `listen: ${listen}`);
  for (const m of mounts) {
    const dir = at(m.mountPath);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const volume = spec.volumes.find((v) => v.name === m.name);
    if (volume?.configMap !== undefined) {
      writeFileSync(join(dir, 'collector.yaml'), text, { mode: 0o644 });
    } else if (volume?.secret !== undefined) {
      for (const [key, value] of Object.entries(secrets[volume.secret.secretName] ?? {})) {
        const file = join(dir, key);
        writeFileSync(file, value);
        chownSync(file, 0, fsGroup);
        chmodSync(file, volume.secret.defaultMode ?? 0o644);
      }
    } else {
      chownSync(dir, 0, fsGroup);
      chmodSync(dir, 0o2770);
    }
  }
  return {
    at,
    configFile: at(collectorConfigFile().path),
    writable: mounts.filter((m) => m.readOnly !== true).map((m) => at(m.mountPath)),
  };
}

/** The token Secret as shipped, with its placeholder values. */
const shippedSecret = (): Record<string, string> => cSecretNamed(tokenSecretName).stringData;
/** Every Secret as shipped, by name. */
const shippedSecrets = (): Record<string, Record<string, string>> =>
  Object.fromEntries(cSecrets().map((o) => [o.metadata.name, o.stringData]));

let testCert: { cert: string; key: string } | undefined;
/**
 * A self-signed certificate for the Service's name and 127.0.0.1 (where the pod run
 * listens), made once with the openssl CLI, as the manifest's comment says.
 */
function collectorCert(): { cert: string; key: string } {
  if (testCert !== undefined) return testCert;
  const dir = tempDir();
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=faultline-collector',
      '-keyout',
      join(dir, 'tls.key'),
      '-out',
      join(dir, 'tls.crt'),
      '-addext',
      'subjectAltName=DNS:faultline-collector.faultline.svc,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  testCert = {
    cert: readFileSync(join(dir, 'tls.crt'), 'utf8'),
    key: readFileSync(join(dir, 'tls.key'), 'utf8'),
  };
  return testCert;
}

/** Every Secret with its values replaced: fresh tokens, a real certificate and key. */
const generatedSecrets = (): Record<string, Record<string, string>> => ({
  [tokenSecretName]: Object.fromEntries(
    Object.keys(shippedSecret()).map((k) => [k, `${randomBytes(32).toString('hex')}\n`]),
  ),
  [tlsSecretName]: { 'tls.crt': collectorCert().cert, 'tls.key': collectorCert().key },
});

describe('Kubernetes manifest of the collector', () => {
  it('parses as YAML: the agents’ Namespace, and a ServiceAccount, two Secrets (tokens, TLS), ConfigMap, claim, Deployment and Service in it', () => {
    for (const doc of Array.isArray(collectorManifest.docs) ? collectorManifest.docs : []) {
      expect(doc.errors).toEqual([]);
      expect(doc.warnings).toEqual([]);
    }
    expect(collectorManifest.objects.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'Namespace',
      'PersistentVolumeClaim',
      'Secret',
      'Secret',
      'Service',
      'ServiceAccount',
    ]);
    // Identical, so applying either file never relabels the other's namespace.
    expect(cKind('Namespace')).toEqual(byKind('Namespace'));
    const ns = cKind('Namespace').metadata.name;
    for (const o of collectorManifest.objects.filter((x) => x.kind !== 'Namespace'))
      expect(o.metadata.namespace, o.kind).toBe(ns);
  });

  it('the ConfigMap holds a valid collector.yaml whose token comes from the Secret', () => {
    const secrets = generatedSecrets();
    const secret = secrets[tokenSecretName] ?? {};
    const staged = stageCollectorPod(secrets);
    const config = parseCollectorConfig(readFileSync(staged.configFile, 'utf8'), 'collector.yaml');
    // Agents reach it through the Service, from other pods and from the nodes.
    expect(config.listen).toBe('0.0.0.0:7070');
    expect(config.dataDir).toBe(staged.at(dataMount().mountPath));
    expect(config.tokens).toEqual([
      { name: 'fleet', token: secret['fleet.token']?.trim(), revoked: false, role: 'agent' },
    ]);
    expect(config.viewers).toEqual([
      { name: 'ops', token: secret['viewer.token']?.trim(), revoked: false },
    ]);
    expect(config.readAccess).toBe('token');
    // Every token is a file of the Secret, none written into the ConfigMap.
    const raw = parseYaml(collectorConfigFile().text) as {
      dataDir: string;
      tokens: { tokenFile?: string; token?: string }[];
      viewers: { tokenFile?: string; token?: string }[];
      probes: { layers: string[] };
      inventory: { components: { address: string }[] };
    };
    for (const t of [...raw.tokens, ...raw.viewers]) {
      expect(t.token).toBeUndefined();
      expect(dirname(t.tokenFile ?? '')).toBe(secretMount().mountPath);
      expect(Object.keys(shippedSecret())).toContain(posix.basename(t.tokenFile ?? ''));
    }
    // The same data dir as the systemd unit's: one collector.yaml serves both.
    expect(raw.dataDir).toBe(`/var/lib/${collectorUnit.svc('StateDirectory')}`);
    // Service IPs do not answer ping: no icmp layer while the inventory names Services.
    expect(config.inventory.components.length).toBeGreaterThan(0);
    if (raw.inventory.components.some((c) => /\.svc(\.|$)/.test(c.address)))
      expect(raw.probes.layers).not.toContain('icmp');
  });

  it('the Secret’s placeholder is refused, so the collector does not start before it is replaced', () => {
    const staged = stageCollectorPod(shippedSecrets());
    let refusal: unknown;
    try {
      parseCollectorConfig(readFileSync(staged.configFile, 'utf8'), 'collector.yaml');
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(ConfigError);
    const message = (refusal as Error).message;
    expect(message).toMatch(/tokens\[0\]\.tokenFile: the token in the file: /);
    expect(message).toMatch(/tls\.cert: expected a PEM certificate/);
    expect(message).toMatch(/tls\.key: expected a PEM private key/);
    for (const value of Object.values(shippedSecret())) expect(message).not.toContain(value);
  });

  it('serves TLS with the certificate and key of a kubernetes.io/tls Secret; probes and agents use https', () => {
    const secrets = generatedSecrets();
    const staged = stageCollectorPod(secrets);
    const config = parseCollectorConfig(readFileSync(staged.configFile, 'utf8'), 'collector.yaml');
    expect(config.tls).toEqual({
      cert: staged.at(posix.join(tlsMount().mountPath, 'tls.crt')),
      key: staged.at(posix.join(tlsMount().mountPath, 'tls.key')),
    });
    const tlsSecret = cSecretNamed(tlsSecretName);
    expect(tlsSecret.type).toBe('kubernetes.io/tls');
    expect(Object.keys(tlsSecret.stringData).sort()).toEqual(['tls.crt', 'tls.key']);
    expect(tlsMount().readOnly).toBe(true);
    // Listening beyond loopback, with TLS: the collector has nothing to warn about.
    expect(plainListenWarning(config.listen, config.tls !== undefined)).toBeUndefined();
    const c = cContainer();
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe])
      expect(probe?.httpGet.scheme).toBe('HTTPS');
    // The agents' collector-mode hint: https, and the token and the CA as files.
    const hint = read(manifestFile);
    expect(hint).toMatch(/--collector, https:\/\/faultline-collector\.faultline\.svc:7070/);
    expect(hint).toMatch(/--token-file, \/run\/secrets\/faultline\/fleet\.token/);
    expect(hint).toMatch(/--ca-file, \/run\/secrets\/faultline-ca\/ca\.crt/);
    expect(hint).not.toMatch(/--token\b(?!-file)|FAULTLINE_TOKEN|http:\/\/faultline-collector/);
  });

  it('one replica, recreated on update: never two writers on the SQLite store', () => {
    const d = deployment();
    expect(d.apiVersion).toBe('apps/v1');
    expect(d.spec.replicas).toBe(1);
    expect(d.spec.strategy?.type).toBe('Recreate');
    expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
    expect(cClaim().spec.accessModes).toEqual(['ReadWriteOnce']);
    const volume = cPodSpec().volumes.find((v) => v.name === dataMount().name);
    expect(volume?.persistentVolumeClaim?.claimName).toBe(cClaim().metadata.name);
  });

  it('runs the agents’ image with the ConfigMap’s collector.yaml', () => {
    const c = cContainer();
    expect(c.image).toBe(container().image);
    expect(c.command).toBeUndefined();
    expect(c.args).toEqual(['collector', '--config', collectorConfigFile().path]);
    const spec = cPodSpec();
    expect(spec.serviceAccountName).toBe(cKind('ServiceAccount').metadata.name);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10);
  });

  it('meets the "restricted" Pod Security Standard: non-root, no capability, read-only root', () => {
    // Writable: the store's volume and /tmp (SQLite's temporary files), nothing else.
    expectRestrictedPod(cPodSpec(), [dataMount().mountPath, '/tmp']);
  });

  it('caps the V8 heap below the memory limit', () => {
    expectHeapBelowLimit(cContainer());
  });

  it('probes /healthz on the port it listens on, which the Service exposes', () => {
    const port = listenPort((parseYaml(collectorConfigFile().text) as { listen: string }).listen);
    const c = cContainer();
    const named = c.ports.find((p) => p.containerPort === port);
    expect(named).toBeDefined();
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
      expect(probe?.httpGet.path).toBe('/healthz');
      expect([named?.name, port]).toContain(probe?.httpGet.port);
    }
    const svcSpec = cService().spec;
    expect(svcSpec.type).toBe('ClusterIP');
    expect(deployment().spec.template.metadata.labels).toMatchObject(svcSpec.selector);
    expect(svcSpec.ports).toHaveLength(1);
    expect(svcSpec.ports[0]?.port).toBe(port);
    expect([named?.name, port]).toContain(svcSpec.ports[0]?.targetPort);
    // The agents' DaemonSet names this Service in its collector-mode hint.
    const url = `https://${cService().metadata.name}.${cService().metadata.namespace}.svc:${port}`;
    expect(read(manifestFile)).toContain(url);
  });
});

// --- Kubernetes: the two kustomizations -----------------------------------------------------

const kustomizations = [dirname(manifestFile), dirname(collectorManifestFile)];
const objectId = (o: K8sObject): string =>
  `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** The objects of a kustomization's resources, as its manifests hold them. */
function kustomizationObjects(dir: string): K8sObject[] {
  const k = parseYaml(read(`${dir}/kustomization.yaml`)) as { kind: string; resources: string[] };
  expect(k.kind).toBe('Kustomization');
  return k.resources.flatMap((r) => loadManifest(`${dir}/${r}`, { version: '1.1' }).objects);
}

describe('Kubernetes kustomizations', () => {
  it('one per part, each listing every manifest beside it', () => {
    for (const dir of kustomizations) {
      const k = parseYaml(read(`${dir}/kustomization.yaml`)) as { resources: string[] };
      const beside = readdirSync(join(root, dir)).filter(
        (f) => f.endsWith('.yaml') && f !== 'kustomization.yaml',
      );
      expect(k.resources.sort(), dir).toEqual(beside.sort());
    }
    expect(kustomizations.map((d) => kustomizationObjects(d)).flat()).toContainEqual(daemonSet());
    expect(kustomizationObjects(dirname(collectorManifestFile))).toContainEqual(deployment());
  });

  it('apply together, in either order: an object both define is the same object', () => {
    const byId = new Map<string, { dir: string; object: K8sObject }>();
    let shared = 0;
    for (const dir of kustomizations) {
      for (const o of kustomizationObjects(dir)) {
        const seen = byId.get(objectId(o));
        if (seen !== undefined) {
          shared++;
          expect(o, `${objectId(o)} in ${dir} and ${seen.dir}`).toEqual(seen.object);
        } else byId.set(objectId(o), { dir, object: o });
      }
    }
    // The Namespace, and nothing else: one part's apply never rewrites the other's objects.
    expect(shared).toBe(1);
    // Every namespaced object lands in that one namespace.
    const ns = [...byId.values()].filter((e) => e.object.kind === 'Namespace');
    expect(ns).toHaveLength(1);
    for (const { object } of byId.values())
      if (object.kind !== 'Namespace')
        expect(object.metadata.namespace).toBe(ns[0]?.object.metadata.name);
  });

  it.runIf(onPath('kubectl'))(
    'kubectl kustomize builds each to the objects of its manifests',
    () => {
      for (const dir of kustomizations) {
        const built = parseAllDocuments(
          execFileSync('kubectl', ['kustomize', join(root, dir)], { encoding: 'utf8' }),
          { version: '1.1' },
        );
        const objects = (Array.isArray(built) ? built : []).map((d) => d.toJS() as K8sObject);
        const sort = (l: K8sObject[]) =>
          [...l].sort((a, b) => (objectId(a) < objectId(b) ? -1 : 1));
        expect(sort(objects), dir).toEqual(sort(kustomizationObjects(dir)));
      }
    },
  );
});

// --- the collector pod, as the kernel runs it -------------------------------------------------

/** Whether dist/ holds a build of the CLI no older than any source file it is built from. */
function builtCliIsFresh(): boolean {
  for (const file of importClosure(cliSource)) {
    const built = join(root, 'dist', file.replace(/\.ts$/, '.js'));
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(join(root, file)).mtimeMs)
      return false;
  }
  return true;
}

const canSandbox = canDropPrivileges && onPath('unshare') && onPath('findmnt');
const cliBuilt = canSandbox && builtCliIsFresh();
if (canSandbox && !cliBuilt)
  console.warn('deploy: skipping the collector pod run: dist/ is stale (npm run build)');

/**
 * A shell script for `unshare --mount --pid --fork` that makes every mount read-only but the
 * `writable` directories, mounts a /proc that shows processes only (systemd's
 * ProcSubset=pid), then runs `argv` under `privileges`.
 */
function sandboxScript(
  writable: string[],
  readOnlyProbe: string,
  setpriv: string[],
  argv: string[],
): string {
  const q = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
  return [
    'set -e',
    // Network namespaces of concurrent tests are bind mounts: do not keep them alive here.
    'findmnt -rno TARGET | grep \'^/run/netns/\' | while read -r m; do umount -l "$m"; done',
    'findmnt -rno TARGET | sort -r | while read -r m; do mount -o remount,bind,ro "$m" 2>/dev/null || true; done',
    ...writable.map((d) => `mount --bind ${q(d)} ${q(d)} && mount -o remount,bind,rw ${q(d)}`),
    // Not vacuous: the rest of the file system is read-only now, even for root.
    `if touch ${q(readOnlyProbe)} 2>/dev/null; then echo 'still writable' >&2; exit 97; fi`,
    'mount -t proc -o subset=pid,hidepid=invisible proc /proc',
    `exec setpriv ${setpriv.map(q).join(' ')} ${argv.map(q).join(' ')}`,
  ].join('\n');
}

interface PodRun {
  proc: ChildProcess;
  staged: StagedPod;
  token: string;
  uid: number;
  output: { stdout: string; stderr: string };
  exited: Promise<number | null>;
}

/**
 * Starts the collector as the Deployment runs it: its uid, groups and (no) capabilities,
 * no_new_privs, every mount read-only but its volumes, the ConfigMap's collector.yaml and
 * the Secret's token (listening on a free loopback port instead of 0.0.0.0:7070).
 */
function startCollectorPod(): PodRun {
  const spec = cPodSpec();
  const c = cContainer();
  const secrets = generatedSecrets();
  const secret = secrets[tokenSecretName] ?? {};
  const staged = stageCollectorPod(secrets, '127.0.0.1:0');
  const uid = spec.securityContext.runAsUser;
  const gid = spec.securityContext.runAsGroup ?? uid;
  const fromPod: Privileges = {
    uid,
    noNewPrivs: c.securityContext.allowPrivilegeEscalation === false,
    bounding: [], // drop ALL, add nothing
    ambient: [],
  };
  const args = (c.args as string[]).map((a) => (a.startsWith('/') ? staged.at(a) : a));
  const script = sandboxScript(
    staged.writable,
    staged.at('/ro-probe'),
    setprivArgs(fromPod, gid, [spec.securityContext.fsGroup ?? gid]),
    [process.execPath, join(root, binPath), ...args],
  );
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    // The pod's /tmp is an emptyDir; the real /tmp holds the stage, so point there instead.
    TMPDIR: staged.at('/tmp'),
  };
  for (const e of c.env) if (e.value !== undefined) env[e.name] = e.value;
  const proc = spawn(
    'unshare',
    ['--mount', '--pid', '--fork', '--kill-child', 'sh', '-c', script],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output = { stdout: '', stderr: '' };
  proc.stdout.on('data', (d: Buffer) => (output.stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output.stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, staged, token: (secret['fleet.token'] ?? '').trim(), uid, output, exited };
}

let podRun: PodRun | undefined;
// Started before the first test, so that its Node start-up overlaps the static checks.
beforeAll(() => {
  if (cliBuilt) podRun = startCollectorPod();
});
afterAll(() => {
  const proc = podRun?.proc;
  // unshare --kill-child takes the collector with it.
  if (proc !== undefined && proc.exitCode === null && proc.signalCode === null)
    proc.kill('SIGKILL');
});

describe.runIf(cliBuilt)('the collector pod, per the kernel', () => {
  it('runs with no capability, a read-only root and only its volumes writable; stops on SIGTERM', async () => {
    if (podRun === undefined) throw new Error('the collector pod was not started');
    const { proc, staged, token, uid, output, exited } = podRun;
    const started = await pollUntil(
      'the collector to listen',
      () =>
        proc.exitCode !== null
          ? { exitCode: proc.exitCode }
          : /^Faultline collector on (https:\/\/\S+)$/m.exec(output.stdout)?.[1],
      { timeoutMs: 20_000 },
    );
    if (typeof started !== 'string')
      throw new Error(`the collector exited ${started.exitCode}: ${output.stderr}`);
    const url = started;

    // The kernel's view of the collector process: the pod's uid, no capability, no_new_privs.
    const pid = Number(readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim());
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): string =>
      new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '';
    expect(field('Uid').split(/\s+/)).toEqual([uid, uid, uid, uid].map(String));
    for (const caps of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
      expect(field(caps), caps).toMatch(/^0+$/);
    expect(field('NoNewPrivs')).toBe('1');

    // Over TLS, the certificate checked against the CA agents are given (--ca-file).
    const dispatcher = new UndiciAgent({ connect: { ca: collectorCert().cert } });
    const fetch = (u: string, init: { headers?: Record<string, string> } = {}) =>
      undiciFetch(u, { ...init, dispatcher });
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
    // The token the Secret holds is the one the collector accepts.
    const planUrl = `${url}/api/v1/plan?agent=node-1`;
    expect((await fetch(planUrl)).status).toBe(401);
    const plan = await fetch(planUrl, { headers: { authorization: `Bearer ${token}` } });
    expect(plan.status).toBe(200);
    const { targets } = (await plan.json()) as { targets: { component: string }[] };
    expect(targets.map((t) => t.component)).toContain('kube-apiserver');

    // SIGTERM, as the kubelet sends it; the collector is PID 1 of its namespace, as in a pod.
    process.kill(pid, 'SIGTERM');
    expect(await exited).toBe(0);
    const logs = output.stderr
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { msg: string });
    expect(logs.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['collector started', 'stopping']),
    );
    // Closed cleanly: the write-ahead log is checkpointed into the store and gone.
    const data = readdirSync(staged.at(dataMount().mountPath));
    expect(data).toContain('faultline.db');
    expect(data).not.toContain('faultline.db-wal');
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

/** The `node -e` script of the HEALTHCHECK. */
function healthScript(): string {
  const args = final('HEALTHCHECK')[0]?.args ?? '';
  const cmd = JSON.parse(args.slice(args.indexOf('CMD ') + 4)) as string[];
  expect(cmd.slice(0, 2)).toEqual(['node', '-e']);
  return cmd[2] ?? '';
}

/**
 * The URL the HEALTHCHECK asks when PID 1's command line is `argv` (undefined: unreadable):
 * its script run here, with fs and http stubbed.
 */
function healthUrl(argv: string[] | undefined): string {
  let asked = '';
  const stubs: Record<string, unknown> = {
    'node:fs': {
      readFileSync: (path: string): string => {
        expect(path).toBe('/proc/1/cmdline');
        if (argv === undefined) throw new Error('ENOENT');
        return `${argv.join('\0')}\0`;
      },
    },
    'node:http': {
      get: (url: string) => {
        asked = url;
        return { on: () => undefined };
      },
    },
  };
  const require = (id: string): unknown => {
    if (!(id in stubs)) throw new Error(`unexpected require(${id})`);
    return stubs[id];
  };
  // Parsed as `node -e` parses it (a sloppy-mode script), run with the stubs as `require`.
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  (new Function('require', healthScript()) as (r: typeof require) => void)(require);
  return asked;
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
    // Everything the CLI imports (hence what tsc must compile) is copied in: the agent's
    // code and the collector's.
    const copiedDirs = local.filter((s) => s.endsWith('/'));
    expect(copiedDirs).toEqual(expect.arrayContaining(['agent/', 'collector/']));
    for (const file of importClosure(cliSource)) {
      expect(
        copiedDirs.some((d) => file.startsWith(d)),
        `${file} is not copied`,
      ).toBe(true);
    }
    for (const cfg of ['tsconfig.json', 'tsconfig.build.json']) expect(local).toContain(cfg);
    // And every script `npm run build` runs (the build stage runs it).
    const build = (JSON.parse(read('package.json')) as { scripts: { build: string } }).scripts
      .build;
    const scripts = [...build.matchAll(/\bnode (\S+\.m?js)\b/g)].map((m) => m[1] ?? '');
    expect(scripts.length).toBeGreaterThan(0);
    for (const script of scripts) {
      expect(
        local.includes(script) || copiedDirs.some((d) => script.startsWith(d)),
        `${script} (npm run build) is not copied`,
      ).toBe(true);
    }
  });

  it('runs the CLI from /app as a numeric non-root user, the DaemonSet’s and the collector’s', () => {
    const users = final('USER');
    expect(users.length).toBe(1);
    const [uid, gid] = (users[0]?.args ?? '').split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(podSpec().securityContext.runAsUser).toBe(uid);
    expect(cPodSpec().securityContext).toMatchObject({ runAsUser: uid, runAsGroup: gid });
    expect(jsonForm(final('ENTRYPOINT')[0])).toEqual(['node', `/app/${binPath}`]);
    expect(final('WORKDIR').at(-1)?.args).toBe('/app');
    const dist = final('COPY')
      .map(copyParts)
      .find((c) => c.sources.includes('/src/dist'));
    expect(posix.resolve('/app', dist?.dest ?? '')).toBe('/app/dist');
  });

  it('runs the agent by default, reading its config where the Kubernetes ConfigMap is mounted', () => {
    expect(jsonForm(final('CMD')[0])).toEqual(['agent', '--config', mountedConfig().path]);
  });

  it('creates the collector’s data dir for its user, so a new volume there is writable', () => {
    const [uid, gid] = (final('USER')[0]?.args ?? '').split(':');
    const dataDir = (parseYaml(collectorConfigFile().text) as { dataDir: string }).dataDir;
    expect(
      final('RUN').some((i) =>
        i.args.includes(`install -d -o ${uid} -g ${gid} -m 0700 ${dataDir}`),
      ),
    ).toBe(true);
  });

  it('exposes and health-checks the agent’s metrics port, or the collector’s when PID 1 is one', () => {
    const agentPort = listenPort(defaultMetricsListen);
    const collectorPort = listenPort(defaultCollectorListen);
    // The port the Kubernetes collector listens on, which the README tells Docker users to keep.
    const { listen } = parseYaml(collectorConfigFile().text) as { listen: string };
    expect(listenPort(listen)).toBe(collectorPort);
    expect(final('EXPOSE').flatMap((i) => i.args.split(/\s+/))).toEqual([
      String(agentPort),
      String(collectorPort),
    ]);
    const main = `/app/${binPath}`;
    const agentUrl = `http://127.0.0.1:${agentPort}/healthz`;
    const collectorUrl = `http://127.0.0.1:${collectorPort}/healthz`;
    const cmd = jsonForm(final('CMD')[0]) as string[];
    expect(healthUrl(['node', main, ...cmd])).toBe(agentUrl);
    expect(healthUrl(['node', main, ...(cContainer().args as string[])])).toBe(collectorUrl);
    // docker run --init: tini is PID 1, the command follows it.
    expect(healthUrl(['/sbin/docker-init', '--', 'node', main, 'collector'])).toBe(collectorUrl);
    // An agent taking its plan from a collector is still an agent.
    expect(
      healthUrl(['node', main, 'agent', '--collector', 'http://collector:7070', '--token', 'x']),
    ).toBe(agentUrl);
    expect(healthUrl(undefined)).toBe(agentUrl);
  });
});

// --- scale-out role examples ----------------------------------------------------------------

describe('collector examples', () => {
  const examples = readdirSync(join(root, 'deploy/examples')).filter((f) =>
    /^collector.*\.yaml$/.test(f),
  );
  const load = (f: string): ReturnType<typeof parseCollectorConfig> =>
    parseCollectorConfig(read(`deploy/examples/${f}`), f);

  it('every collector example in deploy/examples loads (the scale-out roles among them)', () => {
    expect(examples).toEqual(
      expect.arrayContaining([
        'collector.yaml',
        'collector-ingest-shard.yaml',
        'collector-localiser.yaml',
      ]),
    );
    for (const f of examples) expect(() => load(f), f).not.toThrow();
  });

  it('the ingest shard and the localiser are NATS roles that agree on everything the shards and the localiser share', () => {
    const shard = load('collector-ingest-shard.yaml');
    const localiser = load('collector-localiser.yaml');
    expect(shard.transport).toBe('nats');
    expect(shard.nats).toMatchObject({ role: 'ingest', shard: { by: 'hash', index: 0 } });
    expect(localiser.transport).toBe('nats');
    expect(localiser.nats?.role).toBe('localiser');
    expect(localiser.nats?.shard).toBeUndefined();
    // Another consumer name: the localiser's durable consumer is on the change stream.
    expect(localiser.nats?.consumer).not.toBe(shard.nats?.consumer);
    const shared = (c: typeof shard): unknown => ({
      nats: {
        servers: c.nats?.servers,
        stream: c.nats?.stream,
        subject: c.nats?.subject,
        planBucket: c.nats?.planBucket,
        changeStream: c.nats?.changeStream,
        changeSubject: c.nats?.changeSubject,
        replicas: c.nats?.replicas,
      },
      agents: c.agents,
      probes: c.probes,
      diagnosis: c.diagnosis,
      inventory: c.inventory,
    });
    expect(shared(localiser)).toEqual(shared(shard));
    // A fixed report interval: `auto` would scale with a shard's share, not the fleet.
    expect(shard.agents.reportIntervalMs).not.toBe('auto');
  });
});
