import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/errors.js';
import {
  createTokenAuth,
  credentialAllows,
  credentialNames,
  digestOf,
  forbiddenReason,
  matchesPattern,
} from './auth.js';
import type { AuthResult, Credential } from './auth.js';

const fleet: Credential = { id: 'fleet', label: 'token "fleet"', role: 'agent' };

const auth = createTokenAuth([
  { name: 'fleet', token: 'fleet-secret-0123456789' },
  { name: 'old', token: 'old-secret-0123456789', revoked: true },
  // The same secret listed twice, once revoked: revocation must win.
  { name: 'dup-active', token: 'shared-secret-0123456789' },
  { name: 'dup-revoked', token: 'shared-secret-0123456789', revoked: true },
]);

describe('createTokenAuth', () => {
  const cases: [string, string | undefined, AuthResult][] = [
    ['no header', undefined, { status: 'missing' }],
    ['empty header', '', { status: 'missing' }],
    ['another scheme', 'Basic Zm9vOmJhcg==', { status: 'malformed' }],
    ['scheme without a token', 'Bearer', { status: 'malformed' }],
    ['two words after Bearer', 'Bearer a b', { status: 'malformed' }],
    [
      'the right token',
      'Bearer fleet-secret-0123456789',
      { status: 'ok', name: 'fleet', credential: fleet },
    ],
    [
      'scheme case-insensitive',
      'bearer fleet-secret-0123456789',
      { status: 'ok', name: 'fleet', credential: fleet },
    ],
    ['a prefix of a token', 'Bearer fleet-secret', { status: 'unknown' }],
    ['a token with a suffix', 'Bearer fleet-secret-0123456789x', { status: 'unknown' }],
    ['a very long token', `Bearer ${'x'.repeat(10_000)}`, { status: 'unknown' }],
    [
      'a revoked token names itself',
      'Bearer old-secret-0123456789',
      { status: 'revoked', name: 'old' },
    ],
    [
      'revoked wins over an active duplicate',
      'Bearer shared-secret-0123456789',
      { status: 'revoked', name: 'dup-revoked' },
    ],
  ];
  it.each(cases)('%s', (_what, header, expected) => {
    expect(auth.check(header)).toEqual(expected);
  });

  it('refuses an empty token and duplicate names at build time', () => {
    expect(() => createTokenAuth([{ name: 'a', token: '' }])).toThrow(ConfigError);
    expect(() =>
      createTokenAuth([
        { name: 'a', token: 'one-0123456789' },
        { name: 'a', token: 'two-0123456789' },
      ]),
    ).toThrow(/tokens\[1\]\.name: duplicate token name "a"/);
  });
});

describe('credentials', () => {
  const enrolledSecret = 'enrolled-secret-0123456789';
  const withEnrolled = createTokenAuth(
    [
      { name: 'boot', token: 'boot-secret-0123456789', role: 'bootstrap', agents: ['web-*'] },
      { name: 'db-1', token: 'db-secret-0123456789', agents: ['db-1'] },
    ],
    (digest) =>
      digest.equals(digestOf(enrolledSecret))
        ? { id: 'c1', agent: 'web-1', agentId: 'agent-web-1' }
        : undefined,
  );

  it('carries role and names; an enrolled secret is found by its digest', () => {
    expect(withEnrolled.check('Bearer boot-secret-0123456789')).toEqual({
      status: 'ok',
      name: 'boot',
      credential: { id: 'boot', label: 'token "boot"', role: 'bootstrap', agents: ['web-*'] },
    });
    expect(withEnrolled.check(`Bearer ${enrolledSecret}`)).toEqual({
      status: 'ok',
      name: 'enrolled:c1',
      credential: {
        id: 'enrolled:c1',
        label: 'the enrolled credential of "web-1"',
        role: 'agent',
        agents: ['web-1'],
        agentId: 'agent-web-1',
      },
    });
    expect(withEnrolled.check('Bearer nobody-0123456789abc')).toEqual({ status: 'unknown' });
  });

  const patterns: [string, string, boolean][] = [
    ['db-1', 'db-1', true],
    ['db-1', 'db-10', false],
    ['web-*', 'web-1', true],
    ['web-*', 'web-', true],
    ['web-*', 'api-web-1', false],
    ['*-eu', 'web-1-eu', true],
    ['*', 'anything', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'aXcYb', false],
    ['ab*ba', 'aba', false],
    ['db.1', 'dbx1', false],
  ];
  it.each(patterns)('pattern %s against %s: %s', (pattern, name, expected) => {
    expect(matchesPattern(pattern, name)).toBe(expected);
  });

  it('names an agent exactly only with a pattern without *, or an enrolled credential', () => {
    const group: Credential = {
      id: 'g',
      label: 'token "g"',
      role: 'agent',
      agents: ['web-*', 'db-1'],
    };
    expect(credentialNames(group, 'db-1')).toBe(true);
    expect(credentialNames(group, 'web-1')).toBe(false);
    expect(credentialNames(fleet, 'db-1')).toBe(false);
    expect(credentialAllows(fleet, 'anything')).toBe(true);
    expect(forbiddenReason(group, 'db-2')).toBe(
      'token "g" may not act as agent "db-2" (it may use: web-*, db-1)',
    );
    const enrolled: Credential = { ...group, agents: ['web-1'], agentId: 'id-1' };
    expect(forbiddenReason(enrolled, 'web-1', 'id-2')).toMatch(/bound to agent id id-1, not id-2/);
    expect(forbiddenReason(enrolled, 'web-1', 'id-1')).toBeUndefined();
  });
});
