import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeResult } from '../wire/result.js';
import { canUseNetns, sh, TestNet, type TestHost } from '../lab/netns.js';
import { pollUntil } from '../lab/poll-until.js';
import { icmp, icmpOptions } from './icmp.js';
import { closeIcmpEngines, icmpEngines } from './icmp/echo.js';
import { SocketEngine } from './icmp/socket.js';
import { FpingEngine } from './icmp/fping.js';
import { FpingLoopEngine } from './icmp/fping-loop.js';
import { PingEngine } from './icmp/ping.js';
import { mtu, mtuOptions } from './mtu.js';
import { runProbe } from './run.js';
import { parseTarget } from './target.js';
import type { ScheduledTarget } from './types.js';

function probe(address: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(mtu, parseTarget(address, mtu.target), mtuOptions.parse(options), {
    timeoutMs,
  });
}

function ping(address: string, options: Record<string, unknown> = {}, timeoutMs = 2000) {
  return runProbe(icmp, parseTarget(address, icmp.target), icmpOptions.parse(options), {
    timeoutMs,
  });
}

const hasV6Loopback = Object.values(networkInterfaces())
  .flat()
  .some((a) => a?.address === '::1');

/** The command line of a process, as its arguments. */
function argsOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
}

afterAll(async () => {
  await closeIcmpEngines();
});

describe('mtu options', () => {
  it('default to a 1500-byte packet, three echoes, and reject unknown keys', () => {
    expect(mtuOptions.parse({})).toEqual({
      size: 1500,
      count: 3,
      intervalMs: 200,
      engine: 'auto',
      family: 0,
    });
    expect(mtuOptions.parse({ size: 9000 }).size).toBe(9000);
    expect(mtuOptions.parse({ size: 576, family: 4 }).size).toBe(576);
    expect(mtuOptions.parse({ size: 1280, family: 6 }).size).toBe(1280);
    // The payload is not an mtu option: the packet's size is.
    expect(mtuOptions.safeParse({ packetSize: 1472 }).success).toBe(false);
    expect(mtuOptions.safeParse({ sise: 1500 }).success).toBe(false);
  });

  it.each([
    [{ size: 67 }, /expected number to be >=68/],
    [{ size: 65_536 }, /expected number to be <=65535/],
    [{ size: 1500.5 }, /expected int/],
    [{ size: '1500' }, /expected number/],
    [
      { size: 1000, family: 6 },
      /expected at least 1280 with family 6: every IPv6 link carries 1280-byte packets/,
    ],
  ])('refuses %j with a clear message', (options, message) => {
    const parsed = mtuOptions.safeParse(options);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['size']);
    expect(parsed.error?.issues[0]?.message).toMatch(message);
  });
});

