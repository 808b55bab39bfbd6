import { spawn, type ChildProcess } from 'node:child_process';
import { classifyIcmpError } from '../classify.js';
import type { EchoReport, EchoRequest, IcmpEngine, IcmpError, SendError } from './engine.js';
import { findExecutable, fitCount, killAndWait, msArg, onLines, trackChild } from './process.js';

/*
 * The fallback engine: iputils `ping`, one process per probe (about 2–3 CPU-ms each, where
 * fping amortises one process over a batch). Driven directly rather than through the `ping`
 * npm package, which wraps the same binary but hides the per-packet lines (sequence numbers,
 * ICMP errors) and cannot be aborted.
 */

/**
 * One line of iputils ping output that concerns an echo request (icmp_seq counts from 1), or
 * (on stderr, without a sequence number) a packet the local stack refused to send.
 */
export type PingLine =
  | { readonly kind: 'reply'; readonly seq: number; readonly rttMs: number }
  | { readonly kind: 'icmp'; readonly seq: number; readonly error: IcmpError }
  | { readonly kind: 'send'; readonly error: SendError };

type IcmpEntry = readonly [type: number, code: number | undefined, name: string];

// iputils' own strings (pr_icmph in ping.c, print_icmp in ping6_common.c): fixed tokens for
// an ICMP type and code. Entries ending in ':' are prefixes followed by a number.
const icmp4 = new Map<string, IcmpEntry>([
  ['Destination Net Unreachable', [3, 0, 'ICMP_UNREACH_NET']],
  ['Destination Host Unreachable', [3, 1, 'ICMP_UNREACH_HOST']],
  ['Destination Protocol Unreachable', [3, 2, 'ICMP_UNREACH_PROTOCOL']],
  ['Destination Port Unreachable', [3, 3, 'ICMP_UNREACH_PORT']],
  ['Frag needed and DF set', [3, 4, 'ICMP_UNREACH_NEEDFRAG']],
  ['Source Route Failed', [3, 5, 'ICMP_UNREACH_SRCFAIL']],
  ['Destination Net Unknown', [3, 6, 'ICMP_UNREACH_NET_UNKNOWN']],
  ['Destination Host Unknown', [3, 7, 'ICMP_UNREACH_HOST_UNKNOWN']],
  ['Source Host Isolated', [3, 8, 'ICMP_UNREACH_ISOLATED']],
  ['Destination Net Prohibited', [3, 9, 'ICMP_UNREACH_NET_PROHIB']],
  ['Destination Host Prohibited', [3, 10, 'ICMP_UNREACH_HOST_PROHIB']],
  ['Destination Net Unreachable for Type of Service', [3, 11, 'ICMP_UNREACH_TOSNET']],
  ['Destination Host Unreachable for Type of Service', [3, 12, 'ICMP_UNREACH_TOSHOST']],
  ['Packet filtered', [3, 13, 'ICMP_UNREACH_FILTER_PROHIB']],
  ['Precedence Violation', [3, 14, 'ICMP_UNREACH_HOST_PRECEDENCE']],
  ['Precedence Cutoff', [3, 15, 'ICMP_UNREACH_PRECEDENCE_CUTOFF']],
  ['Dest Unreachable, Bad Code', [3, undefined, 'ICMP_UNREACH']],
  ['Source Quench', [4, 0, 'ICMP_SOURCEQUENCH']],
  ['Redirect Network', [5, 0, 'ICMP_REDIRECT_NET']],
  ['Redirect Host', [5, 1, 'ICMP_REDIRECT_HOST']],
  ['Redirect Type of Service and Network', [5, 2, 'ICMP_REDIRECT_TOSNET']],
  ['Redirect Type of Service and Host', [5, 3, 'ICMP_REDIRECT_TOSHOST']],
  ['Redirect, Bad Code', [5, undefined, 'ICMP_REDIRECT']],
  ['Time to live exceeded', [11, 0, 'ICMP_TIMXCEED_INTRANS']],
  ['Frag reassembly time exceeded', [11, 1, 'ICMP_TIMXCEED_REASS']],
  ['Time exceeded, Bad Code', [11, undefined, 'ICMP_TIMXCEED']],
  ['Parameter problem', [12, undefined, 'ICMP_PARAMPROB']],
]);

