import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { faultKinds } from '../../wire/diagnosis.js';
import { alertName } from '../alert-build.js';
import type { Rule } from './candidate.js';
import { rules } from './rules.js';

/*
 * "A new localisation rule is one file and one registry line": every rule exported from
 * kinds/ is in rules.ts once, nothing else names one, and the README's section says so.
 */

const here = fileURLToPath(new URL('.', import.meta.url));
const root = `${here}../../`;
const kindsDir = `${here}kinds/`;

/** kinds/ files (not tests), and the rules each exports (`export const <x>: Rule = {`). */
const ruleFiles = readdirSync(kindsDir)
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
  .map((file) => ({
    file,
    rules: [
      ...readFileSync(`${kindsDir}${file}`, 'utf8').matchAll(/^export const (\w+): Rule = \{/gm),
    ].map((m) => m[1]!),
  }));
const ruleExports = ruleFiles.flatMap((f) => f.rules);

describe('the rule registry', () => {
  const source = readFileSync(`${here}rules.ts`, 'utf8');
  const block = /export const rules: readonly Rule\[\] = \[\n([\s\S]*?)\n\];/.exec(source)?.[1];

  it('lists every rule exported from kinds/ once, one `<rule>,` line each, imported from its file', () => {
    expect(ruleExports.length).toBeGreaterThan(10);
    expect(block).toBeDefined();
    const lines = block!.split('\n').map((l) => l.trim());
    for (const line of lines) expect(line).toMatch(/^\w+,$/);
    const listed = lines.map((l) => l.slice(0, -1));
    expect(new Set(listed).size, 'a rule listed twice').toBe(listed.length);
    expect([...listed].sort()).toEqual([...ruleExports].sort());
    for (const { file, rules: names } of ruleFiles) {
      if (names.length === 0) continue;
      const from = `'./kinds/${file.replace(/\.ts$/, '.js')}'`;
      const imported = new RegExp(`import \\{ ([\\w, ]+) \\} from ${from};`).exec(source)?.[1];
      expect(
        imported?.split(', ').sort(),
        `rules.ts imports ${names.join(', ')} from ${from}`,
      ).toEqual([...names].sort());
    }
  });

  it('is, at run time, exactly the rule objects kinds/ exports, each once and named apart', async () => {
    const exported: Rule[] = [];
    for (const { file, rules: names } of ruleFiles) {
      const path = `./kinds/${file.replace(/\.ts$/, '.js')}`;
      const mod = (await import(/* @vite-ignore */ path)) as Record<string, Rule>;
      for (const name of names) exported.push(mod[name]!);
    }
    expect(new Set(rules).size).toBe(rules.length);
    expect(new Set(rules)).toEqual(new Set(exported));
    expect(new Set(rules.map((r) => r.name)).size).toBe(rules.length);
    for (const r of rules) {
      expect(r.kinds.length, r.name).toBeGreaterThan(0);
      for (const k of r.kinds) expect(faultKinds, `${r.name} proposes ${k}`).toContain(k);
    }
  });
});

/** Product folders: what ships (tests and benches are not product). */
const productDirs = ['lib', 'wire', 'probes', 'agent', 'collector', 'cli', 'lab'];

function productFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(`${root}${dir}`)) {
    const path = `${dir}/${name}`;
    if (statSync(`${root}${path}`).isDirectory()) productFiles(path, out);
    else if (/\.(ts|js)$/.test(name) && !/\.test\.ts$/.test(name)) out.push(path);
  }
  return out;
}

/**
 * Where a file names a rule: imports one of the rule bindings, or compares a `.name` with a
 * rule's name (`r.name === 'partition'`).
 */
