import { describe, expect, it } from 'vitest';
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
