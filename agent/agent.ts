import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenError } from '../lib/listen-error.js';
import { probeDefinition, probeKinds, probeRegistry } from '../probes/registry.js';
import type { ProbeDefinition, ScheduledTarget } from '../probes/types.js';
import { runProbe } from '../probes/run.js';
import type { FailureClass, ProbeResult } from '../wire/result.js';
import type { AgentConfig, ResolvedTarget } from './config.js';
import type { Logger } from './logger.js';
import { Scheduler, type Job } from './scheduler.js';
import { AgentTelemetry } from './telemetry.js';

/** How long SIGTERM waits for probes in flight before aborting them. */
export const defaultStopGraceMs = 5_000;

/** Called with every result; the collector link (issue 4) hangs here. */
export type ResultListener = (result: ProbeResult, target: ResolvedTarget) => void;

interface PathState {
  lastClass: FailureClass | undefined;
}

/**
 * The agent: probes its targets on schedule, exports every result to OpenTelemetry and
 * Prometheus, and logs a path's state change once (not every round). A probe that throws
 * becomes an `internal_error` result; nothing a probe does takes the agent down.
 */
export class Agent {
  private config: AgentConfig;
  private readonly scheduler: Scheduler;
  readonly telemetry: AgentTelemetry;
  private readonly paths = new Map<string, PathState>();
  private readonly listeners: ResultListener[] = [];
  private server: Server | undefined;
  /**
   * Probe sequence numbers rise across restarts too: the collector orders a path's results by
   * seq, and an agent restarted on its state dir keeps its id. Microseconds of the start
   * time, then one per probe (fewer than a million probes a second keep it monotonic).
   */
  private seq = Date.now() * 1000;

  private constructor(
    config: AgentConfig,
    private readonly log: Logger,
    telemetry: AgentTelemetry | undefined,
  ) {
    this.config = config;
    this.telemetry =
      telemetry ??
      new AgentTelemetry({
        agentName: config.agent.name,
        agentLabels: config.agent.labels,
        serviceVersion: process.env.npm_package_version ?? '0.1.0',
      });
    this.scheduler = new Scheduler({
      maxInFlight: config.defaults.maxInFlight,
      phaseSeed: config.agent.name,
      onLag: (_id, lagMs) => this.telemetry.recordStart(lagMs),
      onSkip: (id) => {
        this.telemetry.recordSkip(id);
        this.log.debug({ target: id }, 'probe round skipped: the previous one is still running');
      },
      onError: (id, err) => this.log.error({ target: id, err }, 'probe job failed'),
    });
  }

  /** Starts probing and (when configured) the metrics endpoint. */
  static async start(
    config: AgentConfig,
    log: Logger,
    opts: { telemetry?: AgentTelemetry; onResult?: ResultListener } = {},
  ): Promise<Agent> {
    const agent = new Agent(config, log, opts.telemetry);
    // Listeners go in before the first probe can finish, so no result is missed.
    if (opts.onResult !== undefined) agent.onResult(opts.onResult);
    agent.telemetry.observeInFlight(() => agent.scheduler.stats().inFlight);
    if (config.metrics.listen !== false) await agent.listen(config.metrics.listen);
    agent.prepareKinds(config);
    agent.scheduler.setJobs(agent.jobs(config));
    agent.scheduler.start();
    log.info(
      { targets: config.targets.length, metrics: agent.metricsUrl() ?? null },
      'agent started',
    );
    return agent;
  }

  /** Adds a listener for every result. */
  onResult(listener: ResultListener): void {
    this.listeners.push(listener);
  }

  /** Replaces the running config (SIGHUP). Unchanged targets keep their phase. */
  reload(config: AgentConfig): void {
    const kept = new Set(config.targets.map((t) => t.name));
    for (const t of this.config.targets) {
      if (!kept.has(t.name)) {
        this.telemetry.removeTarget(t.name);
        this.paths.delete(t.name);
      }
    }
    this.config = config;
    this.prepareKinds(config);
    this.scheduler.setJobs(this.jobs(config));
    this.log.info({ targets: config.targets.length }, 'configuration reloaded');
  }

