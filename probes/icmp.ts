import { z } from 'zod';
import {
  closeIcmpEngines,
  echoSummaryLoss,
  echoTelemetry,
  prepareEchoLoop,
  runEcho,
} from './icmp/echo.js';
import { icmpEngineNames } from './icmp/engine.js';
import type { ProbeDefinition } from './types.js';

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
    /**
     * `socket` (the agent's own ICMP socket: no process per probe; needs the built addon and
     * CAP_NET_RAW or net.ipv4.ping_group_range), `fping` (one process for many concurrent
     * probes), `ping` (iputils, one process per probe), or `auto`: the first of these that
     * works (of the programs, ping first for Don't Fragment echoes: it names the MTU a
     * refused packet needed, as the socket does). Scheduled targets are
     * pinged continuously, `count` packets per interval: by a loop on the socket (`socket`,
     * and `auto` where it opens) or by one long-lived fping (`fping`, and `auto` otherwise);
     * with `ping` each round is its own echo run.
     */
    engine: z.enum(['auto', ...icmpEngineNames]).default('auto'),
    /** Address family for a hostname: 4, 6, or 0 for the resolver's first answer. */
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
  })
  .strict();
export type IcmpOptions = z.infer<typeof icmpOptions>;

/**
 * ICMP echo: round-trip and loss over a few packets; unreachable told apart from silence.
 * Scheduled targets (`prepare`) are pinged continuously, `count` packets per interval (by
 * the loop on the agent's own ICMP socket, or one long-lived fping), and a round reports
 * the packets since the previous round; a one-shot probe sends its own `count` packets
 * `intervalMs` apart.
 */
export const icmp: ProbeDefinition<IcmpOptions> = {
  kind: 'icmp',
  description:
    'ICMP echo round-trip and loss over a few packets; timeout and ICMP unreachable told apart',
  target: { form: 'host' },
  options: icmpOptions,
  echo: true,
  mainTiming: 'rttMs',
  summaryLoss: echoSummaryLoss,
  telemetry: echoTelemetry,
  run: (target, options, ctx) => runEcho(target, options, ctx),
  prepare(targets) {
    prepareEchoLoop('icmp', targets, (options) => options);
  },
  close: closeIcmpEngines,
};
