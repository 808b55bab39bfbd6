import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { apiErrorStatus } from '../wire/errors.js';

const collectorDir = fileURLToPath(new URL('.', import.meta.url));

function sources(dir: string): [string, string][] {
  const out: [string, string][] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(path));
    else if (/\.ts$/.test(e.name) && !e.name.endsWith('.test.ts'))
      out.push([path, readFileSync(path, 'utf8')]);
  }
  return out;
}

describe('every error code the collector can answer with has its HTTP status in wire/errors.ts', () => {
  it('each FL_ERR_* the collector names is an API code', () => {
    const named = new Map<string, string>();
    for (const [path, text] of sources(collectorDir)) {
      for (const m of text.matchAll(/\bFL_ERR_[A-Z_]+\b/g)) named.set(m[0], path);
    }
    // The API's own files must name most of the catalogue (the scan sees them).
    expect(named.size).toBeGreaterThanOrEqual(15);
    const missing = [...named].filter(([code]) => !Object.hasOwn(apiErrorStatus, code));
    expect(missing).toEqual([]);
  });
});