  /** The URL of the metrics endpoint, when it listens. */
  metricsUrl(): string | undefined {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    if (addr === null || addr === undefined) return undefined;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}/metrics`;
  }

  /** Scheduler counters, for tests and the health endpoint. */
  stats(): ReturnType<Scheduler['stats']> {
    return this.scheduler.stats();
  }

  /** Stops scheduling, lets probes in flight finish (bounded), flushes telemetry. */
  async stop(graceMs = defaultStopGraceMs): Promise<void> {
    const { unfinished } = await this.scheduler.stop(graceMs);
    if (unfinished > 0)
      this.log.warn({ unfinished }, 'probes still running at shutdown were aborted');
    await Promise.allSettled(
      probeKinds.map(async (kind) => (probeRegistry[kind] as ProbeDefinition<unknown>).close?.()),
    );
    await this.telemetry.shutdown();
    if (this.server !== undefined) {
      const server = this.server;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    }
    this.log.info({ probes: this.scheduler.stats().completed }, 'agent stopped');
  }

  /** Announces every kind's scheduled targets to kinds that keep long-lived engines. */
  private prepareKinds(config: AgentConfig): void {
    for (const kind of probeKinds) {
      const def = probeRegistry[kind] as ProbeDefinition<unknown>;
      if (def.prepare === undefined) continue;
      const targets: ScheduledTarget<unknown>[] = config.targets
        .filter((t) => t.kind === kind)
        .map((t) => ({
          target: t.target,
          options: t.options,
          intervalMs: t.intervalMs,
          timeoutMs: t.timeoutMs,
        }));
      def.prepare(targets);
    }
  }

  private jobs(config: AgentConfig): Job[] {
    return config.targets.map((t) => this.job(t));
  }

  private job(t: ResolvedTarget): Job {
    const def = probeDefinition(t.kind);
    const base = { id: t.name, timeoutMs: t.timeoutMs };
    const run = async (signal: AbortSignal): Promise<void> => {
      const result = await runProbe(def, t.target, t.options, {
        agent: this.config.agent.name,
        seq: ++this.seq,
        timeoutMs: t.timeoutMs,
        signal,
      });
      this.record(result, t);
    };
    return t.cron !== undefined
      ? { ...base, cron: t.cron, run }
      : { ...base, intervalMs: t.intervalMs, run };
  }

  private record(result: ProbeResult, t: ResolvedTarget): void {
    this.telemetry.recordResult(result, t);
    let state = this.paths.get(t.name);
    if (state === undefined) {
      state = { lastClass: undefined };
      this.paths.set(t.name, state);
    }
    const wasOk = state.lastClass === undefined ? undefined : state.lastClass === 'ok';
    const isOk = result.class === 'ok';
    if (wasOk !== isOk || (!isOk && state.lastClass !== result.class)) {
      const fields = {
        target: t.name,
        kind: t.kind,
        address: t.address,
        class: result.class,
        error: result.error,
      };
      if (isOk && wasOk === false)
        this.log.info({ ...fields, previous: state.lastClass }, 'path recovered');
      else if (!isOk)
        this.log.warn({ ...fields, previous: state.lastClass ?? null }, 'path failing');
      else this.log.debug(fields, 'path ok');
    }
    state.lastClass = result.class;
    for (const listener of this.listeners) {
      try {
        listener(result, t);
      } catch (err) {
        this.log.error({ err }, 'result listener failed');
      }
    }
  }

  private async listen(listen: string): Promise<void> {
    const colon = listen.lastIndexOf(':');
    const host = listen.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(listen.slice(colon + 1));
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(listenError(listen, 'metrics.listen', err)));
      server.listen(port, host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/metrics') {
        const text = await this.telemetry.renderPrometheus();
        res
          .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
          .end(text);
      } else if (path === '/healthz') {
        const s = this.scheduler.stats();
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            status: 'ok',
            agent: this.config.agent.name,
            targets: s.jobs,
            inFlight: s.inFlight,
            lagP99Ms: s.lagP99Ms,
          }),
        );
      } else {
        res
          .writeHead(404, { 'content-type': 'text/plain' })
          .end('not found: try /metrics or /healthz\n');
      }
    } catch (err) {
      this.log.error({ err }, 'metrics endpoint failed');
      if (!res.headersSent) res.writeHead(500).end();
    }
  }
}
