import { isIP } from 'node:net';
import type { ProbeResult } from '../../wire/result.js';
import { blackboxMetrics } from '../blackbox.js';
import { classifyIcmpError, classifySendError } from '../classify.js';
import { round } from '../run.js';
import { ProbeClock, ProbeFailure, resolveHost } from '../socket.js';
import type {
  KindSeriesSink,
  ProbeContext,
  ProbeOutcome,
  ProbeTelemetry,
  ScheduledTarget,
  SummaryLoss,
  Target,
} from '../types.js';
import type { EchoReport, IcmpEngine, IcmpEngineName } from './engine.js';
import { FpingEngine } from './fping.js';
import { FpingLoopEngine, type LoopTarget } from './fping-loop.js';
import { PingEngine } from './ping.js';
import type { EchoLoop } from './loop-state.js';
import { SocketEngine } from './socket.js';
import { SocketLoopEngine } from './socket-loop.js';
import { echoPayloadBytes, minIpv6PacketBytes } from './process.js';

/*
 * The echo path both echo kinds share (icmp, mtu): which engine answers, a one-shot echo
 * run or a round of the scheduled loop, and the outcome decided from its report.
 */

/**
 * How an echo probe sends: what the options of the echo kinds (icmp, mtu) come down to.
 * `runEcho` and `prepareEchoLoop` take it, so both kinds share one engine path.
 */
export interface EchoPlan {
  /** Echo requests per probe; the probe is `ok` when at least one is answered. */
  readonly count: number;
  /** Milliseconds between two echo requests of a one-shot probe. */
  readonly intervalMs: number;
  readonly engine: 'auto' | IcmpEngineName;
  /** Address family for a hostname: 4, 6, or 0 for the resolver's first answer. */
  readonly family: 0 | 4 | 6;
  /** ICMP payload bytes (the programs' default when absent and `sizeBytes` is too). */
  readonly packetSize?: number;
  /** The whole IP packet instead: the payload follows from the family the address has. */
  readonly sizeBytes?: number;
  /** Don't Fragment: a packet larger than a link on the way is refused, never fragmented. */
  readonly dontFragment?: boolean;
}

/**
 * The engines `icmp` runs on. Swappable fields: a test (or the agent) replaces one, e.g.
 * with an engine whose binary path does not exist, to exercise the fallback. `loop` serves
 * the targets announced by `prepare`; everything else (one-shot probes, rounds the loop
 * declines) runs on `socket`, `fping` or `ping`.
 */
export const icmpEngines: {
  socket: IcmpEngine;
  fping: IcmpEngine;
  ping: IcmpEngine;
  loop: FpingLoopEngine;
} = {
  socket: new SocketEngine(),
  fping: new FpingEngine(),
  ping: new PingEngine(),
  loop: new FpingLoopEngine(),
};

let socketLoop: { readonly engine: SocketEngine; readonly loop: SocketLoopEngine } | undefined;

/** The loop on the socket engine's sockets, where they open (for the engine in `icmpEngines` now). */
function currentSocketLoop(): SocketLoopEngine | undefined {
  const engine = icmpEngines.socket;
  if (!(engine instanceof SocketEngine) || !engine.usableNow()) return undefined;
  if (socketLoop?.engine !== engine) {
    void socketLoop?.loop.close();
    socketLoop = { engine, loop: new SocketLoopEngine(engine) };
  }
  return socketLoop.loop;
}

/**
 * The loop that serves scheduled targets of an engine choice: the one on the agent's own
 * socket for `socket` and `auto` where the socket opens, fping's for `fping` and for `auto`
 * otherwise, none for `ping` (each of its rounds is a one-shot echo).
 */
function loopFor(choice: 'auto' | IcmpEngineName): EchoLoop | undefined {
  if (choice === 'ping') return undefined;
  if (choice !== 'fping') {
    const loop = currentSocketLoop();
    if (loop !== undefined || choice === 'socket') return loop;
  }
  return icmpEngines.loop;
}