const icmp6Types = new Map<string, readonly [type: number, name: string, codes: readonly string[]]>(
  [
    [
      'Destination unreachable',
      [
        1,
        'ICMP6_DST_UNREACH',
        [
          'No route',
          'Administratively prohibited',
          'Beyond scope of source address',
          'Address unreachable',
          'Port unreachable',
          'Source address failed ingress/egress policy',
          'Reject route to destination',
        ],
      ],
    ],
    ['Packet too big', [2, 'ICMP6_PACKET_TOO_BIG', []]],
    ['Time exceeded', [3, 'ICMP6_TIME_EXCEEDED', ['Hop limit', 'Defragmentation failure']]],
    ['Parameter problem', [4, 'ICMP6_PARAM_PROB', []]],
  ],
);

const replyRe = /^\d+ bytes from \S+ icmp_seq=(\d+) .*\btime=([0-9.]+) ms/;
const errorRe = /^From (\S+?):? icmp_seq=(\d+) (.+)$/;
// "Frag needed and DF set (mtu = 1400)", "Packet too big: mtu=1280": the next-hop MTU.
const nextHopMtuRe = /\bmtu ?= ?(\d+)/;
// iputils' one fixed format for a local EMSGSIZE (receive_error_msg in ping.c and
// ping6_common.c), after the program's name: "ping: local error: message too long, mtu=1000"
// (IPv6: "mtu: 1000"). Other local errors print strerror text and are left alone.
const emsgsizeRe = /^\S*: local error: message too long, mtu(?:=|: )(\d+)$/;

/** The next-hop MTU of a "fragmentation needed" (IPv4 3/4) or "packet too big" (ICMPv6 2). */
function nextHopMtu(family: 4 | 6, type: number, code: number | undefined, desc: string) {
  const carriesMtu = family === 4 ? type === 3 && code === 4 : type === 2;
  const m = carriesMtu ? nextHopMtuRe.exec(desc) : null;
  return m === null ? {} : { mtu: Number(m[1]) };
}

