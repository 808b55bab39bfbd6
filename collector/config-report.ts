import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import type { ConfigIssueParams, ConfigPath } from '../lib/config-file.js';
import { errnoText } from '../lib/config-file.js';

/**
 * What the collector config's sections share: how a section's resolve step reports a
 * problem, a path field, and reading a file a field names.
 */

/** Reports a problem at `path` of the collector config (what `resolveConfig` collects). */
export type Report = (
  path: ConfigPath,
  message: string,
  input?: unknown,
  params?: ConfigIssueParams,
) => void;

/** A file path field. */
export const pathSchema = z.string().min(1).max(4096);

/** The file's text, or undefined after reporting why it cannot be read. */
export function readTextFile(
  path: string,
  what: string,
  at: ConfigPath,
  report: Report,
): string | undefined {
  try {
    if (statSync(path).isDirectory()) {
      report(at, `cannot read the ${what}: it is a directory`, path);
      return undefined;
    }
    return readFileSync(path, 'utf8');
  } catch (err) {
    report(at, `cannot read the ${what}: ${errnoText(err)}`, path);
    return undefined;
  }
}
