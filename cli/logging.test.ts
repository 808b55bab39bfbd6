import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt } from '../test/helpers/cli.js';
import { pollUntil } from '../lab/poll-until.js';
import { diesWithParent, freePort } from '../lab/server-process.js';

describe('log lines', () => {
  let dir: string | undefined;
  let proc: ChildProcess | undefined;
  let stderr = '';

  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'faultline-logging-'));
    const port = await freePort();
    // The collector with its local agent: two parts logging into one stream.
    const [cmd, args] = diesWithParent(process.execPath, [
      cliPath,
      'collector',
      '--local-agent',
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      join(dir, 'data'),
    ]);
    proc = spawn(cmd, args, {
      env: { ...process.env, FAULTLINE_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  });

  afterAll(async () => {
    if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc?.once('exit', r));
      process.kill(proc.pid, 'SIGKILL');
      await exited;
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('carry exactly one component key each: the collector’s and its local agent’s alike', async () => {
    const lines = await pollUntil(
      'log lines of both the collector and its local agent',
      () => {
        const all = stderr.split('\n').filter((l) => l.trim() !== '');
        return all.some((l) => l.includes('"msg":"collector started"')) &&
          all.some((l) => l.includes('"component":"agent"'))
          ? all
          : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    const components = new Set<string>();
    for (const line of lines) {
      // Counted in the text: JSON.parse keeps only the last of duplicated keys.
      expect(line.match(/"component":/g)?.length ?? 0, line).toBe(1);
      const { component } = JSON.parse(line) as { component: string };
      components.add(component);
    }
    expect([...components].sort()).toEqual(['agent', 'collector']);
    // The local agent's lines name it.
    for (const line of lines.filter((l) => l.includes('"component":"agent"')))
      expect(JSON.parse(line)).toHaveProperty('agent');
  });
});
