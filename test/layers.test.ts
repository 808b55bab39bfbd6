import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/cli.js';

/**
 * The layer rule (eslint.layers.js) run on small in-memory sources placed in each folder:
 * the architecture lib ← wire ← probes ← agent | collector ← cli, lab/ and bench/ above, and
 * test/ imported by tests only. Every import names a file that exists, as the rule sees only
 * imports that resolve.
 */
let eslint: ESLint;
beforeAll(async () => {
  const { layerConfig, sizeConfig } = (await import(
    pathToFileURL(join(repoRoot, 'eslint.layers.js')).href
  )) as {
    layerConfig: Linter.Config[];
    sizeConfig: Linter.Config[];
  };
  eslint = new ESLint({
    cwd: repoRoot,
    overrideConfigFile: true,
    overrideConfig: [
      { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } },
      ...layerConfig,
      ...sizeConfig,
    ],
  });
});

/** The layer-rule messages for `source` as if it were the file `path` of the repository. */
async function problems(path: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(repoRoot, path) });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'fatal'}: ${m.message}`);
}

describe('the layer rule', () => {
  it.each([
    [
      'lib imports wire',
      'lib/x.ts',
      `import { ReportBatchSchema } from '../wire/report.js';`,
      /lib\/ is the bottom layer/,
    ],
    [
      'lib imports probes',
      'lib/x.ts',
      `import { probeRegistry } from '../probes/registry.js';`,
      /lib\/ is the bottom layer/,
    ],
    [
      'wire imports probes',
      'wire/x.ts',
      `import { probeRegistry } from '../probes/registry.js';`,
      /wire\/ imports only lib\/ and wire\//,
    ],
    [
      'probes imports agent',
      'probes/x.ts',
      `import { Agent } from '../agent/agent.js';`,
      /probes\/ imports only/,
    ],
    [
      'probes imports collector',
      'probes/x.ts',
      `import { buildApi } from '../collector/api.js';`,
      /probes\/ imports only/,
    ],
    [
      'agent imports collector',
      'agent/x.ts',
      `import { buildApi } from '../collector/api.js';`,
      /never collector\//,
    ],
    ['agent imports cli', 'agent/x.ts', `import '../cli/main.js';`, /agent\/ imports only/],
    [
      'collector imports agent',
      'collector/x.ts',
      `import { Agent } from '../agent/agent.js';`,
      /never agent\//,
    ],
    [
      'collector/localise imports agent',
      'collector/localise/x.ts',
      `import type { Agent } from '../../agent/agent.js';`,
      /never agent\//,
    ],
    [
      'collector imports agent dynamically',
      'collector/x.ts',
      `export const m = import('../agent/agent.js');`,
      /never agent\//,
    ],
    [
      'collector imports cli',
      'collector/x.ts',
      `import '../cli/main.js';`,
      /collector\/ imports only/,
    ],
    [
      'cli imports bench',
      'cli/x.ts',
      `import { sh } from '../bench/lib.js';`,
      /cli\/ imports the product layers and lab\//,
    ],
    [
      'lab imports bench',
      'lab/x.ts',
      `import { sh } from '../bench/lib.js';`,
      /lab\/ is product code/,
    ],
    [
      'cli imports test',
      'cli/x.ts',
      `import { cliPath } from '../test/helpers/cli.js';`,
      /Only tests .* import test\//,
    ],
    [
      'lab imports test',
      'lab/x.ts',
      `import { cliPath } from '../test/helpers/cli.js';`,
      /Only tests .* import test\//,
    ],
    [
      'bench imports test',
      'bench/x.ts',
      `import { cliPath } from '../test/helpers/cli.js';`,
      /Only tests .* import test\//,
    ],
    [
      'deploy imports test',
      'deploy/x.ts',
      `import { cliPath } from '../test/helpers/cli.js';`,
      /Only tests .* import test\//,
    ],
    [
      'wire imports test',
      'wire/x.ts',
      `import { cliPath } from '../test/helpers/cli.js';`,
      /Only tests .* import test\//,
    ],
    [
      'collector imports a test file',
      'collector/x.ts',
      `import '../lib/labels.test.js';`,
      /Only tests import a test file/,
    ],
    [
      'lib imports what does not exist',
      'lib/x.ts',
      `import { nothing } from './no-such-module.js';`,
      /Unable to resolve/,
    ],
  ])('fires when %s', async (_, path, source, expected) => {
    const found = await problems(path, source);
    expect(found.length, found.join('\n')).toBe(1);
    expect(found[0]).toMatch(expected);
  });

  it.each([
    ['wire imports lib', 'wire/x.ts', `import { parseLabelText } from '../lib/labels.js';`],
    [
      'probes imports wire and lib',
      'probes/x.ts',
      `import '../wire/result.js';\nimport '../lib/logger.js';`,
    ],
    [
      'agent imports probes',
      'agent/x.ts',
      `import { probeRegistry } from '../probes/registry.js';`,
    ],
    [
      'collector imports probes',
      'collector/x.ts',
      `import { probeRegistry } from '../probes/registry.js';`,
    ],
    [
      'cli imports agent, collector and lab',
      'cli/x.ts',
      `import '../agent/agent.js';\nimport '../collector/api.js';\nimport '../lab/lab.js';`,
    ],
    [
      'lab imports collector and wire',
      'lab/x.ts',
      `import type { Diagnosis } from '../wire/diagnosis.js';\nimport '../collector/types.js';`,
    ],
    [
      'bench imports lab and cli',
      'bench/x.ts',
      `import '../lab/lab.js';\nimport '../cli/main.js';`,
    ],
    [
      'a test beside the code imports test/ and anything',
      'lib/x.test.ts',
      `import '../test/helpers/cli.js';\nimport '../agent/agent.js';`,
    ],
    [
      'a test under test/ imports anything',
      'test/e2e/x.test.ts',
      `import '../helpers/cli.js';\nimport '../../collector/api.js';`,
    ],
    ['a package import', 'lib/x.ts', `import { z } from 'zod';\nimport { join } from 'node:path';`],
  ])('lets %s pass', async (_, path, source) => {
    expect(await problems(path, source)).toEqual([]);
  });

  it('is part of the project config (npx eslint .) for product and bench files, not for tests', async () => {
    const project = new ESLint({ cwd: repoRoot });
    for (const file of [
      'lib/labels.ts',
      'collector/api.ts',
      'cli/demo.ts',
      'lab/lab.ts',
      'bench/lib.ts',
    ]) {
      const config = (await project.calculateConfigForFile(join(repoRoot, file))) as Linter.Config;
      expect(config.rules?.['import-x/no-restricted-paths'], file).toBeDefined();
    }
    const testConfig = (await project.calculateConfigForFile(
      join(repoRoot, 'test/e2e/lab/demo.test.ts'),
    )) as Linter.Config;
    expect(testConfig.rules?.['import-x/no-restricted-paths']).toBeUndefined();
  });
});

describe('the size rule', () => {
  const body = (n: number): string =>
    Array.from({ length: n }, (_, i) => `  const v${i} = ${i};`).join('\n');
  const fn = (n: number): string => `export function f(): number {\n${body(n)}\n  return 0;\n}\n`;

  it('refuses a product function over 150 lines and a product file over 600, not a test', async () => {
    expect(await problems('collector/x.ts', fn(160))).toEqual([
      expect.stringMatching(/^max-lines-per-function: /),
    ]);
    expect(await problems('collector/x.ts', fn(140))).toEqual([]);
    const many = Array.from({ length: 5 }, (_, i) =>
      fn(130).replace('function f(', `function f${i}(`),
    ).join('\n');
    expect(await problems('agent/x.ts', many)).toEqual([expect.stringMatching(/^max-lines: /)]);
    expect(await problems('agent/x.test.ts', many + fn(160))).toEqual([]);
    expect(await problems('bench/x.ts', fn(160))).toEqual([]);
  });
});
