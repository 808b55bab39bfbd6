import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount } from '@nats-io/nkeys';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector } from '../../collector/collector.js';
import { parseCollectorConfig } from '../../collector/config.js';
import { pollUntil } from '../../lab/poll-until.js';
import { freePort } from '../../lab/server-process.js';
import { connectNats } from '../../lib/nats.js';
import { natsSectionSchema } from '../../lib/nats-config.js';
import { cliPath, ensureBuilt } from '../helpers/cli.js';
import { NatsOperator } from '../helpers/nats-jwt.js';

/**
 * NATS logins for real: a nats-server with users and passwords (a collector user, an agent
 * user), another with a token, a third in operator mode (JWT + nkey creds files, made
 * without `nsc` by test/helpers/nats-jwt.ts). The collector (its login in collector.yaml) binds its
 * consumer, a real `faultline agent` (its login in agent.yaml) publishes through it and its
 * batches are stored; a wrong password, token or token file is refused with an error that
 * names the login used (never the secret).
 */
const hasNats = existsSync('/usr/sbin/nats-server') || existsSync('/usr/bin/nats-server');

describe.runIf(hasNats)('NATS authentication against nats-server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-nats-auth-'));
  const servers: ChildProcess[] = [];
  const agents: ChildProcess[] = [];
  let collector: Collector | undefined;
  let credsCollector: Collector | undefined;
  let usersUrl = '';
  let credsUrl = '';
  // Operator mode: the server trusts an operator; accounts are preloaded, users are creds files.
  const operator = new NatsOperator();
  let tokenUrl = '';
  const token = 'nats-token-0123456789abcdef';

  async function startServer(name: string, conf: string): Promise<string> {
    const port = await freePort();
    const file = join(dir, `${name}.conf`);
    writeFileSync(
      file,
      `listen: 127.0.0.1:${port}\njetstream { store_dir: "${join(dir, name)}" }\n${conf}\n`,
    );
    const server = spawn('nats-server', ['-c', file], { stdio: 'ignore' });
    servers.push(server);
    const url = `nats://127.0.0.1:${port}`;
    await pollUntil(
      `nats-server ${name}`,
      async () => {
        if (server.exitCode !== null) throw new Error(`nats-server ${name} exited`);
        // Any answer of the port will do: the login is what the tests are about.
        const nc = await connectNats(natsSectionSchema.parse({ servers: [url], token }), 'probe')
          .then((c) => c)
          .catch((err: Error) => {
            if (/refused the login/.test(err.message)) return undefined;
            throw err;
          });
        await nc?.close();
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    return url;
  }

  /** Starts `faultline agent` with `natsLogin` in its `nats:` section; returns its output. */
  function startAgent(
    name: string,
    natsLogin: string,
    url = usersUrl,
  ): { proc: ChildProcess; out: () => string } {
    const file = join(dir, `agent-${name}.yaml`);
    writeFileSync(
      file,
      [
        'agent:',
        `  name: ${name}`,
        '  labels: { zone: z1 }',
        'metrics: { listen: "" }',
        'collector:',
        `  stateDir: ${join(dir, `agent-${name}`)}`,
        '  transport: nats',
        '  nats:',
        `    servers: [${url}]`,
        `    ${natsLogin}`,
        '',
      ].join('\n'),
    );
    let out = '';
    const proc = spawn(process.execPath, [cliPath, 'agent', '-c', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'info' },
    });
    proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
    proc.stderr.on('data', (b: Buffer) => (out += b.toString()));
    agents.push(proc);
    return { proc, out: () => out };
  }

  beforeAll(async () => {
    ensureBuilt();
    usersUrl = await startServer(
      'users',
      [
        'authorization { users = [',
        '  { user: collector, password: "collector-pass-0123" }',
        '  { user: app-1, password: "app-pass-0123" }',
        '] }',
      ].join('\n'),
    );
    tokenUrl = await startServer('token', `authorization { token: "${token}" }`);
    credsUrl = await startServer('operator', operator.serverConfig());
    writeFileSync(join(dir, 'collector.creds'), operator.userCreds('collector'), { mode: 0o600 });
    const collectorYaml = (nats: string): string =>
      [
        'listen: 127.0.0.1:0',
        `dataDir: ${join(dir, 'data')}`,
        'tokens: [{ name: t, token: collector-http-token-0123456789 }]',
        'agents: { reportInterval: 500ms }',
        'inventory:',
        '  components:',
        '    - { name: app-1, address: 127.0.0.1, role: api, services: [] }',
        '    - { name: app-2, address: 127.0.0.1, role: api, services: [] }',
        'transport: nats',
        `nats: { ${nats} }`,
        '',
      ].join('\n');
    collector = await Collector.start(
      parseCollectorConfig(
        collectorYaml(
          `servers: [${usersUrl}], user: collector, password: collector-pass-0123, consumer: auth-a`,
        ),
        'collector.yaml',
      ),
      pino({ level: 'silent' }),
    );
    credsCollector = await Collector.start(
      parseCollectorConfig(
        collectorYaml(
          `servers: [${credsUrl}], credsFile: ${join(dir, 'collector.creds')}, consumer: auth-creds`,
        ).replace(`dataDir: ${join(dir, 'data')}`, `dataDir: ${join(dir, 'data-creds')}`),
        'collector.yaml',
      ),
      pino({ level: 'silent' }),
    );
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    await collector?.stop();
    await credsCollector?.stop();
    for (const s of servers) s.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('an agent with its user and password in agent.yaml reports through a server that requires them', async () => {
    const agent = startAgent('app-1', 'user: app-1\n    password: app-pass-0123');
    const seq = (): number =>
      collector!.agents().find((a) => a.agent === 'app-1')?.acceptedSeq ?? 0;
    await pollUntil(
      'batches of app-1 stored by the collector',
      () => {
        if (agent.proc.exitCode !== null) throw new Error(`agent exited: ${agent.out()}`);
        if (seq() >= 3) return true;
        throw new Error(`acceptedSeq ${seq()}; agent says: ${agent.out().slice(-1500)}`);
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(agent.out()).not.toMatch(/refused the login/);
  }, 40_000);

  it('a wrong password: the agent says the servers refused its login, naming the user but not the password', async () => {
    const agent = startAgent('app-2', 'user: app-2\n    password: wrong-pass-0123');
    const line = await pollUntil(
      'the agent’s login error',
      () =>
        agent
          .out()
          .split('\n')
          .find((l) => l.includes('cannot connect to NATS')),
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(line).toMatch(
      /refused the login with nats\.user \(app-2\) and nats\.password: .*authorization violation/i,
    );
    expect(line).not.toContain('wrong-pass-0123');
    // It keeps probing and spooling: the login is retried at the next start.
    expect(agent.proc.exitCode).toBe(null);
    expect(collector!.agents().find((a) => a.agent === 'app-2')).toBeUndefined();
  }, 30_000);

  it('a token from a file logs in; a wrong one or an unreadable file is named', async () => {
    const good = join(dir, 'nats-token');
    writeFileSync(good, `${token}\n`);
    const nc = await connectNats(
      natsSectionSchema.parse({ servers: [tokenUrl], tokenFile: good }),
      'test',
    );
    await nc.close();

    const bad = join(dir, 'nats-token-bad');
    writeFileSync(bad, 'not-the-token\n');
    await expect(
      connectNats(natsSectionSchema.parse({ servers: [tokenUrl], tokenFile: bad }), 'test'),
    ).rejects.toThrow(
      new RegExp(
        `refused the login with nats\\.tokenFile \\(${bad}\\): .*authorization violation`,
        'i',
      ),
    );
    await expect(
      connectNats(natsSectionSchema.parse({ servers: [tokenUrl], token: 'wrong' }), 'test'),
    ).rejects.toThrow(/refused the login with nats\.token: /);
    await expect(
      connectNats(natsSectionSchema.parse({ servers: [tokenUrl] }), 'test'),
    ).rejects.toThrow(/refused the login with no login \(none of nats\.token/);
    await expect(
      connectNats(
        natsSectionSchema.parse({ servers: [tokenUrl], tokenFile: join(dir, 'missing') }),
        'test',
      ),
    ).rejects.toThrow(/nats\.tokenFile: cannot read .*missing/);
  }, 30_000);

  it('creds files (JWT + nkey seed, operator mode): the collector consumes and an agent reports with theirs; a user of an account the server does not trust is refused, the file named', async () => {
    const creds = join(dir, 'app-1.creds');
    writeFileSync(creds, operator.userCreds('app-1'), { mode: 0o600 });
    const agent = startAgent('app-1', `credsFile: ${creds}`, credsUrl);
    const seq = (): number =>
      credsCollector!.agents().find((a) => a.agent === 'app-1')?.acceptedSeq ?? 0;
    await pollUntil(
      'batches of app-1 stored by the collector that logs in with its creds file',
      () => {
        if (agent.proc.exitCode !== null) throw new Error(`agent exited: ${agent.out()}`);
        if (seq() >= 3) return true;
        throw new Error(`acceptedSeq ${seq()}; agent says: ${agent.out().slice(-1500)}`);
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(agent.out()).not.toMatch(/refused the login/);

    // A user signed by an account the operator never issued: the JWT does not verify.
    const stranger = join(dir, 'stranger.creds');
    writeFileSync(stranger, operator.userCreds('stranger', createAccount()), { mode: 0o600 });
    await expect(
      connectNats(natsSectionSchema.parse({ servers: [credsUrl], credsFile: stranger }), 'test'),
    ).rejects.toThrow(
      new RegExp(`refused the login with nats\\.credsFile \\(${stranger}\\): `, 'i'),
    );
  }, 40_000);
});
