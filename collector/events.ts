import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Diagnosis } from '../wire/diagnosis.js';
import { matrixCell } from './matrix-view.js';
import type { IncidentUpdate } from './incidents.js';
import type { Transition } from './paths/checkpoint.js';

/**
 * The dashboard's live feed (`GET /api/v1/events`, Server-Sent Events): what changed, as it
 * changes, so a page follows the collector without polling. A stream opens with `hello`
 * (the collector's boot id: a new one means it restarted and every snapshot is to be read
 * again), then:
 *
 * - `diagnosis`: the whole diagnosis document, at every change.
 * - `paths`: path cells that changed state or class, coalesced per {@link flushMs} and
 *   keyed by (agent, target) — `[agent, target, cell]`, the cell coded as in
 *   `GET /api/v1/matrix`. More than {@link maxPathChanges} at once: `matrix` instead.
 * - `matrix`: agents or targets came or went (or too much changed): read the matrix again.
 * - `agents`: liveness changed (live, late, silent): read `/api/v1/agents` again.
 * - `incident`: an incident opened, changed its leading hypothesis, or closed.
 *
 * A slow reader that lets {@link maxBufferedBytes} pile up is dropped: it reconnects and
 * reads the snapshots again, rather than the collector holding its backlog.
 */

/** One event of the feed. */
export type FeedEvent =
  | { readonly type: 'diagnosis'; readonly data: Diagnosis }
  | {
      readonly type: 'paths';
      readonly data: { readonly changes: readonly (readonly [string, string, number])[] };
    }
  | { readonly type: 'matrix'; readonly data: { readonly atMs: number } }
  | { readonly type: 'agents'; readonly data: { readonly atMs: number } }
  | { readonly type: 'incident'; readonly data: IncidentUpdate };

/** Path changes are sent at most this often (ms). */
export const flushMs = 250;
/** More path changes than this in one flush: a `matrix` event (read it again) instead. */
export const maxPathChanges = 20_000;
/** A reader this far behind is dropped (it reconnects and starts from snapshots). */
export const maxBufferedBytes = 4 * 1024 * 1024;
/** A comment line this often keeps proxies from closing a quiet stream (ms). */
export const keepAliveMs = 15_000;

/** Fans the collector's changes out to the open streams. */
export class EventHub {
  /** Changes with every start: a page that sees another one reads everything again. */
  readonly bootId = randomBytes(8).toString('hex');
  private readonly listeners = new Set<(e: FeedEvent) => void>();
  private readonly pendingPaths = new Map<string, readonly [string, string, number]>();
  private pathsOverflow = false;
  private matrixDue = false;
  private agentsDue = false;
  private timer: NodeJS.Timeout | undefined;
  private clock = 0;

  /**
   * A logical clock: moves on with every subscription and every event sent. A snapshot read
   * at `seq` ≥ a stream's `hello.seq` was taken after the stream subscribed, so every change
   * it lacks comes on the stream; an older one may have missed some.
   */
  get seq(): number {
    return this.clock;
  }

  /** Calls `fn` with every event from now on; returns the unsubscribe. */
  subscribe(fn: (e: FeedEvent) => void): () => void {
    this.clock++;
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Open streams. */
  get size(): number {
    return this.listeners.size;
  }

  diagnosis(d: Diagnosis): void {
    this.emit({ type: 'diagnosis', data: d });
  }

  incident(u: IncidentUpdate): void {
    this.emit({ type: 'incident', data: u });
  }

  /** Path transitions of a committed batch (agent liveness ones mark the agents changed). */
  transitions(list: readonly Transition[]): void {
    if (this.listeners.size === 0) return;
    for (const t of list) {
      if (t.kind === 'agent') {
        this.agentsDue = true;
        continue;
      }
      if (this.pathsOverflow) continue;
      const cell = matrixCell(t.toState, t.toClass ?? 'ok');
      this.pendingPaths.set(`${t.agent}\u0000${t.target}`, [t.agent, t.target, cell]);
      if (this.pendingPaths.size > maxPathChanges) {
        this.pathsOverflow = true;
        this.pendingPaths.clear();
      }
    }
    this.schedule();
  }

  /** Agents or targets came or went: pages read the matrix again. */
  structureChanged(): void {
    if (this.listeners.size === 0) return;
    this.matrixDue = true;
    this.schedule();
  }

  /** Agent liveness changed. */
  agentsChanged(): void {
    if (this.listeners.size === 0) return;
    this.agentsDue = true;
    this.schedule();
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => this.flush(), flushMs);
    this.timer.unref();
  }

  /** Sends what piled up since the last flush. */
  flush(): void {
    this.timer = undefined;
    const atMs = Date.now();
    if (this.matrixDue || this.pathsOverflow) {
      this.emit({ type: 'matrix', data: { atMs } });
    } else if (this.pendingPaths.size > 0) {
      this.emit({ type: 'paths', data: { changes: [...this.pendingPaths.values()] } });
    }
    if (this.agentsDue) this.emit({ type: 'agents', data: { atMs } });
    this.pendingPaths.clear();
    this.matrixDue = false;
    this.pathsOverflow = false;
    this.agentsDue = false;
  }

  private emit(e: FeedEvent): void {
    this.clock++;
    for (const fn of this.listeners) fn(e);
  }
}

/** One SSE frame. */
export function sseFrame(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Streams the hub to one HTTP response until either side ends it. Returns the function that
 * ends it from our side (at shutdown).
 */
export function streamTo(hub: EventHub, res: ServerResponse): () => void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    // Proxies (nginx) buffer responses unless told not to; a live feed must not wait.
    'x-accel-buffering': 'no',
  });
  let open = true;
  const end = (): void => {
    if (!open) return;
    open = false;
    unsubscribe();
    clearInterval(keepAlive);
    res.end();
  };
  const write = (chunk: string): void => {
    if (!open) return;
    // A reader that cannot keep up reconnects and reads snapshots; the feed never queues.
    if (res.writableLength > maxBufferedBytes) return end();
    res.write(chunk);
  };
  const unsubscribe = hub.subscribe((e) => write(sseFrame(e.type, e.data)));
  const keepAlive = setInterval(() => write(': keep-alive\n\n'), keepAliveMs);
  keepAlive.unref();
  res.on('close', end);
  res.on('error', end);
  write(
    `retry: 2000\n${sseFrame('hello', { bootId: hub.bootId, seq: hub.seq, atMs: Date.now() })}`,
  );
  return end;
}
