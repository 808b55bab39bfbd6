import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { Plan } from '../wire/plan.js';
import type { CollectorConfig } from './config.js';
import { planFor, type KnownAgent } from './plan.js';
import type { AgentLiveness } from './types.js';

/** Addresses no other host reaches this agent's host at: loopback, link-local, unspecified. */
const unreachableFromOthers = new BlockList();
unreachableFromOthers.addSubnet('127.0.0.0', 8, 'ipv4');
unreachableFromOthers.addSubnet('169.254.0.0', 16, 'ipv4');
unreachableFromOthers.addAddress('0.0.0.0', 'ipv4');
unreachableFromOthers.addAddress('::1', 'ipv6');
unreachableFromOthers.addAddress('::', 'ipv6');
unreachableFromOthers.addSubnet('fe80::', 10, 'ipv6');

/** A request's source address as a host other agents can ping, if it is one. */
export function meshAddress(ip: string | undefined): string | undefined {
  if (ip === undefined) return undefined;
  // An IPv4 client on a dual-stack socket: ::ffff:10.0.0.5.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  const address = mapped ?? ip;
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  if (family === undefined || unreachableFromOthers.check(address, family)) return undefined;
  return address;
}

/** What the plan book reads of the path matrix: the agents that have reported. */
export interface ReportingAgents {
  hasAgent(agent: string): boolean;
  agents(): AgentLiveness[];
}

/**
 * The plans the collector hands out, and where each agent's host answers (the mesh pings it
 * there). Plans and hosts are remembered only for agents that have reported or are in the
 * inventory: plan requests for made-up names must not grow the collector (issue 13: 3,000
 * of them grew it by 40 MB).
 */
export class PlanBook {
  private readonly plans = new Map<string, Plan>();
  /** Each agent's host as its plan requests show it (the mesh pings it there). */
  private readonly agentAddresses = new Map<string, string>();
  /** The agent names of the inventory. */
  private readonly inventoryAgents: ReadonlySet<string>;

  constructor(
    private readonly config: CollectorConfig,
    private readonly matrix: ReportingAgents,
  ) {
    this.inventoryAgents = new Set(config.inventory.components.map((c) => c.agent));
  }

  /**
   * `agent`'s plan for a fleet of `fleetSize`. `from`: the address the request came from. An
   * agent's host is pinged by the others (mesh) at the address its plan requests come from,
   * unless that is loopback or link-local, or other agents come from it too (a proxy or a
   * NAT in between).
   */
  plan(agent: string, from: string | undefined, fleetSize: number): Plan {
    const remembered = this.inventoryAgents.has(agent) || this.matrix.hasAgent(agent);
    const address = meshAddress(from);
    if (address !== undefined && remembered) this.agentAddresses.set(agent, address);
    // An address several agents come from is a proxy's or a NAT's, not an agent's host.
    const agentsAt = new Map<string, number>();
    for (const at of this.agentAddresses.values()) agentsAt.set(at, (agentsAt.get(at) ?? 0) + 1);
    const known = new Map<string, KnownAgent>();
    const add = (name: string, labels?: Readonly<Record<string, string>>): void => {
      if (known.has(name)) return;
      const seenAt = this.agentAddresses.get(name);
      const at = seenAt !== undefined && agentsAt.get(seenAt) === 1 ? seenAt : undefined;
      known.set(name, {
        name,
        ...(at === undefined ? {} : { address: at }),
        ...(labels === undefined ? {} : { labels }),
      });
    };
    // Only agents that have reported are in the mesh; asking for a plan adds nobody.
    for (const a of this.matrix.agents()) add(a.agent, a.labels);
    const plan = planFor(this.config, agent, [...known.values()], Date.now(), fleetSize);
    // Keep the object stable for an unchanged version (ETag/304 on the agent side).
    const prev = this.plans.get(agent);
    if (prev !== undefined && prev.version === plan.version) return prev;
    if (remembered) this.plans.set(agent, plan);
    else this.plans.delete(agent);
    return plan;
  }
}
