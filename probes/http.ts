import type { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { HTTPParser, type HeaderInfo } from 'http-parser-js';
import { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import { compileUserRegex, userRegexField } from '../lib/user-regex.js';
import type { Timings } from '../wire/result.js';
import {
  classifyCode,
  classifyConnectionError,
  classifyError,
  classifyProbeCode,
  rawError,
} from './classify.js';
import {
  abortConnection,
  connect,
  preview,
  ProbeClock,
  ProbeFailure,
  resolveHost,
} from './socket.js';
import { isValidHost } from '../lib/host.js';
import { httpSeries } from './http-series.js';
import {
  contentLengthValue,
  parseError,
  parseFailure,
  requestHead,
  ResponseParser,
  responseHeaders,
  type WireRequest,
} from './http-wire.js';
import type { ProbeDefinition } from './types.js';

const regex = userRegexField();

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'expected an HTTP header name');

// Framing and connection headers belong to the probe: a user value would corrupt the request.
const reservedHeaders = new Set([
  'connection',
  'content-length',
  'transfer-encoding',
  'upgrade',
  'keep-alive',
  'te',
  'trailer',
]);

// 200, "2xx", or "200-299".
const statusSpec = z.union([
  z.number().int().min(100).max(599),
  z.string().regex(/^[1-5]xx$/, 'expected a status code, "Nxx" or "NNN-NNN"'),
  z
    .string()
    .regex(/^[1-5]\d\d-[1-5]\d\d$/, 'expected a status code, "Nxx" or "NNN-NNN"')
    .refine((s) => {
      const [lo, hi] = s.split('-').map(Number);
      return lo !== undefined && hi !== undefined && lo <= hi;
    }, 'a status range must run from low to high'),
]);

export const httpOptions = z
  .object({
    /** Request method. */
    method: z.enum(['GET', 'HEAD', 'POST']).default('GET'),
    /** Extra request headers. Host may be overridden; framing headers may not. */
    headers: z
      .record(
        headerName.refine(
          (h) => !reservedHeaders.has(h.toLowerCase()),
          'this header is set by the probe itself',
        ),
        z
          .string()
          .max(4096)
          .regex(/^[\t\x20-\x7e\x80-\xff]*$/, 'header values may not contain control characters'),
      )
      .default({}),
    /** Request body (POST). */
    body: z
      .string()
      .max(64 * 1024)
      .optional(),
    /** Status codes that count as success: numbers, "2xx" classes or "200-399" ranges. */
    validStatusCodes: z.array(statusSpec).min(1).max(64).default(['2xx']),
    /** A regular expression the body must match (else http_body). */
    expectBody: regex.optional(),
    /** A regular expression the body must not match (else http_body). */
    failIfBodyMatches: regex.optional(),
    /** Response headers that must be present and match a regular expression: {name: regex}. */
    expectHeaders: z.record(headerName, regex).default({}),
    /** Follow 3xx redirects with a Location header (a new connection per hop). */
    followRedirects: z.boolean().default(false),
    /** The most redirects followed before the probe fails with http_status. */
    maxRedirects: z.number().int().min(0).max(20).default(10),
    /** Verify the server's certificate chain and name. The certificate is reported either way. */
    tlsVerify: z.boolean().default(true),
    /** PEM file of CA certificates to trust instead of the system's (a private CA). */
    caFile: z.string().min(1).max(4096).optional(),
    /** TLS server name (SNI and the name the certificate must carry); default: the URL's host. */
    serverName: z
      .string()
      .max(253)
      .refine((s) => isValidHost(s) && isIP(s) === 0, 'expected a DNS hostname')
      .optional(),
    /** Address family: 4, 6, or 0 for the resolver's first answer. */
    ipFamily: z.union([z.literal(0), z.literal(4), z.literal(6)]).default(0),
    /** The most body bytes read (and matched against); the rest is not downloaded. */
    maxBodyBytes: z
      .number()
      .int()
      .min(0)
      .max(16 * 1024 * 1024)
      .default(1024 * 1024),
  })
  .strict()
  .refine((o) => !(o.method === 'HEAD' && o.body !== undefined), {
    message: 'a HEAD request has no body',
    path: ['body'],
  })
  .refine((o) => !(o.method === 'HEAD' && (o.expectBody ?? o.failIfBodyMatches) !== undefined), {
    message: 'a HEAD response has no body to match',
    path: ['expectBody'],
  });
export type HttpOptions = z.infer<typeof httpOptions>;

/** Whether a status is allowed by the `validStatusCodes` specs. */
export function statusAllowed(status: number, specs: HttpOptions['validStatusCodes']): boolean {
  return specs.some((spec) => {
    if (typeof spec === 'number') return spec === status;
    if (spec.endsWith('xx')) return Math.floor(status / 100) === Number(spec[0]);
    const [lo, hi] = spec.split('-').map(Number);
    return lo !== undefined && hi !== undefined && status >= lo && status <= hi;
  });
}

const redirectStatuses = new Set([301, 302, 303, 307, 308]);
const phases = ['dnsMs', 'connectMs', 'tlsMs', 'firstByteMs'] as const;
// Credentials are for the origin they were configured for, never for where it redirects.
const originBoundHeaders = ['authorization', 'proxy-authorization', 'cookie'];

interface HopResponse {
  readonly status: number;
  readonly httpVersion: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly truncated: boolean;
}

interface HopSettings {
  readonly options: HttpOptions;
  readonly ca: Buffer | undefined;
  readonly clock: ProbeClock;
  readonly signal: AbortSignal;
  /** Filled in as facts become known, so a failure still reports them. */
  readonly detail: Record<string, unknown>;
}

/**
 * The earliest expiry among the certificates the server sent (leaf and intermediates, as
 * blackbox_exporter reads them), or undefined when none is readable. X509Certificate's
 * issuer links follow only the chain the peer sent, never the local trust store.
 */
function earliestExpiry(sock: TLSSocket): Date | undefined {
  let earliest: Date | undefined;
  let cert: X509Certificate | undefined = sock.getPeerX509Certificate();
  // A self-signed certificate is its own issuer; 16 hops is far beyond any real chain.
  for (let hops = 0; cert !== undefined && hops < 16; hops++) {
    const validTo = new Date(cert.validTo);
    if (!Number.isNaN(validTo.getTime()) && (earliest === undefined || validTo < earliest))
      earliest = validTo;
    const issuer: X509Certificate | undefined = cert.issuerCertificate;
    cert = issuer?.fingerprint256 === cert.fingerprint256 ? undefined : issuer;
  }
  return earliest;
}

function certificateFacts(sock: TLSSocket): Record<string, unknown> | undefined {
  const cert = sock.getPeerCertificate();
  if (cert === null || typeof cert !== 'object' || cert.valid_to === undefined) return undefined;
  const first = (v: string | string[] | undefined): string | undefined =>
    Array.isArray(v) ? v[0] : v;
  const validTo = new Date(cert.valid_to);
  const validFrom = new Date(cert.valid_from);
  const facts: Record<string, unknown> = {
    subject: first(cert.subject?.CN),
    issuer: first(cert.issuer?.CN) ?? first(cert.issuer?.O),
    validFrom: Number.isNaN(validFrom.getTime()) ? cert.valid_from : validFrom.toISOString(),
    validTo: Number.isNaN(validTo.getTime()) ? cert.valid_to : validTo.toISOString(),
    daysUntilExpiry: Math.floor((validTo.getTime() - Date.now()) / 86_400_000),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
  };
  if (cert.subjectaltname !== undefined) facts.subjectAltName = cert.subjectaltname;
  // An intermediate can expire before the leaf: blackbox_exporter's earliest expiry is the chain's.
  const chainValidTo = earliestExpiry(sock);
  if (chainValidTo !== undefined) facts.chainValidTo = chainValidTo.toISOString();
  return facts;
}

/**
 * Starts TLS over an established connection. The TLS layer runs over a JS stream wrapping
 * the TCP socket rather than taking over its handle: the TCP socket stays ours, so it can
 * always be ended with a reset (resetting a handle under a live TLS socket crashes Node).
 */
function startTls(raw: Socket, host: string, { options, ca }: HopSettings): TLSSocket {
  const name = options.serverName ?? host;
  // Verification is judged from `authorized` after the handshake rather than by OpenSSL
  // aborting it: that way a bad certificate is still described in the result.
  const sock = tlsConnect({
    socket: Duplex.from({ readable: raw, writable: raw }),
    host: name,
    ...(isIP(name) === 0 ? { servername: name } : {}),
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1'],
    ...(ca !== undefined ? { ca } : {}),
  });
  // Errors after the handshake reach whoever reads the socket; this only keeps late ones
  // (after our own reset) from being unhandled.
  sock.on('error', () => undefined);
  return sock;
}

/** Waits for the TLS handshake to finish within the deadline. */
function secured(sock: TLSSocket, { clock, signal }: HopSettings): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const t = clock.now();
    const finish = (err: ProbeFailure | undefined): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      sock.removeListener('secureConnect', onSecure);
      sock.removeListener('error', onError);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onSecure = (): void => {
      clock.mark('tlsMs', t);
      finish(undefined);
    };
    const onError = (err: Error): void => {
      clock.mark('tlsMs', t);
      finish(new ProbeFailure(classifyError(err, 'tls'), rawError(err)));
    };
    const onAbort = (): void =>
      finish(
        new ProbeFailure(classifyProbeCode('FL_ABORTED', 'tls'), {
          code: 'FL_ABORTED',
          message: 'probe aborted during the TLS handshake',
        }),
      );
    const timer = setTimeout(
      () =>
        finish(
          new ProbeFailure(classifyProbeCode('FL_TLS_TIMEOUT', 'tls'), {
            code: 'FL_TLS_TIMEOUT',
            message: 'connected, but the TLS handshake did not finish before the timeout',
          }),
        ),
      clock.remainingMs(),
    );
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('secureConnect', onSecure);
    sock.once('error', onError);
  });
}

