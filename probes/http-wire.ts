// The HTTP/1.1 wire of the http probe: the request head it writes and the answer's parse
// (http-parser-js, held to llhttp's rules where it is more lenient), apart from the probe's
// timing and classification (probes/http.ts).
import type { IncomingHttpHeaders } from 'node:http';
import { HTTPParser } from 'http-parser-js';

/** What a request head is written from. */
export interface WireRequest {
  readonly url: URL;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

/**
 * Response headers that Node's `IncomingMessage.headers` keeps only the first of when a
 * server repeats them; other repeated headers are joined with ", " (`set-cookie` is a list).
 * The probe reads headers the way a Node client would.
 */
const firstOnlyHeaders = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/** The parser's flat [name, value, …] list as a header object keyed by lowercased name. */
export function responseHeaders(raw: readonly string[]): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prev = headers[name];
    if (prev === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prev)) prev.push(value);
    else if (!firstOnlyHeaders.has(name)) headers[name] = `${prev}, ${value}`;
  }
  return headers;
}

/**
 * The request line and headers, as Node's client would write them for these headers: the
 * probe's own (host, user-agent, connection) and the user's, in that order, and a
 * Content-Length for a body (and for a POST without one).
 */
export function requestHead(req: WireRequest): string {
  let head = `${req.method} ${req.url.pathname}${req.url.search} HTTP/1.1\r\n`;
  for (const name in req.headers) head += `${name}: ${req.headers[name]}\r\n`;
  if (req.body !== undefined) head += `content-length: ${Buffer.byteLength(req.body)}\r\n`;
  else if (req.method === 'POST') head += 'content-length: 0\r\n';
  return `${head}\r\n`;
}

/** A Content-Length the response may carry: digits only (llhttp's rule; a sign or a space is not HTTP). */
export const contentLengthValue = /^\d{1,15}$/;

/** A parse error of ours, coded as llhttp codes its own (`HPE_*`): what came back is not HTTP. */
export function parseError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** What each parse error says of the server's answer (http-parser-js says only "Parse Error"). */
const parseFailures: Readonly<Record<string, string>> = {
  HPE_INVALID_CONSTANT:
    'it does not start with an HTTP/1.x status line: another protocol answers on this port (TLS? then the URL wants https://)',
  HPE_LF_EXPECTED: 'a line of its headers holds a bare CR',
  HPE_INVALID_CONTENT_LENGTH: 'its Content-Length is not a number',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'it declares two different Content-Lengths',
  HPE_INVALID_HEADER_TOKEN: 'a line of its headers has no name and colon',
  HPE_HEADER_OVERFLOW: 'its status line and headers run past 80 kB',
};

/**
 * A parse error — the library's, returned or thrown, or one of ours — as the probe reports it:
 * llhttp's code (the library leaves the header limit and its own faults uncoded) and what the
 * answer got wrong, for whoever reads the failed probe.
 */
export function parseFailure(err: Error): { code: string; message: string } {
  const given = (err as { code?: unknown }).code;
  const code =
    typeof given === 'string'
      ? given
      : err.message.includes('max header size')
        ? 'HPE_HEADER_OVERFLOW'
        : 'HPE_INTERNAL';
  return {
    code,
    message: `the server's answer is not valid HTTP: ${parseFailures[code] ?? err.message}`,
  };
}

/** A header line as llhttp takes one: a token and a colon, or an obs-fold continuation. */
const headerLine = /^(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:|[ \t])/;

/**
 * http-parser-js with llhttp's rule for header lines: it skips a line that is not a header,
 * where llhttp (and Go's client, blackbox_exporter's) calls the answer malformed.
 */
export class ResponseParser extends HTTPParser {
  constructor() {
    super(HTTPParser.RESPONSE);
  }

  override parseHeader(line: string, headers: string[]): void {
    if (!headerLine.test(line))
      throw parseError('HPE_INVALID_HEADER_TOKEN', 'Invalid header token');
    super.parseHeader(line, headers);
  }
}
