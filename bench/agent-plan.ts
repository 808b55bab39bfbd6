import { probeRegistry } from '../probes/registry.js';
import { parseTarget } from '../probes/target.js';

/*
 * The agent bench's `--managed` side: a collector config whose plan for the bench's lone
 * agent is the bench's targets (bench/agent.ts starts the collector with it).
 */

/** A bench target, as the agent's own config would list it. */
export interface PlanTarget {
  readonly kind: 'icmp' | 'tcp' | 'http';
  /** host (icmp), host:port (tcp) or an http:// URL. */
  readonly address: string;
  readonly place: string;
}

/** What of the bench's settings the plan follows. */
export interface PlanSettings {
  readonly intervalMs: number;
  readonly icmpCount: number;
  readonly confirmCount?: number;
  readonly adaptiveTimeout?: boolean;
}

/**
 * The inventory whose plan for a lone agent is the bench's targets, kind for kind: a
 * component per http target (its ping and its tcp connect come along), one per tcp target
 * left over (its ping comes along), one per icmp target left over. With the default third of
 * each kind the plan has exactly the targets' counts; the pings go to the http and tcp
 * targets' hosts rather than to addresses of their own.
 */
export function inventoryFor(targets: readonly PlanTarget[]): unknown[] {
  const of = (k: PlanTarget['kind']): PlanTarget[] => targets.filter((t) => t.kind === k);
  const http = of('http');
  const tcp = of('tcp').slice(http.length);
  const icmp = of('icmp').slice(http.length + tcp.length);
  let n = 0;
  const name = (): string => `c-${String(n++).padStart(4, '0')}`;
  return [
    ...http.map((t) => {
      const { host, port, url } = parseTarget(t.address, probeRegistry.http.target);
      return {
        name: name(),
        address: host,
        labels: { place: t.place },
        services: [{ kind: 'http', port, path: `${url!.pathname}${url!.search}` }],
      };
    }),
    ...tcp.map((t) => {
      const { host, port } = parseTarget(t.address, probeRegistry.tcp.target);
      return {
        name: name(),
        address: host,
        labels: { place: t.place },
        services: [{ kind: 'tcp', port }],
      };
    }),
    ...icmp.map((t) => ({ name: name(), address: t.address, labels: { place: t.place } })),
  ];
}

/**
 * The collector config (`rest`: listen, dataDir, tokens…) whose plan is `targets` at the
 * bench's interval, with the standalone agent's default timeout (90 % of the interval), no
 * mesh and no full-size echoes.
 */
export function planCollectorConfig(
  s: PlanSettings,
  targets: readonly PlanTarget[],
  rest: Record<string, unknown>,
): Record<string, unknown> {
  return {
    ...rest,
    probes: {
      interval: `${s.intervalMs}ms`,
      timeout: `${Math.floor(s.intervalMs * 0.9)}ms`,
      layers: ['icmp', 'tcp', 'protocol'],
      mesh: false,
      mtu: false,
      ...(s.confirmCount === undefined ? {} : { confirm: { count: s.confirmCount } }),
      ...(s.adaptiveTimeout === undefined ? {} : { adaptiveTimeout: s.adaptiveTimeout }),
      options: { icmp: { count: s.icmpCount } },
    },
    inventory: { components: inventoryFor(targets) },
  };
}
