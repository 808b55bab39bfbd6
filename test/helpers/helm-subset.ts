/**
 * `helm template` for the subset of Go templates and Helm functions that
 * deploy/helm/faultline uses, for machines without a `helm` binary (Debian ships none, and
 * no npm package implements Go templates with Helm's functions). Where `helm` is on PATH the
 * chart test renders with both and compares: this is a stand-in, not a second Helm.
 *
 * The subset (deploy/helm/faultline/README.md says the same to whoever edits the chart):
 * - actions: `{{ pipeline }}`, `{{- … -}}` trimming, `{{/* comments *\/}}`, `if` / `else if` /
 *   `else` / `end`, `with`, `range $v := …`, `range $k, $v := …`, `define`, `$x := …`;
 * - operands: `.`, `.A.B`, `$`, `$.A`, `$x`, `$x.A`, "strings", numbers, true/false,
 *   `(pipelines)`, and `.Files.Get` / `.Files.Glob` called with arguments;
 * - functions: the ones in {@link functions} below, with Helm's argument order.
 * Anything else is an error naming the template, not a silent blank.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, posix, relative } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

type Value = unknown;

interface TextNode {
  readonly t: 'text';
  readonly text: string;
}
interface ActionNode {
  readonly t: 'action';
  readonly pipe: string;
  /** `$x := pipe` declares; `$x = pipe` assigns. */
  readonly assign?: { readonly name: string; readonly declare: boolean };
}
interface IfNode {
  readonly t: 'if' | 'with';
  readonly branches: { readonly cond: string | undefined; readonly body: Node[] }[];
}
interface RangeNode {
  readonly t: 'range';
  readonly keyVar?: string;
  readonly valueVar?: string;
  readonly pipe: string;
  readonly body: Node[];
  readonly elseBody: Node[];
}
type Node = TextNode | ActionNode | IfNode | RangeNode;

interface Token {
  readonly text?: string;
  readonly action?: string;
}

/** Splits a template into text and actions, applying the `{{-` / `-}}` trim markers. */
function tokenize(src: string, name: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    let text = open < 0 ? src.slice(i) : src.slice(i, open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open < 0) {
      if (text !== '') out.push({ text });
      break;
    }
    const trimPrev = src.startsWith('{{- ', open) || src.startsWith('{{-\n', open);
    if (trimPrev) text = text.replace(/\s+$/, '');
    if (text !== '') out.push({ text });
    const close = src.indexOf('}}', open + 2);
    if (close < 0) throw new Error(`${name}: unclosed action at offset ${open}`);
    let body = src.slice(open + 2, close);
    trimNext = /\s-$/.test(body);
    if (trimPrev) body = body.slice(1);
    if (trimNext) body = body.slice(0, -1);
    body = body.trim();
    if (!(body.startsWith('/*') && body.endsWith('*/'))) out.push({ action: body });
    i = close + 2;
  }
  return out;
}

