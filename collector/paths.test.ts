import { describe, expect, it } from 'vitest';
import { batch, result, summary, t0 } from '../test/helpers/report-batches.js';
import type { ReportBatch } from '../wire/report.js';
import type { FailureClass, ProbeResult } from '../wire/result.js';
import { PathMatrix } from './paths/matrix.js';
import { describePlanTarget } from './paths/options.js';
import type { MatrixCheckpoint, RestoreSource, Transition } from './paths/checkpoint.js';
import type { StoredBatch } from './checkpoint.js';
import type { PathState } from './types.js';

const pg = 'db-1/tcp/postgres';
const icmp = 'db-1/icmp';

function feed(m: PathMatrix, b: ReportBatch, receivedAtMs = t0 + b.seq * 1000): Transition[] {
  const applied = m.apply(b, receivedAtMs);
  applied.commit({ acceptedSeq: b.seq, droppedResults: 0 });
  return [...applied.transitions];
}

function states(ts: readonly Transition[]): string[] {
  return ts.map((t) => `${t.fromState}->${t.toState}`);
}

function pathOf(m: PathMatrix, target = pg) {
  const p = m.path('app-1', target);
  if (p === undefined) throw new Error(`no path ${target}`);
  return p;
}

describe('PathMatrix debounce', () => {
  it('one failure raises nothing; three in a row make the path failing; recovery needs three successes', () => {
    const m = new PathMatrix();
    expect(states(feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] })))).toEqual([
      'unknown->ok',
    ]);

    const fail = (seq: number, at: number) => result(pg, 'tcp_timeout', seq, at);
    const one = feed(
      m,
      batch(2, {
        results: [fail(6, t0 + 1000)],
        summaries: [summary(pg, t0 + 1000, 6, { failures: { tcp_timeout: 1 }, ok: 0 })],
      }),
    );
    expect(one).toEqual([]);
    expect(pathOf(m)).toMatchObject({
      state: 'ok',
      consecutiveFailures: 1,
      lastClass: 'tcp_timeout',
    });

    const three = feed(m, batch(3, { results: [fail(7, t0 + 2000), fail(8, t0 + 2500)] }));
    expect(three).toEqual([
      {
        agentId: 'agent-app-1-0001',
        agent: 'app-1',
        target: pg,
        kind: 'tcp',
        fromClass: 'ok',
        toClass: 'tcp_timeout',
        fromState: 'ok',
        toState: 'failing',
        // The failure began with the first failed probe, not when the debounce was met.
        atMs: t0 + 1000,
        resultSeq: 8,
        batchSeq: 3,
      },
    ]);
    expect(pathOf(m)).toMatchObject({
      state: 'failing',
      sinceMs: t0 + 1000,
      consecutiveFailures: 3,
    });

    // The first success comes in full (a state change), the next ones only in summaries.
    expect(
      feed(
        m,
        batch(4, {
          results: [result(pg, 'ok', 9, t0 + 3000)],
          summaries: [summary(pg, t0 + 3000, 9, { ok: 1 })],
        }),
      ),
    ).toEqual([]);
    expect(feed(m, batch(5, { summaries: [summary(pg, t0 + 4000, 10, { ok: 1 })] }))).toEqual([]);
    expect(pathOf(m)).toMatchObject({ state: 'failing', consecutiveSuccesses: 2 });
    const back = feed(m, batch(6, { summaries: [summary(pg, t0 + 5000, 11, { ok: 1 })] }));
    expect(back).toMatchObject([
      {
        fromState: 'failing',
        toState: 'ok',
        fromClass: 'tcp_timeout',
        toClass: 'ok',
        atMs: t0 + 3000,
      },
    ]);
    expect(pathOf(m)).toMatchObject({ state: 'ok', sinceMs: t0 + 3000, consecutiveSuccesses: 3 });
  });

  it('a new path that fails from the start is unknown until the debounce, then failing', () => {
    const m = new PathMatrix({ debounce: 2 });
    expect(feed(m, batch(1, { results: [result(pg, 'tcp_refused', 1, t0)] }))).toEqual([]);
    expect(pathOf(m).state).toBe('unknown');
    expect(
      states(feed(m, batch(2, { results: [result(pg, 'tcp_refused', 2, t0 + 1000)] }))),
    ).toEqual(['unknown->failing']);
  });

  it('a failure class that changes and persists while failing is a transition of its own', () => {
    const m = new PathMatrix();
    const rs = (cls: 'tcp_timeout' | 'tcp_refused', from: number) =>
      [0, 1, 2].map((k) => result(pg, cls, from + k, t0 + (from + k) * 100));
    feed(m, batch(1, { results: rs('tcp_timeout', 1) }));
    const ts = feed(m, batch(2, { results: rs('tcp_refused', 4) }));
    expect(ts).toMatchObject([
      {
        fromState: 'failing',
        toState: 'failing',
        fromClass: 'tcp_timeout',
        toClass: 'tcp_refused',
        atMs: t0 + 400,
      },
    ]);
    // A single probe of another class does not count as a change.
    expect(feed(m, batch(3, { results: [result(pg, 'tcp_timeout', 7, t0 + 700)] }))).toEqual([]);
  });
});

describe('PathMatrix failing episodes', () => {
  it('a failure that changes class keeps the class it began with, across a checkpoint, until it recovers', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }));
    const hung = (seq: number, at: number) => result(pg, 'protocol_timeout', seq, at);
    feed(m, batch(2, { results: [hung(6, t0 + 1000), hung(7, t0 + 2000), hung(8, t0 + 3000)] }));
    expect(pathOf(m)).toMatchObject({ state: 'failing', lastClass: 'protocol_timeout' });
    expect(pathOf(m).firstClass).toBeUndefined();
    const full = (seq: number, at: number) => result(pg, 'tcp_timeout', seq, at);
    const ts = feed(
      m,
      batch(3, { results: [full(9, t0 + 4000), full(10, t0 + 5000), full(11, t0 + 6000)] }),
    );
    expect(states(ts)).toEqual(['failing->failing']);
    expect(pathOf(m)).toMatchObject({
      state: 'failing',
      lastClass: 'tcp_timeout',
      firstClass: 'protocol_timeout',
    });
    const c = m.checkpoint();
    expect(c.paths[0]?.firstClass).toBe('protocol_timeout');
    const n = new PathMatrix();
    n.restore({
      agents: () => [
        {
          agentId: batch(1).agentId,
          agent: 'app-1',
          labels: {},
          firstSeenMs: t0,
          lastSeenMs: t0 + 6_000,
          acceptedSeq: 3,
          droppedBatches: 0,
          droppedResults: 0,
        },
      ],
      loadCheckpoint: () => c,
      lastPathTransitions: () => [],
      lastAgentTransition: () => undefined,
      firstSeqReceivedSince: () => 4,
      batchReceivedAt: () => t0 + 6_000,
      replay: () => [],
    });
    expect(n.path('app-1', pg)?.firstClass).toBe('protocol_timeout');
    const ok = (seq: number, at: number) => result(pg, 'ok', seq, at);
    feed(m, batch(4, { results: [ok(12, t0 + 7000), ok(13, t0 + 8000), ok(14, t0 + 9000)] }));
    feed(
      m,
      batch(5, { results: [full(15, t0 + 10_000), full(16, t0 + 11_000), full(17, t0 + 12_000)] }),
    );
    expect(pathOf(m)).toMatchObject({ state: 'failing', lastClass: 'tcp_timeout' });
    expect(pathOf(m).firstClass).toBeUndefined();
  });
});

