import { isIP } from 'node:net';
import { z } from 'zod';
import { agentNameSchema, isRecord, labelsField } from '../lib/config-fields.js';
import type { IssueSink } from '../lib/config-fields.js';
import { checkMergedOptions, optionsSlot } from '../probes/kind-options.js';
import type { KindDefaults } from '../probes/kind-options.js';
import { ConfigError } from '../lib/errors.js';
import { probeKinds, probeRegistry } from '../probes/registry.js';
import type { ProbeKind } from '../probes/registry.js';
import { parseTarget } from '../probes/target.js';
import type { Report } from './config-report.js';

/**
 * The collector config's `inventory:` section: the components (hosts) of the system and the
 * services on them, which the plans are made from (collector/plan.ts), and the address of
 * each service's protocol probe.
 */

/** Roles the diagnosis knows; `role` accepts any other word too. */
export const knownRoles = ['database', 'api', 'web', 'cache', 'queue', 'dns', 'other'] as const;

/**
 * Kinds planned once per host, not per service: `<component>/<kind>` (collector/plan.ts):
 * the small echo (the icmp layer) and the full-size one beside it (`probes.mtu`).
 */
export const hostKinds = ['icmp', 'mtu'] as const satisfies readonly ProbeKind[];
export type HostKind = (typeof hostKinds)[number];

/** Whether targets of `kind` are a host's (no service): icmp, mtu. */
export function isHostKind(kind: string): kind is HostKind {
  return (hostKinds as readonly string[]).includes(kind);
}

/** Kinds a service can be: every probe kind with something on a port (not icmp, not mtu). */
export type ServiceKind = Exclude<ProbeKind, HostKind>;
export const serviceKinds = probeKinds.filter((k): k is ServiceKind => !isHostKind(k));

/** Label names the plan sets on every target itself (besides the agent's reserved ones). */
const planLabelNames = ['role', 'component', 'service'] as const;

