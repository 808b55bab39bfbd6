import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import {
  addNestedIssues,
  configErrorMap,
  deepFreeze,
  errnoText,
  formatConfigPath,
  loadConfigFile,
  parseConfigText,
  resolvingSchema,
} from '../lib/config-file.js';
import type { ConfigIssueParams, ConfigPath } from '../lib/config-file.js';
import {
  agentNameSchema,
  asNumber,
  byteSizeField,
  adaptiveTimeoutField,
  confirmField,
  durationField,
  durationOrAutoField,
  formatDurationMs,
  isRecord,
  labelsField,
  nestedParse,
  parseListen,
  splitListen,
} from '../lib/config-fields.js';
import type { IssueSink } from '../lib/config-fields.js';
import { ConfigError } from '../lib/errors.js';
import { probeKinds, probeRegistry } from '../probes/registry.js';
import type { ProbeKind } from '../probes/registry.js';
import {
  checkKindDefaults,
  checkMergedOptions,
  fillOptionsSlot,
  kindOptionsJsonSchema,
  optionsSlot,
  perKindOptionsField,
} from '../probes/kind-options.js';
import type { KindDefaults } from '../probes/kind-options.js';
import { parseTarget } from '../probes/target.js';
import {
  maxAutoReportIntervalMs,
  minSilentAfterMs,
  protocolProbe,
  silentAfterReports,
} from './plan.js';
import { defaultConnectionLimits } from './connection-guard.js';
import { httpUrlField, isHttpUrl } from './sinks/http.js';
import { sinkDefinition, sinkRegistry, sinkTypes } from './sinks/registry.js';
import type { SinkConfig, SinkType } from './sinks/registry.js';

/**
 * The collector's YAML configuration (`faultline collector --config collector.yaml`): where
 * it listens, who may report, where it keeps its store, what the agents are told (report
 * and plan intervals, probe defaults) and the inventory the plans are made from. Written in
 * camelCase, unknown keys refused everywhere; the parsed result is normalised (durations in
 * ms, sizes in bytes, ports defaulted, token files read) and frozen.
 *
 * Relative paths (dataDir, tls files, token files) are relative to the working directory.
 */

/** Where the collector listens when the config does not say. Loopback: nothing exposed. */
export const defaultCollectorListen = '127.0.0.1:7070';
/** The data directory when the config does not say. */
export const defaultDataDir = './faultline-data';
/** The file in the data dir holding the viewer token of a collector on embedded defaults. */
export const viewerTokenFile = 'viewer-token';

/** Roles the diagnosis knows; `role` accepts any other word too. */
export const knownRoles = ['database', 'api', 'web', 'cache', 'queue', 'dns', 'other'] as const;

/**
 * The layers a service is probed at: `icmp` once per component, `tcp` a connect to each
 * service's port, `protocol` the service's own kind (http, postgres, dns…).
 */
export const probeLayers = ['icmp', 'tcp', 'protocol'] as const;
export type ProbeLayer = (typeof probeLayers)[number];

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

/** The packet size of the planned mtu probe when `probes.mtu` does not say: Ethernet's MTU. */
export const defaultMtuBytes = 1500;
/** IPv4's minimum MTU and the largest IP packet: the sizes `probes.mtu.size` takes. */
const minMtuBytes = 68;
const maxMtuBytes = 65_535;
/** Every IPv6 link carries this much: a smaller mtu probe over IPv6 tests nothing. */
const minIpv6MtuBytes = 1280;

/** Label names the plan sets on every target itself (besides the agent's reserved ones). */
const planLabelNames = ['role', 'component', 'service'] as const;