describe('PathMatrix recent falls', () => {
  class Watched extends PathMatrix {
    get changed(): boolean {
      return this.meaningChanged;
    }
  }

  it('shows a network-layer fall for flapStableMs by the path’s newest result, and its end is a change of meaning', () => {
    const m = new Watched();
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }));
    const fail = (seq: number, at: number) => result(pg, 'tcp_timeout', seq, at);
    const ok = (seq: number, at: number) => result(pg, 'ok', seq, at);
    feed(m, batch(2, { results: [fail(6, t0 + 1000), fail(7, t0 + 2000), fail(8, t0 + 3000)] }));
    expect(pathOf(m)).toMatchObject({ state: 'failing', fellAtMs: t0 + 3000 });
    expect(pathOf(m).fellAgain).toBeUndefined();
    feed(m, batch(3, { results: [ok(9, t0 + 4000), ok(10, t0 + 5000), ok(11, t0 + 6000)] }));
    expect(pathOf(m)).toMatchObject({ state: 'ok', fellAtMs: t0 + 3000 });
    // Quiet ok periods: no change of meaning while the fall shows …
    let seq = 11;
    // (A summary of [at, at + 1 s) makes the path's newest result at + 1 s.)
    for (let at = t0 + 6000; at < t0 + 12_000; at += 1000) {
      seq += 1;
      feed(m, batch(seq - 7, { summaries: [summary(pg, at, seq, { ok: 1 })] }));
      expect(m.changed, `at +${at - t0}`).toBe(false);
      expect(pathOf(m).fellAtMs).toBe(t0 + 3000);
    }
    // … and one when it is flapStableMs (10 s) old (it fell when the third failure came).
    seq += 1;
    feed(m, batch(seq - 7, { summaries: [summary(pg, t0 + 12_000, seq, { ok: 1 })] }));
    expect(m.changed).toBe(true);
    expect(pathOf(m).fellAtMs).toBeUndefined();
  });

  it('shows lost probes that came back without a fall (blips), two within blipShowMs; a fall or a refusal is none', () => {
    const m = new Watched();
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }));
    const r = (cls: FailureClass, seq: number, at: number) => result(pg, cls, seq, at);
    feed(m, batch(2, { results: [r('tcp_timeout', 6, t0 + 1000), r('ok', 7, t0 + 1200)] }));
    // One lost probe now and then is background loss.
    expect(pathOf(m).blippedAtMs).toBeUndefined();
    feed(m, batch(3, { results: [r('tcp_timeout', 8, t0 + 2000), r('ok', 9, t0 + 2200)] }));
    expect(pathOf(m)).toMatchObject({ state: 'ok', blippedAtMs: t0 + 2200 });
    // Shown until the first is blipShowMs (5 s) old by the newest result; its end is a change.
    feed(m, batch(4, { summaries: [summary(pg, t0 + 5000, 10, { ok: 1 })] }));
    expect(pathOf(m).blippedAtMs).toBe(t0 + 2200);
    feed(m, batch(5, { summaries: [summary(pg, t0 + 5200, 11, { ok: 1 })] }));
    expect(m.changed).toBe(true);
    expect(pathOf(m).blippedAtMs).toBeUndefined();
    // A refusal is the service speaking, not a probe lost.
    feed(m, batch(6, { results: [r('tcp_refused', 12, t0 + 7000), r('ok', 13, t0 + 7200)] }));
    feed(m, batch(7, { results: [r('tcp_refused', 14, t0 + 7400), r('ok', 15, t0 + 7600)] }));
    expect(pathOf(m).blippedAtMs).toBeUndefined();
    // A fall that comes back is a fall (fellAtMs), not a blip.
    feed(m, batch(8, { results: [8, 9, 10].map((i) => r('tcp_timeout', 8 + i, t0 + i * 1000)) }));
    feed(m, batch(9, { results: [11, 12, 13].map((i) => r('ok', 8 + i, t0 + i * 1000)) }));
    expect(pathOf(m)).toMatchObject({ state: 'ok', fellAtMs: t0 + 10_000 });
    expect(pathOf(m).blippedAtMs).toBeUndefined();
  });

  it('a second fall within flapStableMs of the first fell again; a refusal is no fall', () => {
    const m = new PathMatrix({ flapSuppressAt: Number.POSITIVE_INFINITY });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }));
    const r = (cls: FailureClass, seq: number, at: number) => result(pg, cls, seq, at);
    const three = (cls: FailureClass, seq: number, at: number) => [
      r(cls, seq, at),
      r(cls, seq + 1, at + 500),
      r(cls, seq + 2, at + 1000),
    ];
    feed(m, batch(2, { results: three('tcp_refused', 6, t0 + 1000) }));
    expect(pathOf(m)).toMatchObject({ state: 'failing', lastClass: 'tcp_refused' });
    expect(pathOf(m).fellAtMs).toBeUndefined();
    feed(m, batch(3, { results: three('ok', 9, t0 + 2500) }));
    feed(m, batch(4, { results: three('tcp_timeout', 12, t0 + 4000) }));
    expect(pathOf(m)).toMatchObject({ state: 'failing', fellAtMs: t0 + 5000 });
    expect(pathOf(m).fellAgain).toBeUndefined();
    feed(m, batch(5, { results: three('ok', 15, t0 + 5500) }));
    feed(m, batch(6, { results: three('tcp_timeout', 18, t0 + 7000) }));
    expect(pathOf(m)).toMatchObject({ state: 'failing', fellAtMs: t0 + 8000, fellAgain: true });
    // An outage that lasted (back 5 s after it fell: no blip) and a fall soon after it: a
    // new fault, not the path falling again.
    feed(m, batch(7, { results: three('ok', 21, t0 + 13_000) }));
    feed(m, batch(8, { results: three('tcp_timeout', 24, t0 + 15_000) }));
    expect(pathOf(m)).toMatchObject({ state: 'failing', fellAtMs: t0 + 16_000 });
    expect(pathOf(m).fellAgain).toBeUndefined();
  });
});

