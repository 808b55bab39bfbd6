import { hostname } from 'node:os';
import { z } from 'zod';
import { cronLibrary } from '../lib/lazy-modules.js';
import { loadConfigFile, parseConfigText, resolvingSchema } from '../lib/config-file.js';
import type { ConfigIssueParams, ConfigPath } from '../lib/config-file.js';
import {
  adaptiveTimeoutField,
  agentNameRe,
  agentNameSchema,
  asNumber,
  confirmField,
  durationField,
  formatDurationMs,
  isRecord,
  labelsField,
  parseListen,
} from '../lib/config-fields.js';
import type { IssueSink } from '../lib/config-fields.js';
import { ConfigError } from '../lib/errors.js';
import { isProbeKind, probeKinds, probeRegistry } from '../probes/registry.js';
import type { ProbeKind } from '../probes/registry.js';
import {
  checkKindDefaults,
  checkMergedOptions,
  fillOptionsSlot,
  kindOptionsJsonSchema,
  optionsSlot,
  perKindOptionsField,
} from '../probes/kind-options.js';
import { parseTarget } from '../probes/target.js';
import type { Target } from '../probes/types.js';
import {
  collectorSchema,
  collectorsSchema,
  resolveCollectors,
  type AgentCollectorConfig,
} from './config-collector.js';
import {
  blackboxSeriesModes,
  probeInstanceModes,
  type BlackboxSeries,
  type ProbeInstance,
} from './telemetry/index.js';

export type { AgentCollectorConfig };

/**
 * The agent's YAML configuration (`faultline agent --config agent.yaml`): who the agent is,
 * where it serves /metrics, probe defaults, and the targets it probes. Written in camelCase,
 * unknown keys refused everywhere; the parsed result is normalised (durations in ms,
 * addresses parsed, options merged over the kind's defaults and validated) and frozen.
 */

// Shared with the collector's config; re-exported where the agent's users look for them.
export { formatDurationMs, reservedLabelNames } from '../lib/config-fields.js';

/** Where /metrics listens when the config does not say. Loopback: nothing exposed by default. */
export const defaultMetricsListen = '127.0.0.1:9465';

const minIntervalMs = 100;
const minTimeoutMs = 10;
const defaultTimeoutShare = 0.9;
const defaultTimeoutFallbackMs = 5_000;

const labelsSchema = labelsField();

const cronSchema = z
  .string()
  .superRefine((expr, ctx) => {
    const check = cronLibrary().validateCronExpression(expr);
    if (!check.valid) {
      const why = check.error?.message ?? 'not understood';
      ctx.addIssue({
        code: 'custom',
        message: `expected a cron expression like "*/5 * * * * *" (sec min hour day month weekday): ${why}`,
        input: expr,
      });
    }
  })
  .describe(
    'Cron schedule instead of `interval`, local time; 5 fields, or 6 with seconds first (e.g. "*/5 * * * * *").',
  );

const listenHelp = 'expected host:port such as "127.0.0.1:9465" ("" or false disables /metrics)';

const metricsSchema = z
  .object({
    listen: z
      .union([z.string(), z.literal(false)])
      .transform((raw, ctx) => {
        if (raw === false || raw === '') return false as const;
        const listen = parseListen(raw);
        if (listen === undefined) {
          ctx.addIssue({ code: 'custom', message: listenHelp, input: raw });
          return z.NEVER;
        }
        return listen;
      })
      .prefault(defaultMetricsListen)
      .describe(
        'Address of the Prometheus /metrics endpoint, host:port (port 0 picks a free one); "" or false disables it.',
      ),
    probeInstance: z
      .enum(probeInstanceModes)
      .default('scrape')
      .describe(
        'The `instance` label of the blackbox-compatible probe_* series: "scrape" (default) leaves it to Prometheus (the agent\'s scrape address); "address" sets it to the target\'s address or URL, as a blackbox_exporter job relabels it — scrape the agent with `honor_labels: true` so Prometheus keeps it.',
      ),
    histograms: z
      .boolean()
      .default(false)
      .describe(
        'Per-target histograms: faultline_probe_duration_seconds (by phase for http) and faultline_probe_icmp_rtt_seconds. Off by default: each is 14 lines per target and phase in every scrape (~7 MB at 1,000 targets instead of ~0.75 MB).',
      ),
    blackbox: z
      .enum(blackboxSeriesModes)
      .default('core')
      .describe(
        'Which blackbox_exporter-compatible probe_* series: "core" (default) probe_success, probe_duration_seconds, probe_http_status_code, probe_ssl_earliest_cert_expiry and probe_dns_query_succeeded; "full" every series blackbox_exporter has for the check (probe_http_duration_seconds by phase, probe_ip_protocol, probe_dns_lookup_time_seconds, probe_icmp_duration_seconds…), for its dashboards.',
      ),
  })
  .strict()
  .describe(
    'The Prometheus pull endpoint. OTLP push is configured by the OTEL_EXPORTER_OTLP_* variables.',
  );

