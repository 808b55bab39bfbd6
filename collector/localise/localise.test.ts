import { describe, expect, it } from 'vitest';
import { DiagnosisSchema } from '../../wire/diagnosis.js';
import { ScenarioSchema, buildInput, loadScenarios } from '../../test/scenarios/scenario.js';
import type { PathState } from '../types.js';
import { localise } from './localise.js';

const topology = ScenarioSchema.parse({
  name: 'eight hosts, two zones, four switches',
  components: [
    ['app-1', 'api', 'a', 'sw-1', 'http', 'http'],
    ['app-2', 'api', 'a', 'sw-1', 'http', 'http'],
    ['db-1', 'database', 'a', 'sw-2', 'postgres', 'postgres'],
    ['db-2', 'database', 'a', 'sw-2', 'postgres', 'postgres'],
    ['app-3', 'api', 'b', 'sw-3', 'http', 'http'],
    ['web-1', 'web', 'b', 'sw-3', 'http', 'http'],
    ['cache-1', 'cache', 'b', 'sw-4', 'redis', 'redis'],
    ['db-3', 'database', 'b', 'sw-4', 'mysql', 'mysql'],
  ].map(([name, role, zone, sw, service, kind]) => ({
    name,
    role,
    labels: { zone, switch: sw },
    services: [{ name: service, kind }],
  })),
  collector: { labels: { zone: 'a', switch: 'sw-1' } },
  expect: { healthy: true },
});

