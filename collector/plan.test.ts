import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { probeRegistry } from '../probes/registry.js';
import { parseTarget } from '../probes/target.js';
import { PlanSchema } from '../wire/plan.js';
import type { Plan, PlanTarget } from '../wire/plan.js';
import { parseCollectorConfig } from './config.js';
import type { CollectorConfig, ServiceConfig } from './config.js';
import { protocolProbe } from './inventory.js';
import { planFor, silentAfterFor } from './plan.js';
import type { KnownAgent } from './plan.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'faultline-plan-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const config = (text: string): CollectorConfig => parseCollectorConfig(text, 'collector.yaml');

// The example with its store in a temp dir: plans do not care where it is.
const exampleText = readFileSync(join(root, 'deploy/examples/collector.yaml'), 'utf8').replace(
  /^dataDir: .*$/m,
  `dataDir: ${dataDir}`,
);
const example = config(exampleText);
const fixture = (name: string): CollectorConfig =>
  config(readFileSync(join(root, 'test/fixtures/collector', name), 'utf8'));

const names = (plan: Plan): string[] => plan.targets.map((t) => t.name);

function target(plan: Plan, name: string): PlanTarget {
  const t = plan.targets.find((x) => x.name === name);
  if (t === undefined) throw new Error(`no target ${name} in ${names(plan).join(', ')}`);
  return t;
}

/** The targets of every component but `skip`, in inventory order. */
const exampleTargets = (skip: string): string[] =>
  [
    ['app-1', 'api', 'http'],
    ['app-2', 'api', 'http'],
    ['web-1', 'https', 'http'],
    ['dns-1', 'dns', 'dns'],
    ['db-1', 'postgres', 'postgres'],
    ['db-2', 'postgres', 'postgres'],
    ['cache-1', 'redis', 'redis'],
  ]
    .filter(([c]) => c !== skip)
    .flatMap(([c, s, k]) => [`${c}/icmp`, `${c}/mtu`, `${c}/${s}/tcp`, `${c}/${s}/${k}`]);

describe('plans for the example system', () => {
  it('app-1 probes every other component at every layer, and not itself', () => {
    const plan = planFor(example, 'app-1', [], 1234);
    expect(names(plan)).toEqual(exampleTargets('app-1'));
    expect(plan).toMatchObject({
      agent: 'app-1',
      generatedAtMs: 1234,
      reportIntervalMs: 1000,
      refreshIntervalMs: 30_000,
    });
    const db1 = { zone: 'b', switch: 'sw-2', rack: 'r3', role: 'database' };
    const schedule = { intervalMs: 1000, timeoutMs: 800 };
    expect(plan.targets.filter((t) => t.component === 'db-1')).toEqual([
      {
        name: 'db-1/icmp',
        component: 'db-1',
        kind: 'icmp',
        address: '10.0.2.11',
        ...schedule,
        options: { count: 3 },
        labels: db1,
      },
      {
        name: 'db-1/mtu',
        component: 'db-1',
        kind: 'mtu',
        address: '10.0.2.11',
        ...schedule,
        options: { size: 1500 },
        labels: db1,
      },
      {
        name: 'db-1/postgres/tcp',
        component: 'db-1',
        service: 'postgres',
        kind: 'tcp',
        address: '10.0.2.11:5432',
        ...schedule,
        options: {},
        labels: db1,
      },
      {
        name: 'db-1/postgres/postgres',
        component: 'db-1',
        service: 'postgres',
        kind: 'postgres',
        address: '10.0.2.11:5432',
        ...schedule,
        options: { user: 'faultline' },
        labels: db1,
      },
    ] satisfies PlanTarget[]);
  });

  it('db-1 does not probe itself, and probes its replica and the front', () => {
    const plan = planFor(example, 'db-1');
    expect(names(plan)).toEqual(exampleTargets('db-1'));
    expect(plan.targets.some((t) => t.component === 'db-1')).toBe(false);
    expect(target(plan, 'app-1/api/http')).toMatchObject({
      kind: 'http',
      address: 'http://10.0.1.11:8080/healthz',
      options: { validStatusCodes: [200] },
      labels: { zone: 'a', switch: 'sw-1', rack: 'r1', role: 'api' },
    });
    // The service's own options replace the defaults key by key.
    expect(target(plan, 'web-1/https/http')).toMatchObject({
      address: 'https://10.0.1.21/',
      options: { validStatusCodes: [200, 301, 302], caFile: '/etc/faultline/internal-ca.pem' },
    });
    expect(target(plan, 'web-1/https/tcp').address).toBe('10.0.1.21:443');
    expect(target(plan, 'dns-1/dns/dns')).toMatchObject({
      address: 'db-1.internal.example',
      options: { server: '10.0.1.53' },
    });
  });

  it("skips a component by its agent's name, not by the component's", () => {
    // web-1 runs an agent called web-1.internal.
    expect(names(planFor(example, 'web-1.internal'))).toEqual(exampleTargets('web-1'));
    expect(names(planFor(example, 'web-1'))).toEqual(exampleTargets(''));
    // An agent the inventory does not know probes everything.
    expect(names(planFor(example, 'laptop'))).toEqual(exampleTargets(''));
  });

  it('is a valid wire plan whose every target the agent can parse', () => {
    for (const agent of ['app-1', 'db-1', 'laptop']) {
      const plan = planFor(example, agent, [{ name: 'bastion', address: '10.0.9.9' }]);
      expect(PlanSchema.parse(plan)).toEqual(plan);
      expect(new Set(names(plan)).size).toBe(plan.targets.length);
      for (const t of plan.targets) {
        const def = probeRegistry[t.kind as keyof typeof probeRegistry];
        expect(def, t.name).toBeDefined();
        expect(() => parseTarget(t.address, def.target), t.name).not.toThrow();
        expect((def.options as z.ZodType).safeParse(t.options).success, t.name).toBe(true);
      }
    }
  });
});

