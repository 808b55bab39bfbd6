import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentBundlePath, cliPath, ensureBuilt, repoRoot } from './helpers/cli.js';
import { spawnSync } from 'node:child_process';

/**
 * The agent's bundle (scripts/bundle-agent.mjs, cli/agent-entry.ts): what `faultline agent`
 * runs, one module instead of ~250, ~4 MB less RSS (bench/README.md).
 */
/** The bundle's modules (its entry and chunks), as paths. */
function bundleModules(): string[] {
  const dir = join(repoRoot, 'dist/agent-bundle');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .map((f) => join(dir, f));
}

describe('the agent bundle', () => {
  let dir = '';
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'fl-bundle-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function agent(config: string, ...flags: string[]): ReturnType<typeof spawnSync> {
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, config);
    // Prints, as the process ends, how many CommonJS modules it loaded from node_modules.
    const probe = join(dir, 'count.mjs');
    writeFileSync(
      probe,
      "import { createRequire } from 'node:module';\n" +
        "process.on('exit', () => process.stderr.write(`node_modules: ${Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('/node_modules/')).length}\\n`));\n",
    );
    return spawnSync(
      process.execPath,
      ['--import', probe, cliPath, 'agent', '--config', file, ...flags],
      { encoding: 'utf8', timeout: 20_000 },
    );
  }

  it('is what `faultline agent` runs: none of its dependencies is loaded from node_modules', () => {
    const run = agent(
      'agent: { name: a }\nmetrics: { listen: "" }\ntargets:\n  - { name: t, kind: tcp, address: "127.0.0.1:9" }\n',
      '--check-config',
    );
    expect(run.status, String(run.stderr)).toBe(0);
    expect(run.stdout).toMatch(/valid — agent a, 1 target/);
    // yaml, zod and pino, among others, when the agent runs from dist/ module by module.
    expect(run.stderr).toContain('node_modules: 0\n');
  });

  it('reports bad input as bad input (exit 2, the message), not as an internal error', () => {
    const run = agent('agent: { name: a }\ntargets: 3\n');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^faultline: .*agent\.yaml.*targets/m);
    expect(run.stderr).not.toContain('internal error');
  });

  it("carries zod's English messages and no other language's", () => {
    const text = bundleModules()
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    expect(text).toContain('Invalid input');
    expect(text).not.toContain('Ungültige Eingabe'); // zod's German
    expect(text).not.toContain('Entrée invalide'); // zod's French
    expect(readFileSync(agentBundlePath, 'utf8').length).toBeGreaterThan(0);
  });

  it('keeps the names of classes, which logs show (an error logged by pino has its class as `type`)', async () => {
    const names = new Set<string>();
    for (const file of bundleModules()) {
      if (!/[\\/]chunk-[^\\/]+$/.test(file)) continue;
      const chunk = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
      for (const v of Object.values(chunk)) if (typeof v === 'function') names.add(v.name);
    }
    expect([...names]).toEqual(expect.arrayContaining(['FaultlineError', 'ConfigError']));
  });
});
