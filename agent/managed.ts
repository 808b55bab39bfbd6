import type { Plan } from '../wire/plan.js';
import { Agent, defaultStopGraceMs } from './agent.js';
import { CollectorLink } from './collector-link.js';
import type { Logger } from './logger.js';
import { planToAgentConfig, type PlanAgentBase } from './plan-targets.js';

/** How an agent that takes its plan from a collector is started. */
export interface ManagedAgentOptions {
  readonly url: string;
  readonly token: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly stateDir: string;
  /** Prometheus /metrics of the agent itself, or false. */
  readonly metricsListen: string | false;
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

/**
 * `faultline agent --collector URL …`: fetches the plan (or uses the cached one while the
 * collector is away), probes it, and reports every result through the spool; a changed
 * plan reaches the running agent on the next refresh.
 */
export async function startManagedAgent(opts: ManagedAgentOptions): Promise<ManagedAgent> {
  const base: PlanAgentBase = {
    name: opts.name,
    labels: opts.labels,
    metricsListen: opts.metricsListen,
    maxInFlight: opts.maxInFlight ?? 256,
  };
  const convert = (plan: Plan): ReturnType<typeof planToAgentConfig>['config'] => {
    const { config, problems } = planToAgentConfig(plan, base, opts.log);
    if (problems.length > 0)
      opts.log.warn({ problems, planVersion: plan.version }, 'plan targets skipped or adjusted');
    return config;
  };
  // The link's plan callback can fire before the agent exists; it reloads it once it does.
  const running: { agent?: Agent } = {};
  const link = new CollectorLink({
    url: opts.url,
    token: opts.token,
    agent: opts.name,
    labels: opts.labels,
    stateDir: opts.stateDir,
    log: opts.log,
    onPlan: (plan) => {
      opts.log.info({ planVersion: plan.version, targets: plan.targets.length }, 'new plan');
      running.agent?.reload(convert(plan));
    },
  });
  const plan = await link.start();
  if (plan === undefined) {
    opts.log.warn(
      { url: opts.url },
      'no plan yet (collector unreachable and none cached): probing nothing until one arrives',
    );
  }
  const agent = await Agent.start(convert(plan ?? emptyPlan(opts.name)), opts.log, {
    onResult: link.observe,
  });
  running.agent = agent;
  return {
    agent,
    link,
    async stop() {
      await agent.stop(defaultStopGraceMs);
      await link.stop();
    },
  };
}
