/**
 * The checks every Kubernetes form of Faultline passes — the kustomizations under
 * deploy/kubernetes/ and the Helm chart's rendered output (deploy/helm/) — so the two cannot
 * drift apart on what matters: the agents' one privilege, the collector's "restricted" pod,
 * the memory the agent measurably needs, health probes on the listening port.
 */
import { expect } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { defaultStopGraceMs } from '../agent/agent.js';

/**
 * The agent container's memory limit. From `node dist/bench/agent.js --managed` (the agent
 * as deployed: its plan from a collector, reporting to it; 1,000 targets at 1 s, a third each
 * icmp/tcp/http, with `agentNodeOptions` and `agentMallocArenaMax`), issue 18's fifth pass:
 * peak RSS of the agent and its fping children ~85–88 MB healthy, and 145 MB (agent 99.8,
 * fping 45.7) over an hour with 12 % of the probes timing out (`--failing 0.1 --failing-mode
 * timeout`), flat after the first minutes; before issue 18 222–233 MB. 192Mi leaves ~30% over
 * the failure peak for longer bursts, spooling while the collector is away, and garbage
 * collection.
 */
export const agentMemoryLimit = '192Mi';
/** The agent's node flags: a small young generation, one V8 helper thread (agent/heap.ts, the README). */
export const agentNodeOptions = '--max-semi-space-size=1 --v8-pool-size=1';
/**
 * glibc's malloc arenas for the agent: two instead of eight per core. The threads that
 * compress and write the report spool each got an arena of their own: ~2.5 MB more RSS for a
 * managed agent at 1,000 targets (issue 18's fifth pass, the README).
 */
export const agentMallocArenaMax = '2';
/** What the scheduler reserves per node for the agent: above its measured peak. */
export const agentMemoryRequest = '128Mi';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

export interface HttpProbe {
  httpGet: { path: string; port: string | number; scheme?: 'HTTP' | 'HTTPS' };
}

export interface Container {
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
  startupProbe?: HttpProbe;
  livenessProbe: HttpProbe;
  readinessProbe: HttpProbe;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}

export interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] };
  persistentVolumeClaim?: { claimName: string };
  emptyDir?: { sizeLimit?: string };
}

export interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken: boolean;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  dnsPolicy?: string;
  terminationGracePeriodSeconds: number;
  securityContext: {
    runAsNonRoot: boolean;
    runAsUser: number;
    runAsGroup?: number;
    fsGroup?: number;
    seccompProfile?: { type: string };
  };
  containers: Container[];
  volumes: Volume[];
}

export interface Workload extends K8sObject {
  spec: {
    replicas?: number;
    strategy?: { type: string };
    serviceName?: string;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: PodSpec;
    };
    volumeClaimTemplates?: {
      metadata: { name: string };
      spec: { accessModes: string[]; resources: { requests: { storage: string } } };
    }[];
  };
}

/**
 * Multi-document YAML as kubectl reads it (YAML 1.1, where `defaultMode: 0440` is octal);
 * fails on any parse error or warning (a duplicated key, say).
 */
