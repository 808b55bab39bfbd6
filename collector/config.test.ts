import {
  accessSync,
  constants,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/errors.js';
import { probeKinds } from '../probes/registry.js';
import { TestPki } from '../test/helpers/tls.js';
import type { TestCert } from '../test/helpers/tls.js';
import {
  collectorJsonSchema,
  defaultCollectorConfig,
  knownRoles,
  loadCollectorConfig,
  parseCollectorConfig,
  serviceKinds,
} from './config.js';
import type { CollectorConfig, ComponentConfig } from './config.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtures = join(root, 'test/fixtures/collector');
const exampleFile = join(root, 'deploy/examples/collector.yaml');
const schemaFile = join(root, 'deploy/schema/collector.schema.json');

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-collector-config-'));
  tempDirs.push(dir);
  return dir;
}

function fixture(name: string): CollectorConfig {
  return parseCollectorConfig(readFileSync(join(fixtures, name), 'utf8'), name);
}

/** The ConfigError message for a config text, or a failure when it is accepted. */
function refusal(text: string, file = 'collector.yaml'): string {
  try {
    parseCollectorConfig(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('FL_ERR_CONFIG');
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

function component(cfg: CollectorConfig, name: string): ComponentConfig {
  const c = cfg.inventory.components.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no component ${name}`);
  return c;
}

const token = '0123456789abcdef0123';
const tokens = `tokens:\n  - { name: fleet, token: ${token} }\n`;

// blackbox_exporter style: every invalid fixture against its exact message.
const invalid: Record<string, string[]> = {
  'invalid-all-revoked.yaml': [
    'invalid-all-revoked.yaml:2:3: tokens: every token is revoked: no agent could report; add one that is not',
  ],
  'invalid-bare-number.yaml': [
    'invalid-bare-number.yaml:5:19: agents.reportInterval: expected at least 100ms; a bare number is milliseconds (write "15s") (actual: 5)',
    'invalid-bare-number.yaml:7:13: probes.interval: expected a duration: milliseconds, or a number with ms, s, m or h (e.g. "500ms", "15s", "2m") (actual: "1 minute")',
  ],
  'invalid-component.yaml': [
    'invalid-component.yaml:5:13: inventory.components[0].name: expected 1–128 characters from A-Z a-z 0-9 . _ - (actual: "db/1")',
    'invalid-component.yaml:6:16: inventory.components[0].address: it starts with "-" and would be read as a flag (actual: "-oProxyCommand=reboot")',
    'invalid-component.yaml:7:13: inventory.components[0].role: expected 1–64 characters from A-Z a-z 0-9 . _ - (actual: "primary database")',
    'invalid-component.yaml:8:14: inventory.components[0].agent: expected 1–128 characters from A-Z a-z 0-9 . _ : - (actual: "db 1")',
    'invalid-component.yaml:10:16: inventory.components[1].address: "10.0.2.300" is not a valid hostname or IP address (actual: "10.0.2.300")',
    'invalid-component.yaml:11:7: inventory.components[2].address: missing required key "address"',
  ],
  'invalid-data-dir.yaml': [
    'invalid-data-dir.yaml:2:10: dataDir: cannot create the data directory: /etc/passwd is not a directory (actual: "/etc/passwd/faultline")',
  ],
  'invalid-confirm.yaml': [
    'invalid-confirm.yaml:5:21: probes.confirm.count: expected at most 10 (actual: 11)',
    'invalid-confirm.yaml:5:34: probes.confirm.spacing: expected at most 5s (actual: "10s")',
    'invalid-confirm.yaml:6:20: probes.adaptiveTimeout: expected true or false (actual: "sometimes")',
  ],
  'invalid-dns.yaml': [
    'invalid-dns.yaml:6:12: probes.options.dns.server: the server of a dns service is its component (address and port): leave server out',
    'invalid-dns.yaml:12:74: inventory.components[0].services[0].options.server: the server of a dns service is its component (address and port): leave server out',
    'invalid-dns.yaml:13:11: inventory.components[0].services[1]: a dns service needs `query`: the name to resolve through it',
    'invalid-dns.yaml:14:40: inventory.components[0].services[2].query: it contains whitespace or control characters (actual: "db 1")',
    'invalid-dns.yaml:18:11: inventory.components[1].services[0]: a dns service is asked by IP address: write the component address as an IP',
  ],
  'invalid-duplicate-names.yaml': [
    'invalid-duplicate-names.yaml:9:11: inventory.components[0].services[1]: duplicate service name "postgres" (the name defaults to the kind: give each a name) (first used at invalid-duplicate-names.yaml:8:11)',
    'invalid-duplicate-names.yaml:11:19: inventory.components[0].services[3].name: duplicate service name "api" (first used at invalid-duplicate-names.yaml:10:19)',
    'invalid-duplicate-names.yaml:12:13: inventory.components[1].name: duplicate component name "db-1" (first used at invalid-duplicate-names.yaml:5:13)',
    'invalid-duplicate-names.yaml:16:14: inventory.components[2].agent: agent "db-1" already runs on component "db-1": one agent per host (first used at invalid-duplicate-names.yaml:5:13)',
  ],
  'invalid-durations.yaml': [
    'invalid-durations.yaml:5:16: agents.silentAfter: silentAfter 8s must be at least twice the report interval 5s',
    'invalid-durations.yaml:6:16: agents.planRefresh: expected at least 1s (actual: "500ms")',
    'invalid-durations.yaml:9:12: probes.timeout: timeout 2s must be shorter than the interval 2s',
  ],
  'invalid-empty-tokens.yaml': [
    'invalid-empty-tokens.yaml:1:9: tokens: expected at least one token: agents need one to report',
  ],
  'invalid-hostile-options.yaml': [
    'invalid-hostile-options.yaml:8:15: inventory.components[0].labels.zone: label values may not contain control characters (actual: "b\\u001b[2J")',
    'invalid-hostile-options.yaml:9:15: inventory.components[0].labels.rack: label values may not contain control characters (actual: "r1\\nlevel=error")',
    'invalid-hostile-options.yaml:11:64: inventory.components[0].services[0].options.expect: expected a regular expression: invalid or unsupported Perl syntax: `(?=`: regular expressions run in linear time (RE2), without lookahead, lookbehind or backreferences (actual: "^(?=SSH-2)")',
    'invalid-hostile-options.yaml:12:69: inventory.components[0].services[1].options.expectBody: expected a regular expression: invalid escape sequence: `\\1`: regular expressions run in linear time (RE2), without lookahead, lookbehind or backreferences (actual: "(ok)\\\\1")',
    'invalid-hostile-options.yaml:18:40: inventory.components[0].services[2].options.expectAnswers[0]: expected an answer, or a regular expression between slashes (/.../): invalid named capture: `(?<!x)10\\.0`: regular expressions run in linear time (RE2), without lookahead, lookbehind or backreferences (actual: "/(?<!x)10\\\\.0/")',
  ],
  'invalid-labels.yaml': [
    'invalid-labels.yaml:9:9: inventory.components[0].labels.role: reserved label name: Faultline sets agent, target, kind, class, phase, instance, job, le, role, component, service itself',
    'invalid-labels.yaml:10:9: inventory.components[0].labels.agent: reserved label name: Faultline sets agent, target, kind, class, phase, instance, job, le, role, component, service itself',
    'invalid-labels.yaml:11:9: inventory.components[0].labels["1rack"]: expected a label name: letters, digits and "_", not starting with a digit',
    'invalid-labels.yaml:12:15: inventory.components[0].labels.rack: expected a string (actual: 2)',
  ],
  'invalid-layers-empty.yaml': [
    'invalid-layers-empty.yaml:4:11: probes.layers: expected at least one layer (actual: [])',
  ],
  'invalid-layers.yaml': [
    'invalid-layers.yaml:4:18: probes.layers[1]: expected one of: icmp, tcp, protocol (actual: "udp")',
    'invalid-layers.yaml:4:23: probes.layers[2]: layer "icmp" is listed twice',
  ],
  'invalid-limits-small.yaml': [
    'invalid-limits-small.yaml:4:19: limits.maxReportBytes: expected at least 1KiB (actual: 100)',
  ],
  'invalid-limits.yaml': [
    'invalid-limits.yaml:4:13: diagnosis.debounce: expected at least 1 (actual: 0)',
    'invalid-limits.yaml:6:19: limits.maxReportBytes: expected a size: bytes, or a number with KB, MB or GB (binary: 1KB = 1024 bytes), e.g. "8MB" (actual: "8XB")',
    'invalid-limits.yaml:7:23: limits.maxResultsPerBatch: expected at most 50000 (actual: 100000)',
  ],
  'invalid-listen-host.yaml': [
    'invalid-listen-host.yaml:1:9: listen: expected host:port such as "127.0.0.1:7070" (IPv6 in brackets: "[::1]:7070") (actual: "collector host:7070")',
  ],
  'invalid-listen.yaml': [
    'invalid-listen.yaml:1:9: listen: expected host:port such as "127.0.0.1:7070" (IPv6 in brackets: "[::1]:7070") (actual: 7070)',
  ],
  'invalid-missing-tokens.yaml': [
    'invalid-missing-tokens.yaml:2:1: tokens: missing required key "tokens"',
  ],
  'invalid-mtu.yaml': [
    'invalid-mtu.yaml:5:16: probes.mtu.size: expected at most 65535 (actual: 70000)',
    'invalid-mtu.yaml:7:12: probes.options.mtu.size: the size of the planned mtu probe is probes.mtu.size: leave size out here',
    'invalid-mtu.yaml:13:19: inventory.components[0].services[0].kind: mtu is not a service: every pinged component gets a full-size echo already (probes.mtu) (actual: "mtu")',
  ],
  'invalid-mtu-form.yaml': [
    'invalid-mtu-form.yaml:5:8: probes.mtu: expected true, false or a mapping such as { size: 9000 } (actual: "jumbo")',
  ],
  'invalid-mtu-ipv6.yaml': [
    'invalid-mtu-ipv6.yaml:5:16: probes.mtu.size: expected at least 1280: component "db-2" has an IPv6 address (fd00::12), and every IPv6 link carries 1280-byte packets (actual: 1000)',
  ],
  'invalid-not-mapping.yaml': [
    'invalid-not-mapping.yaml:2:1: expected a mapping (actual: [{"listen":"127.0.0.1:7070"}])',
  ],
  'invalid-options.yaml': [
    'invalid-options.yaml:6:20: probes.options.tcp.family: expected one of: 0, 4, 6 (actual: 5)',
    'invalid-options.yaml:7:5: probes.options.postgress: unknown key "postgress" (did you mean "postgres"?)',
    'invalid-options.yaml:13:58: inventory.components[0].services[0].options.sned: unknown key "sned" (did you mean "send"?)',
    'invalid-options.yaml:18:31: inventory.components[0].services[1].options.validStatusCodes: expected a list (actual: 200)',
  ],
  'invalid-service-fields.yaml': [
    'invalid-service-fields.yaml:9:39: inventory.components[0].services[0].path: path is for http services only',
    'invalid-service-fields.yaml:10:36: inventory.components[0].services[1].query: query is for dns services only',
    'invalid-service-fields.yaml:10:63: inventory.components[0].services[1].path: expected a URL path starting with "/" (e.g. "/healthz") (actual: "healthz")',
    'invalid-service-fields.yaml:11:39: inventory.components[0].services[2].tls: tls is for http services only',
    'invalid-service-fields.yaml:12:11: inventory.components[0].services[3]: a tcp service needs a port',
    'invalid-service-fields.yaml:13:43: inventory.components[0].services[4].port: expected at most 65535 (actual: 70000)',
  ],
  'invalid-service-kind.yaml': [
    'invalid-service-kind.yaml:8:19: inventory.components[0].services[0].kind: icmp is not a service: every component is pinged already (probes.layers) (actual: "icmp")',
    // Derived from the registry: a new kind shows up here by itself.
    `invalid-service-kind.yaml:9:19: inventory.components[0].services[1].kind: unknown service kind: expected one of ${serviceKinds.join(', ')} (actual: "smtp")`,
    'invalid-service-kind.yaml:10:11: inventory.components[0].services[2].kind: missing required key "kind"',
  ],
  'invalid-tls.yaml': [
    'invalid-tls.yaml:3:9: tls.cert: cannot read the certificate file: ENOENT (no such file or directory) (actual: "/nonexistent/faultline/collector.crt")',
    'invalid-tls.yaml:4:8: tls.key: cannot read the key file: ENOENT (no such file or directory) (actual: "/nonexistent/faultline/collector.key")',
  ],
  'invalid-tokens.yaml': [
    'invalid-tokens.yaml:3:27: tokens[0].token: expected at least 16 characters (has 7; the value is never shown)',
    'invalid-tokens.yaml:4:28: tokens[1].token: expected only A-Z a-z 0-9 - . _ ~ + / (and "=" at the end); the value is never shown',
    'invalid-tokens.yaml:5:48: tokens[2].tokenFile: token and tokenFile are mutually exclusive: keep one',
    'invalid-tokens.yaml:6:5: tokens[3]: expected token or tokenFile: the secret agents send',
    'invalid-tokens.yaml:7:13: tokens[4].name: duplicate token name "short" (first used at invalid-tokens.yaml:3:13)',
    'invalid-tokens.yaml:8:26: tokens[5].token: the same secret as another token: give each token its own (first used at invalid-tokens.yaml:7:27)',
    'invalid-tokens.yaml:9:33: tokens[6].tokenFile: cannot read the token file: ENOENT (no such file or directory) (actual: "/nonexistent/faultline/fleet.token")',
    'invalid-tokens.yaml:10:28: tokens[7].token: expected a string (the value is never shown)',
  ],
  'invalid-viewers.yaml': [
    'invalid-viewers.yaml:5:27: viewers[0].token: expected at least 16 characters (has 7; the value is never shown)',
    'invalid-viewers.yaml:6:27: viewers[1].token: the same secret as another token: give each token its own (first used at invalid-viewers.yaml:3:27)',
    'invalid-viewers.yaml:7:5: viewers[2]: expected token or tokenFile: the secret readers send',
    'invalid-viewers.yaml:8:13: viewers[3].name: duplicate token name "short" (first used at invalid-viewers.yaml:5:13)',
    'invalid-viewers.yaml:8:31: viewers[3].tokenFile: cannot read the token file: ENOENT (no such file or directory) (actual: "/nonexistent/faultline/viewer.token")',
    'invalid-viewers.yaml:9:49: viewers[4].role: unknown key "role"',
    'invalid-viewers.yaml:10:13: readAccess: expected one of: token, open (actual: "public")',
  ],
  'invalid-unknown-keys.yaml': [
    'invalid-unknown-keys.yaml:2:1: listn: unknown key "listn" (did you mean "listen"?)',
    'invalid-unknown-keys.yaml:7:7: inventory.components[0].address: missing required key "address"',
    'invalid-unknown-keys.yaml:8:7: inventory.components[0].adress: unknown key "adress" (did you mean "address"?)',
    'invalid-unknown-keys.yaml:10:29: inventory.components[0].services[0].prot: unknown key "prot" (did you mean "port"?)',
  ],
};

describe('invalid collector configs', () => {
  it('every invalid-*.yaml fixture is in the table below', () => {
    const files = readdirSync(fixtures).filter((f) => f.startsWith('invalid-'));
    expect(files.sort()).toEqual(Object.keys(invalid).sort());
  });

  it.each(Object.entries(invalid))('%s', (file, lines) => {
    expect(refusal(readFileSync(join(fixtures, file), 'utf8'), file).split('\n')).toEqual(lines);
  });

  it('names the file by the path it was loaded from', () => {
    const file = join(fixtures, 'invalid-duplicate-names.yaml');
    expect(() => loadCollectorConfig(file)).toThrow(
      `${file}:12:13: inventory.components[1].name: duplicate component name "db-1" (first used at ${file}:5:13)`,
    );
  });

  it('refuses an unreadable file, naming it and the errno code', () => {
    const missing = join(fixtures, 'no-such-file.yaml');
    expect(() => loadCollectorConfig(missing)).toThrow(
      `${missing}: cannot read the config file: ENOENT (no such file or directory)`,
    );
  });

  it.each([
    { what: 'too short', secret: 'sesame-open-up' },
    { what: 'with spaces', secret: 'correct horse battery staple' },
    { what: 'with a quote', secret: 'abcdefghijklmnop"qrstuvwxyz' },
  ])('never shows a token that is $what', ({ secret }) => {
    const message = refusal(`tokens:\n  - { name: fleet, token: '${secret}' }\n`);
    expect(message).toMatch(/^collector\.yaml:2:\d+: tokens\[0\]\.token: expected /);
    expect(message).toContain('the value is never shown');
    expect(message).not.toContain(secret);
  });

  it('never shows the secret of a duplicated token', () => {
    const message = refusal(
      `tokens:\n  - { name: a, token: ${token} }\n  - { name: b, token: ${token} }\n`,
    );
    expect(message).toBe(
      'collector.yaml:3:23: tokens[1].token: the same secret as another token: give each token its own (first used at collector.yaml:2:23)',
    );
  });
});

describe('token files', () => {
  it('reads the secret from tokenFile, without the surrounding whitespace', () => {
    const file = join(tempDir(), 'fleet.token');
    writeFileSync(file, `  ${token}\n`);
    const cfg = parseCollectorConfig(
      `tokens:\n  - { name: fleet, tokenFile: ${file} }\n`,
      'c.yaml',
    );
    expect(cfg.tokens).toEqual([{ name: 'fleet', token, revoked: false, role: 'agent' }]);
  });

  it('refuses a token file holding a short secret, without showing it', () => {
    const file = join(tempDir(), 'short.token');
    writeFileSync(file, 'hunter2\n');
    const message = refusal(`tokens:\n  - { name: fleet, tokenFile: ${file} }\n`);
    expect(message).toBe(
      `collector.yaml:2:31: tokens[0].tokenFile: the token in the file: expected at least 16 characters (has 7; the value is never shown) (actual: ${JSON.stringify(file)})`,
    );
    expect(message).not.toContain('hunter2');
  });

  it('refuses a directory as token file', () => {
    const dir = tempDir();
    expect(refusal(`tokens:\n  - { name: fleet, tokenFile: ${dir} }\n`)).toBe(
      `collector.yaml:2:31: tokens[0].tokenFile: cannot read the token file: it is a directory (actual: ${JSON.stringify(dir)})`,
    );
  });
});

describe('viewers', () => {
  it('reads viewer tokens like agent tokens (tokenFile too); readAccess defaults to token, open when written', () => {
    const file = join(tempDir(), 'viewer.token');
    const viewer = 'viewer-0123456789abcdef';
    writeFileSync(file, `  ${viewer}\n`);
    const cfg = parseCollectorConfig(
      `${tokens}viewers:\n  - { name: ops, tokenFile: ${file} }\n  - { name: old, token: viewer-old-0123456789, revoked: true }\n`,
      'collector.yaml',
    );
    expect(cfg.viewers).toEqual([
      { name: 'ops', token: viewer, revoked: false },
      { name: 'old', token: 'viewer-old-0123456789', revoked: true },
    ]);
    expect(cfg.readAccess).toBe('token');
    expect(parseCollectorConfig(`${tokens}readAccess: open\n`, 'collector.yaml').readAccess).toBe(
      'open',
    );
  });

  it('never shows a viewer secret that is also an agent token', () => {
    const message = refusal(`${tokens}viewers:\n  - { name: ops, token: ${token} }\n`);
    expect(message).toBe(
      'collector.yaml:4:25: viewers[0].token: the same secret as another token: give each token its own (first used at collector.yaml:2:27)',
    );
    expect(message).not.toContain(token);
  });
});

describe('reportInterval auto', () => {
  it('takes auto or a duration, and says so when given neither', () => {
    expect(refusal(`${tokens}agents: { reportInterval: soon }\n`)).toBe(
      'collector.yaml:3:27: agents.reportInterval: expected a duration: milliseconds, or a number with ms, s, m or h (e.g. "500ms", "15s", "2m"), or auto (actual: "soon")',
    );
    expect(refusal(`${tokens}agents: { reportInterval: 50ms }\n`)).toBe(
      'collector.yaml:3:27: agents.reportInterval: expected at least 100ms (actual: "50ms")',
    );
  });

  it('a silentAfter written beside auto must cover twice the longest interval auto picks', () => {
    expect(refusal(`${tokens}agents: { reportInterval: auto, silentAfter: 10s }\n`)).toBe(
      'collector.yaml:3:46: agents.silentAfter: silentAfter 10s must be at least twice the report interval 10s (the longest auto picks)',
    );
    const cfg = parseCollectorConfig(`${tokens}agents: { silentAfter: 20s }\n`, 'collector.yaml');
    expect(cfg.agents).toMatchObject({ reportIntervalMs: 'auto', silentAfterMs: 20_000 });
  });
});

describe('identity: token roles, names and the identity block', () => {
  const other = 'another-token-0123456789';
  it('parses role, agents and identity, with defaults', () => {
    const cfg = parseCollectorConfig(
      [
        'tokens:',
        `  - { name: boot, token: ${token}, role: bootstrap, agents: ["web-*", db-1] }`,
        `  - { name: db-2, token: ${other}, agents: [db-2] }`,
        'identity: { releaseAfter: 10m, maxSeqGap: 1000 }',
        '',
      ].join('\n'),
      'collector.yaml',
    );
    expect(cfg.tokens).toEqual([
      { name: 'boot', token, revoked: false, role: 'bootstrap', agents: ['web-*', 'db-1'] },
      { name: 'db-2', token: other, revoked: false, role: 'agent', agents: ['db-2'] },
    ]);
    expect(cfg.identity).toEqual({ releaseAfterMs: 600_000, maxSeqGap: 1000 });
  });

  it.each([
    [
      'an unknown role',
      `  - { name: a, token: ${token}, role: admin }`,
      'collector.yaml:2:51: tokens[0].role: expected one of: agent, bootstrap (actual: "admin")',
    ],
    [
      'a name pattern with a space',
      `  - { name: a, token: ${token}, agents: ["web 1"] }`,
      'collector.yaml:2:54: tokens[0].agents[0]: expected an agent name or pattern: 1–128 characters from A-Z a-z 0-9 . _ : - and * (any run of characters) (actual: "web 1")',
    ],
    [
      'an empty name list',
      `  - { name: a, token: ${token}, agents: [] }`,
      'collector.yaml:2:53: tokens[0].agents: expected at least 1 items (actual: [])',
    ],
    [
      'a pattern listed twice',
      `  - { name: a, token: ${token}, agents: [db-1, db-1] }`,
      'collector.yaml:2:60: tokens[0].agents[1]: "db-1" is listed twice (first listed at collector.yaml:2:54)',
    ],
  ])('refuses %s, naming the path', (_what, line, expected) => {
    expect(refusal(`tokens:\n${line}\n`)).toBe(expected);
  });

  it.each([
    [
      'identity: { maxSeqGap: 0 }',
      'collector.yaml:3:24: identity.maxSeqGap: expected at least 1 (actual: 0)',
    ],
    [
      'identity: { releaseAfter: soon }',
      'collector.yaml:3:27: identity.releaseAfter: expected a duration: milliseconds, or a number with ms, s, m or h (e.g. "500ms", "15s", "2m") (actual: "soon")',
    ],
    ['identity: { release: 1h }', 'collector.yaml:3:13: identity.release: unknown key "release"'],
  ])('identity: refuses %s', (line, expected) => {
    expect(refusal(`${tokens}${line}\n`)).toMatch(expected.split(' (actual')[0]!);
  });
});

describe('valid collector configs', () => {
  it('fills in every default around a single token', () => {
    const cfg = fixture('valid-minimal.yaml');
    expect(cfg).toEqual({
      listen: '127.0.0.1:7070',
      dataDir: resolve('faultline-data'),
      tokens: [{ name: 'fleet', token, revoked: false, role: 'agent' }],
      viewers: [],
      readAccess: 'token',
      identity: { releaseAfterMs: 3_600_000, maxSeqGap: 200_000 },
      agents: { silentAfterMs: 'auto', reportIntervalMs: 'auto', planRefreshMs: 30_000 },
      probes: {
        intervalMs: 1000,
        timeoutMs: 800,
        layers: ['icmp', 'tcp', 'protocol'],
        mesh: true,
        mtu: { size: 1500 },
        options: {},
        confirm: { count: 3, spacingMs: 150 },
        adaptiveTimeout: true,
      },
      diagnosis: { debounce: 3, flapDamping: true },
      limits: {
        maxReportBytes: 8 * 1024 * 1024,
        maxResultsPerBatch: 50_000,
        maxConnections: 1024,
        headersTimeoutMs: 10_000,
        keepAliveTimeoutMs: 5_000,
      },
      inventory: { components: [] },
      alerts: {
        holdForMs: 0,
        refireHoldForMs: 30_000,
        settleMaxMs: 1_700, // auto: the 1 s probe interval, a 3 × 150 ms burst, 250 ms
        healTailHoldMs: 5_000,
        lossHoldForMs: 3_000,
        lossTailHoldMs: 30_000,
        lateHoldMaxMs: 4_000,
        resendEveryMs: 60_000,
        labels: {},
        sinks: [],
      },
      transport: 'http',
    } satisfies CollectorConfig);
    expect(Object.isFrozen(cfg.tokens[0])).toBe(true);
  });

  it('defaults service names to the kind and ports to the kind’s, and keeps own options apart', () => {
    const cfg = fixture('valid-services.yaml');
    const edge = component(cfg, 'edge');
    expect(edge.services).toEqual([
      { name: 'http', kind: 'http', port: 443, path: '/status?full=1', tls: true, options: {} },
      { name: 'admin', kind: 'http', port: 8443, path: '/', tls: true, options: {} },
      { name: 'dns', kind: 'dns', port: 5353, query: 'edge.internal.example', options: {} },
    ]);
    expect(edge).toMatchObject({ role: 'web', labels: { zone: 'c' }, agent: 'edge' });
    const store = component(cfg, 'store');
    expect(store.agent).toBe('store-agent');
    expect(store.services.map((s) => [s.name, s.port])).toEqual([
      ['mysql', 3306],
      ['postgres', 5432],
      ['redis', 6379],
      ['nats', 4222],
    ]);
    // Own options as written; the plan merges them over probes.options.
    expect(store.services[1]?.options).toEqual({ database: 'app' });
    expect(cfg.probes.options.postgres).toEqual({ user: 'monitor' });
    expect(component(cfg, 'plain')).toEqual({
      name: 'plain',
      address: '10.0.0.7',
      role: 'other',
      labels: {},
      agent: 'plain',
      services: [],
    });
  });

  it('derives unwritten timings from the written ones', () => {
    // reportInterval 5s → silent after 15s; interval 10s → timeout capped at 5s.
    const services = fixture('valid-services.yaml');
    expect(services.agents.silentAfterMs).toBe(15_000);
    expect(services.probes).toMatchObject({ intervalMs: 10_000, timeoutMs: 5000 });
    // interval 500ms → timeout 80% of it.
    const icmp = fixture('valid-layers-icmp.yaml');
    expect(icmp.probes).toMatchObject({
      intervalMs: 500,
      timeoutMs: 400,
      layers: ['icmp'],
      mesh: false,
      mtu: false,
    });
  });

  it('probes.mtu: on at 1500 bytes by default, false turns it off, { size } for jumbo frames', () => {
    expect(fixture('valid-minimal.yaml').probes.mtu).toEqual({ size: 1500 });
    expect(parseCollectorConfig(`${tokens}probes:\n  mtu: true\n`, 'c.yaml').probes.mtu).toEqual({
      size: 1500,
    });
    expect(parseCollectorConfig(`${tokens}probes:\n  mtu: {}\n`, 'c.yaml').probes.mtu).toEqual({
      size: 1500,
    });
    const jumbo = fixture('valid-mtu-jumbo.yaml');
    expect(jumbo.probes.mtu).toEqual({ size: 9000 });
    // Its other options are per-kind defaults, like every kind's.
    expect(jumbo.probes.options.mtu).toEqual({ count: 2 });
    expect(Object.isFrozen(jumbo.probes.mtu)).toBe(true);
  });

  it('refuses a misspelt probes.mtu key and an IPv6 size below 1280, saying why', () => {
    expect(refusal(`${tokens}probes:\n  mtu: { sise: 9000 }\n`)).toBe(
      'collector.yaml:4:10: probes.mtu.sise: unknown key "sise" (did you mean "size"?)',
    );
    expect(
      refusal(`${tokens}probes:\n  mtu: { size: 1000 }\n  options:\n    mtu: { family: 6 }\n`),
    ).toBe(
      'collector.yaml:4:16: probes.mtu.size: expected at least 1280: probes.options.mtu.family is 6, and every IPv6 link carries 1280-byte packets (actual: 1000)',
    );
    expect(refusal(`${tokens}probes:\n  mtu: { size: 67 }\n`)).toBe(
      'collector.yaml:4:16: probes.mtu.size: expected at least 68 (actual: 67)',
    );
  });

  it.each([
    { written: '512k', bytes: 512 * 1024 },
    { written: '1.5MB', bytes: 1.5 * 1024 * 1024 },
    { written: '1GiB', bytes: 1024 ** 3 },
    { written: '4096', bytes: 4096 },
  ])('reads maxReportBytes: $written as $bytes bytes', ({ written, bytes }) => {
    const cfg = parseCollectorConfig(`${tokens}limits:\n  maxReportBytes: ${written}\n`, 'c.yaml');
    expect(cfg.limits.maxReportBytes).toBe(bytes);
  });

  it('accepts a data directory that does not exist yet, and does not create it', () => {
    const dir = join(tempDir(), 'a', 'b');
    const cfg = parseCollectorConfig(`dataDir: ${dir}\n${tokens}`, 'c.yaml');
    expect(cfg.dataDir).toBe(dir);
    expect(existsSync(dir)).toBe(false);
  });
});

describe('alerts', () => {
  it('settleMax auto follows the probe interval and the confirmation burst, at most 10 s', () => {
    const settle = (extra: string): number =>
      parseCollectorConfig(`${tokens}${extra}`, 'collector.yaml').alerts.settleMaxMs;
    expect(settle('probes: { interval: 2s }\n')).toBe(2_000 + 3 * 150 + 250);
    expect(
      settle('probes: { interval: 2s, confirm: { count: 0 } }\nalerts: { settleMax: auto }\n'),
    ).toBe(2_250);
    expect(settle('probes: { interval: 30s }\n')).toBe(10_000);
    expect(settle('alerts: { settleMax: 0s }\n')).toBe(0);
  });

  it('reads every sink type, with defaults, names and secrets from a file', () => {
    const dir = tempDir();
    const secretFile = join(dir, 'webhook.secret');
    writeFileSync(secretFile, '  0123456789abcdef-from-file\n');
    const cfg = parseCollectorConfig(
      [
        tokens.trimEnd(),
        'alerts:',
        '  holdFor: 20s',
        '  settleMax: 2s',
        '  resendEvery: 30s',
        '  externalUrl: https://faultline.example.com',
        '  runbookUrl: https://wiki.example.com/faultline/{kind}',
        '  labels: { cluster: prod }',
        '  sinks:',
        '    - type: alertmanager',
        '      urls: [http://am-1:9093, "http://am-2:9093/prefix"]',
        '    - type: webhook',
        '      url: https://hooks.example.com/faultline',
        `      secretFile: ${secretFile}`,
        '    - type: webhook',
        '      name: slack',
        '      url: https://hooks.slack.com/services/T/B/X',
        '      format: slack',
        '      timeout: 2s',
      ].join('\n'),
      'collector.yaml',
    );
    expect(cfg.alerts).toEqual({
      holdForMs: 20_000,
      refireHoldForMs: 30_000,
      settleMaxMs: 2_000,
      healTailHoldMs: 5_000,
      lossHoldForMs: 3_000,
      lossTailHoldMs: 30_000,
      lateHoldMaxMs: 4_000,
      resendEveryMs: 30_000,
      externalUrl: 'https://faultline.example.com',
      runbookUrl: 'https://wiki.example.com/faultline/{kind}',
      labels: { cluster: 'prod' },
      sinks: [
        {
          type: 'alertmanager',
          name: 'alertmanager',
          urls: ['http://am-1:9093', 'http://am-2:9093/prefix'],
          timeoutMs: 10_000,
        },
        {
          type: 'webhook',
          name: 'webhook',
          url: 'https://hooks.example.com/faultline',
          secret: '0123456789abcdef-from-file',
          format: 'json',
          timeoutMs: 10_000,
        },
        {
          type: 'webhook',
          name: 'slack',
          url: 'https://hooks.slack.com/services/T/B/X',
          format: 'slack',
          timeoutMs: 2_000,
        },
      ],
    });
    expect(Object.isFrozen(cfg.alerts.sinks[0])).toBe(true);
  });

  it('refuses bad values with file:line:col, the path and what was expected', () => {
    const text = [
      tokens.trimEnd(),
      'alerts:',
      '  holdFor: 1 minute',
      '  resendEvery: 10',
      '  runbookUrl: https://wiki/x/{kid}',
      '  externalUrl: ftp//x',
      '  labels: { severity: high }',
      '  sinks:',
      '    - type: pagerduty',
      '    - type: alertmanager',
      '      urls: []',
      '    - type: alertmanager',
      '      urls: [nope]',
      '      tmeout: 1s',
      '    - type: webhook',
      '      url: http://x/',
      '      secret: short',
      '    - type: webhook',
      '      name: files',
      '      url: http://x/',
      '      secretFile: /nonexistent/faultline/webhook.secret',
      '    - type: webhook',
      '      name: both',
      '      url: http://x/',
      '      secret: 0123456789abcdef0',
      '      secretFile: /etc/hostname',
      '      format: teams',
      '    - { url: "http://x/" }',
      '    - type: webhook',
      '      url: http://y/',
      '      secret: 0123456789abcdef0',
      '    - 42',
    ].join('\n');
    expect(refusal(text).split('\n')).toEqual([
      'collector.yaml:4:12: alerts.holdFor: expected a duration: milliseconds, or a number with ms, s, m or h (e.g. "500ms", "15s", "2m") (actual: "1 minute")',
      'collector.yaml:5:16: alerts.resendEvery: expected at least 1s; a bare number is milliseconds (write "15s") (actual: 10)',
      'collector.yaml:6:15: alerts.runbookUrl: unknown placeholder {kid}: expected {kind} or {alertname} (actual: "https://wiki/x/{kid}")',
      'collector.yaml:7:16: alerts.externalUrl: expected an http(s) URL such as "http://127.0.0.1:9093" (actual: "ftp//x")',
      'collector.yaml:8:13: alerts.labels.severity: reserved label name: Faultline sets agent, target, kind, class, phase, instance, job, le, alertname, component, severity itself',
      'collector.yaml:10:13: alerts.sinks[0].type: unknown sink type: expected one of: alertmanager, webhook (actual: "pagerduty")',
      'collector.yaml:12:13: alerts.sinks[1].urls: expected at least one Alertmanager URL (actual: [])',
      'collector.yaml:14:14: alerts.sinks[2].urls[0]: expected an http(s) URL such as "http://127.0.0.1:9093" (actual: "nope")',
      'collector.yaml:15:7: alerts.sinks[2].tmeout: unknown key "tmeout" (did you mean "timeout"?)',
      'collector.yaml:18:15: alerts.sinks[3].secret: expected at least 16 characters (has 5; the value is never shown)',
      'collector.yaml:22:19: alerts.sinks[4].secretFile: cannot read the secret file: ENOENT (no such file or directory) (actual: "/nonexistent/faultline/webhook.secret")',
      'collector.yaml:28:15: alerts.sinks[5].format: expected one of: json, slack (actual: "teams")',
      'collector.yaml:29:7: alerts.sinks[6]: missing required key "type": expected one of: alertmanager, webhook',
      'collector.yaml:30:7: alerts.sinks[7]: duplicate sink name "webhook" (the name defaults to the type: give each a name) (first used at collector.yaml:16:7)',
      'collector.yaml:33:7: alerts.sinks[8]: expected a mapping (actual: 42)',
    ]);
  });

  it('refuses secret and secretFile together, never showing the secret', () => {
    const message = refusal(
      [
        tokens.trimEnd(),
        'alerts:',
        '  sinks:',
        '    - type: webhook',
        '      url: http://x/',
        '      secret: 0123456789abcdef-very-secret',
        '      secretFile: /etc/hostname',
      ].join('\n'),
    );
    expect(message).toBe(
      'collector.yaml:8:7: alerts.sinks[0].secretFile: secret and secretFile are mutually exclusive: keep one',
    );
    expect(message).not.toContain('very-secret');
  });
});

describe('tls', () => {
  let pki: TestPki;
  let one: TestCert;
  let other: TestCert;
  beforeAll(async () => {
    pki = await TestPki.create();
    one = await pki.issue({ cn: 'collector', sans: ['IP:127.0.0.1'] });
    other = await pki.issue({ cn: 'other' });
  });
  afterAll(async () => {
    await pki.destroy();
  });

  const withTls = (cert: string, key: string): string =>
    `tls:\n  cert: ${cert}\n  key: ${key}\n${tokens}`;

  it('accepts a readable certificate with its own key', () => {
    const cfg = parseCollectorConfig(withTls(one.certPath, one.keyPath), 'c.yaml');
    expect(cfg.tls).toEqual({ cert: one.certPath, key: one.keyPath });
  });

  it('refuses a key that belongs to another certificate', () => {
    expect(refusal(withTls(one.certPath, other.keyPath))).toBe(
      'collector.yaml:2:3: tls: cannot serve with this certificate and key: the key does not belong to the certificate',
    );
  });

  it('refuses files that are not what they should be', () => {
    const lines = refusal(withTls(one.keyPath, one.certPath)).split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^collector\.yaml:2:9: tls\.cert: expected a PEM certificate: not usable by TLS \(ERR_OSSL_\w+\) \(actual: ".+"\)$/,
    );
    expect(lines[1]).toMatch(
      /^collector\.yaml:3:8: tls\.key: expected a PEM private key: not usable by TLS \(ERR_OSSL_\w+\) \(actual: ".+"\)$/,
    );
  });
});

describe('the example', () => {
  // The example keeps its store in /var/lib/faultline-collector, as the packaged service does; where
  // this test cannot create that (not root), it checks the rest with a temp dir instead.
  function loadExample(): CollectorConfig {
    try {
      accessSync('/var/lib', constants.W_OK);
      return loadCollectorConfig(exampleFile);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      const text = readFileSync(exampleFile, 'utf8').replace(
        /^dataDir: .*$/m,
        `dataDir: ${tempDir()}`,
      );
      return parseCollectorConfig(text, exampleFile);
    }
  }

  it('deploy/examples/collector.yaml loads: the founding incident’s system', () => {
    const cfg = loadExample();
    const zones = Object.fromEntries(
      cfg.inventory.components.map((c) => [c.name, `${c.labels.zone}/${c.labels.switch}`]),
    );
    expect(zones).toEqual({
      'app-1': 'a/sw-1',
      'app-2': 'a/sw-1',
      'web-1': 'a/sw-1',
      'dns-1': 'a/sw-1',
      'db-1': 'b/sw-2',
      'db-2': 'b/sw-2',
      'cache-1': 'b/sw-2',
    });
    for (const name of ['db-1', 'db-2']) {
      expect(component(cfg, name)).toMatchObject({
        role: 'database',
        services: [{ name: 'postgres', kind: 'postgres', port: 5432 }],
      });
    }
    expect(component(cfg, 'cache-1').services[0]).toMatchObject({ kind: 'redis', port: 6379 });
    expect(component(cfg, 'web-1').agent).toBe('web-1.internal');
    expect(cfg.tokens.map((t) => [t.name, t.revoked])).toEqual([
      ['fleet', false],
      ['fleet-2023', true],
    ]);
    for (const c of cfg.inventory.components) expect(knownRoles).toContain(c.role);
    expect(cfg.probes).toMatchObject({
      intervalMs: 1000,
      timeoutMs: 800,
      mesh: true,
      mtu: { size: 1500 },
    });
    expect(cfg.alerts).toMatchObject({
      resendEveryMs: 60_000,
      labels: { cluster: 'prod' },
      sinks: [{ type: 'alertmanager', name: 'alertmanager' }],
    });
  });

  it('points editors at the committed JSON Schema', () => {
    expect(readFileSync(exampleFile, 'utf8').split('\n')[0]).toBe(
      '# yaml-language-server: $schema=collector.schema.json',
    );
  });
});

describe('defaultCollectorConfig', () => {
  const secret = 'f'.repeat(32);
  const viewerSecret = 'v'.repeat(32);

  it('has one token and the collector’s own /healthz as its inventory', () => {
    const dataDir = join(tempDir(), 'data');
    const cfg = defaultCollectorConfig({
      dataDir,
      listen: '127.0.0.1:7070',
      token: secret,
      viewerToken: viewerSecret,
    });
    expect(cfg.tokens).toEqual([
      { name: 'default', token: secret, revoked: false, role: 'bootstrap' },
    ]);
    expect(cfg.viewers).toEqual([{ name: 'default', token: viewerSecret, revoked: false }]);
    expect(cfg.readAccess).toBe('token');
    expect(cfg.dataDir).toBe(dataDir);
    expect(cfg.listen).toBe('127.0.0.1:7070');
    expect(cfg.inventory.components).toEqual([
      {
        name: 'localhost',
        address: '127.0.0.1',
        role: 'other',
        labels: {},
        agent: 'localhost',
        services: [
          {
            name: 'collector',
            kind: 'http',
            port: 7070,
            path: '/healthz',
            tls: false,
            options: {},
          },
        ],
      },
    ]);
    expect(Object.isFrozen(cfg.inventory.components[0])).toBe(true);
  });

  it.each([
    { listen: '0.0.0.0:7071', address: '127.0.0.1', ports: [7071] },
    { listen: '[::]:7070', address: '::1', ports: [7070] },
    { listen: '[::1]:7070', address: '::1', ports: [7070] },
    { listen: 'localhost:7070', address: 'localhost', ports: [7070] },
    // Port 0: the port is known only once listening, so there is no service to plan.
    { listen: '127.0.0.1:0', address: '127.0.0.1', ports: [] },
  ])('listening on $listen probes $address', ({ listen, address, ports }) => {
    const cfg = defaultCollectorConfig({
      dataDir: tempDir(),
      listen,
      token: secret,
      viewerToken: viewerSecret,
    });
    const localhost = component(cfg, 'localhost');
    expect(localhost.address).toBe(address);
    expect(localhost.services.map((s) => s.port)).toEqual(ports);
  });

  it('refuses bad settings with one line each', () => {
    expect(() =>
      defaultCollectorConfig({
        dataDir: '/etc/passwd/data',
        listen: 'nowhere',
        token: 'short',
        viewerToken: secret,
      }),
    ).toThrow(
      new ConfigError(
        [
          'listen: expected host:port such as "127.0.0.1:7070" (IPv6 in brackets: "[::1]:7070")',
          'dataDir: cannot create the data directory: /etc/passwd is not a directory',
          'tokens[0].token: expected at least 16 characters (has 5; the value is never shown)',
        ].join('\n'),
      ),
    );
  });
});

describe('JSON Schema', () => {
  it('deploy/schema/collector.schema.json is what collectorJsonSchema() generates', async () => {
    const generated = collectorJsonSchema();
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
      'deploy/schema/collector.schema.json is out of date; regenerate it with: ' +
        'FAULTLINE_UPDATE_SCHEMA=1 npx vitest run collector/config.test.ts',
    ).toEqual(generated);
  });

  it("describes the input people write, with every kind's options", () => {
    interface Obj {
      properties: Record<string, Obj>;
      items: Obj;
      required?: string[];
      oneOf?: unknown[];
      allOf?: { if: unknown; then: unknown }[];
      default?: unknown;
      examples?: unknown;
    }
    const schema = collectorJsonSchema() as unknown as Obj;
    expect(schema.required).toEqual(['tokens']);
    expect(schema.properties.listen?.default).toBe('127.0.0.1:7070');
    expect(Object.keys(schema.properties.probes?.properties.options?.properties ?? {})).toEqual(
      probeKinds,
    );
    expect(schema.properties.probes?.properties.mtu).toMatchObject({
      default: true,
      anyOf: [
        { type: 'boolean' },
        { type: 'object', properties: { size: { default: 1500, minimum: 68, maximum: 65535 } } },
      ],
    });
    // …and not among the mtu defaults, where the config refuses it.
    const mtuDefaults = schema.properties.probes?.properties.options?.properties.mtu;
    expect(Object.keys(mtuDefaults?.properties ?? {})).toEqual([
      'count',
      'intervalMs',
      'engine',
      'family',
    ]);
    expect(schema.properties.tokens?.items.oneOf).toEqual([
      { required: ['token'] },
      { required: ['tokenFile'] },
    ]);
    const component = schema.properties.inventory?.properties.components?.items;
    expect(component?.required).toEqual(['name', 'address']);
    expect(component?.properties.role?.examples).toEqual([...knownRoles]);
    const service = component?.properties.services?.items;
    expect(service?.required).toEqual(['kind']);
    expect(service?.allOf?.map((c) => c.if)).toEqual(
      serviceKinds.map((kind) => ({ properties: { kind: { const: kind } }, required: ['kind'] })),
    );
    expect(JSON.stringify(service?.allOf?.[serviceKinds.indexOf('http')]?.then)).toContain(
      'validStatusCodes',
    );
  });
});