const minTokenChars = 16;
const maxTokenChars = 1024;
// RFC 6750 b64token: what can follow "Bearer " without quoting.
const tokenRe = /^[A-Za-z0-9\-._~+/]+=*$/;
const componentNameRe = /^[A-Za-z0-9._-]{1,128}$/;
const serviceNameRe = /^[A-Za-z0-9._-]{1,64}$/;
const roleRe = /^[A-Za-z0-9._-]{1,64}$/;
const httpPathRe = /^\/[^\s#]*$/;
const minIntervalMs = 100;
const minTimeoutMs = 10;
const defaultTimeoutShare = 0.8;
const defaultTimeoutCapMs = 5_000;

// The wire format caps a batch at this many results.
const maxResultsPerBatch = 50_000;
const defaultHttpPort = 80;
const defaultHttpsPort = 443;
const defaultDnsPort = 53;

/** One agent token (collector/auth.ts TokenEntry). The secret is never shown in messages. */
export interface CollectorToken {
  /** Name for logs and messages. */
  readonly name: string;
  /** The secret, from `token` or read from `tokenFile`. */
  readonly token: string;
  /** Refused with a message naming it, so its owner knows to rotate. */
  readonly revoked: boolean;
  /** `agent`: reports and fetches plans; `bootstrap`: may only enrol (POST /api/v1/enrol). */
  readonly role: TokenRole;
  /**
   * The agent names the token may use (`*` the only wildcard); absent: any name (a fleet
   * token).
   */
  readonly agents?: readonly string[];
}

/** One viewer token: what the read endpoints take (no role, no agent names). */
export type ViewerToken = Pick<CollectorToken, 'name' | 'token' | 'revoked'>;

/** Who may use the read endpoints (paths, agents, diagnosis, incidents). */
export const readAccessModes = ['token', 'open'] as const;
export type ReadAccess = (typeof readAccessModes)[number];
/** What a token may do: report (`agent`) or only exchange itself for a per-agent one. */
export const tokenRoles = ['agent', 'bootstrap'] as const;
export type TokenRole = (typeof tokenRoles)[number];

/** A name pattern of a token's `agents`: an agent name in which `*` matches any run of characters. */
const agentPatternRe = /^[A-Za-z0-9._:*-]{1,128}$/;

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

/** The parsed collector configuration (deep-frozen). Holds secrets: never log it whole. */
export interface CollectorConfig {
  /** host:port (IPv6 in brackets); port 0 picks a free port. */
  readonly listen: string;
  /** HTTPS instead of HTTP: PEM files, checked readable and matching. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Absolute path of the store's directory (created at start when missing). */
  readonly dataDir: string;
  readonly tokens: readonly CollectorToken[];
  /** Viewer tokens: the read endpoints take these, never an agent's (same shape as `tokens`). */
  readonly viewers: readonly ViewerToken[];
  /**
   * `token`: the read endpoints need a viewer token; `open`: anyone may read, and what only a
   * viewer may see (agent ids, sequence numbers) is left out unless one is sent.
   */
  readonly readAccess: ReadAccess;
  /** How agent names are bound to agent ids and credentials (collector/store.ts). */
  readonly identity: {
    /** A name bound to an agent id silent this long may be taken by another id. */
    readonly releaseAfterMs: number;
    /** Largest seq jump (or declared dropped batches) a batch may make. */
    readonly maxSeqGap: number;
  };
  readonly agents: {
    /** An agent with no report for this long is silent; auto: 3 report intervals, at least 3 s. */
    readonly silentAfterMs: number | 'auto';
    /** How often agents send a report batch (told in the plan); auto: by fleet size. */
    readonly reportIntervalMs: number | 'auto';
    /** How often agents fetch a new plan (told in the plan). */
    readonly planRefreshMs: number;
  };
  /** Plan defaults. */
  readonly probes: {
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
  };
  readonly diagnosis: {
    /** Consecutive failures before a path counts as failing. */
    readonly debounce: number;
    /** Paths falling again and again within seconds show as loss (collector/paths/states.ts). */
    readonly flapDamping: boolean;
  };
  readonly limits: {
    /** Largest report body accepted (bytes, after decompression). */
    readonly maxReportBytes: number;
    /** Most results (and most summaries) in one report batch. */
    readonly maxResultsPerBatch: number;
    /** Open HTTP connections at most (collector/connection-guard.ts). */
    readonly maxConnections: number;
    /** Time a client may take to send a request's headers (and a TLS handshake). */
    readonly headersTimeoutMs: number;
    /** An idle keep-alive connection is closed after this long. */
    readonly keepAliveTimeoutMs: number;
  };
  readonly inventory: { readonly components: readonly ComponentConfig[] };
  readonly alerts: AlertsConfig;
}

/** The `alerts:` section: when alerts fire, what they say, where they go (collector/alerts.ts). */
export interface AlertsConfig {
  /** A hypothesis must hold this long before its alert fires. */
  readonly holdForMs: number;
  /** Within an hour of its resolve, an alert must hold this long (at least holdFor) to fire again. */
  readonly refireHoldForMs: number;
  /**
   * Longest a new alert waits for a settling diagnosis (a fault still arriving) before it
   * fires anyway; also bounds how long the diagnosis calls itself settling. 0: no wait.
   * Default (auto): {@link autoSettleMaxMs}.
   */
  readonly settleMaxMs: number;
  /**
   * After a firing alert resolves, a new one whose hypothesis began before that (its paths
   * were failing already: the heal's tail, recovering unevenly) must hold this long to fire.
   */
  readonly healTailHoldMs: number;
  /** Firing alerts are sent again this often (endsAt = 4 periods ahead). */
  readonly resendEveryMs: number;
  /** Base URL people reach the collector at: alerts link back to it. */
  readonly externalUrl?: string;
  /** Runbook link template; `{kind}` and `{alertname}` are filled in. */
  readonly runbookUrl?: string;
  /** Extra labels on every alert (cluster, env…). */
  readonly labels: Readonly<Record<string, string>>;
  readonly sinks: readonly SinkConfig[];
}

const listenHelp = 'expected host:port such as "127.0.0.1:7070" (IPv6 in brackets: "[::1]:7070")';

const listenSchema = z
  .string({ error: listenHelp })
  .transform((raw, ctx) => {
    const listen = parseListen(raw);
    if (listen === undefined) {
      ctx.addIssue({ code: 'custom', message: listenHelp, input: raw });
      return z.NEVER;
    }
    return listen;
  })
  .describe(
    'Address of the HTTP API, host:port (port 0 picks a free one). Agents on other hosts need an address they can reach: e.g. 0.0.0.0:7070, with tls.',
  );

const pathSchema = z.string().min(1).max(4096);

// A token's value is checked in resolveConfig, where its messages can leave it out: zod's
// own issues would print it as the "actual" value. The JSON Schema shows it as a string.
const secretSlot = z.unknown().meta({
  type: 'string',
  minLength: minTokenChars,
  maxLength: maxTokenChars,
  pattern: tokenRe.source,
});

const tokenSchema = z
  .object({
    name: agentNameSchema.describe('Name of the token in logs and refusals (never the secret).'),
    token: secretSlot
      .optional()
      .describe(
        `The secret agents send as "Authorization: Bearer …": ${minTokenChars}–${maxTokenChars} characters from A-Z a-z 0-9 - . _ ~ + / (e.g. \`openssl rand -hex 32\`). Or tokenFile.`,
      ),
    tokenFile: pathSchema
      .optional()
      .describe('A file holding the secret (surrounding whitespace ignored), instead of `token`.'),
    revoked: z
      .boolean()
      .default(false)
      .describe('Refuse this token, naming it, so its holder knows to rotate.'),
    role: z
      .enum(tokenRoles)
      .default('agent')
      .describe(
        'agent: reports and fetches plans with this token. bootstrap: may only enrol (POST /api/v1/enrol), exchanging itself for a per-agent secret bound to one name and agent id.',
      ),
    agents: z
      .array(
        z.string().regex(agentPatternRe, {
          error:
            'expected an agent name or pattern: 1–128 characters from A-Z a-z 0-9 . _ : - and * (any run of characters)',
        }),
      )
      .min(1)
      .optional()
      .describe(
        'The agent names this token may use, e.g. [db-1] or ["web-*"]; `*` is the only wildcard. Absent: any name (a fleet token: any holder can report as any agent not yet bound to a per-agent credential).',
      ),
  })
  .strict();

// A viewer entry is an agent token's entry with the same grammar, read the same way.
const viewerSchema = tokenSchema
  .pick({ name: true, token: true, tokenFile: true, revoked: true })
  .extend({
    token: secretSlot
      .optional()
      .describe(
        `The secret readers (faultline status, scripts, dashboards) send as "Authorization: Bearer …" to the read endpoints; same grammar as an agent token. Or tokenFile.`,
      ),
  })
  .strict();
const identitySchema = z
  .object({
    releaseAfter: durationField(1000)
      .prefault('1h')
      .describe(
        'A name bound to an agent id that has sent nothing this long may be taken by another agent id (a reinstalled host); before that, a batch or enrolment under a new id is refused with 409.',
      ),
    maxSeqGap: z
      .number()
      .int()
      .min(1)
      .max(Number.MAX_SAFE_INTEGER)
      .default(200_000)
      .describe(
        'Largest jump of a batch seq past the accepted one (or dropped batches declared) that is taken; larger ones are refused with 400 FL_ERR_SEQ_IMPLAUSIBLE. Default: a full 24 h spool at two batches a second.',
      ),
  })
  .strict()
  .describe('How agent names are bound to agent ids and credentials.');

const agentsSchema = z
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

const probesSchema = z
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

const serviceSchema = z
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

const componentSchema = z
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

/** Labels the alert engine sets itself. */
const alertLabelNames = ['alertname', 'component', 'severity'] as const;
const runbookPlaceholders = ['kind', 'alertname'] as const;

// Each sink entry is checked by its own type's schema in resolveAlerts (so an unknown key
// gets a "did you mean" from that type's keys); the JSON Schema shows the union instead.
const sinkSlot = z.record(z.string(), z.unknown());
const sinkUnion = z.discriminatedUnion(
  'type',
  sinkTypes.map((t) => sinkRegistry[t].schema) as unknown as [
    (typeof sinkRegistry)[SinkType]['schema'],
    ...(typeof sinkRegistry)[SinkType]['schema'][],
  ],
);

const alertsSchema = z
  .object({
    holdFor: durationField(0)
      .prefault('0s')
      .describe(
        'A hypothesis must hold this long (beyond the probe debounce) before its alert fires.',
      ),
    refireHoldFor: durationField(0)
      .prefault('30s')
      .describe(
        'Within an hour of being resolved, an alert must hold this long (and at least holdFor) to fire again: one bad probe does not re-fire it.',
      ),
    settleMax: durationOrAutoField(0)
      .prefault('auto')
      .describe(
        "While a fault is still arriving (paths of its hosts changed in the last moment, agents' confirmation bursts or reports are due, or not every agent has probed its hosts since) the diagnosis is settling and no new alert fires; this bounds the wait, from the first change (0: never wait). auto: one probe interval, a confirmation burst and 250 ms (1.7s at the defaults), at most 10s.",
      ),
    healTailHold: durationField(0)
      .prefault('5s')
      .describe(
        "After a firing alert resolves, a new alert whose hypothesis began before that and speaks of fewer failing paths — the fault that just healed, its paths recovering unevenly: the heal's tail — must hold this long to fire (0: no extra hold). A fault that outlasts the heal still pages, this much later.",
      ),
    resendEvery: durationField(1000)
      .prefault('1m')
      .describe(
        'Firing alerts are sent again this often, with endsAt 4 periods ahead: Alertmanager keeps them while the fault lasts, and lets them lapse if every collector stops.',
      ),
    externalUrl: httpUrlField()
      .optional()
      .describe(
        'URL people reach this collector at (e.g. https://faultline.example.com): alerts link back to it.',
      ),
    runbookUrl: z
      .string()
      .optional()
      .describe(
        'Runbook link of every alert (annotation runbook_url); {kind} and {alertname} are filled in, e.g. https://wiki.example.com/faultline/{kind}.',
      ),
    labels: labelsField([...alertLabelNames])
      .prefault({})
      .describe(
        'Extra labels on every alert, e.g. {cluster: prod}. Give both collectors of an HA pair the same, so Alertmanager sees one alert.',
      ),
    sinks: z
      .array(sinkSlot)
      .prefault([])
      .describe(
        `Where alerts go; each with type: ${sinkTypes.join(', ')}. A sink that is down never holds up the others.`,
      ),
  })
  .strict()
  .describe('Alerts with root-cause hints: when they fire and where they are sent.');

const CollectorConfigInput = z
  .object({
    listen: listenSchema.prefault(defaultCollectorListen),
    tls: z
      .object({
        cert: pathSchema.describe('PEM certificate (chain) file.'),
        key: pathSchema.describe('PEM private key file of the certificate.'),
      })
      .strict()
      .optional()
      .describe('Serve HTTPS: both files must be readable and belong together.'),
    dataDir: pathSchema
      .prefault(defaultDataDir)
      .describe('Directory of the embedded store; created at start when missing.'),
    tokens: z
      .array(tokenSchema)
      .describe('Bearer tokens agents may report or enrol with; at least one not revoked.'),
    viewers: z
      .array(viewerSchema)
      .default([])
      .describe(
        'Bearer tokens the read endpoints (paths, agents, diagnosis, incidents) take; agent tokens are refused there. Each secret differs from every agent token.',
      ),
    readAccess: z
      .enum(readAccessModes)
      .default('token')
      .describe(
        'token: the read endpoints need a viewer token. open: anyone who reaches the collector may read paths, diagnosis and incidents; agent ids and sequence numbers still only with a viewer token.',
      ),
    identity: identitySchema.prefault({}),
    agents: agentsSchema.prefault({}),
    probes: probesSchema.prefault({}),
    diagnosis: z
      .object({
        debounce: z
          .number()
          .int()
          .min(1)
          .max(100)
          .default(3)
          .describe('Consecutive failures before a path counts as failing.'),
        flapDamping: z
          .boolean()
          .default(true)
          .describe(
            'A path whose network failures (timeouts, unreachable) come back for the third time within seconds is flapping: shown as degraded (loss, localised like packet loss) instead of a cut and a heal every few seconds, until a fall lasts 5 s. false: every fall is failing.',
          ),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        maxReportBytes: byteSizeField(1024, 1024 ** 3)
          .prefault('8MB')
          .describe('Largest report body accepted, after decompression: bytes, or e.g. "8MB".'),
        maxResultsPerBatch: z
          .number()
          .int()
          .min(1)
          .max(maxResultsPerBatch)
          .default(maxResultsPerBatch)
          .describe('Most results (and most summaries) in one report batch.'),
        maxConnections: z
          .number()
          .int()
          .min(16)
          .max(65_536)
          .default(defaultConnectionLimits.maxConnections)
          .describe(
            'Open HTTP connections at most. Past it the oldest connection with no request in progress (stalled before its headers, or idle) is closed to make room.',
          ),
        headersTimeout: durationField(100)
          .refine((ms) => ms <= 60_000, { error: 'expected at most 60s' })
          .prefault(defaultConnectionLimits.headersTimeoutMs)
          .describe(
            "Time a client may take to send a request's headers (and its TLS handshake) before the connection is closed.",
          ),
        keepAliveTimeout: durationField(100)
          .prefault(defaultConnectionLimits.keepAliveTimeoutMs)
          .describe('An idle keep-alive connection is closed after this long.'),
      })
      .strict()
      .prefault({})
      .describe(
        'What one report may hold (larger ones are refused with 413) and what one client may hold of the HTTP server.',
      ),
    inventory: z
      .object({
        components: z.array(componentSchema).prefault([]).describe('The hosts of the system.'),
      })
      .strict()
      .prefault({})
      .describe('What the system is made of: the plans are made from it.'),
    alerts: alertsSchema.prefault({}),
  })
  .strict()
  .meta({ title: 'Faultline collector configuration' });

type Report = (
  path: ConfigPath,
  message: string,
  input?: unknown,
  params?: ConfigIssueParams,
) => void;

/** The file's text, or undefined after reporting why it cannot be read. */
function readTextFile(
  path: string,
  what: string,
  at: ConfigPath,
  report: Report,
): string | undefined {
  try {
    if (statSync(path).isDirectory()) {
      report(at, `cannot read the ${what}: it is a directory`, path);
      return undefined;
    }
    return readFileSync(path, 'utf8');
  } catch (err) {
    report(at, `cannot read the ${what}: ${errnoText(err)}`, path);
    return undefined;
  }
}

/**
 * Whether the store can live at `dir`: an existing writable directory, or a missing one
 * whose nearest existing parent is a writable directory (created at start, not here: a
 * config check changes nothing).
 */
function checkDataDir(dir: string, report: Report): void {
  const at = ['dataDir'];
  let cur = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(cur).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const parent = dirname(cur);
      if ((code === 'ENOENT' || code === 'ENOTDIR') && parent !== cur) {
        cur = parent;
        continue;
      }
      report(at, `cannot use the data directory: ${cur}: ${errnoText(err)}`, dir);
      return;
    }
    if (!isDir) {
      report(at, `cannot create the data directory: ${cur} is not a directory`, dir);
      return;
    }
    try {
      accessSync(cur, constants.W_OK | constants.X_OK);
    } catch (err) {
      const what = cur === resolve(dir) ? 'use the data directory' : 'create the data directory';
      report(at, `cannot ${what}: ${cur} is not writable: ${errnoText(err)}`, dir);
    }
    return;
  }
}

