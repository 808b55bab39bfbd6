import { z } from 'zod';
import { re2Library } from './lazy-modules.js';

/**
 * Regular expressions written by users (probe options such as `expect`, `expectBody`,
 * `expectHeaders`, `failIfBodyMatches`, a DNS `answer` between slashes) run with RE2
 * semantics (re2js: a pure-JS port of RE2): matching takes time linear in the input, so a
 * pattern like `^(a+)+$` against a long answer cannot stall the agent's event loop the way
 * JavaScript's backtracking engine does (2^n steps). JavaScript syntax is accepted as far as
 * RE2 can run it; lookahead, lookbehind and backreferences (which need backtracking) are
 * refused when the config is validated.
 */

/** A compiled user regex: `test` is true when the pattern matches anywhere in `text`. */
export interface UserRegex {
  readonly source: string;
  test(text: string): boolean;
}

const cache = new Map<string, UserRegex>();
const maxCached = 256;

function compile(source: string): UserRegex {
  const { RE2JS } = re2Library();
  const re = RE2JS.compile(RE2JS.translateRegExp(source));
  return { source, test: (text: string) => re.test(text) };
}

/**
 * Compiles `source` (JavaScript syntax) for linear-time matching. Throws an Error saying
 * why when RE2 cannot run it; `regexProblem` gives the same reason without throwing.
 */
export function compileUserRegex(source: string): UserRegex {
  const hit = cache.get(source);
  if (hit !== undefined) return hit;
  const re = compile(source);
  if (cache.size >= maxCached) cache.delete(cache.keys().next().value as string);
  cache.set(source, re);
  return re;
}

/** Why `source` is not a regular expression Faultline will run, or undefined when it is. */
export function regexProblem(source: string): string | undefined {
  try {
    new RegExp(source);
  } catch (err) {
    return `not a valid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
  try {
    compileUserRegex(source);
    return undefined;
  } catch (err) {
    const why = (err as Error).message.replace(/^error parsing regexp: /, '');
    return `${why}: regular expressions run in linear time (RE2), without lookahead, lookbehind or backreferences`;
  }
}

/** A config/option field holding a user regex (at most `maxLength` characters). */
export function userRegexField(maxLength = 1024) {
  return z
    .string()
    .max(maxLength)
    .superRefine((s, ctx) => {
      const why = regexProblem(s);
      if (why !== undefined)
        ctx.addIssue({
          code: 'custom',
          message: `expected a regular expression: ${why}`,
          input: s,
        });
    });
}