/** Builds the tree; `define`d templates go into `defines`. */
function parse(tokens: Token[], name: string, defines: Map<string, Node[]>): Node[] {
  let pos = 0;
  const block = (): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const tok = tokens[pos++] as Token;
      if (tok.text !== undefined) {
        nodes.push({ t: 'text', text: tok.text });
        continue;
      }
      const a = tok.action ?? '';
      const word = /^(\w+)\b\s*(.*)$/s.exec(a);
      const kw = word?.[1];
      const rest = word?.[2] ?? '';
      if (kw === 'end' || kw === 'else') return { nodes, end: a };
      if (kw === 'if' || kw === 'with') {
        const branches: IfNode['branches'][number][] = [];
        let cond: string | undefined = rest;
        for (;;) {
          const inner = block();
          branches.push({ cond, body: inner.nodes });
          if (inner.end === 'end') break;
          const elseIf = /^else\s+if\s+(.*)$/s.exec(inner.end);
          if (elseIf !== null && kw === 'if') cond = elseIf[1];
          else if (inner.end === 'else') cond = undefined;
          else throw new Error(`${name}: unexpected {{${inner.end}}} in ${kw}`);
        }
        nodes.push({ t: kw, branches });
      } else if (kw === 'range') {
        const m = /^(?:(\$\w*)\s*(?:,\s*(\$\w*)\s*)?:=\s*)?(.*)$/s.exec(rest);
        const inner = block();
        let elseBody: Node[] = [];
        if (inner.end === 'else') {
          const e = block();
          if (e.end !== 'end') throw new Error(`${name}: range: expected {{end}}`);
          elseBody = e.nodes;
        } else if (inner.end !== 'end') throw new Error(`${name}: range: expected {{end}}`);
        const [, first, second, pipe] = m ?? [];
        nodes.push({
          t: 'range',
          ...(second !== undefined
            ? { keyVar: first, valueVar: second }
            : first !== undefined
              ? { valueVar: first }
              : {}),
          pipe: pipe ?? '',
          body: inner.nodes,
          elseBody,
        });
      } else if (kw === 'define') {
        const inner = block();
        if (inner.end !== 'end') throw new Error(`${name}: define: expected {{end}}`);
        defines.set(JSON.parse(rest) as string, inner.nodes);
      } else {
        const assign = /^(\$\w+)\s*(:?=)\s*(.*)$/s.exec(a);
        nodes.push(
          assign === null
            ? { t: 'action', pipe: a }
            : {
                t: 'action',
                pipe: assign[3] ?? '',
                assign: { name: assign[1] ?? '', declare: assign[2] === ':=' },
              },
        );
      }
    }
    return { nodes, end: '' };
  };
  const top = block();
  if (top.end !== '') throw new Error(`${name}: unexpected {{${top.end}}}`);
  return top.nodes;
}

/** Splits on `sep` outside quotes and parentheses. */
function splitTop(s: string, sep: (c: string) => boolean): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote = false;
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (quote) {
      cur += c;
      if (c === '\\') cur += s[++i] ?? '';
      else if (c === '"') quote = false;
      continue;
    }
    if (c === '"') quote = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    if (depth === 0 && sep(c)) {
      if (cur.trim() !== '') parts.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim() !== '') parts.push(cur.trim());
  return parts;
}

class Scope {
  private readonly vars = new Map<string, Value>();
  constructor(private readonly parent?: Scope) {}
  get(name: string): Value {
    if (this.vars.has(name)) return this.vars.get(name);
    if (this.parent === undefined) throw new Error(`undefined variable ${name}`);
    return this.parent.get(name);
  }
  declare(name: string, v: Value): void {
    this.vars.set(name, v);
  }
  set(name: string, v: Value): void {
    if (this.vars.has(name) || this.parent === undefined) this.vars.set(name, v);
    else this.parent.set(name, v);
  }
}

/** Go's truth: false, 0, nil and empty strings, lists and maps are false. */
function truthy(v: Value): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function str(v: Value): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  // Go prints maps and slices with fmt's %v; the chart never does, so refuse.
  throw new Error(`cannot print a ${Array.isArray(v) ? 'list' : 'map'}: use toYaml`);
}

/** sigs.k8s.io/yaml's output as Helm's toYaml gives it: keys sorted, no trailing newline. */
function toYaml(v: Value): string {
  if (v === undefined || v === null) return 'null';
  return stringifyYaml(v, { sortMapEntries: true, lineWidth: 0, indentSeq: false }).replace(
    /\n$/,
    '',
  );
}

const indentLines = (n: number, s: string): string =>
  s
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');

/** The Helm functions of the subset, Helm's argument order (the piped value last). */
const functions: Record<string, (this: Renderer, ...args: Value[]) => Value> = {
  include(name, ctx) {
    return this.include(str(name), ctx);
  },
  toYaml: (v) => toYaml(v),
  indent: (n, s) => indentLines(Number(n), str(s)),
  nindent: (n, s) => `\n${indentLines(Number(n), str(s))}`,
  quote: (...vs) => vs.map((v) => JSON.stringify(str(v))).join(' '),
  squote: (v) => `'${str(v)}'`,
  default: (d, v) => (truthy(v) ? v : d),
  required(msg, v) {
    if (v === undefined || v === null || v === '') throw new Error(str(msg));
    return v;
  },
  fail(msg) {
    throw new Error(str(msg));
  },
  not: (v) => !truthy(v),
  and: (...vs) => vs.find((v) => !truthy(v)) ?? vs.at(-1),
  or: (...vs) => vs.find((v) => truthy(v)) ?? vs.at(-1),
  eq: (a, ...bs) => bs.some((b) => a === b),
  ne: (a, b) => a !== b,
  empty: (v) => !truthy(v),
  base: (p) => posix.basename(str(p)),
  trimSuffix: (suffix, s) =>
    str(s).endsWith(str(suffix)) ? str(s).slice(0, -str(suffix).length) : str(s),
  trunc: (n, s) => str(s).slice(0, Number(n)),
  lower: (s) => str(s).toLowerCase(),
  contains: (sub, s) => str(s).includes(str(sub)),
  ternary: (yes, no, cond) => (truthy(cond) ? yes : no),
  sha256sum: (s) => createHash('sha256').update(str(s)).digest('hex'),
  replace: (from, to, s) => str(s).replaceAll(str(from), str(to)),
  printf(format, ...args) {
    let i = 0;
    return str(format).replace(/%[sdv%]/g, (m) => (m === '%%' ? '%' : str(args[i++])));
  },
  toString: (v: Value) => str(v),
  b64enc: (v) => Buffer.from(str(v)).toString('base64'),
  hasKey: (m, k) => typeof m === 'object' && m !== null && Object.hasOwn(m, str(k)),
};

