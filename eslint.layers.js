// @ts-check
// The architecture, written down: which folder may import which. README.md "Layout" draws it.
//
//   lib ← wire ← probes ← agent | collector ← cli
//
// A layer imports only the layers to its left; agent and collector never import each other.
// lab/ (the network lab `faultline demo` runs) may import any product layer; bench/ any product
// folder and lab/. Nothing but tests (test/**, *.test.ts) imports test/ or a test file.
import { createNodeResolver, importX } from 'eslint-plugin-import-x';

const root = import.meta.dirname;

/** Product folders, bottom first; agent and collector share a floor. */
const picture = 'lib ← wire ← probes ← agent | collector ← cli';

/**
 * @param {string} target the folder the rule holds
 * @param {string[]} from the folders it must not import
 * @param {string} why said in the error
 */
const zone = (target, from, why) => ({ target, from, message: `${why} (${picture}).` });

/** The zones of import-x/no-restricted-paths: one per folder, what it must not import. */
export const layerZones = [
  zone(
    'lib',
    ['wire', 'probes', 'agent', 'collector', 'cli', 'lab', 'bench'],
    'lib/ is the bottom layer: it imports only lib/',
  ),
  zone(
    'wire',
    ['probes', 'agent', 'collector', 'cli', 'lab', 'bench'],
    'wire/ imports only lib/ and wire/',
  ),
  zone(
    'probes',
    ['agent', 'collector', 'cli', 'lab', 'bench'],
    'probes/ imports only lib/, wire/ and probes/',
  ),
  zone(
    'agent',
    ['collector', 'cli', 'lab', 'bench'],
    'agent/ imports only lib/, wire/, probes/ and agent/ (never collector/)',
  ),
  zone(
    'collector',
    ['agent', 'cli', 'lab', 'bench'],
    'collector/ imports only lib/, wire/, probes/ and collector/ (never agent/)',
  ),
  zone('cli', ['bench'], 'cli/ imports the product layers and lab/, never bench/'),
  zone('lab', ['bench'], 'lab/ is product code: it never imports bench/'),
  {
    target: root,
    from: ['test'],
    message:
      'Only tests (test/**, *.test.ts) import test/: product code and benches share helpers through lab/.',
  },
  {
    target: root,
    from: ['**/*.test.ts'],
    message: 'Only tests import a test file.',
  },
];

/** Flat-config blocks: the layer rule for every non-test source. */
export const layerConfig = [
  {
    files: ['**/*.ts', '**/*.js', '**/*.mjs'],
    ignores: ['test/**', '**/*.test.ts'],
    plugins: { 'import-x': importX },
    settings: {
      // Our imports name the emitted .js; the resolver finds the .ts beside it.
      'import-x/resolver-next': [
        createNodeResolver({
          extensions: ['.ts', '.js', '.mjs', '.json'],
          extensionAlias: { '.js': ['.ts', '.js'] },
        }),
      ],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', { basePath: root, zones: layerZones }],
      // The zones see only imports that resolve: every relative one must, or it would slip by.
      'import-x/no-unresolved': ['error', { ignore: ['^[^.]'] }],
    },
  },
  {
    // The dashboard's browser modules import vendor/*.mjs, served from node_modules.
    files: ['collector/dashboard/**/*.js'],
    rules: { 'import-x/no-unresolved': 'off' },
  },
];

/**
 * Rooms a new engineer can read: a product file is at most 600 lines and a function at most
 * 150 (blank lines and comments not counted); tests and benches are free. Proved by
 * test/layers.test.ts.
 * @type {import('eslint').Linter.Config[]}
 */
export const sizeConfig = [
  {
    files: ['{lib,wire,probes,agent,collector,cli,lab}/**/*.{ts,js}'],
    ignores: ['**/*.test.ts'],
    rules: {
      'max-lines': ['error', { max: 600, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 150, skipBlankLines: true, skipComments: true }],
    },
  },
];
