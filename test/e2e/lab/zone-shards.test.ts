import { describe, expect, it } from 'vitest';
import { wrongVlan } from '../../../lab/faults.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { canRunLab, type LabSpec } from '../../../lab/spec.js';
import { bothAnswer, localiserHoldsTheShards, useShardLab } from './shard-lab.js';

/**
 * Zone shards (`nats.shard: { by: zone, zones: [...] }`) with the real engine (issue 17), on
 * the shard lab shards.test.ts uses: two zones, `za` (switch sw-a, with the three NATS nodes
 * and the collectors' host) and `zb` (switch sw-b), joined by one cable. Each zone's agents
 * publish on `faultline.reports.<zone>.<agent>`; shard za binds only `…za.>`, shard zb only
 * `…zb.>` (the server filters: one zone a shard), a single collector takes both, and the
 * lab's collector localises from the two shards' changes.
 *
 * The fault: db-1 (zone zb) moved to another VLAN. Its probers are in both zones (app-1,
 * app-2 in za; app-3, web-1 in zb), so neither shard alone sees the whole of it.
 */
const spec: LabSpec = {
  switches: [{ name: 'sw-a', zone: 'za' }, { name: 'sw-b', zone: 'zb' }, { name: 'vlan-99' }],
  uplinks: [['sw-a', 'sw-b']],
  hosts: [
    { name: 'nats-1', switch: 'sw-a', agent: false },
    { name: 'nats-2', switch: 'sw-a', agent: false },
    { name: 'nats-3', switch: 'sw-a', agent: false },
    { name: 'ops', switch: 'sw-a', agent: false },
    { name: 'app-1', switch: 'sw-a', role: 'api', agent: false },
    { name: 'app-2', switch: 'sw-a', role: 'api', agent: false },
    { name: 'app-3', switch: 'sw-b', role: 'api', agent: false },
    { name: 'web-1', switch: 'sw-b', role: 'web', agent: false },
    { name: 'db-1', switch: 'sw-b', role: 'database', agent: false, services: [{ kind: 'http' }] },
  ],
};
const zoneOf: Readonly<Record<string, string>> = {
  'app-1': 'za',
  'app-2': 'za',
  'app-3': 'zb',
  'web-1': 'zb',
  'db-1': 'zb',
};
const agentHosts = Object.keys(zoneOf);
const zoneShard = (zone: string): string[] => [
  'consumer: ingest',
  'role: ingest',
  `shard: { by: zone, zones: [${zone}] }`,
];

describe.runIf(canRunLab)('lab: zone shards and one localiser over NATS', () => {
  const { lab, paths, agentsOf, diagnosisOf } = useShardLab({
    spec,
    natsHosts: ['nats-1', 'nats-2', 'nats-3'],
    agentHosts,
    shards: {
      'shard-za': { port: 7081, nats: zoneShard('za') },
      'shard-zb': { port: 7082, nats: zoneShard('zb') },
    },
    singlePort: 7083,
  });

  it("each zone shard holds its zone's agents' paths only; the localiser holds all of them, as the single collector has them", async () => {
    const expected = agentHosts.length * (agentHosts.length - 1);
    await pollUntil(
      'every agent’s paths at the localiser, as the single collector has them, healthy',
      () =>
        localiserHoldsTheShards(
          { paths, diagnosisOf },
          {
            'shard-za': (p) => zoneOf[p.agent] === 'za',
            'shard-zb': (p) => zoneOf[p.agent] === 'zb',
          },
          expected,
        ),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    // Every agent live at the localiser, each heard through its own zone's shard only.
    await pollUntil(
      'every agent live at the localiser',
      async () => {
        const live = (await agentsOf('localiser'))
          .filter((x) => x.state === 'live' && x.late !== true)
          .map((x) => x.agent);
        if (live.length !== agentHosts.length) throw new Error(`live: ${live.sort().join(', ')}`);
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    for (const zone of ['za', 'zb'])
      expect((await agentsOf(`shard-${zone}`)).map((x) => x.agent).sort()).toEqual(
        agentHosts.filter((h) => zoneOf[h] === zone).sort(),
      );
  }, 90_000);

  it('a host cut off whose probers are in both zones: the localiser gives the single collector’s answer', async () => {
    const cut = wrongVlan(lab(), ['db-1'], 'vlan-99');
    await cut.inject();
    try {
      const answer = await pollUntil(
        'the localiser and the single collector agreeing that db-1 is cut off',
        bothAnswer({ diagnosisOf }, { kind: 'host_unreachable', components: ['db-1'] }),
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect(answer.loc.hypotheses.map((h) => h.kind)).toEqual(
        answer.single.hypotheses.map((h) => h.kind),
      );
      // The failing paths toward db-1 at the localiser come from both zones' shards. The
      // answer can come before every prober has confirmed its path failing (db-1's own agent
      // dark and the probers of one zone suffice), so this is polled while the fault holds.
      await pollUntil(
        'failing paths toward db-1 at the localiser from both zones',
        async () => {
          const failing = (await paths('localiser')).filter(
            (p) => p.component === 'db-1' && p.state === 'failing',
          );
          const zones = [...new Set(failing.map((p) => zoneOf[p.agent]))].sort();
          if (zones.join() !== 'za,zb') throw new Error(`zones: ${zones.join(', ')}`);
          return true;
        },
        { timeoutMs: 20_000, intervalMs: 250 },
      );
      for (const side of ['shard-za', 'shard-zb'])
        expect((await diagnosisOf(side)).hypotheses).toEqual([]);
    } finally {
      await cut.heal();
    }
    await pollUntil(
      'the localiser healthy again after the heal',
      async () => {
        const d = await diagnosisOf('localiser');
        if (!d.healthy) throw new Error(d.hypotheses[0]?.summary);
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  }, 150_000);
});