/**
 * Sends one request on a connected socket and reads the answer up to maxBodyBytes.
 *
 * The request is written straight to the socket and the answer parsed with http-parser-js,
 * not through `node:http`'s ClientRequest and IncomingMessage: a probe sends one request
 * and reads one response on a connection of its own, and the streams and events around
 * them cost 65–90 µs of CPU a request more than the parse (a loop of requests: the README's
 * agent benchmark, seventh pass) — at 1,000 http probes a second, a tenth of a core.
 */
function exchangeHttp(sock: Socket, req: WireRequest, settings: HopSettings): Promise<HopResponse> {
  const { clock, signal, options } = settings;
  return new Promise<HopResponse>((resolve, reject) => {
    let settled = false;
    let head: { status: number; httpVersion: string; headers: IncomingHttpHeaders } | undefined;
    /** The response whose headers came last is a 1xx: an interim one, before the real one. */
    let interim = false;
    let answered = false;
    const chunks: Buffer[] = [];
    let size = 0;
    const parser = new ResponseParser();
    const finish = (err: ProbeFailure | undefined, truncated = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      sock.removeListener('data', onData);
      sock.removeListener('end', onEnd);
      sock.removeListener('error', onError);
      if (err !== undefined) reject(err);
      else if (head === undefined) reject(new Error('finished without a response'));
      else resolve({ ...head, body: Buffer.concat(chunks, size), truncated });
    };
    const notHttp = (err: Error): void => {
      const failure = parseFailure(err);
      finish(new ProbeFailure(classifyCode(failure.code, 'exchange'), failure));
    };
    parser[HTTPParser.kOnHeadersComplete] = (info: HeaderInfo): number => {
      const status = info.statusCode;
      // 1xx (100 Continue, 103 Early Hints): the real response follows on the connection.
      interim = status >= 100 && status < 200 && status !== 101;
      if (interim) return 0;
      const headers = responseHeaders(info.headers);
      // The first Content-Length (the parser itself refuses a second that differs).
      const length = headers['content-length'];
      if (length !== undefined && !contentLengthValue.test(length))
        throw parseError('HPE_INVALID_CONTENT_LENGTH', 'Invalid character in Content-Length');
      head = { status, httpVersion: `${info.versionMajor}.${info.versionMinor}`, headers };
      // A HEAD response has no body whatever its headers say.
      return req.method === 'HEAD' ? 1 : 0;
    };
    parser[HTTPParser.kOnBody] = (chunk: Buffer, offset: number, length: number): void => {
      if (settled) return;
      const room = options.maxBodyBytes - size;
      if (length > room) {
        chunks.push(chunk.subarray(offset, offset + room));
        size += room;
        finish(undefined, true);
        return;
      }
      chunks.push(chunk.subarray(offset, offset + length));
      size += length;
    };
    parser[HTTPParser.kOnMessageComplete] = (): void => {
      if (interim) interim = false;
      else finish(undefined);
    };
    const onData = (data: Buffer): void => {
      if (!answered) {
        answered = true;
        clock.mark('firstByteMs', t);
      }
      let parsed: number | Error;
      try {
        parsed = parser.execute(data);
      } catch (err) {
        // A check of ours in a parser callback (the Content-Length above).
        notHttp(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (parsed instanceof Error) notHttp(parsed);
    };
    // The peer's FIN: the end of a body read to the close, or of an answer cut short.
    const onEnd = (): void => {
      if (parser.finish() === undefined && settled) return;
      finish(
        new ProbeFailure(classifyProbeCode('FL_PEER_CLOSED', 'exchange'), {
          code: 'FL_PEER_CLOSED',
          message:
            head === undefined
              ? 'the server closed the connection without answering'
              : 'the server closed the connection before the body was complete',
        }),
      );
    };
    const onError = (err: Error): void => {
      finish(new ProbeFailure(classifyConnectionError(err), rawError(err)));
    };
    const onAbort = (): void =>
      finish(
        new ProbeFailure(classifyProbeCode('FL_ABORTED', 'exchange', 'http'), {
          code: 'FL_ABORTED',
          message: 'probe aborted while waiting for the response',
        }),
      );
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onError);
    const timer = setTimeout(
      () =>
        finish(
          new ProbeFailure(
            classifyProbeCode('FL_HTTP_TIMEOUT', 'exchange', 'http'),
            {
              code: 'FL_HTTP_TIMEOUT',
              message:
                head === undefined
                  ? 'connected, but no response headers before the timeout'
                  : 'the response headers came, but the body was incomplete at the timeout',
            },
            head === undefined ? undefined : { status: head.status, bodyBytes: size },
          ),
        ),
      clock.remainingMs(),
    );
    signal.addEventListener('abort', onAbort, { once: true });
    const t = clock.now();
    if (req.body === undefined) sock.write(requestHead(req), 'latin1');
    else {
      // One segment: the head (latin1, as Node writes header values) and the body (UTF-8).
      sock.cork();
      sock.write(requestHead(req), 'latin1');
      sock.write(req.body, 'utf8');
      sock.uncork();
    }
  });
}

/** One request on a fresh connection. Phase timings add up across redirect hops. */
async function hop(req: WireRequest, settings: HopSettings): Promise<HopResponse> {
  const { clock, options, signal, detail } = settings;
  const before: Partial<Timings> = {};
  for (const p of phases) {
    before[p] = clock.timings[p];
    delete clock.timings[p];
  }
  delete detail.certificate;
  delete detail.tlsVersion;
  let raw: Socket | undefined;
  let tls: TLSSocket | undefined;
  try {
    const host = req.url.hostname.startsWith('[')
      ? req.url.hostname.slice(1, -1)
      : req.url.hostname;
    const https = req.url.protocol === 'https:';
    const port = req.url.port !== '' ? Number(req.url.port) : https ? 443 : 80;
    const ip = await resolveHost(host, options.ipFamily, clock);
    detail.ip = ip;
    raw = await connect(ip, port, clock, signal);
    raw.on('error', () => undefined);
    if (https) {
      tls = startTls(raw, host, settings);
      await secured(tls, settings);
      detail.tlsVersion = tls.getProtocol();
      const certificate = certificateFacts(tls);
      if (certificate !== undefined) {
        // Reported also when tlsVerify is off, so an untrusted certificate stays visible.
        certificate.trusted = tls.authorized;
        if (!tls.authorized) certificate.verifyError = String(tls.authorizationError);
        detail.certificate = certificate;
      }
      if (options.tlsVerify && !tls.authorized) {
        const code = String(tls.authorizationError ?? 'FL_TLS_UNTRUSTED');
        throw new ProbeFailure(classifyCode(code, 'tls'), {
          code,
          message: `the server's certificate failed verification (${code})`,
        });
      }
    }
    return await exchangeHttp(tls ?? raw, req, settings);
  } finally {
    // The reset goes first: destroying the TLS layer first would end the TCP socket with a FIN.
    if (raw !== undefined) abortConnection(raw);
    tls?.destroy();
    for (const p of phases) {
      const prev = before[p];
      const now = clock.timings[p];
      if (prev !== undefined) clock.timings[p] = now === undefined ? prev : prev + now;
    }
  }
}

function headerText(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** The request a redirect leads to, or a failure when it leads nowhere valid. */
function redirected(prev: WireRequest, status: number, location: string): WireRequest {
  let url: URL;
  try {
    url = new URL(location, prev.url);
  } catch {
    throw new ProbeFailure(classifyProbeCode('FL_HTTP_BAD_REDIRECT', 'exchange'), {
      code: 'FL_HTTP_BAD_REDIRECT',
      message: `redirect to an invalid URL: ${location.slice(0, 200)}`,
    });
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !isValidHost(host)) {
    throw new ProbeFailure(classifyProbeCode('FL_HTTP_BAD_REDIRECT', 'exchange'), {
      code: 'FL_HTTP_BAD_REDIRECT',
      message: `redirect to a URL that is not http(s) with a valid host: ${location.slice(0, 200)}`,
    });
  }
  url.hash = '';
  const headers: Record<string, string> = { ...prev.headers };
  if (url.origin !== prev.url.origin) {
    headers.host = url.host;
    for (const h of originBoundHeaders) delete headers[h];
  }
  // 303 always, and 301/302 after a POST (what every client does), turn into a GET.
  const toGet =
    prev.method !== 'HEAD' && (status === 303 || (prev.method === 'POST' && status <= 302));
  return { url, method: toGet ? 'GET' : prev.method, headers, body: toGet ? undefined : prev.body };
}

async function loadCa(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    throw new ConfigError(`http probe: caFile ${JSON.stringify(path)} cannot be read`, {
      code: 'FL_ERR_OPTIONS',
      cause,
    });
  }
}

function firstFailedAssertion(res: HopResponse, options: HttpOptions): string | undefined {
  for (const [name, re] of Object.entries(options.expectHeaders)) {
    const value = headerText(res.headers, name);
    if (value === undefined) return `header ${name} is missing`;
    if (!compileUserRegex(re).test(value)) return `header ${name} does not match /${re}/`;
  }
  const text = res.body.toString('utf8');
  if (options.expectBody !== undefined && !compileUserRegex(options.expectBody).test(text)) {
    return `body does not match expectBody /${options.expectBody}/`;
  }
  if (
    options.failIfBodyMatches !== undefined &&
    compileUserRegex(options.failIfBodyMatches).test(text)
  ) {
    return `body matches failIfBodyMatches /${options.failIfBodyMatches}/`;
  }
  return undefined;
}

/** HTTP(S) request with phase timings, status/body/header assertions and certificate facts. */
export const http: ProbeDefinition<HttpOptions> = {
  kind: 'http',
  transport: 'tcp',
  description:
    'HTTP(S) request on a fresh connection: dns/connect/tls/first-byte timings, status, body and header checks, certificate expiry',
  target: { form: 'url' },
  options: httpOptions,
  mainTiming: 'firstByteMs',
  // Phases only for http, as blackbox_exporter does.
  telemetry: { phaseHistograms: true, blackboxIp: (r) => r.detail?.ip, series: httpSeries },
  planCheck: {
    escapes: (options) =>
      options.followRedirects ? 'followRedirects could leave allowTargets' : undefined,
    refusal(options, permissions) {
      const method = options.method;
      if (!permissions.allowHttpMethods.includes(method))
        return `http method ${method} is refused: the agent allows ${permissions.allowHttpMethods.join(', ')} (allowHttpMethods)`;
      const custom = Object.keys(options.headers);
      if ((custom.length > 0 || options.body !== undefined) && !permissions.allowHttpHeaders)
        return `custom http headers or body (${custom.join(', ') || 'body'}) are refused: the agent's config does not allow them (allowHttpHeaders)`;
      return undefined;
    },
  },
  async run(target, options, ctx) {
    const clock = new ProbeClock(ctx.timeoutMs);
    const ca = options.caFile === undefined ? undefined : await loadCa(options.caFile);
    const start = target.url ?? new URL(target.address);
    const headers: Record<string, string> = { host: start.host, 'user-agent': 'faultline-probe' };
    for (const [k, v] of Object.entries(options.headers)) headers[k.toLowerCase()] = v;
    // Keep-alive so the server never closes first (its TIME_WAIT); we end with a reset.
    headers.connection = 'keep-alive';
    let req: WireRequest = { url: start, method: options.method, headers, body: options.body };
    const detail: Record<string, unknown> = { url: start.href, redirects: 0 };
    const settings: HopSettings = { options, ca, clock, signal: ctx.signal, detail };
    try {
      for (;;) {
        const res = await hop(req, settings);
        detail.status = res.status;
        detail.httpVersion = res.httpVersion;
        detail.bodyBytes = res.body.length;
        // As the server declared it (-1 when it did not: chunked, or read to the close).
        const length = headerText(res.headers, 'content-length');
        detail.contentLength =
          length !== undefined && contentLengthValue.test(length) ? Number(length) : -1;
        if (res.truncated) detail.truncated = true;
        const location = headerText(res.headers, 'location');
        if (redirectStatuses.has(res.status) && location !== undefined) {
          if (options.followRedirects) {
            if ((detail.redirects as number) >= options.maxRedirects) {
              throw new ProbeFailure(classifyProbeCode('FL_HTTP_TOO_MANY_REDIRECTS', 'exchange'), {
                code: 'FL_HTTP_TOO_MANY_REDIRECTS',
                message: `more than ${options.maxRedirects} redirects`,
              });
            }
            req = redirected(req, res.status, location);
            detail.redirects = (detail.redirects as number) + 1;
            detail.url = req.url.href;
            continue;
          }
          detail.location = location.slice(0, 2048);
        }
        if (!statusAllowed(res.status, options.validStatusCodes)) {
          return clock.outcome(classifyProbeCode('FL_HTTP_STATUS', 'exchange'), {
            error: {
              code: 'FL_HTTP_STATUS',
              message: `status ${res.status} is not one of ${options.validStatusCodes.join(', ')}`,
            },
            detail: { ...detail, bodyPreview: preview(res.body, 200) },
          });
        }
        const failed = firstFailedAssertion(res, options);
        if (failed !== undefined) {
          return clock.outcome(classifyProbeCode('FL_HTTP_ASSERTION', 'exchange'), {
            error: { code: 'FL_HTTP_ASSERTION', message: failed },
            detail: { ...detail, bodyPreview: preview(res.body, 200) },
          });
        }
        return clock.outcome('ok', { detail });
      }
    } catch (err) {
      if (err instanceof ProbeFailure) {
        return clock.outcome(err.failureClass, {
          error: err.raw,
          detail: { ...detail, ...err.detail },
        });
      }
      throw err;
    }
  },
};
