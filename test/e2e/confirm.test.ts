import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import {
  createConnection,
  createServer as createTcpServer,
  type Server as TcpServer,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PathState } from '../../collector/types.js';
import { cliPath, ensureBuilt } from '../helpers/cli.js';
import { CollectorProcess, sumMetric } from '../helpers/collector-process.js';
import { canUseNetns, TestNet, type TestHost } from '../../lab/netns.js';
import { pollUntil } from '../../lab/poll-until.js';
import { diesWithParent, freePort } from '../../lab/server-process.js';
import { viewersYaml } from '../helpers/viewer.js';

/**
 * Issue 14 end to end, with a real `faultline collector` and a real `faultline agent
 * --collector` process on loopback: a TCP service that stops listening is `failing` in the
 * collector's path matrix well under 2 s after the stop (the agent confirms the change with
 * a burst instead of waiting two more 1 s rounds), a heal shows as fast, and one failed
 * probe — an HTTP service that answers 500 exactly once — raises nothing. In namespaces: a
 * blackholed service (SYNs dropped: timeouts) with adaptive timeouts on and off, and a path
 * that turns slow but stays healthy, which the shortened timeout must not make failing.
 */

const token = randomBytes(16).toString('hex');
const dirs: string[] = [];

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `faultline-confirm-${prefix}-`));
  dirs.push(d);
  return d;
}

