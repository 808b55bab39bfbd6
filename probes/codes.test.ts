import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errorCodes } from '../lib/errors.js';
import { classifyProbeCode } from './classify.js';
import { isProbeCode, probeCodes } from './codes.js';

const probesDir = fileURLToPath(new URL('.', import.meta.url));

/** Every product source of the probes layer (folders included), by path. */
function probeSources(dir = probesDir): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) for (const [p, s] of probeSources(path)) out.set(p, s);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts'))
      out.set(path, readFileSync(path, 'utf8'));
  }
  return out;
}

describe("the probes' raw codes: one catalogue (probes/codes.ts)", () => {
  const sources = probeSources();
  const used = new Set<string>();
  for (const [path, text] of sources) {
    if (path.endsWith('codes.ts') || path.endsWith('classify.ts')) continue;
    for (const m of text.matchAll(/'(FL_[A-Z0-9_]+)'/g)) {
      if (!m[1]!.startsWith('FL_ERR_')) used.add(m[1]!);
    }
  }

  it('every FL_* code a probe writes is catalogued, and every catalogued one is written', () => {
    expect([...used].filter((c) => !isProbeCode(c))).toEqual([]);
    expect(Object.keys(probeCodes).filter((c) => !used.has(c))).toEqual([]);
  });

  it("no code is in two vocabularies: a probe's evidence is never one of Faultline's faults", () => {
    for (const code of Object.keys(probeCodes)) {
      expect(code).toMatch(/^FL_[A-Z0-9_]+$/);
      expect(code.startsWith('FL_ERR_')).toBe(false);
      expect(Object.hasOwn(errorCodes, code)).toBe(false);
    }
    const meanings = Object.values(probeCodes);
    expect(new Set(meanings).size).toBe(meanings.length);
  });

  it('a probe that still writes a class beside its code writes the one classify.ts decides', () => {
    const pairs: [string, string, string][] = [];
    const res = [
      /ProbeFailure\(\s*'([a-z_]+)',\s*\{\s*code: '(FL_[A-Z0-9_]+)'/g,
      /outcome\('([a-z_]+)', \{\s*error: \{\s*code: '(FL_[A-Z0-9_]+)'/g,
    ];
    for (const [path, text] of sources) {
      for (const re of res) {
        for (const m of text.matchAll(re)) pairs.push([path, m[2]!, m[1]!]);
      }
    }
    // The database probes' protocol verdicts: this test is what keeps them honest.
    expect(pairs.length).toBeGreaterThan(5);
    for (const [path, code, cls] of pairs) {
      // A fault of Faultline itself on a result (no engine, bad options) is internal_error.
      if (Object.hasOwn(errorCodes, code)) {
        expect(cls, `${path}: ${code}`).toBe('internal_error');
        continue;
      }
      expect(isProbeCode(code), `${path}: ${code}`).toBe(true);
      if (isProbeCode(code)) {
        expect(classifyProbeCode(code, 'exchange'), `${path}: ${code}`).toBe(cls);
      }
    }
  });
});
