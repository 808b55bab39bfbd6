import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, runCli } from '../test/helpers/cli.js';

const hasZsh = spawnSync('sh', ['-c', 'command -v zsh'], { stdio: 'ignore' }).status === 0;

describe('faultline completion', () => {
  let bin: string | undefined;
  beforeAll(() => {
    ensureBuilt();
    // The scripts call `faultline` by name, as an installed CLI is called.
    bin = mkdtempSync(join(tmpdir(), 'faultline-completion-'));
    const wrapper = join(bin, 'faultline');
    writeFileSync(wrapper, `#!/bin/sh\nexec '${process.execPath}' '${cliPath}' "$@"\n`);
    chmodSync(wrapper, 0o755);
  });
  afterAll(() => {
    if (bin !== undefined) rmSync(bin, { recursive: true, force: true });
  });

  /** What bash offers after typing `words` (the last one partial), with the script sourced. */
  function bashCompletes(script: string, words: string[]): string[] {
    const file = join(bin ?? '', 'faultline.bash');
    writeFileSync(file, script);
    const out = execFileSync(
      'bash',
      [
        '-c',
        `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _faultline_yargs_completions; printf '%s\\n' "\${COMPREPLY[@]}"`,
        'bash',
        file,
        ...words,
      ],
      { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
    );
    return out.split('\n').filter((l) => l !== '');
  }

  it('bash: the script completes commands and their options, through the CLI itself', async () => {
    const { code, stdout } = await runCli(['completion', 'bash'], {
      env: { ...process.env, SHELL: '/bin/zsh' },
    });
    expect(code).toBe(0);
    expect(stdout).toContain(
      'complete -o bashdefault -o default -F _faultline_yargs_completions faultline',
    );
    expect(bashCompletes(stdout, ['faultline', 'sta'])).toEqual(['status']);
    expect(bashCompletes(stdout, ['faultline', 'co']).sort()).toEqual(['collector', 'completion']);
    expect(bashCompletes(stdout, ['faultline', 'status', '--to'])).toEqual([
      '--token',
      '--token-file',
    ]);
    expect(bashCompletes(stdout, ['faultline', 'status', '--co']).sort()).toEqual([
      '--collector',
      '--color',
    ]);
  }, 90_000);

  it('zsh: a #compdef script, by name or from $SHELL; another shell is a usage error', async () => {
    const [named, fromShell, fromBash, fish] = await Promise.all([
      runCli(['completion', 'zsh'], { env: { ...process.env, SHELL: '/bin/bash' } }),
      runCli(['completion'], { env: { ...process.env, SHELL: '/usr/bin/zsh' } }),
      runCli(['completion'], { env: { ...process.env, SHELL: '/bin/bash' } }),
      runCli(['completion', 'fish']),
    ]);
    for (const z of [named, fromShell]) {
      expect(z.code).toBe(0);
      expect(z.stdout.startsWith('#compdef faultline\n')).toBe(true);
      expect(z.stdout).toContain('compdef _faultline_yargs_completions faultline');
    }
    expect(fromBash.stdout).toContain('complete -o bashdefault');
    expect(fish.code).toBe(2);
    expect(fish.stderr).toBe('faultline: completion: expected one of bash, zsh (actual: "fish")\n');
    if (hasZsh) {
      const file = join(bin ?? '', '_faultline');
      writeFileSync(file, named.stdout);
      expect(spawnSync('zsh', ['-n', file]).status).toBe(0);
    }
  }, 60_000);
});
