import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, runCli } from '../test/helpers/cli.js';
import { pollUntil } from '../lab/poll-until.js';
import { diesWithParent, freePort } from '../lab/server-process.js';
import { embeddedToken, embeddedViewerToken } from './collector.js';

describe('an address already taken is a clear error, not a crash', () => {
  let holder: Server;
  let port: number;
  let dir: string;
  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'faultline-listen-'));
    holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    port = (holder.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((r) => holder.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('faultline collector exits 2 naming the address and what to do', async () => {
    const r = await runCli([
      'collector',
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      join(dir, 'data'),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port} (listen): EADDRINUSE`);
    expect(r.stderr).toContain('choose another address');
    expect(r.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
  });

  it('faultline agent exits 2 when its metrics address is taken', async () => {
    const file = join(dir, 'agent.yaml');
    writeFileSync(
      file,
      `agent: { name: a }\nmetrics: { listen: "127.0.0.1:${port}" }\ntargets: []\n`,
    );
    const r = await runCli(['agent', '--config', file], {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'silent' },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port} (metrics.listen): EADDRINUSE`);
  });
});

describe('embedded defaults: a viewer token beside the agent token', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'faultline-embedded-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('is generated once into <dataDir>/viewer-token (0600), kept after, and unlike the agent token', () => {
    const data = join(dir, 'unit');
    const first = embeddedViewerToken(data);
    expect(first).toMatchObject({ created: true, file: join(data, 'viewer-token') });
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    expect(statSync(data).mode & 0o777).toBe(0o700);
    expect(embeddedViewerToken(data)).toEqual({ ...first, created: false });
    expect(embeddedToken(data).token).not.toBe(first.token);
  });

  it('never begins a token with "-": it follows --token on a command line', () => {
    // base64url begins one in 64 with '-'; 1,000 tokens would show one ~16 times.
    for (let i = 0; i < 1_000; i++) {
      const data = join(dir, `dash-${i}`);
      expect(embeddedToken(data).token).not.toMatch(/^-/);
      rmSync(data, { recursive: true, force: true });
    }
  });

  /** Runs `faultline collector` on embedded defaults until it has printed its banner. */
  async function banner(data: string): Promise<string> {
    const port = await freePort();
    const [cmd, args] = diesWithParent(process.execPath, [
      cliPath,
      'collector',
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      data,
    ]);
    const child = spawn(cmd, args, {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await pollUntil('the banner', async () => out.includes('Start an agent elsewhere'), {
        timeoutMs: 20_000,
        intervalMs: 50,
      });
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    return out;
  }

  it('faultline collector prints the viewer token once, when new; afterwards where it is', async () => {
    const data = join(dir, 'run');
    const first = await banner(data);
    const viewer = readFileSync(join(data, 'viewer-token'), 'utf8').trim();
    expect(first).toContain(
      `  viewer token (shown once; kept in ${join(data, 'viewer-token')}; the read endpoints and faultline status take it): ${viewer}\n`,
    );
    const again = await banner(data);
    expect(again).toContain(`  viewer token: in ${join(data, 'viewer-token')}`);
    expect(again).not.toContain(viewer);
  });
});
