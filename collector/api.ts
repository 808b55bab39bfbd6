import { FaultlineError, errorCodeOf } from '../lib/errors.js';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { Server as HttpsServer } from 'node:https';
import { Transform } from 'node:stream';
import type { Readable, TransformCallback } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';
import Fastify, { LogController } from 'fastify';
import type {
  FastifyBodyParser,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  configErrorMap,
  formatConfigPath,
  knownKeysAt,
  unknownKeyMessage,
} from '../lib/config-file.js';
import { ApiError, notFound } from '../wire/errors.js';
import { fastCheck } from '../wire/fast-check.js';
import { ReportBatchSchema, agentVersionOf } from '../wire/report.js';
import type { ReportAck, ReportBatch } from '../wire/report.js';
import { createTokenAuth, digestOf, forbiddenReason } from './auth.js';
import type { AuthResult, Credential, TokenAuth, TokenEntry } from './auth.js';
import { TokenBuckets } from './rate-limit.js';
import type { RateLimit } from './rate-limit.js';
import type { CollectorCore, PathFilter, ReportBody } from './types.js';
import {
  defaultConnectionLimits,
  guardConnections,
  serverTimeoutOptions,
  type ConnectionLimits,
} from './connection-guard.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** A report's body as received (POST /api/v1/reports): what the store keeps. */
    reportBody: ReportBody | null;
  }
}

/**
 * The collector's HTTP API, versioned under /api/v1. Agent endpoints (reports, plan) need an
 * agent's bearer token; the read endpoints (paths, agents, diagnosis, incidents) need a
 * viewer token, never an agent's, unless `readAccess: 'open'` — and even then agent ids and
 * sequence numbers (what a forged report needs) are shown only to a viewer token. /metrics and
 * /healthz are open and hold neither. Every error answers `{ error: { code, message, … } }`
 * with a stable `FL_ERR_*` code and its status (wire/errors.ts).
 */

/** Options of {@link buildApi}. */
export interface ApiOptions {
  /** Agent tokens; a revoked one is refused with 403 naming it. */
  readonly tokens: readonly TokenEntry[];
  /** Viewer tokens, for the read endpoints; a revoked one is refused with 403 naming it. */
  readonly viewers?: readonly TokenEntry[];
  /**
   * `token` (the default): the read endpoints need a viewer token. `open`: anyone may read,
   * but /agents leaves out agent ids and sequence numbers unless a viewer token is sent.
   * Either way a token that is sent must be a viewer's: an agent's is refused with 403.
   */
  readonly readAccess?: 'token' | 'open';
  /** Largest report body in bytes, applied to the compressed and to the decompressed body. */
  readonly maxReportBytes: number;
  /** Largest `results` (and `summaries`) array in one batch; the schema's own cap otherwise. */
  readonly maxResultsPerBatch?: number;
  /** Serve HTTPS with this certificate and key (PEM text). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Request lines are logged at debug only; server errors at error. Silent when absent. */
  readonly log?: Logger;
  /** Prometheus text for `GET /metrics`; the route answers 404 when absent. */
  readonly metricsHandler?: () => Promise<string>;
  /** Per-credential limits of plan and enrol requests (defaults: {@link defaultRateLimits}). */
  readonly rateLimits?: Partial<RateLimits>;
  /** Connection cap and header/keep-alive timeouts; `defaultConnectionLimits` when absent. */
  readonly connections?: ConnectionLimits;
  /**
   * More routes (the dashboard's, collector/dashboard.ts), given the read check and the 405
   * bookkeeping so they answer like these.
   */
  readonly routes?: (app: FastifyInstance, ctx: ExtraRouteContext) => void;
}

/** What {@link ApiOptions.routes} is lent. */
export interface ExtraRouteContext {
  /** The read endpoints' hook: a viewer token, or none when reading is open. */
  readonly readHook: { onRequest: (request: FastifyRequest) => Promise<void> };
  /** Records a route's path and method (for 405 answers); returns the path. */
  readonly known: (method: 'GET' | 'POST', url: string) => string;
}

/** Token buckets per credential (429 FL_ERR_RATE + Retry-After beyond them). */
export interface RateLimits {
  /** Plan requests of a credential for one agent (an enrolled one, or a token naming one). */
  readonly planOwn: RateLimit;
  /** Plan requests of a credential for many agents (a fleet or a group token): a whole fleet restarting at once. */
  readonly planShared: RateLimit;
  /** Enrolments per bootstrap token. */
  readonly enrol: RateLimit;
}

export const defaultRateLimits: RateLimits = Object.freeze({
  planOwn: { burst: 20, perSecond: 1 },
  planShared: { burst: 5000, perSecond: 200 },
  enrol: { burst: 1000, perSecond: 20 },
});

/** Largest enrolment body: two names. */
const maxEnrolBytes = 4096;

/** JSON nested deeper than this is refused before parsing (JSON.stringify recurses). */
export const maxJsonDepth = 64;

/** A slow or stalled client may hold a request this long. */
const requestTimeoutMs = 60_000;

const maxListedIssues = 5;
const maxReturnedIssues = 20;

const agentNameSchema = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, {
  error: 'expected an agent name: 1–128 letters, digits, ".", "_", ":" or "-"',
});

const EnrolBodySchema = z
  .object({
    agent: ReportBatchSchema.shape.agent,
    agentId: ReportBatchSchema.shape.agentId,
  })
  .strict();

