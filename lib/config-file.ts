import { readFileSync } from 'node:fs';
import { getSystemErrorMap } from 'node:util';
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  Parser,
  visit,
  type CST,
} from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { ConfigError, errorCodeOf } from './errors.js';

/**
 * Loading YAML config files: parse with positions, validate with a zod schema, and turn
 * every problem into one line `file:line:col: path: what was expected (actual: …)`.
 * Shared by every daemon's config (agent, collector).
 */

/** A path inside a config document, as zod reports it. */
export type ConfigPath = readonly PropertyKey[];

/**
 * Extra fields a schema may put in a custom issue's `params`:
 * - `pointAt: 'key'` points at the key rather than the value (unknown or misnamed keys);
 * - `related` names a second place, rendered as "(label at file:line:col)".
 */
export interface ConfigIssueParams {
  readonly pointAt?: 'key';
  readonly related?: { readonly path: ConfigPath; readonly label: string };
}

const maxActualChars = 60;

/** A value as it appears after "actual:", cut short so one line stays one line. */
function showActual(value: unknown): string {
  let text: string;
  if (value instanceof Uint8Array) text = `<${value.length} bytes>`;
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > maxActualChars ? `${text.slice(0, maxActualChars - 1)}…` : text;
}

/** `targets[1].options.validStatusCodes`, `labels["my-key"]`. */
export function formatConfigPath(path: ConfigPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const key = String(seg);
      if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += out === '' ? key : `.${key}`;
      else out += `[${JSON.stringify(key)}]`;
    }
  }
  return out;
}

const typeWords: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  tuple: 'a list',
  null: 'nothing (null)',
  date: 'a date',
};

/** "expected one of: 0, 4, 6" or "expected a string or false" for a union of simple forms. */
function unionText(branches: readonly (readonly z.core.$ZodIssue[])[]): string {
  const values: unknown[] = [];
  const forms: string[] = [];
  for (const branch of branches) {
    const first = branch[0];
    if (branch.length !== 1 || first === undefined || first.path.length > 0) {
      return 'matches none of the accepted forms';
    }
    if (first.code === 'invalid_value') {
      values.push(...first.values);
      forms.push(first.values.map((v) => showActual(v)).join(' or '));
    } else if (first.code === 'invalid_type') {
      forms.push(typeWords[first.expected] ?? first.expected);
    } else {
      return 'matches none of the accepted forms';
    }
  }
  if (values.length === forms.length && values.length > 1) {
    return `expected one of: ${values.map((v) => showActual(v)).join(', ')}`;
  }
  return `expected ${[...new Set(forms)].join(' or ')}`;
}

/**
 * The message text (without position, path and actual value) for zod's built-in issues.
 * Pass it as `{ error: configErrorMap }` when a schema parses a nested value itself, so
 * those messages read like the rest. A schema's own `error` still wins over this map.
 */
