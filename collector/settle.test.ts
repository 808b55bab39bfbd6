import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import { DiagnosisEngine, type DiagnosisChange } from './diagnosis.js';
import type { SettleSignal } from './paths/states.js';
import { Settler } from './settle.js';
import { meterText } from '../test/helpers/meter-text.js';

function hypothesis(kind: Hypothesis['kind'], components: string[]): Hypothesis {
  return {
    kind,
    confidence: 0.8,
    summary: `${kind} on ${components.join(', ')}`,
    components,
    groups: [],
    evidence: { counts: { tcp_refused: 1 }, examples: [] },
    since: 1,
  };
}

function doc(...hypotheses: Hypothesis[]): Diagnosis {
  return { healthy: hypotheses.length === 0, hypotheses, ruledOut: [], computedAtMs: 0 };
}

const blocked = doc(hypothesis('path_blocked', ['db-1']));
const down = doc(hypothesis('service_down', ['db-1']));

function sig(type: SettleSignal['type'], agent: string, component: string): SettleSignal {
  return { type, key: `${agent}\u0000${component}/tcp/pg`, agent, component };
}

describe('Settler', () => {
  it('remembers when a path of a host came back from failing, at both ends, for a minute', () => {
    const s = new Settler({ quietMs: 400, burstMaxMs: 1_500 });
    s.take([sig('change', 'app-1', 'db-1')], 10_000);
    expect(s.recoveredAtMs('db-1')).toBeUndefined();
    s.take([{ ...sig('change', 'app-1', 'db-1'), recovered: true }], 11_000);
    expect(s.recoveredAtMs('db-1')).toBe(11_000);
    expect(s.recoveredAtMs('app-1')).toBe(11_000);
    expect(s.recoveredAtMs('db-2')).toBeUndefined();
    // Forgotten once a minute old (swept as signals come).
    s.take([sig('change', 'app-2', 'db-2')], 71_001);
    expect(s.recoveredAtMs('db-1')).toBeUndefined();
  });

  it('settles for quietMs after a change of a host the hypotheses name', () => {
    const s = new Settler({ quietMs: 400 });
    s.take([sig('change', 'app-1', 'db-1')], 10_000);
    expect(s.activeSince('db-1', 10_100)).toBe(10_000);
    expect(s.activeSince('db-1', 10_400)).toBeUndefined();
    expect(s.activeSince('db-2', 10_100)).toBeUndefined();
    expect(s.verdict(blocked, 10_100)).toEqual({
      settling: true,
      sinceMs: 10_000,
      untilMs: 10_400,
    });
    expect(s.verdict(blocked, 10_400)).toEqual({ settling: false });
  });

  it("the episode begins at the trigger, not at the burst's confirmation", () => {
    const s = new Settler({ quietMs: 400, settleMaxMs: 1_000 });
    s.take([sig('open', 'app-1', 'db-1')], 10_000);
    s.take([sig('close', 'app-1', 'db-1'), sig('change', 'app-1', 'db-1')], 10_450);
    expect(s.verdict(blocked, 10_460)).toEqual({
      settling: true,
      sinceMs: 10_000,
      untilMs: 10_850,
    });
    expect(s.verdict(blocked, 10_900).settling).toBe(false);
  });

  it("waits for the report of a named host's agent not heard since the fault began there (bounded)", () => {
    let lastSeenMs = 9_800;
    const due = (host: string, sinceMs: number): number =>
      host === 'db-1' && lastSeenMs < sinceMs ? lastSeenMs + 1_000 : 0;
    const s = new Settler({ quietMs: 200, settleMaxMs: 1_000 }, (a) => a, due);
    s.take([sig('change', 'app-1', 'db-1')], 10_000);
    // Quiet after 200 ms, but db-1's agent is due until 10,800: its word tells a cut from a filter.
    expect(s.verdict(blocked, 10_500)).toEqual({
      settling: true,
      sinceMs: 10_000,
      untilMs: 10_800,
    });
    expect(s.verdict(blocked, 10_800).settling).toBe(false);
    // Heard since: nothing to wait for.
    const t = new Settler({ quietMs: 200, settleMaxMs: 1_000 }, (a) => a, due);
    lastSeenMs = 20_100;
    t.take([sig('change', 'app-1', 'db-1')], 20_000);
    expect(t.verdict(blocked, 20_300).settling).toBe(false);
    // A long overdue report waits settleMax at most.
    const u = new Settler(
      { quietMs: 200, settleMaxMs: 1_000 },
      (a) => a,
      () => 99_000,
    );
    u.take([sig('change', 'app-1', 'db-1')], 30_000);
    expect(u.verdict(blocked, 30_500)).toMatchObject({ settling: true, untilMs: 31_000 });
    expect(u.verdict(blocked, 31_000).settling).toBe(false);
  });

  it('holds a host active a whole round after its activity began: every agent probes it once more', () => {
    const s = new Settler({ quietMs: 400, roundMs: 1_300, settleMaxMs: 2_000 });
    s.take([sig('change', 'app-1', 'db-1')], 10_000);
    // Quiet for 400 ms, but the other agents' probes of db-1 are still to come.
    expect(s.verdict(blocked, 10_900)).toEqual({
      settling: true,
      sinceMs: 10_000,
      untilMs: 11_300,
    });
    // Another agent's change comes within the round: a round from it, within the episode's
    // bound (settleMax from the first change).
    s.take([sig('change', 'app-2', 'db-1')], 11_100);
    expect(s.verdict(blocked, 11_500)).toEqual({
      settling: true,
      sinceMs: 10_000,
      untilMs: 12_000,
    });
    expect(s.verdict(blocked, 12_000).settling).toBe(false);
  });

  it("activity from before the diagnosis was last healthy is not the fault's: the round counts from after it", () => {
    const s = new Settler({ quietMs: 400, roundMs: 1_300, settleMaxMs: 2_000 });
    s.take([sig('open', 'app-1', 'db-1')], 10_000);
    expect(s.verdict(doc(), 10_500).settling).toBe(false);
    s.take([sig('change', 'app-1', 'db-1')], 10_600);
    expect(s.verdict(blocked, 10_700)).toEqual({
      settling: true,
      sinceMs: 10_500,
      untilMs: 11_800,
    });
  });

  it('an open burst holds it until it closes or is overdue; a closed one does not', () => {
    const s = new Settler({ quietMs: 400, burstMaxMs: 1_500, settleMaxMs: 5_000 });
    s.take([sig('open', 'app-2', 'db-1')], 10_000);
    expect(s.verdict(blocked, 10_900).settling).toBe(true);
    expect(s.verdict(blocked, 11_500).settling).toBe(false);
    s.take([sig('open', 'app-3', 'db-1')], 20_000);
    expect(s.verdict(blocked, 20_100).settling).toBe(true);
    s.take([sig('close', 'app-3', 'db-1')], 20_200);
    expect(s.verdict(blocked, 20_450).settling).toBe(false);
  });

  it('is bounded: never settling longer than settleMax from the first change, however long changes go on', () => {
    const s = new Settler({ quietMs: 400, settleMaxMs: 1_000 });
    let settlingUntil = 0;
    for (let t = 10_000; t < 13_000; t += 200) {
      s.take([sig('change', `app-${t}`, t < 11_000 ? 'db-1' : 'app-1')], t);
      const v = s.verdict(doc(hypothesis('service_down', ['db-1', 'app-1'])), t + 1);
      if (v.settling) {
        settlingUntil = t + 1;
        expect(v.sinceMs).toBe(10_000);
        expect(v.untilMs).toBeLessThanOrEqual(11_000);
      }
    }
    expect(settlingUntil).toBeLessThan(11_000);
    expect(settlingUntil).toBeGreaterThanOrEqual(10_800);
    // After a quiet gap a new fault settles again.
    s.take([sig('change', 'app-9', 'db-1')], 20_000);
    expect(s.verdict(blocked, 20_001)).toMatchObject({ settling: true, sinceMs: 20_000 });
  });

  it('changes of hosts no hypothesis names, and a healthy diagnosis, never settle', () => {
    const s = new Settler();
    s.take([sig('change', 'app-7', 'web-9'), sig('open', 'app-7', 'web-9')], 10_000);
    expect(s.verdict(blocked, 10_001).settling).toBe(false);
    s.take([sig('change', 'app-1', 'db-1')], 10_002);
    expect(s.verdict(doc(), 10_003).settling).toBe(false);
    // The agent's own host counts: a hypothesis about app-1 (a source fault) settles.
    const viaAgent = new Settler({}, (agent) => (agent === 'agent-a' ? 'app-1' : agent));
    viaAgent.take([sig('change', 'agent-a', 'db-1')], 10_000);
    expect(viaAgent.verdict(doc(hypothesis('source_fault', ['app-1'])), 10_001).settling).toBe(
      true,
    );
  });

  it('settleMax 0 never settles; overdue bursts and quiet hosts are forgotten', () => {
    expect(
      (() => {
        const s = new Settler({ settleMaxMs: 0 });
        s.take([sig('change', 'app-1', 'db-1')], 10_000);
        return s.verdict(blocked, 10_001).settling;
      })(),
    ).toBe(false);
    const s = new Settler({ burstMaxMs: 1_500 });
    for (let i = 0; i < 100; i++) s.take([sig('open', `app-${i}`, 'db-1')], 10_000);
    expect(s.size().bursts).toBe(100);
    s.take([], 20_000);
    expect(s.size()).toEqual({ hosts: 0, bursts: 0 });
  });
});

