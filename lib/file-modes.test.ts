import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tightenModes } from './file-modes.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'faultline-modes-'));
  dirs.push(d);
  return d;
}
const mode = (p: string): string => (statSync(p).mode & 0o777).toString(8);

describe('tightenModes', () => {
  it('makes a 0755 dir 0700 and its 0644 files 0600, saying what it changed', () => {
    const root = temp();
    const dir = join(root, 'data');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'faultline.db'), '', { mode: 0o644 });
    chmodSync(join(dir, 'faultline.db'), 0o644);
    writeFileSync(join(dir, 'agent-token'), 'x', { mode: 0o600 });
    const notes = tightenModes(dir, 'data directory');
    expect(mode(dir)).toBe('700');
    expect(mode(join(dir, 'faultline.db'))).toBe('600');
    expect(mode(join(dir, 'agent-token'))).toBe('600');
    expect(notes.map((n) => n.message)).toEqual([
      `tightened ${dir} from 0755 to 0700: the data directory is for this process's user alone`,
      `tightened ${join(dir, 'faultline.db')} from 0644 to 0600: the data directory is for this process's user alone`,
    ]);
  });

  it('leaves private modes, subdirectories and symlinked files alone', () => {
    const root = temp();
    const dir = join(root, 'data');
    mkdirSync(join(dir, 'local-agent'), { recursive: true });
    chmodSync(dir, 0o700);
    chmodSync(join(dir, 'local-agent'), 0o755);
    const outside = join(root, 'outside');
    writeFileSync(outside, '');
    chmodSync(outside, 0o644);
    symlinkSync(outside, join(dir, 'link'));
    expect(tightenModes(dir)).toEqual([]);
    expect(mode(outside)).toBe('644');
    expect(mode(join(dir, 'local-agent'))).toBe('755');
  });

  it('says nothing about a dir that does not exist yet', () => {
    expect(tightenModes(join(temp(), 'missing'))).toEqual([]);
  });
});
