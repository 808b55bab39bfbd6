import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/*
 * The agent's HTTP client for its collectors: Node's own http/https with a keep-alive pool.
 * undici did this before, but loading it (and compiling its WebAssembly parser) cost an
 * agent ~19 MB of RSS for a few requests a second, more than everything else it reports
 * with; node:http is loaded anyway for /metrics.
 */

/** One answer, its body read whole. */
export interface HttpReply {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface HttpRequestInit {
  readonly method: 'GET' | 'POST';
  readonly headers: OutgoingHttpHeaders;
  readonly body?: string | Buffer;
  /** Ends the request and the reading of its answer; the promise rejects with its reason. */
  readonly signal?: AbortSignal;
}

export interface CollectorHttpOptions {
  /** PEM CA certificates trusted for https instead of the system ones. */
  readonly ca?: string | Buffer;
  /** Connections kept to the collector at most (default 4). */
  readonly connections?: number;
  /**
   * How long an idle connection is kept (default 30 s); shorter when the server's
   * `Keep-Alive: timeout=` says it closes sooner (Node's agent ends it a second before).
   */
  readonly keepAliveMs?: number;
}

/** Keep-alive connections to one collector, http or https. */
export class CollectorHttp {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;

  constructor(options: CollectorHttpOptions = {}) {
    const pool = {
      keepAlive: true,
      maxSockets: options.connections ?? 4,
      // An idle socket's timeout: without one Node ignores the server's keep-alive hint.
      timeout: options.keepAliveMs ?? 30_000,
      scheduling: 'lifo' as const,
    };
    this.http = new HttpAgent(pool);
    this.https = new HttpsAgent({
      ...pool,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
  }

  /** Sends one request and reads its answer whole; rejects on a failed exchange. */
  request(url: string, init: HttpRequestInit): Promise<HttpReply> {
    const { signal } = init;
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    return new Promise<HttpReply>((resolve, reject) => {
      const secure = url.startsWith('https:');
      const req = (secure ? httpsRequest : httpRequest)(url, {
        method: init.method,
        headers:
          init.body === undefined
            ? init.headers
            : { ...init.headers, 'content-length': Buffer.byteLength(init.body) },
        agent: secure ? this.https : this.http,
      });
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const onAbort = (): void => {
        const reason = abortReason(signal!);
        req.destroy(reason);
        fail(reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.once('error', fail);
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('error', fail);
        res.once('aborted', () =>
          fail(new Error('the collector closed the connection mid-answer')),
        );
        res.once('end', () => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          resolve({
            statusCode: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          });
        });
      });
      req.end(init.body);
    });
  }

  /** Ends every connection. */
  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

/** Why the request was aborted: the signal's reason (a timeout's TimeoutError), as an Error. */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new Error(typeof reason === 'string' ? reason : 'request aborted');
}
