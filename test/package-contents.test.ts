import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, repoRoot } from './helpers/cli.js';

/** What `npm pack` would publish, as paths relative to the package root. */
function packedFiles(): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: repoRoot,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [pack] = JSON.parse(out) as { files: { path: string }[] }[];
  if (!pack) throw new Error(`npm pack --dry-run --json printed no package: ${out}`);
  return pack.files.map((f) => f.path);
}

/** The product folders the build compiles (tsconfig.build.json's include, bench aside). */
function productFolders(): string[] {
  const config = JSON.parse(readFileSync(`${repoRoot}tsconfig.build.json`, 'utf8')) as {
    include: string[];
  };
  return config.include.filter((dir) => dir !== 'bench');
}

describe('the published package', () => {
  let files: string[] = [];
  beforeAll(() => {
    ensureBuilt();
    files = packedFiles();
  });

  it('holds no test, bench or *.test.* file', () => {
    const offending = files.filter(
      (path) =>
        /^(dist\/)?(test|bench)\//.test(path) ||
        /(^|\/)[^/]*\.test\.[^/]+$/.test(path) ||
        /(^|\/)vitest\.config\./.test(path),
    );
    expect(offending).toEqual([]);
  });

  it('holds the CLI and every product folder of the build', () => {
    expect(files).toContain('dist/cli/main.js');
    // What `faultline agent` runs (cli/agent-entry.ts).
    expect(files).toContain('dist/agent-bundle/agent-daemon.js');
    expect(files).toContain('dist/lab/lab.js');
    for (const dir of productFolders()) {
      expect(
        files.some((path) => path.startsWith(`dist/${dir}/`)),
        `dist/${dir}/`,
      ).toBe(true);
    }
  });

  it('holds every module its modules import (nothing reaches outside the package)', () => {
    const packed = new Set(files);
    const missing: string[] = [];
    // The dashboard's browser modules import vendor/*.mjs, which the collector serves from
    // node_modules (collector/dashboard.ts): only Node's modules are checked here.
    const nodeModules = files.filter(
      (path) => path.endsWith('.js') && !path.startsWith('dist/collector/dashboard/'),
    );
    for (const file of nodeModules) {
      const source = readFileSync(`${repoRoot}${file}`, 'utf8');
      for (const match of source.matchAll(
        /(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g,
      )) {
        const target = posix.normalize(posix.join(posix.dirname(file), match[1] ?? ''));
        if (!packed.has(target)) missing.push(`${file} → ${target}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