describe('PathMatrix results and summaries together', () => {
  it('counts the failures of a period once: from the summary, not again from the full results', () => {
    const m = new PathMatrix();
    feed(
      m,
      batch(1, {
        results: [result(pg, 'tcp_refused', 3, t0 + 300), result(pg, 'tcp_refused', 4, t0 + 400)],
        summaries: [
          summary(pg, t0, 5, { count: 5, ok: 3, failures: { tcp_refused: 2 }, lastClass: 'ok' }),
        ],
      }),
    );
    const p = pathOf(m);
    expect(p.probes).toBe(5);
    expect(p.failures).toEqual({ tcp_refused: 2 });
    expect(p.failureRatio).toBeCloseTo(0.4);
    // The period ended with a probe not sent in full: a success after the two failures.
    expect(p).toMatchObject({ lastClass: 'ok', consecutiveSuccesses: 1, consecutiveFailures: 0 });
  });

  it('a period without failures adds every probe not already seen in full as a success', () => {
    const m = new PathMatrix();
    feed(
      m,
      batch(1, {
        results: [1, 2, 3].map((s) => result(pg, 'tcp_timeout', s, t0 + s * 100)),
        summaries: [summary(pg, t0, 3, { count: 3, ok: 0, failures: { tcp_timeout: 3 } })],
      }),
    );
    const ts = feed(
      m,
      batch(2, {
        results: [result(pg, 'ok', 4, t0 + 1100)],
        summaries: [summary(pg, t0 + 1000, 8, { count: 5, ok: 5 })],
      }),
    );
    expect(ts).toMatchObject([{ fromState: 'failing', toState: 'ok', atMs: t0 + 1100 }]);
    expect(pathOf(m).consecutiveSuccesses).toBe(5);
  });

  it('a period with failures whose last probe was not sent in full adds one success (a lower bound)', () => {
    const m = new PathMatrix();
    feed(
      m,
      batch(1, {
        results: [
          ...[1, 2, 3].map((s) => result(pg, 'tcp_timeout', s, t0 + s * 100)),
          result(pg, 'ok', 4, t0 + 400),
        ],
        summaries: [
          summary(pg, t0, 6, { count: 6, ok: 3, failures: { tcp_timeout: 3 }, lastClass: 'ok' }),
        ],
      }),
    );
    // Unsent successes may sit before the failures: only the last one is certain.
    expect(pathOf(m)).toMatchObject({ state: 'failing', consecutiveSuccesses: 2 });
    feed(m, batch(2, { summaries: [summary(pg, t0 + 1000, 11, { ok: 5 })] }));
    expect(pathOf(m)).toMatchObject({ state: 'ok', consecutiveSuccesses: 7 });
  });

  it('reads a batch of several periods in sequence order, whatever order it lists them in', () => {
    const m = new PathMatrix();
    const ts = feed(
      m,
      batch(1, {
        results: [5, 3, 4].map((s) => result(pg, 'tcp_timeout', s, t0 + s * 100)),
        summaries: [
          summary(pg, t0 + 1000, 10, { ok: 5 }),
          summary(pg, t0, 5, { count: 5, ok: 2, failures: { tcp_timeout: 3 } }),
        ],
      }),
    );
    expect(states(ts)).toEqual(['unknown->failing', 'failing->ok']);
    expect(pathOf(m)).toMatchObject({ state: 'ok', probes: 10, consecutiveSuccesses: 5 });
  });
});

