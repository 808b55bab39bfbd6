import { z } from 'zod';
import { icmpOptions } from './icmp.js';
import {
  closeIcmpEngines,
  echoSummaryLoss,
  echoTelemetry,
  prepareEchoLoop,
  runEcho,
  type EchoPlan,
} from './icmp/echo.js';
import { minIpv6PacketBytes } from './icmp/process.js';
import type { ProbeDefinition } from './types.js';

/** IPv4's minimum MTU (RFC 791): every IPv4 link carries packets this large. */
const minIpv4PacketBytes = 68;
/** The largest IP packet there is (IPv4's 16-bit total length). */
const maxPacketBytes = 65_535;

/**
 * Options of the mtu probe: the icmp probe's, with the size of the whole packet in place of
 * its payload. Don't Fragment is always set: that is the probe.
 */
export const mtuOptions = icmpOptions
  .omit({ packetSize: true })
  .extend({
    /**
     * Bytes of each echo as a whole IP packet, headers included: the MTU the path must
     * carry. 1500 on Ethernet, e.g. 9000 on a jumbo-frame network. The ICMP payload is
     * size − 28 over IPv4 and size − 48 over IPv6; IPv6 needs at least 1280.
     */
    size: z.number().int().min(minIpv4PacketBytes).max(maxPacketBytes).default(1500),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.family === 6 && o.size < minIpv6PacketBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['size'],
        input: o.size,
        message: `expected at least ${minIpv6PacketBytes} with family 6: every IPv6 link carries ${minIpv6PacketBytes}-byte packets, so a smaller one tests nothing`,
      });
    }
  });
export type MtuOptions = z.infer<typeof mtuOptions>;

/** The echo an mtu probe sends: `size`-byte packets with Don't Fragment set. */
function echoPlan(options: MtuOptions): EchoPlan {
  return {
    count: options.count,
    intervalMs: options.intervalMs,
    engine: options.engine,
    family: options.family,
    sizeBytes: options.size,
    dontFragment: true,
  };
}

/**
 * Full-size ICMP echo with Don't Fragment: does the path carry packets of its MTU? A switch
 * port or link with a smaller MTU than its hosts passes pings and TCP handshakes and drops
 * every full-size frame; the small echo (`icmp`) beside this one tells the two apart.
 *
 * - a reply: `ok`, with the round-trip;
 * - silence: `icmp_timeout` (a link dropped the frame: e.g. a switch port's smaller MTU);
 * - ICMP "fragmentation needed" / "packet too big" from a router, or our own stack refusing
 *   the packet (EMSGSIZE: the own interface, or a path MTU learnt from such a message):
 *   `mtu_exceeded`, with `detail.nextHopMtu` where the engine names it;
 * - any other unreachable: `icmp_unreachable`.
 *
 * It runs on the icmp probe's engines: the agent's own ICMP socket where it opens (scheduled
 * targets on its loop), which names the MTU of a packet our own stack refused; else
 * scheduled targets on the long-lived fping (one per distinct size and timing) and rounds it
 * cannot answer on iputils ping first, which reports those packets and the MTU too (fping
 * stays silent about them).
 * `detail.sizeBytes` is the packet size sent.
 *
 * After a "fragmentation needed" the sending host's kernel remembers the path MTU for that
 * destination (net.ipv4.route.mtu_expires, 10 minutes by default) and refuses larger
 * Don't Fragment packets itself: the probe stays `mtu_exceeded` (EMSGSIZE, `nextHopMtu` the
 * remembered MTU) that long, also after the router is fixed. A silent drop (a switch port)
 * teaches the kernel nothing: its probe is `ok` as soon as the port is.
 */
export const mtu: ProbeDefinition<MtuOptions> = {
  kind: 'mtu',
  description:
    "Full-size ICMP echo (default 1500 bytes) with Don't Fragment: carried, silently dropped, or refused (fragmentation needed, own interface)",
  target: { form: 'host' },
  options: mtuOptions,
  echo: true,
  mainTiming: 'rttMs',
  summaryLoss: echoSummaryLoss,
  telemetry: echoTelemetry,
  async run(target, options, ctx) {
    const outcome = await runEcho(target, echoPlan(options), ctx);
    return { ...outcome, detail: { ...outcome.detail, sizeBytes: options.size } };
  },
  prepare(targets) {
    prepareEchoLoop('mtu', targets, echoPlan);
  },
  close: closeIcmpEngines,
};
