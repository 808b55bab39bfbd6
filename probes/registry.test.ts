import { existsSync, readFileSync } from 'node:fs';
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
