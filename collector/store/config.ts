import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { errnoText } from '../../lib/config-file.js';
import { pathSchema } from '../config-report.js';
import type { Report } from '../config-report.js';

/** The collector config's `dataDir`: where the store lives (collector/store.ts). */

/** The data directory when the config does not say. */
export const defaultDataDir = './faultline-data';

/** The `dataDir:` field. */
export const dataDirSchema = pathSchema
  .prefault(defaultDataDir)
  .describe('Directory of the embedded store; created at start when missing.');

/**
 * Whether the store can live at `dir`: an existing writable directory, or a missing one
 * whose nearest existing parent is a writable directory (created at start, not here: a
 * config check changes nothing).
 */
export function checkDataDir(dir: string, report: Report): void {
  const at = ['dataDir'];
  let cur = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(cur).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const parent = dirname(cur);
      if ((code === 'ENOENT' || code === 'ENOTDIR') && parent !== cur) {
        cur = parent;
        continue;
      }
      report(at, `cannot use the data directory: ${cur}: ${errnoText(err)}`, dir);
      return;
    }
    if (!isDir) {
      report(at, `cannot create the data directory: ${cur} is not a directory`, dir);
      return;
    }
    try {
      accessSync(cur, constants.W_OK | constants.X_OK);
    } catch (err) {
      const what = cur === resolve(dir) ? 'use the data directory' : 'create the data directory';
      report(at, `cannot ${what}: ${cur} is not writable: ${errnoText(err)}`, dir);
    }
    return;
  }
}