/**
 * How echoes go out in this process, for the agent's start log: on its own ICMP socket (a
 * raw one, or a ping socket), or on fping and ping, and why not on the socket.
 */
export function icmpEngineSummary(): string {
  const engine = icmpEngines.socket;
  if (!(engine instanceof SocketEngine)) return 'fping or ping';
  if (engine.usableNow())
    return engine.raw === true ? 'own raw ICMP socket' : 'own ICMP ping socket';
  return `fping or ping (no own ICMP socket: ${engine.unusableReason ?? 'unknown'})`;
}

/** Ends every ICMP child process and socket (agent shutdown, end of a test file). */
export async function closeIcmpEngines(): Promise<void> {
  const loop = socketLoop?.loop;
  socketLoop = undefined;
  await loop?.close();
  await Promise.all([
    icmpEngines.loop.close(),
    icmpEngines.socket.close(),
    icmpEngines.fping.close(),
    icmpEngines.ping.close(),
  ]);
}

/**
 * The engines for a choice, in the order they are tried: one for a named engine. Whether
 * each is usable is asked only when its turn comes (runEcho), so a probe the first engine
 * answers checks no other.
 */
function engineOrder(choice: 'auto' | IcmpEngineName, dontFragment: boolean): IcmpEngine[] {
  if (choice !== 'auto') return [icmpEngines[choice]];
  // The agent's own socket first: no process per probe, and for Don't Fragment echoes (path
  // MTU probes) it names the MTU a packet our own stack refused would have needed. Of the
  // programs, ping goes first for those: it names that MTU too, where fping prints nothing
  // for such a packet (EMSGSIZE: the local interface, or a path MTU learnt from a
  // "fragmentation needed").
  return dontFragment
    ? [icmpEngines.socket, icmpEngines.ping, icmpEngines.fping]
    : [icmpEngines.socket, icmpEngines.fping, icmpEngines.ping];
}

/** The probe's outcome from an engine's report: decided from replies, ICMP types and send errnos only. */
export function outcomeOf(report: EchoReport, ip: string, clock: ProbeClock): ProbeOutcome {
  const replies = report.rttsMs.filter((r): r is number => r !== null);
  const sent = report.rttsMs.length;
  const received = replies.length;
  const detail: Record<string, unknown> = {
    engine: report.engine,
    ip,
    sent,
    received,
    lossRatio: sent === 0 ? 1 : round((sent - received) / sent),
    rttsMs: report.rttsMs,
    minMs: received === 0 ? null : Math.min(...replies),
    maxMs: received === 0 ? null : Math.max(...replies),
  };
  const first = report.icmpErrors[0];
  if (first !== undefined) {
    detail.icmpErrors = report.icmpErrors.length;
    detail.icmpError = {
      type: first.type,
      code: first.code ?? null,
      name: first.name,
      from: first.from,
    };
  }
  const sendErrors = report.sendErrors ?? [];
  const firstSend = sendErrors[0];
  if (firstSend !== undefined) {
    detail.sendErrors = sendErrors.length;
    detail.sendError = { code: firstSend.code, mtu: firstSend.mtu ?? null };
  }
  const nextHopMtu = [...report.icmpErrors, ...sendErrors].find((e) => e.mtu !== undefined)?.mtu;
  if (nextHopMtu !== undefined) detail.nextHopMtu = nextHopMtu;
  if (report.failure !== undefined && received === 0) {
    return clock.outcome('internal_error', {
      error: { code: report.failure.code, message: report.failure.message.slice(0, 1024) },
      detail,
    });
  }
  if (received > 0) {
    clock.timings.rttMs = round(replies.reduce((a, b) => a + b, 0) / received);
    return clock.outcome('ok', { detail });
  }
  // What came back from the network first, then what our own stack refused to send.
  for (const e of report.icmpErrors) {
    const cls = classifyIcmpError(e.family, e.type, e.code);
    if (cls !== undefined)
      return clock.outcome(cls, {
        error: { code: e.name, message: e.text.slice(0, 1024) },
        detail,
      });
  }
  for (const e of sendErrors) {
    const cls = classifySendError(e.code);
    if (cls !== undefined)
      return clock.outcome(cls, {
        error: { code: e.code, message: e.text.slice(0, 1024) },
        detail,
      });
  }
  const error = report.aborted
    ? { code: 'FL_ABORTED', message: 'probe aborted before an echo reply came back' }
    : {
        code: 'FL_ICMP_TIMEOUT',
        message: `no echo reply to ${sent} echo request${sent === 1 ? '' : 's'} within ${Math.round(clock.timeoutMs)} ms`,
      };
  return clock.outcome('icmp_timeout', { error, detail });
}

