import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../../lab/netns.js';
import { pollUntil } from '../../lab/poll-until.js';
import { icmp, icmpOptions, type IcmpOptions } from '../icmp.js';
import { runProbe } from '../run.js';
import { parseTarget } from '../target.js';
import type { ScheduledTarget } from '../types.js';
import { closeIcmpEngines, icmpEngines } from './echo.js';
import { FpingLoopEngine } from './fping-loop.js';
import type { LoopTarget } from './loop-state.js';
import { SocketEngine } from './socket.js';
import { SocketLoopEngine } from './socket-loop.js';

/*
 * The loop on the agent's own ICMP socket: scheduled targets pinged continuously, rounds
 * answered from what came back since the previous one.
 */

function scheduled(
  address: string,
  options: Record<string, unknown>,
  intervalMs: number,
  timeoutMs: number,
  name = address,
): ScheduledTarget<IcmpOptions> {
  return {
    target: parseTarget(address, icmp.target, name),
    options: icmpOptions.parse(options),
    intervalMs,
    timeoutMs,
  };
}

function round(t: ScheduledTarget<IcmpOptions>) {
  return runProbe(icmp, t.target, t.options, { timeoutMs: t.timeoutMs });
}

function loopTarget(name: string, host: string, intervalMs: number, timeoutMs: number): LoopTarget {
  return { name, host, family: 0, count: 3, intervalMs, timeoutMs };
}

function roundOf(loop: SocketLoopEngine, name: string, ip: string, timeoutMs = 500) {
  return loop.round({
    name,
    host: ip,
    family: 0,
    count: 3,
    ip,
    timeoutMs,
    signal: new AbortController().signal,
  });
}

afterAll(async () => {
  await closeIcmpEngines();
});

describe('the socket loop on loopback', () => {
  it('scheduled icmp targets are served by the socket loop, no fping started', async () => {
    const fpingLoop = new FpingLoopEngine();
    const saved = icmpEngines.loop;
    icmpEngines.loop = fpingLoop;
    const targets = [
      scheduled('127.0.0.1', { count: 3 }, 300, 250, 'a/icmp'),
      scheduled('127.0.0.2', { count: 3 }, 300, 250, 'b/icmp'),
    ];
    try {
      icmp.prepare?.(targets);
      // The first rounds may come before a packet is back; later ones are the loop's.
      const results = await pollUntil(
        'rounds answered by the socket loop',
        async () => {
          const rs = await Promise.all(targets.map(round));
          return rs.every((r) => r.detail?.engine === 'socket-loop') ? rs : undefined;
        },
        { timeoutMs: 5000, intervalMs: 300 },
      );
      for (const [i, r] of results.entries()) {
        expect(r.class).toBe('ok');
        expect(r.detail?.ip).toBe(`127.0.0.${i + 1}`);
        const rtts = r.detail?.rttsMs as number[];
        expect(rtts.length).toBeGreaterThanOrEqual(1);
        for (const rtt of rtts) expect(rtt).toBeGreaterThan(0);
      }
      // Round answered at once: the packets were in before it asked.
      const again = await Promise.all(targets.map(round));
      for (const r of again) expect(r.timings.totalMs).toBeLessThan(100);
      expect(fpingLoop.pids()).toEqual([]);
      expect(fpingLoop.stats.spawns).toBe(0);
    } finally {
      icmp.prepare?.([]);
      icmpEngines.loop = saved;
      await fpingLoop.close();
    }
  });

  it('count packets per interval, spread: about count × elapsed / interval outcomes', async () => {
    const engine = new SocketEngine();
    const loop = new SocketLoopEngine(engine);
    try {
      loop.prepare([loopTarget('t', '127.0.0.1', 300, 250)]);
      const first = await pollUntil(
        'the first outcome',
        () => loop.buffered('t') >= 1 || undefined,
      );
      expect(first).toBe(true);
      loop.discard('t');
      expect(loop.buffered('t')).toBe(0);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 900));
      const report = await roundOf(loop, 't', '127.0.0.1');
      const elapsed = performance.now() - t0;
      expect(report?.engine).toBe('socket-loop');
      // One packet every 100 ms (300 ms / 3).
      const expected = elapsed / 100;
      expect(report!.rttsMs.length).toBeGreaterThanOrEqual(Math.floor(expected) - 2);
      expect(report!.rttsMs.length).toBeLessThanOrEqual(Math.ceil(expected) + 1);
      expect(report!.rttsMs.every((r) => r !== null)).toBe(true);
    } finally {
      await loop.close();
      await engine.close();
    }
  });

  it('declines what it cannot serve: unknown names, other options, a hostname before its first round', async () => {
    const engine = new SocketEngine();
    const loop = new SocketLoopEngine(engine);
    try {
      loop.prepare([
        loopTarget('lit', '127.0.0.1', 300, 250),
        loopTarget('name', 'localhost', 300, 250),
      ]);
      expect(await roundOf(loop, 'unknown', '127.0.0.1')).toBeUndefined();
      expect(
        await loop.round({
          name: 'lit',
          host: '127.0.0.1',
          family: 0,
          count: 5, // prepared with 3
          ip: '127.0.0.1',
          timeoutMs: 500,
          signal: new AbortController().signal,
        }),
      ).toBeUndefined();
      // A hostname starts on its first round's address: that round declines (cold).
      expect(
        await loop.round({
          name: 'name',
          host: 'localhost',
          family: 0,
          count: 3,
          ip: '127.0.0.1',
          timeoutMs: 500,
          signal: new AbortController().signal,
        }),
      ).toBeUndefined();
      await pollUntil('the hostname pinged', () => loop.buffered('name') >= 1 || undefined);
      expect(loop.stats.declined).toBe(3);
    } finally {
      await loop.close();
      await engine.close();
    }
  });

  it('a target announced no more stops being pinged; close() answers a waiting round as aborted', async () => {
    const engine = new SocketEngine();
    // Rounds wait for the next packet even a second away.
    const loop = new SocketLoopEngine(engine, { maxWaitMs: 5000 });
    try {
      loop.prepare([
        loopTarget('a', '127.0.0.1', 3000, 250),
        loopTarget('b', '127.0.0.2', 3000, 250),
      ]);
      await pollUntil('both pinged', () => loop.buffered('a') >= 1 && loop.buffered('b') >= 1);
      loop.prepare([loopTarget('a', '127.0.0.1', 3000, 250)]);
      const sent = loop.stats.packets;
      expect(loop.buffered('b')).toBe(0);
      expect(await roundOf(loop, 'b', '127.0.0.2')).toBeUndefined();
      // 'a' sends every second: a round right after its outcome was taken waits for the next.
      await roundOf(loop, 'a', '127.0.0.1');
      const waiting = roundOf(loop, 'a', '127.0.0.1', 5000);
      await loop.close();
      expect(await waiting).toMatchObject({ aborted: true });
      await new Promise((r) => setTimeout(r, 1200));
      expect(loop.stats.packets).toBeLessThanOrEqual(sent + 1);
      expect(engine.inFlight).toBe(0);
    } finally {
      await loop.close();
      await engine.close();
    }
  });
});