describe('DiagnosisEngine with a settler', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(settleMaxMs = 1_000) {
    vi.useFakeTimers({
      now: 100_000,
      toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'Date'],
    });
    const settler = new Settler({ quietMs: 400, burstMaxMs: 1_500, settleMaxMs });
    let answer: Diagnosis = doc();
    const engine = new DiagnosisEngine({
      input: () => ({ paths: [], agents: [], inventory: [] }),
      localise: (input) => ({ ...answer, computedAtMs: input.nowMs }),
      settler,
      clockMs: Date.now,
    });
    const changes: DiagnosisChange[] = [];
    engine.onChange((c) => changes.push(c));
    return {
      engine,
      settler,
      changes,
      set: (d: Diagnosis) => (answer = d),
    };
  }

  it('marks a document settling while its fault arrives, and publishes the settled one by itself (a timer), within settleMax', async () => {
    const f = setup();
    f.settler.take([sig('open', 'app-1', 'db-1')], Date.now());
    f.settler.take([sig('close', 'app-1', 'db-1'), sig('change', 'app-1', 'db-1')], Date.now());
    f.settler.take([sig('open', 'app-2', 'db-1')], Date.now());
    f.set(blocked);
    f.engine.invalidate('batch');
    await vi.advanceTimersByTimeAsync(1);
    expect(f.engine.current()).toMatchObject({
      settling: true,
      settlingSinceMs: 100_000,
      hypotheses: [{ kind: 'path_blocked' }],
    });
    const metrics = meterText();
    f.engine.instrument(metrics.meter);
    expect(await metrics.render()).toContain('faultline_diagnosis_settling 1\n');
    // The other agents' confirmations arrive: the cause changes while still settling.
    await vi.advanceTimersByTimeAsync(300);
    f.settler.take([sig('close', 'app-2', 'db-1'), sig('change', 'app-2', 'db-1')], Date.now());
    f.set(down);
    f.engine.invalidate('batch');
    await vi.advanceTimersByTimeAsync(1);
    expect(f.engine.current()).toMatchObject({
      settling: true,
      hypotheses: [{ kind: 'service_down' }],
    });
    // No batch after this: the settle timer brings the settled document, 400 ms after the
    // last change.
    const before = f.changes.length;
    await vi.advanceTimersByTimeAsync(450);
    expect(f.engine.current()).toMatchObject({
      settling: false,
      hypotheses: [{ kind: 'service_down' }],
    });
    expect(f.engine.current().settlingSinceMs).toBeUndefined();
    expect(f.changes.length).toBe(before + 1);
    expect(f.changes.at(-1)?.reasons).toEqual(['settled']);
    expect(await metrics.render()).toContain('faultline_diagnosis_settling 0\n');
    f.engine.close();
  });

  it('changes that keep coming settle it for settleMax at most', async () => {
    const f = setup(1_000);
    f.set(blocked);
    const seen: { at: number; settling: boolean | undefined }[] = [];
    f.engine.onChange(({ current }) => seen.push({ at: Date.now(), settling: current.settling }));
    for (let i = 0; i < 15; i++) {
      f.settler.take([sig('change', `app-${i}`, 'db-1')], Date.now());
      f.engine.invalidate('batch');
      await vi.advanceTimersByTimeAsync(200);
    }
    expect(seen[0]).toEqual({ at: 100_000, settling: true });
    const settled = seen.find((s) => s.settling === false);
    expect(settled).toBeDefined();
    expect(settled!.at - 100_000).toBeLessThanOrEqual(1_001);
    expect(f.engine.current().settling).toBe(false);
    f.engine.close();
  });
});
