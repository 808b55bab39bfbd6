import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const cliPath = `${repoRoot}dist/cli/main.js`;

/** Newest modification time of the TypeScript the CLI is built from. */
function newestSourceMs(): number {
  let newest = 0;
  for (const dir of ['cli', 'wire', 'lib', 'probes', 'agent', 'collector', 'lab']) {
    for (const entry of readdirSync(`${repoRoot}${dir}`, { recursive: true, encoding: 'utf8' })) {
      if (!entry.endsWith('.ts') || entry.endsWith('.test.ts')) continue;
      newest = Math.max(newest, statSync(`${repoRoot}${dir}/${entry}`).mtimeMs);
    }
  }
  return newest;
}

/** The agent's bundle, which `faultline agent` runs (cli/agent-entry.ts). */
export const agentBundlePath = `${repoRoot}dist/agent-bundle/agent-daemon.js`;

/**
 * Builds dist/ if it is missing or older than any source the CLI is built from (tests may
 * run without `npm run build`; a dist older than one changed file runs stale code), and the
 * agent's bundle from it likewise: an agent run from a stale bundle would test old code.
 */
export function ensureBuilt(): void {
  const newest = newestSourceMs();
  const fresh = (path: string): boolean => existsSync(path) && statSync(path).mtimeMs >= newest;
  if (!fresh(cliPath)) {
    execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], {
      cwd: repoRoot,
      stdio: 'inherit',
    });
  }
  if (!fresh(agentBundlePath)) {
    execFileSync(process.execPath, ['scripts/bundle-agent.mjs'], {
      cwd: repoRoot,
      stdio: 'inherit',
    });
  }
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `faultline` CLI with arguments (never through a shell). */
export function runCli(
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