const defaultsSchema = z
  .object({
    interval: durationField(minIntervalMs)
      .prefault('15s')
      .describe('How often each target is probed: milliseconds, or e.g. "500ms", "15s", "2m".'),
    timeout: durationField(minTimeoutMs)
      .optional()
      .describe(
        'Probe timeout; must be shorter than `interval`. Default: 5s, or 90% of `interval` when that is shorter. A target without its own gets min(this, 90% of its interval).',
      ),
    maxInFlight: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(256)
      .describe('Most probes running at once; further probes wait for a slot.'),
    options: perKindOptionsField('target')
      .prefault({})
      .describe(
        "Per-kind default options; a target's own `options` are merged over them key by key.",
      ),
    confirm: confirmField()
      .prefault({})
      .describe(
        'Fast confirmation: when a target changes class the agent re-probes it `count` times, `spacing` apart, and reports the change with its confirmations at once. With a collector, its plan decides.',
      ),
    adaptiveTimeout: adaptiveTimeoutField(),
  })
  .strict()
  .superRefine((d, ctx) => {
    if (d.timeout !== undefined && d.timeout >= d.interval) {
      ctx.addIssue({
        code: 'custom',
        path: ['timeout'],
        message: `timeout ${formatDurationMs(d.timeout)} must be shorter than the interval ${formatDurationMs(d.interval)}`,
        input: undefined,
      });
    }
  })
  .describe('Defaults for every target.');

const targetSchema = z
  .object({
    name: agentNameSchema.describe(
      'Unique name of the target, used in results and metrics (1–128 of A-Z a-z 0-9 . _ : -).',
    ),
    kind: z
      .enum(probeKinds as [ProbeKind, ...ProbeKind[]], {
        error: (iss) =>
          iss.input === undefined
            ? undefined
            : `unknown probe kind: expected one of ${probeKinds.join(', ')}`,
      })
      .describe('Probe kind.'),
    address: z
      .string()
      .describe(
        'What to probe, in the form the kind expects: host (icmp, dns), host:port, or an http(s) URL.',
      ),
    interval: durationField(minIntervalMs)
      .optional()
      .describe('How often to probe this target; default `defaults.interval`. Not with `cron`.'),
    cron: cronSchema.optional(),
    timeout: durationField(minTimeoutMs)
      .optional()
      .describe(
        'Probe timeout; must be shorter than the interval. Default: min(defaults.timeout, 90% of the interval).',
      ),
    options: optionsSlot('any')
      .optional()
      .describe("This kind's options, merged over `defaults.options.<kind>`."),
    labels: labelsSchema.prefault({}),
  })
  .strict();

const AgentConfigInput = z
  .object({
    agent: z
      .object({
        name: agentNameSchema
          .optional()
          .describe('Name of this agent in results and metrics; default: the host name.'),
        labels: labelsSchema.prefault({}),
      })
      .strict()
      .prefault({})
      .describe('Who this agent is.'),
    metrics: metricsSchema.prefault({}),
    collector: collectorSchema.optional(),
    collectors: collectorsSchema.optional(),
    defaults: defaultsSchema.prefault({}),
    targets: z.array(targetSchema).prefault([]).describe('What this agent probes.'),
  })
  .strict()
  .meta({ title: 'Faultline agent configuration' });

/** Options of one kind, after its schema applied defaults. */
export type ProbeOptions<K extends ProbeKind> = z.output<(typeof probeRegistry)[K]['options']>;

interface ResolvedTargetBase {
  /** Unique name of the target. */
  readonly name: string;
  /** The address as written in the config. */
  readonly address: string;
  /** The validated, parsed address (parseTarget). */
  readonly target: Target;
  /** Probe period; for a cron target, the shortest gap between two runs. */
  readonly intervalMs: number;
  /** Cron expression, when the target runs on a cron schedule instead of every intervalMs. */
  readonly cron?: string;
  /** Probe timeout, always shorter than intervalMs. */
  readonly timeoutMs: number;
  /** Topology labels of the target. */
  readonly labels: Readonly<Record<string, string>>;
}