export function parseManifests(text: string, what: string): K8sObject[] {
  const docs = parseAllDocuments(text, { version: '1.1', uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [];
  for (const doc of list) {
    expect(doc.errors, what).toEqual([]);
    expect(doc.warnings, what).toEqual([]);
  }
  return list.map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

export function onlyContainer(spec: PodSpec): Container {
  const [c, ...more] = spec.containers;
  if (c === undefined || more.length > 0) throw new Error('expected one container');
  return c;
}

function mebibytes(quantity: string | undefined): number {
  const m = /^(\d+)(Mi|Gi)$/.exec(quantity ?? '');
  if (m === null) throw new Error(`not a quantity in Mi or Gi: ${quantity}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
}

/**
 * The agent's pod: on the node's network (a partition between nodes is what it sees),
 * non-root, read-only root, NET_RAW its only privilege, the measured memory limit and no CPU
 * limit. `writable` lists the mount paths it may write (the spool, in collector mode).
 */
export function expectAgentPod(spec: PodSpec, writable: readonly string[] = []): void {
  expect(spec.hostNetwork).toBe(true);
  expect(spec.dnsPolicy).toBe('ClusterFirstWithHostNet');
  expect(spec.automountServiceAccountToken).toBe(false);
  expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(defaultStopGraceMs / 1000);
  expect(spec.securityContext.runAsNonRoot).toBe(true);
  expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
  const c = onlyContainer(spec);
  expect(c.securityContext).toMatchObject({
    privileged: false,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: true, // fping's file capability (see the capabilities tests)
    capabilities: { drop: ['ALL'], add: ['NET_RAW'] },
  });
  expect(c.resources.limits.memory).toBe(agentMemoryLimit);
  expect(c.env.find((e) => e.name === 'NODE_OPTIONS')?.value).toBe(agentNodeOptions);
  expect(c.env.find((e) => e.name === 'MALLOC_ARENA_MAX')?.value).toBe(agentMallocArenaMax);
  expect(c.resources.limits.cpu).toBeUndefined();
  expect(c.resources.requests.memory).toBe(agentMemoryRequest);
  expect(mebibytes(c.resources.requests.memory)).toBeLessThanOrEqual(mebibytes(agentMemoryLimit));
  expect(c.resources.requests.cpu).toBeDefined();
  expect(
    c.volumeMounts.filter((m) => m.readOnly !== true).map((m) => m.mountPath),
    'writable mounts',
  ).toEqual(writable);
}

/**
 * The collector's pod meets the "restricted" Pod Security Standard: non-root, no
 * capability, no escalation, read-only root; Secrets root:fsGroup 0440; writable only
 * `writable` (its store, and /tmp).
 */
export function expectRestrictedPod(spec: PodSpec, writable: readonly string[]): void {
  expect(spec.hostNetwork ?? false).toBe(false);
  expect(spec.hostPID ?? false).toBe(false);
  expect(spec.hostIPC ?? false).toBe(false);
  expect(spec.securityContext).toMatchObject({
    runAsNonRoot: true,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
  const c = onlyContainer(spec);
  expect(c.securityContext).toEqual({
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ['ALL'] },
  });
  for (const v of spec.volumes) {
    const { name, ...source } = v;
    if (v.secret !== undefined) expect(v.secret.defaultMode, name).toBe(0o440);
    expect(['configMap', 'secret', 'persistentVolumeClaim', 'emptyDir'], name).toContain(
      Object.keys(source)[0],
    );
  }
  expect(c.volumeMounts.filter((m) => m.readOnly !== true).map((m) => m.mountPath)).toEqual(
    writable,
  );
  // The token files are root:<fsGroup> 0440: the collector reads them through its group.
  expect(spec.securityContext.fsGroup).toBe(spec.securityContext.runAsGroup);
}

/** Kubernetes expands $(VAR) only from variables listed earlier; later ones stay literal. */
export function expectEnvInOrder(c: Container, mustHave: readonly string[] = []): void {
  const seen = new Set<string>();
  for (const e of c.env) {
    for (const m of (e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
      expect(seen, `${e.name} uses $(${m[1]})`).toContain(m[1]);
    seen.add(e.name);
  }
  for (const name of mustHave) expect(seen).toContain(name);
}

/** A V8 heap cap below the memory limit: V8 collects harder instead of an OOM kill. */
export function expectHeapBelowLimit(c: Container): void {
  const heapMiB = Number(
    /--max-old-space-size=(\d+)\b/.exec(
      c.env.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '',
    )?.[1],
  );
  expect(heapMiB).toBeGreaterThan(0);
  expect(heapMiB).toBeLessThan(mebibytes(c.resources.limits.memory));
  expect(c.resources.requests.memory).toBeDefined();
  expect(c.resources.requests.cpu).toBeDefined();
}

/** Liveness, readiness (and startup, when given) ask /healthz on the port listened on. */
export function expectHealthProbes(
  c: Container,
  port: number,
  scheme: 'HTTP' | 'HTTPS' = 'HTTP',
): void {
  const named = c.ports.find((p) => p.containerPort === port);
  expect(named, `a container port ${port}`).toBeDefined();
  for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
    if (probe === undefined) continue;
    expect(probe.httpGet.path).toBe('/healthz');
    expect([named?.name, port]).toContain(probe.httpGet.port);
    expect(probe.httpGet.scheme ?? 'HTTP').toBe(scheme);
  }
}
