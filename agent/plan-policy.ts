import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../lib/errors.js';
import type { ResolvedTarget } from './config.js';

/**
 * What a collector's plan may make this agent do, set in the agent's own config: a stand-in
 * collector (or a stolen collector config) must not turn the agent into a tool that sends
 * chosen bytes to chosen ports. The defaults take every plan the collector builds from an
 * inventory with default probe settings (GET without headers, tcp connect/expect without
 * `send`); what an operator adds to an inventory beyond that must be allowed here too.
 */
export interface PlanPolicy {
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

function dnsServerHost(server: string): string {
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(server);
  if (bracket !== null) return bracket[1]!;
  if (isIP(server) === 6) return server;
  return server.replace(/:\d+$/, '');
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
  const o = t.options as Record<string, unknown>;
  if (allowList !== undefined) {
    const server = t.kind === 'dns' && typeof o.server === 'string' ? o.server : undefined;
    const host = server === undefined ? t.target.host : dnsServerHost(server);
    if (!allowList.allows(host))
      return `${server === undefined ? 'host' : 'dns server'} ${host} is not in the agent's allowTargets`;
    if (t.kind === 'http' && o.followRedirects === true)
      return 'followRedirects could leave allowTargets; refused while allowTargets is set';
  }
  if (t.kind === 'tcp' && typeof o.send === 'string' && !policy.allowTcpSend)
    return "a tcp payload (options.send) is refused: the agent's config does not allow plan payloads (allowTcpSend)";
  if (t.kind === 'http') {
    const method = typeof o.method === 'string' ? o.method : 'GET';
    if (!policy.allowHttpMethods.includes(method))
      return `http method ${method} is refused: the agent allows ${policy.allowHttpMethods.join(', ')} (allowHttpMethods)`;
    const headers = o.headers as Record<string, string> | undefined;
    const custom = Object.keys(headers ?? {});
    if ((custom.length > 0 || o.body !== undefined) && !policy.allowHttpHeaders)
      return `custom http headers or body (${custom.join(', ') || 'body'}) are refused: the agent's config does not allow them (allowHttpHeaders)`;
  }
  return undefined;
}
