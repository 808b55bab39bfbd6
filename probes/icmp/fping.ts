import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { classifyIcmpError } from '../classify.js';
import type { EchoBurst, EchoReport, EchoRequest, IcmpEngine, IcmpError } from './engine.js';
import { findExecutable, fitCount, killAndWait, msArg, onLines, trackChild } from './process.js';

/*
 * The fping engine. fping 5.1 in count mode (`-C n`) prints one line per echo request and
 * target on stdout — "ip : [seq], 64 bytes, 0.045 ms (…)" or "ip : [seq], timed out (…)" —
 * flushed as it goes, and one line per ICMP error on stderr — "ICMP Host Unreachable from
 * X for ICMP Echo sent to ip". One fping serves many targets: echo requests that arrive
 * within a short window with the same count, interval, size and Don't Fragment join one
 * batch, which runs as one child process. Each caller resolves as soon as its own target's
 * lines are in. A packet fping could not send (EMSGSIZE with `-M`) gets no line at all in
 * count and loop mode: its entry stays null, like a lost one.
 *
 * Why batches and not one long-lived `fping -l` (loop mode): loop mode pings every target
 * every period forever, so a probe run every 10 s with 3 packets would cost ~16× the
 * packets; the target set changes restart it (losing in-flight packets of every other
 * target); and a probe could not tell its own packets from ones sent before it started.
 * A batch sends exactly each probe's packets, needs no restart logic, and ends by itself.
 */

const usable = new Map<string, Promise<string | undefined>>();

/**
 * Absolute path of a fping that can ping, or undefined. One echo to loopback proves fping is
 * installed *and* allowed to ping (cap_net_raw, root, or unprivileged ICMP sockets): without
 * a socket it exits 4, while `fping -v` would still exit 0. Exit 1 (no reply: a firewalled
 * loopback) still means it can ping. Checked once per name or path.
 */
export function usableFping(binPath: string): Promise<string | undefined> {
  let resolved = usable.get(binPath);
  if (resolved === undefined) {
    resolved = findExecutable(binPath).then((file) =>
      file === undefined
        ? undefined
        : new Promise<string | undefined>((resolve) => {
            const child = spawn(file, ['-c', '1', '-q', '-t', '100', '--', '127.0.0.1'], {
              stdio: 'ignore',
            });
            child.once('error', () => resolve(undefined));
            child.once('exit', (code) => resolve(code === 0 || code === 1 ? file : undefined));
          }),
    );
    usable.set(binPath, resolved);
  }
  return resolved;
}

// ---------------------------------------------------------------------------------------
// fping's output.

/** One line of fping output that concerns a target. */
export type FpingLine =
  | { readonly kind: 'reply'; readonly host: string; readonly seq: number; readonly rttMs: number }
  | { readonly kind: 'lost'; readonly host: string; readonly seq: number }
  | { readonly kind: 'icmp'; readonly host: string; readonly error: IcmpError };

type IcmpEntry = readonly [type: number, code: number | undefined, name: string];

