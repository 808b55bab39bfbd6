import { describe, expect, it } from 'vitest';
import { hindsightDiagnosis } from './hindsight.js';
import type { Transition } from './paths/checkpoint.js';
import type { AgentLiveness, PathState } from './types.js';

const hosts = ['ctl-1', 'app-1', 'db-1', 'db-2'];
const inventory = hosts.map((name, i) => ({
  name,
  address: `198.18.0.${i + 1}`,
  role: name.startsWith('db') ? 'database' : 'other',
  labels: { switch: name === 'ctl-1' || name === 'app-1' ? 'sw-1' : 'sw-2' },
}));
const cutStart = 1_000_000;
const healed = cutStart + 60_000;

/** After the heal: every path ok again, every agent live. */
const now: PathState[] = hosts.flatMap((a) =>
  hosts
    .filter((t) => t !== a)
    .map((t) => ({
      agent: a,
      target: `${t}/icmp`,
      component: t,
      kind: 'icmp',
      state: 'ok' as const,
      lastClass: 'ok' as const,
      consecutiveFailures: 0,
      consecutiveSuccesses: 10,
      failureRatio: 0,
      failures: {},
      probes: 10,
      sinceMs: healed,
      lastSeenMs: healed + 10_000,
    })),
);
const agents: AgentLiveness[] = hosts.map((a) => ({
  agentId: `id-${a}`,
  agent: a,
  labels: {},
  state: 'live',
  lastSeenMs: healed + 10_000,
  acceptedSeq: 10,
  droppedResults: 0,
  spoolBacklog: 0,
}));

/** ctl-1's port in the wrong VLAN: every path to or from it failed, the rest did not. */
const transitions: Transition[] = now
  .filter((p) => p.agent === 'ctl-1' || p.component === 'ctl-1')
  .flatMap((p) => [
    {
      agentId: `id-${p.agent}`,
      agent: p.agent,
      target: p.target,
      kind: p.kind,
      fromClass: 'ok',
      toClass: 'icmp_timeout',
      fromState: 'ok',
      toState: 'failing',
      atMs: cutStart,
      resultSeq: 1,
      batchSeq: 1,
    },
    {
      agentId: `id-${p.agent}`,
      agent: p.agent,
      target: p.target,
      kind: p.kind,
      fromClass: 'icmp_timeout',
      toClass: 'ok',
      fromState: 'failing',
      toState: 'ok',
      atMs: healed,
      resultSeq: 2,
      batchSeq: 2,
    },
  ]);

describe('hindsightDiagnosis', () => {
  it('rebuilds the matrix midway through a cut from the spooled results and names the host really cut off', () => {
    const d = hindsightDiagnosis(now, agents, transitions, cutStart + 30_000, {
      inventory,
      observer: { host: 'ctl-1', agents: ['ctl-1'] },
    });
    expect(d.healthy).toBe(false);
    expect(d.hypotheses[0]?.kind).toMatch(/^(host_unreachable|source_fault)$/);
    const top = d.hypotheses[0];
    expect(top?.components).toEqual(['ctl-1']);
    expect(top?.collectorCutOff).toBeUndefined();
    expect(d.hypotheses.flatMap((h) => h.components)).not.toContain('db-1');
  });

  it('is healthy before the cut and after the heal', () => {
    for (const at of [cutStart - 1_000, healed + 1_000])
      expect(
        hindsightDiagnosis(now, agents, transitions, at, { inventory }).healthy,
        `at ${at}`,
      ).toBe(true);
  });
});
