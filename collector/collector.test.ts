import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { dbCollectorYaml, dbPeriod, postReport } from '../test/helpers/report-batches.js';
import { Collector } from './collector.js';
import { meshAddress } from './plan-book.js';
import { describePlanTarget as describePlanTargetName } from './target-names.js';
import { parseCollectorConfig } from './config.js';

const token = 'mesh-token-0123456789abcdef';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('meshAddress: a request source other hosts can ping', () => {
  it.each([
    ['10.0.9.9', '10.0.9.9'],
    ['::ffff:10.0.9.9', '10.0.9.9'],
    ['2001:db8::7', '2001:db8::7'],
    ['127.0.0.1', undefined],
    ['127.3.2.1', undefined],
    ['::ffff:127.0.0.1', undefined],
    ['::1', undefined],
    ['169.254.10.1', undefined],
    ['fe80::1', undefined],
    ['0.0.0.0', undefined],
    ['not-an-ip', undefined],
    [undefined, undefined],
  ])('%s → %s', (ip, expected) => {
    expect(meshAddress(ip)).toBe(expected);
  });
});

describe('describePlanTargetName: plan target names back into component and service', () => {
  it.each([
    ['db-1/icmp', 'icmp', { component: 'db-1' }],
    ['db-1/mtu', 'mtu', { component: 'db-1' }],
    // A mesh agent named like a component that runs another agent.
    ['web-1/agent/icmp', 'icmp', { component: 'web-1' }],
    ['web-1/agent/mtu', 'mtu', { component: 'web-1' }],
    ['db-1/postgres/tcp', 'tcp', { component: 'db-1', service: 'postgres' }],
    ['db-1/postgres/postgres', 'postgres', { component: 'db-1', service: 'postgres' }],
    ['plain-target', 'tcp', { component: 'plain-target' }],
  ])('%s (%s) → %o', (target, kind, want) => {
    expect(describePlanTargetName(target, kind)).toEqual(want);
  });
});

describe('the collector meshes agents outside the inventory', () => {
  let collector: Collector | undefined;
  afterEach(async () => {
    await collector?.stop();
    collector = undefined;
  });

  async function start(): Promise<Collector> {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-collector-'));
    dirs.push(dir);
    const config = parseCollectorConfig(
      dbCollectorYaml({ dataDir: dir, token, more: ['probes:', '  mesh: true'] }),
      'collector.yaml',
    );
    collector = await Collector.start(config, pino({ level: 'silent' }));
    return collector;
  }

  const meshTargets = (c: Collector, agent: string, kind = 'icmp') =>
    c
      .plan(agent, {})
      .targets.filter((t) => t.labels?.role === 'agent' && t.kind === kind)
      .map((t) => [t.name, t.address]);

  /** Agents outside the inventory report (only agents that reported are in the mesh). */
  const reported = async (c: Collector, ...names: string[]): Promise<void> => {
    for (const name of names) await postReport(c.url(), token, dbPeriod(name, 1, 'ok'));
  };

  it("pings each agent's host at the address its plan requests came from", async () => {
    const c = await start();
    await reported(c, 'bastion', 'local');
    // Two agents outside the inventory fetch their plans from their hosts; one from loopback.
    c.plan('bastion', {}, '::ffff:10.0.9.9');
    c.plan('edge-1', {}, '10.0.8.1');
    c.plan('local', {}, '127.0.0.1');
    // edge-1 has not reported yet: asking for a plan adds nobody to the mesh (issue 13).
    expect(meshTargets(c, 'app-1')).toEqual([['bastion/icmp', '10.0.9.9']]);
    await reported(c, 'edge-1');
    c.plan('edge-1', {}, '10.0.8.1');
    expect(meshTargets(c, 'app-1')).toEqual([
      ['bastion/icmp', '10.0.9.9'],
      ['edge-1/icmp', '10.0.8.1'],
    ]);
    // Each with its full-size echo beside it (probes.mtu is on by default).
    expect(meshTargets(c, 'app-1', 'mtu')).toEqual([
      ['bastion/mtu', '10.0.9.9'],
      ['edge-1/mtu', '10.0.8.1'],
    ]);
    // Not its own host; and a reporting agent keeps its labels on the target.
    await postReport(c.url(), token, { ...dbPeriod('edge-1', 2, 'ok'), labels: { zone: 'c' } });
    expect(meshTargets(c, 'edge-1')).toEqual([['bastion/icmp', '10.0.9.9']]);
    const bastion = c.plan('bastion', {}).targets.find((t) => t.name === 'edge-1/icmp');
    expect(bastion?.labels).toEqual({ zone: 'c', role: 'agent' });
    // An agent seen at a new address is pinged there from the next plan on.
    const before = c.plan('app-1', {}).version;
    c.plan('edge-1', {}, '10.0.8.2');
    expect(meshTargets(c, 'app-1')).toContainEqual(['edge-1/icmp', '10.0.8.2']);
    expect(c.plan('app-1', {}).version).not.toBe(before);
  });

  it('pings no address that several agents come from (a proxy or a NAT between them)', async () => {
    const c = await start();
    await reported(c, 'bastion', 'nat-1', 'nat-2');
    c.plan('bastion', {}, '10.0.9.9');
    c.plan('nat-1', {}, '192.0.2.1');
    c.plan('nat-2', {}, '192.0.2.1');
    expect(meshTargets(c, 'app-1')).toEqual([['bastion/icmp', '10.0.9.9']]);
    // nat-2 moves off the NAT: both are hosts of their own again.
    c.plan('nat-2', {}, '10.0.7.2');
    expect(meshTargets(c, 'app-1')).toEqual([
      ['bastion/icmp', '10.0.9.9'],
      ['nat-1/icmp', '192.0.2.1'],
      ['nat-2/icmp', '10.0.7.2'],
    ]);
  });
});

