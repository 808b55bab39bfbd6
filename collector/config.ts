import { resolve } from 'node:path';
import { z } from 'zod';
import {
  configErrorMap,
  deepFreeze,
  formatConfigPath,
  loadConfigFile,
  parseConfigText,
  resolvingSchema,
} from '../lib/config-file.js';
import { isRecord, parseListen, splitListen } from '../lib/config-fields.js';
import type { IssueSink } from '../lib/config-fields.js';
import { fillOptionsSlot, kindOptionsJsonSchema } from '../probes/kind-options.js';
import { ConfigError } from '../lib/errors.js';
import type { AlertsConfig } from './alerts-config.js';
import {
  alertsSchema,
  autoSettleMaxMs,
  resolveAlerts,
  sinkSlot,
  sinkUnion,
} from './alerts-config.js';
import type { CollectorConfigLimits } from './api/config.js';
import {
  checkTls,
  defaultCollectorListen,
  limitsSchema,
  listenSchema,
  resolveLimits,
  tlsSchema,
} from './api/config.js';
import type {
  CollectorConfigIdentity,
  CollectorToken,
  ReadAccess,
  SecretsSeen,
  ViewerToken,
} from './auth-config.js';
import {
  identitySchema,
  readAccessModes,
  resolveIdentity,
  resolveSecretList,
  resolveTokens,
  tokenSchema,
  viewerSchema,
} from './auth-config.js';
import type { Report } from './config-report.js';
import type { ComponentConfig } from './inventory.js';
import { componentSchema, resolveComponents, serviceKinds, serviceSchema } from './inventory.js';
import type { DiagnosisConfig } from './localise/config.js';
import { diagnosisSchema, resolveDiagnosis } from './localise/config.js';
import type { AgentsConfig, ProbesConfig } from './plan-config.js';
import {
  agentsSchema,
  checkMtuSize,
  probesSchema,
  resolveAgents,
  resolveProbes,
} from './plan-config.js';
import { checkDataDir, dataDirSchema, defaultDataDir } from './store/config.js';
import { transportSchema } from '../lib/nats-config.js';
import type { Transport } from '../lib/nats-config.js';
import { collectorNatsSchema } from './nats-config.js';
import type { CollectorNatsSection } from './nats-config.js';

// The config's vocabulary, from the sections' own modules.
export type { AlertsConfig } from './alerts-config.js';
export { autoSettleMaxMs } from './alerts-config.js';
export { defaultCollectorListen } from './api/config.js';
export type { CollectorToken, ReadAccess, TokenRole, ViewerToken } from './auth-config.js';
export type { ComponentConfig, HostKind, ServiceConfig, ServiceKind } from './inventory.js';
export { hostKinds, isHostKind, knownRoles, serviceKinds } from './inventory.js';
export type { ProbeLayer } from './plan-config.js';
export { defaultMtuBytes, probeLayers } from './plan-config.js';
export { defaultDataDir } from './store/config.js';

/**
 * The collector's YAML configuration (`faultline collector --config collector.yaml`): where
 * it listens, who may report, where it keeps its store, what the agents are told (report
 * and plan intervals, probe defaults) and the inventory the plans are made from. Written in
 * camelCase, unknown keys refused everywhere; the parsed result is normalised (durations in
 * ms, sizes in bytes, ports defaulted, token files read) and frozen.
 *
 * Relative paths (dataDir, tls files, token files) are relative to the working directory.
 *
 * Each section's schema and resolve step lives beside what consumes it: listen, tls and
 * limits in api/config.ts, tokens, viewers and identity in auth-config.ts, dataDir in
 * store/config.ts, agents and probes in plan-config.ts, inventory in inventory.ts, diagnosis
 * in localise/config.ts, alerts in alerts-config.ts. This file only assembles them.
 */

/** The file in the data dir holding the viewer token of a collector on embedded defaults. */
export const viewerTokenFile = 'viewer-token';

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
  readonly identity: CollectorConfigIdentity;
  readonly agents: AgentsConfig;
  /** Plan defaults. */
  readonly probes: ProbesConfig;
  readonly diagnosis: DiagnosisConfig;
  readonly limits: CollectorConfigLimits;
  readonly inventory: { readonly components: readonly ComponentConfig[] };
  readonly alerts: AlertsConfig;
  /** How reports and plans travel: HTTP (the API) or NATS JetStream (`nats`). */
  readonly transport: Transport;
  /** With `transport: nats`: the servers, the stream, this collector's consumer. */
  readonly nats?: CollectorNatsSection;
}

const CollectorConfigInput = z
  .object({
    listen: listenSchema.prefault(defaultCollectorListen),
    tls: tlsSchema,
    dataDir: dataDirSchema,
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
    diagnosis: diagnosisSchema,
    limits: limitsSchema,
    inventory: z
      .object({
        components: z.array(componentSchema).prefault([]).describe('The hosts of the system.'),
      })
      .strict()
      .prefault({})
      .describe('What the system is made of: the plans are made from it.'),
    alerts: alertsSchema.prefault({}),
    transport: transportSchema,
    nats: collectorNatsSchema.optional(),
  })
  .strict()
  .meta({ title: 'Faultline collector configuration' });

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
  const agents = resolveAgents(cfg.agents, report);
  const { probes, kindDefaults } = resolveProbes(cfg.probes, ctx, report);
  const inventory: Record<string, unknown> = isRecord(cfg.inventory) ? cfg.inventory : {};
  const components = resolveComponents(inventory.components, kindDefaults, ctx, report);
  checkMtuSize(cfg.probes, probes.mtu, components, report);
  const transport = cfg.transport === 'nats' ? 'nats' : 'http';
  if (transport === 'nats' && cfg.nats === undefined)
    report(['nats'], 'transport: nats needs a `nats:` section (servers, at least)', undefined);
  return {
    transport,
    ...(isRecord(cfg.nats) ? { nats: cfg.nats as unknown as CollectorNatsSection } : {}),
    listen: typeof cfg.listen === 'string' ? cfg.listen : defaultCollectorListen,
    ...(isRecord(cfg.tls) ? { tls: { cert: String(cfg.tls.cert), key: String(cfg.tls.key) } } : {}),
    dataDir: resolve(dataDir),
    tokens,
    viewers: viewers.map(({ name, token, revoked }) => ({ name, token, revoked })),
    readAccess: cfg.readAccess === 'open' ? 'open' : 'token',
    identity: resolveIdentity(cfg.identity),
    agents,
    probes,
    diagnosis: resolveDiagnosis(cfg.diagnosis),
    limits: resolveLimits(cfg.limits),
    inventory: { components },
    alerts: resolveAlerts(
      cfg.alerts,
      ctx,
      report,
      autoSettleMaxMs(probes.intervalMs, probes.confirm),
    ),
  };
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
        const { $schema: _, ...union } = z.toJSONSchema(sinkUnion(), {
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
