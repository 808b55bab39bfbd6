import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { z } from 'zod';
import { compileUserRegex, regexProblem, type UserRegex } from '../lib/user-regex.js';
import type { ProbeResult } from '../wire/result.js';
import { errorCodeOf } from '../lib/errors.js';
import { blackboxMetrics } from './blackbox.js';
import { classifyCode, classifyProbeCode, rawError } from './classify.js';
import { ProbeClock } from './socket.js';
import type { KindSeriesSink, ProbeDefinition } from './types.js';

/** Record types the dns probe queries. */
export const dnsRecordTypes = [
  'A',
  'AAAA',
  'CNAME',
  'MX',
  'TXT',
  'NS',
  'SRV',
  'PTR',
  'SOA',
  'CAA',
] as const;
export type DnsRecordType = (typeof dnsRecordTypes)[number];

/**
 * The DNS response code behind a c-ares error code. Codes absent here (ETIMEOUT,
 * ECONNREFUSED, EBADRESP…) mean no usable response came back, so there is no rcode.
 */
export const rcodeOfCaresCode: Readonly<Record<string, string>> = {
  ENOTFOUND: 'NXDOMAIN',
  // NOERROR with an empty answer section ("NODATA").
  ENODATA: 'NOERROR',
  ESERVFAIL: 'SERVFAIL',
  EREFUSED: 'REFUSED',
  EFORMERR: 'FORMERR',
  ENOTIMP: 'NOTIMP',
};

/** `ip`, `ip:port`, `[v6]:port` or a bare IPv6 address, as c-ares `setServers` takes it. */
export function parseServer(s: string): { ip: string; port: number } | undefined {
  let ip = s;
  let port = '53';
  if (s.startsWith('[')) {
    const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s);
    if (m === null) return undefined;
    [, ip = '', port = ''] = m;
    if (isIP(ip) !== 6) return undefined;
  } else if (isIP(s) === 0) {
    const m = /^([\d.]+):(\d{1,5})$/.exec(s);
    if (m === null) return undefined;
    [, ip = '', port = ''] = m;
    if (isIP(ip) !== 4) return undefined;
  }
  const n = Number(port);
  return n >= 1 && n <= 65535 ? { ip, port: n } : undefined;
}

function parseMatcher(s: string): UserRegex | string {
  const m = /^\/(.*)\/$/s.exec(s);
  return m === null ? s.toLowerCase() : compileUserRegex(m[1] ?? '');
}

const answerMatcher = z
  .string()
  .min(1)
  .max(1024)
  .superRefine((s, ctx) => {
    const m = /^\/(.*)\/$/s.exec(s);
    const why = m === null ? undefined : regexProblem(m[1] ?? '');
    if (why !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `expected an answer, or a regular expression between slashes (/.../): ${why}`,
        input: s,
      });
    }
  });

export const dnsOptions = z
  .object({
    /** Resolver to ask: IP, IP:port or [IPv6]:port. Default: the system's resolvers. */
    server: z
      .string()
      .max(64)
      .refine((s) => parseServer(s) !== undefined, 'expected IP, IP:port or [IPv6]:port')
      .optional(),
    /** Record type to query. PTR with an IP address as the target looks up its reverse name. */
    recordType: z.enum(dnsRecordTypes).default('A'),
    /**
     * Answers that must be among the results: each entry an exact answer (case-insensitive)
     * or a regular expression between slashes, matched by at least one answer.
     */
    expectAnswers: z.array(answerMatcher).min(1).max(32).optional(),
  })
  .strict();
export type DnsOptions = z.infer<typeof dnsOptions>;

function formatServer({ ip, port }: { ip: string; port: number }): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Answers of any record type as text, in one shape humans and matchers can read. */
async function query(resolver: Resolver, name: string, type: DnsRecordType): Promise<string[]> {
  switch (type) {
    case 'A':
      return resolver.resolve4(name);
    case 'AAAA':
      return resolver.resolve6(name);
    case 'CNAME':
      return resolver.resolveCname(name);
    case 'NS':
      return resolver.resolveNs(name);
    case 'PTR':
      return isIP(name) !== 0 ? resolver.reverse(name) : resolver.resolvePtr(name);
    case 'MX':
      return (await resolver.resolveMx(name)).map((r) => `${r.priority} ${r.exchange}`);
    case 'TXT':
      return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
    case 'SRV':
      return (await resolver.resolveSrv(name)).map(
        (r) => `${r.priority} ${r.weight} ${r.port} ${r.name}`,
      );
    case 'SOA': {
      const r = await resolver.resolveSoa(name);
      return [
        `${r.nsname} ${r.hostmaster} ${r.serial} ${r.refresh} ${r.retry} ${r.expire} ${r.minttl}`,
      ];
    }
    case 'CAA':
      return (await resolver.resolveCaa(name)).map((r) => {
        const [tag = '', value = ''] =
          Object.entries(r).find(([k]) => k !== 'critical') ?? ([] as string[]);
        return `${r.critical} ${tag} "${String(value)}"`;
      });
  }
}

