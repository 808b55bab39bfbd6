import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from '../test/helpers/cli.js';

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
