import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { generateCases } from '../../test/scenarios/generate.js';
import { buildInput } from '../../test/scenarios/scenario.js';
import { localise } from '../localise/localise.js';
import type { AgentLiveness, PathState } from '../types.js';
import {
  BadChange,
  ChangeOrder,
  decodeChange,
  encodeChange,
  hashShardOf,
  type ShardChange,
} from './changes.js';
import { ShardFedMatrix } from './fed-matrix.js';

const base: ShardChange = {
  v: 1,
  shard: 's0',
  epoch: 1_000,
  seq: 1,
  atMs: 5_000,
  agents: [],
  paths: [],
  signals: [],
  transitions: [],
};

const path = (agent: string, target: string, state: PathState['state']): PathState => ({
  agent,
  target,
  component: target.split('/')[0]!,
  kind: 'icmp',
  state,
  lastClass: state === 'failing' ? 'icmp_timeout' : 'ok',
  consecutiveFailures: state === 'failing' ? 3 : 0,
  consecutiveSuccesses: state === 'failing' ? 0 : 3,
  failureRatio: state === 'failing' ? 1 : 0,
  failures: {},
  probes: 10,
  sinceMs: 1_000,
  lastSeenMs: 4_000,
});

const agent = (name: string, lastSeenMs: number, labels = { zone: 'z1' }): AgentLiveness => ({
  agentId: `id-${name}`,
  agent: name,
  labels,
  state: 'live',
  lastSeenMs,
  acceptedSeq: 7,
  droppedResults: 0,
  spoolBacklog: 0,
});

describe('shard change encoding', () => {
  it('round-trips a change through its wire form', () => {
    const c: ShardChange = {
      ...base,
      agents: [agent('a', 4_000)],
      paths: [path('a', 'db-1/icmp', 'failing')],
      signals: [
        {
          atMs: 4_000,
          list: [
            { type: 'change', key: 'a|db-1/icmp', agent: 'a', component: 'db-1' },
            // A path back from failing: the localiser's alerts hold a healing fault on it.
            { type: 'change', key: 'a|db-2/icmp', agent: 'a', component: 'db-2', recovered: true },
          ],
        },
      ],
      snapshot: true,
    };
    expect(decodeChange(encodeChange(c))).toEqual(c);
  });

  it.each([
    ['not gzip', Buffer.from('{}'), /not a gzipped JSON change/],
    ['wrong version', gzipSync(JSON.stringify({ ...base, v: 2 })), /^v: expected 1 \(actual: 2\)/],
    ['no shard', gzipSync(JSON.stringify({ ...base, shard: '' })), /^shard: expected a name/],
    ['seq 0', gzipSync(JSON.stringify({ ...base, seq: 0 })), /^seq: expected ≥ 1/],
    [
      'negative epoch',
      gzipSync(JSON.stringify({ ...base, epoch: -1 })),
      /^epoch: expected an integer/,
    ],
    [
      'paths not an array',
      gzipSync(JSON.stringify({ ...base, paths: {} })),
      /^paths: expected an array/,
    ],
    [
      'a path without a target',
      gzipSync(JSON.stringify({ ...base, paths: [{ agent: 'a', state: 'ok' }] })),
      /^paths\[0\]: expected a path state/,
    ],
    [
      'an agent without its id',
      gzipSync(JSON.stringify({ ...base, agents: [{ agent: 'a', lastSeenMs: 1 }] })),
      /^agents\[0\]: expected an agent's liveness/,
    ],
  ])('refuses %s, naming what is wrong', (_what, data, message) => {
    expect(() => decodeChange(data)).toThrow(BadChange);
    expect(() => decodeChange(data)).toThrow(message);
  });
});

