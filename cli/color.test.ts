import { describe, expect, it } from 'vitest';
import { noPaint, paint, useColor } from './color.js';

describe('useColor', () => {
  const tty = { isTTY: true };
  const pipe = { isTTY: false };
  it.each([
    ['a terminal', undefined, tty, {}, true],
    ['a pipe', undefined, pipe, {}, false],
    ['a terminal, NO_COLOR=1', undefined, tty, { NO_COLOR: '1' }, false],
    ['a terminal, NO_COLOR empty (unset per no-color.org)', undefined, tty, { NO_COLOR: '' }, true],
    ['a terminal, TERM=dumb', undefined, tty, { TERM: 'dumb' }, false],
    ['a pipe, FORCE_COLOR=1', undefined, pipe, { FORCE_COLOR: '1' }, true],
    ['a terminal, FORCE_COLOR=0', undefined, tty, { FORCE_COLOR: '0' }, false],
    [
      'a terminal, NO_COLOR and FORCE_COLOR',
      undefined,
      tty,
      { NO_COLOR: '1', FORCE_COLOR: '1' },
      false,
    ],
    ['--color in a pipe, NO_COLOR=1', true, pipe, { NO_COLOR: '1' }, true],
    ['--no-color on a terminal', false, tty, {}, false],
  ] as const)('%s', (_what, flag, stream, env, expected) => {
    expect(useColor(flag, stream, env)).toBe(expected);
  });

  it('paints nested styles and resets each; noPaint leaves text as it is', () => {
    expect(paint('x', 'red', 'bold')).toBe('\u001b[1m\u001b[31mx\u001b[39m\u001b[22m');
    expect(noPaint('x', 'red')).toBe('x');
  });
});
