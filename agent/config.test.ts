import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/errors.js';
import { probeKinds, probeRegistry } from '../probes/registry.js';
import {
  agentJsonSchema,
  cronPeriodMs,
  formatDurationMs,
  loadAgentConfig,
  parseAgentConfig,
} from './config.js';
import type { AgentConfig, ResolvedTarget } from './config.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtures = join(root, 'test/fixtures/agent');
const exampleFile = join(root, 'deploy/examples/agent.yaml');
const schemaFile = join(root, 'deploy/schema/agent.schema.json');

function fixture(name: string): AgentConfig {
  return parseAgentConfig(readFileSync(join(fixtures, name), 'utf8'), name);
}

/** The ConfigError message for a config text, or a failure when it is accepted. */
function refusal(text: string, file = 'agent.yaml'): string {
  try {
    parseAgentConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('FL_ERR_CONFIG');
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

function byName(cfg: AgentConfig, name: string): ResolvedTarget {
  const t = cfg.targets.find((x) => x.name === name);
  if (t === undefined) throw new Error(`no target ${name}`);
  return t;
}

/** One icmp target with `fields` added, as YAML. */
function oneTarget(fields: string): string {
  return `targets:\n  - name: t\n    kind: icmp\n    address: 10.0.0.1\n${fields}`;
}

const durationHelp =
  'expected a duration: milliseconds, or a number with ms, s, m or h (e.g. "500ms", "15s", "2m")';

// blackbox_exporter style: every invalid fixture against its exact message.
const invalid: Record<string, string[]> = {
  'invalid-address-hostile.yaml': [
    'invalid-address-hostile.yaml:5:14: targets[0].address: it starts with "-" and would be read as a flag (actual: "-oProxyCommand=reboot")',
    'invalid-address-hostile.yaml:8:14: targets[1].address: expected host:port (or [IPv6]:port) (actual: "$(reboot):22")',
    'invalid-address-hostile.yaml:11:14: targets[2].address: credentials in the URL are not accepted; use the probe\'s header options (actual: "http://user:secret@10.0.0.5/")',
  ],
  'invalid-address-port.yaml': [
    'invalid-address-port.yaml:8:14: targets[1].address: expected host:port: the port is missing (actual: "db-1")',
  ],
  'invalid-cron-and-interval.yaml': [
    'invalid-cron-and-interval.yaml:6:11: targets[0].cron: cron and interval are mutually exclusive: keep one',
  ],
  'invalid-cron-timeout.yaml': [
    'invalid-cron-timeout.yaml:7:14: targets[0].timeout: timeout 5s must be shorter than the cron period 5s',
  ],
  'invalid-cron.yaml': [
    'invalid-cron.yaml:5:11: targets[0].cron: expected a cron expression like "*/5 * * * * *" (sec min hour day month weekday): Too few fields (actual: "*/5 * * *")',
  ],
  'invalid-defaults-timeout.yaml': [
    'invalid-defaults-timeout.yaml:3:12: defaults.timeout: timeout 1s must be shorter than the interval 1s',
  ],
  'invalid-duplicate-key.yaml': [
    'invalid-duplicate-key.yaml:5:5: duplicate key "kind" (first at invalid-duplicate-key.yaml:3:5)',
  ],
  'invalid-duplicate-name.yaml': [
    'invalid-duplicate-name.yaml:5:11: targets[1].name: duplicate target name "db-1" (first used at invalid-duplicate-name.yaml:2:11)',
  ],
  'invalid-duration.yaml': [
    `invalid-duration.yaml:2:13: defaults.interval: ${durationHelp} (actual: "soon")`,
  ],
  'invalid-empty-value.yaml': [
    'invalid-empty-value.yaml:4:5: targets[0].address: expected a string (actual: null)',
  ],
  'invalid-interval-bare-number.yaml': [
    'invalid-interval-bare-number.yaml:6:15: targets[0].interval: expected at least 100ms; a bare number is milliseconds (write "15s") (actual: 15)',
  ],
  'invalid-labels.yaml': [
    'invalid-labels.yaml:4:5: agent.labels.kind: reserved label name: Faultline sets agent, target, kind, class, phase, instance, job, le itself',
    'invalid-labels.yaml:5:5: agent.labels["1rack"]: expected a label name: letters, digits and "_", not starting with a digit',
    'invalid-labels.yaml:6:11: agent.labels.rack: expected a string (actual: 12)',
  ],
  'invalid-many.yaml': [
    'invalid-many.yaml:5:14: targets[0].address: port 99999 is outside 1–65535 (actual: "10.0.0.5:99999")',
    'invalid-many.yaml:6:5: targets[0].intervl: unknown key "intervl" (did you mean "interval"?)',
    `invalid-many.yaml:10:14: targets[1].timeout: ${durationHelp} (actual: "later")`,
    'invalid-many.yaml:12:9: agent.name: expected 1–128 characters from A-Z a-z 0-9 . _ : - (actual: "app 1")',
  ],
  'invalid-metrics-listen.yaml': [
    'invalid-metrics-listen.yaml:2:11: metrics.listen: expected a string or false (actual: 9465)',
  ],
  'invalid-metrics-probe-instance.yaml': [
    'invalid-metrics-probe-instance.yaml:3:18: metrics.probeInstance: expected one of: scrape, address (actual: "target")',
  ],
  'invalid-metrics-series.yaml': [
    'invalid-metrics-series.yaml:2:15: metrics.histograms: expected true or false (actual: "yes")',
    'invalid-metrics-series.yaml:3:13: metrics.blackbox: expected one of: core, full (actual: "everything")',
  ],
  'invalid-missing-kind.yaml': [
    'invalid-missing-kind.yaml:3:5: targets[0].kind: missing required key "kind"',
  ],
  'invalid-multiple-documents.yaml': [
    'invalid-multiple-documents.yaml:3:1: the file holds several YAML documents; a config is one',
  ],
  'invalid-name.yaml': [
    'invalid-name.yaml:2:11: targets[0].name: expected 1–128 characters from A-Z a-z 0-9 . _ : - (actual: "db 1 postgres")',
  ],
  'invalid-not-mapping.yaml': [
    'invalid-not-mapping.yaml:1:1: expected a mapping (actual: [{"name":"db-1","kind":"tcp","address":"10.0.0.5:5432"}])',
  ],
  'invalid-options.yaml': [
    'invalid-options.yaml:4:20: defaults.options.tcp.family: expected one of: 0, 4, 6 (actual: 5)',
    'invalid-options.yaml:5:5: defaults.options.postgress: unknown key "postgress" (did you mean "postgres"?)',
    'invalid-options.yaml:10:16: targets[0].options.sned: unknown key "sned" (did you mean "send"?)',
    'invalid-options.yaml:15:25: targets[1].options.validStatusCodes: expected a list (actual: 200)',
  ],
  'invalid-timeout-default-interval.yaml': [
    'invalid-timeout-default-interval.yaml:8:14: targets[0].timeout: timeout 20s must be shorter than the interval 15s (defaults.interval)',
  ],
  'invalid-timeout-interval.yaml': [
    'invalid-timeout-interval.yaml:6:14: targets[0].timeout: timeout 2s must be shorter than the interval 1s',
  ],
  'invalid-unknown-key.yaml': [
    'invalid-unknown-key.yaml:3:3: defaults.intervl: unknown key "intervl" (did you mean "interval"?)',
  ],
  'invalid-unknown-kind.yaml': [
    // Derived from the registry: a new kind shows up here by itself.
    `invalid-unknown-kind.yaml:3:11: targets[0].kind: unknown probe kind: expected one of ${probeKinds.join(', ')} (actual: "smtp")`,
  ],
  'invalid-unknown-top-key.yaml': [
    'invalid-unknown-top-key.yaml:3:1: target: unknown key "target" (did you mean "targets"?)',
  ],
};

describe('invalid agent configs', () => {
  it('every invalid-*.yaml fixture is in the table below', () => {
    const files = readdirSync(fixtures).filter((f) => f.startsWith('invalid-'));
    expect(files.sort()).toEqual(Object.keys(invalid).sort());
  });

  it.each(Object.entries(invalid))('%s', (file, lines) => {
    expect(refusal(readFileSync(join(fixtures, file), 'utf8'), file).split('\n')).toEqual(lines);
  });

  it('names the file by the path it was loaded from', () => {
    const file = join(fixtures, 'invalid-duplicate-name.yaml');
    expect(() => loadAgentConfig(file)).toThrow(
      `${file}:5:11: targets[1].name: duplicate target name "db-1" (first used at ${file}:2:11)`,
    );
  });

  it('refuses a YAML syntax error with its position', () => {
    // Inline: a fixture with broken YAML would break `prettier --check .`.
    expect(refusal('agent:\n  name: app-1\n  labels: { zone: a\ntargets: []\n')).toBe(
      'agent.yaml:4:1: Flow map in block collection must be sufficiently indented and end with a }',
    );
    expect(refusal('agent:\n\tname: app-1\n')).toBe(
      'agent.yaml:2:1: Tabs are not allowed as indentation',
    );
    expect(refusal('agent: { name: app-1 }}\n')).toBe(
      'agent.yaml:1:23: Unexpected flow-map-end token in YAML stream: "}"',
    );
  });

  it('refuses an unreadable file, naming it and the errno code', () => {
    const missing = join(fixtures, 'no-such-file.yaml');
    expect(() => loadAgentConfig(missing)).toThrow(
      `${missing}: cannot read the config file: ENOENT (no such file or directory)`,
    );
    expect(() => loadAgentConfig(fixtures)).toThrow(
      `${fixtures}: cannot read the config file: EISDIR`,
    );
  });

  it.each([
    { kind: 'icmp', address: '10.0.0.1;reboot' },
    { kind: 'icmp', address: '--help' },
    { kind: 'dns', address: 'example.com`id`' },
    { kind: 'tcp', address: '10.0.0.1:22 -oProxyCommand=x' },
    { kind: 'postgres', address: '10.0.0.1:5432\nhost=evil' },
    { kind: 'http', address: 'file:///etc/passwd' },
    { kind: 'http', address: 'http://10.0.0.1/\r\nX-Injected: 1' },
  ])('refuses the hostile $kind address $address', ({ kind, address }) => {
    const text = `targets:\n  - name: t\n    kind: ${kind}\n    address: ${JSON.stringify(address)}\n`;
    const message = refusal(text);
    expect(message).toMatch(/^agent\.yaml:4:14: targets\[0\]\.address: /);
    expect(message.split('\n')).toHaveLength(1);
  });

  it('refuses an unknown kind, naming every registry kind', () => {
    const message = refusal('targets:\n  - { name: t, kind: smtp, address: 10.0.0.1:25 }\n');
    for (const kind of probeKinds) expect(message).toContain(kind);
  });

  it('reports a target with both interval and cron once, on cron', () => {
    expect(refusal(oneTarget("    interval: 1s\n    cron: '* * * * * *'\n"))).toBe(
      'agent.yaml:6:11: targets[0].cron: cron and interval are mutually exclusive: keep one',
    );
  });
});

describe('valid agent configs', () => {
  it('applies every default to a minimal config', () => {
    const cfg = fixture('valid-minimal.yaml');
    expect(cfg).toEqual({
      agent: { name: hostname(), labels: {} },
      metrics: {
        listen: '127.0.0.1:9465',
        probeInstance: 'scrape',
        histograms: false,
        blackbox: 'core',
      },
      defaults: {
        intervalMs: 15_000,
        timeoutMs: 5_000,
        maxInFlight: 256,
        options: {},
        confirm: { count: 3, spacingMs: 150 },
        adaptiveTimeout: true,
      },
      targets: [
        {
          name: 'db-1',
          kind: 'tcp',
          address: '10.0.0.5:5432',
          target: { name: 'db-1', address: '10.0.0.5:5432', host: '10.0.0.5', port: 5432 },
          intervalMs: 15_000,
          timeoutMs: 5_000,
          options: probeRegistry.tcp.options.parse({}),
          labels: {},
        },
      ],
    });
  });

  it('takes the confirmation burst and adaptive timeouts under defaults', () => {
    const cfg = parseAgentConfig(
      'defaults:\n  confirm: { count: 5, spacing: 50ms }\n  adaptiveTimeout: false\n',
      'agent.yaml',
    );
    expect(cfg.defaults.confirm).toEqual({ count: 5, spacingMs: 50 });
    expect(cfg.defaults.adaptiveTimeout).toBe(false);
    expect(
      parseAgentConfig('defaults:\n  confirm: { count: 0 }\n', 'a.yaml').defaults.confirm,
    ).toEqual({ count: 0, spacingMs: 150 });
    expect(() =>
      parseAgentConfig('defaults:\n  confirm: { count: 3, spacing: 5ms }\n', 'agent.yaml'),
    ).toThrow('agent.yaml:2:33: defaults.confirm.spacing: expected at least 20ms (actual: "5ms")');
  });

  it('reads an empty file as an agent with no targets', () => {
    const cfg = fixture('valid-empty.yaml');
    expect(cfg.targets).toEqual([]);
    expect(cfg.agent.name).toBe(hostname());
    expect(cfg.defaults.intervalMs).toBe(15_000);
  });

  it('deep-freezes the result', () => {
    const cfg = fixture('valid-options-merge.yaml');
    const t = byName(cfg, 'plain');
    for (const obj of [
      cfg,
      cfg.agent,
      cfg.defaults,
      cfg.targets,
      t,
      t.options,
      t.labels,
      t.target,
    ]) {
      expect(Object.isFrozen(obj)).toBe(true);
    }
    expect(() => {
      (t as { timeoutMs: number }).timeoutMs = 1;
    }).toThrow(TypeError);
    expect(() => {
      (cfg.targets as ResolvedTarget[]).pop();
    }).toThrow(TypeError);
  });

  it('resolves intervals, cron schedules and timeouts (min(defaults.timeout, 90% of the interval))', () => {
    const cfg = fixture('valid-schedules.yaml');
    const seen = Object.fromEntries(
      cfg.targets.map((t) => [
        t.name,
        { intervalMs: t.intervalMs, timeoutMs: t.timeoutMs, cron: t.cron },
      ]),
    );
    expect(seen).toEqual({
      inherits: { intervalMs: 120_000, timeoutMs: 10_000, cron: undefined },
      fast: { intervalMs: 1000, timeoutMs: 900, cron: undefined },
      numeric: { intervalMs: 1500, timeoutMs: 250, cron: undefined },
      'by-cron': { intervalMs: 10_000, timeoutMs: 9_000, cron: '*/10 * * * * *' },
    });
    expect('cron' in byName(cfg, 'fast')).toBe(false);
  });

  it('shrinks an unwritten default timeout to 90% of a short default interval', () => {
    const cfg = parseAgentConfig('defaults:\n  interval: 1s\n', 'a.yaml');
    expect(cfg.defaults).toMatchObject({ intervalMs: 1000, timeoutMs: 900 });
    // Written, it is checked instead.
    expect(refusal('defaults:\n  interval: 1s\n  timeout: 5s\n')).toBe(
      'agent.yaml:3:12: defaults.timeout: timeout 5s must be shorter than the interval 1s',
    );
  });

  it("merges a target's options over the kind's defaults, key by key, and parses them", () => {
    const cfg = fixture('valid-options-merge.yaml');
    expect(byName(cfg, 'plain').options).toEqual({ family: 4, send: 'PING\r\n' });
    expect(byName(cfg, 'own-family').options).toEqual({ family: 6, send: 'PING\r\n' });
    // Defaults of another kind never leak in.
    expect(byName(cfg, 'other-kind').options).toEqual(probeRegistry.icmp.options.parse({}));
    expect(cfg.defaults.options).toEqual({ tcp: { family: 4, send: 'PING\r\n' } });
  });

  it.each([
    { file: 'valid-metrics-disabled.yaml', listen: false },
    { file: 'valid-metrics-ipv6.yaml', listen: '[::1]:0' },
  ])('metrics.listen in $file → $listen', ({ file, listen }) => {
    expect(fixture(file).metrics.listen).toBe(listen);
  });

  it('metrics.probeInstance: "scrape" unless the config asks for the target address', () => {
    expect(fixture('valid-minimal.yaml').metrics.probeInstance).toBe('scrape');
    expect(fixture('valid-metrics-probe-instance.yaml').metrics).toEqual({
      listen: '127.0.0.1:9465',
      probeInstance: 'address',
      histograms: false,
      blackbox: 'core',
    });
  });

  it('metrics.histograms and metrics.blackbox: off and "core" unless the config opts in', () => {
    expect(fixture('valid-metrics-series.yaml').metrics).toEqual({
      listen: '127.0.0.1:9465',
      probeInstance: 'scrape',
      histograms: true,
      blackbox: 'full',
    });
  });

  it('disables /metrics with an empty listen address too', () => {
    expect(parseAgentConfig('metrics:\n  listen: ""\n', 'a.yaml').metrics.listen).toBe(false);
  });

  it('loads the example in deploy/examples, realistic and complete', () => {
    const cfg = loadAgentConfig(exampleFile);
    expect(cfg.agent).toEqual({
      name: 'app-1',
      labels: { zone: 'a', switch: 'sw-1', role: 'api' },
    });
    const kinds = new Set(cfg.targets.map((t) => t.kind));
    for (const kind of ['icmp', 'mtu', 'tcp', 'http', 'dns', 'postgres', 'redis'])
      expect(kinds).toContain(kind);
    for (const t of cfg.targets) expect(t.timeoutMs).toBeLessThan(t.intervalMs);
    // YAML anchors are followed: db-1's labels are shared by its two targets.
    expect(byName(cfg, 'db-1-postgres').labels).toEqual({
      zone: 'b',
      switch: 'sw-2',
      role: 'database',
    });
    expect(byName(cfg, 'db-2-postgres').target.address).toBe('10.0.2.12:5432');
    expect(byName(cfg, 'db-1-mtu')).toMatchObject({
      kind: 'mtu',
      options: { size: 1500 },
      labels: { switch: 'sw-2' },
    });
    expect(byName(cfg, 'reports-health')).toMatchObject({
      cron: '0 */5 * * * *',
      intervalMs: 300_000,
    });
    const health = byName(cfg, 'app-2-health');
    expect(health.kind === 'http' && health.options.validStatusCodes).toEqual([200, 204]);
  });
});

describe('collector: in the agent config', () => {
  it('takes the collector, credentials, TLS and plan policy, with the policy defaults', () => {
    const cfg = parseAgentConfig(
      `agent: { name: app-1 }
collector:
  url: https://collector.internal:7070
  tokenFile: /etc/faultline/token
  caFile: /etc/faultline/ca.pem
  requireTls: true
  stateDir: /var/lib/faultline
  plan: { allowTargets: [10.0.0.0/8, '*.internal'] }
`,
      'agent.yaml',
    );
    expect(cfg.collector).toEqual({
      url: 'https://collector.internal:7070',
      tokenFile: '/etc/faultline/token',
      caFile: '/etc/faultline/ca.pem',
      requireTls: true,
      stateDir: '/var/lib/faultline',
      plan: {
        allowTargets: ['10.0.0.0/8', '*.internal'],
        allowTcpSend: false,
        allowHttpMethods: ['GET', 'HEAD'],
        allowHttpHeaders: false,
      },
      transport: 'http',
    });
    expect(parseAgentConfig('agent: { name: a }\n', 'agent.yaml').collector).toBeUndefined();
  });

  it.each([
    [
      'token and tokenFile both',
      'collector: { url: http://c:1, stateDir: /s, token: x, tokenFile: /t }',
      /collector\.tokenFile: give token or tokenFile, not both/,
    ],
    ['no stateDir', 'collector: { url: http://c:1 }', /collector\.stateDir/],
    [
      'not a URL',
      'collector: { url: ftp://c, stateDir: /s }',
      /collector\.url: expected an http\(s\) URL/,
    ],
    [
      'targets beside a collector',
      'collector: { url: http://c:1, stateDir: /s }\ntargets: [{ name: t, kind: tcp, address: "10.0.0.1:80" }]',
      /targets: with `collector` the plan says what to probe/,
    ],
    [
      'an unknown method',
      'collector: { url: http://c:1, stateDir: /s, plan: { allowHttpMethods: [DELETE] } }',
      /collector\.plan\.allowHttpMethods\[0\]: expected one of: GET, HEAD, POST/,
    ],
  ])('refuses %s, naming the path', (_desc, text, message) => {
    expect(() => parseAgentConfig(`agent: { name: a }\n${text}\n`, 'agent.yaml')).toThrow(message);
  });
});

describe('collectors: in the agent config', () => {
  it('takes every collector; the agent-wide stateDir and plan, given once, fill every item', () => {
    const cfg = parseAgentConfig(
      `agent: { name: app-1 }
collectors:
  - url: https://collector-a.zone-a:7070
    tokenFile: /etc/faultline/token
    stateDir: /var/lib/faultline
    plan: { allowTargets: [10.0.0.0/8] }
  - url: https://collector-b.zone-b:7070
    tokenFile: /etc/faultline/token-b
    caFile: /etc/faultline/ca-b.pem
`,
      'agent.yaml',
    );
    const plan = {
      allowTargets: ['10.0.0.0/8'],
      allowTcpSend: false,
      allowHttpMethods: ['GET', 'HEAD'],
      allowHttpHeaders: false,
    };
    expect(cfg.collectors).toEqual([
      {
        url: 'https://collector-a.zone-a:7070',
        tokenFile: '/etc/faultline/token',
        requireTls: false,
        stateDir: '/var/lib/faultline',
        plan,
      },
      {
        url: 'https://collector-b.zone-b:7070',
        tokenFile: '/etc/faultline/token-b',
        caFile: '/etc/faultline/ca-b.pem',
        requireTls: false,
        stateDir: '/var/lib/faultline',
        plan,
      },
    ]);
    // The first stands as `collector` for consumers that know one.
    expect(cfg.collector).toEqual(cfg.collectors?.[0]);
    // `collector:` is the one-collector form of the same list.
    const one = parseAgentConfig(
      'agent: { name: a }\ncollector: { url: http://c:1, stateDir: /s }\n',
      'agent.yaml',
    );
    expect(one.collectors).toEqual([one.collector]);
  });

  it.each([
    [
      'collector and collectors both',
      'collector: { url: http://c:1, stateDir: /s }\ncollectors: [{ url: http://d:1, stateDir: /s }]',
      /collectors: give `collector` \(one\) or `collectors` \(a list\), not both/,
    ],
    ['an empty list', 'collectors: []', /collectors: .*at least 1|collectors: .*>=1/i],
    [
      'no stateDir in any item',
      'collectors: [{ url: http://c:1 }, { url: http://d:1 }]',
      /collectors\[0\]\.stateDir: stateDir is required/,
    ],
    [
      'two different state dirs',
      'collectors: [{ url: http://c:1, stateDir: /s }, { url: http://d:1, stateDir: /t }]',
      /collectors\[1\]\.stateDir: every collector shares the agent's one stateDir/,
    ],
    [
      'two different plan policies',
      'collectors: [{ url: http://c:1, stateDir: /s, plan: { allowTcpSend: true } }, { url: http://d:1, plan: {} }]',
      /collectors\[1\]\.plan: every collector shares/,
    ],
    [
      'the same collector twice',
      'collectors: [{ url: http://c:1, stateDir: /s }, { url: http://c:1/ }]',
      /collectors\[1\]\.url: the same collector as collectors\[0\]\.url/,
    ],
    [
      'token and tokenFile both in an item',
      'collectors: [{ url: http://c:1, stateDir: /s }, { url: http://d:1, token: x, tokenFile: /t }]',
      /collectors\[1\]\.tokenFile: give token or tokenFile, not both/,
    ],
    [
      'NATS in the list',
      'collectors: [{ url: http://c:1, stateDir: /s, transport: nats }]',
      /collectors\[0\]\.transport: collectors: reports over HTTP; for NATS give one `collector:` with `transport: nats`/,
    ],
    [
      'targets beside collectors',
      'collectors: [{ url: http://c:1, stateDir: /s }]\ntargets: [{ name: t, kind: tcp, address: "10.0.0.1:80" }]',
      /targets: with `collectors` the plan says what to probe/,
    ],
  ])('refuses %s, naming the path', (_desc, text, message) => {
    expect(() => parseAgentConfig(`agent: { name: a }\n${text}\n`, 'agent.yaml')).toThrow(message);
  });
});

describe('durations', () => {
  it.each([
    { written: '500ms', ms: 500 },
    { written: '1s', ms: 1000 },
    { written: '1.5s', ms: 1500 },
    { written: '2m', ms: 120_000 },
    { written: '1h', ms: 3_600_000 },
    { written: '2500', ms: 2500 },
    { written: '"2500"', ms: 2500 },
  ])('interval: $written → $ms ms', ({ written, ms }) => {
    const cfg = parseAgentConfig(oneTarget(`    interval: ${written}\n`), 'a.yaml');
    expect(cfg.targets[0]?.intervalMs).toBe(ms);
  });

  it.each([
    { written: '1.5ms', why: 'expected whole milliseconds (actual: "1.5ms")' },
    { written: '50ms', why: 'expected at least 100ms (actual: "50ms")' },
    { written: '25h', why: 'expected at most 24h (actual: "25h")' },
    { written: '-1s', why: `${durationHelp} (actual: "-1s")` },
    { written: '1d', why: `${durationHelp} (actual: "1d")` },
    { written: 'true', why: `${durationHelp} (actual: true)` },
  ])('interval: $written is refused', ({ written, why }) => {
    expect(refusal(oneTarget(`    interval: ${written}\n`))).toBe(
      `agent.yaml:5:15: targets[0].interval: ${why}`,
    );
  });

  it('prints durations the way people write them', () => {
    expect([800, 1000, 1500, 60_000, 90_000, 3_600_000].map(formatDurationMs)).toEqual([
      '800ms',
      '1s',
      '1.5s',
      '1m',
      '90s',
      '1h',
    ]);
  });

  it.each([
    { expr: '*/5 * * * * *', ms: 5_000 },
    { expr: '* * * * * *', ms: 1_000 },
    { expr: '0,30 * * * * *', ms: 30_000 },
    { expr: '* * * * *', ms: 60_000 },
    { expr: '0 0,1 * * * *', ms: 60_000 },
    { expr: '0 */15 * * * *', ms: 900_000 },
    { expr: '@hourly', ms: 3_600_000 },
    { expr: '0 0 */6 * * *', ms: 21_600_000 },
    { expr: '0 9 * * MON-FRI', ms: 86_400_000 },
  ])('cron $expr runs at most every $ms ms', ({ expr, ms }) => {
    expect(cronPeriodMs(expr)).toBe(ms);
  });
});

describe('JSON Schema', () => {
  it('deploy/schema/agent.schema.json is what agentJsonSchema() generates', async () => {
    const generated = agentJsonSchema();
    if (process.env.FAULTLINE_UPDATE_SCHEMA === '1') {
      const options = (await resolveConfig(schemaFile)) ?? {};
      writeFileSync(
        schemaFile,
        await format(JSON.stringify(generated), { ...options, filepath: schemaFile }),
      );
    }
    const committed: unknown = existsSync(schemaFile)
      ? JSON.parse(readFileSync(schemaFile, 'utf8'))
      : undefined;
    expect(
      committed,
      'deploy/schema/agent.schema.json is out of date; regenerate it with: ' +
        'FAULTLINE_UPDATE_SCHEMA=1 npx vitest run agent/config.test.ts',
    ).toEqual(generated);
  });

  it("describes the input people write, with every kind's options", () => {
    const schema = agentJsonSchema() as {
      properties: {
        defaults: {
          properties: Record<string, { default?: unknown; properties?: Record<string, unknown> }>;
        };
        targets: { items: { required: string[]; allOf: { if: unknown; then: unknown }[] } };
      };
    };
    const defaults = schema.properties.defaults.properties;
    expect(defaults.interval?.default).toBe('15s');
    expect(Object.keys(defaults.options?.properties ?? {})).toEqual(probeKinds);
    const items = schema.properties.targets.items;
    expect(items.required).toEqual(['name', 'kind', 'address']);
    expect(items.allOf.map((c) => c.if)).toEqual(
      probeKinds.map((kind) => ({ properties: { kind: { const: kind } }, required: ['kind'] })),
    );
    expect(JSON.stringify(items.allOf[probeKinds.indexOf('http')]?.then)).toContain(
      'validStatusCodes',
    );
  });
});