describe('plan version', () => {
  const withCacheService = exampleText.replace(
    '        - { name: redis, kind: redis, port: 6379 }\n',
    '        - { name: redis, kind: redis, port: 6379 }\n        - { name: metrics, kind: http, port: 9121, path: /metrics }\n',
  );

  it('is stable across calls, clocks and parses', () => {
    const a = planFor(example, 'app-1', [], 1);
    const b = planFor(config(exampleText), 'app-1', [], 2);
    expect(a.version).toMatch(/^[0-9a-f]{16}$/);
    expect(b.version).toBe(a.version);
    expect(b.targets).toEqual(a.targets);
  });

  it('changes when the inventory changes what the agent probes', () => {
    expect(withCacheService).not.toBe(exampleText);
    const before = planFor(example, 'app-1');
    const after = planFor(config(withCacheService), 'app-1');
    expect(names(after)).toContain('cache-1/metrics/http');
    expect(after.version).not.toBe(before.version);
  });

  it('changes with the probe interval and the report interval', () => {
    const before = planFor(example, 'app-1').version;
    const slower = config(exampleText.replace('  interval: 1s\n', '  interval: 2s\n'));
    expect(planFor(slower, 'app-1').version).not.toBe(before);
    const reports = config(exampleText.replace('  reportInterval: auto', '  reportInterval: 2s'));
    expect(planFor(reports, 'app-1').version).not.toBe(before);
  });

  it('carries the confirmation burst and adaptive timeouts, and changes with them', () => {
    const plan = planFor(example, 'app-1');
    expect(plan.confirm).toEqual({ count: 3, spacingMs: 150 });
    expect(plan.adaptiveTimeout).toBe(true);
    const written = (from: string, to: string): CollectorConfig => {
      expect(exampleText).toContain(from);
      return config(exampleText.replace(from, to));
    };
    const burst = planFor(
      written(
        '  confirm: { count: 3, spacing: 150ms }\n',
        '  confirm: { count: 5, spacing: 100ms }\n',
      ),
      'app-1',
    );
    expect(burst.confirm).toEqual({ count: 5, spacingMs: 100 });
    expect(burst.version).not.toBe(plan.version);
    const fixed = planFor(
      written('  adaptiveTimeout: true\n', '  adaptiveTimeout: false\n'),
      'app-1',
    );
    expect(fixed.adaptiveTimeout).toBe(false);
    expect(fixed.version).not.toBe(plan.version);
    expect(PlanSchema.parse(burst)).toEqual(burst);
  });

  it('reportInterval auto: 1 s for a small fleet, a second more per 200 agents, at most 10 s; silence follows', () => {
    expect(example.agents).toMatchObject({ reportIntervalMs: 'auto', silentAfterMs: 'auto' });
    const fleet = (n: number): KnownAgent[] =>
      Array.from({ length: n }, (_, i) => ({ name: `sim-${i}`, labels: {} }));
    const intervalWith = (others: number) => planFor(example, 'app-1', fleet(others));
    expect(intervalWith(0).reportIntervalMs).toBe(1000);
    expect(intervalWith(199).reportIntervalMs).toBe(1000);
    expect(intervalWith(200).reportIntervalMs).toBe(2000);
    expect(intervalWith(1999).reportIntervalMs).toBe(10_000);
    expect(intervalWith(5000).reportIntervalMs).toBe(10_000);
    // The agent itself among the known ones is not counted twice.
    expect(planFor(example, 'sim-0', fleet(200)).reportIntervalMs).toBe(1000);
    // A new interval is a new plan: running agents pick it up at their next refresh.
    expect(intervalWith(200).version).not.toBe(intervalWith(0).version);
    expect(silentAfterFor(example.agents, 1)).toBe(3000);
    expect(silentAfterFor(example.agents, 2000)).toBe(30_000);
    const fixed = config(exampleText.replace('  reportInterval: auto', '  reportInterval: 2s'));
    expect(intervalWith(0).reportIntervalMs).toBe(1000);
    expect(planFor(fixed, 'app-1', fleet(5000)).reportIntervalMs).toBe(2000);
    expect(silentAfterFor(fixed.agents, 5000)).toBe(6000);
  });

  it("stays when only the agent's own component changes", () => {
    const moved = config(
      exampleText.replace(
        'labels: { zone: b, switch: sw-2, rack: r4 }',
        'labels: { zone: b, switch: sw-3, rack: r4 }',
      ),
    );
    expect(planFor(moved, 'cache-1').version).toBe(planFor(example, 'cache-1').version);
    expect(planFor(moved, 'app-1').version).not.toBe(planFor(example, 'app-1').version);
  });
});