describe('mtu probe on loopback', () => {
  it('a 1500-byte echo with Don’t Fragment answers: ok, on the agent’s socket first, with the size in detail', async () => {
    const r = await probe('127.0.0.1', { count: 2, intervalMs: 50 });
    expect(r.class).toBe('ok');
    expect(r.kind).toBe('mtu');
    expect(r.timings.rttMs).toBeGreaterThan(0);
    expect(r.detail).toMatchObject({
      engine: 'socket',
      ip: '127.0.0.1',
      sent: 2,
      received: 2,
      sizeBytes: 1500,
    });
    expect(r.detail).not.toHaveProperty('nextHopMtu');
  });

  it('on ping and fping too, and up to the largest IP packet (loopback carries 64 KiB)', async () => {
    const viaPing = await probe('127.0.0.1', { engine: 'ping', count: 1 });
    expect(viaPing.class).toBe('ok');
    expect(viaPing.detail).toMatchObject({ engine: 'ping', received: 1, sizeBytes: 1500 });
    const viaFping = await probe('127.0.0.1', { engine: 'fping', count: 1 });
    expect(viaFping.class).toBe('ok');
    expect(viaFping.detail).toMatchObject({ engine: 'fping', received: 1, sizeBytes: 1500 });
    for (const engine of ['socket', 'ping']) {
      const largest = await probe('127.0.0.1', { size: 65_535, count: 1, engine });
      expect(largest.class).toBe('ok');
      expect(largest.detail).toMatchObject({ engine, received: 1, sizeBytes: 65_535 });
    }
  });

  it.runIf(hasV6Loopback)(
    'over IPv6 the payload is size − 48, and a size below 1280 is refused',
    async () => {
      const ok = await probe('::1', { size: 1280, count: 1 });
      expect(ok.class).toBe('ok');
      expect(ok.detail).toMatchObject({ ip: '::1', sizeBytes: 1280 });
      const small = await probe('::1', { size: 1000 });
      expect(small.class).toBe('internal_error');
      expect(small.error?.code).toBe('FL_ERR_OPTIONS');
      expect(small.error?.message).toMatch(/size 1000 is below IPv6's minimum MTU/);
    },
  );
});

/**
 * The engines run inside `host`'s namespace (their binary a wrapper that execs it there),
 * so probes are sent from that host, as an agent on it would send them.
 */
class HostEngines {
  readonly fping: FpingEngine;
  readonly ping: PingEngine;
  readonly loop: FpingLoopEngine;

  constructor(host: TestHost, dir: string) {
    const wrap = (program: string): string => {
      const file = join(dir, `${host.ns}-${program}`);
      writeFileSync(file, `#!/bin/sh\nexec ip netns exec ${host.ns} ${program} "$@"\n`, {
        mode: 0o755,
      });
      return file;
    };
    this.fping = new FpingEngine({ binPath: wrap('fping') });
    this.ping = new PingEngine({ binPath: wrap('ping') });
    this.loop = new FpingLoopEngine({ binPath: wrap('fping') });
  }

  /** The socket engine's socket would be this process's, not the host's: none here. */
  readonly socket = new SocketEngine('/nonexistent/faultline_icmp.node');

  /** Runs `work` with these engines in place of the default ones. */
  async use<T>(work: () => Promise<T>): Promise<T> {
    const saved = { ...icmpEngines };
    Object.assign(icmpEngines, {
      socket: this.socket,
      fping: this.fping,
      ping: this.ping,
      loop: this.loop,
    });
    try {
      return await work();
    } finally {
      Object.assign(icmpEngines, saved);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.loop.close(), this.fping.close(), this.ping.close()]);
  }
}