describe('PathMatrix window', () => {
  it('sums the periods of the window: probes, failure classes, weighted p50, highest p99, loss', () => {
    const m = new PathMatrix();
    feed(
      m,
      batch(1, {
        summaries: [
          summary(pg, t0, 10, { count: 10, ok: 10, p50: 2, p99: 5 }),
          summary(pg, t0 + 1000, 20, {
            count: 10,
            ok: 8,
            failures: { tcp_timeout: 2 },
            p50: 4,
            p99: 9,
          }),
          summary(pg, t0 + 2000, 40, { count: 20, ok: 20, p50: 1, p99: 3 }),
          summary(icmp, t0, 10, { count: 10, ok: 10, loss: 0.1, kind: 'icmp' }),
          summary(icmp, t0 + 1000, 40, { count: 30, ok: 30, loss: 0.3, kind: 'icmp' }),
        ],
      }),
    );
    const p = pathOf(m);
    expect(p.probes).toBe(40);
    expect(p.failures).toEqual({ tcp_timeout: 2 });
    expect(p.failureRatio).toBeCloseTo(2 / 40);
    expect(p.latencyMs?.p50).toBeCloseTo((2 * 10 + 4 * 8 + 1 * 20) / 38);
    expect(p.latencyMs?.p99).toBe(9);
    expect(p.lossRatio).toBeUndefined();
    expect(pathOf(m, icmp).lossRatio).toBeCloseTo((0.1 * 10 + 0.3 * 30) / 40);
    expect(pathOf(m, icmp)).toMatchObject({ component: 'db-1', kind: 'icmp' });
    expect(pathOf(m, icmp).service).toBeUndefined();

    // 40 s later the old periods have left the 30 s window.
    feed(m, batch(2, { summaries: [summary(pg, t0 + 40_000, 50, { count: 4, ok: 4, p50: 7 })] }));
    expect(pathOf(m)).toMatchObject({ probes: 4, failures: {}, failureRatio: 0 });
    expect(pathOf(m).latencyMs?.p50).toBe(7);
    expect(pathOf(m).lastSeenMs).toBe(t0 + 41_000);
  });

  it('latency well above the baseline degrades a path; back to normal it recovers', () => {
    const m = new PathMatrix();
    let seq = 0;
    const period = (k: number, p50: number) =>
      batch(k + 1, { summaries: [summary(pg, t0 + k * 1000, (seq += 5), { ok: 5, p50 })] });
    const all: Transition[] = [];
    for (let k = 0; k < 6; k++) all.push(...feed(m, period(k, 1)));
    expect(states(all)).toEqual(['unknown->ok']);
    expect(pathOf(m).latencyMs?.baseline).toBeCloseTo(1);

    // Every period slow from now on: degraded once more periods are slow than chance gives
    // (4 of 4 at `tolerableSlowRatio`): a few seconds, not the half window a median takes.
    const slow: Transition[] = [];
    let k = 6;
    for (; k < 12 && pathOf(m).state === 'ok'; k++) slow.push(...feed(m, period(k, 80)));
    expect(slow).toMatchObject([{ fromState: 'ok', toState: 'degraded' }]);
    expect(k - 6).toBeLessThanOrEqual(5);
    expect(pathOf(m).state).toBe('degraded');
    // Slow periods do not teach the baseline that slow is normal.
    expect(pathOf(m).latencyMs?.baseline).toBeCloseTo(1);

    const fast: Transition[] = [];
    for (; k < 50; k++) fast.push(...feed(m, period(k, 1)));
    expect(states(fast)).toEqual(['degraded->ok']);
  });

  it('a probe now and then delayed by a retransmission is not a slow path', () => {
    // The healthy soak with 1–2 % loss: a lost segment delays a TCP probe by the kernel's
    // retransmission timeout (≥ 200 ms), and a period of one probe has that as its p50. Four
    // such periods in a 30 s window lifted the mean of the p50s 25 ms over a 3.5 ms
    // baseline and paged packet_loss.
    const m = new PathMatrix();
    let seq = 0;
    const period = (k: number, p50: number) =>
      feed(
        m,
        batch(k + 1, { summaries: [summary(pg, t0 + k * 1000, (seq += 1), { ok: 1, p50 })] }),
      );
    const all: Transition[] = [];
    for (let k = 0; k < 120; k++) all.push(...period(k, k >= 10 && k % 7 === 3 ? 205 : 3.5));
    expect(states(all)).toEqual(['unknown->ok']);
    // …and they do not teach the baseline either.
    expect(pathOf(m).latencyMs?.baseline).toBeCloseTo(3.5);
  });

  it('a few echoes lost in a short window are background loss, not a degraded path', () => {
    // Right after a recovery the window is short: 3 echoes of 21 lost is 14 %, above the
    // ratio, and among a hundred healthy paths with 2 % loss some path sees it every minute.
    const m = new PathMatrix();
    let seq = 0;
    const all: Transition[] = [];
    for (let k = 0; k < 7; k++) {
      const loss = k === 2 || k === 4 || k === 5 ? 1 / 3 : 0;
      all.push(
        ...feed(
          m,
          batch(k + 1, {
            summaries: [summary(icmp, t0 + k * 1000, (seq += 1), { ok: 1, loss, kind: 'icmp' })],
          }),
        ),
      );
    }
    expect(pathOf(m, icmp).lossRatio).toBeCloseTo(3 / 21);
    expect(states(all)).toEqual(['unknown->ok']);
  });

  it('an agent that does not say how many echoes it sent counts one per probe', () => {
    const run = (withEchoes: boolean): PathState['state'] => {
      const m = new PathMatrix();
      for (let k = 0; k < 9; k++) {
        const s = summary(icmp, t0 + k * 1000, k + 1, {
          ok: k < 6 ? 1 : 2,
          loss: k < 6 ? 0 : 0.5,
          kind: 'icmp',
        });
        const { echoes: _echoes, ...older } = s;
        feed(m, batch(k + 1, { summaries: [withEchoes ? s : older] }));
      }
      return pathOf(m, icmp).state;
    };
    // Half the echoes of six probes lost: 9 of 36 echoes is more than chance at 5 %…
    expect(run(true)).toBe('degraded');
    // …3 of 12 probes' worth is not.
    expect(run(false)).toBe('ok');
  });

  it('loss or intermittent failures above the threshold degrade a path that is ok', () => {
    const m = new PathMatrix();
    let seq = 0;
    for (let k = 0; k < 6; k++) {
      feed(
        m,
        batch(k + 1, {
          summaries: [summary(icmp, t0 + k * 1000, (seq += 5), { ok: 5, loss: 0, kind: 'icmp' })],
        }),
      );
    }
    expect(pathOf(m, icmp).state).toBe('ok');
    const lossy = (k: number) =>
      feed(
        m,
        batch(k + 1, {
          summaries: [summary(icmp, t0 + k * 1000, (seq += 5), { ok: 5, loss: 0.5, kind: 'icmp' })],
        }),
      );
    // Window loss: 0.5 × 5 / 35 probes after one lossy period, 5 / 40 after two.
    expect(lossy(6)).toEqual([]);
    expect(lossy(7)).toMatchObject([{ fromState: 'ok', toState: 'degraded', kind: 'icmp' }]);
    expect(pathOf(m, icmp).lossRatio).toBeCloseTo(5 / 40);
  });

  it('loss after a long healthy spell degrades the path from the recent slots, in ~3 periods, not ~6', () => {
    // As in the lab: one ICMP probe (3 echoes) a second, 30 s of healthy history.
    const m = new PathMatrix();
    let k = 0;
    const period = (loss: number) =>
      feed(
        m,
        batch(k + 1, {
          summaries: [summary(icmp, t0 + k++ * 1000, k, { ok: 1, loss, kind: 'icmp' })],
        }),
      );
    for (let i = 0; i < 40; i++) period(0);
    // One echo of three lost now and then is noise, in the recent slots too.
    expect(period(1 / 3)).toEqual([]);
    for (let i = 0; i < 8; i++) expect(period(0)).toEqual([]);
    // 30 % loss each way: about half the echoes lost, from now on.
    const seen: number[] = [];
    for (let i = 1; i <= 10 && pathOf(m, icmp).state === 'ok'; i++) {
      if (period(i % 2 === 0 ? 1 / 3 : 2 / 3).length > 0) seen.push(i);
    }
    expect(pathOf(m, icmp).state).toBe('degraded');
    // The whole 30 s window would need 6 such periods (3 / 30 = 10 %).
    expect(seen[0]).toBeLessThanOrEqual(4);
  });

  describe('flap damping', () => {
    /** One probe a second from `atS`: `pattern` is a string of o (ok) and x (timeout). */
    function run(m: PathMatrix, pattern: string, atS: number, seq0: number): Transition[] {
      const out: Transition[] = [];
      [...pattern].forEach((c, i) => {
        const seq = seq0 + i;
        out.push(
          ...feed(
            m,
            batch(seq, {
              results: [result(pg, c === 'o' ? 'ok' : 'tcp_timeout', seq, t0 + (atS + i) * 1000)],
            }),
          ),
        );
      });
      return out;
    }

    it('a path that keeps falling within seconds of coming back is flapping: degraded, not failing', () => {
      const m = new PathMatrix();
      // Down 3 s, up 3 s, again and again (a fall every 6 s): the first two falls are
      // failing; from the third, while the path keeps falling, they are loss (degraded with
      // the failure class).
      const ts = run(m, 'oooooo' + 'xxxooo'.repeat(5), 0, 1);
      expect(states(ts).slice(0, 6)).toEqual([
        'unknown->ok',
        'ok->failing',
        'failing->ok',
        'ok->failing',
        'failing->ok',
        'ok->degraded',
      ]);
      expect(states(ts).filter((x) => x.endsWith('->failing'))).toHaveLength(2);
      expect(ts.find((t) => t.toState === 'degraded')?.toClass).toBe('tcp_timeout');
      expect(m.path('app-1', pg)?.state).toBe('degraded');
    });

    it('a fall that outlasts flapMaxSuppressMs is failing: the link stopped flapping down', () => {
      const m = new PathMatrix();
      const ts = run(m, 'oooooo' + 'xxxooo'.repeat(2) + 'x'.repeat(10), 0, 1);
      expect(states(ts).slice(-2)).toEqual(['ok->degraded', 'degraded->failing']);
      const failing = ts.at(-1)!;
      // Failing since the fall began, 5 s of suppression later.
      expect(failing.atMs).toBe(t0 + 18_000);
      expect(m.path('app-1', pg)?.state).toBe('failing');
    });

    it('falls more than flapStableMs apart are separate faults, each failing at once', () => {
      const m = new PathMatrix();
      const ts = run(m, 'oooooo' + ('xxx' + 'o'.repeat(9)).repeat(4), 0, 1);
      expect(states(ts).filter((x) => x.endsWith('->failing'))).toHaveLength(4);
      expect(states(ts).filter((x) => x.includes('degraded'))).toEqual([]);
    });

    it('a refusal is never damped: the far end answered, it is not loss', () => {
      const m = new PathMatrix();
      const ts: Transition[] = [];
      let seq = 1;
      for (let k = 0; k < 30; k++) {
        const down = k >= 6 && k % 6 < 3;
        ts.push(
          ...feed(
            m,
            batch(seq, {
              results: [result(pg, down ? 'tcp_refused' : 'ok', seq, t0 + k * 1000)],
            }),
          ),
        );
        seq++;
      }
      expect(states(ts).filter((x) => x.endsWith('->failing'))).toHaveLength(4);
      expect(states(ts).filter((x) => x.includes('degraded'))).toEqual([]);
    });

    it('off (flapSuppressAt: Infinity, diagnosis.flapDamping: false): every fall is failing', () => {
      const m = new PathMatrix({ flapSuppressAt: Number.POSITIVE_INFINITY });
      const ts = run(m, 'oooooo' + 'xxxooo'.repeat(5), 0, 1);
      expect(states(ts).filter((x) => x.endsWith('->failing'))).toHaveLength(5);
    });

    it('a fall long after the last one is failing at once', () => {
      const m = new PathMatrix();
      run(m, 'oooooo' + 'xxxooo', 0, 1);
      // Two minutes later the penalty has decayed to a quarter.
      const ts = run(m, 'oooxxx', 120, 100);
      expect(states(ts)).toEqual(['ok->failing']);
    });

    it('the penalty survives a checkpoint', () => {
      const m = new PathMatrix();
      run(m, 'oooooo' + 'xxxooo'.repeat(2), 0, 1);
      const c = m.checkpoint();
      expect(c.paths[0]?.flap?.penalty).toBeCloseTo(1 + 2 ** (-6 / 30));
      const n = new PathMatrix();
      n.restore({
        agents: () => [
          {
            agentId: batch(1).agentId,
            agent: 'app-1',
            labels: {},
            firstSeenMs: t0,
            lastSeenMs: t0 + 18_000,
            acceptedSeq: 18,
            droppedBatches: 0,
            droppedResults: 0,
          },
        ],
        loadCheckpoint: () => c,
        lastPathTransitions: () => [],
        lastAgentTransition: () => undefined,
        firstSeqReceivedSince: () => 19,
        batchReceivedAt: () => t0 + 18_000,
        replay: () => [],
      });
      expect(states(run(n, 'xxx', 19, 19))).toEqual(['ok->degraded']);
    });
  });

  it('intermittent failures that never reach the debounce degrade the path, never fail it', () => {
    const m = new PathMatrix();
    let seq = 0;
    for (let k = 0; k < 6; k++) {
      feed(m, batch(k + 1, { summaries: [summary(pg, t0 + k * 1000, (seq += 5), { ok: 5 })] }));
    }
    const ts: Transition[] = [];
    // One probe in five failing is far above background loss, but it takes a few periods
    // for so few failures to be more than chance would give (collector/loss-significance.ts).
    for (let k = 6; k < 46 && pathOf(m).state === 'ok'; k++) {
      const failed = seq + 2;
      seq += 5;
      ts.push(
        ...feed(
          m,
          batch(k + 1, {
            results: [result(pg, 'tcp_timeout', failed, t0 + k * 1000 + 400)],
            summaries: [
              summary(pg, t0 + k * 1000, seq, {
                ok: 4,
                failures: { tcp_timeout: 1 },
                lastClass: 'ok',
              }),
            ],
          }),
        ),
      );
    }
    expect(states(ts)).toEqual(['ok->degraded']);
    expect(pathOf(m)).toMatchObject({ state: 'degraded', consecutiveFailures: 0 });
  });

  it('background loss is not degradation: two probes of six failing now and then (1–2 % loss on a busy path) leave a path ok', () => {
    // One tcp probe a second, as in the lab; a lost SYN now and then fails one.
    const m = new PathMatrix();
    let seq = 0;
    const period = (k: number, failed: boolean) =>
      feed(
        m,
        batch(k + 1, {
          ...(failed ? { results: [result(pg, 'tcp_timeout', seq + 1, t0 + k * 1000)] } : {}),
          summaries: [
            summary(pg, t0 + k * 1000, (seq += 1), {
              count: 1,
              ok: failed ? 0 : 1,
              ...(failed ? { failures: { tcp_timeout: 1 } } : {}),
              lastClass: failed ? 'tcp_timeout' : 'ok',
            }),
          ],
        }),
      );
    const ts: Transition[] = [];
    for (let k = 0; k < 40; k++) ts.push(...period(k, false));
    // Two failures three seconds apart: 2 of the last 6 (33 %, above the recent ratio) and,
    // later, three in the window (10 %) — both what 2 % loss gives a path every few minutes.
    for (let k = 40; k < 80; k++) ts.push(...period(k, k === 42 || k === 45 || k === 60));
    expect(states(ts)).toEqual(['unknown->ok']);
    expect(pathOf(m).state).toBe('ok');
  });

  it('a period that began before the path came back adds only what got through: a heal is no loss', () => {
    // An echo path falls, comes back at R (t0 + 3800); the agent's next period summary
    // spans the heal ([R − 500, R + 500]): half its echoes were lost — to the outage.
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(icmp, t0 - 1000, 5, { ok: 5, loss: 0 })] }));
    const fail = [1000, 1500, 2000].map((d, i) => result(icmp, 'icmp_timeout', 6 + i, t0 + d));
    feed(m, batch(2, { results: fail }));
    expect(pathOf(m, icmp).state).toBe('failing');
    const back = [3800, 3850, 3900].map((d, i) => result(icmp, 'ok', 9 + i, t0 + d));
    feed(m, batch(3, { results: back }));
    expect(pathOf(m, icmp).state).toBe('ok');
    const boundary = summary(icmp, t0 + 3300, 11, {
      count: 2,
      ok: 1,
      failures: { icmp_timeout: 1 },
      loss: 0.5,
      echoes: 30,
    });
    feed(m, batch(4, { summaries: [boundary] }));
    for (let k = 0; k < 3; k++)
      feed(
        m,
        batch(5 + k, {
          summaries: [summary(icmp, t0 + 4300 + k * 1000, 12 + k, { ok: 1, loss: 0 })],
        }),
      );
    expect(pathOf(m, icmp)).toMatchObject({ state: 'ok' });
    expect(pathOf(m, icmp).lossRatio ?? 0).toBe(0);
    // The same with the boundary period summarised before the results that bring it back
    // (an agent flushes a burst's re-probes early, the period at its report time).
    const m2 = new PathMatrix();
    feed(m2, batch(1, { summaries: [summary(icmp, t0 - 1000, 5, { ok: 5, loss: 0 })] }));
    feed(m2, batch(2, { results: fail }));
    feed(m2, batch(3, { summaries: [{ ...boundary, lastSeq: 8 }] }));
    feed(m2, batch(4, { results: back }));
    for (let k = 0; k < 3; k++)
      feed(
        m2,
        batch(5 + k, {
          summaries: [summary(icmp, t0 + 4300 + k * 1000, 12 + k, { ok: 1, loss: 0 })],
        }),
      );
    expect(pathOf(m2, icmp)).toMatchObject({ state: 'ok' });
  });

  it('the failures that made a path fail do not make it degraded once it recovered', () => {
    const m = new PathMatrix();
    let seq = 0;
    for (let k = 0; k < 10; k++) {
      const s = (seq += 1);
      feed(
        m,
        batch(k + 1, {
          results: [result(pg, 'tcp_timeout', s, t0 + k * 1000)],
          summaries: [
            summary(pg, t0 + k * 1000, s, { count: 1, ok: 0, failures: { tcp_timeout: 1 } }),
          ],
        }),
      );
    }
    expect(pathOf(m).state).toBe('failing');
    const after: Transition[] = [];
    for (let k = 10; k < 20; k++) {
      const s = (seq += 2);
      after.push(
        ...feed(
          m,
          batch(k + 1, { summaries: [summary(pg, t0 + k * 1000, s, { count: 2, ok: 2 })] }),
        ),
      );
    }
    expect(states(after)).toEqual(['failing->ok']);
    expect(pathOf(m).state).toBe('ok');
    expect(pathOf(m).failureRatio).toBeGreaterThan(0.1); // the window still holds them
  });
});

