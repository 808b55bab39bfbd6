import type { Plan } from '../wire/plan.js';
import { Agent, defaultStopGraceMs } from './agent.js';
import { CollectorLink, type CollectorEndpoint } from './collector-link.js';
import { defaultCursor } from './spool.js';
import type { NatsSection } from '../lib/nats-config.js';
import type { Logger } from '../lib/logger.js';
import type { PlanPolicy, TargetAllowList } from './plan-policy.js';
import { compileAllowList, defaultPlanPolicy } from './plan-policy.js';
import { planToAgentConfig, type PlanAgentBase } from './plan-targets.js';
import type { DeliveryStats, ProbeInstance, SeriesSelection } from './telemetry/index.js';

/** How an agent that takes its plan from a collector is started. */
export interface ManagedAgentOptions {
  /** The one collector's URL (or give `collectors`; unused with `nats`). */
  readonly url?: string;
  /** Report through NATS JetStream and take the plan from its KV bucket instead of a collector URL. */
  readonly nats?: NatsSection;
  /** The configured token (a bootstrap token is exchanged for a per-agent one). */
  readonly token?: string;
  /** PEM CA certificates trusted for an https collector (pins it to a private CA). */
  readonly ca?: string | Buffer;
  /** Every collector to report to, each with its token and CA (two failure domains for HA). */
  readonly collectors?: readonly CollectorEndpoint[];
  /** What a plan may make this agent do; absent: the defaults (see PlanPolicy). */
  readonly policy?: PlanPolicy;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly stateDir: string;
  /** Prometheus /metrics of the agent itself, or false. */
  readonly metricsListen: string | false;
  /** The `instance` of the probe_* series (default: scrape). */
  readonly probeInstance?: ProbeInstance;
  /** Which per-path series beyond the default set (default: none). */
  readonly series?: SeriesSelection;
  readonly maxInFlight?: number;
  readonly log: Logger;
}

/** A running agent and its link to the collector. */
export interface ManagedAgent {
  readonly agent: Agent;
  readonly link: CollectorLink;
  /** Stops probing (bounded), spools what is left and stops the link. */
  stop(): Promise<void>;
}

function emptyPlan(agent: string): Plan {
  return {
    version: 'none',
    agent,
    generatedAtMs: 0,
    refreshIntervalMs: 30_000,
    reportIntervalMs: 1_000,
    targets: [],
  };
}

/** The link's counters as the agent's delivery metrics. */
export function deliveryStats(link: CollectorLink, nowMs = Date.now()): DeliveryStats {
  const s = link.stats();
  const oldest = s.spool?.oldestCreatedAtMs;
  const lag = (oldestMs: number | undefined): number =>
    oldestMs === undefined ? 0 : Math.max(0, nowMs - oldestMs) / 1000;
  return {
    // Per collector (with NATS: the stream, labelled with its servers).
    collectors: s.collectors.map((c) => ({
      collector: c.label,
      lagSeconds: lag(c.spool?.oldestCreatedAtMs),
      acceptedSeq: c.acceptedSeq,
      rejected: c.rejected,
      implausibleAcks: c.implausibleAcks,
      seqRefusals: c.seqRefusals,
      enrolState: c.enrolState,
    })),
    spoolBatches: s.spool?.batches ?? 0,
    spoolBytes: s.spool?.bytes ?? 0,
    lagSeconds: oldest === undefined ? 0 : Math.max(0, nowMs - oldest) / 1000,
    acceptedSeq: s.acceptedSeq,
    rejected: s.rejected,
    dropped: s.spool?.droppedBatches ?? 0,
    implausibleAcks: s.implausibleAcks,
    seqRefusals: s.seqRefusals,
    enrolState: s.enrolState,
  };
}

/**
 * `faultline agent --collector URL …` (one or several): fetches the plan (or uses the
 * cached one while the collectors are away), probes it, and reports every result through
 * the spool to every collector; a changed plan reaches the running agent on the next refresh.
 */
export async function startManagedAgent(opts: ManagedAgentOptions): Promise<ManagedAgent> {
  const policy = opts.policy ?? defaultPlanPolicy;
  const allowList: TargetAllowList | undefined =
    policy.allowTargets === undefined
      ? undefined
      : compileAllowList(policy.allowTargets, 'allowTargets');
  const base: PlanAgentBase = {
    name: opts.name,
    labels: opts.labels,
    metricsListen: opts.metricsListen,
    ...(opts.probeInstance === undefined ? {} : { metricsProbeInstance: opts.probeInstance }),
    ...(opts.series === undefined ? {} : { metricsSeries: opts.series }),
    maxInFlight: opts.maxInFlight ?? 256,
    policy: { policy, ...(allowList === undefined ? {} : { allowList }) },
  };
  const convert = (plan: Plan): ReturnType<typeof planToAgentConfig>['config'] => {
    const { config, problems } = planToAgentConfig(plan, base, opts.log);
    if (problems.length > 0)
      opts.log.warn({ problems, planVersion: plan.version }, 'plan targets skipped or adjusted');
    return config;
  };
  // The link's plan callback can fire before the agent exists; it reloads it once it does.
  const running: { agent?: Agent } = {};
  const common = {
    agent: opts.name,
    labels: opts.labels,
    stateDir: opts.stateDir,
    log: opts.log,
    onPlan: (plan: Plan) => {
      opts.log.info({ planVersion: plan.version, targets: plan.targets.length }, 'new plan');
      running.agent?.reload(convert(plan));
    },
  };
  const link = new CollectorLink(
    opts.nats === undefined
      ? {
          ...(opts.collectors === undefined
            ? {
                ...(opts.url === undefined ? {} : { url: opts.url }),
                ...(opts.token === undefined ? {} : { token: opts.token }),
                ...(opts.ca === undefined ? {} : { ca: opts.ca }),
              }
            : { collectors: opts.collectors }),
          ...common,
        }
      : {
          channels: [
            // Loaded only with NATS: its client is memory an HTTP agent need not hold.
            new (await import('./nats-channel.js')).NatsChannel({
              nats: opts.nats,
              zone: opts.labels.zone ?? 'default',
              name: defaultCursor,
              agent: opts.name,
              stateDir: opts.stateDir,
              log: opts.log,
            }),
          ],
          ...common,
        },
  );
  const plan = await link.start();
  if (plan === undefined) {
    opts.log.warn(
      { collectors: link.stats().collectors.map((c) => c.label) },
      'no plan yet (no collector reachable and none cached): probing nothing until one arrives',
    );
  }
  const agent = await Agent.start(convert(plan ?? emptyPlan(opts.name)), opts.log, {
    onResult: link.observe,
  });
  running.agent = agent;
  agent.telemetry.observeDelivery(() => deliveryStats(link));
  return {
    agent,
    link,
    async stop() {
      await agent.stop(defaultStopGraceMs);
      await link.stop();
    },
  };
}
