import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from '../test/helpers/cli.js';
import { ProbeResultSchema } from '../wire/result.js';
import { parseOptionPairs } from './probe.js';

describe('faultline probe', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    ensureBuilt();
    server = createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('prints one line per attempt and a ping-like summary; exit 0 when all succeed', async () => {
    const r = await runCli(['probe', 'tcp', `127.0.0.1:${port}`, '-c', '3', '-i', '10ms']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^PROBE tcp 127\.0\.0\.1:\d+ timeout=3000ms options=\{"family":0\}$/);
    expect(lines.filter((l) => /^#\d ok +connect=[\d.]+ms total=[\d.]+ms/.test(l))).toHaveLength(3);
    expect(r.stdout).toContain('3 sent, 3 ok, 0.0% failed; ok=3');
    expect(r.stdout).toMatch(/latency min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms/);
  });

  it.each([
    { engine: 'auto', loop: 'socket-loop' },
    { engine: 'fping', loop: 'fping-loop' },
  ])(
    'icmp -c N (engine $engine): one loop answers the run ($loop), not a run per attempt',
    async ({ engine, loop }) => {
      const r = await runCli([
        'probe',
        'icmp',
        '127.0.0.1',
        '-c',
        '4',
        '-i',
        '200ms',
        '-o',
        `engine=${engine}`,
        '--json',
      ]);
      expect(r.code).toBe(0);
      const results = r.stdout
        .trim()
        .split('\n')
        .map((l) => ProbeResultSchema.parse(JSON.parse(l)));
      expect(results.map((x) => x.class)).toEqual(['ok', 'ok', 'ok', 'ok']);
      // The first attempt may come before the loop's first packet (one-shot); the rest are its rounds.
      expect(results.slice(1).map((x) => x.detail?.engine)).toEqual([loop, loop, loop]);
    },
  );

  it('mtu: the size is an option, the effective options are printed, the size is in each line', async () => {
    const r = await runCli(['probe', 'mtu', '127.0.0.1', '-o', 'size=9000', '-o', 'count=1']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(
      'PROBE mtu 127.0.0.1 timeout=3000ms options={"count":1,"intervalMs":200,"engine":"auto","family":0,"size":9000}',
    );
    expect(lines[1]).toMatch(/^#1 ok +rtt=[\d.]+ms total=[\d.]+ms .*sizeBytes=9000/);
    expect(r.stdout).toContain('1 sent, 1 ok, 0.0% failed; ok=1');
  });

  it('--json prints valid result records; exit 1 when a probe fails', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const r = await runCli([
      'probe',
      'tcp',
      `127.0.0.1:${closedPort}`,
      '--json',
      '-c',
      '2',
      '-i',
      '0',
    ]);
    expect(r.code).toBe(1);
    const records = r.stdout
      .trim()
      .split('\n')
      .map((l) => ProbeResultSchema.parse(JSON.parse(l)));
    expect(records.map((x) => [x.class, x.seq])).toEqual([
      ['tcp_refused', 1],
      ['tcp_refused', 2],
    ]);
  });

  it.each([
    [['probe', 'tcp', 'a;reboot:80'], /invalid target "a;reboot:80"/],
    [['probe', 'tcp', '$(id):80'], /invalid target/],
    [['probe', 'icmp', '--', '-f'], /Not enough non-option arguments/],
    [['probe', 'smtp', 'x'], /Invalid values:[\s\S]*kind/],
    [['probe', 'tcp', 'db'], /the port is missing/],
    [['probe', 'tcp', 'db:1', '--count', '0'], /--count: expected a whole number/],
    [['probe', 'tcp', 'db:1', '--timeout', 'soon'], /--timeout: expected a duration/],
    [['probe', 'tcp', 'db:1', '--bogus'], /Unknown argument: bogus/],
    [['probe', 'tcp', 'db:1', '-o', 'nope=1'], /--option for tcp: .*Unrecognized key: "nope"/],
    [['probe', 'tcp', 'db:1', '-o', 'family=5'], /--option for tcp: .*family/],
    [['probe', 'tcp', 'db:1', '-o', 'x'], /--option: expected key=value/],
    [['probe', 'mtu', 'db', '-o', 'size=20'], /--option for mtu: .*>=68[\s\S]*size/],
    [['probe', 'mtu', 'db', '-o', 'packetSize=1472'], /--option for mtu: .*Unrecognized key/],
    [
      ['probe', 'tcp', 'db:1', '-o', 'expect=^(?=SSH)'],
      /--option for tcp: .*expect.*linear time \(RE2\), without lookahead/,
    ],
    [['frobnicate'], /Unknown argument: frobnicate/],
    [[], /Name a command/],
  ])('refuses %j with exit 2 and a clear message', async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
    expect(r.stdout).toBe('');
  });

  it('--help describes the command and its flags', async () => {
    const r = await runCli(['probe', '--help']);
    expect(r.code).toBe(0);
    for (const flag of ['--count', '--interval', '--timeout', '--json', '--option'])
      expect(r.stdout).toContain(flag);
    expect(r.stdout).toMatch(
      /choices: "icmp", "tcp", "http", "dns", "postgres", "redis", "mysql", "mtu"/,
    );
    expect(r.stdout).toContain('probe mtu db-1 -o size=9000');
  });
});

describe('parseOptionPairs', () => {
  it('parses JSON values, nests dotted keys, keeps plain strings', () => {
    expect(
      parseOptionPairs(['count=5', 'headers.Host=example', 'expect=^220', 'tlsVerify=false']),
    ).toEqual({
      count: 5,
      headers: { Host: 'example' },
      expect: '^220',
      tlsVerify: false,
    });
  });
  it('refuses prototype keys', () => {
    expect(() => parseOptionPairs(['__proto__.x=1'])).toThrow(/not allowed/);
    expect(() => parseOptionPairs(['a.constructor=1'])).toThrow(/not allowed/);
  });
});