describe('PathMatrix agents', () => {
  it('marks agents silent after the quiet time, and a batch brings them back (a transition)', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 1)] }), t0);
    expect(m.markSilent(t0 + 5000, 10_000)).toEqual([]);
    const silent = m.markSilent(t0 + 20_000, 10_000);
    expect(silent).toMatchObject([{ agent: 'app-1', state: 'silent', lastSeenMs: t0 }]);
    expect(m.markSilent(t0 + 30_000, 10_000)).toEqual([]);
    expect(m.agents()[0]?.state).toBe('silent');
    const ts = feed(m, batch(2, { summaries: [summary(pg, t0 + 1000, 2)] }), t0 + 31_000);
    expect(ts).toMatchObject([{ kind: 'agent', target: '', fromState: 'silent', toState: 'live' }]);
    expect(m.agents()[0]).toMatchObject({ state: 'live', lastSeenMs: t0 + 31_000, acceptedSeq: 2 });
  });

  it('flags a live agent late when its report is overdue, and clears it when heard or silent', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 1)] }), t0);
    expect(m.markLate(t0 + 900, 1000)).toEqual([]);
    expect(m.isLate('app-1')).toBe(false);
    expect(m.markLate(t0 + 1100, 1000)).toEqual(['app-1']);
    expect(m.agentNamed('app-1')).toMatchObject({ state: 'live', late: true });
    expect(m.markLate(t0 + 1200, 1000)).toEqual([]);
    // Counted from the collector's start at the earliest (a restart is not the agent's delay).
    expect(m.markLate(t0 + 1300, 1000, t0 + 1000)).toEqual(['app-1']);
    expect(m.isLate('app-1')).toBe(false);
    m.markLate(t0 + 2500, 1000);
    feed(m, batch(2, { summaries: [summary(pg, t0 + 1000, 2)] }), t0 + 2600);
    expect(m.isLate('app-1')).toBe(false);
    expect(m.agents()[0]?.late).toBeUndefined();
    m.markLate(t0 + 4000, 1000);
    expect(m.isLate('app-1')).toBe(true);
    m.markSilent(t0 + 6000, 3000);
    expect(m.agentNamed('app-1')).toMatchObject({ state: 'silent' });
    expect(m.isLate('app-1')).toBe(false);
    // Silent agents are never late; a heartbeat clears lateness.
    expect(m.markLate(t0 + 9000, 1000)).toEqual([]);
    m.heartbeat(m.agents()[0]!.agentId, t0 + 9500);
    m.markLate(t0 + 11_000, 1000);
    expect(m.isLate('app-1')).toBe(true);
    m.heartbeat(m.agents()[0]!.agentId, t0 + 11_100);
    expect(m.isLate('app-1')).toBe(false);
    // Not overdue, but not heard since a fault began arriving at its host: late too.
    const faultAt = (ms: number) => (agent: string) => (agent === 'app-1' ? ms : undefined);
    expect(m.markLate(t0 + 11_300, 1000, 0, faultAt(t0 + 11_200))).toEqual(['app-1']);
    expect(m.markLate(t0 + 11_400, 1000, 0, faultAt(t0 + 11_000))).toEqual(['app-1']);
    expect(m.isLate('app-1')).toBe(false);
  });

  it('does not count the time the collector could hear nobody (deafMs) toward late or silent', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 1)] }), t0);
    // Deaf from t0 + 500 on (reports could not reach the collector): the agent is unheard
    // for 5 s, but only 500 ms of it could it have been heard.
    const deaf = (now: number) => (from: number) => Math.max(0, now - Math.max(from, t0 + 500));
    expect(m.markLate(t0 + 5_000, 1000, 0, undefined, deaf(t0 + 5_000))).toEqual([]);
    expect(m.markSilent(t0 + 5_000, 3000, deaf(t0 + 5_000))).toEqual([]);
    expect(m.agentNamed('app-1')).toMatchObject({ state: 'live' });
    // Deaf from t0 + 500 to t0 + 5_000, then heard again: counted from then on.
    const was = (from: number) => Math.max(0, t0 + 5_000 - Math.max(from, t0 + 500));
    expect(m.markLate(t0 + 5_400, 1000, 0, undefined, was)).toEqual([]);
    expect(m.markLate(t0 + 5_600, 1000, 0, undefined, was)).toEqual(['app-1']);
    expect(m.markSilent(t0 + 7_400, 3000, was)).toEqual([]);
    expect(m.markSilent(t0 + 7_600, 3000, was)).toMatchObject([
      { agent: 'app-1', state: 'silent' },
    ]);
  });

  it('an agent replaying a backlog is late until it has caught up', () => {
    // Back from a cut, an agent uploads what it spooled: "I reach nobody", of a minute ago.
    const m = new PathMatrix();
    const ack = (acceptedSeq: number) => ({ acceptedSeq, droppedResults: 0 });
    m.apply(batch(1, { summaries: [summary(pg, t0, 1)] }), t0 + 200, 2).commit(ack(1));
    expect(m.isLate('app-1')).toBe(true);
    expect(m.agentNamed('app-1')).toMatchObject({ state: 'live', late: true });
    // Neither overdue nor behind a fault, but still behind: late.
    expect(m.markLate(t0 + 300, 1000)).toEqual([]);
    expect(m.isLate('app-1')).toBe(true);
    m.apply(batch(2, { summaries: [summary(pg, t0 + 1000, 2)] }), t0 + 300, 1).commit(ack(2));
    expect(m.isLate('app-1')).toBe(true);
    // A retry of it keeps it behind.
    m.heartbeat(m.agents()[0]!.agentId, t0 + 350);
    expect(m.isLate('app-1')).toBe(true);
    m.apply(batch(3, { summaries: [summary(pg, t0 + 2000, 3)] }), t0 + 400, 0).commit(ack(3));
    expect(m.isLate('app-1')).toBe(false);
    expect(m.markLate(t0 + 500, 1000)).toEqual([]);
    // A rolled-back batch leaves the flag as it was.
    const applied = m.apply(batch(4, { summaries: [summary(pg, t0 + 3000, 4)] }), t0 + 600, 5);
    expect(m.isLate('app-1')).toBe(true);
    applied.rollback();
    expect(m.isLate('app-1')).toBe(false);
  });

  it("keeps each agent's last spool backlog and version, and a rollback puts them back", () => {
    const m = new PathMatrix();
    const ack = (acceptedSeq: number) => ({ acceptedSeq, droppedResults: 0 });
    // New agents: backlog 0 and no version unless they say.
    m.apply(batch(1), t0, 0).commit(ack(1));
    expect(m.agentNamed('app-1')).toMatchObject({ spoolBacklog: 0 });
    expect(m.agentNamed('app-1')).not.toHaveProperty('version');
    m.apply(batch(2), t0 + 100, 4, '1.2.3').commit(ack(2));
    expect(m.agentNamed('app-1')).toMatchObject({ spoolBacklog: 4, version: '1.2.3' });
    expect(m.agents()[0]).toMatchObject({ spoolBacklog: 4, version: '1.2.3' });
    // Rolled back: the backlog and version of the last committed batch.
    const applied = m.apply(batch(3), t0 + 200, 9, '2.0.0-rc.1');
    expect(m.agentNamed('app-1')).toMatchObject({ spoolBacklog: 9, version: '2.0.0-rc.1' });
    applied.rollback();
    expect(m.agentNamed('app-1')).toMatchObject({ spoolBacklog: 4, version: '1.2.3' });
    // Caught up, upgraded.
    m.apply(batch(3), t0 + 300, 0, '1.3.0').commit(ack(3));
    expect(m.agentNamed('app-1')).toMatchObject({ spoolBacklog: 0, version: '1.3.0' });
    // A batch that did not say its version (another client): unknown, not the old one.
    m.apply(batch(4), t0 + 400, 0).commit(ack(4));
    expect(m.agentNamed('app-1')).not.toHaveProperty('version');
    // A first batch from a new agent, rolled back: the agent is gone again.
    const other = m.apply(batch(1, { agent: 'app-2', agentId: 'agent-0002' }), t0, 3, '1.0.0');
    expect(m.agentNamed('app-2')).toMatchObject({ spoolBacklog: 3, version: '1.0.0' });
    other.rollback();
    expect(m.agentNamed('app-2')).toBeUndefined();
  });

  it('a heartbeat (a retried batch) keeps an agent live without touching its paths', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 1)] }), t0);
    m.markSilent(t0 + 20_000, 10_000);
    const before = m.paths();
    expect(m.heartbeat('agent-app-1-0001', t0 + 21_000)).toMatchObject({ toState: 'live' });
    expect(m.heartbeat('agent-app-1-0001', t0 + 22_000)).toBeUndefined();
    expect(m.paths()).toEqual(before);
  });

  it('a reinstalled agent (same name, new id) replaces the old one and starts its seq over', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { results: [result(pg, 'ok', 500, t0)] }));
    feed(
      m,
      batch(1, {
        agentId: 'agent-app-1-0002',
        results: [1, 2, 3].map((s) => result(pg, 'tcp_refused', s, t0 + s)),
      }),
    );
    expect(m.agents().map((a) => a.agentId)).toEqual(['agent-app-1-0002']);
    expect(pathOf(m).state).toBe('failing');
  });
});

