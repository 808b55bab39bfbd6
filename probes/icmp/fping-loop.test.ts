import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ProbeResult } from '../../wire/result.js';
import { canUseNetns, TestNet, type TestHost } from '../../lab/netns.js';
import { pollUntil } from '../../lab/poll-until.js';
import { icmp, icmpOptions, type IcmpOptions } from '../icmp.js';
import { runProbe } from '../run.js';
import { parseTarget } from '../target.js';
import type { ScheduledTarget } from '../types.js';
import { closeIcmpEngines, icmpEngines } from './echo.js';
import { FpingLoopEngine } from './fping-loop.js';
import { SocketEngine } from './socket.js';

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

function round(t: ScheduledTarget<IcmpOptions>, timeoutMs = t.timeoutMs): Promise<ProbeResult> {
  return runProbe(icmp, t.target, t.options, { timeoutMs });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Answers ICMP echo from user space after a delay (the kernel's own answer switched off):
// a path slower than the loop's packet period, without netem.
const slowEcho = `
import socket, struct, sys, threading, time
delay = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def reply(icmp, addr):
    time.sleep(delay)
    icmp[0] = 0
    icmp[2:4] = b'\\0\\0'
    if len(icmp) % 2: icmp.append(0)
    t = sum(struct.unpack('!%dH' % (len(icmp) // 2), icmp))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    icmp[2:4] = struct.pack('!H', ~t & 0xffff)
    s.sendto(bytes(icmp), addr)
while True:
    pkt, addr = s.recvfrom(65535)
    ihl = (pkt[0] & 0xf) * 4
    if pkt[ihl] == 8:
        threading.Thread(target=reply, args=(bytearray(pkt[ihl:]), addr), daemon=True).start()
`;
const hasPython = existsSync('/usr/bin/python3');

const hasV6Loopback = Object.values(networkInterfaces())
  .flat()
  .some((a) => a?.address === '::1');

let engine: FpingLoopEngine;
const saved = icmpEngines.loop;
beforeEach(() => {
  engine = new FpingLoopEngine();
  icmpEngines.loop = engine;
});
afterEach(async () => {
  await engine.close();
  icmpEngines.loop = saved;
});
afterAll(async () => {
  await closeIcmpEngines();
});

// These tests are about the fping loop and its fallback to the batching fping engine: the
// socket engine, which auto tries first for a one-shot echo, is taken out here
// (socket.test.ts tests it).
const socketEngine = icmpEngines.socket;
beforeAll(() => {
  icmpEngines.socket = new SocketEngine('/nonexistent/faultline_icmp.node');
});
afterAll(() => {
  icmpEngines.socket = socketEngine;
});

/** Waits until every target has at least `n` packets in for its next round. */
function warm(targets: readonly ScheduledTarget<IcmpOptions>[], n: number): Promise<true> {
  return pollUntil(
    `${n} packets for each of ${targets.length} targets`,
    () => targets.every((t) => engine.buffered(t.target.name) >= n),
    { timeoutMs: 5000, intervalMs: 20 },
  );
}

describe('icmp loop engine on loopback', () => {
  it('50 scheduled targets share ONE long-lived fping; rounds report count RTTs each', async () => {
    const targets = Array.from({ length: 50 }, (_, i) =>
      scheduled(`127.0.0.${i + 1}`, { count: 2 }, 400, 300),
    );
    icmp.prepare?.(targets);
    const pid = await pollUntil('fping to start', () => engine.pids()[0], { intervalMs: 10 });
    expect(engine.pids()).toEqual([pid]);
    for (const t of targets) expect(engine.pidOf(t.target.name)).toBe(pid);
    await warm(targets, 2);

    // First round: everything since fping started.
    const first = await Promise.all(targets.map((t) => round(t)));
    for (const [i, r] of first.entries()) {
      expect(r.class).toBe('ok');
      expect(r.detail).toMatchObject({ engine: 'fping-loop', ip: `127.0.0.${i + 1}` });
      // (fping counts a reply it reads after the packet timeout as lost: a starved machine
      // can lose a loopback packet, so only "mostly answered" is asserted.)
      const rtts = r.detail?.rttsMs as (number | null)[];
      expect(rtts.length).toBeGreaterThanOrEqual(2);
      expect(rtts.filter((x) => x !== null && x > 0 && x < 50).length).toBeGreaterThanOrEqual(1);
      expect(r.timings.rttMs).toBeGreaterThan(0);
    }

    // Then rounds one interval apart, as the scheduler runs them: `count` packets each (±1
    // where a packet lands right on a round's start, evened out by the next round), answered
    // at once, from the same fping.
    const sent = new Map<string, number[]>(targets.map((t) => [t.target.name, []]));
    const startAt = performance.now();
    for (let k = 1; k <= 3; k++) {
      await pause(startAt + k * 400 - performance.now());
      const results = await Promise.all(targets.map((t) => round(t)));
      for (const [i, r] of results.entries()) {
        expect(r.class).toBe('ok');
        expect(r.detail?.engine).toBe('fping-loop');
        expect(r.detail?.sent).toBeGreaterThanOrEqual(1);
        expect(r.detail?.sent).toBeLessThanOrEqual(3);
        expect(r.timings.totalMs).toBeLessThan(60);
        sent.get(targets[i]?.target.name ?? '')?.push(r.detail?.sent as number);
      }
    }
    for (const perRound of sent.values()) {
      const total = perRound.reduce((a, b) => a + b, 0);
      expect(total).toBeGreaterThanOrEqual(5);
      expect(total).toBeLessThanOrEqual(7);
    }
    expect(engine.pids()).toEqual([pid]);
    expect(alive(pid)).toBe(true);
    expect(engine.stats.spawns).toBe(1);
  });

  it('a re-prepare with a changed set restarts only the group that changed', async () => {
    const slow = [1, 2, 3].map((i) => scheduled(`127.0.1.${i}`, { count: 1 }, 500, 400));
    const fast = [1, 2, 3].map((i) => scheduled(`127.0.2.${i}`, { count: 2 }, 500, 400));
    icmp.prepare?.([...slow, ...fast]);
    await pollUntil('two fpings', () => engine.pids().length === 2, { intervalMs: 10 });
    const slowPid = engine.pidOf('127.0.1.1');
    const fastPid = engine.pidOf('127.0.2.1');
    expect(slowPid).toBeDefined();
    expect(fastPid).toBeDefined();
    expect(slowPid).not.toBe(fastPid);

    // Same targets again: nothing restarts.
    icmp.prepare?.([...slow, ...fast]);
    await pause(100);
    expect(engine.stats.spawns).toBe(2);

    const added = scheduled('127.0.2.4', { count: 2 }, 500, 400);
    icmp.prepare?.([...slow, ...fast, added]);
    const newPid = await pollUntil(
      'the changed group to restart',
      () => {
        const p = engine.pidOf('127.0.2.4');
        return p !== undefined && p !== fastPid ? p : undefined;
      },
      { intervalMs: 10 },
    );
    expect(engine.pidOf('127.0.2.1')).toBe(newPid);
    expect(engine.pidOf('127.0.1.1')).toBe(slowPid);
    expect(alive(slowPid as number)).toBe(true);
    await pollUntil('the old fping to exit', () => !alive(fastPid as number), { timeoutMs: 3000 });
    expect(engine.stats.spawns).toBe(3);
    await warm([added, slow[0] as ScheduledTarget<IcmpOptions>], 1);
    expect((await round(added)).detail?.engine).toBe('fping-loop');

    // A target dropped from the schedule is no longer served by the loop.
    icmp.prepare?.(slow);
    await pollUntil('the dropped group to stop', () => engine.pids().length === 1);
    expect((await round(added)).detail?.engine).toBe('fping');
  });

  it('each source (kind) announces its own set; prepares in one debounce window all take effect', async () => {
    // The agent announces every kind in one go: the second prepare lands inside the first's
    // debounce window and must not leave both unserved.
    engine.prepare(
      [{ name: 'a/icmp', host: '127.0.8.1', family: 0, count: 1, intervalMs: 400, timeoutMs: 300 }],
      'icmp',
    );
    engine.prepare(
      [
        {
          name: 'a/mtu',
          host: '127.0.8.1',
          family: 0,
          count: 1,
          sizeBytes: 1500,
          dontFragment: true,
          intervalMs: 400,
          timeoutMs: 300,
        },
      ],
      'mtu',
    );
    const icmpPid = await pollUntil('the icmp fping', () => engine.pidOf('a/icmp'), {
      timeoutMs: 2000,
      intervalMs: 10,
    });
    const mtuPid = await pollUntil('the mtu fping', () => engine.pidOf('a/mtu'), {
      timeoutMs: 2000,
      intervalMs: 10,
    });
    // Same address, other size and Don't Fragment: another fping.
    expect(mtuPid).not.toBe(icmpPid);
    const args = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    expect(args(mtuPid)).toEqual(expect.arrayContaining(['-M', '-b', String(1500 - 28)]));
    expect(args(icmpPid)).not.toContain('-M');
    // A new set from one source leaves the other's targets alone.
    engine.prepare([], 'icmp');
    await pollUntil('the icmp fping to stop', () => !engine.pids().includes(icmpPid), {
      timeoutMs: 2000,
      intervalMs: 10,
    });
    expect(engine.pids()).toEqual([mtuPid]);
    expect(engine.pidOf('a/icmp')).toBeUndefined();
    expect(engine.pidOf('a/mtu')).toBe(mtuPid);
  });

  it('unprepared targets, other options and cold rounds run on the batching engine', async () => {
    const t = scheduled('127.0.3.1', { count: 2 }, 400, 300);
    icmp.prepare?.([t]);
    // Before fping has started (debounce) there is nothing to report: the batch answers.
    const cold = await round(t);
    expect(cold.class).toBe('ok');
    expect(cold.detail?.engine).toBe('fping');

    await warm([t], 1);
    const other = await round(scheduled('127.0.3.1', { count: 3 }, 400, 300));
    expect(other.detail?.engine).toBe('fping');
    const oneShot = await round(scheduled('127.0.3.2', { count: 1 }, 400, 300));
    expect(oneShot.detail?.engine).toBe('fping');
    const pinned = await round(scheduled('127.0.3.1', { count: 2, engine: 'ping' }, 400, 300));
    expect(pinned.detail?.engine).toBe('ping');
    expect((await round(t)).detail?.engine).toBe('fping-loop');
  });

  it('a probe out of schedule answers itself and drops what the loop buffered: older packets never follow a newer answer', async () => {
    const t = scheduled('127.0.3.1', { count: 2 }, 400, 300);
    icmp.prepare?.([t]);
    await warm([t], 2);
    const now = await runProbe(icmp, t.target, t.options, { timeoutMs: 300, now: true });
    expect(now.detail?.engine).toBe('fping');
    expect(engine.buffered(t.target.name)).toBe(0);
    // The next round reports only packets sent after that answer (it waits for one).
    const next = await round(t, 1000);
    expect(next.class).toBe('ok');
  });

  it('a round with nothing in yet waits for a packet that is due, and answers an abort at once', async () => {
    engine = new FpingLoopEngine({ maxWaitMs: 300 });
    icmpEngines.loop = engine;
    const t = scheduled('127.0.7.1', { count: 1 }, 100, 90);
    icmp.prepare?.([t]);
    await warm([t], 1);
    const req = {
      name: t.target.name,
      host: t.target.host,
      family: 0 as const,
      count: 1,
      ip: '127.0.7.1',
      timeoutMs: 250,
      signal: new AbortController().signal,
    };
    expect((await engine.round(req))?.rttsMs.length).toBeGreaterThanOrEqual(1);
    // Drained: the next packet is at most one period (100 ms) away, so the round waits for it.
    const t0 = performance.now();
    const next = await engine.round(req);
    expect(next?.engine).toBe('fping-loop');
    expect(next?.rttsMs).toHaveLength(1);
    expect(performance.now() - t0).toBeLessThan(150);

    const controller = new AbortController();
    const waiting = engine.round({ ...req, signal: controller.signal });
    controller.abort();
    const r = await waiting;
    expect(r?.aborted).toBe(true);
  });

  it('with a pipe instead of a FIFO, rounds are served the same way', async () => {
    engine = new FpingLoopEngine({ fifo: false });
    icmpEngines.loop = engine;
    const targets = [1, 2, 3].map((i) => scheduled(`127.0.8.${i}`, { count: 2 }, 200, 150));
    icmp.prepare?.(targets);
    await warm(targets, 2);
    for (const r of await Promise.all(targets.map((t) => round(t)))) {
      expect(r.class).toBe('ok');
      expect(r.detail?.engine).toBe('fping-loop');
    }
  });

  it.runIf(hasV6Loopback)('::1 runs in an fping of its own (-6)', async () => {
    const v6 = scheduled('::1', { count: 1 }, 200, 150);
    const v4 = scheduled('127.0.9.1', { count: 1 }, 200, 150);
    icmp.prepare?.([v6, v4]);
    await warm([v6, v4], 1);
    expect(engine.pidOf('::1')).not.toBe(engine.pidOf('127.0.9.1'));
    const r = await round(v6);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ engine: 'fping-loop', ip: '::1' });
  });

  it('a hostname is resolved at prepare time and pinged by address', async () => {
    const t = scheduled('localhost', { count: 1, family: 4 }, 300, 200, 'loopback-by-name');
    icmp.prepare?.([t]);
    await warm([t], 1);
    const r = await round(t);
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ engine: 'fping-loop', ip: '127.0.0.1' });
    expect(r.timings.dnsMs).toBeGreaterThanOrEqual(0);

    // The name resolving elsewhere once (several addresses) changes nothing; three rounds in
    // a row and the loop follows it.
    const pid = engine.pidOf(t.target.name);
    const req = {
      name: t.target.name,
      host: 'localhost',
      family: 4 as const,
      count: 1,
      ip: '127.0.0.2',
      timeoutMs: 200,
      signal: new AbortController().signal,
    };
    await warm([t], 1);
    expect((await engine.round(req))?.ip).toBe('127.0.0.1');
    await warm([t], 1);
    expect((await engine.round(req))?.ip).toBe('127.0.0.1');
    expect(await engine.round(req)).toBeUndefined();
    await pollUntil('the loop to follow the name', () => {
      const p = engine.pidOf(t.target.name);
      return p !== undefined && p !== pid;
    });
    await warm([t], 1);
    expect((await engine.round(req))?.ip).toBe('127.0.0.2');
  });

  it('fping killed from outside: rounds fail over to the batch engine, the loop restarts', async () => {
    const t = scheduled('127.0.4.1', { count: 2 }, 200, 150);
    icmp.prepare?.([t]);
    await warm([t], 1);
    const pid = engine.pidOf(t.target.name) as number;
    process.kill(pid, 'SIGKILL');
    await pollUntil('the crash to be seen', () => engine.stats.crashes === 1, { intervalMs: 5 });
    expect(engine.stats.lastCrash).toMatch(/^fping exited with SIGKILL/);
    await round(t); // whatever came in before the kill
    const during = await round(t);
    expect(during.class).toBe('ok');
    expect(during.detail?.engine).toBe('fping');
    const restarted = await pollUntil('a new fping', () => {
      const p = engine.pidOf(t.target.name);
      return p !== undefined && p !== pid ? p : undefined;
    });
    expect(alive(restarted)).toBe(true);
    await warm([t], 1);
    expect((await round(t)).detail?.engine).toBe('fping-loop');
  });

  it('without a usable fping, prepare starts nothing and rounds fall back', async () => {
    engine.binPath = '/nonexistent/fping';
    const t = scheduled('127.0.5.1', { count: 1 }, 300, 200);
    icmp.prepare?.([t]);
    await pause(150);
    expect(engine.pids()).toEqual([]);
    const r = await round(t);
    expect(r.class).toBe('ok');
    expect(r.detail?.engine).toBe('fping');
  });

  it('close() ends every fping: no process left by PID, and rounds are no longer served', async () => {
    const targets = [
      scheduled('127.0.6.1', { count: 1 }, 300, 200),
      scheduled('127.0.6.2', { count: 3 }, 300, 200),
    ];
    icmp.prepare?.(targets);
    const pids = await pollUntil('two fpings', () => engine.pids().length === 2 && engine.pids());
    await icmp.close?.();
    for (const pid of pids) {
      expect(alive(pid)).toBe(false);
      expect(existsSync(`/proc/${pid}`)).toBe(false);
    }
    expect(engine.pids()).toEqual([]);
    expect((await round(targets[0] as ScheduledTarget<IcmpOptions>)).detail?.engine).toBe('fping');
  });
});