/** A Files object as Helm gives templates: the chart's files outside templates/. */
function filesObject(files: ReadonlyMap<string, string>): Record<string, Value> {
  return {
    Get: (path: Value) => files.get(str(path)) ?? '',
    Glob(pattern: Value) {
      const re = new RegExp(
        `^${str(pattern)
          .split('*')
          .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('[^/]*')}$`,
      );
      return Object.fromEntries([...files.keys()].filter((k) => re.test(k)).map((k) => [k, k]));
    },
  };
}

class Renderer {
  constructor(
    private readonly defines: ReadonlyMap<string, Node[]>,
    private readonly root: Value,
  ) {}

  include(name: string, ctx: Value): string {
    const nodes = this.defines.get(name);
    if (nodes === undefined) throw new Error(`include: no template "${name}"`);
    const scope = new Scope();
    scope.declare('$', ctx);
    return this.nodes(nodes, ctx, scope);
  }

  render(nodes: Node[]): string {
    const scope = new Scope();
    scope.declare('$', this.root);
    return this.nodes(nodes, this.root, scope);
  }

  private nodes(nodes: Node[], dot: Value, scope: Scope): string {
    let out = '';
    for (const n of nodes) {
      if (n.t === 'text') out += n.text;
      else if (n.t === 'action') {
        const v = this.pipeline(n.pipe, dot, scope);
        if (n.assign === undefined) out += str(v);
        else if (n.assign.declare) scope.declare(n.assign.name, v);
        else scope.set(n.assign.name, v);
      } else if (n.t === 'if' || n.t === 'with') {
        for (const b of n.branches) {
          const inner = new Scope(scope);
          const v = b.cond === undefined ? true : this.pipeline(b.cond, dot, inner);
          if (b.cond !== undefined && !truthy(v)) continue;
          out += this.nodes(b.body, n.t === 'with' && b.cond !== undefined ? v : dot, inner);
          break;
        }
      } else if (n.t === 'range') {
        const v = this.pipeline(n.pipe, dot, scope);
        const entries: [Value, Value][] = Array.isArray(v)
          ? v.map((x, i) => [i, x])
          : typeof v === 'object' && v !== null
            ? Object.keys(v)
                .sort()
                .map((k) => [k, (v as Record<string, Value>)[k]])
            : typeof v === 'number'
              ? Array.from({ length: v }, (_, i) => [i, i])
              : [];
        if (entries.length === 0) out += this.nodes(n.elseBody, dot, new Scope(scope));
        for (const [k, x] of entries) {
          const inner = new Scope(scope);
          if (n.keyVar !== undefined) inner.declare(n.keyVar, k);
          if (n.valueVar !== undefined) inner.declare(n.valueVar, x);
          out += this.nodes(n.body, x, inner);
        }
      }
    }
    return out;
  }

  private pipeline(pipe: string, dot: Value, scope: Scope): Value {
    let piped: Value[] = [];
    for (const cmd of splitTop(pipe, (c) => c === '|')) {
      piped = [this.command(cmd, dot, scope, piped)];
    }
    return piped[0];
  }

