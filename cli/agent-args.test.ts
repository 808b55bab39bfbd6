import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from '../test/helpers/cli.js';
import { agentArgsWithoutYargs, agentCommand } from './agent.js';

/** What yargs makes of `argv` with the agent command (the handler not run). */
async function viaYargs(argv: readonly string[]): Promise<Record<string, unknown>> {
  let seen: Record<string, unknown> | undefined;
  await yargs([...argv])
    .command({ ...agentCommand(() => undefined), handler: (a) => void (seen = a) })
    .strict()
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync();
  if (seen === undefined) throw new Error('yargs ran no command');
  return seen;
}

const compared = [
  'config',
  'check-config',
  'collector',
  'token',
  'token-file',
  'ca-file',
  'require-tls',
  'allow-targets',
  'allow-tcp-send',
  'allow-http-methods',
  'allow-http-headers',
  'name',
  'labels',
  'state-dir',
  'metrics',
] as const;

describe("the agent's start-up path without yargs", () => {
  it.each([
    [['agent', '--config', '/etc/faultline/agent.yaml']],
    [['agent', '-c', 'a.yaml', '--check-config']],
    [['agent', '--config=a.yaml', '--no-check-config']],
    [
      [
        'agent',
        '--collector',
        'https://c-a:7070',
        '--collector=https://c-b:7070',
        '--token-file',
        '/run/token',
        '--ca-file',
        '/ca.pem',
        '--require-tls',
        '--allow-targets',
        '10.0.0.0/8,*.example',
        '--allow-tcp-send',
        '--allow-http-methods',
        'GET,POST',
        '--allow-http-headers',
        '--name',
        'web-1',
        '--labels',
        'zone=a',
        '--state-dir',
        '/var/lib/faultline',
        '--metrics',
        '',
      ],
    ],
  ])('reads %j as yargs does', async (argv) => {
    const fast = agentArgsWithoutYargs(argv);
    expect(fast).toBeDefined();
    const slow = await viaYargs(argv);
    for (const k of compared) expect([k, fast?.[k]]).toEqual([k, slow[k]]);
  });

  it.each([
    [['agent', '--help']],
    [['agent', '--version']],
    [['agent', '--config', 'a.yaml', '--bogus']],
    [['agent', '--checkConfig', '--config', 'a.yaml']],
    [['agent', '--config', 'a.yaml', 'stray']],
    [['agent', '--config', 'a.yaml', '--config', 'b.yaml']],
    [['agent', '--require-tls', 'false', '--config', 'a.yaml']],
    [['agent', '--collector', 'https://a', 'https://b', '--token', 'x']],
    [['agent', '--collector', '--token', 'x']],
    [['agent', '--config', 'a.yaml', '--', 'x']],
    [['probe', 'tcp', '127.0.0.1:1']],
  ])('leaves %j to yargs', (argv) => {
    expect(agentArgsWithoutYargs(argv)).toBeUndefined();
  });

  it('refuses what yargs refuses, with the same message', async () => {
    for (const argv of [['agent'], ['agent', '--config', 'a', '--collector', 'http://c:1']]) {
      const message = await viaYargs(argv).then(
        () => 'accepted',
        (e: Error) => e.message,
      );
      expect(() => agentArgsWithoutYargs(argv)).toThrow(message);
    }
  });
});

describe('what `faultline agent` loads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-agent-loads-'));
  beforeAll(() => ensureBuilt());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('neither yargs nor cron nor re2js for a config that needs none of them', async () => {
    const config = join(dir, 'agent.yaml');
    writeFileSync(
      config,
      'agent: { name: a }\ntargets:\n  - { name: t, kind: tcp, address: "127.0.0.1:1" }\n',
    );
    const log = join(dir, 'loaded.txt');
    // Every ES module (a loader hook) and every require() the process makes, one a line.
    const preload = join(dir, 'trace.mjs');
    writeFileSync(
      preload,
      `import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
const log = ${JSON.stringify(log)};
register('data:text/javascript,' + encodeURIComponent(
  "import { appendFileSync } from 'node:fs';" +
  "export async function load(url, ctx, next) { appendFileSync(" + JSON.stringify(log) + ", url + '\\\\n'); return next(url, ctx); }"));
const Module = createRequire(import.meta.url)('node:module');
const load = Module._load;
Module._load = function (request, ...rest) { appendFileSync(log, request + '\\n'); return load.call(this, request, ...rest); };
`,
    );
    const r = await runCli(['agent', '--config', config, '--check-config'], {
      env: { ...process.env, NODE_OPTIONS: `--import=${preload}` },
    });
    expect(r.code, r.stderr).toBe(0);
    const loaded = readFileSync(log, 'utf8');
    expect(loaded).toMatch(/node_modules\/yaml\//); // the trace works
    expect(loaded).not.toMatch(/node_modules\/yargs/);
    expect(loaded).not.toMatch(/(^|\/)cron(\/|$)/m);
    expect(loaded).not.toMatch(/re2js/);
  });
});