// fping's own tables (icmp_unreach_str, icmp_type_str in fping.c): the text is a fixed token
// for an ICMP type and code, so reading it back is reading the type, not a free-form message.
const fpingIcmp4 = new Map<string, IcmpEntry>([
  ['ICMP Network Unreachable', [3, 0, 'ICMP_UNREACH_NET']],
  ['ICMP Host Unreachable', [3, 1, 'ICMP_UNREACH_HOST']],
  ['ICMP Protocol Unreachable', [3, 2, 'ICMP_UNREACH_PROTOCOL']],
  ['ICMP Port Unreachable', [3, 3, 'ICMP_UNREACH_PORT']],
  ['ICMP Unreachable (Fragmentation Needed)', [3, 4, 'ICMP_UNREACH_NEEDFRAG']],
  ['ICMP Unreachable (Source Route Failed)', [3, 5, 'ICMP_UNREACH_SRCFAIL']],
  ['ICMP Unreachable (Destination Network Unknown)', [3, 6, 'ICMP_UNREACH_NET_UNKNOWN']],
  ['ICMP Unreachable (Destination Host Unknown)', [3, 7, 'ICMP_UNREACH_HOST_UNKNOWN']],
  ['ICMP Unreachable (Source Host Isolated)', [3, 8, 'ICMP_UNREACH_ISOLATED']],
  ['ICMP Unreachable (Communication with Network Prohibited)', [3, 9, 'ICMP_UNREACH_NET_PROHIB']],
  ['ICMP Unreachable (Communication with Host Prohibited)', [3, 10, 'ICMP_UNREACH_HOST_PROHIB']],
  ['ICMP Unreachable (Network Unreachable For Type Of Service)', [3, 11, 'ICMP_UNREACH_TOSNET']],
  ['ICMP Unreachable (Host Unreachable For Type Of Service)', [3, 12, 'ICMP_UNREACH_TOSHOST']],
  [
    'ICMP Unreachable (Communication Administratively Prohibited)',
    [3, 13, 'ICMP_UNREACH_FILTER_PROHIB'],
  ],
  ['ICMP Unreachable (Host Precedence Violation)', [3, 14, 'ICMP_UNREACH_HOST_PRECEDENCE']],
  ['ICMP Unreachable (Precedence cutoff in effect)', [3, 15, 'ICMP_UNREACH_PRECEDENCE_CUTOFF']],
  ['ICMP Unreachable (Invalid Code)', [3, undefined, 'ICMP_UNREACH']],
  ['ICMP Source Quench', [4, undefined, 'ICMP_SOURCEQUENCH']],
  ['ICMP Redirect', [5, undefined, 'ICMP_REDIRECT']],
  ['ICMP Time Exceeded', [11, undefined, 'ICMP_TIMXCEED']],
  ['ICMP Parameter Problem', [12, undefined, 'ICMP_PARAMPROB']],
]);

// fping 5.1 ignores ICMPv6 errors; later versions print these (icmp6_*_str in fping.c).
const fpingIcmp6Types = new Map<
  string,
  readonly [type: number, name: string, codes: readonly string[]]
>([
  [
    'Destination Unreachable',
    [
      1,
      'ICMP6_DST_UNREACH',
      [
        'No route to destination',
        'Communication with destination administratively prohibited',
        'Beyond scope of source address',
        'Address unreachable',
        'Port unreachable',
        'Source address failed ingress/egress policy',
        'Reject route to destination',
        'Error in Source Routing Header',
        'Headers too long',
        'Error in P-Route',
      ],
    ],
  ],
  ['Packet Too Big', [2, 'ICMP6_PACKET_TOO_BIG', []]],
  [
    'Time Exceeded',
    [
      3,
      'ICMP6_TIME_EXCEEDED',
      ['Hop limit exceeded in transit', 'Fragment reassembly time exceeded'],
    ],
  ],
  ['Parameter Problem', [4, 'ICMP6_PARAM_PROB', []]],
]);

const replyRe = /^(\S+)\s+: \[(\d+)\], \d+ bytes, ([0-9.eE+-]+) ms\b/;
const lostRe = /^(\S+)\s+: \[(\d+)\], timed out\b/;
const icmp4Re = /^(.+) from (\S+) for ICMP Echo sent to (\S+)$/;
const icmp6Re = /^ICMPv6 (.+) from (\S+) for ICMPv6 Echo Request sent to (\S+)$/;
const icmp6DescRe = /^(?:Type (\d+) Code (\d+)|([A-Za-z ]+?)(?: \((?:Code (\d+)|(.+))\))?)$/;

function icmp6Error(desc: string, from: string, text: string): IcmpError | undefined {
  const m = icmp6DescRe.exec(desc);
  if (m === null) return undefined;
  if (m[1] !== undefined) {
    return {
      family: 6,
      type: Number(m[1]),
      code: Number(m[2]),
      name: `ICMP6_TYPE_${m[1]}`,
      from,
      text,
    };
  }
  const entry = fpingIcmp6Types.get(m[3] ?? '');
  if (entry === undefined) return undefined;
  const [type, name, codes] = entry;
  const index = m[4] !== undefined ? Number(m[4]) : m[5] !== undefined ? codes.indexOf(m[5]) : -1;
  return {
    family: 6,
    type,
    ...(index >= 0 ? { code: index } : {}),
    name: index >= 0 && codes.length > 0 ? `${name}_${index}` : name,
    from,
    text,
  };
}

