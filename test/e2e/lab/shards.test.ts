import { describe, expect, it } from 'vitest';
import { hashShardOf } from '../../../collector/shard/changes.js';
import { wrongVlan } from '../../../lab/faults.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { canRunLab, type LabSpec } from '../../../lab/spec.js';
import { bothAnswer, localiserHoldsTheShards, topOf as top, useShardLab } from './shard-lab.js';

/**
 * Scale-out with the real engine (issue 17): a three-node nats-server cluster, five agents
 * publishing their reports through it from their own hosts, two ingest shards splitting the
 * agents by a hash of their names (`nats.role: ingest`, `shard: { by: hash }`) and
 * publishing only path-state changes and liveness to the change stream, and the lab's
 * collector as the localiser (`role: localiser`) keeping the one diagnosis from that
 * stream. Beside them a single collector (`role: both`, its own durable consumer) takes
 * every report itself: the localiser must hold the same paths and give the same answer.
 *
 * The fault: db-1's switch port moved to another VLAN. Its probers are split over the two
 * shards (app-1, app-3 hash to shard 0; app-2, web-1 to shard 1, with db-1's own agent,
 * which goes dark with its host), so no shard alone sees the whole of it.
 */
const spec: LabSpec = {
  switches: [{ name: 'sw', zone: 'z1' }, { name: 'vlan-99' }],
  hosts: [
    { name: 'nats-1', switch: 'sw', agent: false },
    { name: 'nats-2', switch: 'sw', agent: false },
    { name: 'nats-3', switch: 'sw', agent: false },
    { name: 'ops', switch: 'sw', agent: false },
    { name: 'app-1', switch: 'sw', role: 'api', agent: false },
    { name: 'app-2', switch: 'sw', role: 'api', agent: false },
    { name: 'app-3', switch: 'sw', role: 'api', agent: false },
    { name: 'web-1', switch: 'sw', role: 'web', agent: false },
    { name: 'db-1', switch: 'sw', role: 'database', agent: false, services: [{ kind: 'http' }] },
  ],
};
const natsHosts = ['nats-1', 'nats-2', 'nats-3'];
const agentHosts = ['app-1', 'app-2', 'app-3', 'web-1', 'db-1'];
const hashShard = (index: number): string[] => [
  'consumer: ingest',
  'role: ingest',
  `shard: { by: hash, index: ${index}, count: 2 }`,
];

describe.runIf(canRunLab)('lab: ingest shards and one localiser over NATS', () => {
  const { lab, procs, startCollector, paths, agentsOf, diagnosisOf } = useShardLab({
    spec,
    natsHosts,
    agentHosts,
    shards: {
      'shard-0': { port: 7071, nats: hashShard(0) },
      'shard-1': { port: 7072, nats: hashShard(1) },
    },
    singlePort: 7073,
  });
  it('each shard holds its share of the paths; the localiser holds all of them, in the states the single collector has', async () => {
    // The cut host's probers are on both shards (the point of the fault below).
    const probers = agentHosts.filter((a) => a !== 'db-1');
    expect(new Set(probers.map((a) => hashShardOf(a, 2))).size).toBe(2);
    const expected = agentHosts.length * (agentHosts.length - 1);
    await pollUntil(
      'every agent’s paths at the localiser, as the single collector has them, healthy',
      () =>
        localiserHoldsTheShards(
          { paths, diagnosisOf },
          {
            'shard-0': (p) => hashShardOf(p.agent, 2) === 0,
            'shard-1': (p) => hashShardOf(p.agent, 2) === 1,
          },
          expected,
        ),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await pollUntil(
      'every agent live at the localiser',
      async () => {
        const agents = await agentsOf('localiser');
        const live = agents
          .filter((a) => a.state === 'live' && a.late !== true)
          .map((a) => a.agent);
        if (live.length === agentHosts.length) return true;
        const s = await Promise.all((['shard-0', 'shard-1'] as const).map(agentsOf));
        throw new Error(
          `live: ${live.sort().join(', ')}; shards: ${s.map((x) => x.map((a) => a.agent).join(',')).join(' | ')}`,
        );
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
  }, 90_000);

  it('a host cut off whose probers are split over both shards: the localiser gives the single collector’s answer', async () => {
    const l = lab();
    const cut = wrongVlan(l, ['db-1'], 'vlan-99');
    await cut.inject();
    try {
      const answer = await pollUntil(
        'the localiser and the single collector agreeing that db-1 is cut off',
        bothAnswer({ diagnosisOf }, { kind: 'host_unreachable', components: ['db-1'] }),
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      // The same top hypothesis, and nothing the single collector does not say.
      expect(answer.loc.hypotheses.map((h) => h.kind)).toEqual(
        answer.single.hypotheses.map((h) => h.kind),
      );
      // db-1's own agent went dark with its host: silent or late at the localiser too.
      const dark = (await agentsOf('localiser')).find((a) => a.agent === 'db-1');
      expect(dark?.state === 'silent' || dark?.late === true).toBe(true);
      // Neither shard diagnoses: only the localiser (and the single collector) does.
      for (const side of ['shard-0', 'shard-1'] as const)
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

  it('a shard restarted mid-stream: the localiser takes its snapshot and its changes again, and sees the next fault', async () => {
    const l = lab();
    const shard = procs.get('shard-1')!;
    shard.signal('SIGKILL');
    await shard.exited;
    startCollector('shard-1');
    // The restarted shard (a new epoch) sends its whole share first; the localiser takes it.
    const cut = wrongVlan(l, ['db-1'], 'vlan-99');
    await cut.inject();
    try {
      await pollUntil(
        'the localiser reading db-1 cut off after the shard restart, from both shards’ agents',
        async () => {
          const d = await diagnosisOf('localiser');
          const t = top(d);
          if (t?.kind !== 'host_unreachable' || t.components.join() !== 'db-1')
            throw new Error(`localiser: ${d.hypotheses[0]?.summary ?? 'healthy'}`);
          // The restarted shard's agents' paths toward db-1 are failing at the localiser too.
          const failing = (await paths('localiser')).filter(
            (p) => p.component === 'db-1' && p.state === 'failing',
          );
          const shards = new Set(failing.map((p) => hashShardOf(p.agent, 2)));
          if (shards.size !== 2)
            throw new Error(`failing toward db-1 from shards ${[...shards].join(', ')} only`);
          return true;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
    } finally {
      await cut.heal();
    }
  }, 150_000);

  it('the localiser restarted: it asks the shards for their snapshots and holds every path again', async () => {
    const l = lab();
    l.collector!.signal('SIGKILL');
    await l.collector!.exited;
    await l.restartCollector();
    const expected = agentHosts.length * (agentHosts.length - 1);
    await pollUntil(
      'every agent’s paths back at the restarted localiser, healthy',
      async () => {
        const [loc, s0, s1] = await Promise.all(
          (['localiser', 'shard-0', 'shard-1'] as const).map(paths),
        );
        const echo = loc!.filter((p) => p.kind === 'icmp');
        if (echo.length < expected) throw new Error(`localiser: ${echo.length} echo paths`);
        if (loc!.length !== s0!.length + s1!.length)
          throw new Error(`localiser ${loc!.length} paths, shards ${s0!.length} + ${s1!.length}`);
        const agents = await agentsOf('localiser');
        if (agents.filter((a) => a.state === 'live').length !== agentHosts.length)
          throw new Error(`${agents.length} agents at the localiser`);
        const d = await diagnosisOf('localiser');
        if (!d.healthy) throw new Error(`localiser: ${d.hypotheses[0]?.summary}`);
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  }, 90_000);
});
