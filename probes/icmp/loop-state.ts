import type { ChildProcess } from 'node:child_process';
import type { EchoReport, IcmpError } from './engine.js';
import type { FifoLines } from './fifo-lines.js';

/*
 * The loop engine's vocabulary (fping-loop.ts): what a scheduled target and a round are,
 * its options and counters, the limits it keeps fping within, and its inner state —
 * subscriptions (one per scheduled target), members (one per address in a running fping)
 * and groups (one fping per family, period, timeout, size and Don't Fragment).
 */

/** A scheduled target as the loop engine needs it. */
export interface LoopTarget {
  /** The target's name, unique among scheduled targets: rounds are matched by it. */
  readonly name: string;
  /** Hostname or IP literal, as in `Target.host`. */
  readonly host: string;
  /** Address family for a hostname: 4, 6, or 0 for the resolver's first answer. */
  readonly family: 0 | 4 | 6;
  /** Echo requests per round. */
  readonly count: number;
  /** ICMP payload bytes; fping's default when absent. */
  readonly packetSize?: number;
  /** The whole IP packet instead of `packetSize`: the payload follows from the address's family. */
  readonly sizeBytes?: number;
  /** Don't Fragment (`-M`): a packet larger than a link on the way is refused, not fragmented. */
  readonly dontFragment?: boolean;
  /** Time between the starts of two rounds. */
  readonly intervalMs: number;
  /** The round's timeout: no packet waits longer for its reply. */
  readonly timeoutMs: number;
}