describe('PathMatrix apply is two-phase', () => {
  it('rollback undoes every change: paths, new paths, liveness', () => {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    m.markSilent(t0 + 60_000, 10_000);
    const paths = m.paths();
    const agents = m.agents();
    const applied = m.apply(
      batch(2, {
        results: [1, 2, 3].map((s) => result(pg, 'tcp_timeout', 5 + s, t0 + 1000 + s)),
        summaries: [
          summary(pg, t0 + 1000, 8, { count: 3, ok: 0, failures: { tcp_timeout: 3 } }),
          summary(icmp, t0 + 1000, 9, { kind: 'icmp' }),
        ],
      }),
      t0 + 61_000,
    );
    expect(states(applied.transitions)).toEqual(['silent->live', 'ok->failing', 'unknown->ok']);
    expect(m.size).toBe(2);
    applied.rollback();
    expect(m.paths()).toEqual(paths);
    expect(m.agents()).toEqual(agents);
    expect(m.size).toBe(1);
  });

  it('a batch from a new agent that is rolled back leaves no agent behind', () => {
    const m = new PathMatrix();
    m.apply(batch(1, { summaries: [summary(pg, t0, 1)] }), t0).rollback();
    expect(m.agents()).toEqual([]);
    expect(m.paths()).toEqual([]);
  });
});