describe.runIf(canUseNetns)('icmp loop engine across a network', () => {
  let net: TestNet;
  let silent: TestHost;
  let rejecting: TestHost;
  let lossy: TestHost;
  let slow: TestHost;
  beforeAll(async () => {
    net = await TestNet.create();
    [silent, rejecting, lossy, slow] = await Promise.all([
      net.addHost('silent'),
      net.addHost('reject'),
      net.addHost('lossy'),
      net.addHost('slow'),
    ]);
    await Promise.all([
      net.icmpFilter(silent, 'drop'),
      net.icmpFilter(rejecting, 'reject'),
      net.icmpFilter(lossy, 'lose-half'),
    ]);
  });
  afterAll(async () => {
    await net?.destroy();
  });

  it('silence is icmp_timeout, a reject is icmp_unreachable, half loss is ok with its ratio', async () => {
    const quiet = scheduled(silent.ip, { count: 2 }, 400, 300);
    const rejected = scheduled(rejecting.ip, { count: 2 }, 400, 300);
    const lossyT = scheduled(lossy.ip, { count: 10 }, 500, 400);
    const live = scheduled(net.gateway, { count: 2 }, 400, 300);
    icmp.prepare?.([quiet, rejected, lossyT, live]);
    await warm([quiet, rejected, live], 2);

    const [q, rej, ok] = await Promise.all([round(quiet), round(rejected), round(live)]);
    expect(q.class).toBe('icmp_timeout');
    expect(q.error?.code).toBe('FL_ICMP_TIMEOUT');
    expect(q.detail).toMatchObject({ engine: 'fping-loop', received: 0, lossRatio: 1 });
    expect(q.detail?.sent).toBeGreaterThanOrEqual(2);
    // The round reports what the loop already knows: it does not wait out a timeout.
    expect(q.timings.totalMs).toBeLessThan(60);

    expect(rej.class).toBe('icmp_unreachable');
    expect(rej.error?.code).toBe('ICMP_UNREACH_HOST');
    expect(rej.detail?.icmpError).toEqual({
      type: 3,
      code: 1,
      name: 'ICMP_UNREACH_HOST',
      from: rejecting.ip,
    });
    expect(rej.detail?.engine).toBe('fping-loop');

    expect(ok.class).toBe('ok');
    expect(ok.detail?.engine).toBe('fping-loop');

    // Several rounds of the lossy host: each one ok with some loss; the loss adds up to about half.
    await warm([lossyT], 10);
    let sent = 0;
    let received = 0;
    let partial = 0;
    for (let k = 0; k < 4; k++) {
      if (k > 0) await pause(500);
      const r = await round(lossyT);
      expect(r.class).toBe('ok');
      expect(r.detail?.engine).toBe('fping-loop');
      const loss = r.detail?.lossRatio as number;
      if (loss > 0 && loss < 1) partial++;
      sent += r.detail?.sent as number;
      received += r.detail?.received as number;
    }
    expect(partial).toBeGreaterThanOrEqual(3);
    expect(sent).toBeGreaterThanOrEqual(38);
    expect(received / sent).toBeGreaterThan(0.2);
    expect(received / sent).toBeLessThan(0.8);
  });

  it.runIf(hasPython)(
    'a reply slower than the packet period still counts, within the timeout',
    async () => {
      await net.exec(slow, 'sysctl', ['-q', '-w', 'net.ipv4.icmp_echo_ignore_all=1']);
      net.spawn(slow, 'python3', ['-c', slowEcho, '0.25']);
      // 4 packets a round, 100 ms apart; each reply takes 250 ms.
      const t = scheduled(slow.ip, { count: 4 }, 400, 350);
      icmp.prepare?.([t]);
      await warm([t], 4);
      const first = await round(t); // may include packets from before python listened
      await warm([t], 4);
      const r = await round(t);
      expect(r.class, JSON.stringify([first.detail, r.detail])).toBe('ok');
      expect(r.detail?.engine).toBe('fping-loop');
      expect(r.detail?.lossRatio, JSON.stringify([first.detail, r.detail])).toBe(0);
      expect(r.timings.rttMs).toBeGreaterThan(240);
      expect(r.timings.rttMs).toBeLessThan(340);
    },
  );
});