/** An echo plan's sizing and Don't Fragment, as the loop engine and its rounds take them. */
function loopSizing(plan: EchoPlan): Pick<LoopTarget, 'packetSize' | 'sizeBytes' | 'dontFragment'> {
  return {
    ...(plan.sizeBytes !== undefined
      ? { sizeBytes: plan.sizeBytes }
      : plan.packetSize !== undefined
        ? { packetSize: plan.packetSize }
        : {}),
    ...(plan.dontFragment === true ? { dontFragment: true } : {}),
  };
}

/** Milliseconds between the echoes of a probe run out of schedule (`ProbeContext.now`). */
export const nowEchoSpacingMs = 20;

/**
 * How long the engine may hold a probe run out of schedule (a confirmation, an echo check)
 * so that it shares one fping with the others in flight (`EchoRequest.holdMs`): only while
 * the engine already runs several processes for such probes, as when a partition fails many
 * echo paths at once; their packets' wait is not shortened by it.
 */
export const nowEchoHoldMs = 250;

/**
 * Announces a kind's scheduled targets to the loop engines (as that kind's whole set): all but
 * those pinned to iputils ping get pinged continuously, by the loop on the agent's own socket
 * or by a long-lived fping (`loopFor`).
 */
export function prepareEchoLoop<O>(
  kind: string,
  targets: readonly ScheduledTarget<O>[],
  planOf: (options: O) => EchoPlan,
): void {
  const perLoop = new Map<EchoLoop, LoopTarget[]>([[icmpEngines.loop, []]]);
  const onSocket = currentSocketLoop();
  if (onSocket !== undefined) perLoop.set(onSocket, []);
  for (const t of targets) {
    const plan = planOf(t.options);
    const loop = loopFor(plan.engine);
    if (loop === undefined) continue;
    perLoop.get(loop)?.push({
      name: t.target.name,
      host: t.target.host,
      family: plan.family,
      count: plan.count,
      ...loopSizing(plan),
      intervalMs: t.intervalMs,
      timeoutMs: t.timeoutMs,
    });
  }
  // Every loop hears the kind's whole share, empty too: targets that moved leave the other.
  for (const [loop, list] of perLoop) loop.prepare(list, kind);
}

/**
 * Runs one echo probe: a round of the loop engine for a scheduled target, else `count`
 * echoes on fping or ping. The class is decided from replies, ICMP types and send errors.
 */
