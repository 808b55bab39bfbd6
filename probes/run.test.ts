import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';
import type { ProbeDefinition } from './types.js';

function fake(run: ProbeDefinition<object>['run']): ProbeDefinition<object> {
  return {
    kind: 'fake',
    description: 'fake',
    target: { form: 'host' },
    options: z.object({}).strict(),
    mainTiming: 'totalMs',
    run,
  };
}
const target = parseTarget('db-1', { form: 'host' });

describe('runProbe', () => {
  it('builds the result record: identity, sequence, wall-clock start, total time', async () => {
    const before = Date.now();
    const r = await runProbe(
      fake(async () => ({ class: 'ok', timings: { connectMs: 1.5 }, detail: { ip: '1.2.3.4' } })),
      target,
      {},
      { agent: 'a1', seq: 7, timeoutMs: 1000 },
    );
    expect(r).toMatchObject({
      agent: 'a1',
      target: 'db-1',
      kind: 'fake',
      class: 'ok',
      seq: 7,
      detail: { ip: '1.2.3.4' },
    });
    expect(r.startedAtMs).toBeGreaterThanOrEqual(before);
    expect(r.timings.connectMs).toBe(1.5);
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(0);
  });

  it('a probe that throws becomes internal_error with the message kept', async () => {
    const r = await runProbe(
      fake(async () => {
        throw new TypeError('bug');
      }),
      target,
      {},
      { timeoutMs: 1000 },
    );
    expect(r.class).toBe('internal_error');
    expect(r.error).toEqual({ code: 'FL_ERR_INTERNAL', message: 'bug' });
  });

  it('a probe that never returns is cut off shortly after its timeout', async () => {
    const t0 = Date.now();
    const r = await runProbe(
      fake(() => new Promise(() => undefined)),
      target,
      {},
      { timeoutMs: 100 },
    );
    expect(r.class).toBe('internal_error');
    expect(r.error?.message).toMatch(/did not return within its timeout of 100 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("passes the caller's abort signal through to the probe", async () => {
    const ac = new AbortController();
    const seen: AbortSignal[] = [];
    const p = runProbe(
      fake(async (_t, _o, ctx) => {
        seen.push(ctx.signal);
        await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
        return { class: 'tcp_timeout', timings: {} };
      }),
      target,
      {},
      { timeoutMs: 5000, signal: ac.signal },
    );
    ac.abort();
    expect((await p).class).toBe('tcp_timeout');
    expect(seen[0]?.aborted).toBe(true);
  });
});

describe('runProbe under concurrency', () => {
  it('runs 50 probes at once without listener warnings', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    const probe = fake(async (_t, _o, ctx) => {
      const onAbort = (): void => undefined;
      ctx.signal.addEventListener('abort', onAbort);
      await new Promise((r) => setTimeout(r, 10));
      ctx.signal.removeEventListener('abort', onAbort);
      return { class: 'ok', timings: {} };
    });
    const results = await Promise.all(
      Array.from({ length: 50 }, () => runProbe(probe, target, {}, { timeoutMs: 1000 })),
    );
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    expect(results.every((r) => r.class === 'ok')).toBe(true);
    expect(warnings).toEqual([]);
  });
});