describe('ChangeOrder', () => {
  // Each case: the messages seen so far (applied), then the verdict on the next one.
  it.each([
    ['the first of an unknown shard, whatever its seq', [], { epoch: 5, seq: 40 }, 'apply'],
    ['the next seq', [{ epoch: 5, seq: 1 }], { epoch: 5, seq: 2 }, 'apply'],
    [
      'a redelivery',
      [
        { epoch: 5, seq: 1 },
        { epoch: 5, seq: 2 },
      ],
      { epoch: 5, seq: 1 },
      'duplicate',
    ],
    ['the same message again', [{ epoch: 5, seq: 3 }], { epoch: 5, seq: 3 }, 'duplicate'],
    ['one ahead of a missing one', [{ epoch: 5, seq: 3 }], { epoch: 5, seq: 5 }, 'gap'],
    ['a restarted shard’s first', [{ epoch: 5, seq: 9 }], { epoch: 8, seq: 1 }, 'apply'],
    [
      'a restarted shard’s second before its first',
      [{ epoch: 5, seq: 9 }],
      { epoch: 8, seq: 2 },
      'gap',
    ],
    ['the old epoch after a restart', [{ epoch: 8, seq: 1 }], { epoch: 5, seq: 10 }, 'duplicate'],
  ] as const)('%s', (_what, applied, next, verdict) => {
    const o = new ChangeOrder();
    for (const a of applied) o.commit({ shard: 's', ...a });
    expect(o.verdict({ shard: 's', ...next })).toBe(verdict);
    // Another shard's order is its own.
    expect(o.verdict({ shard: 'other', epoch: 1, seq: 3 })).toBe('apply');
  });
});

describe('hash shares', () => {
  it('puts every agent in exactly one of count shares, stable and spread', () => {
    const names = Array.from({ length: 2_000 }, (_, i) => `host-${i}.example`);
    const counts = [0, 0];
    for (const n of names) counts[hashShardOf(n, 2)]!++;
    expect(counts[0]! + counts[1]!).toBe(2_000);
    expect(Math.min(...counts)).toBeGreaterThan(900);
    expect(hashShardOf('app-1', 2)).toBe(hashShardOf('app-1', 2));
  });
});

/** Applies a change the way the localiser's feed does: through its wire form, in order, once. */
function feed(m: ShardFedMatrix, order: ChangeOrder, c: ShardChange, nowMs: number): string {
  const d = decodeChange(encodeChange(c));
  const v = order.verdict(d);
  if (v === 'apply') {
    m.applyChange(d, nowMs);
    order.commit(d);
  }
  return v;
}

const byKey = (ps: readonly PathState[]): PathState[] =>
  [...ps].sort((p, q) => (p.agent + p.target < q.agent + q.target ? -1 : 1));

