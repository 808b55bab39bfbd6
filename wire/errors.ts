import { FaultlineError } from '../lib/errors.js';
import type { ErrorCode, FaultlineErrorOptions } from '../lib/errors.js';

/**
 * The collector API's errors: every answer other than 2xx/304 carries
 * `{ error: { code, message, … } }` with a code from the catalogue (`lib/errors.ts`) and the
 * HTTP status below. Clients — the agent, `faultline status` — branch on the code and on the
 * structured fields, never on the message.
 */

/** The API's error codes and the HTTP status each answers with. */
export const apiErrorStatus = {
  /** Missing, malformed or unknown bearer token. */
  FL_ERR_AUTH: 401,
  /** A known token that has been revoked. */
  FL_ERR_TOKEN_REVOKED: 403,
  /** The credential may not act as this agent (its names, or the name is bound to another credential). */
  FL_ERR_FORBIDDEN: 403,
  /** A bootstrap token on reports or plans: enrol first (POST /api/v1/enrol). */
  FL_ERR_ENROL_REQUIRED: 403,
  /** POST /api/v1/enrol with a token that reports directly (role agent, or an enrolled one). */
  FL_ERR_NOT_BOOTSTRAP: 403,
  /** A seq jump or declared drop larger than any spool (identity.maxSeqGap): nothing changed. */
  FL_ERR_SEQ_IMPLAUSIBLE: 400,
  /** Too many plan or enrol requests for this credential: retry after Retry-After. */
  FL_ERR_RATE: 429,
  /** Bad query parameters. */
  FL_ERR_BAD_REQUEST: 400,
  /** The body is not JSON (or is hostile JSON: too deep, prototype keys). */
  FL_ERR_INVALID_JSON: 400,
  /** The body is JSON but not a valid report batch. */
  FL_ERR_INVALID_REPORT: 400,
  /** `content-encoding: gzip` but the body is not valid gzip. */
  FL_ERR_BAD_ENCODING: 400,
  /** No such endpoint (`what: "endpoint"`) or no such resource (`what` names its kind). */
  FL_ERR_NOT_FOUND: 404,
  /** The endpoint exists but not for this method (an `allow` header lists those it takes). */
  FL_ERR_METHOD: 405,
  /** Batch `seq` skips ahead of the watermark without declaring dropped batches. */
  FL_ERR_SEQ_GAP: 409,
  /** The agent id is held by another agent name, or the name by another live agent id. */
  FL_ERR_AGENT_CONFLICT: 409,
  /** Body (compressed or decompressed) or batch larger than the collector takes. */
  FL_ERR_TOO_LARGE: 413,
  /** Content type other than application/json, or an encoding other than gzip. */
  FL_ERR_MEDIA_TYPE: 415,
  /** Anything else; the collector log has the details under the answer's `requestId`. */
  FL_ERR_INTERNAL: 500,
  /** Backpressure: retry after the Retry-After delay. */
  FL_ERR_OVERLOADED: 503,
  /** The store failed (disk full, I/O error); nothing was stored: retry later. */
  FL_ERR_STORE: 503,
  /** /healthz: the collector is not healthy. */
  FL_ERR_UNHEALTHY: 503,
} as const satisfies Partial<Record<ErrorCode, number>>;

/** A code the API answers with. */
export type ApiErrorCode = keyof typeof apiErrorStatus;

/**
 * What an `FL_ERR_NOT_FOUND` answer did not find: `endpoint` — no such route (an older
 * collector, or not Faultline at all) — or the kind of resource that has no such id.
 */
export type NotFoundWhat = 'endpoint' | 'incident' | 'alert';

/** An error the API answers with; `extra` fields go into the error body beside code and message. */
export class ApiError extends FaultlineError {
  declare readonly code: ApiErrorCode;
  readonly statusCode: number;

  constructor(
    code: ApiErrorCode,
    message: string,
    readonly extra: Readonly<Record<string, unknown>> = {},
    readonly headers: Readonly<Record<string, string>> = {},
    options?: FaultlineErrorOptions,
  ) {
    super(code, message, options);
    this.name = 'ApiError';
    this.statusCode = apiErrorStatus[code];
  }
}

/** {@link ApiError} `FL_ERR_NOT_FOUND`, saying what was not found (see {@link NotFoundWhat}). */
export function notFound(what: NotFoundWhat, message: string): ApiError {
  return new ApiError('FL_ERR_NOT_FOUND', message, { what });
}

/** The `error` member of an API error body, as a client reads it. */
export interface ApiErrorBody {
  /** A catalogue code when the server is a Faultline collector; kept as sent otherwise. */
  readonly code: string;
  readonly message: string;
  /** `FL_ERR_NOT_FOUND`: what was not found. Absent from collectors older than this field. */
  readonly what?: string;
  /** Every other field the server sent (`retryAfterS`, `requestId`, `issues`, …). */
  readonly extra: Readonly<Record<string, unknown>>;
}

/** The API's `{ error: { code, message, … } }` in a response body's text, when it is one. */
export function parseApiErrorBody(text: string): ApiErrorBody | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  const error = (body as { error?: unknown } | null)?.error;
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message, what, ...extra } = error as Record<string, unknown>;
  if (typeof code !== 'string' || typeof message !== 'string') return undefined;
  return { code, message, ...(typeof what === 'string' ? { what } : {}), extra };
}