describe.runIf(canUseNetns)('mtu probe across namespaces', () => {
  let net: TestNet;
  let far: TestNet;
  let dir: string;
  // agent: where the probes go out; smallPort: its switch port (bridge side) is 1000 bytes;
  // healthy: all 1500; smallIf: its own interface is 1000 bytes; router: between net and far,
  // its egress toward far 1280 bytes; beyond: a host on far.
  let agent: TestHost;
  let smallPort: TestHost;
  let healthy: TestHost;
  let smallIf: TestHost;
  let router: TestHost;
  let routerFar: TestHost;
  let beyond: TestHost;
  let fromAgent: HostEngines;
  let fromSmallIf: HostEngines;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'faultline-mtu-'));
    net = await TestNet.create();
    far = await TestNet.create();
    [agent, smallPort, healthy, smallIf, router] = await Promise.all([
      net.addHost('agent'),
      net.addHost('smallport'),
      net.addHost('healthy'),
      net.addHost('smallif'),
      net.addHost('router'),
    ]);
    beyond = await far.addHost('beyond');
    routerFar = await far.attach(router, 'eth1');
    await net.setPortMtu(smallPort, 1000);
    await sh('ip', ['-n', smallIf.ns, 'link', 'set', smallIf.ifname, 'mtu', '1000']);
    await net.exec(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await sh('ip', ['-n', router.ns, 'link', 'set', routerFar.ifname, 'mtu', '1280']);
    await sh('ip', ['-n', agent.ns, 'route', 'add', far.subnet, 'via', router.ip]);
    await sh('ip', ['-n', beyond.ns, 'route', 'add', net.subnet, 'via', routerFar.ip]);
    fromAgent = new HostEngines(agent, dir);
    fromSmallIf = new HostEngines(smallIf, dir);
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled([fromAgent?.close(), fromSmallIf?.close()]);
    await far?.destroy();
    await net?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('(a) a switch port with a smaller MTU: the small echo is ok, the full-size one times out', async () => {
    await fromAgent.use(async () => {
      const small = await ping(smallPort.ip, { count: 2, intervalMs: 50 });
      expect(small.class).toBe('ok');
      const [full, viaFping, fits] = await Promise.all([
        probe(smallPort.ip, {}, 1000),
        probe(smallPort.ip, { engine: 'fping' }, 1000),
        probe(smallPort.ip, { size: 1000, count: 2, intervalMs: 50 }, 1000),
      ]);
      for (const r of [full, viaFping]) {
        expect(r.class).toBe('icmp_timeout');
        expect(r.error?.code).toBe('FL_ICMP_TIMEOUT');
        expect(r.detail).toMatchObject({ received: 0, lossRatio: 1, sizeBytes: 1500 });
      }
      // The frame the port does carry gets through: it is the size, not the host.
      expect(fits.class).toBe('ok');
      expect(fits.detail).toMatchObject({ sizeBytes: 1000 });
      // Nothing was learnt from a silent drop: once the port is fixed, the next probe is ok.
      await net.setPortMtu(smallPort, 1500);
      try {
        expect((await probe(smallPort.ip, { count: 2, intervalMs: 50 }, 1000)).class).toBe('ok');
      } finally {
        await net.setPortMtu(smallPort, 1000);
      }
    });
  });

  it('(b) a router whose egress is smaller answers "fragmentation needed": mtu_exceeded with its MTU', async () => {
    await fromAgent.use(async () => {
      expect((await ping(beyond.ip, { count: 1 })).class).toBe('ok');
      await sh('ip', ['-n', agent.ns, 'route', 'flush', 'cache']);
      const first = await probe(beyond.ip, { count: 1 });
      expect(first.class).toBe('mtu_exceeded');
      expect(first.error?.code).toBe('ICMP_UNREACH_NEEDFRAG');
      expect(first.detail).toMatchObject({
        engine: 'ping',
        sizeBytes: 1500,
        nextHopMtu: 1280,
        icmpError: { type: 3, code: 4, from: router.ip },
      });
      // The kernel learnt the path MTU: now our own stack refuses the packet (EMSGSIZE), and
      // goes on doing so until that expires (net.ipv4.route.mtu_expires, 10 min by default).
      const again = await probe(beyond.ip, { count: 1 });
      expect(again.class).toBe('mtu_exceeded');
      expect(again.error?.code).toBe('EMSGSIZE');
      expect(again.detail).toMatchObject({ nextHopMtu: 1280, sendError: { code: 'EMSGSIZE' } });
      // fping reads the same ICMP type and code (it prints no MTU).
      await sh('ip', ['-n', agent.ns, 'route', 'flush', 'cache']);
      const viaFping = await probe(beyond.ip, { engine: 'fping', count: 1 });
      expect(viaFping.class).toBe('mtu_exceeded');
      expect(viaFping.error?.code).toBe('ICMP_UNREACH_NEEDFRAG');
      expect(viaFping.detail).toMatchObject({ engine: 'fping', icmpError: { from: router.ip } });
      // A packet the path carries passes the same router.
      expect((await probe(beyond.ip, { size: 1280, count: 1 })).class).toBe('ok');
    });
  });

  it('(c) the own interface is smaller than the size: mtu_exceeded from the local stack', async () => {
    await fromSmallIf.use(async () => {
      expect((await ping(healthy.ip, { count: 1 })).class).toBe('ok');
      const r = await probe(healthy.ip, {}, 1000);
      expect(r.class).toBe('mtu_exceeded');
      expect(r.error?.code).toBe('EMSGSIZE');
      expect(r.detail).toMatchObject({
        engine: 'ping',
        nextHopMtu: 1000,
        sendErrors: 3,
        sendError: { code: 'EMSGSIZE', mtu: 1000 },
        sizeBytes: 1500,
      });
      // Refused at once, not waited for.
      expect(r.timings.totalMs).toBeLessThan(900);
    });
  });

  it('(d) a healthy path carries the full-size echo: ok', async () => {
    await fromAgent.use(async () => {
      const r = await probe(healthy.ip);
      expect(r.class).toBe('ok');
      expect(r.timings.rttMs).toBeGreaterThan(0);
      expect(r.detail).toMatchObject({ sent: 3, received: 3, lossRatio: 0, sizeBytes: 1500 });
    });
  });

  describe('scheduled (the long-lived fping)', () => {
    afterEach(async () => {
      await fromAgent.loop.close();
    });

    function scheduled(
      host: TestHost,
      name: string,
    ): ScheduledTarget<ReturnType<typeof mtuOptions.parse>> {
      return {
        target: parseTarget(host.ip, mtu.target, name),
        options: mtuOptions.parse({ count: 2 }),
        intervalMs: 400,
        timeoutMs: 300,
      };
    }

    it('rounds of scheduled mtu targets: ok from the loop, silence, and "fragmentation needed"', async () => {
      await fromAgent.use(async () => {
        const targets = [
          scheduled(healthy, 'healthy/mtu'),
          scheduled(smallPort, 'smallport/mtu'),
          scheduled(beyond, 'beyond/mtu'),
        ];
        const small: ScheduledTarget<ReturnType<typeof icmpOptions.parse>> = {
          target: parseTarget(smallPort.ip, icmp.target, 'smallport/icmp'),
          options: icmpOptions.parse({ count: 2 }),
          intervalMs: 400,
          timeoutMs: 300,
        };
        mtu.prepare?.(targets);
        icmp.prepare?.([small]);
        // Two kinds, two fpings: the mtu one sends 1472-byte payloads with Don't Fragment.
        const mtuPid = await pollUntil('the mtu fping', () => fromAgent.loop.pidOf('healthy/mtu'));
        const icmpPid = await pollUntil('the icmp fping', () =>
          fromAgent.loop.pidOf('smallport/icmp'),
        );
        expect(mtuPid).not.toBe(icmpPid);
        expect(argsOf(mtuPid)).toEqual(expect.arrayContaining(['-M', '-b', '1472']));
        expect(argsOf(icmpPid)).not.toContain('-M');
        // Every mtu target of the agent is in that one fping.
        expect(fromAgent.loop.pidOf('smallport/mtu')).toBe(mtuPid);

        const round = <O>(t: ScheduledTarget<O>, def: typeof mtu | typeof icmp) =>
          runProbe(def as typeof mtu, t.target, t.options as never, { timeoutMs: t.timeoutMs });
        const seen = new Map<string, ProbeResult>();
        await pollUntil(
          'a verdict from the loop for every target',
          async () => {
            const results = await Promise.all([
              ...targets.map((t) => round(t, mtu)),
              round(small, icmp),
            ]);
            for (const r of results) {
              const known = seen.get(r.target);
              // Keep the first result the loop itself answered, per target and class.
              if (known === undefined || known.detail?.engine !== 'fping-loop')
                seen.set(r.target, r);
            }
            return (
              ['healthy/mtu', 'smallport/mtu', 'smallport/icmp'].every(
                (n) => seen.get(n)?.detail?.engine === 'fping-loop',
              ) && seen.get('beyond/mtu')?.class === 'mtu_exceeded'
            );
          },
          { timeoutMs: 8000, intervalMs: 400 },
        );
        expect(seen.get('healthy/mtu')).toMatchObject({ class: 'ok', detail: { sizeBytes: 1500 } });
        expect(seen.get('smallport/mtu')?.class).toBe('icmp_timeout');
        expect(seen.get('smallport/icmp')?.class).toBe('ok');
        expect(seen.get('beyond/mtu')?.detail).toMatchObject({ sizeBytes: 1500 });

        // Re-announcing the icmp targets leaves the mtu fping alone.
        icmp.prepare?.([]);
        await pollUntil(
          'the icmp fping to go',
          () => fromAgent.loop.pidOf('smallport/icmp') === undefined,
        );
        expect(fromAgent.loop.pidOf('healthy/mtu')).toBe(mtuPid);
      });
    });
  });
});
