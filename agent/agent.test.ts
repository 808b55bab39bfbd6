import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, beforeAll, afterAll, describe, expect, it, vi } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../lab/netns.js';
import { pollUntil } from '../lab/poll-until.js';
import { tcp } from '../probes/tcp.js';
import type { ProbeResult } from '../wire/result.js';
import { Agent } from './agent.js';
import { adaptiveTcpFloorMs, ConfirmBudget } from './confirm.js';
import { parseAgentConfig } from './config.js';
import { createLogger } from '../lib/logger.js';

function memoryLog(): {
  log: ReturnType<typeof createLogger>;
  lines: () => Array<Record<string, unknown>>;
} {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return {
    log: createLogger('agent', { agent: 't' }, sink),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('Agent in-process', () => {
  let server: Server;
  let port: number;
  let agent: Agent | undefined;
  beforeAll(async () => {
    server = createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await agent?.stop(1000);
    agent = undefined;
  });

  function config(): ReturnType<typeof parseAgentConfig> {
    return parseAgentConfig(
      `agent: { name: t }\nmetrics: { listen: "" }\ndefaults: { interval: 200ms, timeout: 150ms }\ntargets:\n` +
        `  - { name: a, kind: tcp, address: "127.0.0.1:${port}" }\n` +
        `  - { name: b, kind: tcp, address: "127.0.0.1:${port}" }\n`,
      'test.yaml',
    );
  }

  it('a probe that throws becomes internal_error; the agent and the other targets go on', async () => {
    const realRun = tcp.run.bind(tcp);
    const { log, lines } = memoryLog();
    agent = await Agent.start(config(), log);
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    // Break target "a" after the agent has started: every further probe of it throws.
    vi.spyOn(tcp, 'run').mockImplementation(async (target, options, ctx) => {
      if (target.name === 'a') throw new Error('boom: a bug in a probe');
      return realRun(target, options, ctx);
    });
    await pollUntil(
      'an internal_error result',
      () => results.find((r) => r.class === 'internal_error'),
      { timeoutMs: 5000 },
    );
    const okAfter = results.length;
    await pollUntil(
      'b goes on ok after a crashed',
      () => results.slice(okAfter).filter((r) => r.target === 'b' && r.class === 'ok').length >= 2,
      {
        timeoutMs: 5000,
      },
    );
    const broken = results.find((r) => r.class === 'internal_error')!;
    expect(broken.error).toMatchObject({
      code: 'FL_ERR_INTERNAL',
      message: 'boom: a bug in a probe',
    });
    expect(lines().some((l) => l.msg === 'path failing' && l.class === 'internal_error')).toBe(
      true,
    );
  });

  it('sequence numbers increase across all targets and a path state change is logged once', async () => {
    const { log, lines } = memoryLog();
    agent = await Agent.start(config(), log);
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil('six results', () => results.length >= 6, { timeoutMs: 5000 });
    const seqs = results.map((r) => r.seq);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(seqs.length);
    // Make every probe fail: refused. Only one "path failing" line per target follows.
    const realRun = tcp.run.bind(tcp);
    vi.spyOn(tcp, 'run').mockImplementation((target, options, ctx) =>
      realRun({ ...target, port: 1, address: '127.0.0.1:1' }, options, ctx),
    );
    const mark = results.length;
    await pollUntil(
      'several refused rounds',
      () => results.slice(mark).filter((r) => r.class === 'tcp_refused').length >= 6,
      {
        timeoutMs: 5000,
      },
    );
    const failing = lines().filter((l) => l.msg === 'path failing');
    expect(failing.map((l) => l.target).sort()).toEqual(['a', 'b']);
    expect(failing.every((l) => l.class === 'tcp_refused' && l.previous === 'ok')).toBe(true);
    // How long the failing probe took (for a timeout, the timeout it waited).
    expect(failing.every((l) => typeof l.ms === 'number' && l.ms >= 0)).toBe(true);
    vi.restoreAllMocks();
    await pollUntil(
      'recovered lines',
      () => lines().filter((l) => l.msg === 'path recovered').length === 2,
      { timeoutMs: 5000 },
    );
  });

  it('sequence numbers keep rising across a restart of the agent', async () => {
    const first = await Agent.start(config(), memoryLog().log);
    const before: ProbeResult[] = [];
    first.onResult((r) => before.push(r));
    await pollUntil('results', () => before.length >= 4, { timeoutMs: 5000 });
    await first.stop(1000);
    agent = await Agent.start(config(), memoryLog().log);
    const after: ProbeResult[] = [];
    agent.onResult((r) => after.push(r));
    await pollUntil('results after the restart', () => after.length >= 1, { timeoutMs: 5000 });
    // The collector orders a path's results by seq: a restarted agent must not start over.
    expect(after[0]!.seq).toBeGreaterThan(Math.max(...before.map((r) => r.seq)));
    expect(Number.isSafeInteger(after[0]!.seq)).toBe(true);
  });

  it('stop() waits for probes in flight', async () => {
    const { log } = memoryLog();
    agent = await Agent.start(config(), log);
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil('first result', () => results.length > 0);
    const realRun = tcp.run.bind(tcp);
    let started = 0;
    vi.spyOn(tcp, 'run').mockImplementation(async (target, options, ctx) => {
      started++;
      await new Promise((r) => setTimeout(r, 100));
      return realRun(target, options, ctx);
    });
    await pollUntil('a slow probe in flight', () => started > 0);
    const before = results.length;
    await agent.stop(2000);
    agent = undefined;
    expect(results.length).toBeGreaterThan(before);
  });
});

describe('Agent: confirmation bursts and adaptive timeouts', () => {
  let agent: Agent | undefined;
  const servers: Server[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    await agent?.stop(1000);
    agent = undefined;
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  async function listen(port = 0): Promise<{ server: Server; port: number }> {
    const server = createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    servers.push(server);
    return { server, port: (server.address() as { port: number }).port };
  }

  function close(server: Server): Promise<unknown> {
    servers.splice(servers.indexOf(server), 1);
    return new Promise((r) => server.close(r));
  }

  function config(targets: string, defaults = ''): ReturnType<typeof parseAgentConfig> {
    return parseAgentConfig(
      `agent: { name: t }\nmetrics: { listen: "" }\n` +
        `defaults: { interval: 1s, timeout: 500ms, confirm: { count: 3, spacing: 50ms }${defaults} }\n` +
        `targets:\n${targets}`,
      'test.yaml',
    );
  }

  it('a change of class is re-probed at once, the burst marked, in order, its regular round waiting', async () => {
    const { server, port } = await listen();
    agent = await Agent.start(
      config(`  - { name: svc, kind: tcp, address: "127.0.0.1:${port}" }\n`),
      memoryLog().log,
    );
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil('an ok round', () => results.some((r) => r.class === 'ok'), {
      timeoutMs: 5000,
    });
    expect(results.every((r) => r.confirm === undefined)).toBe(true);
    await close(server);
    const done = await pollUntil(
      'the burst after the port closed',
      () => {
        const i = results.findIndex((r) => r.confirm?.index === 0);
        return i >= 0 && results.length >= i + 4 ? results.slice(i, i + 4) : undefined;
      },
      { timeoutMs: 5000 },
    );
    expect(done.map((r) => [r.class, r.confirm])).toEqual([
      ['tcp_refused', { of: 3, index: 0 }],
      ['tcp_refused', { of: 3, index: 1 }],
      ['tcp_refused', { of: 3, index: 2 }],
      ['tcp_refused', { of: 3, index: 3 }],
    ]);
    const seqs = done.map((r) => r.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    // 50 ms apart: the burst is over well inside the 1 s interval, not a round later.
    const spanMs = done[3]!.startedAtMs - done[0]!.startedAtMs;
    expect(spanMs).toBeGreaterThanOrEqual(90);
    expect(spanMs).toBeLessThan(900);
    expect(agent.confirmStats()).toMatchObject({ bursts: 1, probes: 3, skipped: 0 });
    // The next regular round of the same class is no change: no burst.
    const mark = results.length;
    await pollUntil('a regular refused round', () => results.length > mark, { timeoutMs: 5000 });
    expect(results[mark]).toMatchObject({ class: 'tcp_refused' });
    expect(results[mark]!.confirm).toBeUndefined();
    // Recovery is confirmed the same way.
    await listen(port);
    await pollUntil(
      'the recovery burst',
      () => results.filter((r) => r.class === 'ok' && r.confirm !== undefined).length === 4,
      { timeoutMs: 5000 },
    );
    expect(agent.confirmStats()).toMatchObject({ bursts: 2, probes: 6, skipped: 0 });
    expect(agent.stats().skipped).toBe(0);
  }, 15_000);

  it("a service path failing probes the echo paths to its host at once, not at their next round; another host's are left alone", async () => {
    const { server, port } = await listen();
    // Echo paths an hour apart: only the check can run them within the test.
    agent = await Agent.start(
      config(
        `  - { name: web-svc, kind: tcp, address: "127.0.0.1:${port}", labels: { component: web } }\n` +
          `  - { name: web-icmp, kind: icmp, address: 127.0.0.1, interval: 1h, timeout: 500ms, labels: { component: web } }\n` +
          `  - { name: db-icmp, kind: icmp, address: 127.0.0.2, interval: 1h, timeout: 500ms, labels: { component: db } }\n`,
      ),
      memoryLog().log,
    );
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil('an ok round', () => results.some((r) => r.target === 'web-svc'), {
      timeoutMs: 5000,
    });
    const echoes = (name: string) => results.filter((r) => r.target === name).length;
    const [webBefore, dbBefore] = [echoes('web-icmp'), echoes('db-icmp')];
    await close(server);
    await pollUntil('the echo to web checked', () => echoes('web-icmp') > webBefore, {
      timeoutMs: 3000,
    });
    expect(echoes('db-icmp')).toBe(dbBefore);
  }, 15_000);

  it("any path failing probes the agent's other paths to the same host at once, services too", async () => {
    const { server, port } = await listen();
    const other = await listen();
    // The second port an hour apart: only the check can run it within the test.
    agent = await Agent.start(
      config(
        `  - { name: web-svc, kind: tcp, address: "127.0.0.1:${port}", labels: { component: web } }\n` +
          `  - { name: web-admin, kind: tcp, address: "127.0.0.1:${other.port}", interval: 1h, labels: { component: web } }\n`,
      ),
      memoryLog().log,
    );
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil('an ok round', () => results.some((r) => r.target === 'web-svc'), {
      timeoutMs: 5000,
    });
    const before = results.filter((r) => r.target === 'web-admin').length;
    await close(server);
    await pollUntil(
      'the other port of web checked',
      () => results.filter((r) => r.target === 'web-admin').length > before,
      { timeoutMs: 3000 },
    );
    // It still answers: a check that comes back ok changes nothing.
    expect(results.filter((r) => r.target === 'web-admin').every((r) => r.class === 'ok')).toBe(
      true,
    );
    await close(other.server);
  }, 15_000);

  it('a dozen checks of one host in flight at once: no listener-leak warning from Node', async () => {
    const { server, port } = await listen();
    const others = await Promise.all(Array.from({ length: 12 }, () => listen()));
    agent = await Agent.start(
      config(
        `  - { name: web-svc, kind: tcp, address: "127.0.0.1:${port}", labels: { component: web } }\n` +
          others
            .map(
              (o, i) =>
                `  - { name: web-${i}, kind: tcp, address: "127.0.0.1:${o.port}", interval: 1h, labels: { component: web } }\n`,
            )
            .join(''),
      ),
      memoryLog().log,
    );
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w);
    };
    process.on('warning', onWarning);
    try {
      const results: ProbeResult[] = [];
      agent.onResult((r) => results.push(r));
      await pollUntil('an ok round', () => results.some((r) => r.target === 'web-svc'), {
        timeoutMs: 5000,
      });
      await close(server);
      await pollUntil(
        'every other port of web checked',
        () => others.every((_, i) => results.some((r) => r.target === `web-${i}`)),
        { timeoutMs: 3000 },
      );
      // Node emits its warnings on a later tick.
      await new Promise((r) => setImmediate(r));
      expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  }, 15_000);

  it('the budget grants whole bursts only; what it refuses is counted and reported as before', async () => {
    const { server, port } = await listen();
    const targets = ['a', 'b', 'c']
      .map((n) => `  - { name: ${n}, kind: tcp, address: "127.0.0.1:${port}" }\n`)
      .join('');
    // Room for one burst of 3, refilled far slower than the test.
    agent = await Agent.start(config(targets), memoryLog().log, {
      confirmBudget: new ConfirmBudget(0.001, 3),
    });
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil('every path ok', () => new Set(results.map((r) => r.target)).size === 3, {
      timeoutMs: 5000,
    });
    await close(server);
    await pollUntil(
      'every path refused, one burst done',
      () =>
        ['a', 'b', 'c'].every((n) => results.some((r) => r.target === n && r.class !== 'ok')) &&
        results.filter((r) => r.confirm !== undefined).length === 4,
      { timeoutMs: 5000 },
    );
    expect(agent.confirmStats()).toMatchObject({ bursts: 1, probes: 3, skipped: 2 });
    const triggers = results.filter((r) => r.class === 'tcp_refused' && r.confirm?.index === 0);
    expect(triggers).toHaveLength(1);
    expect(agent.confirmStats().budget).toBeLessThan(1);
  }, 15_000);

  it('the timeout shrinks towards the path round trip, and adaptiveTimeout: false keeps it', async () => {
    const { port } = await listen();
    const target = `  - { name: svc, kind: tcp, address: "127.0.0.1:${port}" }\n`;
    const at = (defaults: string): ReturnType<typeof parseAgentConfig> =>
      parseAgentConfig(
        `agent: { name: t }\nmetrics: { listen: "" }\ndefaults: { ${defaults} }\ntargets:\n${target}`,
        'test.yaml',
      );
    agent = await Agent.start(at('interval: 400ms, timeout: 350ms'), memoryLog().log);
    // No baseline yet: the configured timeout.
    expect(agent.effectiveTimeoutMs('svc')).toBe(350);
    // A loopback connect takes well under a millisecond: after 5 successes, the floor — for
    // a probe riding TCP, room for one retransmission (300 ms), not 100 ms.
    await pollUntil('the floor', () => agent!.effectiveTimeoutMs('svc') === adaptiveTcpFloorMs, {
      timeoutMs: 5000,
    });
    agent.reload(at('interval: 400ms, timeout: 350ms, adaptiveTimeout: false'));
    expect(agent.effectiveTimeoutMs('svc')).toBe(350);
    agent.reload(at('interval: 400ms, timeout: 350ms'));
    expect(agent.effectiveTimeoutMs('svc')).toBe(adaptiveTcpFloorMs);
    // A changed target (here its timeout) starts afresh.
    agent.reload(at('interval: 400ms, timeout: 340ms'));
    expect(agent.effectiveTimeoutMs('svc')).toBe(340);
  }, 15_000);

  it('an echo keeps its scheduled timeout; its checks and confirmations wait twice its own echo timeout', async () => {
    agent = await Agent.start(
      parseAgentConfig(
        `agent: { name: t }\nmetrics: { listen: "" }\n` +
          `defaults: { interval: 300ms, timeout: 280ms }\n` +
          `targets:\n  - { name: lo, kind: icmp, address: 127.0.0.1, options: { count: 3 } }\n`,
        'test.yaml',
      ),
      memoryLog().log,
    );
    // No baseline yet: the target's configured timeout (the schedule's, a little under 280 ms).
    const configured = agent.effectiveTimeoutMs('lo')!;
    expect(configured).toBeGreaterThan(240);
    expect(agent.effectiveTimeoutMs('lo', true)).toBe(configured);
    // Loopback answers in microseconds: 2 × the 100 ms floor, and 2 × 20 ms between the three
    // packets — below the configured one. Scheduled rounds keep the configured timeout.
    await pollUntil('the echo baseline', () => agent!.effectiveTimeoutMs('lo', true) === 240, {
      timeoutMs: 8000,
    });
    expect(agent.effectiveTimeoutMs('lo')).toBe(configured);
  }, 15_000);

  it('a timeout caused by the shortened timeout alone is not confirmed: the burst waits twice the path timeout', async () => {
    const { port } = await listen();
    agent = await Agent.start(
      parseAgentConfig(
        `agent: { name: t }\nmetrics: { listen: "" }\n` +
          `defaults: { interval: 1s, timeout: 900ms, confirm: { count: 3, spacing: 20ms } }\n` +
          `targets:\n  - { name: svc, kind: tcp, address: "127.0.0.1:${port}" }\n`,
        'test.yaml',
      ),
      memoryLog().log,
    );
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    await pollUntil(
      'the shortened timeout',
      () => agent!.effectiveTimeoutMs('svc') === adaptiveTcpFloorMs,
      { timeoutMs: 5000 },
    );
    expect(agent.effectiveTimeoutMs('svc', true)).toBe(2 * adaptiveTcpFloorMs);
    // The path gets slow but stays healthy: each connect now takes 350 ms, past the
    // shortened 300 ms and well inside twice it (and the configured 900 ms).
    const realRun = tcp.run.bind(tcp);
    const timeouts: number[] = [];
    vi.spyOn(tcp, 'run').mockImplementation(async (target, options, ctx) => {
      timeouts.push(ctx.timeoutMs);
      await new Promise((r) => setTimeout(r, Math.min(350, ctx.timeoutMs)));
      if (ctx.timeoutMs < 350)
        return {
          class: 'tcp_timeout',
          timings: { totalMs: ctx.timeoutMs },
          error: { code: 'ETIMEDOUT', message: 'timeout' },
        };
      const outcome = await realRun(target, options, ctx);
      return { ...outcome, timings: { ...outcome.timings, connectMs: 350, totalMs: 350 } };
    });
    const burst = await pollUntil(
      'the burst after the shortened timeout',
      () => {
        const i = results.findIndex((r) => r.confirm?.index === 0);
        return i >= 0 && results.length >= i + 4 ? results.slice(i, i + 4) : undefined;
      },
      { timeoutMs: 5000 },
    );
    expect(burst.map((r) => r.class)).toEqual(['tcp_timeout', 'ok', 'ok', 'ok']);
    // The re-probes wait twice the path's own timeout (TCP's doubled RTO), not the
    // configured 900 ms: a dead path is confirmed 300 ms sooner.
    const reprobe = 2 * adaptiveTcpFloorMs;
    expect(timeouts.slice(0, 4)).toEqual([adaptiveTcpFloorMs, reprobe, reprobe, reprobe]);
    // And the rounds after it are probed in full until the estimate has grown.
    const mark = results.length;
    await pollUntil('two more rounds', () => results.length >= mark + 2, { timeoutMs: 5000 });
    expect(
      results.slice(mark).map((r) => r.class),
      JSON.stringify(timeouts),
    ).toEqual(results.slice(mark).map(() => 'ok'));
  }, 20_000);
});

describe.runIf(canUseNetns)('Agent: scheduled mtu targets', () => {
  let net: TestNet;
  let host: TestHost;
  let agent: Agent | undefined;
  beforeAll(async () => {
    net = await TestNet.create();
    host = await net.addHost('mtu');
  });
  afterEach(async () => {
    await agent?.stop(1000);
    agent = undefined;
  });
  afterAll(async () => {
    await net?.destroy();
  });

  it('run on the socket loop beside icmp, with results and metrics like every kind', async () => {
    // The bridge, the agent's own interface toward the host, is 1500 bytes: a 9000-byte
    // packet with Don't Fragment cannot leave.
    const config = parseAgentConfig(
      `agent: { name: t }\nmetrics: { listen: "127.0.0.1:0", histograms: true }\ndefaults: { interval: 300ms, timeout: 250ms }\ntargets:\n` +
        `  - { name: h-icmp, kind: icmp, address: "${host.ip}", options: { count: 2 } }\n` +
        `  - { name: h-mtu, kind: mtu, address: "${host.ip}", options: { count: 2 } }\n` +
        `  - { name: h-jumbo, kind: mtu, address: "${host.ip}", options: { count: 2, size: 9000 } }\n`,
      'test.yaml',
    );
    const { log, lines } = memoryLog();
    agent = await Agent.start(config, log);
    // The start says how echoes go out: here (root) on the agent's own raw socket.
    expect(lines().find((l) => l.msg === 'agent started')).toMatchObject({
      icmp: 'own raw ICMP socket',
    });
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    const last = (target: string) => results.filter((r) => r.target === target).at(-1);
    await pollUntil(
      'mtu and icmp rounds answered by the socket loop, and the jumbo refused',
      () =>
        last('h-mtu')?.detail?.engine === 'socket-loop' &&
        last('h-icmp')?.detail?.engine === 'socket-loop' &&
        last('h-jumbo')?.class === 'mtu_exceeded',
      { timeoutMs: 8000, intervalMs: 100 },
    );
    expect(last('h-mtu')).toMatchObject({
      kind: 'mtu',
      class: 'ok',
      detail: { sizeBytes: 1500, ip: host.ip },
    });
    expect(last('h-jumbo')).toMatchObject({
      kind: 'mtu',
      error: { code: 'EMSGSIZE' },
      detail: { sizeBytes: 9000, nextHopMtu: 1500 },
    });
    const metrics = await (await fetch(agent.metricsUrl()!)).text();
    const mtuLabels = 'agent="t",target="h-mtu",kind="mtu"';
    expect(metrics).toContain(`probe_success{${mtuLabels},address="${host.ip}"} 1`);
    expect(metrics).toMatch(
      new RegExp(`faultline_probe_icmp_rtt_seconds_count\\{${mtuLabels}\\} [1-9]`),
    );
    expect(metrics).toContain(
      'faultline_probe_state{agent="t",target="h-jumbo",kind="mtu",class="mtu_exceeded"} 1',
    );
  }, 15_000);
});
