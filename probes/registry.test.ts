import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { probeDefinition, probeKinds, probeRegistry } from './registry.js';

const here = fileURLToPath(new URL('.', import.meta.url));

describe('probe registry', () => {
  it.each(probeKinds)('%s is one file with tests beside it', (kind) => {
    const def = probeRegistry[kind];
    expect(def.kind).toBe(kind);
    expect(existsSync(`${here}${kind}.ts`)).toBe(true);
    const testFile = `${here}${kind}.test.ts`;
    expect(existsSync(testFile), `${kind} has no probes/${kind}.test.ts`).toBe(true);
    // A test file that never runs the probe proves nothing.
    expect(readFileSync(testFile, 'utf8')).toMatch(/runProbe|\.run\(/);
  });

  it.each(probeKinds)('%s options have defaults and reject unknown keys', (kind) => {
    const schema = probeRegistry[kind].options;
    expect(schema.safeParse({}).success).toBe(true);
    expect(schema.safeParse({ noSuchOption: 1 }).success).toBe(false);
  });

  it('an unknown kind is a clear error naming the kinds there are', () => {
    expect(() => probeDefinition('smtp')).toThrow(
      /unknown probe kind "smtp" \(expected one of: icmp, tcp/,
    );
  });
});

describe('README probe-kinds table', () => {
  it('lists every registered kind, as rendered from the registry', async () => {
    const { probeKindsTable } = await import('./docs.js');
    const readmePath = `${here}../README.md`;
    const readme = readFileSync(readmePath, 'utf8');
    const block = /<!-- probe-kinds:start[^>]*-->\n([\s\S]*?)\n<!-- probe-kinds:end -->/.exec(
      readme,
    );
    // Prettier pads Markdown tables: compare the cells, not the spacing.
    const cells = (table: string): string[][] =>
      table
        .split('\n')
        .filter((l) => l.startsWith('|') && !/^\|[\s|:-]+\|$/.test(l))
        .map((l) =>
          l
            .split('|')
            .slice(1, -1)
            .map((c) => c.trim()),
        );
    expect(block, 'README.md has no probe-kinds block').not.toBeNull();
    if (process.env.FAULTLINE_UPDATE_DOCS === '1') {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(readmePath, readme.replace(block![1]!, probeKindsTable()));
      return;
    }
    expect(
      cells(block![1]!),
      'regenerate with FAULTLINE_UPDATE_DOCS=1 npx vitest run probes/registry.test.ts',
    ).toEqual(cells(probeKindsTable()));
  });
});

/** Product folders outside probes/: what ships besides the probes (tests and benches do not). */
const productDirs = ['lib', 'wire', 'agent', 'collector', 'cli', 'lab'];

function productFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(`${here}../${dir}`)) {
    const path = `${dir}/${name}`;
    if (statSync(`${here}../${path}`).isDirectory()) productFiles(path, out);
    else if (/\.ts$/.test(name) && !/\.test\.ts$/.test(name)) out.push(path);
  }
  return out;
}

/**
 * Where a product file outside probes/ switches on a probe kind: a comparison of something
 * named `kind` with a kind's literal (`t.kind === 'http'`, `'dns' !== kind`), a `case '<kind>':`
 * of a `switch` on a kind, or a list of kind literals (`new Set(['http', 'tcp'])`). A kind in
 * data (`{ kind: 'http' }` in the demo's topology, a description's words) is no switch.
 */
