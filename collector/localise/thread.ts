import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Diagnosis } from '../../wire/diagnosis.js';
import type { AgentLiveness, PathState } from '../types.js';
import type { LocaliserOptions } from './localise.js';

/**
 * The localiser in a thread of its own. On a large matrix with many failing paths (2,000
 * agents, 20,000 failing paths) one localisation takes hundreds of milliseconds; on the
 * main thread every report arriving meanwhile waits that long. In a worker thread it runs
 * beside ingest: the main thread only sends the paths of the agents that changed since the
 * last request (structured clone) and takes the diagnosis back.
 *
 * The worker (collector/localise/worker.ts) keeps an `IncrementalLocaliser`. A request with
 * `all` starts it afresh (the first one, and after any failure). If the worker fails or
 * exits, pending requests reject and the next request starts a new worker.
 */

/** One request to the worker: what changed, everyone's liveness, the clock. */
export interface ThreadRequest {
  readonly id: number;
  /** Forget every path held and take `changed` as the whole matrix. */
  readonly all: boolean;
  /** Each changed agent with all of its paths (an empty list forgets the agent). */
  readonly changed: readonly (readonly [string, readonly PathState[]])[];
  readonly agents: readonly AgentLiveness[];
  readonly nowMs: number;
}

export type ThreadReply =
  | { readonly id: number; readonly diagnosis: Diagnosis }
  | { readonly id: number; readonly error: string };

const builtWorkerUrl = new URL('./worker.js', import.meta.url);

export class LocaliserThread {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (d: Diagnosis) => void; reject: (err: Error) => void }
  >();

  constructor(
    private readonly options: LocaliserOptions,
    private readonly workerUrl: URL = builtWorkerUrl,
  ) {}

  /**
   * The compiled worker beside this module, if it is there (it is in a build; when the
   * collector runs from TypeScript sources, as in unit tests, it is not).
   */
  static builtWorker(): URL | undefined {
    return builtWorkerUrl.protocol === 'file:' && existsSync(fileURLToPath(builtWorkerUrl))
      ? builtWorkerUrl
      : undefined;
  }

  /** Starts the worker now, so the first localisation does not wait for it to load. */
  warm(): void {
    this.start();
  }

  /** Sends one request; resolves with the diagnosis, rejects if the worker failed. */
  diagnose(request: Omit<ThreadRequest, 'id'>): Promise<Diagnosis> {
    const worker = this.start();
    const id = ++this.nextId;
    return new Promise<Diagnosis>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...request, id } satisfies ThreadRequest);
    });
  }

  /** Stops the worker; pending requests reject. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.failAll(new Error('the localiser thread was closed'));
    if (w !== undefined) await w.terminate();
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker;
    const w = new Worker(this.workerUrl, { workerData: this.options });
    // It never keeps the process alive: the collector's own handles do.
    w.unref();
    w.on('message', (reply: ThreadReply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if ('error' in reply) p.reject(new Error(`localisation failed: ${reply.error}`));
      else p.resolve(reply.diagnosis);
    });
    w.on('error', (err) => {
      if (this.worker === w) this.worker = undefined;
      this.failAll(err);
    });
    w.on('exit', (code) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.failAll(new Error(`the localiser thread exited (code ${code})`));
    });
    this.worker = w;
    return w;
  }

  private failAll(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
  }
}
