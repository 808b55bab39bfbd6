import { describe, expect, it } from 'vitest';
import { batch, result, summary, t0 } from '../test/helpers/report-batches.js';
import { ObservedPathMatrix } from './observed-matrix.js';

const pg = 'db-1/tcp/postgres';

describe('ObservedPathMatrix', () => {
  it('tells the diagnosis when a recent fall stops showing, though no path changed state', () => {
    const m = new ObservedPathMatrix();
    const reasons: string[] = [];
    m.onChange = (r) => reasons.push(r);
    const feed = (seq: number, b: Parameters<typeof batch>[1]): string[] => {
      reasons.length = 0;
      m.apply(batch(seq, b), t0 + seq * 1000).commit({ acceptedSeq: seq, droppedResults: 0 });
      return [...reasons];
    };
    feed(1, { summaries: [summary(pg, t0, 5, { ok: 5 })] });
    const r = (cls: 'ok' | 'tcp_timeout', seq: number, at: number) => result(pg, cls, seq, at);
    expect(
      feed(2, {
        results: [
          r('tcp_timeout', 6, t0 + 1000),
          r('tcp_timeout', 7, t0 + 2000),
          r('tcp_timeout', 8, t0 + 3000),
        ],
      }),
    ).toContain('batch');
    expect(
      feed(3, { results: [r('ok', 9, t0 + 4000), r('ok', 10, t0 + 5000), r('ok', 11, t0 + 6000)] }),
    ).toContain('batch');
    expect(m.path('app-1', pg)?.fellAtMs).toBe(t0 + 3000);
    // Quiet periods while the fall shows change nothing the diagnosis reads.
    let seq = 11;
    let n = 3;
    for (let at = t0 + 6000; at < t0 + 12_000; at += 1000) {
      seq += 1;
      n += 1;
      expect(feed(n, { summaries: [summary(pg, at, seq, { ok: 1 })] })).toEqual([]);
    }
    // The one that ends its showing does.
    expect(feed(n + 1, { summaries: [summary(pg, t0 + 12_000, seq + 1, { ok: 1 })] })).toEqual([
      'batch',
    ]);
    expect(m.path('app-1', pg)?.fellAtMs).toBeUndefined();
    expect(m.takeDirtyAgents().agents).toContain('app-1');
  });
});