const PlanQuerySchema = z
  .object({
    agent: agentNameSchema,
    /** `k=v,k2=v2`, parsed by parseLabels. */
    labels: z.string().max(8192).optional(),
  })
  .strict();

const pathStates = ['ok', 'failing', 'degraded', 'unknown'] as const;

const PathsQuerySchema = z
  .object({
    agent: agentNameSchema.optional(),
    component: z
      .string()
      .regex(/^\P{Cc}{1,128}$/u, { error: 'expected a component name (1–128 characters)' })
      .optional(),
    kind: z
      .string()
      .regex(/^[a-z0-9_-]{1,32}$/, { error: 'expected a probe kind such as tcp or postgres' })
      .optional(),
    state: z.enum(pathStates).optional(),
  })
  .strict();

const AgentsQuerySchema = z.object({}).strict();

const DiagnosisQuerySchema = z.object({}).strict();

const incidentIdText = z
  .string()
  .regex(/^[1-9][0-9]{0,14}$/, { error: 'expected an incident id (a positive integer)' });

const IncidentsQuerySchema = z
  .object({
    limit: z
      .string()
      .regex(/^[1-9][0-9]{0,3}$/, { error: 'expected a number of incidents from 1 to 1000' })
      .refine((v) => Number(v) <= 1000, { error: 'expected a number of incidents from 1 to 1000' })
      .optional(),
    before: incidentIdText.optional(),
  })
  .strict();

const IncidentParamsSchema = z.object({ id: incidentIdText }).strict();

/** One problem of a request, for the `issues` list of an error body. */
export interface ApiIssue {
  readonly path: string;
  readonly message: string;
}

function showScalar(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 39)}…` : value);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) {
    return JSON.stringify(value);
  }
  return undefined;
}

/**
 * zod issues as `path: message` lines, unknown keys one per line with a "did you mean".
 * Values are shown JSON-escaped and cut short (never raw), and only scalars.
 */
export function describeIssues(
  issues: readonly z.core.$ZodIssue[],
  schema: z.core.$ZodType,
): ApiIssue[] {
  const out: ApiIssue[] = [];
  for (const iss of issues) {
    if (out.length >= maxReturnedIssues) break;
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, iss.path);
      for (const key of iss.keys) {
        out.push({
          path: formatConfigPath([...iss.path, key]),
          message: unknownKeyMessage(key, known),
        });
      }
      continue;
    }
    let message = iss.message;
    if (iss.code === 'invalid_type' && iss.input === undefined) message = 'missing';
    else {
      const actual = showScalar(iss.input);
      if (actual !== undefined) message += ` (actual: ${actual})`;
    }
    out.push({ path: formatConfigPath(iss.path), message });
  }
  return out;
}

/** "results[3].class: expected one of: ok, …; seq: missing (and 4 more)". */
export function summariseIssues(issues: readonly ApiIssue[], total: number): string {
  const lines = issues
    .slice(0, maxListedIssues)
    .map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`));
  const more = total - Math.min(issues.length, maxListedIssues);
  return `${lines.join('; ')}${more > 0 ? ` (and ${more} more)` : ''}`;
}

function countIssues(issues: readonly z.core.$ZodIssue[]): number {
  return issues.reduce((n, i) => n + (i.code === 'unrecognized_keys' ? i.keys.length : 1), 0);
}

export function parseQuery<T>(schema: z.ZodType<T>, query: unknown): T {
  const parsed = schema.safeParse(query ?? {}, { error: configErrorMap, reportInput: true });
  if (parsed.success) return parsed.data;
  const issues = describeIssues(parsed.error.issues, schema);
  throw new ApiError(
    'FL_ERR_BAD_REQUEST',
    `invalid query: ${summariseIssues(issues, countIssues(parsed.error.issues))}`,
    { issues },
  );
}

const labelNameRe = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const labelValueRe = /^[^\p{Cc},=]{1,256}$/u;

/**
 * Parses the `labels` query parameter strictly: `k=v,k2=v2`, names as in the agent config
 * (letters, digits, "_"; "__" reserved), values without control characters, "," or "=".
 * Throws ApiError FL_ERR_BAD_REQUEST naming the bad pair; its `reason.why` without the
 * query's framing.
 */
export function parseLabels(text: string): Record<string, string> {
  const entries: [string, string][] = [];
  if (text === '') return {};
  const seen = new Set<string>();
  const bad = (why: string): never => {
    throw new ApiError(
      'FL_ERR_BAD_REQUEST',
      `invalid query: labels: ${why}`,
      {},
      {},
      {
        reason: { field: 'labels', why },
      },
    );
  };
  for (const [i, pair] of text.split(',').entries()) {
    const eq = pair.indexOf('=');
    if (eq < 0) bad(`pair ${i + 1} ${showScalar(pair)} is not name=value`);
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!labelNameRe.test(name) || name.startsWith('__')) {
      bad(
        `invalid label name ${showScalar(name)}: letters, digits and "_", not starting with a digit or "__"`,
      );
    }
    if (!labelValueRe.test(value)) {
      bad(
        `invalid value for ${JSON.stringify(name)}: 1–256 characters, no control characters, "," or "="`,
      );
    }
    if (seen.has(name)) bad(`duplicate label ${JSON.stringify(name)}`);
    seen.add(name);
    entries.push([name, value]);
  }
  return Object.fromEntries(entries);
}

/** The ETag of a plan version: the version itself when it is a valid entity tag. */
export function etagFor(version: string): string {
  return /^[\x21\x23-\x7e]{1,128}$/.test(version)
    ? `"${version}"`
    : `"${createHash('sha256').update(version).digest('hex').slice(0, 32)}"`;
}

