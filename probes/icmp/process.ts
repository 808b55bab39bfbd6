import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import type { Readable } from 'node:stream';

/*
 * Child-process plumbing and packet arithmetic the ICMP engines share (fping.ts, ping.ts,
 * fping-loop.ts).
 */

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Keeps `child` from holding the event loop open, and kills it if Node exits first. */
export function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', () => liveChildren.delete(child));
  child.unref();
  for (const stream of [child.stdout, child.stderr]) {
    (stream as unknown as { unref?: () => void } | null)?.unref?.();
  }
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of liveChildren) {
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    });
  }
}

/** Ends a child and resolves once it is gone (SIGTERM, then SIGKILL after `graceMs`). */
export function killAndWait(child: ChildProcess, graceMs = 1000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined)
    return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Calls `onLine` for every complete line a stream emits. */
export function onLines(stream: Readable, onLine: (line: string) => void): void {
  let rest = '';
  stream.setEncoding('latin1');
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    // A program that never ends a line must not grow our memory without bound.
    if (rest.length > 64 * 1024) rest = '';
    for (const line of parts) onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  });
  stream.on('end', () => {
    if (rest.length > 0) onLine(rest);
    rest = '';
  });
}

const extraDirs = ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin', '/usr/local/bin'];

/** Absolute path of an executable: `name` itself when it is a path, else searched in PATH and the sbin directories. */
export async function findExecutable(name: string): Promise<string | undefined> {
  const candidates = isAbsolute(name)
    ? [name]
    : [...(process.env.PATH ?? '').split(delimiter).filter((d) => d.length > 0), ...extraDirs].map(
        (d) => join(d, name),
      );
  for (const file of candidates) {
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * How many of `count` echo requests `intervalMs` apart fit into `budgetMs`, leaving the last
 * one half the budget (up to 500 ms) to come back. At least one is always sent.
 */
export function fitCount(count: number, intervalMs: number, budgetMs: number): number {
  const minWaitMs = Math.min(500, Math.max(0, budgetMs) / 2);
  const fits = Math.floor((budgetMs - minWaitMs) / intervalMs) + 1;
  return Math.max(1, Math.min(count, fits));
}

/** IPv6's minimum link MTU: every IPv6 path carries packets of this size. */
export const minIpv6PacketBytes = 1280;

/**
 * The ICMP payload of an echo whose whole IP packet is `sizeBytes`: less the IPv4 and ICMP
 * headers (20 + 8), or the IPv6 and ICMPv6 headers (40 + 8).
 */
export function echoPayloadBytes(sizeBytes: number, family: 4 | 6): number {
  return sizeBytes - (family === 6 ? 48 : 28);
}

/** A number of milliseconds as a command-line argument (at most microseconds). */
export function msArg(ms: number): string {
  return String(Math.round(ms * 1000) / 1000);
}
