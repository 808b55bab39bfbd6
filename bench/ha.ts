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
 *   node dist/bench/ha.js [--runs 4] [--timeout-s 30] [--hold-s 10] [--transport http|nats|both]
 *       [--cut ab|a|b]
 *
 * `--cut`: which zone each run cuts — `ab` (default) zone b, then a, in turn; `a` or `b`
 * always that one (its collector always inside the cut, the other outside).
 *
 * `--transport nats`: the same lab, faults and answers with the agents publishing to a
 * three-node NATS JetStream cluster (a node beside each collector, one in the data zone;
 * replicas 3) and each collector consuming with its own durable consumer (lab/ha.ts,
 * upHaLab). `both`: HTTP, then JetStream, each in a lab of its own, and a last table side
 * by side: the medians of fault → right answer and their ratio.
 *
 * After both answers the cut holds `--hold-s` more, watched: the collector inside the cut
 * must not name the real cause then either.
 *
 * Needs root (namespaces). Prints a Markdown table of the runs and the medians.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cutUplink } from '../lab/faults.js';
import {
  haNatsHosts,
  upHaLab,
  waitBothHealthy,
  watchHaAnswers,
  type CollectorAnswers,
} from '../lab/ha.js';
import type { NatsCluster } from '../lab/nats.js';
import { canRunLab } from '../lab/spec.js';
import { detectionLabTiming, runBench } from './lib.js';

const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

interface Run {
  readonly cut: 'a' | 'b';
  readonly answers: Record<'a' | 'b', CollectorAnswers>;
}

/**
 * The median (of an even count, the mean of the middle two); a run without the answer counts
 * as later than every other (undefined: never).
 */
function median(xs: readonly (number | undefined)[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = xs.map((x) => x ?? Infinity).sort((x, y) => x - y);
  const m = (s[Math.floor((s.length - 1) / 2)]! + s[Math.floor(s.length / 2)]!) / 2;
  return m === Infinity ? undefined : Math.round(m);
}

/** The slowest run (undefined: one never answered). */
function slowest(xs: readonly (number | undefined)[]): number | undefined {
  return xs.some((x) => x === undefined) ? undefined : Math.max(...(xs as number[]));
}

const ms = (x: number | undefined): string => (x === undefined ? 'never' : `${x} ms`);

type Transport = 'http' | 'nats';

/** The medians of one transport's runs: the collector outside the cut, and the faster of two. */
interface Medians {
  readonly outside: number | undefined;
  readonly two: number | undefined;
  /** The slowest run of the collector outside the cut. */
  readonly worst: number | undefined;
  /** Runs in which the collector outside the cut never had the right answer. */
  readonly missed: number;
  /** Over all runs: how long the collector outside the cut said its own side was cut off. */
  readonly wrongCutOffMs: number;
  /** Runs in which it said so at all. */
  readonly wrongCutOffRuns: number;
}

function medians(runs: readonly Run[]): Medians {
  const outside: (number | undefined)[] = [];
  const two: (number | undefined)[] = [];
  let missed = 0;
  let wrongCutOffMs = 0;
  let wrongCutOffRuns = 0;
  for (const r of runs) {
    const wrong = r.answers[r.cut === 'a' ? 'b' : 'a'].wrongCutOffMs ?? 0;
    wrongCutOffMs += wrong;
    if (wrong > 0) wrongCutOffRuns++;
    const out = r.answers[r.cut === 'a' ? 'b' : 'a'].realCauseMs;
    if (out === undefined) missed++;
    outside.push(out);
    const best = [r.answers.a.realCauseMs, r.answers.b.realCauseMs].filter(
      (x): x is number => x !== undefined,
    );
    two.push(best.length > 0 ? Math.min(...best) : undefined);
  }
  return {
    outside: median(outside),
    two: median(two),
    worst: slowest(outside),
    missed,
    wrongCutOffMs,
    wrongCutOffRuns,
  };
}

const transportName: Record<Transport, string> = { http: 'HTTP', nats: 'NATS JetStream' };

/** The transports side by side: medians and the ratio JetStream / HTTP. */
function comparison(by: ReadonlyMap<Transport, readonly Run[]>): string {
  const m = new Map([...by].map(([t, runs]) => [t, medians(runs)]));
  const http = m.get('http')!;
  const nats = m.get('nats')!;
  const ratio = (a: number | undefined, b: number | undefined): string =>
    a === undefined || b === undefined || a === 0 ? 'n/a' : `${(b / a).toFixed(2)}×`;
  return [
    '| fault → right answer (median) | HTTP | NATS JetStream | JetStream / HTTP |',
    '| --- | --- | --- | --- |',
    `| the collector outside the cut | ${ms(http.outside)} | ${ms(nats.outside)} | ${ratio(http.outside, nats.outside)} |`,
    `| two collectors (the faster decides) | ${ms(http.two)} | ${ms(nats.two)} | ${ratio(http.two, nats.two)} |`,
    `| the slowest run (outside the cut) | ${ms(http.worst)} | ${ms(nats.worst)} | ${ratio(http.worst, nats.worst)} |`,
    `| runs without the right answer | ${http.missed} of ${by.get('http')!.length} | ${nats.missed} of ${by.get('nats')!.length} | |`,
    `| the collector outside the cut saying its own side is cut off (a wrong page) | ${wrongCutOff(http)} | ${wrongCutOff(nats)} | |`,
    '',
  ].join('\n');
}

const wrongCutOff = (m: Medians): string =>
  m.wrongCutOffRuns === 0 ? 'never' : `${m.wrongCutOffMs} ms in ${m.wrongCutOffRuns} runs`;

function table(runs: readonly Run[], holdMs: number): string {
  const never = `never (cut watched until ${holdMs / 1000} s after both answers)`;
  const lines = [
    '| run | zone cut | collector a | collector b | one collector, outside the cut | one collector, inside the cut | two collectors |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
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
    lines.push(
      `| ${i + 1} | ${r.cut} | ${say('a')} | ${say('b')} | ${ms(r.answers[out].realCauseMs)} | ${r.answers[r.cut].realCauseMs === undefined ? never : ms(r.answers[r.cut].realCauseMs)} | ${ms(fastest)} |`,
    );
  });
  const m = medians(runs);
  lines.push(
    `| median | | | | ${ms(m.outside)} | never | ${ms(m.two)} |`,
    '',
    `The collector outside the cut said its own side was cut off (ready to page): ${wrongCutOff(m)}.`,
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
      transport: { type: 'string', default: 'http' },
      cut: { type: 'string', default: 'ab' },
    },
  });
  const cuts = values.cut;
  if (cuts !== 'ab' && cuts !== 'a' && cuts !== 'b')
    throw new Error(`--cut: expected ab, a or b (actual: ${cuts})`);
  const transports: Transport[] =
    values.transport === 'both'
      ? ['http', 'nats']
      : values.transport === 'http' || values.transport === 'nats'
        ? [values.transport]
        : [];
  if (transports.length === 0)
    throw new Error(`--transport: expected http, nats or both (actual: ${values.transport})`);
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
  const by = new Map<Transport, Run[]>();
  for (const transport of transports) {
    const runs = await measure(transport, runsWanted, timeoutMs, holdMs, cuts);
    by.set(transport, runs);
    process.stdout.write(`\n### ${transportName[transport]}\n\n${table(runs, holdMs)}`);
  }
  if (by.size === 2) process.stdout.write(`\n### HTTP vs NATS JetStream\n\n${comparison(by)}`);
  return 0;
}