describe('paths and targets', () => {
  it.each([
    ['db-1/tcp/postgres', 'tcp', { component: 'db-1', service: 'postgres' }],
    ['db-1/icmp', 'icmp', { component: 'db-1' }],
    ['db-1/mtu', 'mtu', { component: 'db-1' }],
    ['api-2/http/web/v1', 'http', { component: 'api-2', service: 'web/v1' }],
    ['db-1/tcp/postgres', 'http', { component: 'db-1/tcp/postgres' }],
    ['plain-target', 'tcp', { component: 'plain-target' }],
  ])('%s (%s) → %o', (target, kind, want) => {
    expect(describePlanTarget(target, kind)).toEqual(want);
  });

  it('filters by agent, component, kind and state', () => {
    const m = new PathMatrix();
    feed(
      m,
      batch(1, {
        summaries: [summary(pg, t0, 1), summary(icmp, t0, 2, { kind: 'icmp' })],
        results: [1, 2, 3].map((s) => result('api-1/http/web', 'http_status', 10 + s, t0 + s)),
      }),
    );
    feed(
      m,
      batch(1, { agent: 'app-2', agentId: 'agent-app-2-0001', summaries: [summary(pg, t0, 1)] }),
    );
    const targets = (f: Parameters<PathMatrix['paths']>[0]) =>
      m
        .paths(f)
        .map((p) => `${p.agent}:${p.target}`)
        .sort();
    expect(targets({ agent: 'app-2' })).toEqual(['app-2:db-1/tcp/postgres']);
    expect(targets({ component: 'db-1', kind: 'tcp' })).toEqual([
      'app-1:db-1/tcp/postgres',
      'app-2:db-1/tcp/postgres',
    ]);
    expect(targets({ state: 'failing' })).toEqual(['app-1:api-1/http/web']);
    expect(targets({ agent: 'nobody' })).toEqual([]);
  });
});

