import { isIP } from 'node:net';
import { z } from 'zod';
import {
  adaptiveTimeoutField,
  asNumber,
  confirmField,
  durationField,
  durationOrAutoField,
  formatDurationMs,
  isRecord,
} from '../lib/config-fields.js';
import type { IssueSink } from '../lib/config-fields.js';
import { checkKindDefaults, perKindOptionsField } from '../probes/kind-options.js';
import type { KindDefaults } from '../probes/kind-options.js';
import type { ProbeKind } from '../probes/registry.js';
import type { Report } from './config-report.js';
import type { ComponentConfig } from './inventory.js';

/**
 * The collector config's `agents:` and `probes:` sections: what agents are told about
 * reporting and probing, the plan's defaults (collector/plan.ts).
 */

/**
 * The layers a service is probed at: `icmp` once per component, `tcp` a connect to each
 * service's port, `protocol` the service's own kind (http, postgres, dns…).
 */
export const probeLayers = ['icmp', 'tcp', 'protocol'] as const;
export type ProbeLayer = (typeof probeLayers)[number];

/** The packet size of the planned mtu probe when `probes.mtu` does not say: Ethernet's MTU. */
export const defaultMtuBytes = 1500;
/** IPv4's minimum MTU and the largest IP packet: the sizes `probes.mtu.size` takes. */
const minMtuBytes = 68;
const maxMtuBytes = 65_535;
/** Every IPv6 link carries this much: a smaller mtu probe over IPv6 tests nothing. */
const minIpv6MtuBytes = 1280;

const minIntervalMs = 100;
const minTimeoutMs = 10;
const defaultTimeoutShare = 0.8;
const defaultTimeoutCapMs = 5_000;

/** `reportInterval: auto`: the longest interval auto picks. */
export const maxAutoReportIntervalMs = 10_000;
/** An agent is silent after this many report intervals, and never sooner than the minimum. */
export const silentAfterReports = 3;
export const minSilentAfterMs = 3_000;

export const agentsSchema = z
  .object({
    silentAfter: durationField(1000)
      .optional()
      .describe(
        'An agent with no report for this long counts as silent. Default: 3 × reportInterval, at least 3s. At least twice reportInterval, so one late batch is not silence.',
      ),
    reportInterval: durationOrAutoField(minIntervalMs)
      .prefault('auto')
      .describe(
        'How often agents send a report batch, which is also their heartbeat (failures and state changes go at once whatever it is). auto: 1s for up to 200 agents, a second more for every 200 beyond, at most 10s, so one collector core keeps up with 2,000 agents.',
      ),
    planRefresh: durationField(1000)
      .prefault('30s')
      .describe('How often agents fetch their plan again (an unchanged plan keeps its version).'),
  })
  .strict()
  .describe('What agents are told about reporting, and when one counts as silent.');

export const probesSchema = z
  .object({
    interval: durationField(minIntervalMs)
      .prefault('1s')
      .describe('How often each planned target is probed.'),
    timeout: durationField(minTimeoutMs)
      .optional()
      .describe(
        'Probe timeout, shorter than `interval`. Default: 80% of the interval, at most 5s.',
      ),
    layers: z
      .array(
        z.enum(probeLayers, {
          error: (iss) =>
            iss.input === undefined ? undefined : `expected one of: ${probeLayers.join(', ')}`,
        }),
      )
      .min(1, { error: 'expected at least one layer' })
      .prefault([...probeLayers])
      .describe(
        "Layers probed: icmp (each component's host), tcp (a connect to each service's port), protocol (the service's own kind). Comparing layers is how a network fault is told from a service fault.",
      ),
    mesh: z
      .boolean()
      .default(true)
      .describe(
        "Agents also ping every other known agent's host (Pingmesh), so agent hosts outside the inventory are covered too.",
      ),
    mtu: z
      .union(
        [
          z.boolean(),
          z
            .object({
              size: z
                .number()
                .int()
                .min(minMtuBytes)
                .max(maxMtuBytes)
                .default(defaultMtuBytes)
                .describe(
                  `Bytes of each echo as a whole IP packet (headers included): the MTU every path must carry. Default ${defaultMtuBytes}; e.g. 9000 on a jumbo-frame network. At least ${minIpv6MtuBytes} where a component has an IPv6 address.`,
                ),
            })
            .strict(),
        ],
        { error: 'expected true, false or a mapping such as { size: 9000 }' },
      )
      .default(true)
      .describe(
        `A full-size echo with Don't Fragment (kind mtu, target <component>/mtu) beside every icmp target, so a switch port or link with a smaller MTU — small packets pass, full-size ones vanish or come back "fragmentation needed" — is seen as such, not blamed on the service behind it. true (default): ${defaultMtuBytes}-byte packets; { size: 9000 } for jumbo frames; false: none.`,
      ),
    options: perKindOptionsField('probe')
      .prefault({})
      .describe(
        "Per-kind default options; a service's own `options` are merged over them key by key.",
      ),
    confirm: confirmField()
      .prefault({})
      .describe(
        'Fast confirmation: when a path changes class the agent re-probes it `count` times, `spacing` apart, and reports the change with its confirmations at once; the collector counts a burst that agrees as confirmed. Told to agents in the plan.',
      ),
    adaptiveTimeout: adaptiveTimeoutField(),
  })
  .strict()
  .describe('Plan defaults: what every agent probes, how often.');