/** The expected answers that no answer matches. */
export function missingAnswers(answers: readonly string[], expected: readonly string[]): string[] {
  return expected.filter((e) => {
    const m = parseMatcher(e);
    return !answers.some((a) => (typeof m === 'string' ? a.toLowerCase() === m : m.test(a)));
  });
}

/** A DNS query to one resolver: rcode, answers and resolution time. */
/** The host of a resolver written `ip`, `host:port`, `[v6]` or `[v6]:port`. */
function serverHost(server: string): string {
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(server);
  if (bracket !== null) return bracket[1]!;
  if (isIP(server) === 6) return server;
  return server.replace(/:\d+$/, '');
}

/** The resolver's (first) address the result asked, for `probe_ip_protocol`. */
function resolverIp(r: ProbeResult): unknown {
  const servers = r.detail?.servers;
  const server = Array.isArray(servers) ? (servers[0] as unknown) : undefined;
  if (typeof server !== 'string') return undefined;
  // c-ares lists "ip" (v4 or v6), "v4:port" or "[v6]:port".
  if (isIP(server) !== 0) return server;
  return server.startsWith('[')
    ? server.slice(1, server.indexOf(']'))
    : server.slice(0, server.lastIndexOf(':'));
}

/** blackbox_exporter's dns prober series. */
function dnsSeries(r: ProbeResult, sink: KindSeriesSink): void {
  const d = r.detail;
  // Any response, NXDOMAIN and SERVFAIL included, is a query that succeeded.
  sink.gauge(blackboxMetrics.dnsQuerySucceeded, typeof d?.rcode === 'string' ? 1 : 0);
  sink.gauge(blackboxMetrics.dnsAnswerRrs, Array.isArray(d?.answers) ? d.answers.length : 0);
}

export const dns: ProbeDefinition<DnsOptions> = {
  kind: 'dns',
  description:
    'DNS query (A, AAAA, CNAME, MX, TXT, NS, SRV, PTR, SOA, CAA): rcode and answers; NXDOMAIN/SERVFAIL/REFUSED told apart from a silent resolver',
  target: { form: 'host' },
  options: dnsOptions,
  mainTiming: 'totalMs',
  telemetry: { blackboxIp: resolverIp, series: dnsSeries },
  planCheck: {
    // The resolver is where the query goes: it, not the name, must be allowed.
    peer: (options) =>
      options.server === undefined
        ? undefined
        : { host: serverHost(options.server), what: 'dns server' },
  },
  async run(target, options, ctx) {
    const clock = new ProbeClock(ctx.timeoutMs);
    // One try: a retry would hide a lost packet inside the timing.
    const resolver = new Resolver({ timeout: Math.max(1, Math.round(ctx.timeoutMs)), tries: 1 });
    const server = options.server === undefined ? undefined : parseServer(options.server);
    if (server !== undefined) resolver.setServers([formatServer(server)]);
    const detail: Record<string, unknown> = {
      recordType: options.recordType,
      servers: resolver.getServers(),
    };
    const t = clock.now();
    let timedOut: 'FL_ABORTED' | 'FL_DNS_TIMEOUT' | undefined;
    const onAbort = (): void => {
      timedOut ??= 'FL_ABORTED';
      resolver.cancel();
    };
    const timer = setTimeout(() => {
      timedOut = 'FL_DNS_TIMEOUT';
      resolver.cancel();
    }, clock.remainingMs());
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    let answers: string[];
    try {
      answers = await query(resolver, target.host, options.recordType);
      clock.mark('dnsMs', t);
    } catch (err) {
      clock.mark('dnsMs', t);
      if (timedOut !== undefined) {
        return clock.outcome(classifyProbeCode(timedOut, 'dns'), {
          error: {
            code: timedOut,
            message: `no answer from the resolver within ${Math.round(ctx.timeoutMs)} ms`,
          },
          detail,
        });
      }
      const code = errorCodeOf(err, { innermost: true });
      const rcode = code === undefined ? undefined : rcodeOfCaresCode[code];
      if (rcode !== undefined) detail.rcode = rcode;
      if (code === 'ENODATA') detail.answers = [];
      return clock.outcome(classifyCode(code, 'dns'), { error: rawError(err), detail });
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
    }
    detail.rcode = 'NOERROR';
    detail.answers = answers;
    if (options.expectAnswers !== undefined) {
      const missing = missingAnswers(answers, options.expectAnswers);
      if (missing.length > 0) {
        return clock.outcome(classifyProbeCode('FL_DNS_UNEXPECTED_ANSWER', 'dns'), {
          error: {
            code: 'FL_DNS_UNEXPECTED_ANSWER',
            message: `no answer matches ${missing.join(', ')}`.slice(0, 1024),
          },
          detail: { ...detail, missing },
        });
      }
    }
    return clock.outcome('ok', { detail });
  },
};
