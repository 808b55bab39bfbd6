import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { FaultlineError, errorCodeOf } from '../../lib/errors.js';

/** What the store's failures mean and what to do about them, by errno or SQLite code. */
const meanings: readonly (readonly [RegExp, string, (dir: string) => string])[] = [
  [
    /^EROFS$/,
    'read-only file system',
    () => 'remount it read-write or point dataDir at a writable directory',
  ],
  [
    /^(EACCES|EPERM)$/,
    'permission denied',
    (d) => `give the collector's user write access to ${d} or point dataDir elsewhere`,
  ],
  [
    /^(ENOSPC|EDQUOT|SQLITE_FULL)/,
    'disk full',
    (d) => `free space on the file system holding ${d} or point dataDir elsewhere`,
  ],
  [
    /^SQLITE_READONLY/,
    'the database cannot be written',
    (d) => `make ${d} and the files in it writable by the collector's user`,
  ],
  [
    /^SQLITE_(BUSY|LOCKED)/,
    'the store is locked',
    (d) => `another collector is using ${d}: stop it or give this one its own dataDir`,
  ],
  [
    /^SQLITE_(NOTADB|CORRUPT)/,
    'not a Faultline store, or damaged',
    (d) => `move the file out of ${d} (a new store is created) or restore it from a backup`,
  ],
  [/^ENOTDIR$/, 'a path component is not a directory', () => 'point dataDir at a directory'],
  [
    /^SQLITE_(CANTOPEN|IOERR)/,
    'the file could not be opened or written',
    (d) => `check that ${d} exists, is writable and its file system is healthy`,
  ],
];

/** `<what>: <code> (<meaning>); <what to do>` — the code is errno or SQLite's. */
export function describeFailure(what: string, err: unknown, dir: string): string {
  const code = errorCodeOf(err) ?? 'UNKNOWN';
  for (const [re, meaning, advice] of meanings) {
    if (re.test(code)) return `${what}: ${code} (${meaning}); ${advice(dir)}`;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return `${what}: ${code} (${msg})`;
}

/** A store that cannot work (runtime: disk full, I/O error, locked). */
export function storeError(what: string, err: unknown, dir: string): FaultlineError {
  if (err instanceof FaultlineError) return err;
  return new FaultlineError('FL_ERR_STORE', describeFailure(what, err, dir), { cause: err });
}

/**
 * mkdir -p that reports the real errno: Node's recursive mkdir says ENOENT where the
 * file system said EROFS or EACCES, so each missing level is made on its own.
 */
export function makeDir(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      // The data dir itself private (0700); parents made on the way as usual.
      mkdirSync(d, d === dir ? 0o700 : undefined);
    } catch (err) {
      if (errorCodeOf(err) !== 'EEXIST') throw err;
    }
  }
}
