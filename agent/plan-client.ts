import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { PlanSchema } from '../wire/plan.js';
import type { Plan } from '../wire/plan.js';
import type { Logger } from '../lib/logger.js';
import { explain, HttpStatusError, replyCode } from './link-replies.js';
import { writeFileAtomic } from './atomic-file.js';
import type { CollectorHttp } from './http-client.js';

const gunzipAsync = promisify(gunzip);

/** What a {@link PlanClient} needs from the link that owns it. */
export interface PlanClientOptions {
  /** The collector's base URL, without a trailing slash. */
  readonly base: string;
  readonly http: CollectorHttp;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Where `plan.json`, the cached plan, lives. */
  readonly stateDir: string;
  readonly log: Logger;
  /** The credential to send (enrolling first when needed). */
  token(timeoutMs: number): Promise<string>;
  /** The collector refused `token` (401, or 403 FL_ERR_ENROL_REQUIRED). */
  refused(token: string, code: string | undefined): Promise<unknown>;
  /** Request headers with the credential. */
  headers(token: string, extra: Record<string, string>): Record<string, string>;
  /** An abort signal for one request: the link's stop, or `timeoutMs`. */
  signal(timeoutMs: number): AbortSignal;
}

/**
 * The plan's side of the collector link: `GET /api/v1/plan` (conditional on the last
 * ETag, gzip accepted, validated against the plan schema) and the cached `plan.json` the
 * agent falls back on when the collector does not answer at start.
 */
export class PlanClient {
  private etag: string | undefined;
  private readonly cache: PlanCache;

  constructor(private readonly options: PlanClientOptions) {
    this.cache = new PlanCache(options.stateDir, options.log);
  }

  /**
   * The collector's plan for this agent; `current` when it answers 304 Not Modified.
   * Throws HttpStatusError for a refusal, Error for an invalid plan or a failed request.
   */
  async fetch(current: Plan | undefined, timeoutMs: number): Promise<Plan> {
    const o = this.options;
    const conditional: Record<string, string> =
      current !== undefined && this.etag !== undefined ? { 'if-none-match': this.etag } : {};
    const labels = Object.entries(o.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const qs = new URLSearchParams({ agent: o.agent, labels });
    const token = await o.token(timeoutMs);
    const res = await o.http.request(`${o.base}/api/v1/plan?${qs.toString()}`, {
      method: 'GET',
      headers: o.headers(token, {
        accept: 'application/json',
        'accept-encoding': 'gzip',
        ...conditional,
      }),
      signal: o.signal(timeoutMs),
    });
    let raw = res.body;
    if (res.statusCode === 304 && current !== undefined) return current;
    if (res.statusCode !== 200) {
      const code = replyCode(raw.toString());
      if (res.statusCode === 401 || (res.statusCode === 403 && code === 'FL_ERR_ENROL_REQUIRED'))
        await o.refused(token, code);
      throw new HttpStatusError(
        res.statusCode,
        `plan request answered ${res.statusCode}: ${raw.toString().slice(0, 200)}`,
      );
    }
    if (res.headers['content-encoding'] === 'gzip') raw = await gunzipAsync(raw);
    const parsed = PlanSchema.safeParse(JSON.parse(raw.toString()) as unknown);
    const etag = res.headers.etag;
    this.etag = typeof etag === 'string' ? etag : undefined;
    if (!parsed.success) {
      this.etag = undefined;
      const first = parsed.error.issues[0];
      throw new Error(
        `the collector sent an invalid plan: ${first?.path.join('.') ?? ''}: ${first?.message ?? ''}`,
      );
    }
    return parsed.data;
  }

  /** The cached plan, or undefined when there is none or it is unreadable (logged). */
  loadCached(): Promise<Plan | undefined> {
    return this.cache.load();
  }

  /** Caches `plan` for the next start; a failure is logged, never thrown. */
  save(plan: Plan): Promise<void> {
    return this.cache.save(plan);
  }
}

/**
 * The plan cached in `<stateDir>/plan.json`: the agent's plan when its source (a collector,
 * the NATS plan bucket) does not answer at start.
 */
export class PlanCache {
  constructor(
    private readonly stateDir: string,
    private readonly log: Logger,
  ) {}

  /** The cached plan, or undefined when there is none or it is unreadable (logged). */
  async load(): Promise<Plan | undefined> {
    const path = join(this.stateDir, 'plan.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return PlanSchema.parse(JSON.parse(text));
    } catch (err) {
      this.log.error({ file: path, err: explain(err) }, 'cached plan unreadable; ignored');
      return undefined;
    }
  }

  /** Caches `plan` for the next start; a failure is logged, never thrown. */
  async save(plan: Plan): Promise<void> {
    try {
      await writeFileAtomic(join(this.stateDir, 'plan.json'), JSON.stringify(plan));
    } catch (err) {
      this.log.error({ err: explain(err) }, 'could not cache the plan');
    }
  }
}