/** RFC 9110 If-None-Match: weak comparison, `*` matches any current representation. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/** Where a JSON text first breaks the grammar (character offset, 1-based line and column). */
export interface JsonErrorLocation {
  readonly position: number;
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/**
 * Finds the first syntax error of a JSON text, or undefined when it is valid JSON. Only run
 * once JSON.parse has failed: V8's messages do not always give a position, and some quote
 * the whole input. Iterative, so hostile nesting cannot overflow the stack.
 */
export function locateJsonError(text: string): JsonErrorLocation | undefined {
  const n = text.length;
  const fail = (position: number, expected: string): JsonErrorLocation => {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < position && k < n; k++) {
      if (text.charCodeAt(k) === 0x0a) {
        line++;
        lineStart = k + 1;
      }
    }
    const found = position >= n ? 'the end of the body' : JSON.stringify(text[position]);
    return {
      position,
      line,
      column: position - lineStart + 1,
      message: `${expected}, found ${found}`,
    };
  };

  /** Index after the closing quote, or the error. */
  const scanString = (start: number): number | JsonErrorLocation => {
    let j = start + 1;
    for (;;) {
      if (j >= n) return fail(j, 'expected the closing quote of a string');
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      if (c < 0x20) return fail(j, 'expected an escape instead of a raw control character');
      if (c === 0x5c) {
        const e = text[j + 1];
        if (e !== undefined && '"\\/bfnrt'.includes(e)) j += 2;
        else if (e === 'u') {
          for (let h = j + 2; h < j + 6; h++) {
            if (!isHex(text.charCodeAt(h))) return fail(h, 'expected 4 hex digits after \\u');
          }
          j += 6;
        } else return fail(j + 1, 'expected a valid escape after "\\"');
      } else j++;
    }
  };

  const scanDigits = (start: number): number | JsonErrorLocation => {
    if (!isDigit(text.charCodeAt(start))) return fail(start, 'expected a digit');
    let j = start;
    while (isDigit(text.charCodeAt(j))) j++;
    return j;
  };

  const scanNumber = (start: number): number | JsonErrorLocation => {
    let j = start;
    if (text[j] === '-') j++;
    if (text[j] === '0') j++;
    else {
      const r = scanDigits(j);
      if (typeof r !== 'number') return r;
      j = r;
    }
    if (text[j] === '.') {
      const r = scanDigits(j + 1);
      if (typeof r !== 'number') return r;
      j = r;
    }
    if (text[j] === 'e' || text[j] === 'E') {
      j++;
      if (text[j] === '+' || text[j] === '-') j++;
      const r = scanDigits(j);
      if (typeof r !== 'number') return r;
      j = r;
    }
    return j;
  };

  const scanLiteral = (start: number): number | JsonErrorLocation => {
    const word = ['true', 'false', 'null'].find((w) => w[0] === text[start]);
    if (word === undefined) return fail(start, 'expected a value');
    for (let k = 0; k < word.length; k++) {
      if (text[start + k] !== word[k]) return fail(start + k, `expected ${word}`);
    }
    return start + word.length;
  };

  type Expect = 'value' | 'valueOrClose' | 'key' | 'keyOrClose' | 'colon' | 'after';
  const stack: ('{' | '[')[] = [];
  let state: Expect = 'value';
  let i = 0;
  for (;;) {
    while (i < n && isWs(text.charCodeAt(i))) i++;
    const top = stack[stack.length - 1];
    if (state === 'after' && top === undefined) {
      return i < n ? fail(i, 'expected nothing after the JSON value') : undefined;
    }
    const ch = text[i];
    let next: number | JsonErrorLocation;
    if (state === 'colon') {
      if (ch !== ':') return fail(i, 'expected ":" after the property name');
      next = i + 1;
      state = 'value';
    } else if (state === 'after') {
      if (ch === ',') {
        next = i + 1;
        state = top === '{' ? 'key' : 'value';
      } else if ((top === '{' && ch === '}') || (top === '[' && ch === ']')) {
        stack.pop();
        next = i + 1;
      } else return fail(i, top === '{' ? 'expected "," or "}"' : 'expected "," or "]"');
    } else if (state === 'keyOrClose' && ch === '}') {
      stack.pop();
      next = i + 1;
      state = 'after';
    } else if (state === 'key' || state === 'keyOrClose') {
      if (ch !== '"') return fail(i, 'expected a property name in double quotes');
      next = scanString(i);
      state = 'colon';
    } else if (state === 'valueOrClose' && ch === ']') {
      stack.pop();
      next = i + 1;
      state = 'after';
    } else if (ch === '{') {
      stack.push('{');
      next = i + 1;
      state = 'keyOrClose';
    } else if (ch === '[') {
      stack.push('[');
      next = i + 1;
      state = 'valueOrClose';
    } else {
      if (ch === '"') next = scanString(i);
      else if (ch === '-' || isDigit(text.charCodeAt(i))) next = scanNumber(i);
      else if (ch === undefined) return fail(i, 'expected a value');
      else next = scanLiteral(i);
      state = 'after';
    }
    if (typeof next !== 'number') return next;
    i = next;
  }
}

/** Whether `[`/`{` nest deeper than `max` (strings skipped); a byte scan, no parse. */
export function jsonDepthExceeds(body: Uint8Array, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const b = body[i] as number;
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > max) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(
    'FL_ERR_TOO_LARGE',
    `the report body exceeds ${maxBytes} bytes (the limit applies after decompression too): send smaller batches`,
  );
}