describe('PathMatrix confirmation bursts (issue 14)', () => {
  const confirmed = (
    cls: FailureClass,
    seq: number,
    at: number,
    index: number,
    of = 3,
  ): ProbeResult => ({ ...result(pg, cls, seq, at), confirm: { of, index } });
  /** A path that is ok after one healthy period (seq 1..5). */
  function healthy(): PathMatrix {
    const m = new PathMatrix();
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    return m;
  }
  const burst = (cls: FailureClass, from: number, at: number, of = 3): ProbeResult[] =>
    Array.from({ length: of + 1 }, (_, i) => confirmed(cls, from + i, at + i * 150, i, of));

  it('a trigger whose re-probes all agree makes the path failing at once (of + 1 < debounce), dated from the trigger', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    // The trigger alone (flushed early) changes nothing yet.
    const [trigger, ...reprobes] = burst('tcp_refused', 6, t0 + 1000, 2);
    expect(feed(m, batch(2, { results: [trigger!] }))).toEqual([]);
    expect(pathOf(m).state).toBe('ok');
    expect(feed(m, batch(3, { results: reprobes.slice(0, 1) }))).toEqual([]);
    const ts = feed(m, batch(4, { results: reprobes.slice(1) }));
    expect(ts).toMatchObject([
      {
        fromState: 'ok',
        toState: 'failing',
        toClass: 'tcp_refused',
        atMs: t0 + 1000,
        resultSeq: 8,
      },
    ]);
    expect(pathOf(m)).toMatchObject({ state: 'failing', consecutiveFailures: 3 });
  });

  it('one re-probe that disagrees cancels it: one lost probe raises nothing, and the plain debounce goes on', () => {
    const m = healthy();
    const results = burst('tcp_timeout', 6, t0 + 1000);
    results[2] = confirmed('ok', 8, t0 + 1300, 2);
    expect(feed(m, batch(2, { results }))).toEqual([]);
    expect(pathOf(m)).toMatchObject({ state: 'ok', consecutiveFailures: 1 });
    // The plain debounce counts on: two more failures make three in a row.
    expect(
      states(
        feed(
          m,
          batch(3, {
            results: [10, 11].map((s) => result(pg, 'tcp_timeout', s, t0 + 2000 + s)),
          }),
        ),
      ),
    ).toEqual(['ok->failing']);
  });

  it('a regular probe of another class during the burst cancels it too', () => {
    const m = healthy();
    const [trigger, r1, r2, r3] = burst('tcp_timeout', 6, t0 + 1000);
    expect(
      feed(m, batch(2, { results: [trigger!, r1!, result(pg, 'ok', 8, t0 + 1200), r2!, r3!] })),
    ).toEqual([]);
    expect(pathOf(m).state).toBe('ok');
  });

  it('re-probes of another failure class do not confirm the trigger', () => {
    const m = healthy();
    const results = burst('tcp_timeout', 6, t0 + 1000);
    results[3] = confirmed('tcp_refused', 9, t0 + 1450, 3);
    const ts = feed(m, batch(2, { results }));
    // Four failures in a row still meet the plain debounce (3) at the third, as without bursts.
    expect(ts).toMatchObject([{ toState: 'failing', toClass: 'tcp_timeout', resultSeq: 8 }]);
    const m5 = new PathMatrix({ debounce: 5 });
    feed(m5, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    expect(feed(m5, batch(2, { results }))).toEqual([]);
  });

  it('recovery is confirmed the same way, and a class change while failing too', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    feed(m, batch(2, { results: burst('tcp_timeout', 6, t0 + 1000) }));
    expect(pathOf(m).state).toBe('failing');
    expect(feed(m, batch(3, { results: burst('tcp_refused', 10, t0 + 2000) }))).toMatchObject([
      {
        fromState: 'failing',
        toState: 'failing',
        fromClass: 'tcp_timeout',
        toClass: 'tcp_refused',
      },
    ]);
    expect(feed(m, batch(4, { results: burst('ok', 14, t0 + 3000) }))).toMatchObject([
      { fromState: 'failing', toState: 'ok', atMs: t0 + 3000 },
    ]);
  });

  it('without confirm fields nothing changes: four failures under debounce 5 raise nothing', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    const plain = [6, 7, 8, 9].map((s) => result(pg, 'tcp_refused', s, t0 + 1000 + s));
    expect(feed(m, batch(2, { results: plain }))).toEqual([]);
  });

  it('re-probes without their trigger (lost, or before it) confirm nothing', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    const [, ...reprobes] = burst('tcp_refused', 6, t0 + 1000);
    expect(feed(m, batch(2, { results: reprobes }))).toEqual([]);
  });

  it('says what settling needs: the change, the burst opened and closed', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    const [trigger, ...reprobes] = burst('tcp_refused', 6, t0 + 1000);
    const a1 = m.apply(batch(2, { results: [trigger!] }), t0 + 1100);
    a1.commit({ acceptedSeq: 2, droppedResults: 0 });
    expect(a1.signals.map((s) => s.type)).toEqual(['open', 'change']);
    expect(a1.signals[0]).toMatchObject({ agent: 'app-1', component: 'db-1' });
    const a2 = m.apply(batch(3, { results: reprobes }), t0 + 1600);
    a2.commit({ acceptedSeq: 3, droppedResults: 0 });
    expect(a2.signals.map((s) => s.type)).toEqual(['close', 'change']);
    const quiet = m.apply(
      batch(4, {
        summaries: [
          summary(pg, t0 + 2000, 12, {
            count: 3,
            ok: 0,
            failures: { tcp_refused: 3 },
            lastClass: 'tcp_refused',
          }),
        ],
      }),
      t0 + 2100,
    );
    quiet.commit({ acceptedSeq: 4, droppedResults: 0 });
    expect(quiet.signals).toEqual([]);
    // The fall was no recovery; the path coming back is one (a fault healing there).
    expect(a2.signals.some((s) => s.recovered === true)).toBe(false);
    const back = m.apply(batch(5, { results: burst('ok', 13, t0 + 3000) }), t0 + 3600);
    back.commit({ acceptedSeq: 5, droppedResults: 0 });
    expect(back.signals.filter((s) => s.recovered === true)).toMatchObject([
      { type: 'change', agent: 'app-1', component: 'db-1', recovered: true },
    ]);
  });

  it('rollback undoes an opened or completed burst', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    const [trigger, ...reprobes] = burst('tcp_refused', 6, t0 + 1000);
    m.apply(batch(2, { results: [trigger!] }), t0 + 1100).rollback();
    // The trigger was undone: its re-probes alone confirm nothing.
    expect(feed(m, batch(2, { results: reprobes }))).toEqual([]);
    const m2 = new PathMatrix({ debounce: 5 });
    feed(m2, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    feed(m2, batch(2, { results: [trigger!, reprobes[0]!] }));
    const applied = m2.apply(batch(3, { results: reprobes.slice(1) }), t0 + 1600);
    expect(states(applied.transitions)).toEqual(['ok->failing']);
    applied.rollback();
    expect(pathOf(m2).state).toBe('ok');
    // The open burst is back as it was: the same re-probes complete it again.
    expect(states(feed(m2, batch(3, { results: reprobes.slice(1) })))).toEqual(['ok->failing']);
  });

  it('an open burst survives a restart: checkpointed, and completed by the batches after it', () => {
    const m = new PathMatrix({ debounce: 5 });
    feed(m, batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] }), t0);
    const [trigger, ...reprobes] = burst('tcp_refused', 6, t0 + 1000);
    feed(m, batch(2, { results: [trigger!, reprobes[0]!] }), t0 + 1200);
    const ckpt = m.checkpoint();
    expect(ckpt.paths[0]).toMatchObject({ burst: { of: 3, cls: 'tcp_refused', seen: 0b10 } });
    const later: StoredBatch = {
      agentId: 'agent-app-1-0001',
      agent: 'app-1',
      seq: 3,
      receivedAtMs: t0 + 1600,
      results: reprobes.slice(1),
      summaries: [],
    };
    const source = (withCheckpoint: MatrixCheckpoint | undefined): RestoreSource => ({
      agents: () => [
        {
          agentId: 'agent-app-1-0001',
          agent: 'app-1',
          labels: {},
          firstSeenMs: t0,
          lastSeenMs: t0 + 1600,
          acceptedSeq: 3,
          droppedBatches: 0,
          droppedResults: 0,
        },
      ],
      loadCheckpoint: () => withCheckpoint,
      lastPathTransitions: () => [],
      lastAgentTransition: () => undefined,
      firstSeqReceivedSince: () => 3,
      batchReceivedAt: (_id, seq) => (seq === 2 ? t0 + 1200 : seq === 3 ? t0 + 1600 : undefined),
      replay: (_id, from) => (from <= 3 ? [later] : []),
    });
    const restored = new PathMatrix({ debounce: 5 });
    restored.restore(source(ckpt));
    expect(restored.path('app-1', pg)).toMatchObject({ state: 'failing', sinceMs: t0 + 1000 });
    // A checkpoint written before bursts existed (no `burst`) falls back to the debounce.
    const old = {
      ...ckpt,
      paths: ckpt.paths.map(({ burst: _b, ...rest }) => rest),
    };
    const fallback = new PathMatrix({ debounce: 5 });
    fallback.restore(source(old));
    expect(fallback.path('app-1', pg)).toMatchObject({ state: 'ok' });
  });
});

describe('PathMatrix.forEachPath', () => {
  it("every path's identity and debounced state, as paths() says them", () => {
    const m = new PathMatrix();
    feed(
      m,
      batch(1, { summaries: [summary(pg, t0, 5, { ok: 5 }), summary(icmp, t0, 5, { ok: 5 })] }),
    );
    const fail = (seq: number, at: number) => result(pg, 'tcp_timeout', seq, at);
    feed(m, batch(2, { results: [fail(6, t0 + 1000), fail(7, t0 + 1500), fail(8, t0 + 2000)] }));
    const pick = ({ agent, target, component, service, kind, state, lastClass }: PathState) => ({
      agent,
      target,
      component,
      service,
      kind,
      state,
      lastClass,
    });
    const cells: ReturnType<typeof pick>[] = [];
    m.forEachPath((c) => cells.push(pick(c as PathState)));
    expect(cells).toEqual(m.paths().map(pick));
    expect(cells.find((c) => c.target === pg)).toMatchObject({
      state: 'failing',
      lastClass: 'tcp_timeout',
    });
  });
});