/** What OpenSSL's codes mean for someone holding the files. */
function tlsReason(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH')
    return 'the key does not belong to the certificate';
  const text = typeof code === 'string' ? code : (err as Error).message;
  return `not usable by TLS (${text})`;
}

function checkTls(tls: Record<string, unknown>, report: Report): void {
  const certPath = typeof tls.cert === 'string' ? tls.cert : undefined;
  const keyPath = typeof tls.key === 'string' ? tls.key : undefined;
  const cert =
    certPath === undefined
      ? undefined
      : readTextFile(certPath, 'certificate file', ['tls', 'cert'], report);
  const key =
    keyPath === undefined ? undefined : readTextFile(keyPath, 'key file', ['tls', 'key'], report);
  let ok = true;
  if (cert !== undefined) {
    try {
      createSecureContext({ cert });
    } catch (err) {
      report(['tls', 'cert'], `expected a PEM certificate: ${tlsReason(err)}`, certPath);
      ok = false;
    }
  }
  if (key !== undefined) {
    try {
      createSecureContext({ key });
    } catch (err) {
      report(['tls', 'key'], `expected a PEM private key: ${tlsReason(err)}`, keyPath);
      ok = false;
    }
  }
  if (ok && cert !== undefined && key !== undefined) {
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      report(['tls'], `cannot serve with this certificate and key: ${tlsReason(err)}`);
    }
  }
}

