import { errorCodeOf } from '../lib/errors.js';
import type { ApiErrorCode } from '../wire/errors.js';
import type { IncomingHttpHeaders } from 'node:http';
import { ReportAckSchema } from '../wire/report.js';

/*
 * What the collector link does after each answer: the backoff and Retry-After arithmetic,
 * and the mapping of a reply of `POST /api/v1/reports` to the next step. Pure: the link
 * (collector-link.ts) does the waiting and the counting.
 */

/** Backoff after a failed send: full jitter between 0 and min(cap, base × 2^(attempt−1)). */
export const defaultBackoffBaseMs = 250;
export const defaultBackoffCapMs = 30_000;
/** After 401/403 (or a refusal the agent cannot fix by itself): retry this slowly. */
export const defaultAuthRetryMs = 60_000;
/** A collector's Retry-After is honoured up to this long. */
export const maxRetryAfterMs = 600_000;
/**
 * While the collector is unreachable, its /healthz is asked this often (±25% jitter): a
 * request that costs it nothing, so delivery resumes within about this long of its return
 * instead of after a backoff of up to `capMs`.
 */
export const defaultHealthPollMs = 1_000;

/** Refusals that say the sequence or the identity is wrong, never the batch: it is kept. */
export const seqRefusalCodes: ReadonlySet<string> = new Set<ApiErrorCode>([
  'FL_ERR_SEQ_GAP',
  'FL_ERR_SEQ_IMPLAUSIBLE',
  'FL_ERR_AGENT_CONFLICT',
  'FL_ERR_FORBIDDEN',
  'FL_ERR_ENROL_REQUIRED',
]);

/** Full-jitter exponential backoff: uniformly random in [0, min(capMs, baseMs × 2^(attempt−1))]. */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(0, attempt - 1), 30));
  return Math.floor(random() * ceiling);
}

/** Retry-After as milliseconds (delta-seconds or an HTTP date), or undefined. */
export function parseRetryAfterMs(
  value: string | string[] | undefined,
  nowMs: number = Date.now(),
): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (v === undefined || v === '') return undefined;
  if (/^\d+$/.test(v)) return Math.min(maxRetryAfterMs, Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.min(maxRetryAfterMs, Math.max(0, at - nowMs));
}

/** What to do after one POST of a batch. */
export type SendOutcome =
  | { readonly kind: 'acked'; readonly acceptedSeq: number; readonly duplicate: boolean }
  | { readonly kind: 'gap'; readonly expectedSeq: number }
  | { readonly kind: 'wait'; readonly delayMs: number; readonly why: string }
  | { readonly kind: 'backoff'; readonly why: string; readonly unreachable?: boolean }
  | {
      readonly kind: 'slow';
      readonly why: string;
      readonly code?: string;
      readonly status?: number;
    }
  | { readonly kind: 'reject'; readonly why: string };

export class HttpStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export function explain(err: unknown): string {
  const code = errorCodeOf(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code === undefined ? msg : `${code}: ${msg}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The collector's FL_ERR_* code of an error answer (`{error: {code}}`), if any. */
export function replyCode(text: string): string | undefined {
  const body = parseJson(text) as { error?: { code?: unknown }; code?: unknown } | undefined;
  const code = body?.error?.code ?? body?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Maps one answer of `POST /api/v1/reports` to what the link does next. 400/413/422 mean
 * this batch is bad (it is set aside); 415 and 401/403 mean the agent and the collector
 * disagree about everything, so no batch is blamed for it.
 */
export function classifyReply(
  status: number,
  headers: IncomingHttpHeaders,
  text: string,
  random: () => number,
): SendOutcome {
  const brief = text.slice(0, 300);
  const code = replyCode(text);
  // The sequence or the identity is refused, not the batch: never set it aside for it.
  if (code !== undefined && seqRefusalCodes.has(code) && status !== 409)
    return { kind: 'slow', why: `${status} ${code}: ${brief}`, code, status };
  if (status === 409 && code !== undefined && code !== 'FL_ERR_SEQ_GAP')
    return { kind: 'slow', why: `409 ${code}: ${brief}`, code, status };
  if (status === 200) {
    const ack = ReportAckSchema.safeParse(parseJson(text));
    if (ack.success)
      return { kind: 'acked', acceptedSeq: ack.data.acceptedSeq, duplicate: ack.data.duplicate };
    return { kind: 'backoff', why: `200 with an unexpected body: ${brief}` };
  }
  if (status === 409) {
    // The collector's errors are `{error: {code, message, expectedSeq, …}}`; a flat body is
    // accepted too.
    const body = parseJson(text) as
      { expectedSeq?: unknown; error?: { expectedSeq?: unknown } } | undefined;
    const expected = body?.error?.expectedSeq ?? body?.expectedSeq;
    if (typeof expected === 'number' && Number.isSafeInteger(expected) && expected >= 0)
      return { kind: 'gap', expectedSeq: expected };
    return { kind: 'slow', why: `409 conflict: ${brief}` };
  }
  if (status === 429 || status === 503) {
    const ms = parseRetryAfterMs(headers['retry-after']);
    if (ms !== undefined)
      return {
        kind: 'wait',
        delayMs: Math.round(ms + random() * ms * 0.1),
        why: `collector busy (${status})`,
      };
    return { kind: 'backoff', why: `collector busy (${status})` };
  }
  if (status === 401 || status === 403)
    return {
      kind: 'slow',
      why: `${status}: token unknown or revoked: ${brief}`,
      status,
      ...(code === undefined ? {} : { code }),
    };
  if (status === 415)
    return { kind: 'slow', why: `415: the collector refuses the encoding: ${brief}` };
  if (status === 400 || status === 413 || status === 422)
    return { kind: 'reject', why: `${status}: ${brief}` };
  return { kind: 'backoff', why: `${status}: ${brief}` };
}
