import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Faultline's own version: the `version` of its package.json, found upwards from this file
 * (lib/ in the sources, dist/lib/ when built or installed), as `faultline --version` (yargs)
 * finds it. `0.0.0-unknown` only when no package.json of ours is found, never an error.
 */
function readVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
        if (pkg.name === 'faultline' && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // Not ours (or unreadable): keep looking upwards.
      }
    }
    const up = dirname(dir);
    if (up === dir) return '0.0.0-unknown';
    dir = up;
  }
}

export const faultlineVersion: string = readVersion();
