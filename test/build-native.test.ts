import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pollUntil } from '../lab/poll-until.js';
import { ensureBuilt, repoRoot } from './helpers/cli.js';

/*
 * scripts/build-native.mjs, which `npm run build` runs: the ICMP socket addon it ships in
 * dist/native/ is replaced under a running agent without harming it.
 */
describe('scripts/build-native.mjs', () => {
  it('a rebuild while a process has the shipped addon loaded leaves that process running', async () => {
    ensureBuilt();
    const addon = join(repoRoot, 'dist/native/faultline_icmp.node');
    // Pings 127.0.0.1 every 20 ms and prints a line per reply.
    const script = `
      const a = require(${JSON.stringify(addon)});
      const s = a.open(4, false, (events) => { for (const e of events) console.log(e.kind, e.seq); });
      let seq = 0;
      setInterval(() => a.send(s.handle, '127.0.0.1', seq++ & 0xffff, 56), 20);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await pollUntil('replies before the rebuild', () => out.split('\n').length > 5, {
        timeoutMs: 5000,
      });
      const build = spawnSync(process.execPath, [join(repoRoot, 'scripts/build-native.mjs')], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(build.status, build.stderr).toBe(0);
      const before = out.split('\n').length;
      await pollUntil('replies after the rebuild', () => out.split('\n').length > before + 5, {
        timeoutMs: 5000,
      });
      expect(child.exitCode, err).toBeNull();
      expect(child.signalCode).toBeNull();
    } finally {
      child.kill('SIGKILL');
    }
  }, 150_000);
});
