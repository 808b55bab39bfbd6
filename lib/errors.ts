/**
 * Faults of Faultline itself (never evidence about the network: that is a FailureClass).
 * Callers branch on `code`, never on the message. The original error stays in `cause`.
 *
 * This is the one catalogue of Faultline's error codes: what the CLI, the agent and the
 * collector raise, and what the collector's API answers with (`wire/errors.ts` adds each API
 * code's HTTP status). A probe's raw result codes (`FL_PEER_CLOSED`, …) are evidence, not
 * faults: they are catalogued in `probes/codes.ts`.
 */
export const errorCodes = {
  FL_ERR_CONFIG: 'invalid configuration',
  FL_ERR_TARGET: 'invalid probe target',
  FL_ERR_OPTIONS: 'invalid probe options',
  FL_ERR_USAGE: 'invalid command-line usage',
  FL_ERR_UNKNOWN_KIND: 'unknown probe kind',
  FL_ERR_ENGINE: 'probe engine unavailable',
  FL_ERR_STORE: 'collector store unavailable: nothing was stored',
  FL_ERR_INTERNAL: 'internal error',
  FL_ERR_AUTH: 'missing, malformed or unknown bearer token',
  FL_ERR_TOKEN_REVOKED: 'a known token that has been revoked',
  FL_ERR_FORBIDDEN: 'the credential may not do this (act as this agent, read with an agent token)',
  FL_ERR_ENROL_REQUIRED: 'a bootstrap token on reports or plans: enrol first',
  FL_ERR_NOT_BOOTSTRAP: 'enrolment with a token that reports directly',
  FL_ERR_SEQ_IMPLAUSIBLE: 'a seq jump or declared drop larger than any spool',
  FL_ERR_RATE: 'too many requests for this credential: retry after Retry-After',
  FL_ERR_BAD_REQUEST: 'bad query parameters or request',
  FL_ERR_INVALID_JSON: 'the body is not JSON, or is hostile JSON',
  FL_ERR_INVALID_REPORT: 'the body is JSON but not a valid report batch',
  FL_ERR_BAD_ENCODING: 'content-encoding gzip, but the body is not valid gzip',
  FL_ERR_NOT_FOUND: 'no such endpoint or resource',
  FL_ERR_METHOD: 'method not allowed on this endpoint',
  FL_ERR_SEQ_GAP: 'batch seq skips ahead of the watermark without declaring dropped batches',
  FL_ERR_AGENT_CONFLICT: 'the agent id or name is held by another agent',
  FL_ERR_TOO_LARGE: 'body or batch larger than the collector takes',
  FL_ERR_MEDIA_TYPE: 'content type other than application/json, or an unsupported encoding',
  FL_ERR_OVERLOADED: 'backpressure: retry after Retry-After',
  FL_ERR_UNHEALTHY: 'the collector is not healthy',
} as const;

export type ErrorCode = keyof typeof errorCodes;

/**
 * A parser's reason for refusing its input, apart from the message's framing: a caller that
 * words it its own way (`--labels: …`, a config line already showing the value) takes `why`
 * instead of cutting a prefix off the message.
 */
export interface ErrorReason {
  /** The field, flag or parameter that was wrong (`labels`, `address`), when there is one. */
  readonly field?: string;
  /** Why, in words that stand alone: `pair 1 "a" is not name=value`. */
  readonly why: string;
}

/** Options of {@link FaultlineError}. */
export interface FaultlineErrorOptions {
  /** The error this one wraps. */
  readonly cause?: unknown;
  /** The parser's structured reason, when the error is a refusal of input. */
  readonly reason?: ErrorReason;
}

export class FaultlineError extends Error {
  readonly code: ErrorCode;
  /** Set by parsers: see {@link ErrorReason}. */
  readonly reason: ErrorReason | undefined;

  constructor(code: ErrorCode, message: string, options?: FaultlineErrorOptions) {
    super(
      message,
      options !== undefined && 'cause' in options ? { cause: options.cause } : undefined,
    );
    this.name = 'FaultlineError';
    this.code = code;
    this.reason = options?.reason;
  }
}

/** Bad user input: config files, CLI flags, targets. The message names what was wrong. */
export class ConfigError extends FaultlineError {
  constructor(message: string, options?: FaultlineErrorOptions & { readonly code?: ErrorCode }) {
    super(options?.code ?? 'FL_ERR_CONFIG', message, options);
    this.name = 'ConfigError';
  }
}

export function isFaultlineError(err: unknown): err is FaultlineError {
  return err instanceof FaultlineError;
}

/** Whether `code` is one of the catalogue's (e.g. the `code` of an API error body). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(errorCodes, code);
}

/** How deep {@link errorCodeOf} follows `cause`: far enough for undici's and Node's wrapping. */
const maxCauseDepth = 5;

/**
 * The `code` of an error — a catalogue code, an errno (`ECONNREFUSED`), a Node, undici or
 * Fastify code (`UND_ERR_CONNECT_TIMEOUT`, `FST_ERR_CTP_BODY_TOO_LARGE`) — never read from
 * its message. An error without a code of its own is looked through to its `cause` (fetch's
 * `TypeError: fetch failed` carries the socket's error there). `innermost` takes the deepest
 * code in the chain instead of the first: a real socket error wins over the wrapper that
 * timed it. Undefined when no error in the chain has a non-empty string code.
 */
export function errorCodeOf(
  err: unknown,
  opts?: { readonly innermost?: boolean },
): string | undefined {
  let found: string | undefined;
  let cur: unknown = err;
  for (let depth = 0; depth < maxCauseDepth && typeof cur === 'object' && cur !== null; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') {
      if (opts?.innermost !== true) return code;
      found = code;
    }
    cur = (cur as { cause?: unknown }).cause;
  }
  return found;
}