/** One round asked of the loop engine by `icmp.run`. */
export interface LoopRound {
  readonly name: string;
  readonly host: string;
  readonly family: 0 | 4 | 6;
  readonly count: number;
  readonly packetSize?: number;
  readonly sizeBytes?: number;
  readonly dontFragment?: boolean;
  /** The address `run` resolved the host to (the host itself for an IP literal). */
  readonly ip: string;
  /** Budget from now: the engine answers or declines by then. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
}

/**
 * A loop engine: what `prepareEchoLoop` and `runEcho` (echo.ts) ask of the one that serves
 * the scheduled targets (fping-loop.ts, socket-loop.ts).
 */
export interface EchoLoop {
  prepare(targets: readonly LoopTarget[], source?: string): void;
  /** A round's report, or undefined when the loop declines it (the caller probes another way). */
  round(req: LoopRound): Promise<EchoReport | undefined>;
  discard(name: string): void;
  buffered(name: string): number;
  close(): Promise<void>;
}

/** Settings of the loop engine; the defaults suit an agent. */
export interface FpingLoopOptions {
  /** The fping binary: a name searched in PATH and sbin, or an absolute path. */
  readonly binPath?: string;
  /** A prepare waits this long for more changes before restarting any fping. */
  readonly debounceMs?: number;
  /**
   * A round with nothing in yet waits for its target's next packet only when that is due
   * within this many ms (and then up to this much beyond); a later one makes it decline.
   */
  readonly maxWaitMs?: number;
  /** Longest interval served by the loop; longer ones are cheap enough as batches and stay fresher. */
  readonly maxIntervalMs?: number;
  /** Most targets one fping serves. */
  readonly maxTargetsPerProcess?: number;
  /**
   * fping's `-i`: least time between two packets of one fping. Small, so that every period
   * goes out as one short burst (about 20 µs a target): fping then wakes once per burst
   * instead of once per packet, and its lines reach us in a few large reads. Spreading the
   * packets over the period (`-i` near period / targets) costs fping 2–3× the CPU, and at
   * 90% of the period fping cannot keep up and stretches the period by 10–50%.
   */
  readonly sendGapMs?: number;
  /**
   * Least time between two reads of fping's FIFO when no round asks (rounds read it too).
   * Each read wakes Node (~0.1 ms here); the FIFO holds 64 KiB, over 150 ms of lines at
   * fping's top rate, and fewer lines are read less often (up to once a second).
   */
  readonly pollMs?: number;
  /** fping writes into a FIFO polled every `pollMs` (default), or into a pipe read on every write. */
  readonly fifo?: boolean;
}

/** Counters since construction, for tests and the bench. */
export interface FpingLoopStats {
  /** fping processes started (first starts and restarts). */
  spawns: number;
  /** fping processes that ended without being asked to. */
  crashes: number;
  /** Rounds answered from the loop. */
  rounds: number;
  /** Rounds declined (cold, fping down, unknown target): the caller ran them elsewhere. */
  declined: number;
  /** How the last fping that ended unasked ended, with what it wrote to stderr. */
  lastCrash?: string;
}

// fping keeps each packet's sequence number for 10 s in a 16-bit space (seqmap.c): stay well
// below 6,553 packets per second per process.
export const maxPacketsPerSecond = 5000;
// fping's floor for -p.
export const minPeriodMs = 10;
// From spawn to fping's first packet; only used to guess when a fresh target's packet is due.
export const startupMs = 5;
// What fping takes to send one packet of a burst, at the least.
export const sendCostMs = 0.02;
// A round re-reads fping's FIFO unless another round read it this recently.
export const freshReadMs = 5;
// While a round waits for its packet, the FIFO is read this often.
export const waitStepMs = 5;
// Rounds in a row a hostname must resolve elsewhere before the loop follows it.
export const movedRounds = 3;
export const lost = -1;
// A line of fping's, at most ("255.255.255.255 : [65535], 65535 bytes, 1000.00 ms (…)").
export const lineBytes = 80;

export interface Params {
  readonly family: 4 | 6;
  readonly periodMs: number;
  readonly packetTimeoutMs: number;
  /** ICMP payload bytes (from the target's packetSize, or its sizeBytes for this family). */
  readonly packetSize: number | undefined;
  readonly dontFragment: boolean;
}

export interface Subscription {
  readonly name: string;
  /** host, family, count, size and Don't Fragment: a round must match them all. */
  readonly spec: string;
  readonly host: string;
  readonly family: 0 | 4 | 6;
  readonly count: number;
  readonly periodMs: number;
  readonly packetTimeoutMs: number;
  readonly packetSize: number | undefined;
  readonly sizeBytes: number | undefined;
  readonly dontFragment: boolean;
  ip: string | undefined;
  member: Member | undefined;
  /** Outcomes since the last round, oldest first: RTT in ms, or `lost`. */
  rtts: number[];
  /** ICMP errors since the last round. */
  errors: IcmpError[];
  waiter: ((report: EchoReport | undefined) => void) | undefined;
  /** Rounds in a row whose host resolved to another address than `ip`. */
  moved: number;
}

export interface Member {
  readonly ip: string;
  readonly group: Group;
  readonly subs: Set<Subscription>;
  /** Position in the running fping's argument list (its first packet goes out at index × spacing). */
  index: number;
  /** fping's number of the next packet whose line is due (its packets are `period` apart). */
  nextSeq: number;
  /** The last packet was lost: the next line comes a packet timeout after its send. */
  lastLost: boolean;
}

export interface Running {
  readonly child: ChildProcess;
  readonly ips: readonly string[];
  readonly spawnAt: number;
  readonly spacingMs: number;
  /** fping's stdout, when it writes into a FIFO that we poll (else its pipe's events feed us). */
  readonly out: FifoLines | undefined;
}

export interface Group {
  /** Params key plus chunk number. */
  readonly id: string;
  readonly paramsKey: string;
  readonly chunk: number;
  readonly params: Params;
  readonly members: Map<string, Member>;
  running: Running | undefined;
  failures: number;
  restartTimer: NodeJS.Timeout | undefined;
  stderr: string;
  /** performance.now() of the last read of fping's FIFO. */
  readAt: number;
}

export function specOf(t: {
  host: string;
  family: number;
  count: number;
  packetSize?: number | undefined;
  sizeBytes?: number | undefined;
  dontFragment?: boolean | undefined;
}): string {
  return `${t.host}|${t.family}|${t.count}|${t.packetSize ?? ''}|${t.sizeBytes ?? ''}|${t.dontFragment === true ? 'df' : ''}`;
}

export function paramsKeyOf(p: Params): string {
  return `${p.family}/${p.periodMs}/${p.packetTimeoutMs}/${p.packetSize ?? ''}/${p.dontFragment ? 'df' : ''}`;
}