/** Deterministic Fisher–Yates shuffle. */
function shuffle<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('localise', () => {
  it('raises nothing on a healthy matrix with 1–2% noise under the debounce, whatever the seed', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const d = localise(buildInput({ ...topology, noise: seed % 2 === 0 ? 0.02 : 0.01, seed }));
      expect(d, `seed ${seed}`).toMatchObject({ healthy: true, hypotheses: [], ruledOut: [] });
    }
  });

  it('gives the same diagnosis whatever the order of paths, agents and inventory', () => {
    const faulted = [
      { ...topology, faults: [{ cut: { label: 'zone', value: 'b', reportedAgain: false } }] },
      { ...topology, faults: [{ sourceFault: 'app-3' }] },
      { ...topology, faults: [{ serviceDown: { component: 'db-1', service: 'postgres' } }] },
    ];
    for (const s of faulted) {
      const input = buildInput(s);
      const d = localise(input);
      expect(d.healthy).toBe(false);
      for (let seed = 1; seed <= 5; seed++) {
        const again = localise({
          ...input,
          paths: shuffle(input.paths, seed),
          agents: shuffle(input.agents, seed + 1),
          inventory: shuffle(input.inventory, seed + 2),
        });
        expect(again).toEqual(d);
      }
    }
  });

  it('ignores unknown paths and probe-internal failures: they say nothing about the target', () => {
    const input = buildInput(topology);
    const paths = input.paths.map((p, i): PathState =>
      i % 7 === 0
        ? { ...p, state: 'unknown', lastClass: 'tcp_timeout' }
        : i % 11 === 0
          ? { ...p, state: 'failing', lastClass: 'internal_error', failures: { internal_error: 5 } }
          : p,
    );
    expect(localise({ ...input, paths })).toMatchObject({ healthy: true, hypotheses: [] });
  });

  it('reads a hung service whose listen queue filled as the hung service, not a filter on its port', () => {
    // postgres on db-1 hung: connects were accepted, the startup answer never came. Then its
    // listen queue filled and new connects time out — every path to it, at the TCP layer.
    const input = buildInput({
      ...topology,
      faults: [{ hang: { component: 'db-1', service: 'postgres' } }],
    });
    expect(localise(input).hypotheses[0]).toMatchObject({
      kind: 'service_unresponsive',
      components: ['db-1'],
    });
    const toPostgres = (p: PathState): boolean =>
      p.component === 'db-1' && p.target.startsWith('db-1/postgres/');
    expect(input.paths.filter(toPostgres).length).toBeGreaterThan(0);
    const full = (p: PathState): PathState => {
      if (!toPostgres(p)) return p;
      const { firstClass: _f, ...rest } = p;
      const wasHung = p.state === 'failing' && p.lastClass === 'protocol_timeout';
      return {
        ...rest,
        state: 'failing',
        lastClass: 'tcp_timeout',
        ...(wasHung ? { firstClass: 'protocol_timeout' as const } : {}),
      };
    };
    const d = localise({ ...input, paths: input.paths.map(full) });
    expect(d.hypotheses[0]).toMatchObject({ kind: 'service_unresponsive', components: ['db-1'] });
    expect(d.hypotheses[0]?.summary).toContain('listen queue is full');
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('path_blocked');
    // The same connect timeouts as a failure of their own — no hung answer began it, though
    // the window still holds a freeze healed a moment ago — are a filter on the port.
    const blocked = localise({
      ...input,
      paths: input.paths.map((p) => {
        const q = full(p);
        if (!toPostgres(p)) return q;
        const { firstClass: _f, ...rest } = q;
        return { ...rest, failures: { protocol_timeout: 5, tcp_timeout: 3 } };
      }),
    });
    expect(blocked.hypotheses[0]).toMatchObject({ kind: 'path_blocked', components: ['db-1'] });
  });

  it('reads paths to a host that fell and came back as loss, not a filter or an MTU: a flapping link', () => {
    // db-2's link flaps. Just after it came back up, some paths to it have recovered (they
    // fell a moment ago) and others are still failing: the ones still down look like a
    // filter the others pass, or a big echo lost where the small one passes.
    const input = buildInput(topology);
    const nowMs = input.nowMs;
    let k = 0;
    const flapped = (recovered: boolean) =>
      input.paths.map((p): PathState => {
        if (p.component !== 'db-2' || p.agent === 'db-2') return p;
        const down = k++ % 2 === 0;
        if (down && p.kind !== 'icmp')
          return { ...p, state: 'failing', lastClass: 'tcp_timeout', fellAtMs: nowMs - 1_500 };
        return recovered ? { ...p, fellAtMs: nowMs - 4_500, sinceMs: nowMs - 3_000 } : p;
      });
    const steady = localise({ ...input, paths: flapped(false) });
    expect(steady.hypotheses.map((h) => h.kind)).toContain('path_blocked');
    k = 0;
    const d = localise({ ...input, paths: flapped(true) });
    expect(d.hypotheses[0]).toMatchObject({ kind: 'packet_loss', components: ['db-2'] });
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('path_blocked');
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('mtu_mismatch');
    // A fall that long ago says nothing now.
    k = 0;
    const old = localise({
      ...input,
      nowMs: nowMs + 20_000,
      paths: flapped(true),
    });
    expect(old.hypotheses.map((h) => h.kind)).toContain('path_blocked');
    // Nor does one that came back long after it fell: an outage that healed, not a blip.
    k = 0;
    const healed = localise({
      ...input,
      paths: flapped(true).map((p) =>
        p.fellAtMs === nowMs - 4_500
          ? { ...p, fellAtMs: nowMs - 9_000, sinceMs: nowMs - 2_000 }
          : p,
      ),
    });
    expect(healed.hypotheses.map((h) => h.kind)).toContain('path_blocked');
  });

  it('reads a blocked-looking path to a host most of whose echo partners blipped as loss: lost probes that came back', () => {
    // 30 % loss on db-2's link: one agent's TCP path to it fell (four probes lost in a row),
    // the others' echoes to it each lost a probe and got the next one through.
    const input = buildInput(topology);
    const nowMs = input.nowMs;
    const partners = [
      ...new Set(input.paths.filter((p) => p.component === 'db-2').map((p) => p.agent)),
    ]
      .filter((a) => a !== 'db-2')
      .sort();
    const first = partners[0]!;
    const read = (blipping: readonly string[], fell = true) =>
      localise({
        ...input,
        paths: input.paths.map((p): PathState => {
          if (p.component !== 'db-2') return p;
          if (fell && p.agent === first && p.kind === 'tcp')
            return { ...p, state: 'failing', lastClass: 'tcp_timeout', sinceMs: nowMs - 500 };
          if (p.kind === 'icmp' && blipping.includes(p.agent))
            return { ...p, blippedAtMs: nowMs - 1_000 };
          return p;
        }),
      });
    // One partner's echo blipped: background loss touches a pair now and then — a filter.
    const one = read(partners.slice(1, 2));
    expect(one.hypotheses[0]).toMatchObject({ kind: 'path_blocked', components: ['db-2'] });
    // Most of them: the host's link loses.
    const most = read(partners.slice(0, Math.ceil(partners.length / 2) + 1));
    expect(most.hypotheses[0]).toMatchObject({ kind: 'packet_loss', components: ['db-2'] });
    expect(most.hypotheses.map((h) => h.kind)).not.toContain('path_blocked');
    // Blips alone, no path failing: not worth a hypothesis.
    expect(read(partners, false).healthy).toBe(true);
  });

  it('reads a short cut that healed as no loss: every path between the hosts fell and came back together', () => {
    // db-2 was cut off for 3 s: every path to and from it fell at once; the heal brought
    // them back within moments (within the blip time) but for one agent's TCP path, whose
    // recovery is not confirmed yet. Falls that come back quickly are what loss does too —
    // but loss takes one path between two hosts now and another then, not all of them at once.
    const input = buildInput(topology);
    const nowMs = input.nowMs;
    const touches = (p: PathState): boolean => p.component === 'db-2' || p.agent === 'db-2';
    const partners = [
      ...new Set(input.paths.filter((p) => p.component === 'db-2').map((p) => p.agent)),
    ]
      .filter((a) => a !== 'db-2')
      .sort();
    const first = partners[0]!;
    const read = (through: (p: PathState) => boolean) =>
      localise({
        ...input,
        paths: input.paths.map((p): PathState => {
          if (!touches(p) || through(p)) return p;
          if (p.agent === first && p.component === 'db-2' && p.kind === 'tcp')
            return {
              ...p,
              state: 'failing',
              lastClass: 'tcp_timeout',
              fellAtMs: nowMs - 4_500,
              sinceMs: nowMs - 4_500,
            };
          return { ...p, fellAtMs: nowMs - 4_500, sinceMs: nowMs - 1_500 };
        }),
      });
    // The cut healed: no loss (the path still coming back reads as a blocked path, for now).
    const healed = read(() => false);
    expect(healed.hypotheses.map((h) => h.kind)).not.toContain('packet_loss');
    // Loss: the echoes fell and came back, while the hosts' TCP paths got through all along.
    const lossy = read((p) => p.kind !== 'icmp' && !(p.agent === first && p.kind === 'tcp'));
    expect(lossy.hypotheses[0]?.kind).toBe('packet_loss');
    expect(lossy.hypotheses[0]?.components).toContain('db-2');
    expect(lossy.hypotheses.map((h) => h.kind)).not.toContain('path_blocked');
  });

  it('a loss between one pair of hosts, seen both ways, names both ends: it shares nothing with another pair', () => {
    const input = buildInput(topology);
    const pair = (p: PathState): boolean =>
      p.kind === 'icmp' &&
      ((p.agent === 'app-2' && p.component === 'db-2') ||
        (p.agent === 'db-2' && p.component === 'app-2'));
    expect(input.paths.filter(pair)).toHaveLength(2);
    const d = localise({
      ...input,
      paths: input.paths.map((p): PathState =>
        pair(p) ? { ...p, state: 'degraded', lossRatio: 0.3, failureRatio: 0.3 } : p,
      ),
    });
    expect(d.hypotheses[0]?.kind).toBe('packet_loss');
    expect(d.hypotheses[0]?.components).toEqual(['app-2', 'db-2']);
    expect(d.hypotheses[0]?.summary).toContain('between app-2 and db-2');
  });

  it("reads a database answering slower over a sound network as no loss: a service probe's latency is its answer's", () => {
    // A busy PostgreSQL on db-1: its first byte (a backend forked, auth) comes 45 ms after the
    // connect instead of 9, with nothing lost, while the echoes and TCP connects to db-1 are
    // as fast as ever. A slower network slows those too.
    const input = buildInput(topology);
    const slow = (p: PathState): PathState => ({
      ...p,
      state: 'degraded',
      latencyMs: { baseline: 9.1, p50: 46.7, p99: 60 },
    });
    const db = input.paths.filter((p) => p.component === 'db-1' && p.kind === 'postgres');
    expect(db.length).toBeGreaterThan(1);
    const busy = localise({
      ...input,
      paths: input.paths.map((p) => (db.includes(p) ? slow(p) : p)),
    });
    expect(busy.hypotheses.map((h) => h.kind)).not.toContain('packet_loss');
    // The same answers slower, and the echoes between the same hosts too: the network.
    const from = new Set(db.map((p) => p.agent));
    const link = localise({
      ...input,
      paths: input.paths.map((p) =>
        db.includes(p) || (p.component === 'db-1' && p.kind === 'icmp' && from.has(p.agent))
          ? slow(p)
          : p,
      ),
    });
    expect(link.hypotheses[0]?.kind).toBe('packet_loss');
    expect(link.hypotheses[0]?.components).toContain('db-1');
  });

  it('does not read a prober of many hosts as lossy for two of them blipping (a star, not a mesh)', () => {
    // One agent probes every host; nobody probes it. Two of its echoes blipped twice (background
    // loss); its TCP path to db-2 fell: a filter on that path, not app-1's link losing.
    const input = buildInput(topology);
    const nowMs = input.nowMs;
    const star = {
      ...input,
      agents: input.agents.filter((a) => a.agent === 'app-1'),
      paths: input.paths
        .filter((p) => p.agent === 'app-1')
        .map((p): PathState => {
          if (p.kind === 'icmp' && (p.component === 'db-1' || p.component === 'web-1'))
            return { ...p, blippedAtMs: nowMs - 1_000 };
          if (p.component === 'db-2' && p.kind === 'tcp')
            return { ...p, state: 'failing', lastClass: 'tcp_timeout', sinceMs: nowMs - 500 };
          return p;
        }),
    };
    const d = localise(star);
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('packet_loss');
    expect(d.hypotheses[0]).toMatchObject({ kind: 'path_blocked', components: ['db-2'] });
  });

  it('reads nothing into a silent agent’s stale window', () => {
    // The db-2 agent went silent with every path failing; its host still answers everyone.
    const input = buildInput({ ...topology, faults: [{ silentAgent: 'db-2' }] });
    const paths = input.paths.map((p): PathState =>
      p.agent === 'db-2' ? { ...p, state: 'failing', lastClass: 'tcp_timeout' } : p,
    );
    const d = localise({ ...input, paths });
    expect(d.hypotheses.map((h) => h.kind)).toEqual(['agent_silent']);
    expect(d.hypotheses[0]?.components).toEqual(['db-2']);
  });

  it('does not count a late agent’s view: hosts cut off the moment their agents stopped reporting are a partition, not a filter', () => {
    // sw-2 cut off. Its agents have not reported since (late, not yet silent): what they
    // last said — every path ok — predates the cut.
    const input = buildInput({
      ...topology,
      faults: [{ cut: { label: 'switch', value: 'sw-2', reportedAgain: false } }],
    });
    const behind = new Set(['db-1', 'db-2']);
    const paths = input.paths.map((p): PathState =>
      behind.has(p.agent) ? { ...p, state: 'ok', lastClass: 'ok', failures: {} } : p,
    );
    const agents = (late: boolean) =>
      input.agents.map((a) =>
        behind.has(a.agent) ? { ...a, state: 'live' as const, ...(late ? { late } : {}) } : a,
      );
    // Counted, the stale views say the hosts behind reach everyone: a filter one way.
    expect(localise({ ...input, paths, agents: agents(false) }).hypotheses[0]?.kind).toBe(
      'path_blocked',
    );
    const d = localise({ ...input, paths, agents: agents(true) });
    expect(d.hypotheses[0]).toMatchObject({
      kind: 'network_partition',
      components: ['db-1', 'db-2'],
      cutLabel: { key: 'switch', values: ['sw-2'] },
    });
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('agent_silent');
    expect(d.hypotheses[0]?.summary).toContain('stopped reporting');
  });

  it('an ok path whose newest probe was lost (its confirmation still out) does not say the host answers', () => {
    // db-2 is down. Two agents have confirmed it; the others' paths are ok with their newest
    // probe lost — confirmations on the way, not proof that db-2 answers them.
    const input = buildInput({ ...topology, faults: [{ hostDown: 'db-2' }] });
    const confirmed = new Set(['app-1', 'app-2']);
    const paths = input.paths.map((p): PathState =>
      p.component === 'db-2' && p.state === 'failing' && !confirmed.has(p.agent)
        ? { ...p, state: 'ok', failures: {} }
        : p,
    );
    const d = localise({ ...input, paths });
    expect(d.hypotheses[0]).toMatchObject({ kind: 'host_unreachable', components: ['db-2'] });
    // Read as answering, the same paths made it a filter the others get through.
    const asOk = paths.map((p): PathState =>
      p.component === 'db-2' && p.state === 'ok' ? { ...p, lastClass: 'ok' } : p,
    );
    expect(localise({ ...input, paths: asOk }).hypotheses[0]?.kind).toBe('path_blocked');
  });

  it("the collector host's agent alone losing one host is that host's fault arriving, not its own vantage; two hosts are", () => {
    // The collector runs on app-1, whose agent is the first to see web-1's port lose
    // full-size frames; the other agents' full-size echoes to web-1 are not due yet.
    const input = buildInput({ ...topology, collector: { host: 'app-1', hearsAll: false } });
    const lose = (targets: readonly string[]): PathState[] =>
      input.paths.map((p) =>
        p.agent === 'app-1' && targets.includes(p.component) && p.kind === 'mtu'
          ? { ...p, state: 'failing', lastClass: 'icmp_timeout', failures: { icmp_timeout: 3 } }
          : p,
      );
    const one = localise({ ...input, paths: lose(['web-1']) });
    expect(one.hypotheses.map((h) => `${h.kind} ${h.components.join(',')}`)).not.toContain(
      'source_fault app-1',
    );
    const two = localise({ ...input, paths: lose(['web-1', 'db-3']) });
    expect(two.hypotheses[0]).toMatchObject({ kind: 'source_fault', components: ['app-1'] });
  });

  it("an agent's failures are no source fault when the others' way in to its host failed around then too (a flapping link, a spool replayed)", () => {
    const input = buildInput({ ...topology, faults: [{ sourceFault: 'app-3' }] });
    expect(localise(input).hypotheses[0]).toMatchObject({
      kind: 'source_fault',
      components: ['app-3'],
    });
    // app-3's link flapped. Its agent replays what it probed while down: failures whose
    // newest result is 2 s old. The others' paths to app-3 are back.
    const nowMs = Math.max(...input.paths.map((p) => p.lastSeenMs));
    const replayed = (others: (p: PathState) => PathState): PathState[] =>
      input.paths.map((p) =>
        p.agent === 'app-3' && p.state === 'failing'
          ? { ...p, lastSeenMs: nowMs - 2000 }
          : p.component === 'app-3' && p.agent !== 'app-3'
            ? others(p)
            : p,
      );
    const kinds = (paths: PathState[]): string[] =>
      localise({ ...input, paths }).hypotheses.map((h) => h.kind);
    // Back for 1 s only — after app-3's failures — or ok all along but fallen lately: at
    // the time of app-3's failures the others did not reach app-3 either.
    expect(kinds(replayed((p) => ({ ...p, sinceMs: nowMs - 1000 })))).not.toContain('source_fault');
    expect(kinds(replayed((p) => ({ ...p, fellAtMs: nowMs - 2500 })))).not.toContain(
      'source_fault',
    );
    expect(kinds(replayed((p) => ({ ...p, blippedAtMs: nowMs - 2500 })))).not.toContain(
      'source_fault',
    );
    // Reached steadily all along: app-3's own way out is the fault, replayed or not.
    expect(kinds(replayed((p) => p))[0]).toBe('source_fault');
  });

  it("a flapping link's own agent, replaying what it probed while down, is that link's loss: no source fault, nothing unexplained", () => {
    const input = buildInput({
      ...topology,
      faults: [{ flapLink: { host: 'db-2', lossRatio: 0.3 } }],
    });
    expect(localise(input).hypotheses[0]).toMatchObject({
      kind: 'packet_loss',
      components: ['db-2'],
    });
    // db-2's agent reports again after a fall of its link: every path it probed while down
    // failed (their newest result 2 s old); the others' paths to db-2 lose packets.
    const nowMs = Math.max(...input.paths.map((p) => p.lastSeenMs));
    const paths = input.paths.map((p): PathState =>
      p.agent === 'db-2' && p.component !== 'db-2'
        ? {
            ...p,
            state: 'failing',
            lastClass: 'tcp_timeout',
            failures: { tcp_timeout: 3 },
            consecutiveFailures: 3,
            consecutiveSuccesses: 0,
            lastSeenMs: nowMs - 2000,
          }
        : p,
    );
    const d = localise({ ...input, paths });
    expect(d.hypotheses[0]).toMatchObject({ kind: 'packet_loss', components: ['db-2'] });
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('source_fault');
    expect(d.hypotheses.map((h) => h.kind)).not.toContain('unexplained');
  });

  it("a far host lost by the collector host's agent alone is host_unreachable when no other agent probes it, and waits while others are still to report", () => {
    const input = buildInput({ ...topology, collector: { host: 'app-1', hearsAll: false } });
    const lost = (p: PathState): PathState =>
      p.agent === 'app-1' && p.component === 'web-1'
        ? {
            ...p,
            state: 'failing',
            lastClass: p.kind === 'icmp' || p.kind === 'mtu' ? 'icmp_timeout' : 'tcp_timeout',
            failures: { tcp_timeout: 3 },
          }
        : p;
    // web-1 is down: its own agent has stopped reporting.
    const agents = input.agents.map((a) => (a.agent === 'web-1' ? { ...a, late: true } : a));
    // Only app-1 probes web-1 (the others' paths to it are not in their plans).
    const alone = input.paths
      .filter((p) => p.component !== 'web-1' || p.agent === 'app-1')
      .map(lost);
    expect(localise({ ...input, agents, paths: alone }).hypotheses[0]).toMatchObject({
      kind: 'host_unreachable',
      components: ['web-1'],
    });
    // The others probe it too, their newest probe of it lost and its confirmation still out:
    // not yet a verdict on web-1 from the collector's own vantage alone.
    const pending = input.paths
      .map((p) =>
        p.component === 'web-1' && p.agent !== 'app-1'
          ? { ...p, state: 'ok' as const, lastClass: 'tcp_timeout' as const, failures: {} }
          : p,
      )
      .map(lost);
    expect(
      localise({ ...input, agents, paths: pending }).hypotheses.map(
        (h) => h.kind + h.components.join(),
      ),
    ).not.toContain('host_unreachableweb-1');
  });

  it('produces a document the strict diagnosis schema accepts, and the schema refuses strays', () => {
    const d = localise(
      buildInput({
        ...topology,
        faults: [{ cut: { label: 'switch', value: 'sw-2', reportedAgain: false } }],
      }),
    );
    expect(DiagnosisSchema.parse(d)).toEqual(d);
    expect(d.hypotheses[0]?.since).toBeLessThanOrEqual(d.computedAtMs);
    expect(DiagnosisSchema.safeParse({ ...d, extra: 1 }).success).toBe(false);
    const wrongKind = { ...d, hypotheses: [{ ...d.hypotheses[0], kind: 'switch_down' }] };
    expect(DiagnosisSchema.safeParse(wrongKind).success).toBe(false);
    const tooSure = { ...d, hypotheses: [{ ...d.hypotheses[0], confidence: 1.5 }] };
    expect(DiagnosisSchema.safeParse(tooSure).success).toBe(false);
  });

  it('names at most eight hosts in a summary, and every one in its groups', () => {
    const apps = Array.from({ length: 12 }, (_, i) => `app-${String(i + 1).padStart(2, '0')}`);
    const s = ScenarioSchema.parse({
      name: 'twelve app hosts, two databases behind their own switch',
      components: [
        ...apps.map((name) => ({
          name,
          role: 'api',
          labels: { zone: 'a', switch: 'sw-1' },
          services: [{ name: 'http', kind: 'http' }],
        })),
        ...['db-1', 'db-2'].map((name) => ({
          name,
          role: 'database',
          labels: { zone: 'b', switch: 'sw-2' },
          services: [{ name: 'postgres', kind: 'postgres' }],
        })),
      ],
      collector: { labels: { zone: 'a', switch: 'sw-1' } },
      faults: [{ cut: { label: 'switch', value: 'sw-2', reportedAgain: false } }],
      expect: { healthy: false },
    });
    const h = localise(buildInput(s)).hypotheses[0];
    expect(h?.kind).toBe('network_partition');
    expect(h?.summary).toContain(
      '{app-01, app-02, app-03, app-04, app-05, app-06, app-07 and 5 more} and {db-1, db-2}',
    );
    expect(h?.groups.flatMap((g) => g.members).sort()).toEqual([...apps, 'db-1', 'db-2']);
  });

  it('names the collector side as the main group when both sides report equally', () => {
    // Both sides' agents report; the collector's labels put it in zone b.
    const s = {
      ...topology,
      collector: { labels: { zone: 'b' }, hearsAll: true },
      faults: [{ cut: { label: 'zone', value: 'b', reportedAgain: true } }],
    };
    const d = localise(buildInput(s));
    expect(d.hypotheses[0]?.kind).toBe('network_partition');
    expect(d.hypotheses[0]?.cutLabel).toEqual({ key: 'zone', values: ['a'] });
    expect(d.hypotheses[0]?.components).toEqual(['app-1', 'app-2', 'db-1', 'db-2']);
  });

  it('takes agents silent since before the collector started for a restart, not for its own cut', () => {
    const found = loadScenarios().find(({ file }) => file.startsWith('53-'));
    if (!found) throw new Error('case 53 is missing');
    const input = buildInput(found.scenario);
    expect(localise(input).hypotheses[0]?.collectorCutOff).toBe(true);
    // The same silence, but the collector only started after the agents' last reports.
    const lastSeen = Math.max(...input.agents.map((a) => a.lastSeenMs));
    const restarted = localise({
      ...input,
      observer: { ...input.observer, upSinceMs: lastSeen + 1 },
    });
    expect(restarted.hypotheses.some((h) => h.collectorCutOff === true)).toBe(false);
  });

  it('reads no MTU into full-size echoes coming back: a smaller MTU loses every one, a link coming up lets them through', () => {
    const found = loadScenarios().find(({ file }) => file.startsWith('52-'));
    if (!found) throw new Error('case 52 is missing');
    const input = buildInput(found.scenario);
    const mtu = (p: PathState): boolean =>
      (p.component === 'web-1' || p.agent === 'web-1') && p.kind === 'mtu';
    expect(input.paths.filter((p) => mtu(p) && p.state === 'failing').length).toBeGreaterThan(1);
    expect(localise(input).hypotheses[0]?.kind).toBe('mtu_mismatch');
    // The same failing paths, each with its newest echo through (still under the debounce back).
    const back = localise({
      ...input,
      paths: input.paths.map((p) =>
        mtu(p) && p.state === 'failing'
          ? { ...p, lastClass: 'ok' as const, consecutiveFailures: 0, consecutiveSuccesses: 1 }
          : p,
      ),
    });
    expect(back.hypotheses.map((h) => h.kind)).not.toContain('mtu_mismatch');
  });

  it("reads a host's smaller MTU from the first agents' lost echoes: passing pairs not heard from since do not contradict it", () => {
    const found = loadScenarios().find(({ file }) => file.startsWith('52-'));
    if (!found) throw new Error('case 52 is missing');
    const input = buildInput(found.scenario);
    const first = ['app-1', 'app-3'];
    const viaWeb = (p: PathState): boolean => p.component === 'web-1' || p.agent === 'web-1';
    const lostAtMs = Math.min(
      ...input.paths
        .filter((p) => p.kind === 'mtu' && viaWeb(p) && first.includes(p.agent))
        .map((p) => p.sinceMs),
    );
    // The MTU of web-1's port has just shrunk: two agents' rounds have come and their paths
    // to web-1 are confirmed failing; the other agents' paths to web-1, and web-1's own (its
    // agent's reports are full-size frames too), were last heard before, passing.
    const arriving = (heardMs: number): PathState[] =>
      input.paths.map((p) =>
        viaWeb(p) && !first.includes(p.agent)
          ? {
              ...p,
              state: 'ok' as const,
              lastClass: 'ok' as const,
              consecutiveFailures: 0,
              consecutiveSuccesses: 10,
              sinceMs: p.sinceMs - 600_000,
              lastSeenMs: heardMs,
            }
          : p,
      );
    const early = localise({ ...input, paths: arriving(lostAtMs - 300) });
    expect(early.hypotheses[0]).toMatchObject({ kind: 'mtu_mismatch', components: ['web-1'] });
    // The other agents' big answers from web-1 already lost, their echoes not yet probed
    // again: those timeouts are the MTU too, not the service and not unexplained.
    const answersFirst = localise({
      ...input,
      paths: arriving(lostAtMs - 300).map((p, i) =>
        p.kind !== 'mtu' && p.component === 'web-1' ? input.paths[i]! : p,
      ),
    });
    expect(answersFirst.hypotheses.map((h) => `${h.kind} ${h.components.join(',')}`)).toEqual([
      'mtu_mismatch web-1',
    ]);
    // One agent's round so far: app-1's other pairs (both ways) heard passing since rule its
    // own port out…
    first.pop();
    const app1LostAtMs = input.paths.find(
      (p) => p.agent === 'app-1' && p.component === 'web-1' && p.kind === 'mtu',
    )!.sinceMs;
    const one = (othersHeardMs: number): string[] | undefined =>
      localise({
        ...input,
        paths: arriving(lostAtMs - 300).map((p) =>
          p.kind === 'mtu' && !viaWeb(p) && (p.agent === 'app-1' || p.component === 'app-1')
            ? { ...p, lastSeenMs: othersHeardMs }
            : p,
        ),
      }).hypotheses[0]?.components;
    expect(one(app1LostAtMs + 300)).toEqual(['web-1']);
    // …and with those not heard from since either, nothing tells app-1's port from web-1's:
    // the route between them.
    expect(one(app1LostAtMs - 300)).toEqual(['app-1', 'web-1']);
    first.push('app-3');
    // The same pairs heard passing since: they contradict web-1's port; the two pairs are the
    // route between those hosts.
    const passing = localise({ ...input, paths: arriving(lostAtMs + 300) });
    expect(passing.hypotheses[0]?.kind).toBe('mtu_mismatch');
    expect(passing.hypotheses[0]?.components).not.toEqual(['web-1']);
  });

  it('an agent behind a smaller MTU falls silent (its reports are full-size frames): that is the MTU, not the agent', () => {
    const found = loadScenarios().find(({ file }) => file.startsWith('52-'));
    if (!found) throw new Error('case 52 is missing');
    const input = buildInput(found.scenario);
    const silent = {
      ...input,
      agents: input.agents.map((a) =>
        a.agent === 'web-1'
          ? { ...a, state: 'silent' as const, lastSeenMs: input.nowMs - 5_000 }
          : a,
      ),
    };
    const kinds = (d: ReturnType<typeof localise>): string[] =>
      d.hypotheses.map((h) => `${h.kind} ${h.components.join(',')}`);
    expect(kinds(localise(silent))).toEqual(['mtu_mismatch web-1']);
    // Another host's agent silent is not explained by web-1's port: its way does not cross it.
    const other = {
      ...input,
      agents: input.agents.map((a) =>
        a.agent === 'db-2'
          ? { ...a, state: 'silent' as const, lastSeenMs: input.nowMs - 5_000 }
          : a,
      ),
    };
    expect(kinds(localise(other))).toContain('agent_silent db-2');
  });

  it('never blames the service for a big answer lost where the full-size echo has only begun to fail', () => {
    const found = loadScenarios().find(({ file }) => file.startsWith('52-'));
    if (!found) throw new Error('case 52 is missing');
    const input = buildInput(found.scenario);
    const hung = input.paths.filter(
      (p) => p.component === 'web-1' && p.lastClass === 'http_timeout',
    );
    expect(hung.length).toBeGreaterThan(1);
    // One agent's echo to web-1 lost once, under the debounce: its path still reads ok.
    const early = hung[0]?.agent;
    const paths = input.paths.map((p) =>
      p.agent === early && p.component === 'web-1' && p.kind === 'mtu'
        ? { ...p, state: 'ok' as const, lastClass: 'icmp_timeout' as const, consecutiveFailures: 1 }
        : p,
    );
    const d = localise({ ...input, paths });
    expect(d.hypotheses[0]?.kind).toBe('mtu_mismatch');
    expect(
      d.hypotheses.filter((h) => h.kind === 'service_down' || h.kind === 'service_unresponsive'),
    ).toEqual([]);
    // Only that agent's echo has begun to fail: before the others count, nothing blames the app.
    const first = localise({
      ...input,
      paths: input.paths.map((p) =>
        p.component === 'web-1' && p.kind === 'mtu'
          ? {
              ...p,
              state: 'ok' as const,
              lastClass: 'icmp_timeout' as const,
              consecutiveFailures: 1,
            }
          : p,
      ),
    });
    expect(
      first.hypotheses.filter(
        (h) => h.kind === 'service_down' || h.kind === 'service_unresponsive',
      ),
    ).toEqual([]);
  });
});
