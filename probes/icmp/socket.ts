import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { classifyIcmpError } from '../classify.js';
import type { EchoReport, EchoRequest, IcmpEngine, IcmpError, SendError } from './engine.js';
import { fitCount } from './process.js';

/*
 * The socket engine: echo requests sent from the agent's own process, on one ICMP socket per
 * address family (native/icmp/icmp.c: an unprivileged "ping socket" where
 * net.ipv4.ping_group_range allows it, else a raw socket with CAP_NET_RAW). No process per
 * batch as with fping, so a probe costs a send and a receive; and the round-trip is the
 * kernel's receive timestamp less the time taken just before the send.
 *
 * Replies and ICMP errors are matched to probes by sequence number (16 bits, one counter per
 * socket, never reused while in flight); the socket carries our own identifier, so other
 * programs' pings never reach a probe.
 */

/** What the addon's socket hands back (see native/icmp/icmp.c). */
interface NativeEvent {
  readonly kind: 'reply' | 'error' | 'local';
  readonly seq: number;
  readonly from: string;
  /** When the kernel received it, on the clock `send` answers with (ms). */
  readonly atMs: number;
  readonly type: number;
  readonly code: number;
  /** The next-hop MTU of a "fragmentation needed" / "packet too big", else 0. */
  readonly info: number;
}

interface NativeSocket {
  readonly handle: unknown;
  readonly raw: boolean;
  readonly ident: number;
}

interface IcmpAddon {
  open(
    family: 4 | 6,
    dontFragment: boolean,
    onEvents: (events: NativeEvent[]) => void,
  ): NativeSocket;
  /** Sends one echo request; answers the send time (ms), or throws an Error whose `code` is an errno name. */
  send(handle: unknown, ip: string, seq: number, payloadBytes: number): number;
  close(handle: unknown): void;
}

/** Where scripts/build-native.mjs puts the addon: beside the compiled modules, and its build. */
const addonFiles = ['native/faultline_icmp.node', 'native/icmp/build/Release/faultline_icmp.node'];

/**
 * The built addon, searched for upwards from this module: dist/native/ from the compiled
 * modules (dist/probes/icmp/) and the agent bundle (dist/agent-bundle/), the build directory
 * from the sources (probes/icmp/).
 */
export function defaultAddonPath(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    for (const name of addonFiles) {
      const file = join(dir, name);
      if (existsSync(file)) return file;
    }
    dir = dirname(dir);
  }
  return undefined;
}

/** Default payload: the programs' (ping, fping) 56 bytes, a 64-byte ICMP message. */
const defaultPayloadBytes = 56;

const unreach4 = [
  'NET',
  'HOST',
  'PROTOCOL',
  'PORT',
  'NEEDFRAG',
  'SRCFAIL',
  'NET_UNKNOWN',
  'HOST_UNKNOWN',
  'ISOLATED',
  'NET_PROHIB',
  'HOST_PROHIB',
  'TOSNET',
  'TOSHOST',
  'FILTER_PROHIB',
  'HOST_PRECEDENCE',
  'PRECEDENCE_CUTOFF',
];

/** The stable name of an ICMP type and code, as the other engines name them. */
export function icmpErrorName(family: 4 | 6, type: number, code: number): string {
  if (family === 4) {
    switch (type) {
      case 3:
        return unreach4[code] === undefined ? 'ICMP_UNREACH' : `ICMP_UNREACH_${unreach4[code]}`;
      case 4:
        return 'ICMP_SOURCEQUENCH';
      case 5:
        return 'ICMP_REDIRECT';
      case 11:
        return code === 0
          ? 'ICMP_TIMXCEED_INTRANS'
          : code === 1
            ? 'ICMP_TIMXCEED_REASS'
            : 'ICMP_TIMXCEED';
      case 12:
        return 'ICMP_PARAMPROB';
      default:
        return `ICMP_TYPE_${type}`;
    }
  }
  switch (type) {
    case 1:
      return `ICMP6_DST_UNREACH_${code}`;
    case 2:
      return 'ICMP6_PACKET_TOO_BIG';
    case 3:
      return `ICMP6_TIME_EXCEEDED_${code}`;
    case 4:
      return 'ICMP6_PARAM_PROB';
    default:
      return `ICMP6_TYPE_${type}`;
  }
}

