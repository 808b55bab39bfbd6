import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { FpingEngine, parseFpingLine } from './fping.js';
import { fitCount } from './process.js';

describe('parseFpingLine: fping 5.1 count-mode lines', () => {
  it.each([
    [
      '127.0.0.1 : [0], 64 bytes, 0.045 ms (0.045 avg, 0% loss)',
      { kind: 'reply', host: '127.0.0.1', seq: 0, rttMs: 0.045 },
    ],
    [
      '10.0.0.1     : [12], 84 bytes, 123 ms (120 avg, 0% loss)',
      { kind: 'reply', host: '10.0.0.1', seq: 12, rttMs: 123 },
    ],
    [
      '::1       : [2], 64 bytes, 1.25 ms (0.5 avg, 0% loss)',
      { kind: 'reply', host: '::1', seq: 2, rttMs: 1.25 },
    ],
    [
      '198.18.0.2 : [1], timed out (NaN avg, 100% loss)',
      { kind: 'lost', host: '198.18.0.2', seq: 1 },
    ],
  ] as const)('%s', (line, expected) => {
    expect(parseFpingLine(line)).toEqual(expected);
  });

  it.each([
    [
      'ICMP Host Unreachable from 198.18.0.1 for ICMP Echo sent to 198.18.0.9',
      4,
      3,
      1,
      'ICMP_UNREACH_HOST',
      '198.18.0.1',
      '198.18.0.9',
    ],
    [
      'ICMP Network Unreachable from 10.0.0.1 for ICMP Echo sent to 10.9.9.9',
      4,
      3,
      0,
      'ICMP_UNREACH_NET',
      '10.0.0.1',
      '10.9.9.9',
    ],
    [
      'ICMP Port Unreachable from 10.0.0.9 for ICMP Echo sent to 10.0.0.9',
      4,
      3,
      3,
      'ICMP_UNREACH_PORT',
      '10.0.0.9',
      '10.0.0.9',
    ],
    [
      'ICMP Unreachable (Communication Administratively Prohibited) from 10.0.0.1 for ICMP Echo sent to 10.0.0.9',
      4,
      3,
      13,
      'ICMP_UNREACH_FILTER_PROHIB',
      '10.0.0.1',
      '10.0.0.9',
    ],
    [
      'ICMP Time Exceeded from 10.0.0.1 for ICMP Echo sent to 10.0.0.9',
      4,
      11,
      undefined,
      'ICMP_TIMXCEED',
      '10.0.0.1',
      '10.0.0.9',
    ],
    [
      'ICMP Redirect from 10.0.0.1 for ICMP Echo sent to 10.0.0.9',
      4,
      5,
      undefined,
      'ICMP_REDIRECT',
      '10.0.0.1',
      '10.0.0.9',
    ],
    // Later fping versions report ICMPv6 errors too.
    [
      'ICMPv6 Destination Unreachable (Address unreachable) from fd00::1 for ICMPv6 Echo Request sent to fd00::9',
      6,
      1,
      3,
      'ICMP6_DST_UNREACH_3',
      'fd00::1',
      'fd00::9',
    ],
    [
      'ICMPv6 Time Exceeded (Hop limit exceeded in transit) from fd00::1 for ICMPv6 Echo Request sent to fd00::9',
      6,
      3,
      0,
      'ICMP6_TIME_EXCEEDED_0',
      'fd00::1',
      'fd00::9',
    ],
    [
      'ICMPv6 Packet Too Big from fd00::1 for ICMPv6 Echo Request sent to fd00::9',
      6,
      2,
      undefined,
      'ICMP6_PACKET_TOO_BIG',
      'fd00::1',
      'fd00::9',
    ],
    [
      'ICMPv6 Type 200 Code 4 from fd00::1 for ICMPv6 Echo Request sent to fd00::9',
      6,
      200,
      4,
      'ICMP6_TYPE_200',
      'fd00::1',
      'fd00::9',
    ],
  ] as const)('%s', (line, family, type, code, name, from, host) => {
    const parsed = parseFpingLine(line);
    expect(parsed?.kind).toBe('icmp');
    if (parsed?.kind !== 'icmp') return;
    expect(parsed.host).toBe(host);
    expect(parsed.error).toMatchObject({ family, type, name, from, text: line });
    expect(parsed.error.code).toBe(code);
  });

  it('ignores summaries, duplicates, errors of its own and unknown ICMP text', () => {
    for (const line of [
      '127.0.0.1 : 0.045 0.039 0.041',
      '198.18.0.2 : - - -',
      '127.0.0.1 : duplicate for [0], 64 bytes, 0.05 ms',
      "fping: can't create socket (must run as root?)",
      'ICMP Something New from 10.0.0.1 for ICMP Echo sent to 10.0.0.9',
      '',
    ]) {
      expect(parseFpingLine(line)).toBeUndefined();
    }
  });
});

