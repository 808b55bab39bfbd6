import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { pollUntil } from '../lab/poll-until.js';
import { icmp, icmpOptions } from './icmp.js';
import { closeIcmpEngines, icmpEngines, outcomeOf } from './icmp/echo.js';
import type { EchoReport } from './icmp/engine.js';
import { FpingEngine } from './icmp/fping.js';
import { parsePingLine } from './icmp/ping.js';
import { SocketEngine } from './icmp/socket.js';
import { runProbe } from './run.js';
import { ProbeClock } from './socket.js';
import { parseTarget } from './target.js';

function probe(
  address: string,
  options: Record<string, unknown> = {},
  timeoutMs = 2000,
  signal?: AbortSignal,
) {
  return runProbe(icmp, parseTarget(address, icmp.target), icmpOptions.parse(options), {
    timeoutMs,
    ...(signal === undefined ? {} : { signal }),
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const hasV6Loopback = Object.values(networkInterfaces())
  .flat()
  .some((a) => a?.address === '::1');

afterAll(async () => {
  await closeIcmpEngines();
});

// These tests are about the fping and ping engines, and auto's fallback to them: the socket
// engine, which auto tries first, is taken out here (socket.test.ts tests it).
const socketEngine = icmpEngines.socket;
beforeAll(() => {
  icmpEngines.socket = new SocketEngine('/nonexistent/faultline_icmp.node');
});
afterAll(() => {
  icmpEngines.socket = socketEngine;
});

describe('icmp options', () => {
  it('has sensible defaults and rejects unknown keys', () => {
    expect(icmpOptions.parse({})).toEqual({ count: 3, intervalMs: 200, engine: 'auto', family: 0 });
    expect(() => icmpOptions.parse({ cout: 3 })).toThrow();
    expect(() => icmpOptions.parse({ engine: 'nmap' })).toThrow();
    expect(() => icmpOptions.parse({ packetSize: 8 })).toThrow();
  });
});

describe('outcomeOf: the class comes from replies and ICMP types', () => {
  const base: EchoReport = { engine: 'fping', rttsMs: [], icmpErrors: [], aborted: false };
  const unreach = {
    family: 4 as const,
    type: 3,
    code: 1,
    name: 'ICMP_UNREACH_HOST',
    from: '10.0.0.1',
    text: 'ICMP Host Unreachable from 10.0.0.1 for ICMP Echo sent to 10.0.0.9',
  };
  const emsgsize = {
    code: 'EMSGSIZE',
    mtu: 1000,
    text: 'ping: local error: message too long, mtu=1000',
  };
  const cases: ReadonlyArray<[string, EchoReport, string, string | undefined]> = [
    ['all answered', { ...base, rttsMs: [1, 2, 3] }, 'ok', undefined],
    [
      'one of three answered: loss, still ok',
      { ...base, rttsMs: [null, 2, null] },
      'ok',
      undefined,
    ],
    [
      'a reply wins over an ICMP error',
      { ...base, rttsMs: [null, 2], icmpErrors: [unreach] },
      'ok',
      undefined,
    ],
    [
      'nothing came back',
      { ...base, rttsMs: [null, null, null] },
      'icmp_timeout',
      'FL_ICMP_TIMEOUT',
    ],
    [
      'only an unreachable came back',
      { ...base, rttsMs: [null, null], icmpErrors: [unreach] },
      'icmp_unreachable',
      'ICMP_UNREACH_HOST',
    ],
    [
      'a redirect alone decides nothing',
      { ...base, rttsMs: [null], icmpErrors: [{ ...unreach, type: 5, name: 'ICMP_REDIRECT' }] },
      'icmp_timeout',
      'FL_ICMP_TIMEOUT',
    ],
    [
      'aborted before any reply',
      { ...base, rttsMs: [null], aborted: true },
      'icmp_timeout',
      'FL_ABORTED',
    ],
    [
      'the engine failed',
      { ...base, failure: { code: 'FL_ERR_ENGINE', message: 'x' } },
      'internal_error',
      'FL_ERR_ENGINE',
    ],
    [
      'a router said "fragmentation needed" (type 3 code 4)',
      {
        ...base,
        rttsMs: [null],
        icmpErrors: [{ ...unreach, code: 4, name: 'ICMP_UNREACH_NEEDFRAG' }],
      },
      'mtu_exceeded',
      'ICMP_UNREACH_NEEDFRAG',
    ],
    [
      'an ICMPv6 "packet too big" (type 2)',
      {
        ...base,
        rttsMs: [null],
        icmpErrors: [{ ...unreach, family: 6, type: 2, code: 0, name: 'ICMP6_PACKET_TOO_BIG' }],
      },
      'mtu_exceeded',
      'ICMP6_PACKET_TOO_BIG',
    ],
    [
      'our own stack refused to send (EMSGSIZE)',
      { ...base, rttsMs: [null, null], sendErrors: [emsgsize] },
      'mtu_exceeded',
      'EMSGSIZE',
    ],
    [
      'a reply wins over a send error',
      { ...base, rttsMs: [null, 2], sendErrors: [emsgsize] },
      'ok',
      undefined,
    ],
    [
      'an unreachable that came back wins over a send error after it',
      { ...base, rttsMs: [null, null], icmpErrors: [unreach], sendErrors: [emsgsize] },
      'icmp_unreachable',
      'ICMP_UNREACH_HOST',
    ],
    [
      'a send error that decides nothing is a timeout',
      { ...base, rttsMs: [null], sendErrors: [{ ...emsgsize, code: 'ENOBUFS' }] },
      'icmp_timeout',
      'FL_ICMP_TIMEOUT',
    ],
  ];
  it.each(cases)('%s', (_, report, cls, code) => {
    const out = outcomeOf(report, '10.0.0.9', new ProbeClock(1000));
    expect(out.class).toBe(cls);
    expect(out.error?.code).toBe(code);
  });

  it('reports RTT average, min, max and loss ratio', () => {
    const out = outcomeOf(
      { ...base, rttsMs: [1, null, 3, null] },
      '10.0.0.9',
      new ProbeClock(1000),
    );
    expect(out.timings.rttMs).toBe(2);
    expect(out.detail).toMatchObject({
      sent: 4,
      received: 2,
      lossRatio: 0.5,
      minMs: 1,
      maxMs: 3,
      ip: '10.0.0.9',
    });
  });

  it('names the next-hop MTU where an ICMP error or a send error carries one', () => {
    const needFrag = { ...unreach, code: 4, name: 'ICMP_UNREACH_NEEDFRAG', mtu: 1400 };
    const fromIcmp = outcomeOf(
      { ...base, rttsMs: [null], icmpErrors: [needFrag] },
      '10.0.0.9',
      new ProbeClock(1000),
    );
    expect(fromIcmp.detail).toMatchObject({
      nextHopMtu: 1400,
      icmpError: { type: 3, code: 4, name: 'ICMP_UNREACH_NEEDFRAG' },
    });
    const fromStack = outcomeOf(
      { ...base, rttsMs: [null], sendErrors: [emsgsize, emsgsize] },
      '10.0.0.9',
      new ProbeClock(1000),
    );
    expect(fromStack.error).toEqual({ code: 'EMSGSIZE', message: emsgsize.text });
    expect(fromStack.detail).toMatchObject({
      nextHopMtu: 1000,
      sendErrors: 2,
      sendError: { code: 'EMSGSIZE', mtu: 1000 },
    });
    expect(
      outcomeOf({ ...base, rttsMs: [1] }, '10.0.0.9', new ProbeClock(1000)).detail,
    ).not.toHaveProperty('nextHopMtu');
  });
});

describe('parsePingLine: iputils ping lines', () => {
  it.each([
    [
      '64 bytes from 127.0.0.1: icmp_seq=2 ttl=64 time=0.037 ms',
      4,
      { kind: 'reply', seq: 2, rttMs: 0.037 },
    ],
    [
      '64 bytes from ::1: icmp_seq=1 ttl=64 time=12.5 ms',
      6,
      { kind: 'reply', seq: 1, rttMs: 12.5 },
    ],
    [
      'From 10.0.0.1 icmp_seq=3 Destination Host Unreachable',
      4,
      { kind: 'icmp', seq: 3, type: 3, code: 1 },
    ],
    ['From 10.0.0.1 icmp_seq=1 Packet filtered', 4, { kind: 'icmp', seq: 1, type: 3, code: 13 }],
    [
      'From 10.0.0.1 icmp_seq=1 Time to live exceeded',
      4,
      { kind: 'icmp', seq: 1, type: 11, code: 0 },
    ],
    [
      'From 10.0.0.1 icmp_seq=1 Redirect Host(New nexthop: 10.0.0.254)',
      4,
      { kind: 'icmp', seq: 1, type: 5, code: 1 },
    ],
    [
      'From 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)',
      4,
      { kind: 'icmp', seq: 1, type: 3, code: 4 },
    ],
    [
      'From fd00::1 icmp_seq=4 Destination unreachable: Address unreachable',
      6,
      { kind: 'icmp', seq: 4, type: 1, code: 3 },
    ],
    [
      'From fd00::1 icmp_seq=4 Time exceeded: Hop limit',
      6,
      { kind: 'icmp', seq: 4, type: 3, code: 0 },
    ],
  ] as const)('%s', (line, family, expected) => {
    const parsed = parsePingLine(line, family);
    expect(parsed).toBeDefined();
    const flat =
      parsed?.kind === 'icmp'
        ? { kind: parsed.kind, seq: parsed.seq, type: parsed.error.type, code: parsed.error.code }
        : parsed;
    expect(flat).toEqual(expected);
  });

  it('reads the next-hop MTU of "fragmentation needed" and "packet too big"', () => {
    expect(
      parsePingLine('From 10.0.0.1 icmp_seq=2 Frag needed and DF set (mtu = 1400)', 4),
    ).toEqual({
      kind: 'icmp',
      seq: 2,
      error: {
        family: 4,
        type: 3,
        code: 4,
        name: 'ICMP_UNREACH_NEEDFRAG',
        from: '10.0.0.1',
        mtu: 1400,
        text: 'From 10.0.0.1 icmp_seq=2 Frag needed and DF set (mtu = 1400)',
      },
    });
    const v6 = parsePingLine('From fd00::1 icmp_seq=1 Packet too big: mtu=1280', 6);
    expect(v6).toMatchObject({ kind: 'icmp', seq: 1, error: { family: 6, type: 2, mtu: 1280 } });
    // Only those two types carry an MTU.
    const other = parsePingLine('From 10.0.0.1 icmp_seq=1 Destination Host Unreachable', 4);
    expect(other?.kind === 'icmp' && other.error.mtu).toBe(undefined);
  });

  it.each([
    ['ping: local error: message too long, mtu=1000', 4, 1000],
    ['/usr/bin/ping: local error: message too long, mtu=1000', 4, 1000],
    ['ping: local error: message too long, mtu: 1280', 6, 1280],
  ] as const)('a packet the local stack refused: %s', (line, family, mtu) => {
    expect(parsePingLine(line, family)).toEqual({
      kind: 'send',
      error: { code: 'EMSGSIZE', mtu, text: line },
    });
  });

  it('ignores the banner, statistics and unknown error text', () => {
    for (const line of [
      'ping: local error: No buffer space available',
      'PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.',
      '3 packets transmitted, 3 received, 0% packet loss, time 405ms',
      'rtt min/avg/max/mdev = 0.034/0.039/0.043/0.003 ms',
      'From 10.0.0.1 icmp_seq=1 Something new',
    ]) {
      expect(parsePingLine(line, 4)).toBeUndefined();
    }
  });
});

describe('icmp probe on loopback', () => {
  it('127.0.0.1 answers: ok via fping, with per-packet RTTs', async () => {
    const r = await probe('127.0.0.1');
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({
      engine: 'fping',
      ip: '127.0.0.1',
      sent: 3,
      received: 3,
      lossRatio: 0,
    });
    const rtts = r.detail?.rttsMs as number[];
    expect(rtts).toHaveLength(3);
    for (const rtt of rtts) expect(rtt).toBeGreaterThan(0);
    expect(r.timings.rttMs).toBeGreaterThan(0);
    expect(r.timings.rttMs).toBeLessThan(10);
    // Three packets 200 ms apart, and nothing waits for a timeout.
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(390);
    expect(r.timings.totalMs).toBeLessThan(1000);
  });

  it.runIf(hasV6Loopback)('::1 answers over IPv6', async () => {
    const r = await probe('::1', { count: 2, intervalMs: 50 });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ engine: 'fping', ip: '::1', received: 2 });
  });

  it('a hostname is resolved first (dns timing) and fping gets the address', async () => {
    const r = await probe('localhost', { count: 1, family: 4 });
    expect(r.class).toBe('ok');
    expect(r.timings.dnsMs).toBeGreaterThanOrEqual(0);
    expect(r.detail?.ip).toBe('127.0.0.1');
  });

  it('50 concurrent probes share one fping, each gets its own target lines', async () => {
    const engine = new FpingEngine();
    const saved = icmpEngines.fping;
    icmpEngines.fping = engine;
    try {
      const addresses = Array.from({ length: 50 }, (_, i) => `127.0.0.${i + 1}`);
      const results = await Promise.all(
        addresses.map((a) => probe(a, { count: 3, intervalMs: 50 })),
      );
      results.forEach((r, i) => {
        expect(r.class).toBe('ok');
        expect(r.detail?.ip).toBe(addresses[i]);
        expect(r.detail?.engine).toBe('fping');
        expect((r.detail?.rttsMs as number[]).every((x) => x > 0)).toBe(true);
      });
      expect(new Set(results.map((r) => JSON.stringify(r.detail?.rttsMs))).size).toBeGreaterThan(1);
      expect(engine.stats).toEqual({ echoes: 50, processes: 1 });
    } finally {
      icmpEngines.fping = saved;
      await engine.close();
    }
  });

  it('abort: returns promptly with what came back, and ends the fping nobody waits for', async () => {
    const engine = new FpingEngine();
    const saved = icmpEngines.fping;
    icmpEngines.fping = engine;
    try {
      const controller = new AbortController();
      const running = probe('127.0.0.1', { count: 50, intervalMs: 100 }, 8000, controller.signal);
      const pid = await pollUntil('fping to start', () => engine.pids()[0], {
        timeoutMs: 2000,
        intervalMs: 10,
      });
      await new Promise((r) => setTimeout(r, 250));
      const t = performance.now();
      controller.abort();
      const r = await running;
      expect(performance.now() - t).toBeLessThan(200);
      expect(r.class).toBe('ok');
      const sent = r.detail?.sent as number;
      expect(sent).toBeGreaterThan(0);
      expect(sent).toBeLessThan(50);
      await pollUntil('fping to exit', () => !alive(pid), { timeoutMs: 3000 });
    } finally {
      icmpEngines.fping = saved;
      await engine.close();
    }
  });

  it('close() ends every fping: no process left by PID', async () => {
    const engine = new FpingEngine();
    const echo = engine.echo({
      ip: '127.0.0.1',
      family: 4,
      count: 30,
      intervalMs: 100,
      timeoutMs: 10_000,
      signal: new AbortController().signal,
    });
    const pid = await pollUntil('fping to start', () => engine.pids()[0], {
      timeoutMs: 2000,
      intervalMs: 10,
    });
    expect(alive(pid)).toBe(true);
    await engine.close();
    expect(alive(pid)).toBe(false);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(engine.pids()).toEqual([]);
    const report = await echo;
    expect(report.aborted).toBe(true);
  });

  it('without fping, auto falls back to ping with the same classes', async () => {
    const saved = icmpEngines.fping;
    icmpEngines.fping = new FpingEngine({ binPath: '/nonexistent/fping' });
    try {
      const r = await probe('127.0.0.1', { count: 2, intervalMs: 50 });
      expect(r.class).toBe('ok');
      expect(r.detail).toMatchObject({ engine: 'ping', ip: '127.0.0.1', sent: 2, received: 2 });
      expect(r.timings.rttMs).toBeGreaterThan(0);

      const forced = await probe('127.0.0.1', { engine: 'fping' });
      expect(forced.class).toBe('internal_error');
      expect(forced.error?.code).toBe('FL_ERR_ENGINE');
    } finally {
      icmpEngines.fping = saved;
    }
  });
});

describe.runIf(canUseNetns)('icmp probe across a network', () => {
  let net: TestNet;
  let silent: TestHost;
  let rejecting: TestHost;
  let lossy: TestHost;
  let down: TestHost;
  beforeAll(async () => {
    net = await TestNet.create();
    [silent, rejecting, lossy, down] = await Promise.all([
      net.addHost('silent'),
      net.addHost('reject'),
      net.addHost('lossy'),
      net.addHost('down'),
    ]);
    await Promise.all([
      net.icmpFilter(silent, 'drop'),
      net.icmpFilter(rejecting, 'reject'),
      net.icmpFilter(lossy, 'lose-half'),
      net.linkDown(down),
    ]);
  });
  afterAll(async () => {
    await net?.destroy();
  });

  it('a host that drops ICMP is icmp_timeout, answered by the timeout', async () => {
    const r = await probe(silent.ip, {}, 1000);
    expect(r.class).toBe('icmp_timeout');
    expect(r.detail).toMatchObject({
      engine: 'fping',
      sent: 3,
      received: 0,
      lossRatio: 1,
      rttsMs: [null, null, null],
    });
    expect(r.timings.rttMs).toBeUndefined();
    expect(r.timings.totalMs).toBeGreaterThan(800);
    expect(r.timings.totalMs).toBeLessThan(1100);
  });

  it('a live target batched with a silent one answers without waiting for it', async () => {
    const engine = icmpEngines.fping as FpingEngine;
    const before = engine.stats.processes;
    const [dead, live] = await Promise.all([
      probe(silent.ip, {}, 1500),
      probe(net.gateway, {}, 1500),
    ]);
    expect(engine.stats.processes - before).toBe(1);
    expect(dead.class).toBe('icmp_timeout');
    expect(live.class).toBe('ok');
    expect(live.timings.totalMs).toBeLessThan(800);
  });

  it('nftables "reject with icmp type host-unreachable" is icmp_unreachable, from the ICMP type', async () => {
    const r = await probe(rejecting.ip, {}, 2000);
    expect(r.class).toBe('icmp_unreachable');
    expect(r.error?.code).toBe('ICMP_UNREACH_HOST');
    expect(r.detail?.icmpError).toEqual({
      type: 3,
      code: 1,
      name: 'ICMP_UNREACH_HOST',
      from: rejecting.ip,
    });
    // Every packet got its error: the probe ends then, not at its timeout.
    expect(r.timings.totalMs).toBeLessThan(1000);
  });

  it('random loss of half the packets is ok, with a loss ratio between 0 and 1', async () => {
    const r = await probe(lossy.ip, { count: 40, intervalMs: 10 }, 2000);
    expect(r.class).toBe('ok');
    const loss = r.detail?.lossRatio as number;
    expect(loss).toBeGreaterThan(0);
    expect(loss).toBeLessThan(1);
    const rtts = r.detail?.rttsMs as (number | null)[];
    expect(rtts).toHaveLength(40);
    expect(rtts.filter((x) => x === null).length / 40).toBeCloseTo(loss, 5);
  });

  it('an address on the link that nobody holds, and a host whose link is down: ARP fails, icmp_unreachable from our own stack', async () => {
    // The kernel gives up ARP after ~3 s and answers every queued echo with Host Unreachable.
    const [nobody, linkDown] = await Promise.all([
      probe(net.address(250), {}, 6000),
      probe(down.ip, {}, 6000),
    ]);
    for (const r of [nobody, linkDown]) {
      expect(r.class).toBe('icmp_unreachable');
      expect(r.error?.code).toBe('ICMP_UNREACH_HOST');
      expect(r.detail?.icmpError).toMatchObject({ type: 3, code: 1, from: net.gateway });
      expect(r.timings.totalMs).toBeGreaterThan(2500);
      expect(r.timings.totalMs).toBeLessThan(5000);
    }
  }, 10_000);

  it('the ping engine gives the same classes: ok, icmp_timeout, icmp_unreachable', async () => {
    const [ok, timeout, unreachable] = await Promise.all([
      probe(net.gateway, { engine: 'ping' }, 1000),
      probe(silent.ip, { engine: 'ping' }, 1000),
      probe(rejecting.ip, { engine: 'ping' }, 1000),
    ]);
    expect(ok.class).toBe('ok');
    expect(ok.detail).toMatchObject({ engine: 'ping', sent: 3, received: 3 });
    expect(timeout.class).toBe('icmp_timeout');
    expect(timeout.detail).toMatchObject({ engine: 'ping', received: 0, lossRatio: 1 });
    expect(unreachable.class).toBe('icmp_unreachable');
    expect(unreachable.error?.code).toBe('ICMP_UNREACH_HOST');
  });
});
