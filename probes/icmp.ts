import { isIP } from 'node:net';
import { z } from 'zod';
import { classifyIcmpError } from './classify.js';
import { FpingEngine } from './icmp-fping.js';
import { FpingLoopEngine } from './icmp-fping-loop.js';
import { PingEngine } from './icmp-ping.js';
import { round } from './run.js';
import { ProbeClock, ProbeFailure, resolveHost } from './socket.js';
import type { ProbeDefinition, ProbeOutcome, ScheduledTarget } from './types.js';

/** The programs an ICMP echo can run on. */
export const icmpEngineNames = ['fping', 'ping'] as const;
export type IcmpEngineName = (typeof icmpEngineNames)[number];

/**
 * Options of the icmp probe. `count` packets `intervalMs` apart must fit the probe timeout
 * with time left for the last reply; when they do not, fewer are sent (`detail.sent`).
 */
export const icmpOptions = z
  .object({
    /** Echo requests per probe; the probe is `ok` when at least one is answered. */
    count: z.number().int().min(1).max(100).default(3),
    /**
     * Milliseconds between two echo requests of one probe. Scheduled targets ignore it: their
     * `count` packets are spread over the whole interval.
     */
    intervalMs: z.number().int().min(10).max(10_000).default(200),
    /** ICMP payload bytes (the programs' default, 56, when absent). At least 16 so that ping can time the echo. */
    packetSize: z.number().int().min(16).max(65_000).optional(),
    /** `fping` (one process for many concurrent probes), `ping` (iputils, one process per probe), or `auto`: fping where installed. */
    engine: z.enum(['auto', ...icmpEngineNames]).default('auto'),
    /** Address family for a hostname: 4, 6, or 0 for the resolver's first answer. */
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
  })
  .strict();
export type IcmpOptions = z.infer<typeof icmpOptions>;

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
  /** Budget from now, in milliseconds: the engine answers by then. */
  readonly timeoutMs: number;
  /** The caller gave up: answer at once with what came back so far. */
  readonly signal: AbortSignal;
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
  /** The engine's line, for humans. */
  readonly text: string;
}

/** What an engine saw for one echo run. */
export interface EchoReport {
  /** `fping-loop`: a round of a scheduled target, answered by its long-lived fping. */
  readonly engine: IcmpEngineName | 'fping-loop';
  /** The address the echoes went to, where the engine chose it (the loop keeps a name's address). */
  readonly ip?: string;
  /** Per echo request, in send order: round-trip in milliseconds, or null when none came back. */
  readonly rttsMs: readonly (number | null)[];
  /** ICMP errors that came back, in arrival order. */
  readonly icmpErrors: readonly IcmpError[];
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

/**
 * The engines `icmp` runs on. Swappable fields: a test (or the agent) replaces one, e.g.
 * with an engine whose binary path does not exist, to exercise the fallback. `loop` serves
 * the targets announced by `prepare`; everything else (one-shot probes, rounds the loop
 * declines) runs on `fping` or `ping`.
 */
export const icmpEngines: { fping: IcmpEngine; ping: IcmpEngine; loop: FpingLoopEngine } = {
  fping: new FpingEngine(),
  ping: new PingEngine(),
  loop: new FpingLoopEngine(),
};

/** Ends every ICMP child process (agent shutdown, end of a test file). */
export async function closeIcmpEngines(): Promise<void> {
  await Promise.all([
    icmpEngines.loop.close(),
    icmpEngines.fping.close(),
    icmpEngines.ping.close(),
  ]);
}

async function pickEngine(choice: IcmpOptions['engine']): Promise<IcmpEngine | undefined> {
  if (choice !== 'auto') {
    const engine = icmpEngines[choice];
    return (await engine.available()) ? engine : undefined;
  }
  if (await icmpEngines.fping.available()) return icmpEngines.fping;
  if (await icmpEngines.ping.available()) return icmpEngines.ping;
  return undefined;
}

/** The probe's outcome from an engine's report: decided from replies and ICMP types only. */
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
  const decisive = report.icmpErrors.find((e) => classifyIcmpError(e.family, e.type) !== undefined);
  if (decisive !== undefined) {
    const cls = classifyIcmpError(decisive.family, decisive.type) ?? 'icmp_unreachable';
    return clock.outcome(cls, {
      error: { code: decisive.name, message: decisive.text.slice(0, 1024) },
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

/** The scheduled targets the loop engine serves: all but those pinned to iputils ping. */
function loopTargets(targets: readonly ScheduledTarget<IcmpOptions>[]) {
  return targets
    .filter((t) => t.options.engine !== 'ping')
    .map((t) => ({
      name: t.target.name,
      host: t.target.host,
      family: t.options.family,
      count: t.options.count,
      ...(t.options.packetSize === undefined ? {} : { packetSize: t.options.packetSize }),
      intervalMs: t.intervalMs,
      timeoutMs: t.timeoutMs,
    }));
}

/**
 * ICMP echo: round-trip and loss over a few packets; unreachable told apart from silence.
 * Scheduled targets (`prepare`) are pinged continuously by one long-lived fping, `count`
 * packets per interval, and a round reports the packets since the previous round; a
 * one-shot probe sends its own `count` packets `intervalMs` apart.
 */
export const icmp: ProbeDefinition<IcmpOptions> = {
  kind: 'icmp',
  description:
    'ICMP echo round-trip and loss over a few packets; timeout and ICMP unreachable told apart',
  target: { form: 'host' },
  options: icmpOptions,
  async run(target, options, ctx) {
    const clock = new ProbeClock(ctx.timeoutMs);
    let ip: string;
    try {
      ip = await resolveHost(target.host, options.family, clock);
    } catch (err) {
      if (err instanceof ProbeFailure) return clock.outcome(err.failureClass, { error: err.raw });
      throw err;
    }
    if (options.engine !== 'ping') {
      const looped = await icmpEngines.loop.round({
        name: target.name,
        host: target.host,
        family: options.family,
        count: options.count,
        ...(options.packetSize === undefined ? {} : { packetSize: options.packetSize }),
        ip,
        timeoutMs: clock.remainingMs(),
        signal: ctx.signal,
      });
      if (looped !== undefined) return outcomeOf(looped, looped.ip ?? ip, clock);
    }
    const engine = await pickEngine(options.engine);
    if (engine === undefined) {
      const wanted = options.engine === 'auto' ? 'fping or ping' : options.engine;
      return clock.outcome('internal_error', {
        error: {
          code: 'FL_ERR_ENGINE',
          message: `no usable ICMP engine: ${wanted} is not installed or cannot open a raw socket`,
        },
      });
    }
    const report = await engine.echo({
      ip,
      family: isIP(ip) === 6 ? 6 : 4,
      count: options.count,
      intervalMs: options.intervalMs,
      ...(options.packetSize === undefined ? {} : { packetSize: options.packetSize }),
      timeoutMs: clock.remainingMs(),
      signal: ctx.signal,
    });
    return outcomeOf(report, ip, clock);
  },
  prepare(targets) {
    icmpEngines.loop.prepare(loopTargets(targets));
  },
  close: closeIcmpEngines,
};
