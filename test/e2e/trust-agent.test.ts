import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { Agent as UndiciAgent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Plan } from '../../wire/plan.js';
import type { ReportBatch } from '../../wire/report.js';
import type { ProbeResult } from '../../wire/result.js';
import { defaultPlanPolicy } from '../../agent/plan-policy.js';
import { planToAgentConfig } from '../../agent/plan-targets.js';
import { parseCollectorConfig } from '../../collector/config.js';
import { planFor } from '../../collector/plan.js';
import { cliPath, ensureBuilt, repoRoot, runCli } from '../helpers/cli.js';
import { CliProcess, CollectorProcess, sumMetric } from '../helpers/collector-process.js';
import { pollUntil } from '../../lab/poll-until.js';
import { diesWithParent, freePort } from '../../lab/server-process.js';
import { TestPki } from '../helpers/tls.js';

/**
 * The agent's side of issue 13 with real `faultline agent --collector` processes: a real
 * collector stopped and restarted (delivery resumes within about a health poll), an agent
 * SIGKILLed mid-period (its open period arrives), a stand-in collector serving a hostile
 * plan (the agent sends none of its bytes or headers) or acking an absurd seq (the agent
 * keeps its batches and its seq), TLS pinned by --ca-file, and the token kept off the
 * command line.
 */

/** A `faultline agent` process on this host, its log kept, signalled by PID only. */
class Agent extends CliProcess {
  private constructor(
    child: ChildProcess,
    readonly metricsPort: number,
  ) {
    super(child);
  }

  static start(args: readonly string[], metricsPort: number, env: NodeJS.ProcessEnv = {}): Agent {
    const [cmd, cmdArgs] = diesWithParent(process.execPath, [
      cliPath,
      'agent',
      '--metrics',
      `127.0.0.1:${metricsPort}`,
      ...args,
    ]);
    const child = spawn(cmd, cmdArgs, {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return new Agent(child, metricsPort);
  }

  async metric(name: string, match: Record<string, string> = {}): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, {
      signal: AbortSignal.timeout(2000),
    });
    return sumMetric(await res.text(), name, match);
  }
}

const token = randomBytes(16).toString('hex');
const bootstrapToken = randomBytes(16).toString('hex');
const agents: Agent[] = [];
const dirs: string[] = [];

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `faultline-trust-agent-${prefix}-`));
  dirs.push(d);
  return d;
}