/** Why a secret is unusable, without showing it; undefined when it is fine. */
function tokenProblem(token: string): string | undefined {
  if (token.length < minTokenChars) {
    return `expected at least ${minTokenChars} characters (has ${token.length}; the value is never shown)`;
  }
  if (token.length > maxTokenChars) return `expected at most ${maxTokenChars} characters`;
  if (!tokenRe.test(token)) {
    return 'expected only A-Z a-z 0-9 - . _ ~ + / (and "=" at the end); the value is never shown';
  }
  return undefined;
}

/** Where a secret was first seen: no two entries of `tokens` and `viewers` share one. */
type SecretsSeen = Map<string, { path: PropertyKey[] }>;

function resolveTokens(list: unknown, report: Report, secrets: SecretsSeen): CollectorToken[] {
  if (Array.isArray(list) && list.length === 0) {
    report(['tokens'], 'expected at least one token: agents need one to report');
    return [];
  }
  const tokens = resolveSecretList(list, 'tokens', report, secrets);
  if (
    Array.isArray(list) &&
    tokens.length > 0 &&
    tokens.length === list.length &&
    tokens.every((t) => t.revoked)
  ) {
    report(['tokens'], 'every token is revoked: no agent could report; add one that is not');
  }
  return tokens;
}

/**
 * The entries of `tokens` or `viewers`: names unique within the list, each secret from
 * `token` or `tokenFile`, checked against the token grammar, and unlike every other secret
 * of either list (an agent token that also read would make the split meaningless).
 */
