import { describe, expect, it } from 'vitest';
import { parseTarget } from './target.js';

describe('parseTarget refuses hostile and malformed targets', () => {
  const cases: ReadonlyArray<[string, 'host' | 'hostPort' | 'url', string]> = [
    ['-f', 'host', 'starts with "-"'],
    ['--interval=0', 'hostPort', 'starts with "-"'],
    ['a;rm -rf /', 'host', 'whitespace or control'],
    ['$(reboot)', 'host', 'expected a hostname'],
    ['`id`', 'host', 'expected a hostname'],
    ['db|nc', 'host', 'expected a hostname'],
    ['db&x', 'hostPort', 'expected host:port'],
    ['db\n1.2.3.4', 'host', 'whitespace or control'],
    ['db\u0000', 'host', 'whitespace or control'],
    ['', 'host', 'empty'],
    ['x'.repeat(3000), 'host', 'longer than'],
    ['db..example', 'host', 'not a valid hostname'],
    ['-db.example', 'hostPort', 'starts with "-"'],
    ['256.1.1.1', 'host', 'not a valid hostname'],
    ['db:0', 'hostPort', 'outside 1–65535'],
    ['db:70000', 'hostPort', 'outside 1–65535'],
    ['db:http', 'hostPort', 'not a number'],
    ['db', 'hostPort', 'port is missing'],
    ['::1:80', 'hostPort', 'expected host:port'],
    ['[::1', 'hostPort', 'not closed'],
    ['[db]:80', 'hostPort', 'not an IPv6 address'],
    ['ftp://x/', 'url', 'not http or https'],
    ['file:///etc/passwd', 'url', 'not http or https'],
    ['http//x', 'url', 'not a valid URL'],
    ['http://user:pw@x/', 'url', 'credentials'],
    ['http://-x/', 'url', 'starts with "-"'],
  ];
  it.each(cases)('%j (%s) is refused: %s', (raw, form, why) => {
    expect(() => parseTarget(raw, { form })).toThrow(why);
    try {
      parseTarget(raw, { form });
    } catch (err) {
      expect((err as { code: string }).code).toBe('FL_ERR_TARGET');
    }
  });
});

describe('parseTarget accepts what operators write', () => {
  it.each([
    ['db-1', 'host', { host: 'db-1', address: 'db-1' }],
    ['db-1.prod.example.', 'host', { host: 'db-1.prod.example.' }],
    ['10.1.2.3', 'host', { host: '10.1.2.3' }],
    ['fe80::1', 'host', { host: 'fe80::1' }],
    ['db-1:5432', 'hostPort', { host: 'db-1', port: 5432, address: 'db-1:5432' }],
    ['[::1]:6379', 'hostPort', { host: '::1', port: 6379, address: '[::1]:6379' }],
    ['::1', 'hostPort', { host: '::1', port: 5432, address: '[::1]:5432' }],
    ['db-1', 'hostPort', { host: 'db-1', port: 5432 }],
    ['https://api.example/healthz?x=1', 'url', { host: 'api.example', port: 443 }],
    ['http://[::1]:8080/', 'url', { host: '::1', port: 8080 }],
  ] as const)('%j as %s', (raw, form, expected) => {
    expect(parseTarget(raw, { form, defaultPort: 5432 })).toMatchObject(expected);
  });

  it('keeps a display name apart from the address', () => {
    expect(parseTarget('10.0.0.5:5432', { form: 'hostPort' }, 'db-1')).toMatchObject({
      name: 'db-1',
      address: '10.0.0.5:5432',
    });
  });
});