async function listenTcp(port: number): Promise<TcpServer> {
  const server = createTcpServer((s) => {
    s.on('error', () => undefined);
    s.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

beforeAll(() => {
  ensureBuilt();
}, 120_000);

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A real collector and one real agent reporting to it, torn down together. */
class Pair {
  agentLog = '';
  private constructor(
    readonly collector: CollectorProcess,
    readonly agent: ChildProcess,
    readonly metricsPort: number,
  ) {
    agent.stderr?.on('data', (d: Buffer) => (this.agentLog += d.toString()));
  }

  /** `probes` and `inventory` are YAML lines of the collector config. */
  static async start(probes: readonly string[], inventory: readonly string[]): Promise<Pair> {
    const dir = tempDir('collector');
    const port = await freePort();
    const config = join(dir, 'collector.yaml');
    writeFileSync(
      config,
      [
        `listen: 127.0.0.1:${port}`,
        `dataDir: ${join(dir, 'data')}`,
        'tokens:',
        `  - { name: fleet, token: ${token} }`,
        ...viewersYaml,
        'probes:',
        ...probes,
        // These tests time one fall, again and again, seconds apart: flap damping would
        // (rightly) read the third as a flapping path, and show it as loss.
        'diagnosis:',
        '  flapDamping: false',
        'inventory:',
        '  components:',
        ...inventory,
        '',
      ].join('\n'),
    );
    const collector = await CollectorProcess.start(config, `http://127.0.0.1:${port}`);
    const metricsPort = await freePort();
    const [cmd, args] = diesWithParent(process.execPath, [
      cliPath,
      'agent',
      '--collector',
      collector.url,
      '--token',
      token,
      '--name',
      'prober',
      '--state-dir',
      tempDir('state'),
      '--metrics',
      `127.0.0.1:${metricsPort}`,
    ]);
    const agent = spawn(cmd, args, {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return new Pair(collector, agent, metricsPort);
  }

  async path(target: string): Promise<PathState | undefined> {
    const doc = await this.collector.get<{ paths: PathState[] }>('/api/v1/paths');
    return doc.paths.find((p) => p.target === target);
  }

  async metric(name: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, {
      signal: AbortSignal.timeout(2000),
    });
    return sumMetric(await res.text(), name, {});
  }

  /** Polls the path every 20 ms until `state`; the ms from `sinceMs` to the poll that saw it. */
  async msUntil(target: string, state: PathState['state'], sinceMs: number): Promise<number> {
    await pollUntil(`${target} ${state}`, async () => (await this.path(target))?.state === state, {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    return Date.now() - sinceMs;
  }

  /** Waits until every target is ok in the collector. */
  async allOk(targets: readonly string[]): Promise<void> {
    await pollUntil(
      `${targets.join(', ')} ok in the collector`,
      async () => {
        if (this.agent.exitCode !== null)
          throw new Error(`agent exited: ${this.agentLog.slice(-2000)}`);
        for (const t of targets) if ((await this.path(t))?.state !== 'ok') return false;
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  }

  async stop(): Promise<void> {
    if (this.agent.exitCode === null && this.agent.signalCode === null) {
      const exited = new Promise((r) => this.agent.once('exit', r));
      this.agent.kill('SIGKILL');
      await exited;
    }
    await this.collector.kill();
  }
}

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
const median = (xs: readonly number[]): number => sorted(xs)[Math.floor(xs.length / 2)]!;
/** The slow service of the confirmation tests, once turned slow. */
interface SlowService {
  holding: boolean;
  heldMs?: number;
  cutShort: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('fast confirmation on loopback, agent and collector processes', () => {
  const tcpTarget = 'web/api/tcp';
  const httpTarget = 'app/status/http';
  const slowTarget = 'app/slow/http';
  let pair: Pair | undefined;
  /**
   * The slow HTTP service, once turned slow: it holds the first request until the agent
   * gives up on it — the path's timeout as the service sees it, `heldMs` — or for
   * `slowHoldCapMs` at most, and answers every later one `heldMs + 100` ms late (past the
   * timeout that cut the first one short, inside the configured one and the burst's).
   */
  let slow: SlowService | undefined;
  /** Below the configured timeout (800 ms), and `+ 100` too: the answers after fail nothing. */
  const slowHoldCapMs = 650;
  let tcpPort = 0;
  let tcpServer: TcpServer | undefined;
  let httpServer: HttpServer | undefined;
  /** The HTTP service answers 500 to this many more requests, then 200 again. */
  let http500s = 0;
  let http500At = 0;

  function answerSlow(res: ServerResponse): void {
    const state = slow;
    const answer = (): void => void res.writeHead(200).end('ok');
    if (state === undefined) return answer();
    if (state.heldMs !== undefined) {
      // Uncut, the first request was answered at the cap: the round tested nothing, and the
      // ones after answer at once (so that it fails nothing either).
      if (state.cutShort) setTimeout(answer, state.heldMs + 100);
      else answer();
      return;
    }
    if (state.holding) return answer();
    state.holding = true;
    const start = Date.now();
    const cap = setTimeout(() => {
      state.heldMs = Date.now() - start;
      answer();
    }, slowHoldCapMs);
    res.on('close', () => {
      if (res.writableEnded) return;
      clearTimeout(cap);
      state.heldMs = Date.now() - start;
      state.cutShort = true;
    });
  }

  async function closeTcp(): Promise<void> {
    const server = tcpServer;
    tcpServer = undefined;
    if (server !== undefined) await new Promise((r) => server.close(r));
  }

  beforeAll(async () => {
    tcpPort = await freePort();
    tcpServer = await listenTcp(tcpPort);
    httpServer = createHttpServer((req, res) => {
      if (req.url === '/slow') {
        answerSlow(res);
        return;
      }
      if (http500s > 0) {
        http500s--;
        http500At = Date.now();
        res.writeHead(500).end('once');
      } else res.writeHead(200).end('ok');
    });
    await new Promise<void>((r) => httpServer!.listen(0, '127.0.0.1', r));
    const httpPort = (httpServer.address() as { port: number }).port;
    // The defaults of issue 14: 1 s rounds, a debounce of 3, bursts of 3 at 150 ms.
    pair = await Pair.start(
      ['  interval: 1s', '  layers: [protocol]', '  mesh: false'],
      [
        '    - name: web',
        '      address: 127.0.0.1',
        '      role: web',
        `      services: [{ name: api, kind: tcp, port: ${tcpPort} }]`,
        '    - name: app',
        '      address: 127.0.0.1',
        '      role: app',
        '      services:',
        `        - { name: status, kind: http, port: ${httpPort}, path: /status }`,
        `        - { name: slow, kind: http, port: ${httpPort}, path: /slow }`,
      ],
    );
    await pair.allOk([tcpTarget, httpTarget, slowTarget]);
  }, 60_000);

  afterAll(async () => {
    await pair?.stop();
    await closeTcp();
    if (httpServer !== undefined) await new Promise((r) => httpServer!.close(r));
  });

  it('a service that stops listening is failing well under 2 s after the stop, and healed as fast', async () => {
    const p = pair!;
    const down: number[] = [];
    const up: number[] = [];
    /** Stop → the time the collector dates the transition by (the trigger's probe). */
    const probed: number[] = [];
    for (let i = 0; i < 5; i++) {
      const stoppedAt = Date.now();
      await closeTcp();
      down.push(await p.msUntil(tcpTarget, 'failing', stoppedAt));
      const failing = await p.path(tcpTarget);
      expect(failing?.lastClass).toBe('tcp_refused');
      probed.push(failing!.sinceMs - stoppedAt);
      // A random phase against the agent's 1 s rounds for the next change.
      await sleep(300 + Math.random() * 700);
      const startedAt = Date.now();
      tcpServer = await listenTcp(tcpPort);
      up.push(await p.msUntil(tcpTarget, 'ok', startedAt));
      await sleep(300 + Math.random() * 700);
    }
    // Figures for the report (issue 14).
    console.log(
      `confirm e2e, refused: stop→failing ms ${JSON.stringify(down)} (median ${median(down)}, max ${Math.max(...down)}); ` +
        `start→ok ms ${JSON.stringify(up)} (median ${median(up)}, max ${Math.max(...up)}); ` +
        `stop→the transition's own time ms ${JSON.stringify(probed)}`,
    );
    // Without bursts a failing path needs 3 rounds of 1 s: 2–3 s after the stop.
    expect(Math.max(...down)).toBeLessThan(1800);
    expect(Math.max(...up)).toBeLessThan(1800);
    expect(await p.metric('faultline_agent_confirm_bursts_total')).toBeGreaterThanOrEqual(10);
    expect(await p.metric('faultline_agent_confirm_probes_total')).toBeGreaterThanOrEqual(30);
    expect(await p.metric('faultline_agent_confirm_skipped_total')).toBe(0);
  }, 60_000);

  it('one failed probe raises nothing: its burst comes back ok', async () => {
    const p = pair!;
    expect((await p.path(httpTarget))?.state).toBe('ok');
    const bursts = await p.metric('faultline_agent_confirm_bursts_total');
    http500s = 1;
    await pollUntil('the one 500 served', () => http500s === 0, { timeoutMs: 5000 });
    const servedAt = http500At;
    // The failure and its burst reached the collector: the window holds exactly one failure.
    await pollUntil(
      'the failure and its burst in the collector',
      async () => {
        const path = await p.path(httpTarget);
        return path?.failures.http_status === 1 && path.lastClass === 'ok' ? path : undefined;
      },
      { timeoutMs: 5000, intervalMs: 20 },
    );
    expect(await p.metric('faultline_agent_confirm_bursts_total')).toBe(bursts + 1);
    // Watched for 3 s (three more rounds): never failing, never degraded by that one probe.
    const seen = new Set<string>();
    while (Date.now() - servedAt < 3000) {
      seen.add((await p.path(httpTarget))!.state);
      await sleep(20);
    }
    expect([...seen]).toEqual(['ok']);
    const diagnosis = await p.collector.get<{ healthy: boolean }>('/api/v1/diagnosis');
    expect(diagnosis.healthy).toBe(true);
  }, 30_000);
  it('a path that turns slow but stays healthy is never failing for the shortened timeout', async () => {
    const p = pair!;
    // A loopback answer takes ~1 ms: after 5 successes the path's timeout is down to the
    // 300 ms floor of a probe riding TCP. The service then holds its first slow answer until
    // the agent gives up on it, so the test needs no guess at the timeout load left it at;
    // only when load kept it above the hold's cap (650 ms, below the configured 800) does a
    // round test nothing, and it is tried again (5 rounds at most).
    let tested = false;
    for (let attempt = 1; attempt <= 5 && !tested; attempt++) {
      slow = undefined;
      // Seven rounds of fast answers (three targets a round): the estimate is down again.
      const resultsBefore = await p.metric('faultline_probe_results_total');
      await pollUntil(
        'a baseline of successes',
        async () =>
          (await p.metric('faultline_probe_results_total')) >= resultsBefore + 21 &&
          ((await p.path(slowTarget))?.probes ?? 0) >= 7,
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      expect((await p.path(slowTarget))?.state).toBe('ok');
      const bursts = await p.metric('faultline_agent_confirm_bursts_total');
      // The service turns slow. The first probe after it times out at the shortened timeout;
      // its burst, with twice the path's timeout (at least 600 ms for a path riding TCP),
      // comes back ok, as do the rounds after (the configured timeout until the estimate
      // has grown past the new answers).
      const state: SlowService = { holding: false, cutShort: false };
      slow = state;
      const since = Date.now();
      const seen = new Set<string>();
      while (Date.now() - since < 5000) {
        seen.add((await p.path(slowTarget))!.state);
        await sleep(20);
      }
      const path = await p.path(slowTarget);
      const burstsAfter = await p.metric('faultline_agent_confirm_bursts_total');
      console.log(
        `confirm e2e, slow path (attempt ${attempt}): first answer held ${state.heldMs} ms, ${state.cutShort ? 'cut short by the agent' : 'answered at the cap'}; states seen ${JSON.stringify([...seen])}, failures in the window ${JSON.stringify(path?.failures)}, bursts ${burstsAfter - bursts}`,
      );
      // Never failing. `degraded` is right, though: answers went from ~1 ms to ~400 ms, and
      // that latency (not the one timeout) is what the collector reports.
      expect(seen.has('failing')).toBe(false);
      if (seen.has('degraded'))
        expect(path!.latencyMs!.p50).toBeGreaterThan(10 * path!.latencyMs!.baseline);
      expect(path?.lastClass).toBe('ok');
      expect(state.heldMs, 'the first slow request came and ended').toBeDefined();
      if (!state.cutShort) {
        expect(path?.failures.http_timeout).toBeUndefined();
        continue;
      }
      // The agent cut it short below the configured 800 ms: its timeout had shrunk. The one
      // shortened-timeout failure, contradicted by its burst: at most one per change.
      expect(state.heldMs).toBeLessThanOrEqual(slowHoldCapMs);
      expect(path?.failures.http_timeout).toBe(1);
      expect(burstsAfter - bursts).toBe(1);
      tested = true;
    }
    expect(tested, 'a round in which the path’s timeout was shortened below the slow answers').toBe(
      true,
    );
    slow = undefined;
  }, 120_000);
});

describe.runIf(canUseNetns)('timeouts that fit the path, in namespaces', () => {
  const target = 'svc/api/tcp';
  const servicePort = 7000;
  let net: TestNet | undefined;
  let host: TestHost;

  beforeAll(async () => {
    net = await TestNet.create();
    host = await net.addHost('svc');
    net.spawn(host, process.execPath, [
      '-e',
      `require('node:net').createServer((s) => { s.on('error', () => {}); s.end(); }).listen(${servicePort})`,
    ]);
    await pollUntil(
      'the service in the namespace',
      () =>
        new Promise<boolean>((resolve) => {
          const s = createConnection({ host: host.ip, port: servicePort }, () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      { timeoutMs: 10_000 },
    );
  }, 60_000);

  afterAll(async () => {
    await net?.destroy();
  });

  const inventory = (): string[] => [
    '    - name: svc',
    `      address: ${host.ip}`,
    '      role: app',
    `      services: [{ name: api, kind: tcp, port: ${servicePort} }]`,
  ];
  const probes = (adaptive: boolean): string[] => [
    '  interval: 1s',
    '  timeout: 800ms',
    '  layers: [protocol]',
    '  mesh: false',
    `  adaptiveTimeout: ${adaptive}`,
  ];
  const blackhole = `table inet blackhole {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport ${servicePort} drop
  }
}
`;

  /** Blackholes the service 4 times: stop → failing, ms. */
  /**
   * Blackholes the service 4 times: ms from the drop to the path failing, and from the
   * probe that first timed out (the failing state's start) to it — the second without the
   * wait for the next probe, which is up to an interval and differs run by run.
   */
  async function blackholed(p: Pair): Promise<{ down: number[]; fromTrigger: number[] }> {
    const down: number[] = [];
    const fromTrigger: number[] = [];
    for (let i = 0; i < 4; i++) {
      const droppedAt = Date.now();
      await net!.nft(host, blackhole);
      const ms = await p.msUntil(target, 'failing', droppedAt);
      down.push(ms);
      const failing = await p.path(target);
      expect(failing?.lastClass).toBe('tcp_timeout');
      fromTrigger.push(droppedAt + ms - failing!.sinceMs);
      await net!.exec(host, 'nft', ['delete', 'table', 'inet', 'blackhole']);
      await p.msUntil(target, 'ok', Date.now());
      await sleep(300 + Math.random() * 700);
    }
    return { down, fromTrigger };
  }

  it('a blackholed service is failing sooner with adaptive timeouts than without', async () => {
    const figures: Record<string, { down: number[]; fromTrigger: number[] }> = {};
    for (const adaptive of [true, false]) {
      const p = await Pair.start(probes(adaptive), inventory());
      try {
        await p.allOk([target]);
        // A baseline for the adaptive timeout: 5 successes.
        await sleep(6000);
        figures[adaptive ? 'adaptive' : 'fixed'] = await blackholed(p);
      } finally {
        await p.stop();
      }
    }
    const a = figures.adaptive!;
    const f = figures.fixed!;
    console.log(
      `confirm e2e, blackholed (tcp_timeout): adaptive stop→failing ms ${JSON.stringify(a.down)} (median ${median(a.down)}, max ${Math.max(...a.down)}), first timeout→failing ${JSON.stringify(a.fromTrigger)}; ` +
        `fixed 800 ms ${JSON.stringify(f.down)} (median ${median(f.down)}, max ${Math.max(...f.down)}), first timeout→failing ${JSON.stringify(f.fromTrigger)}`,
    );
    // The trigger times out after ~100 ms instead of 800 ms; the burst waits its full
    // timeout either way. Counted from the probe that first timed out: the drop's place in
    // the probe interval (0–1 s, different each time) swamped that in four samples.
    expect(median(a.fromTrigger)).toBeLessThan(median(f.fromTrigger));
    expect(Math.max(...a.down)).toBeLessThan(2600);
  }, 120_000);
});
