import type { Argv } from 'yargs';

/** The styles the terminal views use, as SGR escape pairs (set, reset). */
const sgr = {
  bold: ['\u001b[1m', '\u001b[22m'],
  dim: ['\u001b[2m', '\u001b[22m'],
  red: ['\u001b[31m', '\u001b[39m'],
  green: ['\u001b[32m', '\u001b[39m'],
  yellow: ['\u001b[33m', '\u001b[39m'],
} as const;

export type Style = keyof typeof sgr;

/** Paints text in styles, or leaves it as it is when colour is off. */
export type Paint = (text: string, ...styles: Style[]) => string;

export const noPaint: Paint = (text) => text;

export const paint: Paint = (text, ...styles) =>
  styles.reduce((t, s) => `${sgr[s][0]}${t}${sgr[s][1]}`, text);

/**
 * Whether to colour what goes to `stream`: `--color` / `--no-color` when given; else off
 * when NO_COLOR is set to anything but "" (no-color.org); else on when FORCE_COLOR is set to
 * anything but "0" or "false"; else on a terminal, unless TERM is "dumb".
 */
export function useColor(
  flag: boolean | undefined,
  stream: { readonly isTTY?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  if (flag !== undefined) return flag;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== '') return force !== '0' && force !== 'false';
  return stream.isTTY === true && env.TERM !== 'dumb';
}

/** Adds --color (and its negation --no-color). */
export function withColorOption<T>(y: Argv<T>): Argv<T & { color: boolean | undefined }> {
  return y.option('color', {
    type: 'boolean',
    describe:
      'Colour the output (default: on a terminal, unless NO_COLOR is set); --no-color turns it off',
  });
}