function icmpError(family: 4 | 6, desc: string, from: string, text: string): IcmpError | undefined {
  if (family === 4) {
    // "Frag needed and DF set (mtu = 1400)", "Parameter problem: pointer = 20", "…, Bad Code: 99",
    // "Redirect Host(New nexthop: 10.0.0.1)": the token ends at the first ':' or '('.
    const token = (desc.split(/[:(]/)[0] ?? '').trim();
    const entry = icmp4.get(token);
    if (entry === undefined) return undefined;
    const [type, code, name] = entry;
    return {
      family,
      type,
      ...(code === undefined ? {} : { code }),
      name,
      from,
      ...nextHopMtu(family, type, code, desc),
      text,
    };
  }
  const colon = desc.indexOf(':');
  const head = colon < 0 ? desc : desc.slice(0, colon);
  const entry = icmp6Types.get(head);
  if (entry === undefined) return undefined;
  const [type, name, codes] = entry;
  const index = colon < 0 ? -1 : codes.indexOf(desc.slice(colon + 1).trim());
  return {
    family,
    type,
    ...(index >= 0 ? { code: index } : {}),
    name: index >= 0 ? `${name}_${index}` : name,
    from,
    ...nextHopMtu(family, type, index >= 0 ? index : undefined, desc),
    text,
  };
}

/** Parses one line of iputils ping output; undefined for anything else. */
export function parsePingLine(line: string, family: 4 | 6): PingLine | undefined {
  let m = replyRe.exec(line);
  if (m !== null) {
    const rttMs = Number(m[2]);
    return Number.isFinite(rttMs) ? { kind: 'reply', seq: Number(m[1]), rttMs } : undefined;
  }
  m = errorRe.exec(line);
  if (m !== null) {
    const error = icmpError(family, m[3] ?? '', m[1] ?? '', line);
    return error === undefined ? undefined : { kind: 'icmp', seq: Number(m[2]), error };
  }
  m = emsgsizeRe.exec(line);
  if (m !== null)
    return { kind: 'send', error: { code: 'EMSGSIZE', mtu: Number(m[1]), text: line } };
  return undefined;
}

/** Drives iputils ping: one child process per echo request. */
export class PingEngine implements IcmpEngine {
  readonly name = 'ping' as const;
  /** The ping binary: a name searched in PATH and sbin, or an absolute path. Swappable. */
  binPath: string;
  private readonly startupMs = 40;
  private readonly running = new Map<ChildProcess, () => void>();
  private checked?: { binPath: string; resolved: Promise<string | undefined> };

  constructor(opts: { binPath?: string } = {}) {
    this.binPath = opts.binPath ?? 'ping';
  }

  /** PIDs of the ping processes running now. */
  pids(): number[] {
    return [...this.running.keys()].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
  }

  private resolveBinary(): Promise<string | undefined> {
    if (this.checked?.binPath !== this.binPath)
      this.checked = { binPath: this.binPath, resolved: findExecutable(this.binPath) };
    return this.checked.resolved;
  }

  available(): Promise<boolean> {
    return this.resolveBinary().then((p) => p !== undefined);
  }

  async echo(req: EchoRequest): Promise<EchoReport> {
    const binary = await this.resolveBinary();
    if (binary === undefined) {
      return {
        engine: 'ping',
        rttsMs: [],
        icmpErrors: [],
        aborted: false,
        failure: { code: 'FL_ERR_ENGINE', message: `ping not found (${this.binPath})` },
      };
    }
    const budgetMs = req.timeoutMs - this.startupMs;
    const count = fitCount(req.count, req.intervalMs, budgetMs);
    const waitMs = Math.max(10, budgetMs - (count - 1) * req.intervalMs);
    const args = [
      '-n',
      `-${req.family}`,
      '-c',
      String(count),
      '-i',
      msArg(req.intervalMs / 1000),
      '-W',
      msArg(waitMs / 1000),
    ];
    if (req.packetSize !== undefined) args.push('-s', String(req.packetSize));
    if (req.dontFragment === true) args.push('-M', 'do');
    args.push('--', req.ip);

    return new Promise<EchoReport>((resolve) => {
      const rtts = new Array<number | null | undefined>(count).fill(undefined);
      const errors: IcmpError[] = [];
      const sendErrors: SendError[] = [];
      let settled = 0;
      let stderr = '';
      let done = false;
      const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      trackChild(child);

      const finish = (
        how: 'complete' | 'deadline' | 'abort' | 'exit',
        failure?: { code: string; message: string },
      ): void => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        req.signal.removeEventListener('abort', onAbort);
        this.running.delete(child);
        void killAndWait(child);
        let list = rtts;
        if (how === 'abort') {
          let last = -1;
          list.forEach((r, i) => (last = r === undefined ? last : i));
          list = list.slice(0, last + 1);
        }
        resolve({
          engine: 'ping',
          rttsMs: list.map((r) => r ?? null),
          icmpErrors: errors,
          ...(sendErrors.length > 0 ? { sendErrors } : {}),
          aborted: how === 'abort',
          ...(failure !== undefined && settled === 0 ? { failure } : {}),
        });
      };
      const onAbort = (): void => finish('abort');
      const deadline = setTimeout(() => finish('deadline'), req.timeoutMs);
      this.running.set(child, onAbort);

      onLines(child.stdout, (line) => {
        const parsed = parsePingLine(line, req.family);
        if (parsed === undefined || parsed.kind === 'send') return;
        const i = parsed.seq - 1;
        if (i < 0 || i >= count || rtts[i] !== undefined) return;
        if (parsed.kind === 'icmp') {
          errors.push(parsed.error);
          // A redirect comes with a packet that was forwarded and may still be answered.
          const { family, type, code } = parsed.error;
          if (classifyIcmpError(family, type, code) === undefined) return;
        }
        rtts[i] = parsed.kind === 'reply' ? parsed.rttMs : null;
        settled++;
        if (settled >= count) finish('complete');
      });
      onLines(child.stderr, (line) => {
        // A packet refused locally has no sequence number: ping counts it as an error and
        // ends when every packet is accounted for, so the exit settles it (as lost).
        const parsed = parsePingLine(line, req.family);
        if (parsed?.kind === 'send') {
          if (sendErrors.length < 16) sendErrors.push(parsed.error);
        } else if (stderr.length < 2048) stderr += line + '\n';
      });
      let spawnError: Error | undefined;
      child.once('error', (err) => (spawnError = err));
      child.once('close', (code) => {
        // Exit 0: replies; 1: none or some lost; 2: an error of ping's own.
        const broken = spawnError !== undefined || (code !== null && code >= 2);
        finish(
          'exit',
          broken
            ? {
                code: 'FL_ERR_ENGINE',
                message:
                  spawnError?.message ??
                  `ping exited with ${code}: ${stderr.trim() || 'no output'}`,
              }
            : undefined,
        );
      });
      if (req.signal.aborted) finish('abort');
      else req.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    const children = [...this.running.keys()];
    for (const abort of [...this.running.values()]) abort();
    await Promise.all(children.map((c) => killAndWait(c)));
  }
}
