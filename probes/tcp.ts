import { z } from 'zod';
import { compileUserRegex, userRegexField } from '../lib/user-regex.js';
import { exchange, ProbeClock, withConnection } from './socket.js';
import type { ProbeResult } from '../wire/result.js';
import { blackboxMetrics } from './blackbox.js';
import type { KindSeriesSink, ProbeDefinition } from './types.js';

export const tcpOptions = z
  .object({
    /** Bytes to send once connected (a string; `\r\n` escapes are honoured). */
    send: z.string().max(4096).optional(),
    /** A regular expression the answer must match; makes the probe wait for an answer. */
    expect: userRegexField().optional(),
    /** Address family: 4, 6, or 0 for the resolver's first answer. */
    family: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
  })
  .strict();
export type TcpOptions = z.infer<typeof tcpOptions>;

function unescape(s: string): Buffer {
  return Buffer.from(s.replace(/\\r/g, '\r').replace(/\\n/g, '\n').replace(/\\t/g, '\t'), 'latin1');
}

/** blackbox_exporter's tcp prober series: an answer came and `expect` never matched it. */
function tcpSeries(r: ProbeResult, sink: KindSeriesSink): void {
  const received = r.detail?.received;
  const unmatched = r.class === 'protocol_error' && typeof received === 'string';
  sink.gauge(blackboxMetrics.failedDueToRegex, unmatched && received !== '' ? 1 : 0);
}

/** TCP connect, optionally with a send/expect exchange. */
export const tcp: ProbeDefinition<TcpOptions> = {
  kind: 'tcp',
  transport: 'tcp',
  description:
    'TCP connect time; refused, timeout, unreachable and reset told apart; optional send/expect',
  target: { form: 'hostPort' },
  options: tcpOptions,
  mainTiming: 'connectMs',
  networkLatency: true,
  telemetry: { blackboxIp: (r) => r.detail?.ip, series: tcpSeries },
  planCheck: {
    refusal: (options, permissions) =>
      options.send !== undefined && !permissions.allowTcpSend
        ? "a tcp payload (options.send) is refused: the agent's config does not allow plan payloads (allowTcpSend)"
        : undefined,
  },
  async run(target, options, ctx) {
    const clock = new ProbeClock(ctx.timeoutMs);
    return withConnection(
      target.host,
      target.port ?? 0,
      options.family,
      clock,
      ctx.signal,
      async (socket, ip) => {
        if (options.send === undefined && options.expect === undefined) {
          return clock.outcome('ok', { detail: { ip } });
        }
        const send = options.send === undefined ? undefined : unescape(options.send);
        const re = options.expect === undefined ? undefined : compileUserRegex(options.expect);
        const answer = await exchange(
          socket,
          send,
          (buf) => {
            const text = buf.toString('latin1');
            if (re === undefined) return text;
            return re.test(text) ? text : undefined;
          },
          clock,
        );
        return clock.outcome('ok', { detail: { ip, answer: answer.slice(0, 120) } });
      },
    );
  },
};
