import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { pidAlive } from './netns.js';

/**
 * Address space and names for lab runs. A lab takes one /24 of 198.18.0.0/15 (RFC 2544,
 * never routed anywhere real) with the very lock scheme of lab/netns.ts TestNet
 * (one directory per /24 under the same root, holding the owner's PID), so labs and
 * TestNets never share a subnet. A lab also writes its name prefix there: a later claimer
 * that finds the owner dead removes what that run left behind (namespaces, links, routes)
 * before taking the subnet — bring-up is idempotent even after a SIGKILLed run.
 */

const lockRoot = '/tmp/faultline-test-subnets';
const subnets = 512;

/** One claimed /24 and the per-run name prefix. */
export interface AddressSpace {
  /** Index 0–511 of the /24 in 198.18.0.0/15. */
  readonly index: number;
  /** Name prefix of every namespace and link of the run: `fl` + 6 hex digits. */
  readonly prefix: string;
  /** `198.18.x.0/24`. */
  readonly subnet: string;
  /** `198.18.x.<host>`. */
  address(host: number): string;
  /** Notes the run's temp dir in the lock, so a sweep after a crash removes it too. */
  noteDir(dir: string): void;
  /** Gives the subnet back (removes the lock). */
  release(): void;
}

function quiet(cmd: string, args: readonly string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

/**
 * Removes every namespace and link whose name starts with `prefix`, and the fallback route
 * of `subnet`: what a dead run of a lab left behind. Synchronous, so it can run in an exit
 * handler too.
 */
export function sweepPrefix(prefix: string, subnet?: string): void {
  if (!/^fl[0-9a-f]{6}$/.test(prefix)) return;
  for (const line of quiet('ip', ['netns', 'list']).split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    if (ns.startsWith(`${prefix}-`)) quiet('ip', ['netns', 'del', ns]);
  }
  for (const line of quiet('ip', ['-o', 'link', 'show']).split('\n')) {
    // "12: flabc123s0: <...>" or "13: flabc123h2@if12: <...>"
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name?.startsWith(prefix)) quiet('ip', ['link', 'del', name]);
  }
  if (subnet !== undefined) quiet('ip', ['route', 'del', 'unreachable', subnet, 'metric', '4000']);
}

/** Removes the temp dir a dead run noted in its lock (only a faultline-lab-* dir). */
function removeNotedDir(lockDir: string): void {
  try {
    const dir = readFileSync(`${lockDir}/dir`, 'utf8').trim();
    if (/\/faultline-lab-[A-Za-z0-9]+$/.test(dir)) rmSync(dir, { recursive: true, force: true });
  } catch {
    /* none noted */
  }
}

function spaceOf(index: number, prefix: string): AddressSpace {
  const address = (host: number): string => `198.${18 + (index >> 8)}.${index & 0xff}.${host}`;
  return {
    index,
    prefix,
    subnet: `${address(0)}/24`,
    address,
    noteDir: (dir) => writeFileSync(`${lockRoot}/${index}/dir`, dir),
    release: () => rmSync(`${lockRoot}/${index}`, { recursive: true, force: true }),
  };
}

/**
 * Sweeps what every dead lab run left (its lock names a prefix and a dead owner) and frees
 * its subnet. TestNet locks (no prefix file) are left to TestNet.
 */
export function sweepDeadLabs(): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(lockRoot);
  } catch {
    return;
  }
  for (const entry of entries.slice(0, subnets)) {
    if (!/^\d+$/.test(entry)) continue;
    const dir = `${lockRoot}/${entry}`;
    try {
      const prefix = readFileSync(`${dir}/prefix`, 'utf8').trim();
      const owner = Number(readFileSync(`${dir}/pid`, 'utf8'));
      if (owner > 0 && !pidAlive(owner)) {
        sweepPrefix(prefix, spaceOf(Number(entry), prefix).subnet);
        removeNotedDir(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    } catch {
      /* not a lab's lock, or being written */
    }
  }
}

/**
 * Claims a free /24 and a fresh prefix, after sweeping dead runs' leftovers; throws when
 * all 512 are taken by live owners.
 */
export function claimAddressSpace(): AddressSpace {
  mkdirSync(lockRoot, { recursive: true });
  sweepDeadLabs();
  const prefix = `fl${randomBytes(3).toString('hex')}`;
  const start = randomBytes(2).readUInt16BE(0) % subnets;
  // Each index is tried at most twice: once as found, once after reclaiming a dead owner's.
  for (let i = 0, reclaims = 0; i < subnets && reclaims <= subnets; i++) {
    const n = (start + i) % subnets;
    const dir = `${lockRoot}/${n}`;
    try {
      mkdirSync(dir);
      writeFileSync(`${dir}/pid`, String(process.pid));
      writeFileSync(`${dir}/prefix`, prefix);
      return spaceOf(n, prefix);
    } catch {
      try {
        const owner = Number(readFileSync(`${dir}/pid`, 'utf8'));
        if (owner > 0 && !pidAlive(owner)) {
          let stale: string | undefined;
          try {
            stale = readFileSync(`${dir}/prefix`, 'utf8').trim();
          } catch {
            /* a TestNet's lock: TestNet names are not swept here */
          }
          if (stale !== undefined) sweepPrefix(stale, spaceOf(n, stale).subnet);
          removeNotedDir(dir);
          rmSync(dir, { recursive: true, force: true });
          reclaims++;
          i--;
        }
      } catch {
        /* a racing claimer is writing its pid; move on */
      }
    }
  }
  throw new Error(`no free lab subnet in 198.18.0.0/15 (locks in ${lockRoot})`);
}
