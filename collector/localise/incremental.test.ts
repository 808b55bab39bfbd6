import { describe, expect, it } from 'vitest';
import { generateCases } from '../../test/scenarios/generate.js';
import { buildInput } from '../../test/scenarios/scenario.js';
import { rng } from '../../lib/prng.js';
import type { AgentLiveness, PathState } from '../types.js';
import { IncrementalLocaliser, localise } from './localise.js';

describe('IncrementalLocaliser', () => {
  it('equals a full localise() after every batch of random updates', () => {
    // Each case's healthy and faulted matrices; batches move agents' paths between the two.
    const cases = generateCases(24, 21);
    const random = rng(21);
    let faultedSeen = 0;
    for (const c of cases) {
      const healthy = buildInput({ ...c.scenario, faults: [] });
      const faulted = buildInput(c.scenario);
      const key = (p: PathState): string => `${p.agent}\u0000${p.target}`;
      const current = new Map(healthy.paths.map((p) => [key(p), p]));
      const faultedByKey = new Map(faulted.paths.map((p) => [key(p), p]));
      const agentNames = [...new Set(healthy.paths.map((p) => p.agent))].sort();
      let agents: readonly AgentLiveness[] = healthy.agents;

      const l = new IncrementalLocaliser({
        inventory: healthy.inventory,
        collectorLabels: healthy.collectorLabels ?? {},
        ...(healthy.observer ? { observer: healthy.observer } : {}),
      });
      for (const a of agentNames)
        l.replaceAgentPaths(
          a,
          healthy.paths.filter((p) => p.agent === a),
        );
      l.setAgents(agents);
      expect(l.diagnose(healthy.nowMs)).toEqual(localise(healthy));

      for (let step = 0; step < 10; step++) {
        const r = random();
        if (r < 0.15) {
          // The usual batch: an agent's paths seen again, only their clocks moved.
          const a = agentNames[Math.floor(random() * agentNames.length)] ?? '';
          const batch = [...current.values()]
            .filter((p) => p.agent === a)
            .map((p) => ({ ...p, lastSeenMs: p.lastSeenMs + 1_000, probes: p.probes + 1 }));
          for (const p of batch) current.set(key(p), p);
          l.upsertPaths(batch);
        } else if (r < 0.6) {
          // One agent's report batch: some of its paths take their faulted (or healthy) state.
          const a = agentNames[Math.floor(random() * agentNames.length)] ?? '';
          const source =
            random() < 0.7 ? faultedByKey : new Map(healthy.paths.map((p) => [key(p), p]));
          const batch = [...source.values()].filter((p) => p.agent === a && random() < 0.8);
          for (const p of batch) current.set(key(p), p);
          l.upsertPaths(batch);
        } else if (r < 0.8) {
          // Liveness moves to the faulted matrix's (agents cut off go silent) or back.
          agents = random() < 0.5 ? faulted.agents : healthy.agents;
          l.setAgents(agents);
        } else {
          // The whole matrix of one agent replaced, e.g. after a re-plan.
          const a = agentNames[Math.floor(random() * agentNames.length)] ?? '';
          const ps = faulted.paths.filter((p) => p.agent === a);
          for (const p of ps) current.set(key(p), p);
          l.replaceAgentPaths(a, ps);
        }
        const nowMs = healthy.nowMs + step * 1_000;
        const full = localise({ ...healthy, paths: [...current.values()], agents, nowMs });
        if (!full.healthy) faultedSeen += 1;
        expect(l.diagnose(nowMs), `${c.id} step ${step}`).toEqual(full);
      }
    }
    // The walk really went through faulted matrices, not only healthy ones.
    expect(faultedSeen).toBeGreaterThan(50);
  });

  it('refuses a path of another agent in replaceAgentPaths', () => {
    const input = buildInput(generateCases(1, 3)[0]?.scenario ?? expect.fail('no case'));
    const l = new IncrementalLocaliser({ inventory: input.inventory });
    const other = input.paths.find((p) => p.agent !== input.paths[0]?.agent);
    expect(() => l.replaceAgentPaths(input.paths[0]?.agent ?? '', [other as PathState])).toThrow(
      /is another agent's/,
    );
  });
});
