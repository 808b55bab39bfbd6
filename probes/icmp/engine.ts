/*
 * What every ICMP engine speaks: the request an echo run is, the report it answers with,
 * and the engine interface (socket.ts, fping.ts, ping.ts; the scheduled loop in fping-loop.ts answers
 * with the same report). No imports: the engines and echo.ts depend on this, not on each
 * other's modules.
 */

/**
 * What an ICMP echo can run on: the agent's own ICMP socket (native/icmp), or the programs
 * fping and iputils ping.
 */
export const icmpEngineNames = ['socket', 'fping', 'ping'] as const;
export type IcmpEngineName = (typeof icmpEngineNames)[number];

/** One echo run asked of an engine. */
export interface EchoRequest {
  /** The address to probe: always a resolved IP literal, never raw user text. */
  readonly ip: string;
  readonly family: 4 | 6;
  /** Echo requests to send. */
  readonly count: number;
  /** Milliseconds between two echo requests. */
  readonly intervalMs: number;
  /** ICMP payload bytes; the program's default when absent. */
  readonly packetSize?: number;
  /** Set Don't Fragment (IPv4), refuse to fragment (IPv6): for path MTU probes. */
  readonly dontFragment?: boolean;
  /**
   * Budget from now, in milliseconds: the engine answers by then (plus the hold, when
   * `holdMs` lets it hold the request).
   */
  readonly timeoutMs: number;
  /**
   * A probe out of schedule (a confirmation, an echo check): the engine may hold it up to
   * this long, so that it shares one process with the others in flight instead of starting
   * its own; its packets' wait then counts from when they leave, never shortened by the hold.
   * Absent or 0: never held.
   */
  readonly holdMs?: number;
  /**
   * A held request that is re-probe `index` (1-based) of `of`, `spacingMs` apart, of one
   * address (a confirmation burst). With a count of 1 the engine may send the whole burst's
   * packets from the first re-probe's process, each later re-probe taking its own packet.
   */
  readonly burst?: EchoBurst;
  /** The caller gave up: answer at once with what came back so far. */
  readonly signal: AbortSignal;
}

/** See `EchoRequest.burst`. */
export interface EchoBurst {
  readonly index: number;
  readonly of: number;
  readonly spacingMs: number;
}

/** An ICMP error message that came back instead of an echo reply. */
export interface IcmpError {
  readonly family: 4 | 6;
  /** ICMP type (3 destination unreachable, 11 time exceeded; ICMPv6 1 and 3). */
  readonly type: number;
  /** ICMP code, where the engine reports it. */
  readonly code?: number;
  /** Stable name of type and code, e.g. `ICMP_UNREACH_HOST`. */
  readonly name: string;
  /** Who sent it: a router, the target, or our own stack when ARP fails. */
  readonly from: string;
  /** The next-hop MTU a "fragmentation needed" / "packet too big" carries, where the engine prints it. */
  readonly mtu?: number;
  /** The engine's line, for humans. */
  readonly text: string;
}

/**
 * A packet our own stack refused to send. iputils ping reports these (with the MTU the
 * kernel gave); fping 5.1 prints nothing for them in count and loop mode.
 */
export interface SendError {
  /** The errno name, e.g. EMSGSIZE: larger than the route's MTU, with Don't Fragment set. */
  readonly code: string;
  /** The MTU the kernel named: the interface's, or the path MTU it learnt. */
  readonly mtu?: number;
  /** The engine's line, for humans. */
  readonly text: string;
}

/** What an engine saw for one echo run. */
export interface EchoReport {
  /**
   * `fping-loop`, `socket-loop`: a round of a scheduled target, answered by its long-lived
   * fping or by the loop on the agent's own socket.
   */
  readonly engine: IcmpEngineName | 'fping-loop' | 'socket-loop';
  /** The address the echoes went to, where the engine chose it (the loop keeps a name's address). */
  readonly ip?: string;
  /** Per echo request, in send order: round-trip in milliseconds, or null when none came back. */
  readonly rttsMs: readonly (number | null)[];
  /** ICMP errors that came back, in arrival order. */
  readonly icmpErrors: readonly IcmpError[];
  /** Packets our own stack refused to send, where the engine tells (ping does). */
  readonly sendErrors?: readonly SendError[];
  /** The caller's signal ended the run early. */
  readonly aborted: boolean;
  /** The engine itself failed (not installed, crashed): this says nothing about the target. */
  readonly failure?: { readonly code: string; readonly message: string };
}

/** A program that sends ICMP echoes. `echo` never rejects: failures are in the report. */
export interface IcmpEngine {
  readonly name: IcmpEngineName;
  /** Whether the program is installed and usable; checked once, then cached. */
  available(): Promise<boolean>;
  echo(req: EchoRequest): Promise<EchoReport>;
  /** Ends every child process; pending echoes answer as aborted. The engine stays usable. */
  close(): Promise<void>;
}