const componentNameRe = /^[A-Za-z0-9._-]{1,128}$/;
const serviceNameRe = /^[A-Za-z0-9._-]{1,64}$/;
const roleRe = /^[A-Za-z0-9._-]{1,64}$/;
const httpPathRe = /^\/[^\s#]*$/;
const defaultHttpPort = 80;
const defaultHttpsPort = 443;
const defaultDnsPort = 53;

/** One service on a component, ports defaulted. */
export interface ServiceConfig {
  /** Unique within the component; defaults to the kind. */
  readonly name: string;
  readonly kind: ServiceKind;
  /** As written, else the kind's default port (http 80/443, dns 53, postgres 5432…). */
  readonly port: number;
  /** http: the request path (default "/"). */
  readonly path?: string;
  /** http: https instead of http. */
  readonly tls?: boolean;
  /** dns: the name to resolve through this server. */
  readonly query?: string;
  /** The service's own options as written (validated merged over `probes.options[kind]`). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** One host of the inventory. */
export interface ComponentConfig {
  readonly name: string;
  /** Hostname or IP address. */
  readonly address: string;
  /** database, api, web, cache, queue, dns, other — or another word. */
  readonly role: string;
  /** Topology labels (zone, switch, rack…). */
  readonly labels: Readonly<Record<string, string>>;
  /** The agent running on this host (default: the component's name): it does not probe itself. */
  readonly agent: string;
  readonly services: readonly ServiceConfig[];
}

export const serviceSchema = z
  .object({
    name: z
      .string()
      .regex(serviceNameRe, { error: 'expected 1–64 characters from A-Z a-z 0-9 . _ -' })
      .optional()
      .describe('Unique within the component; default: the kind.'),
    kind: z
      .enum(serviceKinds as [ServiceKind, ...ServiceKind[]], {
        error: (iss) =>
          iss.input === undefined
            ? undefined
            : iss.input === 'icmp'
              ? 'icmp is not a service: every component is pinged already (probes.layers)'
              : iss.input === 'mtu'
                ? 'mtu is not a service: every pinged component gets a full-size echo already (probes.mtu)'
                : `unknown service kind: expected one of ${serviceKinds.join(', ')}`,
      })
      .describe('Probe kind of the protocol layer.'),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe(
        "Port; default: the kind's (postgres 5432, redis 6379, mysql 3306, http 80 or 443 with tls, dns 53). Required for tcp.",
      ),
    path: z
      .string()
      .max(2048)
      .regex(httpPathRe, { error: 'expected a URL path starting with "/" (e.g. "/healthz")' })
      .optional()
      .describe('http: request path, query string allowed; default "/".'),
    tls: z.boolean().optional().describe('http: use https (default false).'),
    query: z
      .string()
      .optional()
      .describe('dns (required): the name to resolve through this server.'),
    options: optionsSlot('any')
      .optional()
      .describe("This kind's options, merged over `probes.options.<kind>`."),
  })
  .strict();

export const componentSchema = z
  .object({
    name: z
      .string()
      .regex(componentNameRe, { error: 'expected 1–128 characters from A-Z a-z 0-9 . _ -' })
      .describe('Unique name of the component (host) in plans, paths and diagnoses.'),
    address: z.string().describe('Hostname or IP address of the host.'),
    role: z
      .string()
      .regex(roleRe, { error: 'expected 1–64 characters from A-Z a-z 0-9 . _ -' })
      .default('other')
      .meta({ examples: [...knownRoles] })
      .describe(`What the host is: ${knownRoles.join(', ')}, or another word.`),
    labels: labelsField(planLabelNames)
      .prefault({})
      .describe(
        'Topology labels (zone, switch, rack, subnet…): how a partition is named ("everything behind switch sw-2").',
      ),
    agent: agentNameSchema
      .optional()
      .describe(
        'Name of the agent running on this host; default: the component name. That agent does not probe its own host.',
      ),
    services: z.array(serviceSchema).prefault([]).describe('What listens on this host.'),
  })
  .strict();

function isPort(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 65535;
}

/** The port a service listens on when the config does not say. */
function defaultPort(kind: ServiceKind, tls: boolean): number | undefined {
  if (kind === 'http') return tls ? defaultHttpsPort : defaultHttpPort;
  if (kind === 'dns') return defaultDnsPort;
  return probeRegistry[kind].target.defaultPort;
}

/** parseTarget's reason, without its framing (the line shows the value). */
function targetProblem(raw: string, form: Parameters<typeof parseTarget>[1]): string | undefined {
  try {
    parseTarget(raw, form);
    return undefined;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.reason?.why ?? err.message;
  }
}

function resolveServices(
  c: Record<string, unknown>,
  ci: number,
  address: string | undefined,
  kindDefaults: KindDefaults,
  ctx: IssueSink | undefined,
  report: Report,
): ServiceConfig[] {
  const services: ServiceConfig[] = [];
  const list: unknown[] = Array.isArray(c.services) ? c.services : [];
  const firstByName = new Map<string, number>();
  const servicePath = (si: number, ...rest: PropertyKey[]): PropertyKey[] => [
    'inventory',
    'components',
    ci,
    'services',
    si,
    ...rest,
  ];
  list.forEach((s: unknown, si) => {
    if (!isRecord(s)) return;
    const at = (...rest: PropertyKey[]): PropertyKey[] => servicePath(si, ...rest);
    const kind =
      typeof s.kind === 'string' && (serviceKinds as string[]).includes(s.kind)
        ? (s.kind as ServiceKind)
        : undefined;
    const name = typeof s.name === 'string' ? s.name : kind;
    if (name !== undefined) {
      const first = firstByName.get(name);
      if (first === undefined) firstByName.set(name, si);
      else {
        // Point at the names where written, else at the services (the name is the kind).
        const nameAt = (i: number): PropertyKey[] =>
          isRecord(list[i]) && list[i].name !== undefined ? servicePath(i, 'name') : servicePath(i);
        const hint =
          s.name === undefined ? ' (the name defaults to the kind: give each a name)' : '';
        report(nameAt(si), `duplicate service name ${JSON.stringify(name)}${hint}`, undefined, {
          related: { path: nameAt(first), label: 'first used' },
        });
      }
    }
    if (kind === undefined) return;

    const only = (field: string, forKind: ServiceKind): boolean => {
      if (s[field] === undefined || kind === forKind) return true;
      report(at(field), `${field} is for ${forKind} services only`, undefined, { pointAt: 'key' });
      return false;
    };
    let fieldsOk = only('path', 'http');
    fieldsOk = only('tls', 'http') && fieldsOk;
    fieldsOk = only('query', 'dns') && fieldsOk;

    const tls = s.tls === true;
    // A port that failed its own check is already reported: build nothing from it.
    const port =
      s.port === undefined ? defaultPort(kind, tls) : isPort(s.port) ? s.port : undefined;
    if (port === undefined && s.port === undefined) {
      report(at(), `a ${kind} service needs a port`);
    }
    const query = typeof s.query === 'string' ? s.query : undefined;
    if (kind === 'dns') {
      if (query === undefined) {
        // A query of the wrong type is reported by its own check.
        if (s.query === undefined) {
          report(at(), 'a dns service needs `query`: the name to resolve through it');
        }
        fieldsOk = false;
      } else {
        const why = targetProblem(query, probeRegistry.dns.target);
        if (why !== undefined) {
          report(at('query'), why, query);
          fieldsOk = false;
        }
      }
      if (address !== undefined && isIP(address) === 0) {
        report(at(), 'a dns service is asked by IP address: write the component address as an IP');
        fieldsOk = false;
      }
    }

    const own = s.options === undefined ? {} : isRecord(s.options) ? s.options : undefined;
    let optionsOk = own !== undefined;
    if (own !== undefined) {
      if (kind === 'dns' && own.server !== undefined) {
        report(
          at('options', 'server'),
          'the server of a dns service is its component (address and port): leave server out',
          undefined,
          { pointAt: 'key' },
        );
        optionsOk = false;
      } else {
        optionsOk = checkMergedOptions(kind, kindDefaults, own, ctx, at('options')) !== undefined;
      }
    }

    if (!fieldsOk || !optionsOk || port === undefined || address === undefined) return;
    const service: ServiceConfig = {
      name: name ?? kind,
      kind,
      port,
      ...(kind === 'http'
        ? { path: typeof s.path === 'string' ? s.path : '/', tls }
        : kind === 'dns' && query !== undefined
          ? { query }
          : {}),
      options: own ?? {},
    };
    // The address the protocol probe gets, checked as the agent will check it.
    const probe = protocolProbe(address, service);
    const why = targetProblem(probe.address, probeRegistry[kind].target);
    if (why !== undefined) {
      report(at(kind === 'http' ? 'path' : 'port'), why, probe.address);
      return;
    }
    services.push(service);
  });
  return services;
}

export function resolveComponents(
  list: unknown,
  kindDefaults: KindDefaults,
  ctx: IssueSink | undefined,
  report: Report,
): ComponentConfig[] {
  const components: ComponentConfig[] = [];
  if (!Array.isArray(list)) return components;
  const firstByName = new Map<string, number>();
  const firstByAgent = new Map<string, { index: number; component: string; written: boolean }>();
  list.forEach((c: unknown, ci) => {
    if (!isRecord(c)) return;
    const at = (...rest: PropertyKey[]): PropertyKey[] => ['inventory', 'components', ci, ...rest];
    const name = typeof c.name === 'string' ? c.name : undefined;
    let duplicate = false;
    if (name !== undefined) {
      const first = firstByName.get(name);
      if (first === undefined) firstByName.set(name, ci);
      else {
        duplicate = true;
        report(at('name'), `duplicate component name ${JSON.stringify(name)}`, undefined, {
          related: { path: ['inventory', 'components', first, 'name'], label: 'first used' },
        });
      }
    }
    const agent = typeof c.agent === 'string' ? c.agent : name;
    // A duplicate name whose agent defaults to it is one problem, already reported.
    if (agent !== undefined && name !== undefined && !(duplicate && c.agent === undefined)) {
      const first = firstByAgent.get(agent);
      const written = c.agent !== undefined;
      if (first === undefined) firstByAgent.set(agent, { index: ci, component: name, written });
      else {
        report(
          at(written ? 'agent' : 'name'),
          `agent ${JSON.stringify(agent)} already runs on component ${JSON.stringify(first.component)}: one agent per host`,
          undefined,
          {
            related: {
              path: ['inventory', 'components', first.index, first.written ? 'agent' : 'name'],
              label: 'first used',
            },
          },
        );
      }
    }
    let address: string | undefined;
    if (typeof c.address === 'string') {
      const why = targetProblem(c.address, { form: 'host' });
      if (why !== undefined) report(at('address'), why, c.address);
      else address = c.address;
    }
    const services = resolveServices(c, ci, address, kindDefaults, ctx, report);
    if (name === undefined || agent === undefined || address === undefined) return;
    components.push({
      name,
      address,
      role: typeof c.role === 'string' ? c.role : 'other',
      labels: isRecord(c.labels) ? (c.labels as Record<string, string>) : {},
      agent,
      services,
    });
  });
  return components;
}

/** host:port, an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The address (and the options it implies) of a service's protocol probe on `address`:
 * host:port for postgres, redis, mysql and tcp; the URL for http; for dns the name to
 * resolve, asked of the component itself (`server`).
 */
export function protocolProbe(
  address: string,
  service: Pick<ServiceConfig, 'kind' | 'port' | 'path' | 'tls' | 'query'>,
): { readonly address: string; readonly options: Readonly<Record<string, unknown>> } {
  switch (service.kind) {
    case 'http': {
      const raw = `${service.tls === true ? 'https' : 'http'}://${hostPort(address, service.port)}${service.path ?? '/'}`;
      let href = raw;
      try {
        href = new URL(raw).href; // the form the agent's parseTarget normalises to
      } catch {
        // Left as built: the config check reports it.
      }
      return { address: href, options: {} };
    }
    case 'dns':
      return {
        address: service.query ?? '',
        options: { server: service.port === 53 ? address : hostPort(address, service.port) },
      };
    default:
      return { address: hostPort(address, service.port), options: {} };
  }
}
