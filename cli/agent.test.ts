import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from '../test/helpers/cli.js';

describe('faultline agent with several collectors: flags and config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-cli-agent-'));
  beforeAll(() => ensureBuilt());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const managed = (...collectors: string[]): string[] => [
    'agent',
    ...collectors.flatMap((c) => ['--collector', c]),
    '--token',
    'x',
    '--state-dir',
    join(dir, 'state'),
    '--metrics',
    '',
  ];

  it.each([
    {
      what: 'the same collector twice',
      args: managed('http://127.0.0.1:1', 'http://127.0.0.1:1/'),
      message: '--collector http://127.0.0.1:1/: http://127.0.0.1:1 is given twice',
    },
    {
      what: 'a bad second URL, named',
      args: managed('http://127.0.0.1:1', 'ftp://b'),
      message: '--collector ftp://b: expected an http(s) URL (actual scheme: ftp:)',
    },
    {
      what: '--collector without a URL',
      args: ['agent', '--collector', '--token', 'x'],
      message: '--collector: expected a URL after it',
    },
  ])('refuses $what (exit 2)', async ({ args, message }) => {
    const r = await runCli(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('collector: and collectors: together are refused, naming the file and the key', async () => {
    const file = join(dir, 'both.yaml');
    writeFileSync(
      file,
      'agent: { name: a }\ncollector: { url: http://c:1, stateDir: /s }\ncollectors: [{ url: http://d:1, stateDir: /s }]\n',
    );
    const r = await runCli(['agent', '--config', file, '--check-config']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `${file}:3:13: collectors: give \`collector\` (one) or \`collectors\` (a list), not both`,
    );
  });

  it('--check-config says which collectors an agent reports to', async () => {
    const file = join(dir, 'two.yaml');
    writeFileSync(
      file,
      'agent: { name: a }\ncollectors:\n  - { url: http://c-a:7070, stateDir: /s }\n  - { url: http://c-b:7070 }\n',
    );
    const r = await runCli(['agent', '--config', file, '--check-config']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      'valid — agent a, plan from the newest of 2 collectors, reporting to http://c-a:7070 and http://c-b:7070',
    );
  });
});
