import { createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, beforeAll, afterAll, describe, expect, it, vi } from 'vitest';
import { canUseNetns, TestNet, type TestHost } from '../test/helpers/netns.js';
import { pollUntil } from '../test/helpers/poll-until.js';
import { tcp } from '../probes/tcp.js';
import type { ProbeResult } from '../wire/result.js';
import { Agent } from './agent.js';
import { parseAgentConfig } from './config.js';
import { createLogger } from './logger.js';

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
    log: createLogger({ agent: 't' }, sink),
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

  it('run on the long-lived fping beside icmp, with results and metrics like every kind', async () => {
    // The bridge, the agent's own interface toward the host, is 1500 bytes: a 9000-byte
    // packet with Don't Fragment cannot leave.
    const config = parseAgentConfig(
      `agent: { name: t }\nmetrics: { listen: "127.0.0.1:0" }\ndefaults: { interval: 300ms, timeout: 250ms }\ntargets:\n` +
        `  - { name: h-icmp, kind: icmp, address: "${host.ip}", options: { count: 2 } }\n` +
        `  - { name: h-mtu, kind: mtu, address: "${host.ip}", options: { count: 2 } }\n` +
        `  - { name: h-jumbo, kind: mtu, address: "${host.ip}", options: { count: 2, size: 9000 } }\n`,
      'test.yaml',
    );
    agent = await Agent.start(config, memoryLog().log);
    const results: ProbeResult[] = [];
    agent.onResult((r) => results.push(r));
    const last = (target: string) => results.filter((r) => r.target === target).at(-1);
    await pollUntil(
      'mtu rounds answered by the loop engine, and the jumbo refused',
      () =>
        last('h-mtu')?.detail?.engine === 'fping-loop' &&
        last('h-icmp')?.detail?.engine === 'fping-loop' &&
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
    expect(metrics).toContain(`probe_success{${mtuLabels}} 1`);
    expect(metrics).toMatch(
      new RegExp(`faultline_probe_icmp_rtt_seconds_count\\{${mtuLabels}\\} [1-9]`),
    );
    expect(metrics).toContain(
      'faultline_probe_state{agent="t",target="h-jumbo",kind="mtu",class="mtu_exceeded"} 1',
    );
  }, 15_000);
});
