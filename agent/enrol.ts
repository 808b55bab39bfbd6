import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { abortAfter } from '../lib/abort.js';
import { faultlineVersion } from '../lib/version.js';
import { agentUserAgent } from '../wire/report.js';
import type { Logger } from '../lib/logger.js';
import { writeFileAtomic } from './atomic-file.js';
import type { CollectorHttp } from './http-client.js';

/**
 * Where the agent's credential came from:
 * - `none`: not known yet (enrolment not tried, or it failed and is retried);
 * - `saved`: a per-agent secret read from `<stateDir>/credential`;
 * - `enrolled`: a per-agent secret the collector issued in this run (and saved);
 * - `direct`: the configured token itself (an `agent`-role token: FL_ERR_NOT_BOOTSTRAP, or a
 *   collector without /api/v1/enrol).
 */
export type EnrolState = 'none' | 'saved' | 'enrolled' | 'direct';
export const enrolStates: readonly EnrolState[] = ['none', 'saved', 'enrolled', 'direct'];

/** Options of {@link Credentials}. */
export interface CredentialsOptions {
  /** Collector base URL, no trailing slash. */
  readonly base: string;
  /** The configured token (flag, FAULTLINE_TOKEN, token file). */
  readonly token: string;
  readonly agent: string;
  readonly agentId: string;
  readonly stateDir: string;
  readonly http: CollectorHttp;
  readonly log: Logger;
  /** Limit of the enrol request. Default 10 s. */
  readonly timeoutMs?: number;
}

/** An enrolment that did not give a credential; `code` is the collector's FL_ERR_* when it sent one. */
export class EnrolError extends Error {
  constructor(
    message: string,
    readonly statusCode: number | undefined,
    readonly code: string | undefined,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'EnrolError';
  }
}

const secretRe = /^[\x21-\x7e]{16,512}$/;

function errorBody(text: string): { code?: string; message?: string } {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof body.error?.code === 'string' ? body.error.code : undefined;
    const message = typeof body.error?.message === 'string' ? body.error.message : undefined;
    return {
      ...(code === undefined ? {} : { code }),
      ...(message === undefined ? {} : { message }),
    };
  } catch {
    return {};
  }
}

/**
 * The agent's credential towards the collector (the enrolment contract of issue 13): a saved
 * per-agent secret in `<stateDir>/credential` (0600) when there is one; else
 * `POST /api/v1/enrol` with the configured token — 201 saves and uses the issued secret,
 * 403 FL_ERR_NOT_BOOTSTRAP (or 404: a collector without enrolment; or 401: a token it does
 * not know, which the reports then retry slowly) uses the configured token directly. A saved secret the collector no longer knows (401) is deleted and the
 * agent enrols again. Only delivery waits for this; probing and spooling never do.
 */
export class Credentials {
  private token: string | undefined;
  private mode: EnrolState = 'none';
  private pending: Promise<string> | undefined;
  private readonly file: string;
  private enrolments = 0;

  constructor(private readonly options: CredentialsOptions) {
    this.file = join(options.stateDir, 'credential');
  }

  /** Where the credential in use came from. */
  state(): EnrolState {
    return this.mode;
  }

  /** Successful enrolments in this run. */
  enrolCount(): number {
    return this.enrolments;
  }

  /** The token to send, obtaining it first when needed (one attempt; throws EnrolError). */
  get(signal?: AbortSignal): Promise<string> {
    if (this.token !== undefined) return Promise.resolve(this.token);
    this.pending ??= this.obtain(signal).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * The collector answered 401 (or 403 FL_ERR_ENROL_REQUIRED) to `token`. A per-agent
   * secret is deleted, so the next get() enrols again; returns whether anything changed
   * (false: the configured token itself is refused — retry slowly, a human must act).
   */
  async refused(token: string, code: string | undefined): Promise<boolean> {
    if (token !== this.token) return true; // already replaced
    const { log } = this.options;
    if (this.mode === 'saved' || this.mode === 'enrolled') {
      log.warn(
        { file: this.file, code: code ?? null },
        'the collector does not know the saved credential (its store wiped?): deleting it and enrolling again',
      );
      await rm(this.file, { force: true });
      this.token = undefined;
      this.mode = 'none';
      return true;
    }
    if (this.mode === 'direct' && code === 'FL_ERR_ENROL_REQUIRED') {
      // The configured token became a bootstrap token: enrol with it.
      this.token = undefined;
      this.mode = 'none';
      return true;
    }
    return false;
  }

  private async obtain(signal: AbortSignal | undefined): Promise<string> {
    const { log } = this.options;
    let saved: string | undefined;
    try {
      saved = (await readFile(this.file, 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (saved !== undefined) {
      if (secretRe.test(saved)) {
        this.token = saved;
        this.mode = 'saved';
        return saved;
      }
      log.error(
        { file: this.file },
        'saved credential unreadable; deleting it and enrolling again',
      );
      await rm(this.file, { force: true });
    }
    return this.enrol(signal);
  }

  private async enrol(signal: AbortSignal | undefined): Promise<string> {
    const { base, token, agent, agentId, http, log } = this.options;
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const res = await http.request(`${base}/api/v1/enrol`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'user-agent': agentUserAgent(faultlineVersion),
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify({ agent, agentId }),
      signal: signal === undefined ? AbortSignal.timeout(timeoutMs) : abortAfter(signal, timeoutMs),
    });
    const text = res.body.toString();
    const status = res.statusCode;
    const { code, message } = errorBody(text);
    if (status === 201 || status === 200) {
      let secret: unknown;
      try {
        secret = (JSON.parse(text) as { token?: unknown }).token;
      } catch {
        secret = undefined;
      }
      if (typeof secret !== 'string' || !secretRe.test(secret)) {
        throw new EnrolError(
          `enrolment answered ${status} without a usable token: ${text.slice(0, 200)}`,
          status,
          undefined,
        );
      }
      await writeFileAtomic(this.file, `${secret}\n`);
      this.token = secret;
      this.mode = 'enrolled';
      this.enrolments++;
      log.info({ file: this.file }, 'enrolled: per-agent credential saved');
      return secret;
    }
    // 401: the collector does not know the token at all; the reports will say the same and
    // be retried slowly until it is fixed (a later FL_ERR_ENROL_REQUIRED enrols again).
    if (
      (status === 403 && code === 'FL_ERR_NOT_BOOTSTRAP') ||
      status === 404 ||
      status === 405 ||
      status === 401
    ) {
      this.token = token;
      this.mode = 'direct';
      const why =
        status === 404
          ? 'the collector has no enrolment: reporting with the configured token'
          : status === 401
            ? 'the collector does not know the configured token; trying it directly'
            : 'the configured token is an agent token: reporting with it directly';
      if (status === 401) log.error({ status, code: code ?? null }, why);
      else log.info({ status, code: code ?? null }, why);
      return token;
    }
    const retryAfter = res.headers['retry-after'];
    const retryAfterS = Number(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
    throw new EnrolError(
      `enrolment refused (${status}${code === undefined ? '' : ` ${code}`}): ${message ?? text.slice(0, 200)}`,
      status,
      code,
      Number.isFinite(retryAfterS) && retryAfterS > 0 ? retryAfterS * 1000 : undefined,
    );
  }
}