function resolveSecretList(
  list: unknown,
  section: 'tokens' | 'viewers',
  report: Report,
  secrets: SecretsSeen,
): CollectorToken[] {
  const tokens: CollectorToken[] = [];
  if (!Array.isArray(list)) return tokens;
  const firstByName = new Map<string, number>();
  list.forEach((t: unknown, i) => {
    if (!isRecord(t)) return;
    const at = (...rest: PropertyKey[]): PropertyKey[] => [section, i, ...rest];
    const name = typeof t.name === 'string' ? t.name : undefined;
    if (name !== undefined) {
      const first = firstByName.get(name);
      if (first === undefined) firstByName.set(name, i);
      else {
        report(at('name'), `duplicate token name ${JSON.stringify(name)}`, undefined, {
          related: { path: [section, first, 'name'], label: 'first used' },
        });
      }
    }
    let secret: string | undefined;
    let key = 'token';
    if (t.token !== undefined && t.tokenFile !== undefined) {
      report(at('tokenFile'), 'token and tokenFile are mutually exclusive: keep one', undefined, {
        pointAt: 'key',
      });
      return;
    } else if (t.token !== undefined) {
      if (typeof t.token !== 'string') {
        report(at('token'), 'expected a string (the value is never shown)');
        return;
      }
      const problem = tokenProblem(t.token);
      if (problem !== undefined) report(at('token'), problem);
      else secret = t.token;
    } else if (typeof t.tokenFile === 'string') {
      key = 'tokenFile';
      const text = readTextFile(t.tokenFile, 'token file', at('tokenFile'), report);
      if (text === undefined) return;
      const problem = tokenProblem(text.trim());
      if (problem !== undefined)
        report(at('tokenFile'), `the token in the file: ${problem}`, t.tokenFile);
      else secret = text.trim();
    } else if (t.tokenFile === undefined) {
      report(
        at(),
        `expected token or tokenFile: the secret ${section === 'tokens' ? 'agents' : 'readers'} send`,
      );
      return;
    }
    if (secret === undefined || name === undefined) return;
    const first = secrets.get(secret);
    if (first === undefined) secrets.set(secret, { path: at(key) });
    else {
      report(at(key), 'the same secret as another token: give each token its own', undefined, {
        related: { path: first.path, label: 'first used' },
      });
      return;
    }
    const role: TokenRole = t.role === 'bootstrap' ? 'bootstrap' : 'agent';
    const patterns = Array.isArray(t.agents)
      ? t.agents.filter((p): p is string => typeof p === 'string')
      : undefined;
    if (patterns !== undefined) {
      const firstAt = new Map<string, number>();
      patterns.forEach((p, pi) => {
        const first = firstAt.get(p);
        if (first === undefined) firstAt.set(p, pi);
        else {
          report(at('agents', pi), `${JSON.stringify(p)} is listed twice`, undefined, {
            related: { path: at('agents', first), label: 'first listed' },
          });
        }
      });
    }
    tokens.push({
      name,
      token: secret,
      revoked: t.revoked === true,
      role,
      ...(patterns === undefined ? {} : { agents: patterns }),
    });
  });
  return tokens;
}

