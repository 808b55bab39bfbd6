import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/errors.js';
import { createTokenAuth } from './auth.js';
import type { AuthResult } from './auth.js';

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
    ['the right token', 'Bearer fleet-secret-0123456789', { status: 'ok', name: 'fleet' }],
    ['scheme case-insensitive', 'bearer fleet-secret-0123456789', { status: 'ok', name: 'fleet' }],
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
