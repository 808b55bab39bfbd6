import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';

/* Crash-safe file writes for the agent's state (spool, credential, cached plan). */

/** fsyncs a directory, so that the renames and creations in it are durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes a file so that a crash leaves either the old or the new content: a temporary file
 * beside it, fsync, rename over. The directory is fsync'd too unless `syncDirectory` is
 * false (the caller then syncs it once for several files).
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  syncDirectory = true,
): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  if (syncDirectory) await syncDir(join(path, '..'));
}
