import { readFileSync } from 'node:fs';
import { AuthorizationError, connect, credsAuthenticator } from '@nats-io/transport-node';
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import type { NatsSection } from './nats-config.js';

/**
 * What agent and collector share of NATS: the connection (servers, login, reconnecting
 * forever), and how an agent's name becomes a subject token and a KV key.
 */

/**
 * An agent name as one subject token and KV key: agent names may hold `.` and `:`, which
 * NATS reads as a token separator (`.`) or refuses in keys (`:`); each byte outside
 * `A-Z a-z 0-9 _ -` is written `=XX` (hex), which no agent name contains, so it is
 * reversible and distinct names stay distinct.
 */
export function natsToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (c) => `=${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The inverse of {@link natsToken}. */
export function fromNatsToken(token: string): string {
  return token.replace(/=([0-9A-F]{2})/g, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16)),
  );
}

/** The subject of `agent`'s report batches: `<subject>.<zone>.<agent>`. */
export function reportSubject(section: NatsSection, zone: string, agent: string): string {
  return `${section.subject}.${natsToken(zone)}.${natsToken(agent)}`;
}

/** The secrets of a `nats:` section, files read. Throws naming the file that failed. */
function loginOptions(section: NatsSection): Partial<NodeConnectionOptions> {
  const read = (path: string, what: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`nats.${what}: cannot read ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  if (section.token !== undefined) return { token: section.token };
  if (section.tokenFile !== undefined)
    return { token: read(section.tokenFile, 'tokenFile').split('\n')[0]!.trim() };
  if (section.user !== undefined) return { user: section.user, pass: section.password ?? '' };
  if (section.credsFile !== undefined)
    return {
      authenticator: credsAuthenticator(
        new TextEncoder().encode(read(section.credsFile, 'credsFile')),
      ),
    };
  return {};
}

/** Which login of a `nats:` section is in use, in its config keys' words (no secret). */
export function loginUsed(section: NatsSection): string {
  if (section.token !== undefined) return 'nats.token';
  if (section.tokenFile !== undefined) return `nats.tokenFile (${section.tokenFile})`;
  if (section.user !== undefined)
    return `nats.user (${section.user})${section.password === undefined ? ' without nats.password' : ' and nats.password'}`;
  if (section.credsFile !== undefined) return `nats.credsFile (${section.credsFile})`;
  return 'no login (none of nats.token, tokenFile, user, credsFile is set)';
}

/**
 * Connects to the servers of `section` and keeps reconnecting for ever (a cut-off agent
 * spools; it must never give the connection up). `waitOnFirstConnect`: a process started
 * while NATS is away keeps trying instead of failing. A login the servers refuse throws
 * at once, naming the login used: `NATS servers … refused the login with nats.user (app-1)
 * and nats.password: Authorization Violation`.
 */
export async function connectNats(section: NatsSection, name: string): Promise<NatsConnection> {
  try {
    return await connectOnce(section, name);
  } catch (err) {
    if (!(err instanceof AuthorizationError)) throw err;
    throw new Error(
      `NATS servers ${section.servers.join(', ')} refused the login with ${loginUsed(section)}: ${err.message}`,
      { cause: err },
    );
  }
}

function connectOnce(section: NatsSection, name: string): Promise<NatsConnection> {
  return connect({
    servers: [...section.servers],
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    reconnectJitter: 250,
    waitOnFirstConnect: true,
    timeout: section.timeout,
    // A server cut off is left within 4–6 s (two pings unanswered), not the default minutes:
    // an agent's reports, or a collector's consumer, move to a server that still has them.
    pingInterval: 2_000,
    maxPingOut: 2,
    ...(section.caFile === undefined ? {} : { tls: { caFile: section.caFile } }),
    ...loginOptions(section),
  });
}