/** The FL_ERR_BAD_ENCODING answer to a body zlib could not inflate. */
function badGzip(err: NodeJS.ErrnoException): ApiError {
  return new ApiError(
    'FL_ERR_BAD_ENCODING',
    `the body is not valid gzip (${err.code ?? 'error'}: ${err.message})`,
    {},
    {},
    { cause: err },
  );
}

/**
 * Inflates a gzip body read whole, failing with 413 as soon as the output passes
 * `maxBytes` (zlib stops there), or 400 when it is not gzip. One call into zlib: for the
 * few kilobytes of a report batch, streaming through three transforms and libuv's thread
 * pool cost more than the inflating itself.
 */
export function inflateWhole(body: Buffer, maxBytes: number): Buffer {
  try {
    return gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if (errorCodeOf(err) === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(maxBytes);
    throw badGzip(err as NodeJS.ErrnoException);
  }
}

/**
 * Whether a gzip body is read whole and inflated in one call (then kept compressed for the
 * store): when its length is known, as agents send it. One of unknown length is inflated as
 * it streams, so a gzip bomb stops being read at the limit.
 */
function inflatesWhole(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return (
    contentCoding(request.headers['content-encoding']) === 'gzip' &&
    length !== undefined &&
    length !== ''
  );
}

/** A stream with the compressed byte count fastify checks against content-length. */
type CountedStream = Transform & { receivedEncodedLength: number };

/**
 * Gunzips `source`, failing with 413 as soon as the output passes `maxBytes`. Destroying
 * the inflater stops it there, so a gzip bomb costs about `maxBytes`, never its full size.
 * The request itself is only unpiped, not destroyed, so the 413 can still be sent.
 */
export function inflateLimited(source: Readable, maxBytes: number): CountedStream {
  let inflatedBytes = 0;
  const output = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      inflatedBytes += chunk.length;
      if (inflatedBytes > maxBytes) cb(tooLarge(maxBytes));
      else cb(null, chunk);
    },
  }) as CountedStream;
  output.receivedEncodedLength = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      output.receivedEncodedLength += chunk.length;
      cb(null, chunk);
    },
  });
  const gunzip = createGunzip();
  gunzip.once('error', (err: NodeJS.ErrnoException) => output.destroy(badGzip(err)));
  source.once('error', (err) => output.destroy(err));
  source.once('close', () => {
    if (!source.readableEnded) output.destroy(new Error('request aborted by the client'));
  });
  output.once('close', () => {
    source.unpipe(counter);
    counter.destroy();
    gunzip.destroy();
  });
  source.pipe(counter).pipe(gunzip).pipe(output);
  return output;
}

/**
 * The `faultline-backlog` header of a report: how many batches the agent has spooled behind
 * this one (0 when absent). An agent replaying a backlog is late until it has caught up.
 */
function backlogOf(request: FastifyRequest): number {
  const raw = request.headers['faultline-backlog'];
  if (raw === undefined) return 0;
  if (typeof raw !== 'string' || !/^[0-9]{1,9}$/.test(raw)) {
    throw new ApiError(
      'FL_ERR_BAD_REQUEST',
      `faultline-backlog: expected the number of batches spooled behind this one, a whole number (actual: ${JSON.stringify(String(raw).slice(0, 100))})`,
      {},
      { connection: 'close' },
    );
  }
  return Number(raw);
}

function mediaType(header: string | undefined): string {
  return (header ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
}

/** 'identity', 'gzip', or the unsupported coding as sent. */
function contentCoding(header: string | undefined): string {
  const c = (header ?? '').trim().toLowerCase();
  if (c === '' || c === 'identity') return 'identity';
  return c === 'gzip' || c === 'x-gzip' ? 'gzip' : c;
}

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('statusCode' in err)) return undefined;
  return typeof err.statusCode === 'number' ? err.statusCode : undefined;
}

/** Any error thrown inside a request, as the API's answer. */
function toApiError(err: unknown, maxReportBytes: number, requestId: string): ApiError {
  if (err instanceof ApiError) return err;
  switch (errorCodeOf(err)) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return tooLarge(maxReportBytes);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('FL_ERR_MEDIA_TYPE', 'expected content-type application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ApiError('FL_ERR_BAD_REQUEST', 'content-length does not match the body');
    default:
      break;
  }
  const status = statusOf(err);
  if (status !== undefined && status >= 400 && status < 500) {
    const message = err instanceof Error ? err.message : 'bad request';
    return new ApiError('FL_ERR_BAD_REQUEST', message);
  }
  return new ApiError(
    'FL_ERR_INTERNAL',
    `internal error; the collector log has the details (request ${requestId})`,
    { requestId },
  );
}

/** The 503s of an overloaded collector, one per Retry-After (1–3 s, picked at random). */
const overloadedErrors: readonly ApiError[] = [1, 2, 3].map(
  (retryAfterS) =>
    new ApiError(
      'FL_ERR_OVERLOADED',
      `the collector is overloaded: retry in ${retryAfterS} s`,
      { retryAfterS },
      { 'retry-after': String(retryAfterS) },
    ),
);

function sendError(reply: FastifyReply, err: ApiError): FastifyReply {
  return reply
    .code(err.statusCode)
    .headers(err.headers)
    .send({ error: { code: err.code, message: err.message, ...err.extra } });
}

