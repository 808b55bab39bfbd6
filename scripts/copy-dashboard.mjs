// Copies the dashboard's static files beside the built collector (dist/collector/dashboard/),
// so the published package, which ships dist only, serves them.
import { cpSync, rmSync } from 'node:fs';

const from = new URL('../collector/dashboard/', import.meta.url);
const to = new URL('../dist/collector/dashboard/', import.meta.url);
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true, filter: (src) => !src.endsWith('.test.ts') });