function isPort(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= 65535;
}

/** The port a service listens on when the config does not say. */
function defaultPort(kind: ServiceKind, tls: boolean): number | undefined {
  if (kind === 'http') return tls ? defaultHttpsPort : defaultHttpPort;
  if (kind === 'dns') return defaultDnsPort;
  return probeRegistry[kind].target.defaultPort;
}

/** parseTarget's reason without its `invalid target "x": ` prefix (the line shows the value). */
function targetProblem(raw: string, form: Parameters<typeof parseTarget>[1]): string | undefined {
  try {
    parseTarget(raw, form);
    return undefined;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const prefix = `invalid target ${JSON.stringify(raw)}: `;
    return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
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

function resolveAlerts(
  raw: unknown,
  ctx: IssueSink | undefined,
  report: Report,
  autoSettleMaxMs: number,
): AlertsConfig {
  const a: Record<string, unknown> = isRecord(raw) ? raw : {};
  const at = (...rest: PropertyKey[]): PropertyKey[] => ['alerts', ...rest];
  let runbookUrl: string | undefined;
  if (typeof a.runbookUrl === 'string') {
    const unknown = [...a.runbookUrl.matchAll(/\{([^{}]*)\}/g)]
      .map((m) => m[1] ?? '')
      .filter((name) => !(runbookPlaceholders as readonly string[]).includes(name));
    let filled = a.runbookUrl;
    for (const p of runbookPlaceholders) filled = filled.replaceAll(`{${p}}`, 'x');
    if (unknown.length > 0) {
      report(
        at('runbookUrl'),
        `unknown placeholder {${unknown[0]}}: expected ${runbookPlaceholders.map((p) => `{${p}}`).join(' or ')}`,
        a.runbookUrl,
      );
    } else if (!isHttpUrl(filled)) {
      report(
        at('runbookUrl'),
        'expected an http(s) URL such as "https://wiki.example.com/faultline/{kind}"',
        a.runbookUrl,
      );
    } else runbookUrl = a.runbookUrl;
  }

  const sinks: SinkConfig[] = [];
  const list: unknown[] = Array.isArray(a.sinks) ? a.sinks : [];
  const firstByName = new Map<string, number>();
  list.forEach((entry: unknown, i) => {
    if (!isRecord(entry)) return;
    const typeHelp = `expected one of: ${sinkTypes.join(', ')}`;
    if (entry.type === undefined) {
      report(at('sinks', i), `missing required key "type": ${typeHelp}`);
      return;
    }
    if (!(sinkTypes as unknown[]).includes(entry.type)) {
      report(at('sinks', i, 'type'), `unknown sink type: ${typeHelp}`, entry.type);
      return;
    }
    const type = entry.type as SinkType;
    const definition = sinkDefinition(type);
    const parsed = definition.schema.safeParse(entry, nestedParse);
    if (!parsed.success) {
      if (ctx !== undefined)
        addNestedIssues(ctx, parsed.error.issues, at('sinks', i), definition.schema);
      return;
    }
    const written = typeof entry.name === 'string';
    const name = written ? (entry.name as string) : type;
    const first = firstByName.get(name);
    if (first !== undefined) {
      const hint = written ? '' : ' (the name defaults to the type: give each a name)';
      const nameAt = (j: number): PropertyKey[] => {
        const e = list[j];
        return isRecord(e) && e.name !== undefined ? at('sinks', j, 'name') : at('sinks', j);
      };
      report(nameAt(i), `duplicate sink name ${JSON.stringify(name)}${hint}`, undefined, {
        related: { path: nameAt(first), label: 'first used' },
      });
      return;
    }
    firstByName.set(name, i);
    const resolved = definition.resolve(parsed.data, name, (path, message, input, params) =>
      report(at('sinks', i, ...path), message, input, params),
    );
    if (resolved !== undefined) sinks.push(resolved as SinkConfig);
  });

  const labels = isRecord(a.labels) ? (a.labels as Record<string, string>) : {};
  return {
    holdForMs: asNumber(a.holdFor) ?? 0,
    refireHoldForMs: asNumber(a.refireHoldFor) ?? 0,
    settleMaxMs: asNumber(a.settleMax) ?? autoSettleMaxMs,
    healTailHoldMs: asNumber(a.healTailHold) ?? 5000,
    resendEveryMs: asNumber(a.resendEvery) ?? 0,
    ...(typeof a.externalUrl === 'string' ? { externalUrl: a.externalUrl } : {}),
    ...(runbookUrl === undefined ? {} : { runbookUrl }),
    labels,
    sinks,
  };
}

function resolveComponents(
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

/**
 * Checks everything that spans fields or touches the file system (token files, TLS files,
 * the data directory, durations against each other, unique names, service fields by kind,
 * options merged over the defaults) and builds the resolved config. Runs on partially
 * invalid input too, so every problem is reported in one go.
 */
function resolveConfig(cfg: Record<string, unknown>, ctx: IssueSink | undefined): CollectorConfig {
  const report: Report = (path, message, input, params) =>
    ctx?.addIssue({ code: 'custom', path: [...path], message, input, params });

  if (isRecord(cfg.tls)) checkTls(cfg.tls, report);
  const dataDir = typeof cfg.dataDir === 'string' ? cfg.dataDir : defaultDataDir;
  if (cfg.dataDir === undefined || typeof cfg.dataDir === 'string') checkDataDir(dataDir, report);
  const secrets: SecretsSeen = new Map();
  const tokens = resolveTokens(cfg.tokens, report, secrets);
  const viewers = resolveSecretList(cfg.viewers, 'viewers', report, secrets);

  const agents: Record<string, unknown> = isRecord(cfg.agents) ? cfg.agents : {};
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

  const probes: Record<string, unknown> = isRecord(cfg.probes) ? cfg.probes : {};
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

  const inventory: Record<string, unknown> = isRecord(cfg.inventory) ? cfg.inventory : {};
  const components = resolveComponents(inventory.components, kindDefaults, ctx, report);
  const mtu =
    probes.mtu === false
      ? false
      : { size: isRecord(probes.mtu) ? (asNumber(probes.mtu.size) ?? 0) : defaultMtuBytes };
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

  const diagnosis: Record<string, unknown> = isRecord(cfg.diagnosis) ? cfg.diagnosis : {};
  const identity: Record<string, unknown> = isRecord(cfg.identity) ? cfg.identity : {};
  const limits: Record<string, unknown> = isRecord(cfg.limits) ? cfg.limits : {};
  const confirm = {
    count: isRecord(probes.confirm) ? (asNumber(probes.confirm.count) ?? 0) : 0,
    spacingMs: isRecord(probes.confirm) ? (asNumber(probes.confirm.spacing) ?? 0) : 0,
  };
  return {
    listen: typeof cfg.listen === 'string' ? cfg.listen : defaultCollectorListen,
    ...(isRecord(cfg.tls) ? { tls: { cert: String(cfg.tls.cert), key: String(cfg.tls.key) } } : {}),
    dataDir: resolve(dataDir),
    tokens,
    viewers: viewers.map(({ name, token, revoked }) => ({ name, token, revoked })),
    readAccess: cfg.readAccess === 'open' ? 'open' : 'token',
    identity: {
      releaseAfterMs: asNumber(identity.releaseAfter) ?? 0,
      maxSeqGap: asNumber(identity.maxSeqGap) ?? 0,
    },
    agents: {
      silentAfterMs:
        writtenSilentMs ??
        (reportIntervalMs === 'auto'
          ? 'auto'
          : Math.max(minSilentAfterMs, silentAfterReports * reportIntervalMs)),
      reportIntervalMs,
      planRefreshMs: asNumber(agents.planRefresh) ?? 0,
    },
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
    diagnosis: {
      debounce: asNumber(diagnosis.debounce) ?? 0,
      flapDamping: diagnosis.flapDamping !== false,
    },
    limits: {
      maxReportBytes: asNumber(limits.maxReportBytes) ?? 0,
      maxResultsPerBatch: asNumber(limits.maxResultsPerBatch) ?? 0,
      maxConnections: asNumber(limits.maxConnections) ?? 0,
      headersTimeoutMs: asNumber(limits.headersTimeout) ?? 0,
      keepAliveTimeoutMs: asNumber(limits.keepAliveTimeout) ?? 0,
    },
    inventory: { components },
    alerts: resolveAlerts(cfg.alerts, ctx, report, autoSettleMaxMs(intervalMs, confirm)),
  };
}

/**
 * `alerts.settleMax: auto`: the time for every agent to have probed a fault's hosts once
 * since the first of them saw it (one probe interval), confirmed what it saw (a burst) and
 * reported it (250 ms) — agents see a fault up to an interval apart, and until then the
 * first ones' failures look like a smaller fault. At most 10 s.
 */
export function autoSettleMaxMs(
  intervalMs: number,
  confirm: { readonly count: number; readonly spacingMs: number },
): number {
  return Math.min(10_000, intervalMs + confirm.count * confirm.spacingMs + 250);
}

/** The collector config schema: YAML input in, CollectorConfig out. */
export const CollectorConfigSchema = resolvingSchema(CollectorConfigInput, resolveConfig);

/** Parses collector config text; `fileName` is used in messages. Throws ConfigError. */
export function parseCollectorConfig(text: string, fileName: string): CollectorConfig {
  return parseConfigText(text, fileName, CollectorConfigSchema);
}

/** Reads and parses a collector config file. Throws ConfigError naming file, line and path. */
export function loadCollectorConfig(path: string): CollectorConfig {
  return loadConfigFile(path, CollectorConfigSchema);
}

/** What `defaultCollectorConfig` needs from the command line. */
export interface DefaultCollectorSettings {
  /** Store directory. */
  readonly dataDir: string;
  /** host:port of the API. */
  readonly listen: string;
  /** The one agent token, generated by the caller. */
  readonly token: string;
  /** The one viewer token (`faultline status`, the read endpoints), generated by the caller. */
  readonly viewerToken: string;
}

/**
 * The config `faultline collector` runs with when given no file: the defaults, one bootstrap
 * token (every agent enrols with it and reports with the credential it gets) and one viewer
 * token (both "default"), and an inventory of one component, "localhost", whose service is the
 * collector's own /healthz (left out when the port is 0, unknown until it listens).
 * Throws ConfigError when a setting is invalid.
 */
export function defaultCollectorConfig(settings: DefaultCollectorSettings): CollectorConfig {
  const listen = parseListen(settings.listen);
  const input: Record<string, unknown> = {
    listen: settings.listen,
    dataDir: settings.dataDir,
    tokens: [{ name: 'default', token: settings.token, role: 'bootstrap' }],
    viewers: [{ name: 'default', token: settings.viewerToken }],
  };
  if (listen !== undefined) {
    const { host, port } = splitListen(listen);
    // Probe the collector where it answers: a wildcard listen answers on loopback.
    const address = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
    input.inventory = {
      components: [
        {
          name: 'localhost',
          address,
          role: 'other',
          services: port === 0 ? [] : [{ name: 'collector', kind: 'http', port, path: '/healthz' }],
        },
      ],
    };
  }
  const parsed = CollectorConfigSchema.safeParse(input, { error: configErrorMap });
  if (parsed.success) return deepFreeze(parsed.data);
  const lines = parsed.error.issues.map((iss) => {
    const where = formatConfigPath(iss.path);
    return where === '' ? iss.message : `${where}: ${iss.message}`;
  });
  throw new ConfigError(lines.join('\n'), { cause: parsed.error });
}

/**
 * JSON Schema (draft 2020-12) of what people write in collector.yaml, for editors and the
 * configuration reference: each kind's options schema appears under
 * `probes.options.<kind>` and, keyed on `kind`, under each service's `options`.
 * Committed as deploy/schema/collector.schema.json; collector/config.test.ts keeps it current.
 */
export function collectorJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(CollectorConfigSchema, {
    io: 'input',
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema }) => {
      const json = jsonSchema as Record<string, unknown>;
      fillOptionsSlot(zodSchema, json);
      if (zodSchema === sinkSlot) {
        for (const key of Object.keys(json)) if (key !== 'description') delete json[key];
        const { $schema: _, ...union } = z.toJSONSchema(sinkUnion, {
          io: 'input',
          unrepresentable: 'any',
        }) as Record<string, unknown>;
        Object.assign(json, union);
      }
      if (zodSchema === tokenSchema || zodSchema === viewerSchema) {
        json.oneOf = [{ required: ['token'] }, { required: ['tokenFile'] }];
      }
      if (zodSchema === serviceSchema) {
        json.allOf = serviceKinds.map((kind) => ({
          if: { properties: { kind: { const: kind } }, required: ['kind'] },
          then: { properties: { options: kindOptionsJsonSchema(kind) } },
        }));
      }
    },
  }) as Record<string, unknown>;
  // The planned mtu probe's size is probes.mtu.size; its defaults here take the rest.
  const at = (node: unknown, key: string): unknown =>
    isRecord(node) && isRecord(node.properties) ? node.properties[key] : undefined;
  const mtuDefaults = at(at(at(schema, 'probes'), 'options'), 'mtu');
  if (isRecord(mtuDefaults) && isRecord(mtuDefaults.properties)) delete mtuDefaults.properties.size;
  return schema;
}