describe('protocol targets', () => {
  const service = (fields: Partial<ServiceConfig> & Pick<ServiceConfig, 'kind' | 'port'>) => ({
    name: fields.kind,
    options: {},
    ...fields,
  });

  it.each([
    {
      what: 'http on its default port',
      address: '10.0.0.5',
      svc: service({ kind: 'http', port: 80, path: '/', tls: false }),
      want: { address: 'http://10.0.0.5/', options: {} },
    },
    {
      what: 'http with a path and query',
      address: 'app.internal',
      svc: service({ kind: 'http', port: 8080, path: '/healthz?deep=1', tls: false }),
      want: { address: 'http://app.internal:8080/healthz?deep=1', options: {} },
    },
    {
      what: 'https on 443',
      address: '10.0.0.5',
      svc: service({ kind: 'http', port: 443, path: '/', tls: true }),
      want: { address: 'https://10.0.0.5/', options: {} },
    },
    {
      what: 'http on IPv6',
      address: '2001:db8::5',
      svc: service({ kind: 'http', port: 8443, path: '/x', tls: true }),
      want: { address: 'https://[2001:db8::5]:8443/x', options: {} },
    },
    {
      what: 'dns on port 53',
      address: '10.0.0.53',
      svc: service({ kind: 'dns', port: 53, query: 'db-1.internal' }),
      want: { address: 'db-1.internal', options: { server: '10.0.0.53' } },
    },
    {
      what: 'dns on another port',
      address: '10.0.0.53',
      svc: service({ kind: 'dns', port: 5353, query: 'db-1.internal' }),
      want: { address: 'db-1.internal', options: { server: '10.0.0.53:5353' } },
    },
    {
      what: 'dns on IPv6 and another port',
      address: '::1',
      svc: service({ kind: 'dns', port: 5353, query: 'db-1.internal' }),
      want: { address: 'db-1.internal', options: { server: '[::1]:5353' } },
    },
    {
      what: 'postgres on IPv6',
      address: '2001:db8::11',
      svc: service({ kind: 'postgres', port: 5432 }),
      want: { address: '[2001:db8::11]:5432', options: {} },
    },
    {
      what: 'redis on a hostname',
      address: 'cache.internal',
      svc: service({ kind: 'redis', port: 6380 }),
      want: { address: 'cache.internal:6380', options: {} },
    },
  ])('$what', ({ address, svc, want }) => {
    expect(protocolProbe(address, svc)).toEqual(want);
  });

  it('plans dns, http and tcp services as the agent will probe them', () => {
    const plan = planFor(fixture('valid-services.yaml'), 'laptop');
    expect(plan.targets.map((t) => [t.name, t.kind, t.address, t.options] as const)).toEqual([
      ['edge/icmp', 'icmp', '2001:db8::10', {}],
      ['edge/mtu', 'mtu', '2001:db8::10', { size: 1500 }],
      ['edge/http/tcp', 'tcp', '[2001:db8::10]:443', { family: 4 }],
      ['edge/http/http', 'http', 'https://[2001:db8::10]/status?full=1', {}],
      ['edge/admin/tcp', 'tcp', '[2001:db8::10]:8443', { family: 4 }],
      ['edge/admin/http', 'http', 'https://[2001:db8::10]:8443/', {}],
      ['edge/dns/tcp', 'tcp', '[2001:db8::10]:5353', { family: 4 }],
      ['edge/dns/dns', 'dns', 'edge.internal.example', { server: '[2001:db8::10]:5353' }],
      ['store/icmp', 'icmp', 'store.internal.example', {}],
      ['store/mtu', 'mtu', 'store.internal.example', { size: 1500 }],
      ['store/mysql/tcp', 'tcp', 'store.internal.example:3306', { family: 4 }],
      ['store/mysql/mysql', 'mysql', 'store.internal.example:3306', {}],
      ['store/postgres/tcp', 'tcp', 'store.internal.example:5432', { family: 4 }],
      [
        'store/postgres/postgres',
        'postgres',
        'store.internal.example:5432',
        { user: 'monitor', database: 'app' },
      ],
      ['store/redis/tcp', 'tcp', 'store.internal.example:6379', { family: 4 }],
      ['store/redis/redis', 'redis', 'store.internal.example:6379', {}],
      // A tcp service's protocol is tcp: one target, with its own options.
      ['store/nats/tcp', 'tcp', 'store.internal.example:4222', { family: 4, expect: '^INFO ' }],
      ['plain/icmp', 'icmp', '10.0.0.7', {}],
      ['plain/mtu', 'mtu', '10.0.0.7', { size: 1500 }],
    ]);
    expect(target(plan, 'store/postgres/postgres')).toMatchObject({
      intervalMs: 10_000,
      timeoutMs: 5000,
      labels: { role: 'queue' },
    });
  });
});