let errnoNames: Map<number, string> | undefined;

function errnoName(errno: number): string {
  errnoNames ??= new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));
  return errnoNames.get(errno) ?? `ERRNO_${errno}`;
}

/**
 * Echo requests sent in one turn of the event loop, at most: the rest wait for the next turn,
 * after the loop has read the socket. The replies to a burst (confirmations of a partition's
 * many paths) queue in the kernel until then, and an unprivileged socket's queue
 * (net.core.rmem_max) holds a few hundred.
 */
const maxSendsPerTurn = 128;

/**
 * Who a packet's fate goes to: a one-shot run (here), or a scheduled target of the socket
 * loop (socket-loop.ts).
 */
export interface PacketSink {
  /** The address its packets go to. */
  readonly ip: string;
  /** Nothing more is wanted: its packets still waiting for their turn are not sent. */
  readonly closed: boolean;
  /** Packet `index` left with sequence number `seq`. */
  sent(index: number, seq: number): void;
  /** Packet `index` came back after `rttMs`. */
  reply(index: number, rttMs: number): void;
  /** An ICMP error about packet `index`; `decides`: it ends the packet (no reply will follow). */
  error(index: number, error: IcmpError, decides: boolean): void;
  /** Our own stack refused packet `index`. */
  refused(index: number, error: SendError): void;
}

/** One echo run in flight: its packets' fates, in send order. */
class Run implements PacketSink {
  readonly rttsMs: (number | null)[] = [];
  readonly icmpErrors: IcmpError[] = [];
  readonly sendErrors: SendError[] = [];
  /** Packets whose fate is known: a reply, an error that decides, or a refused send. */
  settled = 0;
  closed = false;
  constructor(
    readonly req: EchoRequest,
    readonly count: number,
    readonly done: (aborted: boolean) => void,
  ) {}

  get ip(): string {
    return this.req.ip;
  }

  /** Every packet is sent and settled: nothing more to wait for. */
  get complete(): boolean {
    return this.rttsMs.length === this.count && this.settled === this.rttsMs.length;
  }

  sent(): void {}

  reply(index: number, rttMs: number): void {
    this.rttsMs[index] = rttMs;
    this.settle();
  }

  error(_index: number, error: IcmpError, decides: boolean): void {
    this.icmpErrors.push(error);
    if (decides) this.settle();
  }

  refused(_index: number, error: SendError): void {
    this.sendErrors.push(error);
    this.settle();
  }

  private settle(): void {
    this.settled++;
    if (this.complete) this.done(false);
  }
}

interface Pending {
  readonly sink: PacketSink;
  readonly index: number;
  readonly sentAtMs: number;
}

/** One open socket: a family, Don't Fragment or not, and the packets in flight on it. */
export class EchoSocket {
  private readonly pending = new Map<number, Pending>();
  private nextSeq: number;
  readonly socket: NativeSocket;

  constructor(
    private readonly addon: IcmpAddon,
    readonly family: 4 | 6,
    dontFragment: boolean,
  ) {
    this.socket = addon.open(family, dontFragment, (events) => this.onEvents(events));
    this.nextSeq = Math.floor(Math.random() * 0x10000);
  }

  /** Packets sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** A sequence number no packet in flight carries, or undefined when all 65,536 are. */
  private takeSeq(): number | undefined {
    for (let i = 0; i < 0x10000; i++) {
      const seq = this.nextSeq;
      this.nextSeq = (this.nextSeq + 1) & 0xffff;
      if (!this.pending.has(seq)) return seq;
    }
    return undefined;
  }

  /**
   * Sends packet `index` of `sink`, in this turn of the loop or a later one
   * (`maxSendsPerTurn`); a refusal of our own stack goes to the sink at once.
   */
  send(sink: PacketSink, index: number, payloadBytes: number): void {
    if (this.queue.length === 0 && this.turnSends < maxSendsPerTurn) {
      this.turnSends++;
      this.nextTurn();
      this.transmit(sink, index, payloadBytes);
    } else {
      this.queue.push({ sink, index, payloadBytes });
      this.nextTurn();
    }
  }