describe('fitCount: packets that fit the budget', () => {
  it.each([
    [3, 200, 1930, 3],
    [10, 200, 2000, 8],
    [3, 200, 430, 2],
    [3, 200, 100, 1],
    [3, 200, -50, 1],
  ])('count %i every %i ms in %i ms → %i', (count, intervalMs, budgetMs, expected) => {
    expect(fitCount(count, intervalMs, budgetMs)).toBe(expected);
  });
});

describe('FpingEngine without a usable binary', () => {
  it('is unavailable and reports an engine failure instead of throwing', async () => {
    const engine = new FpingEngine({ binPath: '/nonexistent/fping' });
    expect(await engine.available()).toBe(false);
    const report = await engine.echo({
      ip: '127.0.0.1',
      family: 4,
      count: 1,
      intervalMs: 100,
      timeoutMs: 500,
      signal: new AbortController().signal,
    });
    expect(report.failure?.code).toBe('FL_ERR_ENGINE');
    expect(engine.pids()).toEqual([]);
  });

  it('checks again when the binary path is swapped', async () => {
    const engine = new FpingEngine({ binPath: '/nonexistent/fping' });
    expect(await engine.available()).toBe(false);
    engine.binPath = 'fping';
    expect(await engine.available()).toBe(true);
  });
});

/**
 * A stand-in for fping that answers every address's packet i (of `-C`) `delayS` seconds
 * plus i periods (`-p`) after it starts, one reply line each, and logs each run's arguments
 * to `log`: for the batching logic alone.
 */
function fakeFping(dir: string, delayS: number): { bin: string; runs: () => string[][] } {
  const bin = join(dir, `fping-${delayS}`);
  const log = join(dir, `runs-${delayS}.txt`);
  writeFileSync(
    bin,
    `#!/bin/sh
case " $* " in *" -q "*) exit 0;; esac
echo "$*" >> ${log}
all="$*"
count=$(echo "$all" | sed -n 's/.*-C \\([0-9]*\\).*/\\1/p')
period=$(echo "$all" | sed -n 's/.*-p \\([0-9.]*\\).*/\\1/p')
sleep ${delayS}
seq=0
while [ "$seq" -lt "$count" ]; do
  [ "$seq" -gt 0 ] && sleep $(awk "BEGIN { print $period / 1000 }")
  for ip in \${all##* -- }; do echo "$ip : [$seq], 84 bytes, 0.05 ms (0.05 avg, 0% loss)"; done
  seq=$((seq + 1))
done
`,
  );
  chmodSync(bin, 0o755);
  return {
    bin,
    runs: () =>
      existsSync(log)
        ? readFileSync(log, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => l.split(' '))
        : [],
  };
}

/** The addresses a run was given (after `--`), and the value of one of its flags. */
const ipsOf = (args: string[]): string[] => args.slice(args.indexOf('--') + 1);
const flagOf = (args: string[], flag: string): number => Number(args[args.indexOf(flag) + 1]);

