import { spawnSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canUseNetns, sh, TestNet, type TestHost } from '../../lab/netns.js';
import { ensureBuilt, repoRoot } from '../../test/helpers/cli.js';
import { icmp, icmpOptions } from '../icmp.js';
import { runProbe } from '../run.js';
import { parseTarget } from '../target.js';
import type { ProbeResult } from '../../wire/result.js';
import { closeIcmpEngines, icmpEngines } from './echo.js';
import type { IcmpEngine } from './engine.js';
import { FpingEngine } from './fping.js';
import { defaultAddonPath, icmpErrorName, SocketEngine } from './socket.js';

/*
 * The socket engine: echoes from the agent's own ICMP socket (native/icmp). The tests run as
 * root, so in this process the socket is a raw one; the unprivileged ping socket is tested
 * in a child process that runs as nobody.
 */

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

/** Runs `fn` with `engine` as the icmp probes' socket engine, and puts the real one back. */
async function withSocketEngine<T>(engine: IcmpEngine, fn: () => Promise<T>): Promise<T> {
  const saved = icmpEngines.socket;
  icmpEngines.socket = engine;
  try {
    return await fn();
  } finally {
    icmpEngines.socket = saved;
  }
}

const hasV6Loopback = Object.values(networkInterfaces())
  .flat()
  .some((a) => a?.address === '::1');

afterAll(async () => {
  await closeIcmpEngines();
});

describe('the socket engine', () => {
  it('is built: the addon loads and a socket opens (CI builds it; see scripts/build-native.mjs)', async () => {
    expect(defaultAddonPath()).toBeDefined();
    const engine = icmpEngines.socket as SocketEngine;
    expect(await engine.available(), engine.unusableReason).toBe(true);
  });

  it('127.0.0.1 answers: auto picks the socket, with per-packet RTTs and no child process', async () => {
    const fping = new FpingEngine();
    const savedFping = icmpEngines.fping;
    icmpEngines.fping = fping;
    try {
      const r = await probe('127.0.0.1');
      expect(r.class).toBe('ok');
      expect(r.detail).toMatchObject({
        engine: 'socket',
        ip: '127.0.0.1',
        sent: 3,
        received: 3,
        lossRatio: 0,
      });
      const rtts = r.detail?.rttsMs as number[];
      expect(rtts).toHaveLength(3);
      for (const rtt of rtts) {
        expect(rtt).toBeGreaterThan(0);
        expect(rtt).toBeLessThan(10);
      }
      // Three packets 200 ms apart, and nothing waits for a timeout.
      expect(r.timings.totalMs).toBeGreaterThanOrEqual(390);
      expect(r.timings.totalMs).toBeLessThan(1000);
      expect(fping.stats.processes).toBe(0);
    } finally {
      icmpEngines.fping = savedFping;
      await fping.close();
    }
  });

  it.runIf(hasV6Loopback)('::1 answers over IPv6', async () => {
    const r = await probe('::1', { count: 2, intervalMs: 50 });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ engine: 'socket', ip: '::1', received: 2 });
  });

  it('300 concurrent probes on one socket: each gets its own replies, none left in flight', async () => {
    const engine = icmpEngines.socket as SocketEngine;
    const rs = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        probe(`127.0.${i % 3}.${1 + (i % 200)}`, { count: 2, intervalMs: 10 }),
      ),
    );
    for (const [i, r] of rs.entries()) {
      expect(r.class).toBe('ok');
      expect(r.detail).toMatchObject({
        engine: 'socket',
        ip: `127.0.${i % 3}.${1 + (i % 200)}`,
        received: 2,
      });
    }
    expect(engine.inFlight).toBe(0);
  });

  it('a large payload (packetSize 8000) is echoed whole', async () => {
    const r = await probe('127.0.0.1', { count: 1, packetSize: 8000 });
    expect(r.class).toBe('ok');
    expect(r.detail).toMatchObject({ engine: 'socket', received: 1 });
  });

  /** Probes on loopback under auto and with the socket named, `engine` standing in for the socket. */
  async function autoAndNamed(
    engine: IcmpEngine,
  ): Promise<{ auto: ProbeResult; named: ProbeResult }> {
    return withSocketEngine(engine, async () => ({
      auto: await probe('127.0.0.1', { count: 1 }),
      named: await probe('127.0.0.1', { count: 1, engine: 'socket' }),
    }));
  }

  it('without the addon, auto falls back to fping, and the reason names the build step', async () => {
    const missing = new SocketEngine('/nonexistent/faultline_icmp.node');
    expect(await missing.available()).toBe(false);
    expect(missing.unusableReason).toContain('node scripts/build-native.mjs');
    const { auto, named } = await autoAndNamed(missing);
    expect(auto.class).toBe('ok');
    expect(auto.detail?.engine).toBe('fping');
    expect(named.class).toBe('internal_error');
    expect(named.error?.code).toBe('FL_ERR_ENGINE');
  });

  it('a socket that fails for an address family (nothing sent): auto probes on fping instead', async () => {
    // The socket engine as it answers when, say, its IPv6 socket may not open.
    const { auto, named } = await autoAndNamed({
      name: 'socket',
      available: () => Promise.resolve(true),
      echo: () =>
        Promise.resolve({
          engine: 'socket',
          rttsMs: [],
          icmpErrors: [],
          aborted: false,
          failure: { code: 'EACCES', message: 'cannot open an ICMP socket' },
        }),
      close: () => Promise.resolve(),
    });
    expect(auto.class).toBe('ok');
    expect(auto.detail?.engine).toBe('fping');
    // Named, it is what it is: the failure is the engine's, not the target's.
    expect(named.class).toBe('internal_error');
    expect(named.error?.code).toBe('EACCES');
  });

  it('close(): a probe in flight answers as aborted, and the engine opens a new socket after', async () => {
    const engine = new SocketEngine();
    await withSocketEngine(engine, async () => {
      // 127.0.0.1 answers at once; 20 packets 100 ms apart keep the probe in flight.
      const pending = probe('127.0.0.1', { count: 20, intervalMs: 100 }, 5000);
      await new Promise((r) => setTimeout(r, 150));
      await engine.close();
      const r = await pending;
      expect(r.class).toBe('ok'); // what came back before the close still counts
      expect((r.detail?.rttsMs as unknown[]).length).toBeLessThan(20);
      expect(engine.inFlight).toBe(0);
      const again = await probe('127.0.0.1', { count: 1 });
      expect(again.detail).toMatchObject({ engine: 'socket', received: 1 });
    }).finally(() => engine.close());
  });

  it('names ICMP errors as the other engines do', () => {
    expect(icmpErrorName(4, 3, 1)).toBe('ICMP_UNREACH_HOST');
    expect(icmpErrorName(4, 3, 13)).toBe('ICMP_UNREACH_FILTER_PROHIB');
    expect(icmpErrorName(4, 3, 4)).toBe('ICMP_UNREACH_NEEDFRAG');
    expect(icmpErrorName(4, 11, 0)).toBe('ICMP_TIMXCEED_INTRANS');
    expect(icmpErrorName(6, 1, 3)).toBe('ICMP6_DST_UNREACH_3');
    expect(icmpErrorName(6, 2, 0)).toBe('ICMP6_PACKET_TOO_BIG');
  });
});