describe('layers', () => {
  it('icmp only: one ping per component, nothing else', () => {
    const cfg = fixture('valid-layers-icmp.yaml');
    expect(names(planFor(cfg, 'laptop'))).toEqual(['db-1/icmp', 'db-2/icmp']);
    expect(names(planFor(cfg, 'db-1'))).toEqual(['db-2/icmp']);
    expect(planFor(cfg, 'db-1').targets[0]).toMatchObject({ intervalMs: 500, timeoutMs: 400 });
  });

  it('tcp only: a connect per service, a tcp service with its own options', () => {
    const cfg = config(
      readFileSync(join(root, 'test/fixtures/collector/valid-services.yaml'), 'utf8').replace(
        '  interval: 10s\n',
        '  interval: 10s\n  layers: [tcp]\n',
      ),
    );
    const plan = planFor(cfg, 'laptop');
    expect(plan.targets.every((t) => t.kind === 'tcp')).toBe(true);
    expect(names(plan)).toEqual([
      'edge/http/tcp',
      'edge/admin/tcp',
      'edge/dns/tcp',
      'store/mysql/tcp',
      'store/postgres/tcp',
      'store/redis/tcp',
      'store/nats/tcp',
    ]);
    expect(target(plan, 'store/nats/tcp').options).toEqual({ family: 4, expect: '^INFO ' });
  });

  it('protocol only: each service in its own protocol', () => {
    const cfg = config(exampleText.replace('layers: [icmp, tcp, protocol]', 'layers: [protocol]'));
    const plan = planFor(cfg, 'app-1');
    expect(names(plan)).toEqual(
      exampleTargets('app-1').filter(
        (n) => !n.endsWith('/icmp') && !n.endsWith('/mtu') && !n.endsWith('/tcp'),
      ),
    );
  });
});

