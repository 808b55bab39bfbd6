import { ConfigError } from '../lib/errors.js';
import { dns } from './dns.js';
import { http } from './http.js';
import { icmp } from './icmp.js';
import { mtu } from './mtu.js';
import { mysql } from './mysql.js';
import { postgres } from './postgres.js';
import { redis } from './redis.js';
import { tcp } from './tcp.js';
import type { ProbeDefinition } from './types.js';
import type { Timings } from '../wire/result.js';

/**
 * Every probe kind, one line each. The config schema, CLI choices and metric attribute
 * values derive from this; probes/registry.test.ts fails for a kind without tests.
 */
export const probeRegistry = {
  icmp,
  tcp,
  http,
  dns,
  postgres,
  redis,
  mysql,
  mtu,
} as const;

export type ProbeKind = keyof typeof probeRegistry;
export const probeKinds = Object.keys(probeRegistry) as ProbeKind[];

/** Kinds whose results are ICMP echo rounds (`ProbeDefinition.echo`): RTT and loss per packet. */
export const echoKinds: ReadonlySet<string> = new Set(
  probeKinds.filter((kind) => (probeRegistry[kind] as ProbeDefinition<unknown>).echo === true),
);

/**
 * Kinds whose latency is the network's alone (`ProbeDefinition.networkLatency`, and every
 * echo kind).
 */
export const networkLatencyKinds: ReadonlySet<string> = new Set(
  probeKinds.filter((kind) => {
    const d = probeRegistry[kind] as ProbeDefinition<unknown>;
    return d.echo === true || d.networkLatency === true;
  }),
);

/**
 * The kind's main timing (`ProbeDefinition.mainTiming`): what "latency" means for it (a
 * summary's, a result's); `totalMs` for a kind this build does not know.
 */
export function mainTiming(kind: string): keyof Timings {
  return isProbeKind(kind) ? probeRegistry[kind].mainTiming : 'totalMs';
}

export function isProbeKind(kind: string): kind is ProbeKind {
  return Object.prototype.hasOwnProperty.call(probeRegistry, kind);
}

/** The definition of a kind, or a clear error naming the kinds there are. */
export function probeDefinition(kind: string): ProbeDefinition<unknown> {
  if (!isProbeKind(kind)) {
    throw new ConfigError(
      `unknown probe kind "${kind}" (expected one of: ${probeKinds.join(', ')})`,
      {
        code: 'FL_ERR_UNKNOWN_KIND',
      },
    );
  }
  return probeRegistry[kind];
}
