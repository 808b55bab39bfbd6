import type { HostKind } from './inventory.js';
import { isHostKind } from './inventory.js';

/**
 * Plan target names: collector/plan.ts makes them, the path matrix splits them back into
 * component and service (wire/plan.ts `PlanTarget.name`). One format, one parser:
 * - `<component>/icmp`, `<component>/mtu`: a host's echoes (a host kind: no service);
 * - `<name>/agent/icmp`, `<name>/agent/mtu`: the host of a mesh agent named like a component
 *   that runs another agent;
 * - `<component>/<service>/tcp`: a plain connect to a service's port;
 * - `<component>/<service>/<kind>`: the service's own protocol.
 * Component, service and agent names hold no `/` (collector/inventory.ts), so the first
 * segment is the component and a service is what lies between it and the kind.
 */

/** A host's echo target: `<host>/icmp`, `<host>/mtu`. */
export function hostTargetName(host: string, kind: HostKind): string {
  return `${host}/${kind}`;
}

/** The host name a mesh agent's echoes get when a component already has the agent's name. */
export function meshHostName(agent: string): string {
  return `${agent}/agent`;
}

/** A service's target: `<component>/<service>/<kind>` (tcp: the connect to its port). */
export function serviceTargetName(component: string, service: string, kind: string): string {
  return `${component}/${service}/${kind}`;
}

/**
 * A target's component and service, from its name and kind. A name in the plan's format ends
 * in its kind; the older `<component>/<kind>[/<service>]` (tests, hand-written batches) is
 * read too. Anything else is a component of its own.
 */
export function describePlanTarget(
  target: string,
  kind: string,
): { readonly component: string; readonly service?: string } {
  const parts = target.split('/');
  if (parts.length < 2) return { component: target };
  const component = parts[0]!;
  if (parts[parts.length - 1] === kind) {
    if (isHostKind(kind) || parts.length < 3) return { component };
    return { component, service: parts.slice(1, -1).join('/') };
  }
  if (parts[1] === kind) {
    const service = parts.slice(2).join('/');
    return service === '' ? { component } : { component, service };
  }
  return { component: target };
}
