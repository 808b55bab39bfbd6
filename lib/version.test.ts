import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { faultlineVersion } from './version.js';

describe('faultlineVersion', () => {
  it("is the package's version, as `faultline --version` says it", () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(faultlineVersion).toBe(pkg.version);
  });
});