describe('the full-size echo (probes.mtu)', () => {
  it('sits beside every icmp target: same address, schedule and labels, kind mtu, options { size }', () => {
    const plan = planFor(example, 'app-1');
    const pings = plan.targets.filter((t) => t.kind === 'icmp');
    const mtus = plan.targets.filter((t) => t.kind === 'mtu');
    expect(mtus.map((t) => t.name)).toEqual(pings.map((t) => t.name.replace(/\/icmp$/, '/mtu')));
    for (const ping of pings) {
      const { name, kind, options, ...rest } = ping;
      expect(target(plan, name.replace(/\/icmp$/, '/mtu'))).toEqual({
        ...rest,
        name: name.replace(/\/icmp$/, '/mtu'),
        kind: 'mtu',
        options: { size: 1500 },
      });
      // Right after its icmp target.
      expect(plan.targets[plan.targets.indexOf(ping) + 1]?.kind).toBe('mtu');
      expect(kind).toBe('icmp');
      expect(options).toEqual({ count: 3 });
    }
  });

  it('jumbo frames: the configured size, merged over the mtu defaults', () => {
    const plan = planFor(fixture('valid-mtu-jumbo.yaml'), 'laptop');
    expect(plan.targets.map((t) => [t.name, t.kind, t.address, t.options] as const)).toEqual([
      ['db-1/icmp', 'icmp', '10.0.2.11', {}],
      ['db-1/mtu', 'mtu', '10.0.2.11', { count: 2, size: 9000 }],
      ['db-2/icmp', 'icmp', 'fd00::12', {}],
      ['db-2/mtu', 'mtu', 'fd00::12', { count: 2, size: 9000 }],
    ]);
    expect(target(plan, 'db-1/mtu').labels).toEqual({ switch: 'sw-2', role: 'other' });
    for (const t of plan.targets) {
      const def = probeRegistry[t.kind as keyof typeof probeRegistry];
      expect((def.options as z.ZodType).safeParse(t.options).success, t.name).toBe(true);
    }
  });

  it('off: no mtu target anywhere, and a version of its own', () => {
    const off = config(exampleText.replace('  mtu: { size: 1500 }', '  mtu: false'));
    const plan = planFor(off, 'app-1', [{ name: 'bastion', address: '10.0.9.9' }]);
    expect(plan.targets.some((t) => t.kind === 'mtu')).toBe(false);
    expect(names(plan)).toEqual([
      ...exampleTargets('app-1').filter((n) => !n.endsWith('/mtu')),
      'bastion/icmp',
    ]);
    expect(planFor(off, 'app-1').version).not.toBe(planFor(example, 'app-1').version);
  });

  it('with no icmp target there is none: the layers decide', () => {
    const cfg = config(exampleText.replace('layers: [icmp, tcp, protocol]', 'layers: [tcp]'));
    expect(planFor(cfg, 'app-1').targets.some((t) => t.kind === 'mtu')).toBe(false);
  });
});

