import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../lib/errors.js';
import { probeDefinition } from '../probes/registry.js';
import type { PlanPermissions } from '../probes/types.js';
import type { ResolvedTarget } from './config.js';

/**
 * What a collector's plan may make this agent do, set in the agent's own config: a stand-in
 * collector (or a stolen collector config) must not turn the agent into a tool that sends
 * chosen bytes to chosen ports. The defaults take every plan the collector builds from an
 * inventory with default probe settings (GET without headers, tcp connect/expect without
 * `send`); what an operator adds to an inventory beyond that must be allowed here too.
 */
export interface PlanPolicy extends PlanPermissions {
  /**
   * Where plan targets may point: CIDR blocks or IP addresses (`10.0.0.0/8`, `::1`) and
   * host names, `*.` as a leading wildcard (`*.internal`). Undefined: anywhere. A host name
   * target is allowed only by a host name entry (its address is not known before it is
   * resolved). For dns targets the resolver (`options.server`) is checked, else the name.
   */
  readonly allowTargets?: readonly string[];
  /** Raw tcp payloads (`options.send`) from the plan. Default false. */
  readonly allowTcpSend: boolean;
  /** HTTP methods a plan may use. Default GET and HEAD. */
  readonly allowHttpMethods: readonly string[];
  /** Custom HTTP request headers and bodies from the plan. Default false. */
  readonly allowHttpHeaders: boolean;
}
// Each kind's own part of the check (a dns resolver, a tcp payload, http methods) is its
// definition's `planCheck` (probes/types.ts).

export const defaultPlanPolicy: PlanPolicy = {
  allowTcpSend: false,
  allowHttpMethods: ['GET', 'HEAD'],
  allowHttpHeaders: false,
};

const hostRe =
  /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** A compiled allow-list: `allows(host)`. */
export interface TargetAllowList {
  allows(host: string): boolean;
}

/** Compiles `allowTargets`; throws ConfigError naming the first bad entry (`what` names the setting). */
export function compileAllowList(entries: readonly string[], what: string): TargetAllowList {
  const blocks = new BlockList();
  const exact = new Set<string>();
  const suffixes: string[] = [];
  entries.forEach((raw, i) => {
    const e = raw.trim();
    const slash = e.indexOf('/');
    if (slash >= 0) {
      const addr = e.slice(0, slash);
      const bits = Number(e.slice(slash + 1));
      const family = isIP(addr);
      const max = family === 6 ? 128 : 32;
      if (family === 0 || !/^\d{1,3}$/.test(e.slice(slash + 1)) || bits > max) {
        throw new ConfigError(
          `${what}[${i}]: expected a CIDR block such as 10.0.0.0/8, an address or a host name (actual: ${JSON.stringify(raw)})`,
        );
      }
      blocks.addSubnet(addr, bits, family === 6 ? 'ipv6' : 'ipv4');
    } else if (isIP(e) !== 0) {
      blocks.addAddress(e, isIP(e) === 6 ? 'ipv6' : 'ipv4');
    } else if (hostRe.test(e)) {
      if (e.startsWith('*.')) suffixes.push(e.slice(1).toLowerCase());
      else exact.add(e.toLowerCase());
    } else {
      throw new ConfigError(
        `${what}[${i}]: expected a CIDR block such as 10.0.0.0/8, an address or a host name (actual: ${JSON.stringify(raw)})`,
      );
    }
  });
  return {
    allows(host: string): boolean {
      const h = host.replace(/^\[|\]$/g, '');
      const family = isIP(h);
      if (family !== 0) return blocks.check(h, family === 6 ? 'ipv6' : 'ipv4');
      const lower = h.toLowerCase().replace(/\.$/, '');
      return exact.has(lower) || suffixes.some((s) => lower.endsWith(s));
    },
  };
}

/**
 * Why the policy refuses this plan target, or undefined when it may run. Checked on the
 * target as parsed (address and options), before it is scheduled.
 */
export function planTargetRefusal(
  t: ResolvedTarget,
  policy: PlanPolicy,
  allowList: TargetAllowList | undefined,
): string | undefined {
  const check = probeDefinition(t.kind).planCheck;
  if (allowList !== undefined) {
    const peer = check?.peer?.(t.options);
    const host = peer === undefined ? t.target.host : peer.host;
    if (!allowList.allows(host))
      return `${peer === undefined ? 'host' : peer.what} ${host} is not in the agent's allowTargets`;
    const escapes = check?.escapes?.(t.options);
    if (escapes !== undefined) return `${escapes}; refused while allowTargets is set`;
  }
  return check?.refusal?.(t.options, policy);
}
