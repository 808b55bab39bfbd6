import { networkInterfaces } from 'node:os';
import type { Observer } from './localise/localise.js';
import type { ComponentConfig } from './inventory.js';

/**
 * Where this collector stands in the topology it observes (DESIGN: the collector is an
 * observer inside the network, not above it). Inferred, so nothing needs configuring: its
 * host is the inventory component whose address is one of this machine's (not loopback: an
 * inventory of local test services all on 127.0.0.1 says nothing of where the collector is);
 * its local agents are that component's agent and the one `--local-agent` starts beside it;
 * its labels are its host's. With none of these, the localiser takes the side with the most
 * reporting agents as the collector's.
 */
export function whereCollectorStands(
  components: readonly ComponentConfig[],
  options: {
    /** The agent started beside the collector (`--local-agent`), if any. */
    readonly localAgent?: string;
    /** This machine's addresses (default: its interfaces'). */
    readonly addresses?: readonly string[];
  } = {},
): Observer {
  const own = new Set((options.addresses ?? localAddresses()).map(normalise));
  const here = components.filter((c) => own.has(normalise(c.address)));
  // Several components on this machine's addresses: the one an agent here runs as, else none.
  const host =
    here.length === 1
      ? here[0]
      : here.find((c) => options.localAgent !== undefined && c.agent === options.localAgent);
  const agents = new Set<string>();
  if (host !== undefined) agents.add(host.agent);
  if (options.localAgent !== undefined) agents.add(options.localAgent);
  return {
    ...(host === undefined ? {} : { host: host.name, labels: host.labels }),
    ...(agents.size === 0 ? {} : { agents: [...agents].sort() }),
  };
}

/** This machine's interface addresses, loopback left out. */
function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (!a.internal) out.push(a.address);
  return out;
}

const normalise = (address: string): string => address.toLowerCase().replace(/^\[|\]$/g, '');