describe('FpingEngine: held requests (confirmations, echo checks) share processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-fping-held-'));
  const engines: FpingEngine[] = [];
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close()));
    rmSync(dir, { recursive: true, force: true });
  });
  /** An engine on `bin`, its binary checked already (that check is a run of its own). */
  async function engine(bin: string, maxHeldProcesses: number): Promise<FpingEngine> {
    const e = new FpingEngine({ binPath: bin, maxHeldProcesses });
    engines.push(e);
    expect(await e.available()).toBe(true);
    return e;
  }
  const held = (e: FpingEngine, ip: string, holdMs: number, timeoutMs = 2000) =>
    e.echo({
      ip,
      family: 4,
      count: 1,
      intervalMs: 20,
      timeoutMs,
      holdMs,
      signal: new AbortController().signal,
    });

  it('beyond the cap they wait for a process to end, then all share the next one', async () => {
    const fake = fakeFping(dir, 0.4);
    const e = await engine(fake.bin, 2);
    const echoes: ReturnType<typeof held>[] = [];
    // A partition failing ten paths: their confirmations arrive 20 ms apart.
    for (let i = 1; i <= 10; i++) {
      echoes.push(held(e, `198.51.100.${i}`, 2000));
      await sleep(20);
    }
    const reports = await Promise.all(echoes);
    for (const r of reports) expect(r.rttsMs).toEqual([0.05]);
    const runs = fake.runs();
    expect(runs.map(ipsOf)).toEqual([
      ['198.51.100.1'],
      ['198.51.100.2'],
      Array.from({ length: 8 }, (_, i) => `198.51.100.${i + 3}`),
    ]);
    expect(e.stats).toEqual({ echoes: 10, processes: 3 });
    expect(e.heldPeak).toBe(2);
  });

  it('a hold bounds the wait: when it is up, the held ones start although the cap is reached', async () => {
    const fake = fakeFping(dir, 1);
    const e = await engine(fake.bin, 1);
    const done = (p: ReturnType<typeof held>): Promise<number> => p.then(() => performance.now());
    const first = done(held(e, '198.51.100.1', 100));
    await sleep(10);
    const second = done(held(e, '198.51.100.2', 100));
    // Started by its hold (~0.1 s after the first), not when the first process ended (~1 s).
    expect((await second) - (await first)).toBeLessThan(600);
    expect(fake.runs().map(ipsOf)).toEqual([['198.51.100.1'], ['198.51.100.2']]);
    expect(e.heldPeak).toBe(2);
  });

  it('the hold does not come off a held request’s wait: fping gets its whole timeout', async () => {
    const fake = fakeFping(dir, 0.3);
    const e = await engine(fake.bin, 1);
    const first = held(e, '198.51.100.1', 2000, 600);
    await sleep(10);
    // Held ~0.3 s behind the first; answered 0.3 s after it leaves: after 600 ms from the
    // request, within 600 ms of its own start.
    const t0 = performance.now();
    const second = await held(e, '198.51.100.2', 2000, 600);
    expect(performance.now() - t0).toBeGreaterThan(550);
    expect(second.rttsMs).toEqual([0.05]);
    await first;
    const runs = fake.runs();
    expect(runs.map(ipsOf)).toEqual([['198.51.100.1'], ['198.51.100.2']]);
    // fping's wait for the held one: its timeout less fping's start-up, not less the hold.
    expect(flagOf(runs[1]!, '-t')).toBeGreaterThanOrEqual(600 - 30 - 1);
  });

  it('two held requests for one address (re-probes of a burst) never share packets', async () => {
    const fake = fakeFping(dir, 0.2);
    const e = await engine(fake.bin, 1);
    const a = held(e, '198.51.100.1', 2000);
    await sleep(10);
    const b = held(e, '198.51.100.2', 2000);
    const c = held(e, '198.51.100.2', 2000);
    await Promise.all([a, b, c]);
    const runs = fake.runs().map(ipsOf);
    expect(runs).toHaveLength(3);
    expect(runs.filter((ips) => ips.includes('198.51.100.2'))).toHaveLength(2);
  });

  const reprobe = (e: FpingEngine, ip: string, index: number) =>
    e.echo({
      ip,
      family: 4,
      count: 1,
      intervalMs: 20,
      timeoutMs: 2000,
      holdMs: 250,
      burst: { index, of: 3, spacingMs: 150 },
      signal: new AbortController().signal,
    });

  it("a confirmation burst's re-probes take their packets from one process, the bursts started together share it", async () => {
    const fake = fakeFping(dir, 0.1);
    const e = await engine(fake.bin, 3);
    const t0 = performance.now();
    const answeredAt = (p: ReturnType<typeof held>): Promise<number> =>
      p.then((r) => {
        expect(r.rttsMs).toEqual([0.05]);
        return performance.now() - t0;
      });
    // Two paths fail together; each bursts three re-probes 150 ms apart, as the agent does.
    const times: Promise<number>[] = [];
    for (let i = 1; i <= 3; i++) {
      times.push(answeredAt(reprobe(e, '198.51.100.1', i)));
      times.push(answeredAt(reprobe(e, '198.51.100.2', i)));
      if (i < 3) await sleep(150);
    }
    const at = await Promise.all(times);
    const runs = fake.runs();
    expect(runs.map(ipsOf)).toEqual([['198.51.100.1', '198.51.100.2']]);
    expect([flagOf(runs[0]!, '-C'), flagOf(runs[0]!, '-p')]).toEqual([3, 150]);
    expect(e.stats.processes).toBe(1);
    // Each re-probe is answered by its own packet: the third ~300 ms after the first.
    expect(at[4]! - at[0]!).toBeGreaterThan(200);
  });

  it('a re-probe that finds no packet of its burst to take (the first went elsewhere) gets its own', async () => {
    const fake = fakeFping(dir, 0.05);
    const e = await engine(fake.bin, 3);
    const second = await reprobe(e, '198.51.100.3', 2);
    expect(second.rttsMs).toEqual([0.05]);
    const runs = fake.runs();
    expect(runs).toHaveLength(1);
    expect(flagOf(runs[0]!, '-C')).toBe(1);
  });

  it('requests not held are never capped: each idle one starts at once', async () => {
    const fake = fakeFping(dir, 0.5);
    const e = await engine(fake.bin, 1);
    const echoes: Promise<unknown>[] = [];
    for (let i = 1; i <= 3; i++) {
      echoes.push(
        e.echo({
          ip: `198.51.100.${i}`,
          family: 4,
          count: 1,
          intervalMs: 1000,
          timeoutMs: 2000,
          signal: new AbortController().signal,
        }),
      );
      await sleep(150);
    }
    await Promise.all(echoes);
    expect(e.stats.processes).toBe(3);
    expect(e.heldPeak).toBe(0);
  });
});