  private command(cmd: string, dot: Value, scope: Scope, piped: Value[]): Value {
    const words = splitTop(cmd, (c) => /\s/.test(c));
    const [head, ...rest] = words;
    if (head === undefined) throw new Error('empty command');
    const fn = /^[A-Za-z_]\w*$/.test(head) ? functions[head] : undefined;
    if (/^[A-Za-z_]\w*$/.test(head) && !['true', 'false', 'nil'].includes(head)) {
      if (fn === undefined) throw new Error(`function "${head}" is outside the chart's subset`);
      const args = rest.map((w) => this.operand(w, dot, scope));
      return fn.call(this, ...args, ...piped);
    }
    const v = this.operand(head, dot, scope);
    if (typeof v === 'function') {
      const args = rest.map((w) => this.operand(w, dot, scope));
      return (v as (...a: Value[]) => Value)(...args, ...piped);
    }
    if (rest.length > 0 || piped.length > 0) throw new Error(`${head} is not a function`);
    return v;
  }

  private operand(w: string, dot: Value, scope: Scope): Value {
    if (w.startsWith('(') && w.endsWith(')')) return this.pipeline(w.slice(1, -1), dot, scope);
    if (w.startsWith('"')) return JSON.parse(w) as string;
    if (/^-?\d+(\.\d+)?$/.test(w)) return Number(w);
    if (w === 'true' || w === 'false') return w === 'true';
    if (w === 'nil') return null;
    const m = /^(\$\w*|)((?:\.\w+)*|\.)$/.exec(w);
    if (m === null) throw new Error(`cannot read operand ${w}`);
    let v = m[1] === '' ? dot : scope.get(m[1] ?? '');
    for (const key of (m[2] ?? '').split('.').filter((k) => k !== '')) {
      v = typeof v === 'object' && v !== null ? (v as Record<string, Value>)[key] : undefined;
    }
    return v;
  }
}

function deepMerge(base: Value, over: Value): Value {
  if (
    typeof base !== 'object' ||
    base === null ||
    Array.isArray(base) ||
    typeof over !== 'object' ||
    over === null ||
    Array.isArray(over)
  ) {
    return over === undefined ? base : over;
  }
  const out: Record<string, Value> = { ...(base as Record<string, Value>) };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(out[k], v);
  return out;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/** What `helm template NAME CHART -n NAMESPACE -f values` is given. */
export interface RenderOptions {
  readonly releaseName: string;
  readonly namespace: string;
  /** Merged over values.yaml, as `-f` is. */
  readonly values?: Record<string, unknown>;
}

/**
 * Renders a chart directory to the multi-document YAML `helm template` prints (each template
 * under a `# Source:` comment; documents that render to nothing are left out). Throws the
 * template's `fail` / `required` message, or an error naming the template.
 */
export function renderChart(chartDir: string, opts: RenderOptions): string {
  const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as Record<
    string,
    string
  >;
  const values = deepMerge(
    parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) ?? {},
    opts.values ?? {},
  );
  const files = new Map<string, string>();
  const templates: string[] = [];
  for (const p of walk(chartDir).sort()) {
    const rel = relative(chartDir, p).split('\\').join('/');
    if (rel.startsWith('templates/')) templates.push(rel);
    else files.set(rel, readFileSync(p, 'utf8'));
  }
  const defines = new Map<string, Node[]>();
  const parsed = templates.map(
    (rel) =>
      [rel, parse(tokenize(readFileSync(join(chartDir, rel), 'utf8'), rel), rel, defines)] as const,
  );
  const root = {
    Values: values,
    Release: { Name: opts.releaseName, Namespace: opts.namespace, Service: 'Helm' },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
    Files: filesObject(files),
  };
  const r = new Renderer(defines, root);
  const out: string[] = [];
  for (const [rel, nodes] of parsed) {
    if (basename(rel).startsWith('_') || !/\.ya?ml$/.test(rel)) continue;
    let text: string;
    try {
      text = r.render(nodes);
    } catch (err) {
      throw new Error(`${chart.name}/${rel}: ${(err as Error).message}`, { cause: err });
    }
    for (const doc of text.split(/^---\s*$/m)) {
      if (doc.trim() === '') continue;
      out.push(`---\n# Source: ${chart.name}/${rel}\n${doc.replace(/^\n+/, '')}`);
    }
  }
  return out.map((d) => (d.endsWith('\n') ? d : `${d}\n`)).join('');
}
