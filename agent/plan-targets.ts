import type { z } from 'zod';
import { deepFreeze } from '../lib/config-file.js';
import { defaultConfirm } from '../lib/config-fields.js';
import { ConfigError } from '../lib/errors.js';
import { isProbeKind, probeKinds, probeRegistry } from '../probes/registry.js';
import { parseTarget } from '../probes/target.js';
import type { Plan, PlanTarget } from '../wire/plan.js';
import type { AgentConfig, ResolvedTarget } from './config.js';
import { reservedLabelNames } from './config.js';
import type { Logger } from '../lib/logger.js';
import { planTargetRefusal } from './plan-policy.js';
import type { PlanPolicy, TargetAllowList } from './plan-policy.js';
import {
  defaultSeriesSelection,
  type ProbeInstance,
  type SeriesSelection,
} from './telemetry/index.js';

/** Who the agent is and how it runs: what a plan does not say. */
export interface PlanAgentBase {
  /** Agent name (results, metrics, the plan request). */
  readonly name: string;
  /** The agent's own topology labels (the source side of every path). */
  readonly labels: Readonly<Record<string, string>>;
  /** Where /metrics listens (`host:port`), or false. */
  readonly metricsListen: string | false;
  /** The `instance` of the probe_* series (default: scrape). */
  readonly metricsProbeInstance?: ProbeInstance;
  /** Which per-path series beyond the default set (default: none). */
  readonly metricsSeries?: SeriesSelection;
  /** Most probes running at once. */
  readonly maxInFlight: number;
  /** What the plan may make the agent do (the agent's own config); absent: anything. */
  readonly policy?: { readonly policy: PlanPolicy; readonly allowList?: TargetAllowList };
}

/** Something in a plan the agent could not take as written. */
export interface PlanProblem {
  /** Plan target name (or `targets[i]` when it has none usable). */
  readonly target: string;
  /** `skipped`: the target is not probed; `adjusted`: probed with the change said in `message`. */
  readonly action: 'skipped' | 'adjusted';
  readonly message: string;
}

/** A plan turned into a runnable agent config, with what had to be skipped or adjusted. */
export interface PlanConversion {
  readonly config: AgentConfig;
  readonly problems: readonly PlanProblem[];
}

const labelNameRe = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const reserved = new Set<string>(reservedLabelNames);
// Same rule as a config file: a timeout left unspecified takes at most 90% of the interval.
const timeoutShare = 0.9;

function issuesText(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((i) => (i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
}

function shortest(values: readonly number[]): number {
  let min = Infinity;
  for (const v of values) if (v < min) min = v;
  return values.length === 0 ? 0 : min;
}

/**
 * Turns the collector's plan into the config the Agent runs: each plan target becomes a
 * ResolvedTarget (address parsed with its kind's target form, options parsed by its kind's
 * schema, labels = the component's topology labels plus `component` and `service`).
 *
 * A bad plan must not take the agent down: a target that cannot run (unknown kind, invalid
 * address or options, duplicate name) is skipped, one whose timeout is not below its
 * interval is clamped, and an unusable label name is left out. Each of these is returned in
 * `problems` and, when `log` is given, logged as a warning.
 */
export function planToAgentConfig(plan: Plan, base: PlanAgentBase, log?: Logger): PlanConversion {
  const problems: PlanProblem[] = [];
  const targets: ResolvedTarget[] = [];
  const seen = new Set<string>();
  const problem = (target: string, action: PlanProblem['action'], message: string): void => {
    problems.push({ target, action, message });
  };

  plan.targets.forEach((t: PlanTarget, i) => {
    const name = t.name;
    if (seen.has(name)) {
      problem(name, 'skipped', `duplicate target name (targets[${i}])`);
      return;
    }
    seen.add(name);
    if (!isProbeKind(t.kind)) {
      problem(name, 'skipped', `unknown probe kind "${t.kind}" (known: ${probeKinds.join(', ')})`);
      return;
    }
    const def = probeRegistry[t.kind];
    let target;
    try {
      target = parseTarget(t.address, def.target, name);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problem(name, 'skipped', err.message);
      return;
    }
    const parsed = (def.options as z.ZodType).safeParse(t.options);
    if (!parsed.success) {
      problem(name, 'skipped', `invalid ${t.kind} options: ${issuesText(parsed.error.issues)}`);
      return;
    }
    let timeoutMs = t.timeoutMs;
    if (timeoutMs >= t.intervalMs) {
      timeoutMs = Math.max(1, Math.floor(t.intervalMs * timeoutShare));
      problem(
        name,
        'adjusted',
        `timeout ${t.timeoutMs} ms is not below the interval ${t.intervalMs} ms: using ${timeoutMs} ms`,
      );
    }
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(t.labels)) {
      if (!labelNameRe.test(k) || k.startsWith('__') || reserved.has(k)) {
        problem(name, 'adjusted', `label "${k}" left out: not a usable label name`);
        continue;
      }
      labels[k] = v;
    }
    labels.component = t.component;
    if (t.service !== undefined && t.service !== '') labels.service = t.service;
    const resolved = {
      name,
      kind: t.kind,
      address: t.address,
      target,
      intervalMs: t.intervalMs,
      timeoutMs,
      options: parsed.data,
      labels,
    } as ResolvedTarget;
    if (base.policy !== undefined) {
      const refusal = planTargetRefusal(resolved, base.policy.policy, base.policy.allowList);
      if (refusal !== undefined) {
        problem(name, 'skipped', `refused by the agent's plan policy: ${refusal}`);
        return;
      }
    }
    targets.push(resolved);
  });

  if (log !== undefined) {
    for (const p of problems) {
      log.warn(
        { target: p.target, action: p.action, reason: p.message, planVersion: plan.version },
        p.action === 'skipped' ? 'plan target skipped' : 'plan target adjusted',
      );
    }
  }

  const config: AgentConfig = {
    agent: { name: base.name, labels: { ...base.labels } },
    metrics: {
      listen: base.metricsListen,
      probeInstance: base.metricsProbeInstance ?? 'scrape',
      ...(base.metricsSeries ?? defaultSeriesSelection),
    },
    defaults: {
      // Plan targets carry their own schedule; these only describe the config as a whole.
      intervalMs: shortest(targets.map((t) => t.intervalMs)),
      timeoutMs: shortest(targets.map((t) => t.timeoutMs)),
      maxInFlight: base.maxInFlight,
      options: {},
      // An older collector's plan says nothing: the agent's defaults.
      confirm: plan.confirm ?? { ...defaultConfirm },
      adaptiveTimeout: plan.adaptiveTimeout ?? true,
    },
    targets,
  };
  return { config: deepFreeze(config), problems };
}
