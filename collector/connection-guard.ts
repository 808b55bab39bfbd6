import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';

/**
 * What one client may hold of the collector's HTTP server: connections, and the time it
 * may take to send its headers or keep an idle connection open.
 */
export interface ConnectionLimits {
  /** Open connections at most; past it the oldest connection without a request in progress goes. */
  readonly maxConnections: number;
  /** Time a client may take to send a request's headers (and, with TLS, its handshake). */
  readonly headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  readonly keepAliveTimeoutMs: number;
}

export const defaultConnectionLimits: ConnectionLimits = Object.freeze({
  maxConnections: 1024,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
});

/**
 * Node checks `headersTimeout` only this often (its default is 30 s, which would let a
 * stalled client hold a connection for up to 30 s past the limit).
 */
const connectionsCheckingIntervalMs = 1_000;

/**
 * Options for `http.createServer` / `https.createServer` (fastify's `http`, or merged into
 * its `https` with `handshakeTimeout`) that enforce the header and keep-alive limits.
 */
export function serverTimeoutOptions(limits: ConnectionLimits): {
  headersTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(connectionsCheckingIntervalMs, limits.headersTimeoutMs),
  };
}

/** What the guard has done since the server started. */
export interface ConnectionStats {
  /** Connections open now. */
  readonly open: number;
  /** Connections closed to make room: each had no request in progress. */
  readonly shed: number;
  /** New connections refused because every open one had a request in progress. */
  readonly refused: number;
}

interface Tracked {
  readonly socket: Socket;
  /** Requests in progress on it (HTTP/1.1 pipelining aside, 0 or 1). */
  busy: number;
}

function key(socket: Socket): string {
  return `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
}

/**
 * Caps `server`'s open connections at `maxConnections`. A new connection past the cap
 * closes the oldest connection that has no request in progress — one that has not finished
 * sending its headers, or an idle keep-alive one — so a flood of stalled connections cannot
 * lock out a client that sends a whole request at once; only when every open connection is
 * serving a request is the new one refused. Node's own `server.maxConnections` would refuse
 * the newcomer and keep the flood.
 */
export function guardConnections(
  server: HttpServer | HttpsServer,
  maxConnections: number,
): () => ConnectionStats {
  // Oldest first: Map keeps insertion order, and activity re-inserts.
  const open = new Map<string, Tracked>();
  let shed = 0;
  let refused = 0;

  const touch = (k: string, t: Tracked): void => {
    open.delete(k);
    open.set(k, t);
  };

  server.on('connection', (socket: Socket) => {
    const k = key(socket);
    if (open.size >= maxConnections) {
      let victim: Tracked | undefined;
      for (const t of open.values()) {
        if (t.busy === 0) {
          victim = t;
          break;
        }
      }
      if (victim === undefined) {
        refused += 1;
        socket.destroy();
        return;
      }
      shed += 1;
      open.delete(key(victim.socket));
      victim.socket.destroy();
    }
    const t: Tracked = { socket, busy: 0 };
    open.set(k, t);
    socket.once('close', () => {
      if (open.get(k) === t) open.delete(k);
    });
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // With TLS req.socket is the TLS socket; its peer address and port are the raw one's.
    const k = key(req.socket);
    const t = open.get(k);
    if (t === undefined) return;
    t.busy += 1;
    touch(k, t);
    res.once('close', () => {
      t.busy = Math.max(0, t.busy - 1);
      if (open.get(k) === t) touch(k, t);
    });
  });

  return () => ({ open: open.size, shed, refused });
}

/** True for 127.0.0.0/8, ::1 and `localhost`: addresses only this host can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The warning for a collector listening beyond loopback over plain HTTP (tokens and
 * reports in clear), or undefined when it listens on loopback or has TLS.
 */
export function plainListenWarning(listen: string, tls: boolean): string | undefined {
  if (tls) return undefined;
  const host = listen.slice(0, listen.lastIndexOf(':'));
  if (isLoopbackHost(host)) return undefined;
  return `listening on ${listen} without TLS: agents' tokens and reports cross the network in clear and anyone on the path can read or change them; set tls.cert and tls.key (or listen on 127.0.0.1 behind a TLS proxy)`;
}