/** One lab over `transport`, `runsWanted` cuts (as `--cut` says), the answers of each. */
async function measure(
  transport: Transport,
  runsWanted: number,
  timeoutMs: number,
  holdMs: number,
  cuts: 'ab' | 'a' | 'b',
): Promise<Run[]> {
  const { lab, nats } = await upHaLab(transport, { cliPath, ...detectionLabTiming });
  const runs: Run[] = [];
  try {
    await waitBothHealthy(lab, 90_000);
    for (let i = 0; i < runsWanted; i++) {
      const cut = cuts === 'ab' ? (i % 2 === 0 ? 'b' : 'a') : cuts;
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
      process.stderr.write(
        `${transport} run ${i + 1}: zone ${cut} cut: ${JSON.stringify(answers)}\n`,
      );
      if (nats !== undefined)
        for (const line of natsLeaderEvents(nats, startMs)) process.stderr.write(`  ${line}\n`);
      await waitBothHealthy(lab, 90_000);
    }
  } finally {
    await lab.down();
  }
  return runs;
}

/**
 * The NATS nodes' leadership news since `sinceMs` (their `[INF]` lines naming a leader),
 * each with its time after the cut: where the JetStream part of the blindness goes.
 */
function natsLeaderEvents(nats: NatsCluster, sinceMs: number): string[] {
  const out: { atMs: number; line: string }[] = [];
  for (const host of haNatsHosts) {
    for (const line of nats.node(host).log().split('\n')) {
      // nats-server dates its lines in local time: `[pid] 2026/12/07 07:50:01.123456 [INF] …`.
      const m =
        /^\[\d+\] (\d+)\/(\d+)\/(\d+) (\d+):(\d+):(\d+)\.(\d{3})\d* \[\w+\] (.*leader.*)$/i.exec(
          line,
        );
      if (m === null) continue;
      const [y = 0, mo = 1, d, h, mi, sec, milli] = m.slice(1, 8).map(Number);
      const atMs = new Date(y, mo - 1, d, h, mi, sec, milli).getTime();
      if (atMs >= sinceMs) out.push({ atMs, line: `+${atMs - sinceMs} ms ${host}: ${m[8]}` });
    }
  }
  return out.sort((x, y) => x.atMs - y.atMs).map((x) => x.line);
}

runBench('bench/ha', main);