/** One target, ready to schedule: defaults applied, options merged and parsed by its kind. */
export type ResolvedTarget = {
  [K in ProbeKind]: ResolvedTargetBase & {
    readonly kind: K;
    /** The kind's options: defaults.options[kind] with the target's own merged over them. */
    readonly options: ProbeOptions<K>;
  };
}[ProbeKind];

/** The parsed agent configuration (deep-frozen when it comes from parse/load). */
export interface AgentConfig {
  readonly agent: {
    /** Agent name: the config's, or the host name. */
    readonly name: string;
    /** Topology labels of this agent (the source side of every path). */
    readonly labels: Readonly<Record<string, string>>;
  };
  readonly metrics: {
    /** Where /metrics listens, `host:port` (IPv6 in brackets), or false when disabled. */
    readonly listen: string | false;
    /** The `instance` of the probe_* series: Prometheus' (scrape) or the target's address. */
    readonly probeInstance: ProbeInstance;
    /** Per-target duration and ICMP RTT histograms (opt-in). */
    readonly histograms: boolean;
    /** The blackbox_exporter-compatible series: the core ones, or every one. */
    readonly blackbox: BlackboxSeries;
  };
  readonly defaults: {
    readonly intervalMs: number;
    readonly timeoutMs: number;
    /** Most probes running at once. */
    readonly maxInFlight: number;
    /** Per-kind default options as written (validated); targets hold the merged result. */
    readonly options: Readonly<Partial<Record<ProbeKind, Readonly<Record<string, unknown>>>>>;
    /** The confirmation burst after a change of class (count 0: none). */
    readonly confirm: { readonly count: number; readonly spacingMs: number };
    /** Per-path timeouts shrink towards the path's round trip (the configured one is the ceiling). */
    readonly adaptiveTimeout: boolean;
  };
  readonly targets: readonly ResolvedTarget[];
  /**
   * Present: the agent takes its plan from this collector and reports to it — the first of
   * `collectors` when several are given (the agent-wide `stateDir`, `plan` and the first's
   * connection), so a consumer that knows one collector keeps working.
   */
  readonly collector?: AgentCollectorConfig;
  /** Every collector the agent reports to (one entry for `collector:`), agent-wide keys filled. */
  readonly collectors?: readonly AgentCollectorConfig[];
  /** Which key the file used (for messages naming the path of a setting). */
  readonly collectorsKey?: 'collector' | 'collectors';
}

const cronPeriods = new Map<string, number>();

function values(field: string, size: number): number[] {
  if (field === '*') return Array.from({ length: size }, (_, i) => i);
  return field
    .split(',')
    .map(Number)
    .sort((a, b) => a - b);
}

function shortestCyclicGap(sorted: readonly number[], size: number): number {
  let gap = size - (sorted[sorted.length - 1] ?? 0) + (sorted[0] ?? 0);
  for (let i = 1; i < sorted.length; i++)
    gap = Math.min(gap, (sorted[i] ?? 0) - (sorted[i - 1] ?? 0));
  return gap;
}

/**
 * A lower bound of the gap between two runs of a cron expression, from its finest field
 * with more than one value (seconds, then minutes, then hours; else a day). Computed from
 * the parsed fields because asking the cron library for run times costs milliseconds each.
 */
export function cronPeriodMs(expr: string): number {
  const cached = cronPeriods.get(expr);
  if (cached !== undefined) return cached;
  const fields = new (cronLibrary().CronTime)(expr).toJSON();
  const units: readonly [number, number][] = [
    [60, 1000],
    [60, 60_000],
    [24, 3_600_000],
  ];
  let period = 86_400_000;
  for (let i = 0; i < units.length; i++) {
    const [size, unitMs] = units[i] ?? [1, 1];
    const vals = values(fields[i] ?? '*', size);
    if (vals.some((v) => !Number.isInteger(v))) {
      period = 1000; // a field form we do not know: assume the finest cron can do
      break;
    }
    if (vals.length > 1) {
      period = shortestCyclicGap(vals, size) * unitMs;
      break;
    }
  }
  if (cronPeriods.size > 1000) cronPeriods.clear();
  cronPeriods.set(expr, period);
  return period;
}

/**
 * A target's schedule and timeout: its cron period or interval (else defaults.interval),
 * and its timeout (else the default, shrunk to a share of a short interval); reports a
 * cron beside an interval and a timeout not shorter than the period.
 */
