import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../agent/config.js';
import { parseCollectorConfig } from '../collector/config.js';
import { ConfigError } from './errors.js';
import { fromNatsToken, natsToken, reportSubject } from './nats.js';
import { natsSectionSchema } from './nats-config.js';

const token = 'a'.repeat(32);

/** The ConfigError message for a config, or a failure when it is accepted. */
function refusal(parse: () => unknown): string {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('agent names as NATS subject tokens and KV keys', () => {
  it.each([
    ['plain', 'app-1', 'app-1'],
    ['a dot would split the subject', 'app.1', 'app=2E1'],
    ['a colon is refused in KV keys', 'db:5432', 'db=3A5432'],
    ['underscore kept', 'a_b', 'a_b'],
  ])('%s: %s → %s, and back', (_why, name, expected) => {
    expect(natsToken(name)).toBe(expected);
    expect(fromNatsToken(natsToken(name))).toBe(name);
    expect(natsToken(name)).toMatch(/^[-/_=.a-zA-Z0-9]+$/);
  });

  it('keeps distinct names distinct', () => {
    const names = ['a.b', 'a:b', 'a-b', 'a_b', 'a=2Eb'.replace('=', '-')];
    expect(new Set(names.map(natsToken)).size).toBe(names.length);
  });

  it('makes the subject <prefix>.<zone>.<agent>', () => {
    const section = natsSectionSchema.parse({ servers: ['nats://n:4222'] });
    expect(reportSubject(section, 'eu.west', 'app.1')).toBe('faultline.reports.eu=2Ewest.app=2E1');
  });
});

describe('transport: nats in the configs', () => {
  it('agent: takes the nats section without a collector URL, with the defaults', () => {
    const cfg = parseAgentConfig(
      `agent: { name: a }
collector:
  stateDir: /s
  transport: nats
  nats: { servers: [nats://n1:4222, tls://n2:4222], tokenFile: /t }
`,
      'agent.yaml',
    );
    expect(cfg.collector?.transport).toBe('nats');
    expect(cfg.collector?.nats).toEqual({
      servers: ['nats://n1:4222', 'tls://n2:4222'],
      tokenFile: '/t',
      stream: 'FAULTLINE_REPORTS',
      subject: 'faultline.reports',
      planBucket: 'faultline-plans',
      timeout: 5_000,
    });
  });

  it.each([
    [
      'nats without its section',
      'collector: { stateDir: /s, transport: nats }',
      /collector\.nats: transport: nats needs a `nats:` section/,
    ],
    [
      'http without a URL',
      'collector: { stateDir: /s }',
      /collector\.url: the collector URL is required/,
    ],
    [
      'a server that is not host:port',
      'collector: { stateDir: /s, transport: nats, nats: { servers: [nats://n1] } }',
      /collector\.nats\.servers\[0\]: expected nats:\/\/host:port .*\(actual: "nats:\/\/n1"\)/,
    ],
    [
      'two logins',
      'collector: { stateDir: /s, transport: nats, nats: { servers: [n:4222], token: x, user: u, password: p } }',
      /give one way to log in/,
    ],
    [
      'a user without password',
      'collector: { stateDir: /s, transport: nats, nats: { servers: [n:4222], user: u } }',
      /collector\.nats\.password: give user and password together/,
    ],
    [
      'a stream name with a dot',
      'collector: { stateDir: /s, transport: nats, nats: { servers: [n:4222], stream: a.b } }',
      /collector\.nats\.stream: expected 1–64 characters/,
    ],
    [
      'an unknown key',
      'collector: { stateDir: /s, transport: nats, nats: { servers: [n:4222], consumer: c } }',
      /collector\.nats\.consumer: unknown key "consumer"/,
    ],
  ])('agent refuses %s', (_why, yaml, message) => {
    expect(refusal(() => parseAgentConfig(`agent: { name: a }\n${yaml}\n`, 'agent.yaml'))).toMatch(
      message,
    );
  });

  it('collector: takes its consumer, zone, replicas and stream limits', () => {
    const cfg = parseCollectorConfig(
      `tokens: [{ name: t, token: ${token} }]
transport: nats
nats:
  servers: [nats://n1:4222]
  consumer: collector-b
  zone: eu
  replicas: 3
  maxAge: 2h
`,
      'collector.yaml',
    );
    expect(cfg.transport).toBe('nats');
    expect(cfg.nats).toMatchObject({
      consumer: 'collector-b',
      zone: 'eu',
      replicas: 3,
      maxAge: 7_200_000,
      duplicateWindow: 120_000,
    });
    expect(cfg.nats?.role).toBe('both');
    const shard = parseCollectorConfig(
      `tokens: [{ name: t, token: ${token} }]
transport: nats
nats: { servers: [n:4222], role: ingest, shard: { by: hash, index: 1, count: 2 } }
`,
      'collector.yaml',
    );
    expect(shard.nats).toMatchObject({
      role: 'ingest',
      shard: { by: 'hash', index: 1, count: 2 },
      changeStream: 'FAULTLINE_CHANGES',
      changeSubject: 'faultline.changes',
    });
    const plain = parseCollectorConfig(`tokens: [{ name: t, token: ${token} }]\n`, 'c.yaml');
    expect(plain.transport).toBe('http');
    expect(plain.nats).toBeUndefined();
  });

  it.each([
    [
      'nats without its section',
      'transport: nats',
      /nats: transport: nats needs a `nats:` section/,
    ],
    [
      'replicas above 5',
      'transport: nats\nnats: { servers: [n:4222], replicas: 7 }',
      /nats\.replicas/,
    ],
    [
      'a consumer name with a space',
      'transport: nats\nnats: { servers: [n:4222], consumer: "a b" }',
      /nats\.consumer: expected 1–64 characters/,
    ],
    ['an unknown transport', 'transport: grpc', /transport/],
    [
      'an unknown role',
      'transport: nats\nnats: { servers: [n:4222], role: shard }',
      /nats\.role: expected one of: both, ingest, localiser \(actual: "shard"\)/,
    ],
    [
      'a share by something else',
      'transport: nats\nnats: { servers: [n:4222], role: ingest, shard: { by: rack } }',
      /nats\.shard\.by: expected by: zone \(with zones: \[…\]\) or by: hash \(with index and count\)/,
    ],
    [
      'a hash share without its count',
      'transport: nats\nnats: { servers: [n:4222], role: ingest, shard: { by: hash, index: 0 } }',
      /nats\.shard\.count/,
    ],
    [
      'a hash index past the count',
      'transport: nats\nnats: { servers: [n:4222], role: ingest, shard: { by: hash, index: 2, count: 2 } }',
      /nats\.shard\.index: expected index < count \(hash shards are numbered 0 … count − 1\)/,
    ],
    [
      'a zone share with no zones',
      'transport: nats\nnats: { servers: [n:4222], role: ingest, shard: { by: zone, zones: [] } }',
      /nats\.shard\.zones: expected at least one zone/,
    ],
    [
      'a zone share with a hash index',
      'transport: nats\nnats: { servers: [n:4222], role: ingest, shard: { by: zone, zones: [eu], index: 1 } }',
      /nats\.shard\.index: unknown key "index"/,
    ],
    [
      'a share on a collector that is not an ingest shard',
      'transport: nats\nnats: { servers: [n:4222], shard: { by: hash, index: 0, count: 2 } }',
      /nats\.shard: a share of the reports is for role: ingest \(this collector is role: both\)/,
    ],
    [
      'zone and shard together',
      'transport: nats\nnats: { servers: [n:4222], role: ingest, zone: eu, shard: { by: zone, zones: [eu] } }',
      /nats\.zone: give zone or shard, not both/,
    ],
    [
      'a localiser with a zone',
      'transport: nats\nnats: { servers: [n:4222], role: localiser, zone: eu }',
      /nats\.zone: a localiser takes no reports/,
    ],
  ])('collector refuses %s', (_why, yaml, message) => {
    expect(
      refusal(() =>
        parseCollectorConfig(`tokens: [{ name: t, token: ${token} }]\n${yaml}\n`, 'collector.yaml'),
      ),
    ).toMatch(message);
  });
});