/** Request lines at debug: at 2,000 agents × 1 req/s, info would drown everything else. */
class DebugRequestLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (error) {
      reply.log.error(
        { res: reply, err: error, responseTime: reply.elapsedTime },
        'request errored',
      );
    } else {
      reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
    }
  }
}

function batchCounts(body: unknown): { results: number; summaries: number } {
  if (typeof body !== 'object' || body === null) return { results: 0, summaries: 0 };
  const b = body as { results?: unknown; summaries?: unknown };
  return {
    results: Array.isArray(b.results) ? b.results.length : 0,
    summaries: Array.isArray(b.summaries) ? b.summaries.length : 0,
  };
}

/** Ajv's compiled check of a report batch: zod's verdict at a tenth of its cost. */
const reportIsValid = fastCheck(ReportBatchSchema);

/** The body as a report batch, or FL_ERR_INVALID_REPORT naming every problem (zod's words). */
function validReport(body: unknown): ReportBatch {
  if (reportIsValid(body)) return body;
  const parsed = ReportBatchSchema.safeParse(body, { error: configErrorMap, reportInput: true });
  if (parsed.success) return parsed.data;
  const issues = describeIssues(parsed.error.issues, ReportBatchSchema);
  throw new ApiError(
    'FL_ERR_INVALID_REPORT',
    `invalid report batch: ${summariseIssues(issues, countIssues(parsed.error.issues))}`,
    { issues },
  );
}

/**
 * Builds the API on `core` (not listening: the caller calls `listen`). Throws ConfigError on
 * an invalid token list.
 */