/** Parses one line of fping output (stdout or stderr); undefined for anything else. */
export function parseFpingLine(line: string): FpingLine | undefined {
  let m = replyRe.exec(line);
  if (m !== null) {
    const rttMs = Number(m[3]);
    return Number.isFinite(rttMs)
      ? { kind: 'reply', host: m[1] ?? '', seq: Number(m[2]), rttMs }
      : undefined;
  }
  m = lostRe.exec(line);
  if (m !== null) return { kind: 'lost', host: m[1] ?? '', seq: Number(m[2]) };
  m = icmp6Re.exec(line);
  if (m !== null) {
    const error = icmp6Error(m[1] ?? '', m[2] ?? '', line);
    return error === undefined ? undefined : { kind: 'icmp', host: m[3] ?? '', error };
  }
  m = icmp4Re.exec(line);
  if (m !== null) {
    const entry = fpingIcmp4.get(m[1] ?? '');
    if (entry === undefined) return undefined;
    const [type, code, name] = entry;
    const error: IcmpError = {
      family: 4,
      type,
      ...(code === undefined ? {} : { code }),
      name,
      from: m[2] ?? '',
      text: line,
    };
    return { kind: 'icmp', host: m[3] ?? '', error };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// The engine.

/** One caller waiting for its target's lines. */
interface Waiter {
  readonly count: number;
  /** Its first packet's sequence number: 0, or its place in a burst (see `Batch.burst`). */
  readonly seqBase: number;
  /** When it answers at the latest; a held waiter's is set when its batch starts (`arm`). */
  deadlineAt: number;
  /** Starts the waiter's deadline `timeoutMs` from `at` (once: at the request, or a held batch's start). */
  arm(at: number): void;
  /** Per echo request: RTT, null (lost), or undefined (not known yet). */
  readonly rtts: (number | null | undefined)[];
  readonly errors: IcmpError[];
  settled: number;
  replies: number;
  /** ICMP errors that mean an echo was lost (unreachable, time exceeded), not a redirect. */
  lostToErrors: number;
  finish(
    how: 'complete' | 'deadline' | 'abort' | 'exit',
    failure?: { code: string; message: string },
  ): void;
}

/** Echo requests sharing count, interval, size and Don't Fragment, run by one fping. */
interface Batch {
  readonly key: string;
  /** Held requests (`EchoRequest.holdMs`): the count of such batches running is capped. */
  readonly held: boolean;
  /**
   * A batch of confirmation bursts (`EchoRequest.burst`): each address gets `of` packets
   * `spacingMs` apart, packet i for its re-probe i + 1, which claims it when it comes.
   */
  readonly burst?: { readonly of: number; readonly spacingMs: number };
  /** Per address of a burst batch: the next packet a re-probe may claim. */
  readonly claims: Map<string, number>;
  /** Lines of burst packets not claimed yet (a re-probe a little late), per address. */
  readonly early: Map<string, FpingLine[]>;
  startedAt?: number;
  readonly count: number;
  readonly intervalMs: number;
  readonly packetSize: number | undefined;
  readonly dontFragment: boolean;
  /** Waiters by target IP (exactly as passed to fping, which prints it back as given). */
  readonly targets: Map<string, Set<Waiter>>;
  cancelStart?: () => void;
  child?: ChildProcess;
  stderr: string;
}

/** Drives fping: one child process per batch of concurrent echo requests. */
export class FpingEngine implements IcmpEngine {
  readonly name = 'fping' as const;
  /** The fping binary: a name searched in PATH and sbin, or an absolute path. Swappable (tests force the fallback). */
  binPath: string;
  /**
   * While echo requests keep coming (the last one less than this ago), a new batch waits this
   * long for others to join. An idle engine starts at once (next turn of the event loop, so
   * requests made in the same tick still share one fping): a one-shot probe never waits.
   */
  batchWindowMs: number;
  /** Most targets one fping serves; more start another batch. */
  maxBatchTargets: number;
  /**
   * Held requests (confirmations, echo checks) start a process at once while fewer than this
   * many of theirs run; beyond that they wait — up to their `holdMs` — for one to end, and
   * then all share the next. Three: a path's confirmation burst (three re-probes by default)
   * is never held; a partition's many bursts share a few processes instead of one each.
   */
  maxHeldProcesses: number;
  // fping's start (exec, sockets, first send), kept out of the per-packet wait.
  private readonly startupMs = 30;
  private readonly pending = new Map<string, Batch>();
  private readonly running = new Set<Batch>();
  private lastRequestAt = -Infinity;
  /** Counters since construction: echo requests taken and fping processes started for them. */
  readonly stats = { echoes: 0, processes: 0 };
  /** The most processes that ran at once for held requests, since construction. */
  heldPeak = 0;

  constructor(
    opts: {
      binPath?: string;
      batchWindowMs?: number;
      maxBatchTargets?: number;
      maxHeldProcesses?: number;
    } = {},
  ) {
    this.binPath = opts.binPath ?? 'fping';
    this.batchWindowMs = opts.batchWindowMs ?? 100;
    this.maxBatchTargets = opts.maxBatchTargets ?? 1000;
    this.maxHeldProcesses = opts.maxHeldProcesses ?? 3;
  }

  /** PIDs of the fping processes running now. */
  pids(): number[] {
    return [...this.running].flatMap((b) => (b.child?.pid === undefined ? [] : [b.child.pid]));
  }

  available(): Promise<boolean> {
    return this.resolveBinary().then((p) => p !== undefined);
  }

  private resolveBinary(): Promise<string | undefined> {
    return usableFping(this.binPath);
  }

  async echo(req: EchoRequest): Promise<EchoReport> {
    const binary = await this.resolveBinary();
    if (binary === undefined) {
      return {
        engine: 'fping',
        rttsMs: [],
        icmpErrors: [],
        aborted: false,
        failure: { code: 'FL_ERR_ENGINE', message: `fping not usable (${this.binPath})` },
      };
    }
    this.stats.echoes++;
    const holdMs = Math.max(0, req.holdMs ?? 0);
    const held = holdMs > 0;
    // A held request's wait starts when its batch does: no batch window comes off its budget.
    const count = fitCount(
      req.count,
      req.intervalMs,
      req.timeoutMs - (held ? 0 : this.batchWindowMs) - this.startupMs,
    );
    const wanted = req.burst;
    const burst =
      held && count === 1 && wanted !== undefined && wanted.of > 1 && wanted.index >= 1
        ? wanted
        : undefined;
    return new Promise<EchoReport>((resolve) => {
      const dontFragment = req.dontFragment === true;
      const shape = `${req.packetSize ?? ''}/${dontFragment ? 'df' : ''}`;
      const burstKey =
        burst === undefined ? undefined : `held/burst/${burst.of}/${burst.spacingMs}/${shape}`;
      const now = performance.now();
      // A later re-probe of a burst takes its packet from the first one's batch, if it can.
      const claimed =
        burst !== undefined && burst.index > 1
          ? this.claim(burstKey!, req.ip, burst, now)
          : undefined;
      const key =
        claimed !== undefined
          ? claimed.key
          : burst !== undefined && burst.index === 1
            ? burstKey!
            : `${held ? 'held/' : ''}${count}/${req.intervalMs}/${shape}`;
      const busy = now - this.lastRequestAt < this.batchWindowMs;
      this.lastRequestAt = now;
      let batch = claimed ?? this.pending.get(key);
      // Two held requests for one address (re-probes of a burst) each get packets of their
      // own: the waiting batch leaves now, and this one opens the next.
      if (claimed === undefined && batch !== undefined && held && batch.targets.has(req.ip)) {
        this.start(batch, binary);
        batch = undefined;
      }
      if (batch === undefined) {
        const inBurst = burst !== undefined && burst.index === 1 ? burst : undefined;
        const created: Batch = {
          key,
          held,
          ...(inBurst === undefined
            ? { count, intervalMs: req.intervalMs }
            : {
                count: inBurst.of,
                intervalMs: inBurst.spacingMs,
                burst: { of: inBurst.of, spacingMs: inBurst.spacingMs },
              }),
          packetSize: req.packetSize,
          dontFragment,
          targets: new Map(),
          claims: new Map(),
          early: new Map(),
          stderr: '',
        };
        if (held && this.heldRunning() >= this.maxHeldProcesses) {
          // Started by the first held batch to end, or when the hold is up.
          const timer = setTimeout(() => this.start(created, binary), holdMs);
          created.cancelStart = () => clearTimeout(timer);
        } else if (busy && !held) {
          const timer = setTimeout(() => this.start(created, binary), this.batchWindowMs);
          created.cancelStart = () => clearTimeout(timer);
        } else {
          const immediate = setImmediate(() => this.start(created, binary));
          created.cancelStart = () => clearImmediate(immediate);
        }
        this.pending.set(key, created);
        batch = created;
      }
      const owner = batch;
      // Its packet in a burst batch: the first (a new burst, or a plain request) or the claimed one.
      const seqBase = claimed !== undefined ? burst!.index - 1 : owner.burst !== undefined ? 0 : 0;
      if (owner.burst !== undefined) owner.claims.set(req.ip, seqBase + 1);
      const packetOffsetMs = owner.burst === undefined ? 0 : seqBase * owner.burst.spacingMs;
      const onAbort = (): void => waiter.finish('abort');
      let deadline: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        count,
        seqBase,
        deadlineAt: Infinity,
        arm: (at) => {
          if (deadline !== undefined) return;
          // A burst's later packet leaves `packetOffsetMs` after the batch: its wait starts then.
          waiter.deadlineAt = at + packetOffsetMs + req.timeoutMs;
          deadline = setTimeout(
            () => waiter.finish('deadline'),
            Math.max(0, waiter.deadlineAt - performance.now()),
          );
        },
        rtts: new Array<number | null | undefined>(count).fill(undefined),
        errors: [],
        settled: 0,
        replies: 0,
        lostToErrors: 0,
        finish: (how, failure) => {
          const set = owner.targets.get(req.ip);
          if (set === undefined || !set.delete(waiter)) return;
          if (set.size === 0) owner.targets.delete(req.ip);
          clearTimeout(deadline);
          req.signal.removeEventListener('abort', onAbort);
          let rtts = waiter.rtts;
          if (how === 'abort') {
            // Only what was decided before the caller gave up; later packets were maybe never sent.
            let last = -1;
            rtts.forEach((r, i) => (last = r === undefined ? last : i));
            rtts = rtts.slice(0, last + 1);
          }
          resolve({
            engine: 'fping',
            rttsMs: rtts.map((r) => r ?? null),
            icmpErrors: waiter.errors,
            aborted: how === 'abort',
            ...(failure !== undefined && waiter.settled === 0 ? { failure } : {}),
          });
          if (owner.targets.size === 0) this.retire(owner);
        },
      };
      if (!held) waiter.arm(now);
      else if (owner.startedAt !== undefined) waiter.arm(owner.startedAt);
      let set = batch.targets.get(req.ip);
      if (set === undefined) batch.targets.set(req.ip, (set = new Set()));
      set.add(waiter);
      if (claimed !== undefined) {
        // Lines of its packet that came in before it did.
        const early = owner.early.get(req.ip);
        owner.early.delete(req.ip);
        for (const line of early ?? []) this.deliver(owner, line);
      }
      if (req.signal.aborted) {
        waiter.finish('abort');
        return;
      }
      req.signal.addEventListener('abort', onAbort, { once: true });
      // fping numbers its packets in a 16-bit space held for 10 s: keep a batch well inside it.
      if (batch.targets.size >= Math.min(this.maxBatchTargets, Math.floor(60_000 / batch.count)))
        this.start(batch, binary);
    });
  }

  /**
   * The burst batch (pending, or running with the packet not long gone) whose packet
   * `burst.index - 1` for `ip` no re-probe has claimed yet, or undefined.
   */
  private claim(key: string, ip: string, burst: EchoBurst, now: number): Batch | undefined {
    const seq = burst.index - 1;
    for (const b of [...this.pending.values(), ...this.running]) {
      if (b.key !== key || b.burst === undefined || seq >= b.burst.of) continue;
      const next = b.claims.get(ip);
      if (next === undefined || next > seq) continue;
      // Left more than a spacing ago (this re-probe is very late): a packet of its own instead.
      if (
        b.startedAt !== undefined &&
        b.startedAt + seq * b.burst.spacingMs < now - b.burst.spacingMs
      )
        continue;
      return b;
    }
    return undefined;
  }

  /** Processes running now for held requests. */
  private heldRunning(): number {
    let n = 0;
    for (const b of this.running) if (b.held) n++;
    return n;
  }

  /** A held batch ended: the held ones waiting start while there is room. */
  private startHeld(binary: string): void {
    for (const b of [...this.pending.values()])
      if (b.held && this.heldRunning() < this.maxHeldProcesses) this.start(b, binary);
  }

  private start(batch: Batch, binary: string): void {
    batch.cancelStart?.();
    if (this.pending.get(batch.key) === batch) this.pending.delete(batch.key);
    if (batch.targets.size === 0 || batch.child !== undefined) return;
    batch.startedAt = performance.now();
    if (batch.held)
      for (const set of batch.targets.values()) for (const w of set) w.arm(batch.startedAt);
    const ips = [...batch.targets.keys()];
    // Spread each round over a quarter of the interval: fping's default 10 ms between any two
    // packets would take 2 s for 200 targets, and fewer wake-ups cost fping less CPU.
    const spacingMs = Math.max(0.1, Math.min(10, batch.intervalMs / ips.length / 4));
    // The last target's first packet leaves (n-1)·spacing after the first: its wait, and the
    // wait of every packet, must still end before the most urgent caller's deadline.
    const now = performance.now();
    let leftMs = Infinity;
    for (const set of batch.targets.values())
      for (const w of set) leftMs = Math.min(leftMs, w.deadlineAt - now);
    const waitMs = Math.max(
      10,
      Math.floor(
        leftMs -
          this.startupMs -
          spacingMs * (ips.length - 1) -
          // Each packet of a burst is one re-probe's, with a wait of its own.
          (batch.burst === undefined ? (batch.count - 1) * batch.intervalMs : 0),
      ),
    );
    const args = [
      '-C',
      String(batch.count),
      '-p',
      msArg(batch.intervalMs),
      '-t',
      msArg(waitMs),
      '-i',
      msArg(spacingMs),
    ];
    if (batch.packetSize !== undefined) args.push('-b', String(batch.packetSize));
    if (batch.dontFragment) args.push('-M');
    args.push('--', ...ips);

    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.stats.processes++;
    batch.child = child;
    this.running.add(batch);
    if (batch.held) this.heldPeak = Math.max(this.heldPeak, this.heldRunning());
    trackChild(child);
    onLines(child.stdout, (line) => this.onLine(batch, line));
    onLines(child.stderr, (line) => {
      if (!this.onLine(batch, line) && batch.stderr.length < 2048) batch.stderr += line + '\n';
    });
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    child.once('close', (code, signal) => {
      this.running.delete(batch);
      // Exit 0/1: all/some targets answered. 2+: bad address, bad arguments, no socket.
      const broken =
        spawnError !== undefined ||
        (code !== null && code >= 2) ||
        (signal !== null && batch.targets.size > 0);
      const failure = broken
        ? {
            code: 'FL_ERR_ENGINE',
            message:
              spawnError?.message ??
              `fping exited with ${code ?? signal ?? '?'}: ${batch.stderr.trim() || 'no output'}`,
          }
        : undefined;
      for (const set of [...batch.targets.values()])
        for (const w of [...set]) w.finish('exit', failure);
      if (batch.held) this.startHeld(binary);
    });
  }

  private onLine(batch: Batch, line: string): boolean {
    const parsed = parseFpingLine(line);
    if (parsed === undefined) return false;
    this.deliver(batch, parsed);
    return true;
  }

  private deliver(batch: Batch, parsed: FpingLine): void {
    const set = batch.targets.get(parsed.host);
    if (batch.burst !== undefined) {
      // A line no waiter takes may be a packet a re-probe has yet to claim: kept for it.
      const seq = parsed.kind === 'icmp' ? undefined : parsed.seq;
      const taken =
        set !== undefined &&
        [...set].some((w) =>
          seq === undefined
            ? this.sentFor(batch, w)
            : seq >= w.seqBase && seq < w.seqBase + w.count,
        );
      const next = batch.claims.get(parsed.host);
      if (!taken && next !== undefined && (seq === undefined || seq >= next)) {
        let early = batch.early.get(parsed.host);
        if (early === undefined) batch.early.set(parsed.host, (early = []));
        if (early.length < 16) early.push(parsed);
        return;
      }
    }
    if (set === undefined) return;
    for (const w of [...set]) {
      if (parsed.kind === 'icmp') {
        // In a burst, an ICMP error (it names no sequence) is for a packet already sent.
        if (batch.burst !== undefined && !this.sentFor(batch, w)) continue;
        w.errors.push(parsed.error);
        const { family, type, code } = parsed.error;
        if (classifyIcmpError(family, type, code) === undefined) continue;
        w.lostToErrors++;
        // fping's error line names no sequence number, but each lost echo gets one error:
        // once replies and errors account for every packet, nothing more can come back.
        if (w.replies + w.lostToErrors >= w.count) w.finish('complete');
        continue;
      }
      const i = parsed.seq - w.seqBase;
      if (i < 0 || i >= w.count || w.rtts[i] !== undefined) continue;
      w.rtts[i] = parsed.kind === 'reply' ? parsed.rttMs : null;
      w.settled++;
      if (parsed.kind === 'reply') w.replies++;
      if (w.settled >= w.count) w.finish('complete');
    }
  }

  /** Whether a burst waiter's packet has left (its batch started that long ago). */
  private sentFor(batch: Batch, w: Waiter): boolean {
    return (
      batch.startedAt !== undefined &&
      performance.now() >= batch.startedAt + w.seqBase * (batch.burst?.spacingMs ?? 0)
    );
  }

  // A running batch whose callers have all gone has nothing left to say — but a burst
  // batch's later packets, until their re-probes could still claim them.
  private retire(batch: Batch): void {
    if (batch.child !== undefined && batch.burst !== undefined && batch.startedAt !== undefined) {
      const { of, spacingMs } = batch.burst;
      const unclaimed = [...batch.claims.values()].some((next) => next < of);
      const lastClaimAt = batch.startedAt + of * spacingMs;
      const waitMs = lastClaimAt - performance.now();
      if (unclaimed && waitMs > 0) {
        setTimeout(() => {
          if (batch.targets.size === 0) this.retire(batch);
        }, waitMs).unref();
        return;
      }
    }
    if (batch.child !== undefined) {
      void killAndWait(batch.child);
    } else {
      batch.cancelStart?.();
      if (this.pending.get(batch.key) === batch) this.pending.delete(batch.key);
    }
  }

  async close(): Promise<void> {
    const batches = [...this.pending.values(), ...this.running];
    const children = batches.flatMap((b) => (b.child === undefined ? [] : [b.child]));
    for (const b of batches)
      for (const set of [...b.targets.values()]) for (const w of [...set]) w.finish('abort');
    this.pending.clear();
    await Promise.all(children.map((c) => killAndWait(c)));
  }
}
