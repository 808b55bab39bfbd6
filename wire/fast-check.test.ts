import { describe, expect, it } from 'vitest';
import { batch, result, summary, t0 } from '../test/helpers/report-batches.js';
import { rng } from '../lib/prng.js';
import { fastCheck } from './fast-check.js';
import { ReportBatchSchema } from './report.js';

function validBatch(seq: number): unknown {
  const b = batch(seq, {
    labels: { zone: 'a', rack: 'r1' },
    results: [
      // A burst re-probe (issue 14): its `confirm` is mutated like the rest.
      { ...result('db-1/tcp/postgres', 'tcp_timeout', 7, t0), confirm: { of: 3, index: 1 } },
      { ...result('db-1/icmp', 'ok', 8, t0, 'icmp'), detail: { engine: 'fping', rttsMs: [1.2] } },
    ],
    summaries: [
      summary('db-1/tcp/postgres', t0, 9, { count: 10, ok: 8, failures: { tcp_timeout: 2 } }),
      summary('db-1/icmp', t0, 10, { count: 10, ok: 10, loss: 0.1 }),
    ],
    dropped: { batches: 1, results: 3 },
  });
  return JSON.parse(JSON.stringify({ ...b, planVersion: 'v1' })) as unknown;
}

/** Values a hostile or broken agent might put anywhere. */
const junk: readonly unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  2 ** 53,
  1e308,
  '',
  'x',
  'nope',
  'tcp_timeout',
  'a'.repeat(65),
  'a'.repeat(513),
  // Astral characters: 2 UTF-16 code units each, 1 code point (what zod counts).
  '😀'.repeat(513),
  '😀'.repeat(300),
  '😀'.repeat(40),
  'agent_0123456789',
  'bad agent id!',
  [],
  [1],
  {},
  { totalMs: 1 },
];

type Container = Record<string, unknown> | unknown[];

function containers(v: unknown, out: Container[] = []): Container[] {
  if (typeof v !== 'object' || v === null) return out;
  out.push(v as Container);
  for (const child of Object.values(v)) containers(child, out);
  return out;
}

/** One to three random edits: a key removed, added, or its value swapped for junk. */
function mutate(v: unknown, random: () => number): void {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const edits = 1 + Math.floor(random() * 3);
  for (let e = 0; e < edits; e++) {
    const c = pick(containers(v));
    const keys = Object.keys(c);
    const op = random();
    if (Array.isArray(c)) {
      if (op < 0.3 && c.length > 0) c.splice(Math.floor(random() * c.length), 1);
      else if (op < 0.6) c.push(structuredClone(pick(junk)));
      else if (c.length > 0) c[Math.floor(random() * c.length)] = structuredClone(pick(junk));
    } else if (op < 0.25 && keys.length > 0) {
      delete c[pick(keys)];
    } else if (op < 0.4) {
      c[pick(['extra', 'tcp_timeout', 'ok', 'nope', 'zone', 'p50', 'seq'])] = structuredClone(
        pick(junk),
      );
    } else if (keys.length > 0) {
      c[pick(keys)] = structuredClone(pick(junk));
    }
  }
}

describe('fastCheck(ReportBatchSchema)', () => {
  const check = fastCheck(ReportBatchSchema);

  it('takes a valid batch, with and without its optional parts', () => {
    expect(check(validBatch(1))).toBe(true);
    expect(check(JSON.parse(JSON.stringify(batch(2))))).toBe(true);
    expect(check({ ...(validBatch(3) as object), extra: 1 })).toBe(false);
  });

  it('gives zod’s verdict on 6,000 mutated batches (both ways, each verdict well represented)', () => {
    const random = rng(20261124);
    const verdicts = { valid: 0, invalid: 0 };
    const disagreements: string[] = [];
    for (let i = 0; i < 6000; i++) {
      const v = validBatch(i + 1);
      mutate(v, random);
      const zod = ReportBatchSchema.safeParse(v).success;
      if (check(v) !== zod) disagreements.push(`zod ${String(zod)}: ${JSON.stringify(v)}`);
      verdicts[zod ? 'valid' : 'invalid']++;
    }
    expect(disagreements.slice(0, 3)).toEqual([]);
    expect(verdicts.valid).toBeGreaterThan(300);
    expect(verdicts.invalid).toBeGreaterThan(3000);
  });

  it('counts string lengths in code points, as zod does', () => {
    const v = validBatch(1) as { summaries: { target: string }[] };
    v.summaries[0]!.target = '😀'.repeat(512); // 512 code points (1,024 UTF-16 units): the limit
    expect(ReportBatchSchema.safeParse(v).success).toBe(true);
    expect(check(v)).toBe(true);
    v.summaries[0]!.target = '😀'.repeat(513);
    expect(ReportBatchSchema.safeParse(v).success).toBe(false);
    expect(check(v)).toBe(false);
  });
});
