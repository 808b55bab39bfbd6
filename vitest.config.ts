import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Namespace and database tests share the machine: keep files from stepping on each other's CPU.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
  },
});