describe.runIf(canUseNetns)('the socket loop across a network', () => {
  let net: TestNet;
  let healthy: TestHost;
  let silent: TestHost;
  let rejecting: TestHost;
  beforeAll(async () => {
    net = await TestNet.create();
    [healthy, silent, rejecting] = await Promise.all([
      net.addHost('ok'),
      net.addHost('silent'),
      net.addHost('reject'),
    ]);
    await Promise.all([net.icmpFilter(silent, 'drop'), net.icmpFilter(rejecting, 'reject')]);
  });
  afterAll(async () => {
    icmp.prepare?.([]);
    await net?.destroy();
  });

  it('ok, icmp_timeout from lost packets, icmp_unreachable from the ICMP type: each from the loop', async () => {
    const targets = [
      scheduled(healthy.ip, { count: 2 }, 400, 300, 'ok/icmp'),
      scheduled(silent.ip, { count: 2 }, 400, 300, 'silent/icmp'),
      scheduled(rejecting.ip, { count: 2 }, 400, 300, 'reject/icmp'),
    ];
    icmp.prepare?.(targets);
    const results = await pollUntil(
      'a verdict from the loop for every target',
      async () => {
        const rs = await Promise.all(targets.map(round));
        return rs.every((r) => r.detail?.engine === 'socket-loop') ? rs : undefined;
      },
      { timeoutMs: 8000, intervalMs: 400 },
    );
    const [ok, timeout, unreachable] = results;
    expect(ok?.class).toBe('ok');
    expect(timeout?.class).toBe('icmp_timeout');
    expect((timeout?.detail?.rttsMs as unknown[]).every((r) => r === null)).toBe(true);
    expect(unreachable?.class).toBe('icmp_unreachable');
    expect(unreachable?.detail?.icmpError).toEqual({
      type: 3,
      code: 1,
      name: 'ICMP_UNREACH_HOST',
      from: rejecting.ip,
    });
  });

  it('a host that goes silent: the next rounds see its packets lost within the timeout', async () => {
    const target = scheduled(healthy.ip, { count: 2 }, 400, 300, 'turns-silent/icmp');
    icmp.prepare?.([target]);
    await pollUntil('ok from the loop', async () => {
      const r = await round(target);
      return r.detail?.engine === 'socket-loop' && r.class === 'ok' ? r : undefined;
    });
    await net.icmpFilter(healthy, 'drop', 'flsilent');
    try {
      const cutAt = Date.now();
      const failed = await pollUntil(
        'icmp_timeout from the loop',
        async () => {
          const r = await round(target);
          return r.class === 'icmp_timeout' && r.detail?.engine === 'socket-loop' ? r : undefined;
        },
        { timeoutMs: 5000, intervalMs: 400 },
      );
      expect(failed.detail?.engine).toBe('socket-loop');
      // A packet sent after the cut is lost 300 ms later, seen by the round after that.
      expect(Date.now() - cutAt).toBeLessThan(2000);
    } finally {
      await net.exec(healthy, 'nft', ['delete', 'table', 'inet', 'flsilent']);
    }
  });
});