function targetTiming(
  t: Record<string, unknown>,
  defaultIntervalMs: number | undefined,
  defaultTimeoutMs: number | undefined,
  report: (path: PropertyKey[], message: string) => void,
): { cron: string | undefined; intervalMs: number | undefined; timeoutMs: number | undefined } {
  const cron = typeof t.cron === 'string' ? t.cron : undefined;
  const ownIntervalMs = asNumber(t.interval);
  if (t.interval !== undefined && t.cron !== undefined) {
    report(['cron'], 'cron and interval are mutually exclusive: keep one');
  }
  let intervalMs: number | undefined;
  let intervalText = '';
  if (cron !== undefined && t.interval === undefined) {
    try {
      intervalMs = cronPeriodMs(cron);
      intervalText = `the cron period ${formatDurationMs(intervalMs)}`;
    } catch {
      // Already reported by the cron field's own check.
    }
  } else if (ownIntervalMs !== undefined) {
    intervalMs = ownIntervalMs;
    intervalText = `the interval ${formatDurationMs(intervalMs)}`;
  } else if (defaultIntervalMs !== undefined && t.interval === undefined) {
    intervalMs = defaultIntervalMs;
    intervalText = `the interval ${formatDurationMs(intervalMs)} (defaults.interval)`;
  }

  const ownTimeoutMs = asNumber(t.timeout);
  let timeoutMs: number | undefined;
  if (ownTimeoutMs !== undefined) {
    timeoutMs = ownTimeoutMs;
    if (intervalMs !== undefined && ownTimeoutMs >= intervalMs) {
      report(
        ['timeout'],
        `timeout ${formatDurationMs(ownTimeoutMs)} must be shorter than ${intervalText}`,
      );
    }
  } else if (intervalMs !== undefined && defaultTimeoutMs !== undefined) {
    timeoutMs = Math.min(defaultTimeoutMs, Math.floor(intervalMs * defaultTimeoutShare));
  }
  return { cron, intervalMs, timeoutMs };
}

/**
 * Checks everything that spans fields (addresses by kind, schedules against defaults,
 * merged options, unique names) and builds the resolved config. Runs on partially invalid
 * input too, so every problem is reported in one go: each check looks only at values that
 * passed their own schema.
 */
