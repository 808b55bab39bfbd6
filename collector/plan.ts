import { createHash } from 'node:crypto';
import { isValidHost } from '../lib/host.js';
import type { Plan, PlanTarget } from '../wire/plan.js';
import type { CollectorConfig } from './config.js';
import { hostPort, protocolProbe } from './inventory.js';
import type { ComponentConfig } from './inventory.js';
import { hostTargetName, meshHostName, serviceTargetName } from './target-names.js';
import { maxAutoReportIntervalMs, minSilentAfterMs, silentAfterReports } from './plan-config.js';

/**
 * Plans: what each agent probes (a Pingmesh-style pinglist), made from the inventory. Pure:
 * the same config, agent and known agents always give the same targets and version.
 */

/** An agent the collector has heard from (mesh targets are made for these). */
export interface KnownAgent {
  readonly name: string;
  /** Where its host answers (e.g. the address its reports came from); needed for a mesh ping. */
  readonly address?: string;
  /** Its topology labels, put on its mesh target. */
  readonly labels?: Readonly<Record<string, string>>;
}

/** The agent's own role label on a mesh target to an agent host outside the inventory. */
export const meshRole = 'agent';

const versionChars = 16;

/** JSON with object keys sorted at every level: equal content, equal text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Short content hash of what an agent does with a plan: its targets and intervals, and
 * (when given) how it confirms changes and times probes out.
 */
export function planVersion(
  targets: readonly PlanTarget[],
  reportIntervalMs: number,
  refreshIntervalMs: number,
  probing: Pick<Plan, 'confirm' | 'adaptiveTimeout'> = {},
): string {
  return createHash('sha256')
    .update(canonicalJson({ targets, reportIntervalMs, refreshIntervalMs, ...probing }))
    .digest('hex')
    .slice(0, versionChars);
}

/** `reportInterval: auto`: one more second per this many agents, from 1 s up to the max. */
const agentsPerAutoSecond = 200;

/**
 * The report interval agents are told for a fleet of `fleetSize` agents: the configured
 * one, or with `auto` 1 s up to 200 agents, a second more per 200 beyond, at most 10 s
 * (2,000 agents then send 200 batches a second, what one collector core takes with room
 * to spare; bench/collector.ts). Failures and state changes go at once whatever it is.
 */
export function reportIntervalFor(agents: CollectorConfig['agents'], fleetSize: number): number {
  if (agents.reportIntervalMs !== 'auto') return agents.reportIntervalMs;
  const seconds = Math.ceil(Math.max(1, fleetSize) / agentsPerAutoSecond);
  return Math.min(maxAutoReportIntervalMs, seconds * 1000);
}

/**
 * When a live agent's report is overdue (`late`): a report interval and a half, at least
 * 500 ms beyond one — below `silentAfter`. A late agent's last view predates the fault now
 * arriving, so localisation does not count it; it raises nothing by itself.
 */
export function lateAfterFor(agents: CollectorConfig['agents'], fleetSize: number): number {
  const reportMs = reportIntervalFor(agents, fleetSize);
  const lateMs = reportMs + Math.max(500, reportMs / 2);
  return Math.min(lateMs, silentAfterFor(agents, fleetSize));
}

/** When an agent of a fleet of `fleetSize` counts as silent: configured, or 3 report intervals (≥ 3 s). */
export function silentAfterFor(agents: CollectorConfig['agents'], fleetSize: number): number {
  if (agents.silentAfterMs !== 'auto') return agents.silentAfterMs;
  return Math.max(minSilentAfterMs, silentAfterReports * reportIntervalFor(agents, fleetSize));
}

/**
 * The plan for `agentName`: for every component but the agent's own (the one whose `agent`
 * is this agent), by `probes.layers`:
 * Target names (collector/target-names.ts):
 * - icmp: `<component>/icmp` to its address, and (`probes.mtu`, on by default) beside it
 *   `<component>/mtu`, a full-size echo with Don't Fragment of `probes.mtu.size` bytes;
 * - tcp: `<component>/<service>/tcp`, a plain connect to each service's port;
 * - protocol: `<component>/<service>/<kind>` (a tcp service's protocol is its tcp target).
 * Labels are the component's plus `role`; options the kind's defaults with the service's
 * own merged over them. With `probes.mesh`, every known agent's host outside the inventory
 * that no target pings yet gets an icmp target too (and its mtu target); an inventory
 * component is probed by `probes.layers` alone, whichever agent runs on it, so no agent
 * (nor one named like a component) can add probes the layers leave out. An agent unknown
 * to the inventory gets every component.
 *
 * `nowMs` only sets `generatedAtMs`; the version depends on the content alone. `fleetSize`
 * (what `reportInterval: auto` scales with) defaults to the known agents and this one; the
 * collector passes the one number its `silentAfter` follows too.
 */