/** Runs an ES module `script` with node in `host`'s namespace as nobody, without any capability. */
function asNobody(host: TestHost, script: string) {
  return spawnSync(
    'ip',
    [
      'netns',
      'exec',
      host.ns,
      'setpriv',
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--bounding-set=-all',
      '--inh-caps=-all',
      process.execPath,
      '--input-type=module',
      '-e',
      script,
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
}

describe.runIf(canUseNetns)('the socket engine across a network', () => {
  let net: TestNet;
  let silent: TestHost;
  let rejecting: TestHost;
  let lossy: TestHost;
  let down: TestHost;
  let prober: TestHost;
  beforeAll(async () => {
    net = await TestNet.create();
    [silent, rejecting, lossy, down, prober] = await Promise.all([
      net.addHost('silent'),
      net.addHost('reject'),
      net.addHost('lossy'),
      net.addHost('down'),
      net.addHost('prober'),
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

  it('ok, icmp_timeout at the timeout, and icmp_unreachable from the ICMP type, ending at the error', async () => {
    const [ok, timeout, unreachable] = await Promise.all([
      probe(prober.ip),
      probe(silent.ip, {}, 1000),
      probe(rejecting.ip, {}, 2000),
    ]);
    expect(ok.class).toBe('ok');
    expect(ok.detail).toMatchObject({ engine: 'socket', sent: 3, received: 3 });
    expect(timeout.class).toBe('icmp_timeout');
    expect(timeout.detail).toMatchObject({
      engine: 'socket',
      sent: 3,
      received: 0,
      rttsMs: [null, null, null],
    });
    expect(timeout.timings.totalMs).toBeGreaterThan(800);
    expect(timeout.timings.totalMs).toBeLessThan(1100);
    expect(unreachable.class).toBe('icmp_unreachable');
    expect(unreachable.error?.code).toBe('ICMP_UNREACH_HOST');
    expect(unreachable.detail?.icmpError).toEqual({
      type: 3,
      code: 1,
      name: 'ICMP_UNREACH_HOST',
      from: rejecting.ip,
    });
    expect(unreachable.timings.totalMs).toBeLessThan(1000);
  });

  it('random loss of half the packets is ok, with the loss ratio of the packets that came back', async () => {
    const r = await probe(lossy.ip, { count: 40, intervalMs: 10 }, 2000);
    expect(r.class).toBe('ok');
    const rtts = r.detail?.rttsMs as (number | null)[];
    expect(rtts).toHaveLength(40);
    const lost = rtts.filter((x) => x === null).length;
    expect(lost).toBeGreaterThan(0);
    expect(lost).toBeLessThan(40);
    expect(r.detail?.lossRatio).toBeCloseTo(lost / 40, 5);
  });

  it('an address nobody holds, and a host whose link is down: icmp_unreachable from our own stack', async () => {
    const [nobody, linkDown] = await Promise.all([
      probe(net.address(250), {}, 6000),
      probe(down.ip, {}, 6000),
    ]);
    for (const r of [nobody, linkDown]) {
      expect(r.class).toBe('icmp_unreachable');
      expect(r.detail?.engine).toBe('socket');
      expect(r.error?.code).toBe('ICMP_UNREACH_HOST');
      expect(r.detail?.icmpError).toMatchObject({ type: 3, code: 1, from: net.gateway });
    }
    // The neighbour is now known to fail: a probe right after is refused by our own stack
    // (EHOSTUNREACH on send) or answered by it, never left to time out.
    const again = await probe(net.address(250), { count: 1 }, 6000);
    expect(again.class).toBe('icmp_unreachable');
  }, 15_000);

  it('unprivileged (nobody, no capability): a ping socket where net.ipv4.ping_group_range allows it', async () => {
    ensureBuilt();
    await sh('ip', [
      'netns',
      'exec',
      prober.ns,
      'sysctl',
      '-q',
      '-w',
      'net.ipv4.ping_group_range=0 2147483647',
    ]);
    const moduleUrl = pathToFileURL(join(repoRoot, 'dist/probes/icmp/socket.js')).href;
    const script = `
      const { SocketEngine } = await import(${JSON.stringify(moduleUrl)});
      const engine = new SocketEngine();
      const ok = await engine.available();
      const echo = (ip) => engine.echo({ ip, family: 4, count: 2, intervalMs: 20, timeoutMs: 1000, signal: new AbortController().signal });
      const [gateway, rejecting, silent] = ok ? await Promise.all(${JSON.stringify([net.gateway, rejecting.ip, silent.ip])}.map(echo)) : [];
      console.log(JSON.stringify({ ok, reason: engine.unusableReason, raw: engine.raw, uid: process.getuid(), gateway, rejecting, silent }));
      await engine.close();`;
    const run = asNobody(prober, script);
    expect(run.status, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ ok: true, raw: false, uid: 65534 });
    expect(out.gateway).toMatchObject({ engine: 'socket', aborted: false });
    expect((out.gateway as { rttsMs: unknown[] }).rttsMs.every((r) => typeof r === 'number')).toBe(
      true,
    );
    expect((out.rejecting as { icmpErrors: unknown[] }).icmpErrors[0]).toMatchObject({
      type: 3,
      code: 1,
      name: 'ICMP_UNREACH_HOST',
      from: rejecting.ip,
    });
    expect(out.silent).toMatchObject({ rttsMs: [null, null], icmpErrors: [] });

    // The same process without that sysctl (the kernel's default, "1 0") and without
    // CAP_NET_RAW: no socket, and the reason says so; auto then falls back to fping.
    await sh('ip', [
      'netns',
      'exec',
      prober.ns,
      'sysctl',
      '-q',
      '-w',
      'net.ipv4.ping_group_range=1 0',
    ]);
    const denied = asNobody(prober, script);
    expect(denied.status, denied.stderr).toBe(0);
    const deniedOut = JSON.parse(denied.stdout) as { ok: boolean; reason: string };
    expect(deniedOut.ok).toBe(false);
    expect(deniedOut.reason).toMatch(/cannot open an ICMP socket: .*\((EPERM|EACCES)\)/);
  }, 60_000);
});