function ruleMentions(
  text: string,
  bindings: readonly string[],
  names: readonly string[],
): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'([^']+)'/g)) {
    const imported = m[1]!.split(',').map((s) => s.trim().split(/\s+as\s+/)[0]!);
    for (const b of imported) if (bindings.includes(b)) found.push(`imports ${b} from ${m[2]}`);
  }
  const n = names.map((x) => x.replace(/[-]/g, '\\-')).join('|');
  const compare = new RegExp(
    `\\.name\\s*[!=]==?\\s*'(?:${n})'|'(?:${n})'\\s*[!=]==?\\s*[\\w.]*\\.name\\b`,
    'g',
  );
  for (const m of text.matchAll(compare)) found.push(m[0]);
  return found;
}

describe('nothing outside kinds/ and rules.ts names a rule', () => {
  const names = rules.map((r) => r.name);

  it('no product file imports a rule or picks one by name', () => {
    const files = productDirs
      .filter((d) => existsSync(`${root}${d}`))
      .flatMap((d) => productFiles(d))
      .filter(
        (f) => !f.startsWith('collector/localise/kinds/') && f !== 'collector/localise/rules.ts',
      );
    expect(files.length).toBeGreaterThan(50);
    const problems = files.flatMap((f) =>
      ruleMentions(readFileSync(`${root}${f}`, 'utf8'), ruleExports, names).map(
        (m) => `${f}: ${m}`,
      ),
    );
    expect(problems, 'reach the rules through `rules` in collector/localise/rules.ts').toEqual([]);
  });

  it('the scan catches an import and a pick by name, and leaves helpers alone', () => {
    const b = ['packetLoss', 'partition'];
    const n = ['packet-loss', 'partition'];
    expect(ruleMentions("import { packetLoss } from './kinds/packet-loss.js';", b, n)).toHaveLength(
      1,
    );
    expect(ruleMentions("import { unstableMs } from './kinds/packet-loss.js';", b, n)).toEqual([]);
    expect(
      ruleMentions("const r = rules.find((x) => x.name === 'packet-loss');", b, n),
    ).toHaveLength(1);
    expect(ruleMentions("if (h.kind === 'packet_loss') x();", b, n)).toEqual([]);
  });
});

describe("README's how to add a fault kind", () => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const section = /### How to add a fault kind\n([\s\S]*?)(?=\n#{2,3} |$)/.exec(readme)?.[1] ?? '';

  it('names one file and one registry line', () => {
    expect(section, 'README.md has no "How to add a fault kind" section').not.toBe('');
    expect(section).toContain('`collector/localise/kinds/<rule>.ts`');
    expect(section).toMatch(/one line to `rules` in `collector\/localise\/rules\.ts`/);
    expect(section).toContain('`<rule>,`');
    expect(section).toMatch(/nothing else/i);
  });

  it('names files that exist, and the lists in the files it says they are in', () => {
    for (const [, path] of section.matchAll(
      /`((?:collector|lib|wire|probes)\/[\w/.-]+\.(?:ts|js))`/g,
    )) {
      expect(existsSync(`${root}${path}`), `README names ${path}`).toBe(true);
    }
    const lists: [string, string][] = [
      ['faultKinds', 'wire/diagnosis.ts'],
      ['alertName', 'collector/alert-build.ts'],
      ['cappedKinds', 'collector/alert-build.ts'],
      ['culpritKinds', 'collector/localise/rule-out.ts'],
      ['kindColours', 'collector/dashboard/incidents.js'],
    ];
    for (const [name, file] of lists) {
      expect(section).toMatch(new RegExp(`\`${name}\` in \`${file.replace(/[./]/g, '\\$&')}\``));
      expect(readFileSync(`${root}${file}`, 'utf8')).toMatch(
        new RegExp(`(?:const|function) ${name}\\b`),
      );
    }
  });

  it("says how the alert name derives, as alertName does, and Alerts lists every kind's alert", () => {
    const example = /`(\w+)` → `(Faultline\w+)`/.exec(section);
    expect(example).not.toBeNull();
    expect(alertName(example![1] as (typeof faultKinds)[number])).toBe(example![2]);
    const alerts = /\n## Alerts\n([\s\S]*?)(?=\n## )/.exec(readme)?.[1] ?? '';
    for (const kind of faultKinds) expect(alerts).toContain(`\`${alertName(kind)}\``);
  });
});