describe('read access at start', () => {
  /** Starts a collector on `more` config lines, returns its warnings, and stops it. */
  async function warningsAt(more: string[]): Promise<string[]> {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-collector-'));
    dirs.push(dir);
    const yaml = dbCollectorYaml({ dataDir: dir, token }).replace(
      /^viewers:\n( {2}- .*\n)+/m,
      more.map((l) => `${l}\n`).join(''),
    );
    const lines: { level: number; msg: string }[] = [];
    const log = pino(
      { level: 'warn' },
      { write: (s: string) => lines.push(JSON.parse(s) as { level: number; msg: string }) },
    );
    const c = await Collector.start(parseCollectorConfig(yaml, 'collector.yaml'), log);
    await c.stop();
    return lines.filter((l) => l.level === 40).map((l) => l.msg);
  }

  const refuseEveryone = 'read endpoints refuse everyone: add viewers or readAccess: open';

  it('warns when no viewer could read and reading needs a token', async () => {
    expect(await warningsAt([])).toContain(refuseEveryone);
    expect(
      await warningsAt([
        'viewers:',
        '  - { name: old, token: viewer-old-0123456789, revoked: true }',
      ]),
    ).toContain(refuseEveryone);
  });

  it('says nothing with a viewer, or with readAccess open', async () => {
    expect(
      await warningsAt(['viewers:', '  - { name: ops, token: viewer-ops-0123456789 }']),
    ).not.toContain(refuseEveryone);
    expect(await warningsAt(['readAccess: open'])).not.toContain(refuseEveryone);
  });
});

describe('fleet tokens', () => {
  it('warns once at start about a token that may report as any agent, and not about named ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-collector-'));
    dirs.push(dir);
    const named = `  - { name: web, token: web-token-0123456789abcdef, agents: ["web-*"] }`;
    const boot = `  - { name: boot, token: boot-token-0123456789abcdef, role: bootstrap }`;
    type Line = { level: number; msg: string; tokens?: string[] };
    const lines: Line[] = [];
    const log = pino(
      { level: 'warn' },
      { write: (l: string) => lines.push(JSON.parse(l) as Line) },
    );
    const yaml = dbCollectorYaml({ dataDir: dir, token }).replace(
      /^tokens:\n.*\n/m,
      (t) => `${t}${named}\n${boot}\n`,
    );
    const c = await Collector.start(parseCollectorConfig(yaml, 'collector.yaml'), log);
    await c.stop();
    const warned = lines.filter((l) => l.msg.includes('fleet token'));
    expect(warned).toHaveLength(1);
    expect(warned[0]?.tokens).toEqual(['fleet']);
    expect(warned[0]?.msg).toContain('role: bootstrap');
  });
});

describe("an agent's version and spool backlog, through the real collector", () => {
  it('come from the report headers and reach /api/v1/agents (late while it replays)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-collector-'));
    dirs.push(dir);
    const c = await Collector.start(
      parseCollectorConfig(dbCollectorYaml({ dataDir: dir, token }), 'collector.yaml'),
      pino({ level: 'silent' }),
    );
    try {
      const post = async (seq: number, headers: Record<string, string>): Promise<void> => {
        const res = await fetch(`${c.url()}/api/v1/reports`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            ...headers,
          },
          body: JSON.stringify(dbPeriod('app-1', seq, 'ok')),
          signal: AbortSignal.timeout(5_000),
        });
        expect(res.status).toBe(200);
      };
      await post(1, { 'user-agent': 'faultline-agent/9.8.7', 'faultline-backlog': '3' });
      expect(c.agents()).toMatchObject([
        { agent: 'app-1', spoolBacklog: 3, version: '9.8.7', late: true },
      ]);
      await post(2, { 'user-agent': 'faultline-agent/9.8.8', 'faultline-backlog': '0' });
      expect(c.agents()).toMatchObject([{ agent: 'app-1', spoolBacklog: 0, version: '9.8.8' }]);
      expect(c.agents()[0]).not.toHaveProperty('late');
      // Another client (no agent user-agent): the version is unknown, the report accepted.
      await post(3, { 'user-agent': 'curl/8.5.0' });
      expect(c.agents()[0]).not.toHaveProperty('version');
    } finally {
      await c.stop();
    }
  });
});