export function planFor(
  config: CollectorConfig,
  agentName: string,
  knownAgents: readonly KnownAgent[] = [],
  nowMs: number = Date.now(),
  fleetSize?: number,
): Plan {
  const { probes, agents } = config;
  const layers = new Set(probes.layers);
  const components = config.inventory.components;
  const own = components.find((c) => c.agent === agentName);
  const schedule = { intervalMs: probes.intervalMs, timeoutMs: probes.timeoutMs };
  const targets: PlanTarget[] = [];
  const names = new Set<string>();
  const pinged = new Set<string>();
  const add = (t: PlanTarget): void => {
    targets.push(t);
    names.add(t.name);
    if (t.kind === 'icmp') pinged.add(t.address);
  };
  // A host's small echo, and beside it the full-size one: same address, schedule and labels.
  const pingHost = (host: {
    readonly name: string;
    readonly component: string;
    readonly address: string;
    readonly labels: Readonly<Record<string, string>>;
  }): void => {
    const { name, ...where } = host;
    add({
      name: hostTargetName(name, 'icmp'),
      ...where,
      kind: 'icmp',
      ...schedule,
      options: { ...probes.options.icmp },
    });
    if (probes.mtu === false) return;
    add({
      name: hostTargetName(name, 'mtu'),
      ...where,
      kind: 'mtu',
      ...schedule,
      options: { ...probes.options.mtu, size: probes.mtu.size },
    });
  };
  const ping = (c: ComponentConfig): void =>
    pingHost({
      name: c.name,
      component: c.name,
      address: c.address,
      labels: { ...c.labels, role: c.role },
    });
  // The tcp layer is a plain connect; only the address family of the tcp defaults applies.
  const tcpFamily = probes.options.tcp?.family;
  const connectOptions = tcpFamily === undefined ? {} : { family: tcpFamily };

  for (const c of components) {
    if (c === own) continue;
    const labels = { ...c.labels, role: c.role };
    if (layers.has('icmp')) ping(c);
    for (const s of c.services) {
      const merged = { ...probes.options[s.kind], ...s.options };
      const service = { component: c.name, service: s.name, ...schedule, labels };
      if (s.kind === 'tcp') {
        if (layers.has('tcp') || layers.has('protocol')) {
          const address = hostPort(c.address, s.port);
          add({
            name: serviceTargetName(c.name, s.name, 'tcp'),
            kind: 'tcp',
            address,
            ...service,
            options: merged,
          });
        }
        continue;
      }
      if (layers.has('tcp')) {
        const address = hostPort(c.address, s.port);
        add({
          name: serviceTargetName(c.name, s.name, 'tcp'),
          kind: 'tcp',
          address,
          ...service,
          options: { ...connectOptions },
        });
      }
      if (layers.has('protocol')) {
        const probe = protocolProbe(c.address, s);
        add({
          name: serviceTargetName(c.name, s.name, s.kind),
          kind: s.kind,
          address: probe.address,
          ...service,
          options: { ...merged, ...probe.options },
        });
      }
    }
  }

  if (probes.mesh) {
    const ownAddress = own?.address ?? knownAgents.find((a) => a.name === agentName)?.address;
    const seen = new Set<string>([agentName]);
    const sorted = [...knownAgents].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const a of sorted) {
      if (seen.has(a.name)) continue;
      seen.add(a.name);
      // An inventory component's agent: its host is probed by the layers, or not at all.
      if (components.some((c) => c.agent === a.name)) continue;
      const address = a.address;
      if (address === undefined || address === ownAddress || pinged.has(address)) continue;
      if (!isValidHost(address) || a.name.length > 128) continue;
      // An agent named like a component that runs another agent: keep both targets apart.
      const name = names.has(hostTargetName(a.name, 'icmp')) ? meshHostName(a.name) : a.name;
      if (names.has(hostTargetName(name, 'icmp'))) continue;
      pingHost({ name, component: a.name, address, labels: { ...a.labels, role: meshRole } });
    }
  }

  // The fleet: every agent the collector knows, this one included.
  const reportIntervalMs = reportIntervalFor(
    agents,
    fleetSize ?? knownAgents.length + (knownAgents.some((a) => a.name === agentName) ? 0 : 1),
  );
  const probing = {
    confirm: { count: probes.confirm.count, spacingMs: probes.confirm.spacingMs },
    adaptiveTimeout: probes.adaptiveTimeout,
  };
  return {
    version: planVersion(targets, reportIntervalMs, agents.planRefreshMs, probing),
    agent: agentName,
    generatedAtMs: nowMs,
    refreshIntervalMs: agents.planRefreshMs,
    reportIntervalMs,
    targets,
    ...probing,
  };
}
