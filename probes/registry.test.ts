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