export function buildApi(core: CollectorCore, opts: ApiOptions): FastifyInstance {
  const auth: TokenAuth = createTokenAuth(opts.tokens, (digest) => core.enrolled(digest));
  const rates = { ...defaultRateLimits, ...opts.rateLimits };
  const planOwnBuckets = new TokenBuckets(rates.planOwn);
  const planSharedBuckets = new TokenBuckets(rates.planShared);
  const enrolBuckets = new TokenBuckets(rates.enrol);
  const admit = (buckets: TokenBuckets, c: Credential, what: string): void => {
    const a = buckets.take(c.id);
    if (a.ok) return;
    throw new ApiError(
      'FL_ERR_RATE',
      `too many ${what} requests for ${c.label}: retry in ${a.retryAfterS} s`,
      { retryAfterS: a.retryAfterS },
      { 'retry-after': String(a.retryAfterS) },
    );
  };
  const viewerAuth: TokenAuth = createTokenAuth(opts.viewers ?? []);
  const readAccess = opts.readAccess ?? 'token';
  const maxBytes = opts.maxReportBytes;
  const warnedRevoked = new Set<string>();

  const limits = opts.connections ?? defaultConnectionLimits;
  const timeouts = serverTimeoutOptions(limits);
  const base: FastifyServerOptions = {
    bodyLimit: maxBytes,
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    logController: new DebugRequestLog(),
    frameworkErrors: (err, request, reply) => {
      sendError(reply, toApiError(err, maxBytes, String(request.id)));
    },
    ...(opts.log === undefined ? { logger: false } : { loggerInstance: opts.log }),
  };
  // The https overload types the instance with https.Server; callers only listen, inject
  // and close, which are the same on both.
  const app = (opts.tls === undefined
    ? Fastify({ ...base, http: timeouts })
    : Fastify({
        ...(base as unknown as FastifyServerOptions<HttpsServer>),
        https: {
          ...timeouts,
          handshakeTimeout: limits.headersTimeoutMs,
          cert: opts.tls.cert,
          key: opts.tls.key,
        },
      })) as unknown as FastifyInstance;
  guardConnections(app.server, limits.maxConnections);

  /** Path → methods, for telling 405 from 404. */
  const routes = new Map<string, string[]>();
  const known = (method: 'GET' | 'POST', url: string): string => {
    const methods = routes.get(url) ?? [];
    methods.push(...(method === 'GET' ? ['GET', 'HEAD'] : [method]));
    routes.set(url, methods);
    return url;
  };

  app.setErrorHandler((err: unknown, request, reply) => {
    const apiErr = toApiError(err, maxBytes, String(request.id));
    if (apiErr.statusCode >= 500 && apiErr.code === 'FL_ERR_INTERNAL') {
      request.log.error({ err }, 'request failed');
    } else {
      request.log.debug({ code: apiErr.code, statusCode: apiErr.statusCode }, apiErr.message);
    }
    return sendError(reply, apiErr);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    const shown = JSON.stringify(path.length > 200 ? `${path.slice(0, 199)}…` : path);
    const methods = routes.get(path);
    if (methods !== undefined) {
      return sendError(
        reply,
        new ApiError(
          'FL_ERR_METHOD',
          `${request.method} is not allowed on ${shown}: use ${methods.join(' or ')}`,
          {},
          { allow: methods.join(', ') },
        ),
      );
    }
    return sendError(reply, notFound('endpoint', `no such endpoint: ${shown}`));
  });

  /** Throws unless the request carries an active token; returns its credential. */
  const requireToken = (request: FastifyRequest): Credential => {
    const result = auth.check(request.headers.authorization);
    if (result.status === 'ok') return result.credential;
    throw refusal(result);
  };

  /** The answer to a request whose token did not pass (agent or viewer list alike). */
  const refusal = (result: Exclude<AuthResult, { status: 'ok' }>): ApiError => {
    // Connection: close — an unauthenticated client's body is not worth draining.
    const refuse = { connection: 'close', 'www-authenticate': 'Bearer realm="faultline"' };
    switch (result.status) {
      case 'missing':
        return new ApiError(
          'FL_ERR_AUTH',
          'missing bearer token: send "Authorization: Bearer <token>"',
          {},
          refuse,
        );
      case 'malformed':
        return new ApiError(
          'FL_ERR_AUTH',
          'malformed Authorization header: expected "Bearer <token>"',
          {},
          refuse,
        );
      case 'unknown':
        return new ApiError('FL_ERR_AUTH', 'unknown token', {}, refuse);
      case 'revoked':
        if (!warnedRevoked.has(result.name)) {
          warnedRevoked.add(result.name);
          app.log.warn({ token: result.name }, 'a client still uses a revoked token');
        }
        return new ApiError(
          'FL_ERR_TOKEN_REVOKED',
          `token '${result.name}' is revoked`,
          {},
          {
            connection: 'close',
          },
        );
    }
  };

  /**
   * Who is reading: 'viewer' with a viewer token, 'anyone' with no token when reading is
   * open. Throws 401 for a missing (unless open), malformed or unknown token, 403
   * FL_ERR_FORBIDDEN for an agent's token (a stolen agent token must not map the fleet), 403
   * FL_ERR_TOKEN_REVOKED for a revoked viewer token. A token that is sent is checked even
   * when reading is open, so a wrong one is noticed rather than silently read as no token.
   */
  const readerOf = (request: FastifyRequest): 'viewer' | 'anyone' => {
    const header = request.headers.authorization;
    const result = viewerAuth.check(header);
    if (result.status === 'ok') return 'viewer';
    if (result.status === 'missing' && readAccess === 'open') return 'anyone';
    if (result.status === 'unknown') {
      const asAgent = auth.check(header).status;
      if (asAgent === 'ok' || asAgent === 'revoked') {
        throw new ApiError(
          'FL_ERR_FORBIDDEN',
          "agent tokens cannot read; use a viewer token (the collector config's viewers)",
        );
      }
    }
    throw refusal(result);
  };
  const readHook = { onRequest: async (request: FastifyRequest) => void readerOf(request) };

  /** Throws unless the request carries a credential that reports (not a bootstrap token). */
  const requireAgentToken = (request: FastifyRequest): Credential => {
    const credential = requireToken(request);
    if (credential.role === 'bootstrap') {
      throw new ApiError(
        'FL_ERR_ENROL_REQUIRED',
        `${credential.label} is a bootstrap token: enrol first: POST /api/v1/enrol with {"agent", "agentId"}, then report with the token it returns`,
        {},
        { connection: 'close' },
      );
    }
    return credential;
  };

  const credentials = new WeakMap<FastifyRequest, Credential>();

  // Only the report route takes a body; its JSON parser lives in its own scope below.
  app.removeAllContentTypeParsers();

  const defaultJsonParse: FastifyBodyParser<string> = app.getDefaultJsonParser('error', 'error');

  void app.register(async (scope) => {
    scope.decorateRequest('reportBody', null);
    scope.addContentTypeParser(
      'application/json',
      { parseAs: 'buffer', bodyLimit: maxBytes },
      (request, received: Buffer, done) => {
        let body = received;
        const gzip = inflatesWhole(request);
        if (gzip) {
          try {
            body = inflateWhole(received, maxBytes);
          } catch (err) {
            done(err as Error);
            return;
          }
        }
        request.reportBody = { bytes: received, gzip };
        if (body.length === 0) {
          done(new ApiError('FL_ERR_INVALID_JSON', 'empty body: expected a JSON report batch'));
          return;
        }
        if (jsonDepthExceeds(body, maxJsonDepth)) {
          done(
            new ApiError('FL_ERR_INVALID_JSON', `JSON nested deeper than ${maxJsonDepth} levels`),
          );
          return;
        }
        const text = body.toString('utf8');
        // secure-json-parse (fastify's own parser) refuses __proto__ and
        // constructor.prototype keys, on the gzip path too since it parses the inflated text.
        void defaultJsonParse(request, text, (err, value) => {
          if (err === null) {
            done(null, value);
            return;
          }
          const where = locateJsonError(text);
          done(
            where === undefined
              ? new ApiError(
                  'FL_ERR_INVALID_JSON',
                  'the body holds a forbidden key ("__proto__", or "constructor" with "prototype"): refused as a prototype-pollution attempt',
                )
              : new ApiError(
                  'FL_ERR_INVALID_JSON',
                  `malformed JSON at line ${where.line}, column ${where.column}: ${where.message}`,
                  { line: where.line, column: where.column, position: where.position },
                ),
          );
        });
      },
    );

    scope.post(known('POST', '/api/v1/reports'), {
      onRequest: async (request, reply) => {
        credentials.set(request, requireAgentToken(request));
        // Answered here, before the body is read, with an error made once: under overload a
        // refusal must cost next to nothing.
        if (core.overloaded()) return sendError(reply, overloadedErrors[randomInt(0, 3)]!);
        const type = mediaType(request.headers['content-type']);
        if (type !== 'application/json') {
          throw new ApiError(
            'FL_ERR_MEDIA_TYPE',
            `expected content-type application/json (actual: ${JSON.stringify(type.slice(0, 100))})`,
            {},
            { connection: 'close' },
          );
        }
        backlogOf(request);
        const coding = contentCoding(request.headers['content-encoding']);
        if (coding !== 'identity' && coding !== 'gzip') {
          throw new ApiError(
            'FL_ERR_MEDIA_TYPE',
            `unsupported content-encoding ${JSON.stringify(coding.slice(0, 100))}: send gzip or identity`,
            {},
            { connection: 'close' },
          );
        }
      },
      preParsing: async (request, _reply, payload) =>
        contentCoding(request.headers['content-encoding']) === 'gzip' && !inflatesWhole(request)
          ? inflateLimited(payload, maxBytes)
          : payload,
      handler: async (request): Promise<ReportAck> => {
        const counts = batchCounts(request.body);
        const cap = opts.maxResultsPerBatch;
        if (cap !== undefined && (counts.results > cap || counts.summaries > cap)) {
          throw new ApiError(
            'FL_ERR_TOO_LARGE',
            `the batch holds ${counts.results} results and ${counts.summaries} summaries; this collector takes at most ${cap} of each per batch: send smaller batches`,
          );
        }
        const batch = validReport(request.body);
        const bad = batch.results.findIndex((r) => r.agent !== batch.agent);
        if (bad >= 0) {
          throw new ApiError(
            'FL_ERR_INVALID_REPORT',
            `invalid report batch: results[${bad}].agent ${JSON.stringify(batch.results[bad]!.agent)} is not the batch's agent ${JSON.stringify(batch.agent)}: a batch carries only its own agent's results`,
            {
              issues: [
                {
                  path: `results[${bad}].agent`,
                  message: `expected the batch's agent ${JSON.stringify(batch.agent)}`,
                },
              ],
            },
          );
        }
        const credential = credentials.get(request);
        let outcome;
        try {
          outcome = core.ingest(
            batch,
            Date.now(),
            request.reportBody ?? undefined,
            credential,
            backlogOf(request),
            agentVersionOf(request.headers['user-agent']),
          );
        } catch (err) {
          // The store failed (disk full, I/O error): nothing was stored, the agent keeps the
          // batch spooled and retries; say so instead of a bare 500.
          if (!(err instanceof FaultlineError && err.code === 'FL_ERR_STORE')) throw err;
          request.log.error({ err }, 'report not stored');
          const retryAfterS = randomInt(5, 16);
          throw new ApiError(
            'FL_ERR_STORE',
            `the collector cannot store reports right now (${err.message}); retry in ${retryAfterS} s`,
            { retryAfterS },
            { 'retry-after': String(retryAfterS) },
          );
        }
        request.log.debug(
          {
            agent: batch.agent,
            seq: batch.seq,
            results: batch.results.length,
            outcome: outcome.status,
          },
          'report',
        );
        switch (outcome.status) {
          case 'accepted':
          case 'duplicate':
            return { acceptedSeq: outcome.acceptedSeq, duplicate: outcome.status === 'duplicate' };
          case 'gap':
            throw new ApiError(
              'FL_ERR_SEQ_GAP',
              `seq ${batch.seq} skips ahead: accepted up to ${outcome.acceptedSeq}, expected ${outcome.expectedSeq}; resend from there or declare the dropped batches`,
              { expectedSeq: outcome.expectedSeq, acceptedSeq: outcome.acceptedSeq },
            );
          case 'conflict':
            throw new ApiError('FL_ERR_AGENT_CONFLICT', outcome.message, {
              acceptedSeq: outcome.acceptedSeq,
              ...(outcome.freeAtMs === undefined ? {} : { freeAtMs: outcome.freeAtMs }),
            });
          case 'forbidden':
            throw new ApiError('FL_ERR_FORBIDDEN', outcome.message);
          case 'implausible':
            throw new ApiError('FL_ERR_SEQ_IMPLAUSIBLE', outcome.message, {
              acceptedSeq: outcome.acceptedSeq,
            });
        }
      },
    });
  });

  // Enrolment: a bootstrap token exchanged for a per-agent secret bound to one name and id.
  void app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/json',
      { parseAs: 'string', bodyLimit: maxEnrolBytes },
      (request, text: string, done) => {
        if (text.length === 0) {
          done(new ApiError('FL_ERR_INVALID_JSON', 'empty body: expected {"agent", "agentId"}'));
          return;
        }
        void defaultJsonParse(request, text, (err, value) => {
          if (err === null) done(null, value);
          else {
            const where = locateJsonError(text);
            done(
              new ApiError(
                'FL_ERR_INVALID_JSON',
                where === undefined
                  ? 'the body holds a forbidden key ("__proto__", or "constructor" with "prototype")'
                  : `malformed JSON at line ${where.line}, column ${where.column}: ${where.message}`,
              ),
            );
          }
        });
      },
    );
    scope.post(known('POST', '/api/v1/enrol'), {
      onRequest: async (request) => {
        const credential = requireToken(request);
        if (credential.role !== 'bootstrap') {
          throw new ApiError(
            'FL_ERR_NOT_BOOTSTRAP',
            `${credential.label} is not a bootstrap token: it reports directly; use it for reports and plans`,
          );
        }
        admit(enrolBuckets, credential, 'enrol');
        credentials.set(request, credential);
      },
      handler: async (request, reply) => {
        const credential = credentials.get(request)!;
        const parsed = EnrolBodySchema.safeParse(request.body, { error: configErrorMap });
        if (!parsed.success) {
          const issues = describeIssues(parsed.error.issues, EnrolBodySchema);
          throw new ApiError(
            'FL_ERR_BAD_REQUEST',
            `invalid enrolment: ${summariseIssues(issues, countIssues(parsed.error.issues))}`,
            { issues },
          );
        }
        const { agent, agentId } = parsed.data;
        const reason = forbiddenReason(credential, agent);
        if (reason !== undefined) throw new ApiError('FL_ERR_FORBIDDEN', reason);
        const secret = randomBytes(32).toString('base64url');
        const id = randomBytes(8).toString('hex');
        const outcome = core.enrol(
          { id, agent, agentId },
          digestOf(secret),
          credential,
          Date.now(),
        );
        if (outcome.status === 'conflict') {
          throw new ApiError('FL_ERR_AGENT_CONFLICT', outcome.message, {
            ...(outcome.freeAtMs === undefined ? {} : { freeAtMs: outcome.freeAtMs }),
          });
        }
        request.log.info({ agent, agentId, credential: id, by: credential.id }, 'agent enrolled');
        return reply
          .code(201)
          .header('cache-control', 'no-store')
          .send({ agent, agentId, token: secret });
      },
    });
  });

  app.get(known('GET', '/api/v1/plan'), {
    onRequest: async (request) => {
      credentials.set(request, requireAgentToken(request));
    },
    handler: async (request, reply) => {
      const credential = credentials.get(request)!;
      const query = parseQuery(PlanQuerySchema, request.query);
      const refusal = core.planRefusal(query.agent, credential);
      if (refusal !== undefined) throw new ApiError('FL_ERR_FORBIDDEN', refusal);
      const own = credential.agents?.length === 1 && !credential.agents[0]!.includes('*');
      admit(own ? planOwnBuckets : planSharedBuckets, credential, 'plan');
      const labels = parseLabels(query.labels ?? '');
      const plan = core.plan(query.agent, labels, request.ip);
      const etag = etagFor(plan.version);
      void reply.header('etag', etag).header('cache-control', 'no-cache');
      if (ifNoneMatchHits(request.headers['if-none-match'], etag)) {
        return reply.code(304).send();
      }
      return plan;
    },
  });

  app.get(known('GET', '/api/v1/paths'), readHook, async (request) => {
    const filter: PathFilter = parseQuery(PathsQuerySchema, request.query);
    return { paths: core.paths(filter) };
  });

  app.get(known('GET', '/api/v1/agents'), async (request) => {
    const reader = readerOf(request);
    parseQuery(AgentsQuerySchema, request.query);
    const agents = core.agents();
    // An agent id and its accepted seq are what a forged report needs: viewers only.
    if (reader === 'viewer') return { agents };
    return { agents: agents.map(({ agentId: _id, acceptedSeq: _seq, ...rest }) => rest) };
  });

  // The diagnosis document (wire/diagnosis.ts), kept current by collector/diagnosis.ts: this
  // only serialises it, so polling it costs no localisation. Errors: FL_ERR_BAD_REQUEST for
  // any query parameter, FL_ERR_METHOD, FL_ERR_INTERNAL.
  app.get(known('GET', '/api/v1/diagnosis'), readHook, async (request, reply) => {
    parseQuery(DiagnosisQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return core.diagnosis();
  });

  // Incidents (collector/incidents.ts), newest first; `before` pages back.
  app.get(known('GET', '/api/v1/incidents'), readHook, async (request, reply) => {
    const q = parseQuery(IncidentsQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return {
      incidents: core.incidents(
        q.limit === undefined ? 100 : Number(q.limit),
        q.before === undefined ? undefined : Number(q.before),
      ),
    };
  });

  const incidentId = (params: unknown): number => {
    const parsed = IncidentParamsSchema.safeParse(params);
    if (!parsed.success) {
      const raw = (params as { id?: unknown } | null)?.id;
      throw new ApiError(
        'FL_ERR_BAD_REQUEST',
        `invalid incident id ${JSON.stringify(String(raw).slice(0, 40))}: expected a positive integer`,
      );
    }
    return Number(parsed.data.id);
  };

  app.get('/api/v1/incidents/:id', readHook, async (request, reply) => {
    parseQuery(DiagnosisQuerySchema, request.query);
    const id = incidentId(request.params);
    const detail = core.incident(id);
    if (detail === undefined) throw notFound('incident', `no incident ${id}`);
    void reply.header('cache-control', 'no-cache');
    return detail;
  });

  app.get('/api/v1/incidents/:id/postmortem', readHook, async (request, reply) => {
    parseQuery(DiagnosisQuerySchema, request.query);
    const id = incidentId(request.params);
    const md = core.postmortem(id);
    if (md === undefined) throw notFound('incident', `no incident ${id}`);
    void reply.type('text/markdown; charset=utf-8').header('cache-control', 'no-cache');
    return md;
  });

  app.get(known('GET', '/healthz'), async (request, reply) => {
    let health: ReturnType<CollectorCore['health']>;
    try {
      health = core.health();
    } catch (err) {
      request.log.error({ err }, 'health check failed');
      health = { ok: false, agents: 0, paths: 0, detail: 'the health check itself failed' };
    }
    if (health.ok) return { status: 'ok', ...health };
    void reply.code(503);
    return {
      status: 'unhealthy',
      ...health,
      error: {
        code: 'FL_ERR_UNHEALTHY',
        message: health.detail ?? 'the collector is not healthy',
      },
    };
  });

  opts.routes?.(app, { readHook, known });

  const metrics = opts.metricsHandler;
  if (metrics !== undefined) {
    app.get(known('GET', '/metrics'), async (_request, reply) => {
      const text = await metrics();
      void reply.type('text/plain; version=0.0.4; charset=utf-8');
      return text;
    });
  }

  return app;
}