/** What agents are told about reporting, and when one counts as silent. */
export interface AgentsConfig {
  /** An agent with no report for this long is silent; auto: 3 report intervals, at least 3 s. */
  readonly silentAfterMs: number | 'auto';
  /** How often agents send a report batch (told in the plan); auto: by fleet size. */
  readonly reportIntervalMs: number | 'auto';
  /** How often agents fetch a new plan (told in the plan). */
  readonly planRefreshMs: number;
}

/** Plan defaults. */
export interface ProbesConfig {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly layers: readonly ProbeLayer[];
  /** Agents also ping every other known agent's host. */
  readonly mesh: boolean;
  /**
   * The full-size echo planned beside every icmp target (`<component>/mtu`, kind mtu), with
   * its IP packet size in bytes; false: none.
   */
  readonly mtu: { readonly size: number } | false;
  /** Per-kind default options as written (validated). */
  readonly options: Readonly<Partial<Record<ProbeKind, Readonly<Record<string, unknown>>>>>;
  /** The confirmation burst agents run after a change of class (count 0: none). */
  readonly confirm: { readonly count: number; readonly spacingMs: number };
  /** Per-path timeouts shrink towards the path's round trip (the configured one is the ceiling). */
  readonly adaptiveTimeout: boolean;
}

/** The `agents:` section, resolved: silentAfter checked against the report interval. */
export function resolveAgents(raw: unknown, report: Report): AgentsConfig {
  const agents: Record<string, unknown> = isRecord(raw) ? raw : {};
  const reportIntervalMs =
    agents.reportInterval === 'auto' ? 'auto' : (asNumber(agents.reportInterval) ?? 0);
  const writtenSilentMs = asNumber(agents.silentAfter);
  const longestReportMs = reportIntervalMs === 'auto' ? maxAutoReportIntervalMs : reportIntervalMs;
  if (
    writtenSilentMs !== undefined &&
    longestReportMs > 0 &&
    writtenSilentMs < 2 * longestReportMs
  ) {
    report(
      ['agents', 'silentAfter'],
      `silentAfter ${formatDurationMs(writtenSilentMs)} must be at least twice the report interval ${formatDurationMs(longestReportMs)}${reportIntervalMs === 'auto' ? ' (the longest auto picks)' : ''}`,
    );
  }
  return {
    silentAfterMs:
      writtenSilentMs ??
      (reportIntervalMs === 'auto'
        ? 'auto'
        : Math.max(minSilentAfterMs, silentAfterReports * reportIntervalMs)),
    reportIntervalMs,
    planRefreshMs: asNumber(agents.planRefresh) ?? 0,
  };
}

/**
 * The `probes:` section, resolved, with the per-kind defaults the inventory's services are
 * merged over. The mtu size is checked against the components' addresses later
 * ({@link checkMtuSize}).
 */
