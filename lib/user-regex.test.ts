import { describe, expect, it } from 'vitest';
import { compileUserRegex, regexProblem, userRegexField } from './user-regex.js';

describe('compileUserRegex', () => {
  it.each([
    ['^(a+)+$', 'a'.repeat(100_000) + '!'],
    ['(a|aa)+$', 'a'.repeat(100_000) + '!'],
    ['(a|a)*$', 'a'.repeat(100_000) + '!'],
    ['^(\\w+\\s?)*$', 'word '.repeat(20_000) + '!'],
    ['(.*a){20}', 'a'.repeat(10_000)],
  ])('%s runs in linear time (no match in well under a second on 100 kB)', (source, text) => {
    const t0 = performance.now();
    const re = compileUserRegex(source);
    re.test(text);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it.each([
    ['^SSH-2\\.0', 'SSH-2.0-OpenSSH_9.2', true],
    ['^\\+OK', '+OK POP3 ready', true],
    ['HTTP/1\\.[01] 200', 'HTTP/1.1 200 OK', true],
    ['^INFO ', 'ERR nope', false],
    ['\\u0041\\x42', 'xxAB', true],
    ['[^]+', 'a\nb', true],
    ['(?<word>o+)', 'foo', true],
    ['^b', 'abc', false],
    ['a.c', 'a\nc', false],
  ])('%s on %j: %s, as JavaScript would say', (source, text, matches) => {
    expect(compileUserRegex(source).test(text)).toBe(matches);
    expect(new RegExp(source).test(text)).toBe(matches);
  });
});

describe('regexProblem', () => {
  it.each([
    [
      '(?=a)b',
      /unsupported Perl syntax: `\(\?=`: regular expressions run in linear time \(RE2\), without lookahead/,
    ],
    ['(?<!a)b', /regular expressions run in linear time/],
    ['(a)\\1', /invalid escape sequence: `\\1`: regular expressions run in linear time/],
    ['(a', /^not a valid regular expression: \/\(a\/: Unterminated group$/],
  ])('%s is refused: %s', (source, why) => {
    expect(regexProblem(source)).toMatch(why);
  });

  it('accepts what RE2 can run', () => {
    expect(regexProblem('^(a+)+$')).toBeUndefined();
  });
});

describe('userRegexField', () => {
  it('refuses with the reason', () => {
    const r = userRegexField().safeParse('(?=x)');
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(
      /^expected a regular expression: .*without lookahead/,
    );
  });
});