function kindSwitches(text: string, kinds: readonly string[]): string[] {
  const k = kinds.join('|');
  const compare = new RegExp(
    `[\\w.]*kind\\w*\\s*[!=]==?\\s*'(?:${k})'|'(?:${k})'\\s*[!=]==?\\s*[\\w.]*kind\\b`,
    'i',
  );
  const list = new RegExp(`\\[\\s*'(?:${k})'\\s*,\\s*'(?:${k})'`);
  const kase = new RegExp(`\\bcase '(?:${k})':`);
  const found: string[] = [];
  let inKindSwitch = false;
  text.split('\n').forEach((line, i) => {
    if (/\bswitch\s*\(/.test(line)) inKindSwitch = /\bswitch\s*\([^)]*kind/i.test(line);
    if (compare.test(line) || list.test(line) || (inKindSwitch && kase.test(line)))
      found.push(`${i + 1}: ${line.trim()}`);
  });
  return found;
}

/**
 * Product files that may still switch on kinds, with why and how many lines. Each entry is
 * debt with a reason, not a licence: the count must match exactly, so an entry is removed
 * (or lowered) when its switches go, and a new switch anywhere fails.
 */
const kindSwitchAllowList: Record<string, { readonly lines: number; readonly why: string }> = {
  'collector/inventory.ts': {
    lines: 10,
    why: 'the inventory: the host kinds (icmp, mtu), and a service kind fixing its default port and which of path/tls/query it takes; to become ProbeDefinition fields',
  },
  'collector/plan-config.ts': {
    lines: 1,
    why: 'the probe layers a plan may name (icmp, tcp, protocol): layers, not kinds, that share two names with kinds',
  },
  'collector/plan.ts': {
    lines: 2,
    why: 'the plan: a host pinged once however many icmp targets name it, and a service probed at tcp as well as its protocol; to become a ProbeDefinition hook',
  },
  'lab/services.ts': {
    lines: 6,
    why: 'the lab starts the real server each service kind needs (PostgreSQL, Redis, an HTTP or DNS server): the servers are the lab’s, not the probes’',
  },
  'lab/faults.ts': {
    lines: 1,
    why: 'a fault that freezes a database picks the lab’s server of that kind',
  },
  'collector/localise/views.ts': {
    lines: 1,
    why: "localisation: a path is a protocol answer unless it is an echo or a bare tcp connect; to be a ProbeDefinition layer once localise's split lands",
  },
  'collector/localise/kinds/dns-failure.ts': {
    lines: 1,
    why: "the dns_failure summary names the resolver when every failing path was a dns probe (a resolver's, not a name's); localise's own wording",
  },
};

describe('a probe kind knows itself', () => {
  it('no product file outside probes/ switches on a probe kind (beyond the allow-list)', () => {
    const files = productDirs
      .filter((d) => existsSync(`${here}../${d}`))
      .flatMap((d) => productFiles(d));
    expect(files.length).toBeGreaterThan(20);
    const seen: Record<string, number> = {};
    const problems: string[] = [];
    for (const file of files) {
      const found = kindSwitches(readFileSync(`${here}../${file}`, 'utf8'), probeKinds);
      if (found.length === 0) continue;
      seen[file] = found.length;
      const allowed = kindSwitchAllowList[file];
      if (allowed?.lines !== found.length)
        problems.push(
          `${file} (${found.length}, allowed ${allowed?.lines ?? 0}):\n  ${found.join('\n  ')}`,
        );
    }
    for (const file of Object.keys(kindSwitchAllowList))
      if (seen[file] === undefined)
        problems.push(`${file} switches on no kind now: drop its allow-list entry`);
    expect(
      problems,
      'put what the kind knows in its ProbeDefinition (probes/types.ts) instead of naming it here',
    ).toEqual([]);
  });

  it('the scan catches a switch and leaves data alone', () => {
    const kinds = ['http', 'dns', 'tcp'];
    expect(kindSwitches("if (t.kind === 'http') x();", kinds)).toHaveLength(1);
    expect(kindSwitches("if ('dns' !== r.kind) x();", kinds)).toHaveLength(1);
    expect(
      kindSwitches("switch (service.kind) {\n  case 'http':\n  case 'dns':\n}", kinds),
    ).toHaveLength(2);
    expect(kindSwitches("const s = new Set(['http', 'tcp']);", kinds)).toHaveLength(1);
    expect(kindSwitches("switch (layer) {\n  case 'dns':\n}", kinds)).toEqual([]);
    expect(kindSwitches("services: [{ kind: 'http', name: 'api' }],", kinds)).toEqual([]);
  });

  it('every kind declares its main timing, and the echo kinds read their loss', () => {
    for (const kind of probeKinds) {
      const def = probeRegistry[kind];
      expect(typeof def.mainTiming).toBe('string');
      if (def.echo === true) {
        expect(def.summaryLoss?.({ lossRatio: 0.5, sent: 4 })).toEqual({ ratio: 0.5, packets: 4 });
      }
    }
  });
});

describe("README's how to add a probe kind", () => {
  const readme = readFileSync(`${here}../README.md`, 'utf8');
  const section = /### How to add a probe kind\n([\s\S]*?)(?=\n#{2,3} |$)/.exec(readme)?.[1] ?? '';
  const registrySource = readFileSync(`${here}registry.ts`, 'utf8');
  const registryBlock = /export const probeRegistry = \{\n([\s\S]*?)\n\} as const;/.exec(
    registrySource,
  )?.[1];

  it('names one file and one registry line', () => {
    expect(section).toContain('`probes/<kind>.ts`');
    expect(section).toMatch(/one line to `probeRegistry` in `probes\/registry\.ts`/);
    expect(section).toMatch(/nothing else/i);
  });

  it('is what the registry is: one `<kind>,` line per kind, each kind its own file', () => {
    expect(registryBlock).toBeDefined();
    const lines = registryBlock!.split('\n').map((l) => l.trim());
    expect(lines).toEqual(probeKinds.map((kind) => `${kind},`));
    for (const kind of probeKinds) {
      expect(registrySource).toContain(`import { ${kind} } from './${kind}.js';`);
      expect(existsSync(`${here}${kind}.ts`)).toBe(true);
    }
  });
});