describe('mesh', () => {
  const known: KnownAgent[] = [
    { name: 'app-1', address: '10.0.1.11' },
    { name: 'app-2', address: '10.0.1.12' },
    { name: 'bastion', address: '10.0.9.9', labels: { zone: 'c' } },
    { name: 'bastion', address: '10.0.9.10' },
    { name: 'ghost' },
    { name: 'hostile', address: '-oProxyCommand=reboot' },
    // Same host as db-2: pinged already.
    { name: 'db-2-sidecar', address: '10.0.2.12' },
  ];

  it("pings known agents' hosts outside the inventory, once each", () => {
    const plan = planFor(example, 'app-1', known);
    const mesh = plan.targets.slice(exampleTargets('app-1').length);
    expect(mesh).toEqual([
      {
        name: 'bastion/icmp',
        component: 'bastion',
        kind: 'icmp',
        address: '10.0.9.9',
        intervalMs: 1000,
        timeoutMs: 800,
        options: { count: 3 },
        labels: { zone: 'c', role: 'agent' },
      },
      {
        name: 'bastion/mtu',
        component: 'bastion',
        kind: 'mtu',
        address: '10.0.9.9',
        intervalMs: 1000,
        timeoutMs: 800,
        options: { size: 1500 },
        labels: { zone: 'c', role: 'agent' },
      },
    ] satisfies PlanTarget[]);
    expect(planFor(example, 'app-1', known).version).not.toBe(planFor(example, 'app-1').version);
  });

  it('adds nothing when off', () => {
    const cfg = config(exampleText.replace('  mesh: true', '  mesh: false'));
    expect(names(planFor(cfg, 'app-1', known))).toEqual(exampleTargets('app-1'));
  });

  it("does not ping the agent's own host", () => {
    const plan = planFor(example, 'bastion', known);
    expect(names(plan)).toEqual(exampleTargets(''));
  });

  // Issue 13: an agent named like an inventory component (a ghost reporting under a fleet
  // token) made every plan ping that component although the layers left icmp out. The
  // layers alone decide how inventory hosts are probed; the mesh adds only hosts outside it.
  it('never pings an inventory host the layers leave out, whichever agent reported', () => {
    const cfg = config(exampleText.replace('layers: [icmp, tcp, protocol]', 'layers: [protocol]'));
    const plan = planFor(cfg, 'app-1', known);
    const icmp = plan.targets.filter((t) => t.kind === 'icmp').map((t) => [t.name, t.address]);
    expect(icmp).toEqual([
      ['bastion/icmp', '10.0.9.9'],
      ['db-2-sidecar/icmp', '10.0.2.12'],
    ]);
    // Every ping of the mesh has its full-size echo beside it.
    expect(plan.targets.filter((t) => t.kind === 'mtu').map((t) => [t.name, t.address])).toEqual(
      icmp.map(([name, address]) => [name!.replace(/\/icmp$/, '/mtu'), address]),
    );
    // A ghost named like a component (db-1 runs the agent db-1) changes no plan.
    const ghost = [...known, { name: 'db-1', address: '10.0.66.6' }];
    expect(planFor(cfg, 'app-1', ghost).version).toBe(plan.version);
    expect(planFor(example, 'app-1', ghost).version).toBe(planFor(example, 'app-1', known).version);
  });

  it('carries a password only in the protocol target of the service it is for', () => {
    const cfg = config(
      exampleText.replace(
        '- { name: postgres, kind: postgres }',
        '- { name: postgres, kind: postgres, options: { user: probe, password: s3cret-db-1 } }',
      ),
    );
    const carriers = (agent: string): string[] =>
      planFor(cfg, agent, known)
        .targets.filter((t) => JSON.stringify(t.options).includes('s3cret-db-1'))
        .map((t) => t.name);
    expect(carriers('app-1')).toEqual(['db-1/postgres/postgres']);
    // Not to db-1's own agent (it does not probe itself), nor in any tcp or icmp target.
    expect(carriers('db-1')).toEqual([]);
  });

  it('keeps an agent named like a component apart from it', () => {
    // web-1 runs the agent web-1.internal; another agent calls itself web-1.
    const plan = planFor(example, 'app-1', [{ name: 'web-1', address: '10.0.7.1' }]);
    expect(target(plan, 'web-1/icmp').address).toBe('10.0.1.21');
    expect(target(plan, 'web-1/agent/icmp')).toMatchObject({
      component: 'web-1',
      address: '10.0.7.1',
    });
    expect(target(plan, 'web-1/mtu').address).toBe('10.0.1.21');
    expect(target(plan, 'web-1/agent/mtu')).toMatchObject({
      component: 'web-1',
      kind: 'mtu',
      address: '10.0.7.1',
      labels: { role: 'agent' },
    });
  });
});
