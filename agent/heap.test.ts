import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { agentHeapGrowingPercent, settleAgentHeap, tuneAgentHeap } from './heap.js';
import { ensureBuilt, repoRoot } from '../test/helpers/cli.js';

const heapModule = `${repoRoot}dist/agent/heap.js`;

/** A child node that churns through short-lived garbage over a fixed live set; its peak heap. */
function peakHeapMb(flag: string | undefined): number {
  const script = `
    import { setFlagsFromString } from 'node:v8';
    const flag = ${JSON.stringify(flag ?? '')};
    if (flag !== '') setFlagsFromString(flag);
    const live = Array.from({ length: 20 }, () => Array.from({ length: 100000 }, (_, i) => ({ i })));
    const keep = [];
    let max = 0;
    for (let round = 0; round < 400; round++) {
      keep.push(Array.from({ length: 20000 }, (_, i) => ({ i, s: 'x' + i })));
      if (keep.length > 8) keep.shift();
      if (round % 10 === 0) await new Promise((r) => setImmediate(r));
      max = Math.max(max, process.memoryUsage().heapTotal);
    }
    process.stdout.write(String(Math.round(max / 1048576) + live.length * 0));
  `;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script]).toString());
}

describe('the agent heap settings', () => {
  it('leave a heap growth chosen on the command line or in NODE_OPTIONS alone', () => {
    expect(tuneAgentHeap(['--heap-growing-percent=50'], '')).toBeUndefined();
    expect(tuneAgentHeap([], '--max-semi-space-size=2 --heap_growing_percent=50')).toBeUndefined();
  });

  it('set the heap growth otherwise', () => {
    expect(tuneAgentHeap([], '--max-semi-space-size=2')).toBe(
      `--heap-growing-percent=${agentHeapGrowingPercent}`,
    );
  });

  it('take effect when set at run time: the same churn peaks at well under half the heap', () => {
    const untuned = peakHeapMb(undefined);
    const tuned = peakHeapMb(`--heap-growing-percent=${agentHeapGrowingPercent}`);
    // Measured 432–454 MB against 166–171 MB; the live set is ~90 MB.
    expect(tuned).toBeLessThan(untuned * 0.6);
  }, 60_000);
});

describe("the agent's full collections after start", () => {
  it('leave a heap growth chosen by hand alone', () => {
    expect(settleAgentHeap([10], ['--heap-growing-percent=50'], '')).toBe(0);
  });

  it("bring the heap down to what is live once the start's garbage is dropped", () => {
    ensureBuilt();
    // The start's garbage (a parsed config, a first round) held long enough to reach the
    // old generation, then dropped; nothing allocates after it, so V8 alone would keep it.
    const script = `
      import { settleAgentHeap } from ${JSON.stringify(heapModule)};
      let start = [];
      for (let i = 0; i < 60; i++) {
        start.push(Array.from({ length: 20000 }, (_, j) => ({ j, s: 'x' + j })));
        await new Promise((r) => setImmediate(r));
      }
      const mb = () => Math.round(process.memoryUsage().heapUsed / 1048576);
      const planned = process.argv.at(-1) === 'settle' ? settleAgentHeap([50]) : 0;
      start = undefined;
      const before = mb();
      await new Promise((r) => setTimeout(r, 300));
      process.stdout.write(JSON.stringify({ planned, before, after: mb() }));
    `;
    const run = (mode: string): { planned: number; before: number; after: number } =>
      JSON.parse(
        execFileSync(process.execPath, ['--input-type=module', '-e', script, mode]).toString(),
      ) as { planned: number; before: number; after: number };
    const settled = run('settle');
    const left = run('none');
    expect(settled.planned).toBe(1);
    expect(settled.before).toBeGreaterThan(40);
    expect(settled.after).toBeLessThan(settled.before / 4);
    expect(left.after).toBeGreaterThan(left.before / 2);
  }, 60_000);
});
