/**
 * Two collectors vs one (issue 17): time from a fault to the right answer. The HA lab
 * (lab/ha.ts): collector a in zone a, collector b in zone b, the database in a third zone,
 * every agent reporting to both. Each run cuts one zone's uplink (zone b, then zone a, in
 * turn) and polls both collectors' diagnoses every 100 ms: the collector outside the cut
 * names the real cause (the zone partitioned off), the one inside its own isolation. With one
 * collector, the right answer comes only if it stands outside the cut — a collector in the
 * cut zone says "I am cut off" and nothing about the cause until the heal; with two in two
 * failure domains, one of them is always outside, and the faster decides the page.
 *
 *   node dist/bench/ha.js [--runs 4] [--timeout-s 30] [--hold-s 10]
 *
 * After both answers the cut holds `--hold-s` more, watched: the collector inside the cut
 * must not name the real cause then either.
 *
 * Needs root (namespaces). Prints a Markdown table of the runs and the medians.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cutUplink } from '../lab/faults.js';
import { haLab, waitBothHealthy, watchHaAnswers, type CollectorAnswers } from '../lab/ha.js';
import { Lab } from '../lab/lab.js';
import { canRunLab } from '../lab/spec.js';
import { detectionLabTiming, runBench } from './lib.js';

const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

interface Run {
  readonly cut: 'a' | 'b';
  readonly answers: Record<'a' | 'b', CollectorAnswers>;
}

function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor((s.length - 1) / 2)];
}

const ms = (x: number | undefined): string => (x === undefined ? 'never' : `${x} ms`);

function table(runs: readonly Run[], holdMs: number): string {
  const never = `never (cut watched until ${holdMs / 1000} s after both answers)`;
  const lines = [
    '| run | zone cut | collector a | collector b | one collector, outside the cut | one collector, inside the cut | two collectors |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  const outside: number[] = [];
  const two: number[] = [];
  runs.forEach((r, i) => {
    const out = r.cut === 'a' ? 'b' : 'a';
    const say = (c: 'a' | 'b'): string => {
      const x = r.answers[c];
      return c === r.cut
        ? `cut off at ${ms(x.cutOffMs)}; real cause ${x.realCauseMs === undefined ? 'never' : ms(x.realCauseMs)}`
        : `real cause at ${ms(x.realCauseMs)}`;
    };
    const best = [r.answers.a.realCauseMs, r.answers.b.realCauseMs].filter(
      (x): x is number => x !== undefined,
    );
    const fastest = best.length === 0 ? undefined : Math.min(...best);
    if (r.answers[out].realCauseMs !== undefined) outside.push(r.answers[out].realCauseMs);
    if (fastest !== undefined) two.push(fastest);
    lines.push(
      `| ${i + 1} | ${r.cut} | ${say('a')} | ${say('b')} | ${ms(r.answers[out].realCauseMs)} | ${r.answers[r.cut].realCauseMs === undefined ? never : ms(r.answers[r.cut].realCauseMs)} | ${ms(fastest)} |`,
    );
  });
  lines.push(
    `| median | | | | ${ms(median(outside))} | never | ${ms(median(two))} |`,
    '',
    'Time to the right answer (the real cause on top of a diagnosis). One collector is right only',
    'when it stands outside the cut; two collectors in two failure domains always have one outside.',
  );
  return lines.join('\n') + '\n';
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '4' },
      'timeout-s': { type: 'string', default: '30' },
      'hold-s': { type: 'string', default: '10' },
    },
  });
  const runsWanted = Number(values.runs);
  const timeoutMs = Number(values['timeout-s']) * 1000;
  const holdMs = Number(values['hold-s']) * 1000;
  if (!(holdMs >= 0))
    throw new Error(`--hold-s: expected seconds ≥ 0 (actual: ${values['hold-s']})`);
  if (!Number.isInteger(runsWanted) || runsWanted < 1)
    throw new Error(`--runs: expected a whole number ≥ 1 (actual: ${values.runs})`);
  if (!(timeoutMs > 0))
    throw new Error(`--timeout-s: expected seconds > 0 (actual: ${values['timeout-s']})`);
  if (!canRunLab) throw new Error('bench/ha needs root on Linux (network namespaces)');
  const lab = await Lab.up(haLab, { cliPath, ...detectionLabTiming });
  const runs: Run[] = [];
  try {
    await waitBothHealthy(lab, 90_000);
    for (let i = 0; i < runsWanted; i++) {
      const cut = i % 2 === 0 ? 'b' : 'a';
      const fault = cutUplink(lab, cut === 'b' ? 'sw-b' : 'sw-a', 'sw-db');
      const startMs = Date.now();
      await fault.inject();
      let answers: Run['answers'];
      try {
        answers = await watchHaAnswers(lab, startMs, timeoutMs + holdMs, cut, holdMs);
      } finally {
        await fault.heal();
      }
      runs.push({ cut, answers });
      process.stderr.write(`run ${i + 1}: zone ${cut} cut: ${JSON.stringify(answers)}\n`);
      await waitBothHealthy(lab, 90_000);
    }
  } finally {
    await lab.down();
  }
  process.stdout.write(table(runs, holdMs));
  return 0;
}

runBench('bench/ha', main);
