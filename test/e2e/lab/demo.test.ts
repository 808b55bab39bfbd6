import { execFileSync, spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, repoRoot } from '../../helpers/cli.js';
import { demoFaults } from '../../../cli/demo.js';
import { canRunLab } from '../../../lab/spec.js';

/** `faultline demo`, run as an operator would: the built CLI as a child process. */

/** Every text is in `out`, in this order. */
function expectInOrder(out: string, texts: readonly string[]): void {
  const at = texts.map((text) => {
    const i = out.indexOf(text);
    expect(i, `"${text}" in:\n${out}`).toBeGreaterThanOrEqual(0);
    return i;
  });
  expect(at).toEqual([...at].sort((a, b) => a - b));
}

function runDemo(
  args: readonly string[],
  opts: { asUid?: number; timeoutMs: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const node = [process.execPath, cliPath, ...args];
  const [cmd, ...cmdArgs] =
    opts.asUid === undefined
      ? node
      : ['setpriv', `--reuid=${opts.asUid}`, `--regid=${opts.asUid}`, '--clear-groups', ...node];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, cmdArgs, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // SIGINT first: the demo tears its lab down on it.
    const timer = setTimeout(() => child.kill('SIGINT'), opts.timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe.runIf(canRunLab)('faultline demo', () => {
  it('refuses to run without root, saying why', async () => {
    ensureBuilt();
    const r = await runDemo(['demo'], { asUid: 65534, timeoutMs: 20_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/demo needs root/);
    expect(r.stdout).toBe('');
  }, 60_000);

  it("--fault takes the catalogue's faults only, and says which", async () => {
    ensureBuilt();
    const help = await runDemo(['demo', '--help'], { timeoutMs: 20_000 });
    expect(help.code).toBe(0);
    for (const f of demoFaults) expect(help.stdout).toContain(`"${f.name}"`);
    const bad = await runDemo(['demo', '--fault', 'cosmic-ray'], { timeoutMs: 20_000 });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--fault|Invalid values/);
    expect(bad.stderr).toContain('collector-cut');
    expect(bad.stdout).toBe('');
  }, 60_000);

  it("--fault collector-cut: the collector's own host cut off is diagnosed as such, healed, torn down", async () => {
    ensureBuilt();
    const r = await runDemo(['demo', '--fault', 'collector-cut', '--hold-ms', '2000'], {
      timeoutMs: 110_000,
    });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const out = r.stdout;
    expectInOrder(out, [
      'Lab up. Collector: http://198.',
      'INCIDENT: the switch port of ctl-1',
      "Diagnosed as the collector's own side cut off",
      'HEAL:',
      'Healthy again',
      'Done: no namespace',
    ]);
    expect(out).not.toContain('Not diagnosed');
  }, 120_000);

  it('replays the founding incident: healthy, a network partition diagnosed, healed, torn down', async () => {
    ensureBuilt();
    const r = await runDemo(['demo', '--hold-ms', '2000'], { timeoutMs: 110_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const out = r.stdout;
    // In this order, each line timestamped.
    expectInOrder(out, [
      'Lab up. Collector: http://198.',
      'healthy: nothing is wrong',
      'INCIDENT: the switch ports of db-1 and db-2',
      'network_partition (confidence',
      'Diagnosed as a network partition',
      'HEAL:',
      'Healthy again',
      'Done: no namespace',
    ]);
    for (const line of out.trim().split('\n')) {
      if (!line.startsWith(' ')) expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3} \+\s*\d+\.\ds\] /);
    }
    // Nothing of the lab is left behind.
    const prefix = /namespaces (fl[0-9a-f]{6})-\*/.exec(out)?.[1];
    expect(prefix, out).toBeDefined();
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(prefix);
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toContain(prefix);
  }, 120_000);
});
