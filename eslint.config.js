// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { layerConfig, sizeConfig } from './eslint.layers.js';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/require-await': 'off',
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportAllDeclaration', message: 'Name what you export: no `export *`.' },
      ],
    },
  },
  // The layers: lib ← wire ← probes ← agent | collector ← cli; only tests import test/.
  ...layerConfig,
  // Product files and functions stay small enough to read.
  ...sizeConfig,
  {
    files: ['eslint.config.js', 'eslint.layers.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['scripts/**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { URL: 'readonly', process: 'readonly', console: 'readonly' },
    },
  },
  {
    // The dashboard: plain ES modules that run in the browser (no build step).
    files: ['collector/dashboard/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'AbortController',
          'HashChangeEvent',
          'TextDecoderStream',
          'URL',
          'URLSearchParams',
          'addEventListener',
          'atob',
          'clearInterval',
          'clearTimeout',
          'devicePixelRatio',
          'dispatchEvent',
          'document',
          'fetch',
          'history',
          'localStorage',
          'location',
          'removeEventListener',
          'setInterval',
          'setTimeout',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },
);
