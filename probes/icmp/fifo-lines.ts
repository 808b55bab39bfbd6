import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Lines from a FIFO, read when asked. fping flushes every line, so an event-driven pipe
 * wakes Node hundreds to thousands of times a second (~60 µs each, most of our cost);
 * polling a FIFO every `pollMs` reads the same lines in a few large reads.
 */
export class FifoLines {
  private rest = '';
  private static readonly buf = Buffer.allocUnsafe(64 * 1024);

  private constructor(
    private fd: number | undefined,
    /** The write end, for the child's stdout; released in this process once it is spawned. */
    private writeFd: number | undefined,
  ) {}

  /** The write end to hand to the child. */
  get childFd(): number {
    return this.writeFd ?? -1;
  }

  /** A FIFO with both ends open and its name already gone; undefined where none can be made. */
  static open(): FifoLines | undefined {
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(tmpdir(), 'faultline-fping-'));
      const path = join(dir, 'out');
      if (spawnSync('mkfifo', ['-m', '600', path], { stdio: 'ignore' }).status !== 0)
        return undefined;
      const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
      // With a reader open, opening the write end does not block.
      return new FifoLines(fd, openSync(path, constants.O_WRONLY));
    } catch {
      return undefined;
    } finally {
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Hands every complete line written so far to `onLine`. */
  drain(onLine: (line: string) => void): void {
    const buf = FifoLines.buf;
    while (this.fd !== undefined) {
      let n: number;
      try {
        n = readSync(this.fd, buf, 0, buf.length, null);
      } catch {
        return; // EAGAIN: nothing more now
      }
      if (n === 0) return; // fping is gone; its exit is handled elsewhere
      const text = this.rest + buf.toString('latin1', 0, n);
      let start = 0;
      for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
        onLine(text.slice(start, end));
        start = end + 1;
      }
      this.rest = text.length - start > 64 * 1024 ? '' : text.slice(start);
      if (n < buf.length) return;
    }
  }

  /** Closes this process's copy of the write end (the child has its own), once. */
  releaseWriteEnd(): void {
    if (this.writeFd !== undefined) closeSync(this.writeFd);
    this.writeFd = undefined;
  }

  /** Closes both ends; fping, if still alive, gets EPIPE on its next line. Idempotent. */
  close(): void {
    this.releaseWriteEnd();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
