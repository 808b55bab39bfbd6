import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import yargs from 'yargs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from '../lab/poll-until.js';
import { freePort } from '../lab/server-process.js';
import { cliPath, ensureBuilt, runCli } from '../test/helpers/cli.js';
import { OtlpReceiver } from '../test/helpers/otlp-receiver.js';
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

  /**
   * NODE_OPTIONS that log every ES module (a loader hook) and every require() the process
   * makes, one a line, to `log`.
   */
  function tracing(log: string): string {
    const preload = join(dir, `trace-${basename(log)}.mjs`);
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
    return `--import=${preload}`;
  }

  /** The environment without the host's OTEL_* (which could turn a push on). */
  function envWithoutOtel(): NodeJS.ProcessEnv {
    return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
  }

  it('neither yargs nor cron nor re2js for a config that needs none of them', async () => {
    const config = join(dir, 'agent.yaml');
    writeFileSync(
      config,
      'agent: { name: a }\ntargets:\n  - { name: t, kind: tcp, address: "127.0.0.1:1" }\n',
    );
    const log = join(dir, 'loaded.txt');
    const r = await runCli(['agent', '--config', config, '--check-config'], {
      env: { ...process.env, NODE_OPTIONS: tracing(log) },
    });
    expect(r.code, r.stderr).toBe(0);
    const loaded = readFileSync(log, 'utf8');
    expect(loaded).toMatch(/dist\/agent-bundle\/agent-daemon\.js/); // the trace works
    expect(loaded).not.toMatch(/node_modules\/yargs/);
    expect(loaded).not.toMatch(/(^|\/)cron(\/|$)/m);
    expect(loaded).not.toMatch(/re2js/);
  });

  /**
   * Runs an agent probing one tcp target with /metrics on a free port until `ready` says
   * so, then stops it (SIGTERM, by its PID) and answers what it loaded and its last page.
   */
  async function runAgent(
    name: string,
    env: NodeJS.ProcessEnv,
    ready: (metrics: string) => boolean | Promise<boolean>,
  ): Promise<{ loaded: string; metrics: string }> {
    const port = await freePort();
    const config = join(dir, `${name}.yaml`);
    writeFileSync(
      config,
      `agent: { name: ${name} }\nmetrics: { listen: "127.0.0.1:${port}" }\n` +
        'targets:\n  - { name: t, kind: tcp, address: "127.0.0.1:1", interval: 200ms }\n',
    );
    const log = join(dir, `${name}-loaded.txt`);
    const child = spawn(process.execPath, [cliPath, 'agent', '--config', config], {
      env: { ...env, NODE_OPTIONS: tracing(log) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const metrics = await pollUntil(
        `${name}: a probe result on /metrics`,
        async () => {
          if (child.exitCode !== null) throw new Error(`agent exited: ${stderr}`);
          const body = await fetch(`http://127.0.0.1:${port}/metrics`).then(
            (res) => res.text(),
            () => '',
          );
          return body.includes('faultline_probe_results_total{') && (await ready(body))
            ? body
            : undefined;
        },
        { timeoutMs: 20_000 },
      );
      if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
      expect(await exited, stderr).toBe(0);
      return { loaded: readFileSync(log, 'utf8'), metrics };
    } finally {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }
  }

  it('a running agent that is scraped, not pushing, loads no OpenTelemetry SDK', async () => {
    const { loaded, metrics } = await runAgent('scraped', envWithoutOtel(), () => true);
    expect(loaded).toMatch(/dist\/agent-bundle\/agent-daemon\.js/); // the trace works
    expect(loaded).not.toMatch(/@opentelemetry\/sdk-metrics/);
    // No OpenTelemetry code at all (the SDK's version, for target_info, is read from a package.json).
    const otel = loaded.split('\n').filter((l) => l.includes('@opentelemetry/'));
    expect(otel.filter((l) => !l.endsWith('/package.json'))).toEqual([]);
    expect(metrics).toMatch(/^target_info\{service_name="faultline-agent",/m);
    expect(metrics).toMatch(
      /^faultline_agent_probes_total\{agent="scraped",result="started"\} \d+$/m,
    );
  }, 30_000);

  it('with OTEL_EXPORTER_OTLP_ENDPOINT it loads the SDK and pushes the series /metrics has', async () => {
    const receiver = await OtlpReceiver.start();
    try {
      const env = {
        ...envWithoutOtel(),
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_METRIC_EXPORT_INTERVAL: '200',
      };
      const { loaded } = await runAgent(
        'pushing',
        env,
        () => receiver.latest('faultline.probe.results', { target: 't' }) !== undefined,
      );
      expect(loaded).toMatch(/@opentelemetry\/sdk-metrics/);
      expect(receiver.errors).toEqual([]);
      expect(
        receiver.latest('faultline.agent.probes', { result: 'started' })?.point.value,
      ).toBeGreaterThan(0);
      expect(receiver.latest('faultline.otlp.exports', { outcome: 'success' })).toBeDefined();
      expect(receiver.exports.at(-1)?.resource['faultline.agent']).toBe('pushing');
    } finally {
      await receiver.close();
    }
  }, 30_000);
});
