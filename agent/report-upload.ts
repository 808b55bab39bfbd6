import type { IncomingHttpHeaders } from 'node:http';
import { sleepUnlessAborted } from '../lib/duration.js';
import { faultlineVersion } from '../lib/version.js';
import { agentUserAgent } from '../wire/report.js';
import { EnrolError } from './enrol.js';
import type { CollectorHttp } from './http-client.js';
import { classifyReply, explain, seqRefusalCodes, type SendOutcome } from './link-replies.js';
import type { SpooledBatch } from './spool.js';

/** Every request says which agent version sends it (the collector's Agents view shows it). */
export const userAgent = agentUserAgent(faultlineVersion);

/** What a {@link ReportUpload} needs from the link that owns it. */
export interface ReportUploadOptions {
  /** The collector's base URL, without a trailing slash. */
  readonly base: string;
  readonly http: CollectorHttp;
  readonly requestTimeoutMs: number;
  readonly healthPollMs: number;
  readonly random: () => number;
  /** The link's stop. */
  readonly abort: AbortSignal;
  stopped(): boolean;
  /** The link's counters this part keeps. */
  readonly counts: { posts: number; seqRefusals: number };
  /** The credential to send (enrolling first when needed). */
  token(timeoutMs: number): Promise<string>;
  /** The collector refused `token`; true when a fresh credential is worth trying at once. */
  refused(token: string, code: string | undefined): Promise<boolean>;
  /** Request headers with the credential. */
  headers(token: string, extra: Record<string, string>): Record<string, string>;
  /** An abort signal for one request: the link's stop, or `timeoutMs`. */
  signal(timeoutMs: number): AbortSignal;
}

/**
 * The transport of report delivery: one `POST /api/v1/reports` of a spooled batch, its
 * answer classified (link-replies.ts), and the cheap `/healthz` poll that tells when an
 * unreachable collector is back. The link's send loop decides what to do with the outcome.
 */
export class ReportUpload {
  constructor(private readonly options: ReportUploadOptions) {}

  /** POSTs one batch and says what to do next: acked, retry how, or set it aside. */
  async send(batch: SpooledBatch, backlog: number): Promise<SendOutcome> {
    const o = this.options;
    let token: string;
    try {
      token = await o.token(o.requestTimeoutMs);
    } catch (err) {
      if (err instanceof EnrolError) {
        if (err.retryAfterMs !== undefined)
          return {
            kind: 'wait',
            delayMs: Math.round(err.retryAfterMs + o.random() * err.retryAfterMs * 0.1),
            why: err.message,
          };
        if (err.statusCode !== undefined && err.statusCode < 500)
          return {
            kind: 'slow',
            why: err.message,
            ...(err.code === undefined ? {} : { code: err.code }),
          };
        return { kind: 'backoff', why: err.message };
      }
      return { kind: 'backoff', why: `enrolment: ${explain(err)}`, unreachable: true };
    }
    o.counts.posts++;
    let statusCode: number;
    let headers: IncomingHttpHeaders;
    let text: string;
    try {
      const res = await o.http.request(`${o.base}/api/v1/reports`, {
        method: 'POST',
        headers: o.headers(token, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          accept: 'application/json',
          // Batches spooled behind this one: while it replays a backlog, the collector does
          // not count this agent's (past) view in the diagnosis.
          'faultline-backlog': String(backlog),
        }),
        body: batch.body,
        signal: o.signal(o.requestTimeoutMs),
      });
      statusCode = res.statusCode;
      headers = res.headers;
      text = res.body.toString();
    } catch (err) {
      return { kind: 'backoff', why: explain(err), unreachable: true };
    }
    const outcome = classifyReply(statusCode, headers, text, o.random);
    if (outcome.kind === 'slow' && outcome.code !== undefined && seqRefusalCodes.has(outcome.code))
      o.counts.seqRefusals++;
    if (
      outcome.kind === 'slow' &&
      (outcome.status === 401 || outcome.code === 'FL_ERR_ENROL_REQUIRED') &&
      (await o.refused(token, outcome.code))
    ) {
      // A per-agent credential the collector forgot: enrol again at once.
      return { kind: 'backoff', why: outcome.why };
    }
    return outcome;
  }

  /**
   * Waits up to `delayMs` for the collector to come back, asking its /healthz every
   * `healthPollMs` (jittered) — a question every period, its wait included, so that a
   * request stuck on a cut (its SYN lost) ends where the next one starts: the collector is
   * heard again within about one period after the heal, not two.
   */
  async untilHealthy(delayMs: number): Promise<boolean> {
    const o = this.options;
    const until = Date.now() + delayMs;
    let askedAt = Date.now();
    while (!o.stopped()) {
      const left = until - Date.now();
      if (left <= 0) return false;
      const periodMs = Math.round(o.healthPollMs * (0.75 + o.random() * 0.5));
      const stepMs = Math.min(left, Math.max(0, askedAt + periodMs - Date.now()));
      await sleepUnlessAborted(stepMs, o.abort);
      if (o.stopped()) return false;
      askedAt = Date.now();
      try {
        const res = await o.http.request(`${o.base}/healthz`, {
          method: 'GET',
          headers: { 'user-agent': userAgent },
          signal: o.signal(Math.max(250, o.healthPollMs)),
        });
        if (res.statusCode === 200) return true;
      } catch {
        // Still away.
      }
    }
    return false;
  }
}