  private readonly queue: { sink: PacketSink; index: number; payloadBytes: number }[] = [];
  private turnSends = 0;
  private turnArmed = false;

  /** At the next turn of the loop (after it has read the socket): a new count, the queue's next sends. */
  private nextTurn(): void {
    if (this.turnArmed) return;
    this.turnArmed = true;
    setImmediate(() => {
      this.turnArmed = false;
      this.turnSends = 0;
      while (this.queue.length > 0 && this.turnSends < maxSendsPerTurn) {
        const { sink, index, payloadBytes } = this.queue.shift()!;
        if (sink.closed) continue;
        this.turnSends++;
        this.transmit(sink, index, payloadBytes);
      }
      if (this.queue.length > 0 || this.turnSends > 0) this.nextTurn();
    }).unref();
  }

  private transmit(sink: PacketSink, index: number, payloadBytes: number): void {
    const seq = this.takeSeq();
    if (seq === undefined) {
      sink.refused(index, { code: 'ENOBUFS', text: 'every ICMP sequence number is in flight' });
      return;
    }
    try {
      const sentAtMs = this.addon.send(this.socket.handle, sink.ip, seq, payloadBytes);
      this.pending.set(seq, { sink, index, sentAtMs });
      sink.sent(index, seq);
    } catch (err) {
      const { code, mtu } = err as { code?: unknown; mtu?: unknown };
      sink.refused(index, {
        code: typeof code === 'string' ? code : 'EIO',
        ...(typeof mtu === 'number' && mtu > 0 ? { mtu } : {}),
        text: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /** Forgets one packet: its answer, if one comes, is too late. */
  drop(seq: number): void {
    this.pending.delete(seq);
  }

  /** Forgets a sink's packets still in flight. */
  forget(sink: PacketSink): void {
    for (const [seq, p] of this.pending) if (p.sink === sink) this.pending.delete(seq);
  }

  private onEvents(events: readonly NativeEvent[]): void {
    for (const e of events) {
      const p = this.pending.get(e.seq);
      if (p === undefined) continue;
      const { sink } = p;
      if (e.kind === 'reply') {
        this.pending.delete(e.seq);
        sink.reply(p.index, Math.max(0, Math.round((e.atMs - p.sentAtMs) * 1000) / 1000));
      } else if (e.kind === 'error') {
        const name = icmpErrorName(this.family, e.type, e.code);
        // A redirect or source quench is no verdict: the packet may still be answered.
        const decides = classifyIcmpError(this.family, e.type, e.code) !== undefined;
        if (decides) this.pending.delete(e.seq);
        sink.error(
          p.index,
          {
            family: this.family,
            type: e.type,
            code: e.code,
            name,
            from: e.from,
            ...(e.info > 0 ? { mtu: e.info } : {}),
            text: `${name} from ${e.from} for echo request ${e.seq} to ${sink.ip}`,
          },
          decides,
        );
      } else {
        this.pending.delete(e.seq);
        const code = errnoName(e.code);
        sink.refused(p.index, {
          code,
          ...(e.info > 0 ? { mtu: e.info } : {}),
          text: `${code} for echo request ${e.seq} to ${sink.ip}`,
        });
      }
    }
  }

  /** Closed: sends are refused; whoever holds it asks the engine for a new one. */
  closed = false;

  close(): void {
    this.closed = true;
    this.pending.clear();
    this.addon.close(this.socket.handle);
  }
}

/**
 * Echo requests from this process's own ICMP socket. `available()` is true when the addon is
 * built and a socket opens (a ping socket, or a raw one with CAP_NET_RAW).
 */
export class SocketEngine implements IcmpEngine {
  readonly name = 'socket' as const;
  private addon: IcmpAddon | undefined;
  private usable: boolean | undefined;
  private readonly sockets = new Map<string, EchoSocket>();
  private readonly runs = new Set<Run>();
  /** Why the engine is not usable, once `available()` said so. */
  unusableReason: string | undefined;

  /** @param addonPath the built addon; undefined: the package's own (`defaultAddonPath`). */
  constructor(private readonly addonPath: string | undefined = defaultAddonPath()) {}

  available(): Promise<boolean> {
    return Promise.resolve(this.usableNow());
  }

  /** `available()`, answered at once: the addon loads and an IPv4 socket opens (checked once). */
  usableNow(): boolean {
    if (this.usable === undefined) {
      try {
        this.socketFor(4, false);
        this.usable = true;
      } catch (err) {
        this.unusableReason = err instanceof Error ? err.message : String(err);
        this.usable = false;
      }
    }
    return this.usable;
  }

  /** Echo requests sent and not yet answered, over every socket (what a test checks for leaks). */
  get inFlight(): number {
    let n = 0;
    for (const socket of this.sockets.values()) n += socket.inFlight;
    return n;
  }

  /** Whether the IPv4 socket is a raw one (CAP_NET_RAW) rather than a ping socket. */
  get raw(): boolean | undefined {
    return this.sockets.get('4/')?.socket.raw;
  }

  private load(): IcmpAddon {
    if (this.addon !== undefined) return this.addon;
    if (this.addonPath === undefined || !existsSync(this.addonPath))
      throw new Error(
        `the ICMP socket addon is not built (${this.addonPath ?? addonFiles[0]}): run node scripts/build-native.mjs`,
      );
    this.addon = createRequire(import.meta.url)(this.addonPath) as IcmpAddon;
    return this.addon;
  }

  /** The open socket for a family and Don't Fragment (opened now if need be); throws when it cannot open. */
  socketFor(family: 4 | 6, dontFragment: boolean): EchoSocket {
    const key = `${family}/${dontFragment ? 'df' : ''}`;
    let socket = this.sockets.get(key);
    if (socket === undefined) {
      socket = new EchoSocket(this.load(), family, dontFragment);
      this.sockets.set(key, socket);
    }
    return socket;
  }

  echo(req: EchoRequest): Promise<EchoReport> {
    let socket: EchoSocket;
    try {
      socket = this.socketFor(req.family, req.dontFragment === true);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      return Promise.resolve({
        engine: 'socket',
        rttsMs: [],
        icmpErrors: [],
        aborted: false,
        failure: {
          code: typeof code === 'string' ? code : 'FL_ERR_ENGINE',
          message: err instanceof Error ? err.message : String(err),
        },
      });
    }
    const count = fitCount(req.count, req.intervalMs, req.timeoutMs);
    const payloadBytes = req.packetSize ?? defaultPayloadBytes;
    return new Promise<EchoReport>((resolve) => {
      let next: NodeJS.Timeout | undefined;
      let deadline: NodeJS.Timeout | undefined = undefined;
      const finish = (aborted: boolean): void => {
        if (!this.runs.delete(run)) return;
        run.closed = true;
        clearTimeout(next);
        clearTimeout(deadline);
        req.signal.removeEventListener('abort', onAbort);
        socket.forget(run);
        resolve({
          engine: 'socket',
          ip: req.ip,
          rttsMs: run.rttsMs,
          icmpErrors: run.icmpErrors,
          ...(run.sendErrors.length > 0 ? { sendErrors: run.sendErrors } : {}),
          aborted,
        });
      };
      const run = new Run(req, count, finish);
      const onAbort = (): void => finish(true);
      if (req.signal.aborted) {
        this.runs.add(run);
        finish(true);
        return;
      }
      this.runs.add(run);
      req.signal.addEventListener('abort', onAbort, { once: true });
      deadline = setTimeout(() => finish(false), Math.max(0, req.timeoutMs));
      const sendNext = (): void => {
        run.rttsMs.push(null);
        socket.send(run, run.rttsMs.length - 1, payloadBytes);
        if (!run.closed && run.rttsMs.length < count) next = setTimeout(sendNext, req.intervalMs);
      };
      sendNext();
    });
  }

  /** Closes the sockets; probes in flight answer as aborted. The engine stays usable. */
  async close(): Promise<void> {
    for (const run of [...this.runs]) run.done(true);
    for (const socket of this.sockets.values()) socket.close();
    this.sockets.clear();
    this.usable = undefined;
  }
}