async function startAgent(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Agent> {
  const a = Agent.start(args, await freePort(), env);
  agents.push(a);
  await pollUntil(
    'the agent /metrics',
    async () => {
      if (!a.running) throw new Error(`agent exited: ${a.stderr.slice(-2000)}`);
      return (await a.metric('faultline_agent_spool_batches')) >= 0;
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  return a;
}

beforeAll(() => {
  ensureBuilt();
}, 120_000);

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

afterEach(async () => {
  for (const a of agents.splice(0)) await a.kill();
});

describe('agent against a real collector', () => {
  let collector: CollectorProcess | undefined;
  let dir: string;
  let closedPort: number;

  beforeAll(async () => {
    dir = tempDir('collector');
    const port = await freePort();
    // Nothing listens there: the agent's tcp probe fails (tcp_refused) every round.
    closedPort = await freePort();
    const config = join(dir, 'collector.yaml');
    writeFileSync(
      config,
      `listen: 127.0.0.1:${port}
dataDir: ${join(dir, 'data')}
tokens:
  - { name: fleet, token: ${token} }
  - { name: enrol, token: ${bootstrapToken}, role: bootstrap, agents: ["app-*"] }
agents:
  reportInterval: 8s
  silentAfter: 30s
probes:
  interval: 500ms
  timeout: 400ms
  layers: [tcp]
  mesh: false
inventory:
  components:
    - name: web
      address: 127.0.0.1
      role: web
      labels: { zone: b }
      services:
        - { name: api, kind: tcp, port: ${closedPort} }
`,
    );
    collector = await CollectorProcess.start(config, `http://127.0.0.1:${port}`);
  }, 60_000);

  afterAll(async () => {
    await collector?.kill();
  });

  it('the token from --token-file stays off the command line; --token warns that ps shows it', async () => {
    const tokenFile = join(tempDir('token'), 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const a = await startAgent([
      '--collector',
      collector!.url,
      '--token-file',
      tokenFile,
      '--name',
      'app-tf',
      '--state-dir',
      tempDir('state'),
    ]);
    await pollUntil(
      'a batch acknowledged',
      async () => (await a.metric('faultline_agent_reports_acked_seq')) > 0,
    );
    const cmdline = readFileSync(`/proc/${a.child.pid}/cmdline`, 'utf8');
    expect(cmdline).not.toContain(token);
    expect(a.logLines().some((l) => String(l.msg).includes('visible to every user'))).toBe(false);

    const b = await startAgent([
      '--collector',
      collector!.url,
      '--token',
      token,
      '--name',
      'app-flag',
      '--state-dir',
      tempDir('state'),
    ]);
    await pollUntil('the --token warning', () =>
      b.logLines().find((l) => l.level === 40 && String(l.msg).includes('visible to every user')),
    );
  }, 60_000);

  it('with a bootstrap token the agent enrols, keeps its own credential (0600) and reports with it; nobody else can report as it', async () => {
    const state = tempDir('state');
    const a = await startAgent(
      ['--collector', collector!.url, '--name', 'app-enrol', '--state-dir', state],
      { FAULTLINE_TOKEN: bootstrapToken },
    );
    await pollUntil(
      'a batch acknowledged',
      async () => (await a.metric('faultline_agent_reports_acked_seq')) > 0,
    );
    expect(await a.metric('faultline_agent_enrol_state', { state: 'enrolled' })).toBe(1);
    const credentialFile = join(state, 'credential');
    expect(statSync(credentialFile).mode & 0o777).toBe(0o600);
    const credential = readFileSync(credentialFile, 'utf8').trim();
    expect(credential).not.toBe(bootstrapToken);
    const agentId = readFileSync(join(state, 'agent-id'), 'utf8').trim();
    const post = (bearer: string, body: unknown) =>
      fetch(`${collector!.url}/api/v1/reports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const forged = (id: string, seq: number) => ({
      agentId: id,
      agent: 'app-enrol',
      seq,
      createdAtMs: Date.now(),
      results: [],
      summaries: [],
    });
    const acked = await a.metric('faultline_agent_reports_acked_seq');
    // The bootstrap token cannot report at all; the fleet token cannot use the enrolled name,
    // neither under the agent's own id nor under a new one.
    const viaBootstrap = await post(bootstrapToken, forged(agentId, acked + 1));
    expect(viaBootstrap.status).toBe(403);
    expect(((await viaBootstrap.json()) as { error: { code: string } }).error.code).toBe(
      'FL_ERR_ENROL_REQUIRED',
    );
    for (const id of [agentId, `forged${randomBytes(6).toString('hex')}`]) {
      const viaFleet = await post(token, forged(id, acked + 1));
      expect(viaFleet.status, id).toBe(403);
      expect(((await viaFleet.json()) as { error: { code: string } }).error.code).toBe(
        'FL_ERR_FORBIDDEN',
      );
    }
    // The agent itself goes on: its next batches are accepted in order.
    await pollUntil(
      'the agent delivering after the attempts',
      async () => (await a.metric('faultline_agent_reports_acked_seq')) > acked,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(await a.metric('faultline_agent_reports_seq_refusals_total')).toBe(0);
  }, 60_000);

  it('after a collector outage delivery resumes within seconds of its return (was 23.5 s)', async () => {
    const a = await startAgent(
      ['--collector', collector!.url, '--name', 'app-out', '--state-dir', tempDir('state')],
      { FAULTLINE_TOKEN: token },
    );
    await pollUntil(
      'a batch acknowledged',
      async () => (await a.metric('faultline_agent_reports_acked_seq')) > 0,
    );
    await collector!.kill();
    // Down long enough for the backoff to grow past 10 s (base 250 ms, cap 30 s).
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    await pollUntil(
      'batches spooled while down',
      async () => (await a.metric('faultline_agent_spool_batches')) > 0,
    );
    const lag = await a.metric('faultline_agent_delivery_lag_seconds');
    expect(lag).toBeGreaterThan(0);
    const acked = await a.metric('faultline_agent_reports_acked_seq');
    collector = await collector!.restart();
    const upMs = Date.now();
    await pollUntil(
      'delivery resumed',
      async () => (await a.metric('faultline_agent_reports_acked_seq')) > acked,
      { timeoutMs: 40_000, intervalMs: 20 },
    );
    const resumeMs = Date.now() - upMs;
    console.log(`[figure] delivery resumed ${resumeMs} ms after the collector answered /healthz`);
    expect(resumeMs).toBeLessThan(3_000);
    await pollUntil(
      'the spool drained',
      async () => (await a.metric('faultline_agent_spool_batches')) === 0,
    );
    expect(await a.metric('faultline_agent_delivery_lag_seconds')).toBe(0);
    expect(await a.metric('faultline_agent_reports_rejected_total')).toBe(0);
  }, 90_000);

  it("a SIGKILLed agent's open period arrives after its restart, its failures in full", async () => {
    const stateDir = tempDir('state');
    const args = ['--collector', collector!.url, '--name', 'app-kill', '--state-dir', stateDir];
    const a = await startAgent(args, { FAULTLINE_TOKEN: token });
    await pollUntil(
      'a batch acknowledged',
      async () => (await a.metric('faultline_agent_reports_acked_seq')) > 0,
    );
    const journal = join(stateDir, 'journal', 'open.jsonl');
    // The report period is 8 s: past the first failure and its confirmations, repeated
    // failures wait for the period's end. Kill once several are only in the open period.
    const open = await pollUntil(
      'failures journaled in the open period',
      () => {
        if (!existsSync(journal)) return undefined;
        const lines = readFileSync(journal, 'utf8')
          .split('\n')
          .filter((l) => l !== '');
        const failures = lines
          .map((l) => (JSON.parse(l) as { r: ProbeResult }).r)
          .filter((r) => r.class !== 'ok');
        return failures.length >= 4 ? failures : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    await a.kill();
    // What the killed run had journaled (re-read: lines written after the poll).
    const killed = readFileSync(journal, 'utf8')
      .split('\n')
      .filter((l) => l.endsWith('}'))
      .map((l) => (JSON.parse(l) as { r: ProbeResult }).r)
      .filter((r) => r.class !== 'ok');
    expect(killed.length).toBeGreaterThanOrEqual(open.length);

    const b = await startAgent(args, { FAULTLINE_TOKEN: token });
    // The replayed batch is spooled before anything new: once the spool drains, it was delivered.
    await pollUntil(
      'the restarted agent delivered its spool',
      async () =>
        (await b.metric('faultline_agent_reports_acked_seq')) > 0 &&
        (await b.metric('faultline_agent_spool_batches')) === 0,
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    // The store is the collector's own (locked while it runs): stop it, read, start it again.
    await collector!.stop();
    const db = new Database(join(dir, 'data', 'faultline.db'), { readonly: true });
    let stored: Set<number>;
    try {
      stored = new Set(
        (
          db
            .prepare(
              `SELECT record FROM results r JOIN agents a ON a.agent_key = r.agent_key WHERE a.name = 'app-kill'`,
            )
            .all() as { record: string }[]
        ).map((row) => (JSON.parse(row.record) as ProbeResult).seq),
      );
    } finally {
      db.close();
    }
    collector = await collector!.restart();
    const missing = killed.filter((r) => !stored.has(r.seq)).map((r) => r.seq);
    console.log(
      `[figure] SIGKILL: ${killed.length} failures only in the killed period, ${killed.length - missing.length} in the collector's store after the restart`,
    );
    expect(missing).toEqual([]);
    expect(await b.metric('faultline_agent_reports_rejected_total')).toBe(0);
  }, 90_000);

  it('--require-tls refuses plain http to another host; http to another host warns; a bad --ca-file is named', async () => {
    const refused = await runCli([
      'agent',
      '--collector',
      'http://192.0.2.10:7070',
      '--require-tls',
      '--state-dir',
      tempDir('state'),
      '--name',
      'x',
      '--token-file',
      '/nonexistent',
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /--collector: http:\/\/192\.0\.2\.10:7070 is plain http.*--require-tls/,
    );

    const configFile = join(tempDir('config'), 'agent.yaml');
    writeFileSync(
      configFile,
      `agent: { name: x }\ncollector: { url: "http://192.0.2.10:7070", requireTls: true, stateDir: ${tempDir('state')} }\n`,
    );
    const refusedByConfig = await runCli(['agent', '--config', configFile], {
      env: { ...process.env, FAULTLINE_TOKEN: token },
    });
    expect(refusedByConfig.code).toBe(2);
    expect(refusedByConfig.stderr).toMatch(
      /collector\.url: .* is plain http.*collector\.requireTls/,
    );

    const badCa = await runCli(
      [
        'agent',
        '--collector',
        'https://127.0.0.1:1',
        '--ca-file',
        join(tempDir('ca'), 'missing.pem'),
        '--state-dir',
        tempDir('state'),
        '--name',
        'x',
      ],
      { env: { ...process.env, FAULTLINE_TOKEN: token } },
    );
    expect(badCa.code).toBe(2);
    expect(badCa.stderr).toMatch(/--ca-file: cannot read .*missing\.pem: ENOENT/);

    const a = await startAgent(
      ['--collector', 'http://192.0.2.10:7070', '--name', 'x', '--state-dir', tempDir('state')],
      { FAULTLINE_TOKEN: token },
    );
    await pollUntil('the cleartext warning', () =>
      a.logLines().find((l) => l.level === 40 && String(l.msg).includes('in clear')),
    );
  }, 60_000);
});

describe('TLS pinned by --ca-file', () => {
  let pki: TestPki;
  let other: TestPki;
  let collector: ChildProcess | undefined;
  let url: string;

  beforeAll(async () => {
    pki = await TestPki.create();
    other = await TestPki.create();
    const cert = await pki.issue({ cn: 'collector', sans: ['IP:127.0.0.1', 'DNS:localhost'] });
    const dir = tempDir('tls');
    const port = await freePort();
    url = `https://127.0.0.1:${port}`;
    const config = join(dir, 'collector.yaml');
    writeFileSync(
      config,
      `listen: 127.0.0.1:${port}
tls: { cert: ${cert.certPath}, key: ${cert.keyPath} }
dataDir: ${join(dir, 'data')}
tokens:
  - { name: fleet, token: ${token} }
probes:
  layers: [tcp]
  mesh: false
inventory:
  components:
    - { name: web, address: 127.0.0.1, role: web }
`,
    );
    const [cmd, args] = diesWithParent(process.execPath, [
      cliPath,
      'collector',
      '--config',
      config,
    ]);
    collector = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    collector.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const trusting = new UndiciAgent({ connect: { ca: pki.ca.cert } });
    try {
      await pollUntil(
        'the TLS collector answering /healthz',
        async () => {
          if (collector?.exitCode !== null) throw new Error(`collector exited: ${stderr}`);
          const res = await request(`${url}/healthz`, { dispatcher: trusting });
          await res.body.dump();
          return res.statusCode === 200;
        },
        { timeoutMs: 15_000, intervalMs: 50 },
      );
    } finally {
      await trusting.close();
    }
  }, 60_000);

  afterAll(async () => {
    if (collector?.pid !== undefined && collector.exitCode === null) {
      const exited = new Promise((resolve) => collector!.once('exit', resolve));
      process.kill(collector.pid, 'SIGKILL');
      await exited;
    }
    await pki?.destroy();
    await other?.destroy();
  });

  it('the agent delivers with the collector CA; with another CA it sends nothing', async () => {
    const good = await startAgent(
      [
        '--collector',
        url,
        '--ca-file',
        pki.ca.certPath,
        '--name',
        'tls-ok',
        '--state-dir',
        tempDir('state'),
      ],
      { FAULTLINE_TOKEN: token },
    );
    await pollUntil(
      'a batch acknowledged over TLS',
      async () => (await good.metric('faultline_agent_reports_acked_seq')) > 0,
    );
    const bad = await startAgent(
      [
        '--collector',
        url,
        '--ca-file',
        other.ca.certPath,
        '--name',
        'tls-bad',
        '--state-dir',
        tempDir('state'),
      ],
      { FAULTLINE_TOKEN: token },
    );
    await pollUntil(
      'batches spooled, undelivered',
      async () => (await bad.metric('faultline_agent_spool_batches')) >= 2,
      { timeoutMs: 15_000 },
    );
    expect(await bad.metric('faultline_agent_reports_acked_seq')).toBe(0);
  }, 60_000);
});

/** A stand-in collector: serves `plan`, answers reports with `ack(batch)`. */
class StandIn {
  server: HttpServer | undefined;
  port = 0;
  readonly batches: ReportBatch[] = [];
  ack: (b: ReportBatch) => { acceptedSeq: number; duplicate: boolean } = (b) => ({
    acceptedSeq: b.seq,
    duplicate: false,
  });
  constructor(public plan: Plan) {}
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  async listen(): Promise<void> {
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = (req.url ?? '').split('?')[0];
        const reply = (status: number, body: unknown): void => {
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        };
        if (path === '/healthz') return reply(200, { status: 'ok' });
        if (path === '/api/v1/plan') return reply(200, this.plan);
        if (path === '/api/v1/reports') {
          const batch = JSON.parse(gunzipSync(Buffer.concat(chunks)).toString()) as ReportBatch;
          this.batches.push(batch);
          return reply(200, this.ack(batch));
        }
        reply(404, { error: { code: 'FL_ERR_NOT_FOUND', message: 'not found' } });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
  }
  async close(): Promise<void> {
    const s = this.server;
    if (s === undefined) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

function plan(targets: Plan['targets']): Plan {
  return {
    version: 'stand-in',
    agent: 'victim',
    generatedAtMs: Date.now(),
    refreshIntervalMs: 60_000,
    reportIntervalMs: 1_000,
    targets,
  };
}

function planTarget(
  name: string,
  kind: string,
  address: string,
  options: Record<string, unknown> = {},
): Plan['targets'][number] {
  return {
    name,
    component: 'x',
    kind,
    address,
    intervalMs: 500,
    timeoutMs: 300,
    options,
    labels: {},
  };
}

describe("the agent's default plan policy", () => {
  it("refuses nothing the real collector plans from the example inventory (every agent's plan)", () => {
    const text = readFileSync(join(repoRoot, 'deploy/examples/collector.yaml'), 'utf8').replace(
      /^dataDir: .*$/m,
      `dataDir: ${tempDir('example')}`,
    );
    const config = parseCollectorConfig(text, 'collector.yaml');
    const names = config.inventory.components.map((c) => c.agent ?? c.name);
    let targets = 0;
    for (const name of names) {
      const plan = planFor(config, name);
      const { problems } = planToAgentConfig(plan, {
        name,
        labels: {},
        metricsListen: false,
        maxInFlight: 8,
        policy: { policy: defaultPlanPolicy },
      });
      expect(problems, name).toEqual([]);
      targets += plan.targets.length;
    }
    expect(targets).toBeGreaterThan(20);
  });
});

describe('a stand-in collector cannot turn the agent into a weapon', () => {
  const servers: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  it('a hostile plan: no raw tcp bytes, no POST, no custom headers, nothing outside --allow-targets', async () => {
    // What reaches our sinks: a tcp port that records bytes, an http server that records requests.
    const tcpBytes: Buffer[] = [];
    let tcpConnections = 0;
    const tcp: TcpServer = createTcpServer((s) => {
      tcpConnections++;
      s.on('data', (d: Buffer) => tcpBytes.push(d));
      s.on('error', () => undefined);
    });
    const outside: TcpServer = createTcpServer((s) => {
      outsideConnections++;
      s.destroy();
    });
    let outsideConnections = 0;
    const httpRequests: { method: string; url: string; headers: Record<string, unknown> }[] = [];
    const web = createHttpServer((req, res) => {
      httpRequests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      req.resume();
      res.end('ok');
    });
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => outside.listen(0, '127.0.0.2', r));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    servers.push(
      { close: () => new Promise<void>((r) => tcp.close(() => r())) },
      { close: () => new Promise<void>((r) => outside.close(() => r())) },
      {
        close: () =>
          new Promise<void>((r) => {
            web.closeAllConnections();
            web.close(() => r());
          }),
      },
    );
    const tcpPort = (tcp.address() as { port: number }).port;
    const outsidePort = (outside.address() as { port: number }).port;
    const webPort = (web.address() as { port: number }).port;
    const standIn = new StandIn(
      plan([
        planTarget('evil/tcp-send', 'tcp', `127.0.0.1:${tcpPort}`, { send: 'FLUSHALL\\r\\n' }),
        planTarget('evil/post', 'http', `http://127.0.0.1:${webPort}/admin/delete`, {
          method: 'POST',
          body: 'all',
        }),
        planTarget('evil/headers', 'http', `http://127.0.0.1:${webPort}/admin`, {
          headers: { 'X-Evil': 'yes', Authorization: 'Bearer stolen' },
        }),
        planTarget('evil/outside', 'tcp', `127.0.0.2:${outsidePort}`),
        planTarget('fine/get', 'http', `http://127.0.0.1:${webPort}/healthz`),
      ]),
    );
    await standIn.listen();
    servers.push(standIn);
    await startAgent(
      [
        '--collector',
        standIn.url,
        '--name',
        'victim',
        '--state-dir',
        tempDir('state'),
        '--allow-targets',
        '127.0.0.1/32',
      ],
      { FAULTLINE_TOKEN: token },
    );
    // The allowed GET runs: the agent is probing, and has had time to run every target.
    await pollUntil('several allowed GETs', () => httpRequests.length >= 4, { timeoutMs: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(httpRequests.every((r) => r.method === 'GET' && r.url === '/healthz')).toBe(true);
    expect(httpRequests.some((r) => 'x-evil' in r.headers || 'authorization' in r.headers)).toBe(
      false,
    );
    expect(tcpBytes).toEqual([]);
    expect(tcpConnections).toBe(0);
    expect(outsideConnections).toBe(0);
    // The reports say the agent probes only the allowed target.
    const targets = new Set(standIn.batches.flatMap((b) => b.summaries.map((s) => s.target)));
    expect([...targets]).toEqual(['fine/get']);
  }, 60_000);

  it('an ack of seq 2^53−1: counted as implausible, batches kept, the seq never jumps; honest acks deliver them all', async () => {
    const standIn = new StandIn(plan([]));
    standIn.ack = () => ({ acceptedSeq: Number.MAX_SAFE_INTEGER, duplicate: true });
    await standIn.listen();
    servers.push(standIn);
    const stateDir = tempDir('state');
    const a = await startAgent(
      ['--collector', standIn.url, '--name', 'victim', '--state-dir', stateDir],
      { FAULTLINE_TOKEN: token },
    );
    await pollUntil(
      'implausible acks counted',
      async () => (await a.metric('faultline_agent_implausible_acks_total')) >= 2,
      { timeoutMs: 20_000 },
    );
    await pollUntil(
      'batches kept',
      async () => (await a.metric('faultline_agent_spool_batches')) >= 3,
      { timeoutMs: 20_000 },
    );
    const nextSeq = Number(readFileSync(join(stateDir, 'spool', 'next-seq'), 'utf8').trim());
    expect(nextSeq).toBeLessThan(100);
    expect(readdirSync(join(stateDir, 'spool', 'rejected'))).toEqual([]);
    expect(await a.metric('faultline_agent_reports_rejected_total')).toBe(0);
    // The real collector answers again: every kept batch arrives, seq 1, 2, 3, … in order.
    let watermark = 0;
    standIn.batches.length = 0;
    standIn.ack = (b) => {
      if (b.seq <= watermark) return { acceptedSeq: watermark, duplicate: true };
      if (b.seq === watermark + 1) watermark = b.seq;
      return { acceptedSeq: watermark, duplicate: false };
    };
    await pollUntil(
      'the spool drained',
      async () => (await a.metric('faultline_agent_spool_batches')) === 0,
      { timeoutMs: 30_000 },
    );
    expect(watermark).toBeGreaterThanOrEqual(3);
    expect(watermark).toBeLessThan(100);
    const seqs = [...new Set(standIn.batches.map((b) => b.seq))];
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  }, 60_000);
});
