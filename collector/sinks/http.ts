import { request } from 'undici';
import { z } from 'zod';
import { abortAfter } from '../../lib/abort.js';
import { durationField } from '../../lib/config-fields.js';
import { errorCodeOf } from '../../lib/errors.js';
import type { SendOutcome } from './types.js';

/** Most of a refusal's body quoted in a dead-letter reason. */
const maxReasonBodyChars = 200;

/** Whether an HTTP status is worth retrying: the receiver may take the same request later. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/** `ECONNREFUSED`, `UND_ERR_CONNECT_TIMEOUT`, … or the error's name: never its message alone. */
function errorCode(err: unknown): string {
  const name = (err as { name?: unknown } | null)?.name;
  return errorCodeOf(err) ?? (typeof name === 'string' ? name : 'Error');
}

/**
 * POSTs `body` to `url` with a deadline of `timeoutMs` for the whole exchange (connect,
 * headers, body), or until `signal` aborts. Never throws for the receiver's faults: a 2xx is
 * success, 408/425/429/5xx and network errors are retryable, any other status is a failure.
 */
export async function postBody(
  url: string,
  body: string,
  headers: Readonly<Record<string, string>>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<SendOutcome> {
  const attempt = abortAfter(signal, timeoutMs);
  try {
    const res = await request(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...headers },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: attempt,
    });
    const text = await res.body.text();
    if (res.statusCode >= 200 && res.statusCode < 300) return { status: 'success' };
    const snippet = text.trim().slice(0, maxReasonBodyChars);
    const reason = `HTTP ${res.statusCode}${snippet === '' ? '' : `: ${snippet}`}`;
    return retryableStatus(res.statusCode)
      ? { status: 'retryable', reason }
      : { status: 'failure', reason };
  } catch (err) {
    if (attempt.aborted && !signal.aborted) {
      return { status: 'retryable', reason: `timed out after ${timeoutMs} ms` };
    }
    if (signal.aborted) return { status: 'retryable', reason: 'aborted: the sender is stopping' };
    return { status: 'retryable', reason: `request failed: ${errorCode(err)}` };
  }
}

const httpUrlHelp = 'expected an http(s) URL such as "http://127.0.0.1:9093"';

/** Whether `raw` is an absolute http: or https: URL with a host. */
export function isHttpUrl(raw: string): boolean {
  try {
    const u = new URL(raw);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** A config field holding an absolute http(s) URL. */
export function httpUrlField() {
  return z
    .string({ error: httpUrlHelp })
    .refine(isHttpUrl, { error: httpUrlHelp })
    .meta({ format: 'uri' });
}

/** A sink's `timeout`: the deadline of one delivery attempt. */
export function sinkTimeoutField() {
  return durationField(100)
    .prefault('10s')
    .describe('Deadline of one delivery attempt (connect, send, answer).');
}

/** A sink's optional `name`: the `sink` label of its metrics. */
export function sinkNameField() {
  return z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'expected 1–64 characters from A-Z a-z 0-9 . _ -' })
    .optional()
    .describe('Unique name of the sink in metrics and dead-letter records; default: its type.');
}
