import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseCollectorConfig } from '../collector/config.js';
import { planFor } from '../collector/plan.js';
import { planCollectorConfig, type PlanTarget } from './agent-plan.js';

/** The bench's target mix: kinds in turn, loopback and a namespace host alternating. */
function benchTargets(n: number): PlanTarget[] {
  const kinds = ['icmp', 'tcp', 'http'] as const;
  return Array.from({ length: n }, (_, i) => {
    const kind = kinds[i % 3]!;
    const ip = i % 2 === 0 ? `127.1.0.${(i % 200) + 1}` : `198.18.100.${(i % 200) + 10}`;
    const address =
      kind === 'icmp' ? ip : kind === 'tcp' ? `${ip}:${4000 + i}` : `http://${ip}:${5000 + i}/`;
    return { kind, address, place: i % 2 === 0 ? 'loopback' : 'ns' };
  });
}

describe("bench:agent --managed's plan", () => {
  it('has the bench targets, kind for kind, with every http and tcp address', () => {
    const targets = benchTargets(1000);
    const config = planCollectorConfig({ intervalMs: 1000, icmpCount: 1 }, targets, {
      listen: '127.0.0.1:7070',
      dataDir: '/tmp/unused',
      tokens: [{ name: 'bench', token: 'x'.repeat(32) }],
    });
    const parsed = parseCollectorConfig(stringify(config), 'collector.yaml');
    const plan = planFor(parsed, 'bench');
    const count = (k: string): number => plan.targets.filter((t) => t.kind === k).length;
    expect([count('icmp'), count('tcp'), count('http')]).toEqual([334, 333, 333]);
    expect(plan.targets).toHaveLength(1000);
    const planned = new Set(plan.targets.map((t) => t.address));
    for (const t of targets)
      if (t.kind === 'http')
        expect(planned.has(t.address) || planned.has(t.address.replace(/\/$/, ''))).toBe(true);
    // Every tcp target's host and every http target's host:port is connected to.
    const tcpPlanned = new Set(plan.targets.filter((t) => t.kind === 'tcp').map((t) => t.address));
    for (const t of targets.filter((x) => x.kind === 'http'))
      expect(tcpPlanned.has(new URL(t.address).host)).toBe(true);
    expect(plan.targets.every((t) => t.intervalMs === 1000 && t.timeoutMs === 900)).toBe(true);
  });

  it('makes a component per tcp target when there are fewer http targets', () => {
    const targets = benchTargets(300).filter((t) => t.kind !== 'http');
    const config = planCollectorConfig({ intervalMs: 2000, icmpCount: 3 }, targets, {
      listen: '127.0.0.1:7070',
      dataDir: '/tmp/unused',
      tokens: [{ name: 'bench', token: 'x'.repeat(32) }],
    });
    const plan = planFor(parseCollectorConfig(stringify(config), 'collector.yaml'), 'bench');
    const tcp = plan.targets.filter((t) => t.kind === 'tcp').map((t) => t.address);
    expect(tcp.sort()).toEqual(
      targets
        .filter((t) => t.kind === 'tcp')
        .map((t) => t.address)
        .sort(),
    );
    expect(plan.targets.filter((t) => t.kind === 'icmp')).toHaveLength(100);
    expect(plan.targets.every((t) => t.timeoutMs === 1800)).toBe(true);
  });
});
