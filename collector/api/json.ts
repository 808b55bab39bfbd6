/** What the API finds wrong with a JSON text before and after parsing it. */

/** JSON nested deeper than this is refused before parsing (JSON.stringify recurses). */
export const maxJsonDepth = 64;

/** Where a JSON text first breaks the grammar (character offset, 1-based line and column). */
export interface JsonErrorLocation {
  readonly position: number;
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/**
 * Finds the first syntax error of a JSON text, or undefined when it is valid JSON. Only run
 * once JSON.parse has failed: V8's messages do not always give a position, and some quote
 * the whole input. Iterative, so hostile nesting cannot overflow the stack.
 */
export function locateJsonError(text: string): JsonErrorLocation | undefined {
  const n = text.length;
  const fail = (position: number, expected: string): JsonErrorLocation => {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < position && k < n; k++) {
      if (text.charCodeAt(k) === 0x0a) {
        line++;
        lineStart = k + 1;
      }
    }
    const found = position >= n ? 'the end of the body' : JSON.stringify(text[position]);
    return {
      position,
      line,
      column: position - lineStart + 1,
      message: `${expected}, found ${found}`,
    };
  };

  /** Index after the closing quote, or the error. */
  const scanString = (start: number): number | JsonErrorLocation => {
    let j = start + 1;
    for (;;) {
      if (j >= n) return fail(j, 'expected the closing quote of a string');
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      if (c < 0x20) return fail(j, 'expected an escape instead of a raw control character');
      if (c === 0x5c) {
        const e = text[j + 1];
        if (e !== undefined && '"\\/bfnrt'.includes(e)) j += 2;
        else if (e === 'u') {
          for (let h = j + 2; h < j + 6; h++) {
            if (!isHex(text.charCodeAt(h))) return fail(h, 'expected 4 hex digits after \\u');
          }
          j += 6;
        } else return fail(j + 1, 'expected a valid escape after "\\"');
      } else j++;
    }
  };

  const scanDigits = (start: number): number | JsonErrorLocation => {
    if (!isDigit(text.charCodeAt(start))) return fail(start, 'expected a digit');
    let j = start;
    while (isDigit(text.charCodeAt(j))) j++;
    return j;
  };

  const scanNumber = (start: number): number | JsonErrorLocation => {
    let j = start;
    if (text[j] === '-') j++;
    if (text[j] === '0') j++;
    else {
      const r = scanDigits(j);
      if (typeof r !== 'number') return r;
      j = r;
    }
    if (text[j] === '.') {
      const r = scanDigits(j + 1);
      if (typeof r !== 'number') return r;
      j = r;
    }
    if (text[j] === 'e' || text[j] === 'E') {
      j++;
      if (text[j] === '+' || text[j] === '-') j++;
      const r = scanDigits(j);
      if (typeof r !== 'number') return r;
      j = r;
    }
    return j;
  };

  const scanLiteral = (start: number): number | JsonErrorLocation => {
    const word = ['true', 'false', 'null'].find((w) => w[0] === text[start]);
    if (word === undefined) return fail(start, 'expected a value');
    for (let k = 0; k < word.length; k++) {
      if (text[start + k] !== word[k]) return fail(start + k, `expected ${word}`);
    }
    return start + word.length;
  };

  type Expect = 'value' | 'valueOrClose' | 'key' | 'keyOrClose' | 'colon' | 'after';
  const stack: ('{' | '[')[] = [];
  let state: Expect = 'value';
  let i = 0;
  for (;;) {
    while (i < n && isWs(text.charCodeAt(i))) i++;
    const top = stack[stack.length - 1];
    if (state === 'after' && top === undefined) {
      return i < n ? fail(i, 'expected nothing after the JSON value') : undefined;
    }
    const ch = text[i];
    let next: number | JsonErrorLocation;
    if (state === 'colon') {
      if (ch !== ':') return fail(i, 'expected ":" after the property name');
      next = i + 1;
      state = 'value';
    } else if (state === 'after') {
      if (ch === ',') {
        next = i + 1;
        state = top === '{' ? 'key' : 'value';
      } else if ((top === '{' && ch === '}') || (top === '[' && ch === ']')) {
        stack.pop();
        next = i + 1;
      } else return fail(i, top === '{' ? 'expected "," or "}"' : 'expected "," or "]"');
    } else if (state === 'keyOrClose' && ch === '}') {
      stack.pop();
      next = i + 1;
      state = 'after';
    } else if (state === 'key' || state === 'keyOrClose') {
      if (ch !== '"') return fail(i, 'expected a property name in double quotes');
      next = scanString(i);
      state = 'colon';
    } else if (state === 'valueOrClose' && ch === ']') {
      stack.pop();
      next = i + 1;
      state = 'after';
    } else if (ch === '{') {
      stack.push('{');
      next = i + 1;
      state = 'keyOrClose';
    } else if (ch === '[') {
      stack.push('[');
      next = i + 1;
      state = 'valueOrClose';
    } else {
      if (ch === '"') next = scanString(i);
      else if (ch === '-' || isDigit(text.charCodeAt(i))) next = scanNumber(i);
      else if (ch === undefined) return fail(i, 'expected a value');
      else next = scanLiteral(i);
      state = 'after';
    }
    if (typeof next !== 'number') return next;
    i = next;
  }
}

/** Whether `[`/`{` nest deeper than `max` (strings skipped); a byte scan, no parse. */
export function jsonDepthExceeds(body: Uint8Array, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const b = body[i] as number;
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > max) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}