export function resolveProbes(
  raw: unknown,
  ctx: IssueSink | undefined,
  report: Report,
): { readonly probes: ProbesConfig; readonly kindDefaults: KindDefaults } {
  const probes: Record<string, unknown> = isRecord(raw) ? raw : {};
  const intervalMs = asNumber(probes.interval) ?? 0;
  const writtenTimeoutMs = asNumber(probes.timeout);
  if (writtenTimeoutMs !== undefined && intervalMs > 0 && writtenTimeoutMs >= intervalMs) {
    report(
      ['probes', 'timeout'],
      `timeout ${formatDurationMs(writtenTimeoutMs)} must be shorter than the interval ${formatDurationMs(intervalMs)}`,
    );
  }
  const layers: ProbeLayer[] = [];
  if (Array.isArray(probes.layers)) {
    probes.layers.forEach((layer: unknown, i) => {
      if (typeof layer !== 'string') return;
      if (layers.includes(layer as ProbeLayer)) {
        report(['probes', 'layers', i], `layer ${JSON.stringify(layer)} is listed twice`);
      } else layers.push(layer as ProbeLayer);
    });
  }
  const kindDefaults = checkKindDefaults(probes.options, ctx, ['probes', 'options']);
  const mtuDefaults = isRecord(probes.options) ? probes.options.mtu : undefined;
  if (isRecord(mtuDefaults) && mtuDefaults.size !== undefined) {
    report(
      ['probes', 'options', 'mtu', 'size'],
      'the size of the planned mtu probe is probes.mtu.size: leave size out here',
      undefined,
      { pointAt: 'key' },
    );
  }
  const dnsDefaults = isRecord(probes.options) ? probes.options.dns : undefined;
  if (isRecord(dnsDefaults) && dnsDefaults.server !== undefined) {
    report(
      ['probes', 'options', 'dns', 'server'],
      'the server of a dns service is its component (address and port): leave server out',
      undefined,
      { pointAt: 'key' },
    );
  }
  const mtu =
    probes.mtu === false
      ? false
      : { size: isRecord(probes.mtu) ? (asNumber(probes.mtu.size) ?? 0) : defaultMtuBytes };
  const confirm = {
    count: isRecord(probes.confirm) ? (asNumber(probes.confirm.count) ?? 0) : 0,
    spacingMs: isRecord(probes.confirm) ? (asNumber(probes.confirm.spacing) ?? 0) : 0,
  };
  return {
    probes: {
      intervalMs,
      // Unwritten, the timeout follows the interval rather than making `interval: 500ms`
      // alone an error about a timeout nobody wrote.
      timeoutMs:
        writtenTimeoutMs ??
        Math.min(defaultTimeoutCapMs, Math.floor(intervalMs * defaultTimeoutShare)),
      layers,
      mesh: probes.mesh !== false,
      mtu,
      options: kindDefaults.options,
      confirm,
      adaptiveTimeout: probes.adaptiveTimeout !== false,
    },
    kindDefaults,
  };
}

/** An mtu probe smaller than IPv6's minimum where an IPv6 path is probed tests nothing. */
export function checkMtuSize(
  raw: unknown,
  mtu: ProbesConfig['mtu'],
  components: readonly ComponentConfig[],
  report: Report,
): void {
  const probes: Record<string, unknown> = isRecord(raw) ? raw : {};
  const mtuDefaults = isRecord(probes.options) ? probes.options.mtu : undefined;
  if (mtu !== false && mtu.size >= minMtuBytes && mtu.size < minIpv6MtuBytes) {
    const ipv6 = components.find((c) => isIP(c.address) === 6);
    const why =
      isRecord(mtuDefaults) && mtuDefaults.family === 6
        ? 'probes.options.mtu.family is 6'
        : ipv6 === undefined
          ? undefined
          : `component ${JSON.stringify(ipv6.name)} has an IPv6 address (${ipv6.address})`;
    if (why !== undefined) {
      report(
        ['probes', 'mtu', 'size'],
        `expected at least ${minIpv6MtuBytes}: ${why}, and every IPv6 link carries ${minIpv6MtuBytes}-byte packets`,
        mtu.size,
      );
    }
  }
}
