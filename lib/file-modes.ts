import { chmodSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** What `tightenModes` did or could not do, one sentence each, for a warning log line. */
export interface ModeNote {
  readonly path: string;
  /** Mode before, e.g. 0o755. */
  readonly fromMode: number;
  /** Mode wanted, 0o700 for the directory, 0o600 for files. */
  readonly toMode: number;
  /** Set when chmod failed (e.g. EPERM: another user owns it); the mode is unchanged. */
  readonly errorCode?: string;
  readonly message: string;
}

const octal = (m: number): string => `0${m.toString(8).padStart(3, '0')}`;

/**
 * Makes a private directory private again: `dir` to 0700 and every regular file directly
 * in it to 0600, when they allow more (group or other bits). Symlinks are left alone
 * (chmod would follow them out of the directory); subdirectories too (unreachable once
 * `dir` is 0700). A missing `dir` is not an error: nothing to tighten. Never throws for a
 * chmod that fails: the note says so and the caller warns.
 */
export function tightenModes(dir: string, what = 'directory'): ModeNote[] {
  const notes: ModeNote[] = [];
  const tighten = (path: string, current: number, wanted: number): void => {
    if ((current & 0o077) === 0) return;
    const toMode = current & wanted;
    try {
      chmodSync(path, toMode);
      notes.push({
        path,
        fromMode: current,
        toMode,
        message: `tightened ${path} from ${octal(current)} to ${octal(toMode)}: the ${what} is for this process's user alone`,
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      notes.push({
        path,
        fromMode: current,
        toMode,
        errorCode: code,
        message: `${path} is ${octal(current)} and could not be tightened to ${octal(toMode)} (${code}): make it ${octal(toMode)}, the ${what} is for this process's user alone`,
      });
    }
  };
  let dirMode: number;
  try {
    dirMode = statSync(dir).mode & 0o777;
  } catch {
    return notes;
  }
  tighten(dir, dirMode, 0o700);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return notes;
  }
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = lstatSync(path);
      if (st.isFile()) tighten(path, st.mode & 0o777, 0o600);
    } catch {
      // gone since readdir: nothing to tighten
    }
  }
  return notes;
}