describe('ShardFedMatrix', () => {
  it('holds each path’s newest state; a redelivered or stale change leaves it as it is', () => {
    const m = new ShardFedMatrix();
    const order = new ChangeOrder();
    const reasons: string[] = [];
    m.onChange = (r) => reasons.push(r);
    const c1 = { ...base, agents: [agent('a', 4_000)], paths: [path('a', 'db-1/icmp', 'ok')] };
    const c2 = { ...base, seq: 2, paths: [path('a', 'db-1/icmp', 'failing')] };
    expect(feed(m, order, c1, 5_000)).toBe('apply');
    expect(feed(m, order, c2, 5_000)).toBe('apply');
    const before = { paths: m.paths(), agents: m.agents(), dirty: m.takeDirtyAgents() };
    expect(before.paths.map((p) => p.state)).toEqual(['failing']);
    expect(before.dirty.agents).toEqual(['a']);
    // c1 again (a redelivery after a lost ack) would put the path back to ok: it is dropped.
    expect(feed(m, order, c1, 5_000)).toBe('duplicate');
    expect(feed(m, order, c2, 5_000)).toBe('duplicate');
    expect(m.paths()).toEqual(before.paths);
    expect(m.agents()).toEqual(before.agents);
    expect(m.takeDirtyAgents().agents).toEqual([]);
    expect(reasons).toEqual(['batch', 'batch']);
    // The shard restarted: its snapshot (a new epoch) is taken, the old epoch's tail is not.
    const snap = { ...base, epoch: 2_000, paths: [path('a', 'db-1/icmp', 'ok')], snapshot: true };
    expect(feed(m, order, snap, 6_000)).toBe('apply');
    expect(feed(m, order, { ...c2, seq: 3 }, 6_000)).toBe('duplicate');
    expect(m.paths().map((p) => p.state)).toEqual(['ok']);
    expect(m.size).toBe(1);
  });

  it('decides late and silent from the shards’ liveness, and holds them while a shard is not heard', () => {
    const m = new ShardFedMatrix();
    const order = new ChangeOrder();
    feed(m, order, { ...base, agents: [agent('a', 1_000)] }, 1_000);
    feed(m, order, { ...base, shard: 's1', agents: [agent('b', 1_000)] }, 1_000);
    // s0 keeps talking (heartbeats) but a is not heard; s1 has said nothing since 1 000.
    feed(m, order, { ...base, seq: 2 }, 8_000);
    expect(m.markLate(8_000, 2_000)).toEqual(['a']);
    expect(m.markSilent(8_000, 5_000).map((a) => a.agent)).toEqual(['a']);
    expect(m.agentNamed('b')).toMatchObject({ state: 'live' });
    expect(m.isLate('b')).toBe(false);
    // a heard again through its shard: live, not late, and the diagnosis is told.
    const reasons: string[] = [];
    m.onChange = (r) => reasons.push(r);
    feed(m, order, { ...base, seq: 3, agents: [agent('a', 8_500)] }, 8_600);
    expect(m.agentNamed('a')).toMatchObject({ state: 'live', lastSeenMs: 8_500 });
    expect(m.isLate('a')).toBe(false);
    expect(reasons).toEqual(['agent-live']);
  });

  it('does not count against a shard’s agents the time its own reports could not reach it', () => {
    const m = new ShardFedMatrix();
    const order = new ChangeOrder();
    feed(m, order, { ...base, atMs: 1_000, agents: [agent('a', 1_000)] }, 1_000);
    feed(m, order, { ...base, shard: 's1', atMs: 1_000, agents: [agent('b', 1_000)] }, 1_000);
    // Both shards keep talking; s0's input stalled from 1 500 on, s1's did not.
    feed(m, order, { ...base, seq: 2, atMs: 2_000, inputStalledSinceMs: 1_500 }, 2_000);
    feed(m, order, { ...base, shard: 's1', seq: 2, atMs: 2_000 }, 2_000);
    feed(m, order, { ...base, seq: 3, atMs: 7_000, inputStalledSinceMs: 1_500 }, 7_000);
    feed(m, order, { ...base, shard: 's1', seq: 3, atMs: 7_000 }, 7_000);
    expect(m.markLate(7_000, 2_000)).toEqual(['b']);
    expect(m.markSilent(7_000, 5_000).map((x) => x.agent)).toEqual(['b']);
    expect(m.agentNamed('a')).toMatchObject({ state: 'live' });
    // s0 hears again at 8 000: a has been unheard for 500 ms before the stall and from then.
    feed(m, order, { ...base, seq: 4, atMs: 8_000 }, 8_000);
    expect(m.markLate(9_400, 2_000)).toEqual([]);
    expect(m.markLate(9_600, 2_000)).toEqual(['a']);
    expect(m.markSilent(12_400, 5_000)).toEqual([]);
    expect(m.markSilent(12_600, 5_000).map((x) => x.agent)).toEqual(['a']);
  });

  it('localises the shards’ changes, split by agent hash and interleaved with redeliveries, as one matrix', () => {
    let faulted = 0;
    for (const c of generateCases(12, 17)) {
      const input = buildInput(c.scenario);
      const m = new ShardFedMatrix();
      const order = new ChangeOrder();
      // Two shards, each sending its agents' paths in pieces of a few paths.
      const shards = [0, 1].map((i) => input.paths.filter((p) => hashShardOf(p.agent, 2) === i));
      const messages = shards.map((ps, i) => {
        const out: ShardChange[] = [];
        for (let k = 0; k < ps.length; k += 7)
          out.push({
            ...base,
            shard: `s${i}`,
            seq: out.length + 1,
            paths: ps.slice(k, k + 7),
            agents: input.agents.filter((a) => hashShardOf(a.agent, 2) === i && k === 0),
          });
        return out;
      });
      const n = Math.max(messages[0]!.length, messages[1]!.length);
      for (let k = 0; k < n; k++)
        for (const list of messages) {
          const c = list[k];
          if (c === undefined) continue;
          feed(m, order, c, input.nowMs);
          if (k > 0) expect(feed(m, order, list[k - 1]!, input.nowMs)).toBe('duplicate');
        }
      expect(byKey(m.paths())).toEqual(byKey(input.paths));
      const want = localise(input);
      const got = localise({ ...input, paths: byKey(m.paths()) });
      expect(got.hypotheses.map((h) => [h.kind, h.summary])).toEqual(
        want.hypotheses.map((h) => [h.kind, h.summary]),
      );
      if (!want.healthy) faulted++;
    }
    expect(faulted).toBeGreaterThan(6);
  });
});