function resolveConfig(cfg: Record<string, unknown>, ctx: IssueSink | undefined): AgentConfig {
  const report = (path: ConfigPath, message: string, input?: unknown, params?: ConfigIssueParams) =>
    ctx?.addIssue({ code: 'custom', path: [...path], message, input, params });

  const agent: Record<string, unknown> = isRecord(cfg.agent) ? cfg.agent : {};
  let agentName = typeof agent.name === 'string' ? agent.name : undefined;
  if (agentName === undefined) {
    agentName = hostname();
    if (!agentNameRe.test(agentName)) {
      report(
        ['agent', 'name'],
        `the host name ${JSON.stringify(agentName)} is not a valid agent name: set agent.name`,
      );
    }
  }

  const defaults: Record<string, unknown> = isRecord(cfg.defaults) ? cfg.defaults : {};
  const defaultIntervalMs = asNumber(defaults.interval);
  // Unwritten, the default timeout shrinks with a short default interval rather than
  // making `interval: 1s` alone an error about a timeout nobody wrote.
  const defaultTimeoutMs =
    defaults.timeout === undefined && defaultIntervalMs !== undefined
      ? Math.min(defaultTimeoutFallbackMs, Math.floor(defaultIntervalMs * defaultTimeoutShare))
      : asNumber(defaults.timeout);
  const kindDefaults = checkKindDefaults(defaults.options, ctx, ['defaults', 'options']);

  const targets: ResolvedTarget[] = [];
  const firstByName = new Map<string, number>();
  const list: unknown[] = Array.isArray(cfg.targets) ? cfg.targets : [];
  list.forEach((t, i) => {
    if (!isRecord(t)) return;
    const at = (...rest: PropertyKey[]): PropertyKey[] => ['targets', i, ...rest];
    const name = typeof t.name === 'string' ? t.name : '';
    if (name !== '') {
      const first = firstByName.get(name);
      if (first === undefined) firstByName.set(name, i);
      else {
        report(at('name'), `duplicate target name ${JSON.stringify(name)}`, undefined, {
          related: { path: ['targets', first, 'name'], label: 'first used' },
        });
      }
    }
    const kind = typeof t.kind === 'string' && isProbeKind(t.kind) ? t.kind : undefined;

    let target: Target | undefined;
    if (kind !== undefined && typeof t.address === 'string') {
      try {
        target = parseTarget(t.address, probeRegistry[kind].target, name);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        // The line already shows the path and the value: the reason alone.
        report(at('address'), err.reason?.why ?? err.message, t.address);
      }
    }

    const { cron, intervalMs, timeoutMs } = targetTiming(
      t,
      defaultIntervalMs,
      defaultTimeoutMs,
      (path, message) => report(at(...path), message),
    );

    let options: unknown;
    if (kind !== undefined && (t.options === undefined || isRecord(t.options))) {
      options = checkMergedOptions(kind, kindDefaults, t.options ?? {}, ctx, at('options'))?.parsed;
    }

    if (
      kind === undefined ||
      target === undefined ||
      intervalMs === undefined ||
      timeoutMs === undefined
    )
      return;
    targets.push({
      name,
      kind,
      address: t.address as string,
      target,
      intervalMs,
      ...(cron === undefined ? {} : { cron }),
      timeoutMs,
      options,
      labels: isRecord(t.labels) ? (t.labels as Record<string, string>) : {},
    } as ResolvedTarget);
  });

  const metrics: Record<string, unknown> = isRecord(cfg.metrics) ? cfg.metrics : {};
  const collectors = resolveCollectors(cfg, report);
  const collector = collectors?.[0];
  if (collector !== undefined && list.length > 0) {
    const key = cfg.collectors === undefined ? 'collector' : 'collectors';
    report(
      ['targets'],
      `with \`${key}\` the plan says what to probe: leave \`targets\` out (or drop \`${key}\`)`,
    );
  }
  return {
    ...(collector === undefined
      ? {}
      : {
          collector,
          collectors,
          collectorsKey: cfg.collectors === undefined ? 'collector' : 'collectors',
        }),
    agent: {
      name: agentName,
      labels: isRecord(agent.labels) ? (agent.labels as Record<string, string>) : {},
    },
    metrics: {
      listen: (metrics.listen ?? false) as AgentConfig['metrics']['listen'],
      probeInstance: (metrics.probeInstance ?? 'scrape') as ProbeInstance,
      histograms: metrics.histograms === true,
      blackbox: (metrics.blackbox ?? 'core') as BlackboxSeries,
    },
    defaults: {
      intervalMs: defaultIntervalMs ?? 0,
      timeoutMs: defaultTimeoutMs ?? 0,
      maxInFlight: asNumber(defaults.maxInFlight) ?? 0,
      options: kindDefaults.options,
      confirm: {
        count: isRecord(defaults.confirm) ? (asNumber(defaults.confirm.count) ?? 0) : 0,
        spacingMs: isRecord(defaults.confirm) ? (asNumber(defaults.confirm.spacing) ?? 0) : 0,
      },
      adaptiveTimeout: defaults.adaptiveTimeout !== false,
    },
    targets,
  };
}

/** The agent config schema: YAML input in, AgentConfig out. */
export const AgentConfigSchema = resolvingSchema(AgentConfigInput, resolveConfig);

/** Parses agent config text; `fileName` is used in messages. Throws ConfigError. */
export function parseAgentConfig(text: string, fileName: string): AgentConfig {
  return parseConfigText(text, fileName, AgentConfigSchema);
}

/** Reads and parses an agent config file. Throws ConfigError naming file, line and path. */
export function loadAgentConfig(path: string): AgentConfig {
  return loadConfigFile(path, AgentConfigSchema);
}

/**
 * JSON Schema (draft 2020-12) of what people write in agent.yaml, for editors and the
 * configuration reference: each kind's options schema appears under
 * `defaults.options.<kind>` and, keyed on `kind`, under each target's `options`.
 * Committed as deploy/schema/agent.schema.json; agent/config.test.ts keeps it current.
 */
export function agentJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(AgentConfigSchema, {
    io: 'input',
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema }) => {
      const json = jsonSchema as Record<string, unknown>;
      fillOptionsSlot(zodSchema, json);
      if (zodSchema === targetSchema) {
        json.not = { required: ['interval', 'cron'] };
        json.allOf = probeKinds.map((kind) => ({
          if: { properties: { kind: { const: kind } }, required: ['kind'] },
          then: { properties: { options: kindOptionsJsonSchema(kind) } },
        }));
      }
    },
  });
}
