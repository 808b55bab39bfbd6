import { describe, expect, it } from 'vitest';
import { parseLabelText } from './labels.js';

describe('parseLabelText', () => {
  it('reads k=v pairs in order; empty text is no labels', () => {
    expect(parseLabelText('')).toEqual({ ok: true, labels: {} });
    expect(parseLabelText('zone=eu-1a,rack=r 7')).toEqual({
      ok: true,
      labels: { zone: 'eu-1a', rack: 'r 7' },
    });
  });

  it.each([
    ['a pair without "="', 'zone=a,rack', 'pair 2 "rack" is not name=value'],
    ['a name starting with a digit', '1x=a', 'invalid label name "1x": letters, digits'],
    ['a reserved "__" name', '__x=a', 'invalid label name "__x"'],
    ['an empty value', 'zone=', 'invalid value for "zone": 1–256 characters'],
    ['a control character', 'zone=a\u0007b', 'invalid value for "zone"'],
    ['a name twice', 'zone=a,zone=b', 'duplicate label "zone"'],
    ['a long bad pair, cut in the reason', `${'x'.repeat(60)}`, `pair 1 "${'x'.repeat(39)}…"`],
  ])('refuses %s, naming it in the reason (no message prefix to strip)', (_, text, reason) => {
    const parsed = parseLabelText(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason.startsWith(reason)).toBe(true);
  });
});