export const configErrorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type':
      return `expected ${typeWords[iss.expected] ?? iss.expected}`;
    case 'invalid_value':
      return iss.values.length === 1
        ? `expected ${showActual(iss.values[0])}`
        : `expected one of: ${iss.values.map((v) => String(v)).join(', ')}`;
    case 'too_small':
    case 'too_big': {
      const bound = iss.code === 'too_small' ? iss.minimum : iss.maximum;
      const exact = 'exact' in iss && iss.exact === true;
      const words =
        iss.code === 'too_small'
          ? iss.inclusive === false
            ? 'more than'
            : 'at least'
          : iss.inclusive === false
            ? 'less than'
            : 'at most';
      const rel = exact ? 'exactly' : words;
      switch (iss.origin) {
        case 'string':
          return `expected ${rel} ${String(bound)} characters`;
        case 'array':
        case 'set':
          return `expected ${rel} ${String(bound)} items`;
        case 'object':
        case 'record':
          return `expected ${rel} ${String(bound)} keys`;
        default:
          return `expected ${rel} ${String(bound)}`;
      }
    }
    case 'invalid_format':
      return iss.format === 'regex' && 'pattern' in iss && typeof iss.pattern === 'string'
        ? `expected text matching ${iss.pattern}`
        : `expected a valid ${iss.format}`;
    case 'not_multiple_of':
      return `expected a multiple of ${String(iss.divisor)}`;
    case 'invalid_union':
      return unionText(iss.errors);
    case 'invalid_key':
      return iss.issues[0]?.message ?? 'invalid key';
    case 'invalid_element':
      return iss.issues[0]?.message ?? 'invalid element';
    case 'unrecognized_keys':
      return `unknown ${iss.keys.length === 1 ? 'key' : 'keys'} ${iss.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    default:
      return undefined;
  }
};

/** Edit distance counting a swap of two neighbours as one edit (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, at(i - 2, j - 2) + 1);
      }
      row[j] = best;
    }
  }
  return at(a.length, b.length);
}

/** The known key `key` was most likely meant to be, if any is close enough. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  // Case, `_` and `-` differences (max_in_flight, maxinflight) count as no distance at all.
  const squash = (s: string): string => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(squash(key), squash(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const allowed = Math.max(1, Math.floor(key.length / 3));
  return bestDistance <= allowed ? best : undefined;
}

/** `unknown key "intervl" (did you mean "interval"?)`. */
export function unknownKeyMessage(key: string, known: readonly string[]): string {
  const hint = suggestKey(key, known);
  return `unknown key ${JSON.stringify(key)}${hint === undefined ? '' : ` (did you mean ${JSON.stringify(hint)}?)`}`;
}

/** Looks through wrappers (optional, default, pipe…) to the schema that holds the shape. */
function unwrapSchema(schema: z.core.$ZodType): z.core.$ZodType {
  let s = schema;
  for (let i = 0; i < 32; i++) {
    if (
      s instanceof z.ZodOptional ||
      s instanceof z.ZodNullable ||
      s instanceof z.ZodDefault ||
      s instanceof z.ZodPrefault ||
      s instanceof z.ZodReadonly ||
      s instanceof z.ZodCatch ||
      s instanceof z.ZodNonOptional
    ) {
      s = s.unwrap();
    } else if (s instanceof z.ZodPipe) {
      const inner = s.in;
      s = inner instanceof z.ZodTransform ? s.out : inner;
    } else if (s instanceof z.ZodLazy) {
      s = s.unwrap();
    } else {
      return s;
    }
  }
  return s;
}

/** A union's mapping form (as in `true | false | { size }`), where it has one; else `s`. */
function mappingForm(s: z.core.$ZodType): z.core.$ZodType {
  if (!(s instanceof z.ZodUnion)) return s;
  for (const option of s.options) {
    const form = unwrapSchema(option);
    if (form instanceof z.ZodObject) return form;
  }
  return s;
}

/** The keys the object schema at `path` inside `schema` accepts, or [] if it is not an object. */
export function knownKeysAt(schema: z.core.$ZodType, path: ConfigPath): string[] {
  let s: z.core.$ZodType | undefined = mappingForm(unwrapSchema(schema));
  for (const seg of path) {
    if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.core.$ZodType>)[String(seg)];
    else if (s instanceof z.ZodArray) s = s.element;
    else if (s instanceof z.ZodRecord) s = s.valueType;
    else return [];
    if (s === undefined) return [];
    s = mappingForm(unwrapSchema(s));
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

/** What `ctx.addIssue` accepts in a transform or refinement; absent when the config is known valid. */
export interface IssueSink {
  addIssue(issue: z.core.$ZodSuperRefineIssue): void;
}

/**
 * Re-reports the issues of a nested parse (a value validated by a schema chosen at run
 * time, such as a probe kind's options) under `prefix`, with unknown keys split one per
 * line and a "did you mean" taken from `schema`. Parse the nested value with
 * `{ error: configErrorMap, reportInput: true }` so the messages match.
 */
export function addNestedIssues(
  ctx: IssueSink,
  issues: readonly z.core.$ZodIssue[],
  prefix: ConfigPath,
  schema: z.core.$ZodType,
): void {
  for (const iss of issues) {
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, iss.path);
      for (const key of iss.keys) {
        ctx.addIssue({
          code: 'custom',
          path: [...prefix, ...iss.path, key],
          message: unknownKeyMessage(key, known),
          input: undefined,
          params: { pointAt: 'key' } satisfies ConfigIssueParams,
        });
      }
    } else {
      ctx.addIssue({
        ...iss,
        path: [...prefix, ...iss.path],
        input: iss.input,
      } as z.core.$ZodSuperRefineIssue);
    }
  }
}

interface Located {
  readonly line: number;
  readonly col: number;
}

interface Positioned {
  readonly pos: Located;
  readonly text: string;
}

/** Positions of nodes in one parsed document. */
class Positions {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  at(offset: number): Located {
    return this.lines.linePos(offset);
  }

  ofNode(node: YamlNode): Located {
    return this.at(node.range?.[0] ?? 0);
  }

  /**
   * The node at `path` (its key node when `wantKey`), or the nearest existing parent when
   * part of the path is missing from the document.
   */
  find(path: ConfigPath, wantKey: boolean): Located {
    let cur: unknown = this.doc.contents;
    let best: Located =
      cur !== null && isNodeWithRange(cur) ? this.ofNode(cur) : { line: 1, col: 1 };
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      const last = i === path.length - 1;
      if (isAlias(cur)) cur = cur.resolve(this.doc);
      if (isMap(cur)) {
        const pair = cur.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (pair === undefined) return best;
        const keyNode = pair.key as YamlNode;
        const value = pair.value;
        // An empty value (`address:`) has no text of its own: point at its key.
        const emptyValue =
          value === null || (isScalar(value) && value.value === null && value.source === '');
        if (last)
          return wantKey || emptyValue ? this.ofNode(keyNode) : this.ofNode(value as YamlNode);
        best = emptyValue ? this.ofNode(keyNode) : this.ofNode(value as YamlNode);
        cur = value;
      } else if (isSeq(cur) && typeof seg === 'number') {
        const item = cur.items[seg];
        if (item === undefined || item === null || !isNodeWithRange(item)) return best;
        best = this.ofNode(item);
        cur = item;
      } else {
        return best;
      }
    }
    return best;
  }
}

function isNodeWithRange(x: unknown): x is YamlNode {
  return typeof x === 'object' && x !== null && 'range' in x;
}

function issueLines(
  issues: readonly z.core.$ZodIssue[],
  fileName: string,
  positions: Positions,
  schema: z.core.$ZodType,
): Positioned[] {
  const out: Positioned[] = [];
  const line = (pos: Located, path: ConfigPath, text: string): Positioned => {
    const where = formatConfigPath(path);
    return {
      pos,
      text: `${fileName}:${pos.line}:${pos.col}: ${where === '' ? '' : `${where}: `}${text}`,
    };
  };
  for (const iss of issues) {
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, iss.path);
      for (const key of iss.keys) {
        const path = [...iss.path, key];
        out.push(line(positions.find(path, true), path, unknownKeyMessage(key, known)));
      }
      continue;
    }
    const params = (iss.code === 'custom' ? iss.params : undefined) as
      ConfigIssueParams | undefined;
    const last = iss.path[iss.path.length - 1];
    const missing = iss.code !== 'custom' && iss.input === undefined && iss.path.length > 0;
    if (missing) {
      const parent = iss.path.slice(0, -1);
      const text =
        typeof last === 'string' ? `missing required key ${JSON.stringify(last)}` : iss.message;
      out.push(line(positions.find(parent, false), iss.path, text));
      continue;
    }
    const wantKey = params?.pointAt === 'key' || iss.code === 'invalid_key';
    let text = iss.message;
    if (iss.input !== undefined && iss.code !== 'invalid_key') {
      text += ` (actual: ${showActual(iss.input)})`;
    }
    if (params?.related !== undefined) {
      const p = positions.find(params.related.path, false);
      text += ` (${params.related.label} at ${fileName}:${p.line}:${p.col})`;
    }
    out.push(line(positions.find(iss.path, wantKey), iss.path, text));
  }
  return out;
}

function fail(lines: Positioned[], cause?: unknown): never {
  const sorted = lines
    .map((l, i) => ({ l, i }))
    .sort((a, b) => a.l.pos.line - b.l.pos.line || a.l.pos.col - b.l.pos.col || a.i - b.i)
    .map(({ l }) => l.text);
  throw new ConfigError(sorted.join('\n'), { cause });
}

function yamlErrorText(code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') return 'the file holds several YAML documents; a config is one';
  return message.split('\n')[0] ?? message;
}

/** Finds duplicate keys itself so the message can name both places. */
function duplicateKeys(doc: Document, positions: Positions, fileName: string): Positioned[] {
  const out: Positioned[] = [];
  visit(doc, {
    Map(_, map) {
      const seen = new Map<string, YamlNode>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const key = String(pair.key.value);
        const first = seen.get(key);
        if (first === undefined) {
          seen.set(key, pair.key);
          continue;
        }
        const pos = positions.ofNode(pair.key);
        const firstPos = positions.ofNode(first);
        out.push({
          pos,
          text: `${fileName}:${pos.line}:${pos.col}: duplicate key ${JSON.stringify(key)} (first at ${fileName}:${firstPos.line}:${firstPos.col})`,
        });
      }
    },
  });
  return out;
}

/** Freezes a value and everything reachable from it; the config is shared, never edited. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  Object.freeze(value);
  const proto = Object.getPrototypeOf(value) as unknown;
  if (Array.isArray(value) || proto === Object.prototype || proto === null) {
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Collections nested deeper than this are refused before the document is composed. */
export const maxConfigDepth = 64;

/**
 * Where `text` first nests collections more than `maxConfigDepth` deep, or undefined. The
 * yaml package's parser keeps its own stack, but composing a document recurses once per
 * level (a 100,000-deep `[[[…]]]` overflowed the call stack); so the depth is measured on
 * the concrete syntax tree, without recursion, first.
 */
function firstTooDeep(text: string): Located | undefined {
  const lines = new LineCounter();
  for (const doc of new Parser(lines.addNewLine).parse(text)) {
    if (doc.type !== 'document') continue;
    const stack: [CST.Token | null | undefined, number][] = [[doc.value, 1]];
    for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
      const [node, depth] = top;
      if (node === undefined || node === null || !('items' in node)) continue;
      if (depth > maxConfigDepth) return lines.linePos(node.offset);
      for (const item of node.items) {
        if ('key' in item && item.key) stack.push([item.key, depth + 1]);
        if ('value' in item && item.value) stack.push([item.value, depth + 1]);
      }
    }
  }
  return undefined;
}

/**
 * Parses YAML `text` (named `fileName` in messages) and validates it with `schema`.
 * Returns the schema's output, deep-frozen. Throws one ConfigError (FL_ERR_CONFIG) with
 * one line per problem, sorted by position: YAML syntax errors, duplicate keys, and every
 * schema issue with its path, what was expected and the actual value.
 */
export function parseConfigText<T>(text: string, fileName: string, schema: z.ZodType<T>): T {
  const lines = new LineCounter();
  const tooDeep = firstTooDeep(text);
  if (tooDeep !== undefined) {
    fail([
      {
        pos: tooDeep,
        text: `${fileName}:${tooDeep.line}:${tooDeep.col}: nested more than ${maxConfigDepth} levels deep; a Faultline config needs far fewer`,
      },
    ]);
  }
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  const positions = new Positions(doc, lines);
  const yamlProblems: Positioned[] = [...doc.errors, ...doc.warnings].map((e) => {
    const pos = positions.at(e.pos[0]);
    return { pos, text: `${fileName}:${pos.line}:${pos.col}: ${yamlErrorText(e.code, e.message)}` };
  });
  if (yamlProblems.length > 0) fail(yamlProblems);
  const duplicates = duplicateKeys(doc, positions, fileName);
  if (duplicates.length > 0) fail(duplicates);

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (cause) {
    // Alias expansion beyond maxAliasCount (a "billion laughs" document).
    fail(
      [{ pos: { line: 1, col: 1 }, text: `${fileName}:1:1: ${(cause as Error).message}` }],
      cause,
    );
  }
  // An empty file means "all defaults"; required keys are still reported as missing.
  const parsed = schema.safeParse(value ?? {}, { error: configErrorMap, reportInput: true });
  if (parsed.success) return deepFreeze(parsed.data);
  fail(issueLines(parsed.error.issues, fileName, positions, schema), parsed.error);
}

/** "ENOENT (no such file or directory)" for a Node fs error: its code and the reason. */
export function errnoText(err: unknown): string {
  // libuv's own description of the errno ("no such file or directory"), not the message's.
  const errno = (err as NodeJS.ErrnoException | null)?.errno;
  const reason = errno === undefined ? undefined : getSystemErrorMap().get(errno)?.[1];
  return `${errorCodeOf(err) ?? 'EIO'}${reason === undefined ? '' : ` (${reason})`}`;
}

/** Reads and validates a YAML config file; see parseConfigText. */
export function loadConfigFile<T>(path: string, schema: z.ZodType<T>): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`${path}: cannot read the config file: ${errnoText(cause)}`, { cause });
  }
  return parseConfigText(text, path, schema);
}

/**
 * A config schema whose cross-field resolution runs once: the refinement resolves the
 * config (reporting what it finds alongside the structural issues), and the transform, which
 * runs only when there were none, reuses that result.
 */
export function resolvingSchema<I extends z.ZodType<Record<string, unknown>>, T>(
  input: I,
  resolve: (cfg: z.output<I>, ctx: IssueSink | undefined) => T,
) {
  const resolved = new WeakMap<object, T>();
  return input
    .superRefine(
      (cfg, ctx) => {
        resolved.set(cfg, resolve(cfg, ctx));
      },
      {
        when: (payload) =>
          typeof payload.value === 'object' &&
          payload.value !== null &&
          !Array.isArray(payload.value),
      },
    )
    .transform((cfg): T => resolved.get(cfg) ?? resolve(cfg, undefined));
}