export async function runEcho(
  target: Target,
  plan: EchoPlan,
  ctx: ProbeContext,
): Promise<ProbeOutcome> {
  const clock = new ProbeClock(ctx.timeoutMs);
  let ip: string;
  try {
    ip = await resolveHost(target.host, plan.family, clock);
  } catch (err) {
    if (err instanceof ProbeFailure) return clock.outcome(err.failureClass, { error: err.raw });
    throw err;
  }
  const family = isIP(ip) === 6 ? 6 : 4;
  if (plan.sizeBytes !== undefined && family === 6 && plan.sizeBytes < minIpv6PacketBytes) {
    return clock.outcome('internal_error', {
      error: {
        code: 'FL_ERR_OPTIONS',
        message: `size ${plan.sizeBytes} is below IPv6's minimum MTU: ${ip} is an IPv6 address, and every IPv6 link carries ${minIpv6PacketBytes}-byte packets; set size to ${minIpv6PacketBytes} or more`,
      },
    });
  }
  const dontFragment = plan.dontFragment === true;
  // Out of schedule, the loop's next round may be a whole interval away: probe at once.
  const loop = ctx.now === true ? undefined : loopFor(plan.engine);
  if (loop !== undefined) {
    const looped = await loop.round({
      name: target.name,
      host: target.host,
      family: plan.family,
      count: plan.count,
      ...loopSizing(plan),
      ip,
      timeoutMs: clock.remainingMs(),
      signal: ctx.signal,
    });
    if (looped !== undefined) return outcomeOf(looped, looped.ip ?? ip, clock);
  }
  const packetSize =
    plan.sizeBytes !== undefined ? echoPayloadBytes(plan.sizeBytes, family) : plan.packetSize;
  let report: EchoReport | undefined;
  for (const engine of engineOrder(plan.engine, dontFragment)) {
    if (!(await engine.available())) continue;
    report = await engine.echo({
      ip,
      family,
      count: plan.count,
      // Out of schedule (a confirmation, an echo check) the packets ask one question — does
      // the host answer now — so they leave close together, not spread like a measurement.
      intervalMs: ctx.now === true ? Math.min(plan.intervalMs, nowEchoSpacingMs) : plan.intervalMs,
      ...(packetSize === undefined ? {} : { packetSize }),
      ...(dontFragment ? { dontFragment } : {}),
      timeoutMs: clock.remainingMs(),
      ...(ctx.now === true ? { holdMs: nowEchoHoldMs } : {}),
      ...(ctx.now === true && ctx.burst !== undefined ? { burst: ctx.burst } : {}),
      signal: ctx.signal,
    });
    // An engine that failed before sending anything (e.g. the socket of this address family
    // does not open) says nothing about the target: under auto the next one probes it.
    if (report.failure === undefined || report.rttsMs.length > 0) break;
  }
  if (report === undefined) {
    const wanted = plan.engine === 'auto' ? 'an ICMP socket, fping or ping' : plan.engine;
    return clock.outcome('internal_error', {
      error: {
        code: 'FL_ERR_ENGINE',
        message: `no usable ICMP engine: ${wanted} is not built or installed, or may not open an ICMP socket (CAP_NET_RAW, or net.ipv4.ping_group_range)`,
      },
    });
  }
  // What the loop buffered for this path's next round is older than this answer.
  if (ctx.now === true) {
    icmpEngines.loop.discard(target.name);
    socketLoop?.loop.discard(target.name);
  }
  return outcomeOf(report, ip, clock);
}

/** An echo result's loss for its period summary, weighted by the packets sent. */
export function echoSummaryLoss(
  detail: Readonly<Record<string, unknown>>,
): SummaryLoss | undefined {
  const loss = detail.lossRatio;
  if (typeof loss !== 'number' || !(loss >= 0 && loss <= 1)) return undefined;
  const sent = detail.sent;
  return { ratio: loss, packets: typeof sent === 'number' && sent > 0 ? sent : 1 };
}

/** blackbox_exporter's icmp prober series: the echo kinds' (it is the one with dont_fragment). */
function echoSeries(r: ProbeResult, sink: KindSeriesSink): void {
  const t = r.timings;
  sink.gauge(blackboxMetrics.icmpDuration, (t.dnsMs ?? 0) / 1000, 'phase', 'resolve');
  sink.gauge(blackboxMetrics.icmpDuration, (t.rttMs ?? 0) / 1000, 'phase', 'rtt');
}

/** What the agent exports for an echo kind besides the common series. */
export const echoTelemetry: ProbeTelemetry = {
  blackboxIp: (r) => r.detail?.ip,
  series: echoSeries,
};
