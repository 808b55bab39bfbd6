import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { listenError } from '../lib/listen-error.js';
import { echoKinds, probeDefinition, probeKinds, probeRegistry } from '../probes/registry.js';
import type { ProbeContext, ProbeDefinition, ScheduledTarget } from '../probes/types.js';
import { icmpEngineSummary, nowEchoSpacingMs } from '../probes/icmp/echo.js';
import { runProbe } from '../probes/run.js';
import type { FailureClass, ProbeResult } from '../wire/result.js';
import type { AgentConfig, ResolvedTarget } from './config.js';
import {
  AdaptiveTimeout,
  adaptiveTcpFloorMs,
  ConfirmBudget,
  isConfirmableChange,
} from './confirm.js';
import type { Logger } from '../lib/logger.js';
import { sharedController } from '../lib/abort.js';
import { Scheduler, type Job } from './scheduler.js';
import { AgentTelemetry, type ConfirmStats, type SeriesSelection } from './telemetry/index.js';

/** How long SIGTERM waits for probes in flight before aborting them. */
export const defaultStopGraceMs = 5_000;

/** The config's choice of per-path series beyond the default set. */
const seriesOf = (config: AgentConfig): SeriesSelection => ({
  histograms: config.metrics.histograms,
  blackbox: config.metrics.blackbox,
});

/** Called with every result; the collector link (issue 4) hangs here. */
export type ResultListener = (result: ProbeResult, target: ResolvedTarget) => void;

interface PathState {
  lastClass: FailureClass | undefined;
  /** The last class that says something about the target (internal_error left out). */
  confirmClass: FailureClass | undefined;
  /** A confirmation burst is running: no second one, and its regular rounds wait. */
  confirming: boolean;
  /** A check out of schedule is running (see Agent.checkHost). */
  checking: boolean;
  /** Seq of the newest result recorded: an older probe finishing later is stale. */
  newestSeq: number;
  /** The target (config object) the state was last used with. */
  target: ResolvedTarget;
  /** What the adaptive timeout was learnt on: kind, address, options and configured timeout. */
  signature: string;
  adaptive: AdaptiveTimeout;
}

/**
 * Runs one probe of a path: `now` out of schedule, `burst` as re-probe `index` of a
 * confirmation burst (see ProbeContext).
 */
type ProbeFn = (
  timeoutMs: number,
  signal: AbortSignal,
  now?: boolean,
  burst?: ProbeContext['burst'],
) => Promise<ProbeResult>;

/** Options of {@link Agent.start}. */
export interface AgentStartOptions {
  readonly telemetry?: AgentTelemetry;
  readonly onResult?: ResultListener;
  /** The per-agent budget of confirmation probes; default 50 a second (ConfirmBudget). */
  readonly confirmBudget?: ConfirmBudget;
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
  private readonly budget: ConfirmBudget;
  private confirmCounts = { bursts: 0, probes: 0, skipped: 0 };
  /** Host key → the paths to that host, each with its check out of schedule (`checkHost`). */
  private hostChecks = new Map<
    string,
    { readonly name: string; readonly check: () => Promise<void> }[]
  >();
  /** Echo checks running out of schedule: stop() aborts and awaits them. */
  private readonly extra = new Set<Promise<void>>();
  private readonly extraAbort = sharedController();

  private constructor(
    config: AgentConfig,
    private readonly log: Logger,
    telemetry: AgentTelemetry | undefined,
    budget: ConfirmBudget | undefined,
  ) {
    this.config = config;
    this.budget = budget ?? new ConfirmBudget();
    this.telemetry =
      telemetry ??
      new AgentTelemetry({
        agentName: config.agent.name,
        agentLabels: config.agent.labels,
        serviceVersion: process.env.npm_package_version ?? '0.1.0',
        probeInstance: config.metrics.probeInstance,
        series: seriesOf(config),
      });
    this.scheduler = new Scheduler({
      maxInFlight: config.defaults.maxInFlight,
      phaseSeed: config.agent.name,
      onLag: (_id, lagMs) => this.telemetry.recordStart(lagMs),
      onSkip: (id) => {
        // The round the burst replaces: the path is being probed more often, not less.
        if (this.paths.get(id)?.confirming === true) return;
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
    opts: AgentStartOptions = {},
  ): Promise<Agent> {
    const agent = new Agent(config, log, opts.telemetry, opts.confirmBudget);
    // Listeners go in before the first probe can finish, so no result is missed.
    if (opts.onResult !== undefined) agent.onResult(opts.onResult);
    agent.telemetry.observeInFlight(() => agent.scheduler.stats().inFlight);
    agent.telemetry.observeConfirm(() => agent.confirmStats());
    if (config.metrics.listen !== false) await agent.listen(config.metrics.listen);
    agent.prepareKinds(config);
    agent.scheduler.setJobs(agent.jobs(config));
    agent.scheduler.start();
    // How echoes go out (the own socket, or fping and why): what to look at first when they fail.
    const echoes = config.targets.some((t) => echoKinds.has(t.kind));
    log.info(
      {
        targets: config.targets.length,
        metrics: agent.metricsUrl() ?? null,
        ...(echoes ? { icmp: icmpEngineSummary() } : {}),
      },
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
    this.telemetry.setProbeInstance(config.metrics.probeInstance);
    this.telemetry.setSeries(seriesOf(config));
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

  /** Confirmation burst counters and the budget left. */
  confirmStats(): ConfirmStats {
    return { ...this.confirmCounts, budget: this.budget.available() };
  }

  /**
   * The timeout the next regular probe of `name` gets (adaptive or configured) — or, with
   * `outOfSchedule`, a burst's re-probe of it (or an echo's check) — for tests.
   */
  effectiveTimeoutMs(name: string, outOfSchedule = false): number | undefined {
    const t = this.config.targets.find((x) => x.name === name);
    if (t === undefined) return undefined;
    const state = this.pathState(t);
    return outOfSchedule ? this.reprobeTimeoutFor(state, t) : this.timeoutFor(state, t);
  }

  /** Scheduler counters, for tests and the health endpoint. */
  stats(): ReturnType<Scheduler['stats']> {
    return this.scheduler.stats();
  }

  /** Stops scheduling, lets probes in flight finish (bounded), flushes telemetry. */
  async stop(graceMs = defaultStopGraceMs): Promise<void> {
    const { unfinished } = await this.scheduler.stop(graceMs);
    this.extraAbort.abort();
    await Promise.allSettled([...this.extra]);
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
    this.hostChecks = new Map();
    return config.targets.map((t) => this.job(t));
  }

  /**
   * The host a target probes, for pairing a service path with the echo paths to the same
   * host: the plan's component when it has one, else the address's host.
   */
  private static hostKey(t: ResolvedTarget): string {
    return t.labels.component ?? t.target.host;
  }

  /**
   * A path to `t`'s host changed to a failure: the agent's other paths to that host (the
   * small ping, the full-size one, the ports and services) are probed at once, out of
   * schedule, instead of at their next round up to an interval later. So the agent's whole
   * view of the host changes together, and the evidence that tells a host, a link or a
   * switch port from a service arrives with the first failure: a switch port with a smaller
   * MTU fails the full-size echo in the same second as the web page whose answer it drops,
   * and a host cut off fails its services with its pings — never for a second "pings lost
   * while TCP passes". Bounded by the confirmation budget (one probe each); a path that is
   * running a check or a burst is left alone. A changed result starts its own burst as usual.
   */
  private checkHost(t: ResolvedTarget): void {
    for (const { name, check } of this.hostChecks.get(Agent.hostKey(t)) ?? []) {
      if (name === t.name) continue;
      const running = check().catch((err: unknown) =>
        this.log.error({ target: name, err }, 'host check failed'),
      );
      this.extra.add(running);
      void running.finally(() => this.extra.delete(running));
    }
  }

  private job(t: ResolvedTarget): Job {
    const def = probeDefinition(t.kind);
    const base = { id: t.name, timeoutMs: t.timeoutMs };
    const probe: ProbeFn = (timeoutMs, signal, now = false, burst) =>
      runProbe(def, t.target, t.options, {
        agent: this.config.agent.name,
        seq: ++this.seq,
        timeoutMs,
        signal,
        ...(now ? { now } : {}),
        ...(now && burst !== undefined ? { burst } : {}),
      });
    const run = async (signal: AbortSignal): Promise<void> => {
      const state = this.pathState(t);
      // A check probing the path right now stands for this round.
      if (state.checking) return;
      await this.round(state, t, probe, signal);
    };
    const key = Agent.hostKey(t);
    const checks = this.hostChecks.get(key) ?? [];
    checks.push({
      name: t.name,
      check: async () => {
        const state = this.pathState(t);
        if (state.confirming || state.checking || this.extraAbort.signal.aborted) return;
        if (!this.budget.take(1)) return;
        state.checking = true;
        try {
          await this.round(state, t, probe, this.extraAbort.signal, true);
        } finally {
          state.checking = false;
        }
      },
    });
    this.hostChecks.set(key, checks);
    return t.cron !== undefined
      ? { ...base, cron: t.cron, run }
      : { ...base, intervalMs: t.intervalMs, run };
  }

  /**
   * One round of a path: the probe, then its confirmation burst when it changed. A round out
   * of schedule (`check`, see checkHost) probes at once — an echo with its short timeout —
   * and starts no further checks: the host's other paths are in the same wave.
   */
  private async round(
    state: PathState,
    t: ResolvedTarget,
    probe: ProbeFn,
    signal: AbortSignal,
    check = false,
  ): Promise<void> {
    const timeoutMs =
      check && echoKinds.has(t.kind) ? this.reprobeTimeoutFor(state, t) : this.timeoutFor(state, t);
    const result = await probe(timeoutMs, signal, check);
    // A check started after this round (a scheduled echo waits for its engine's next round,
    // up to an interval) may have answered first: this older result is stale, and read as
    // the path's newest class it would cancel the change the check found.
    if (result.seq < state.newestSeq) return;
    this.observe(state, t, result, timeoutMs);
    const burst = this.startBurst(state, result);
    this.record(result, t);
    if (burst > 0 && result.class !== 'ok' && !check) this.checkHost(t);
    // Awaited, so the scheduler's no-overlap rule skips this path's regular rounds while
    // its burst runs: the burst probes it more often than they would, and a regular
    // result in the middle would only blur the burst's verdict.
    if (burst > 0) await this.runBurst(state, t, burst, probe, signal);
  }

  /** The path's state, made (or its adaptive timeout reset when the target changed). */
  private pathState(t: ResolvedTarget): PathState {
    let state = this.paths.get(t.name);
    // The same (frozen) target object as last time: unchanged, nothing to compare.
    if (state?.target === t) return state;
    const signature = JSON.stringify([t.kind, t.address, t.timeoutMs, t.options]);
    if (state === undefined) {
      state = {
        lastClass: undefined,
        confirmClass: undefined,
        confirming: false,
        checking: false,
        newestSeq: 0,
        target: t,
        signature,
        adaptive: new AdaptiveTimeout(),
      };
      this.paths.set(t.name, state);
    } else {
      state.target = t;
      if (state.signature !== signature) {
        state.signature = signature;
        state.adaptive = new AdaptiveTimeout();
      }
    }
    return state;
  }

  /**
   * Feeds the path's adaptive timeout: a regular probe's total time, an echo's round trip
   * (a scheduled echo round answers from packets already in: its total time is no RTT).
   */
  private observe(state: PathState, t: ResolvedTarget, result: ProbeResult, usedMs: number): void {
    if (!echoKinds.has(t.kind)) {
      state.adaptive.observe(result, usedMs, t.timeoutMs);
      return;
    }
    const rttMs = result.timings.rttMs;
    if (result.class === 'ok' && rttMs === undefined) return;
    state.adaptive.observe(
      { class: result.class, timings: { totalMs: rttMs ?? usedMs } },
      usedMs,
      t.timeoutMs,
    );
  }

  /**
   * The timeout of a probe out of schedule that checks or confirms a change (an echo check,
   * a burst's re-probe): twice the path's own timeout — TCP doubles its RTO on a
   * retransmission — so ~600 ms for a LAN path riding TCP and ~200 ms for an echo, whose
   * packets leave {@link nowEchoSpacingMs} apart. Never above the configured one, and the
   * configured one until the path has a baseline, or with adaptive timeouts off.
   */
  private reprobeTimeoutFor(state: PathState, t: ResolvedTarget): number {
    if (!this.config.defaults.adaptiveTimeout) return t.timeoutMs;
    const overTcp = probeDefinition(t.kind).transport === 'tcp';
    const estimateMs = state.adaptive.estimateMs(overTcp ? adaptiveTcpFloorMs : undefined);
    if (estimateMs === undefined) return t.timeoutMs;
    const count = echoKinds.has(t.kind) ? (t.options as { count?: unknown }).count : undefined;
    const packets = typeof count === 'number' && count > 1 ? count : 1;
    return Math.min(t.timeoutMs, 2 * estimateMs + (packets - 1) * nowEchoSpacingMs);
  }

  /**
   * The timeout of a regular probe: the configured one, or with adaptive timeouts on, the
   * path's own (never above the configured one). Echo kinds (icmp, mtu) keep theirs: their
   * timeout is the window over which a round's packets are counted, not one answer's wait.
   */
  private timeoutFor(state: PathState, t: ResolvedTarget): number {
    if (!this.config.defaults.adaptiveTimeout || echoKinds.has(t.kind)) return t.timeoutMs;
    const overTcp = probeDefinition(t.kind).transport === 'tcp';
    return state.adaptive.timeoutMs(t.timeoutMs, overTcp ? adaptiveTcpFloorMs : undefined);
  }

  /**
   * Decides whether `result` starts a confirmation burst; if so marks it as the burst's
   * trigger and returns the burst's size (0: no burst).
   */
  private startBurst(state: PathState, result: ProbeResult): number {
    const previous = state.confirmClass;
    if (result.class !== 'internal_error') state.confirmClass = result.class;
    const { count } = this.config.defaults.confirm;
    if (count <= 0 || state.confirming || !isConfirmableChange(previous, result.class)) return 0;
    if (!this.budget.take(count)) {
      this.confirmCounts.skipped++;
      this.log.debug(
        { target: result.target, class: result.class },
        'change not confirmed at once: the budget of confirmation probes is spent',
      );
      return 0;
    }
    state.confirming = true;
    this.confirmCounts.bursts++;
    result.confirm = { of: count, index: 0 };
    return count;
  }

  /**
   * Re-probes a path `count` times, the starts `spacingMs` apart (the first at once), each
   * waiting twice the path's own timeout ({@link reprobeTimeoutFor}) — so a change that
   * only the shortened timeout caused is not confirmed — and records the results in the
   * order they started (each carries `confirm`). Overlapping re-probes are fine: a dead
   * path's burst then takes 2 spacings plus one timeout, not three timeouts.
   */
  private async runBurst(
    state: PathState,
    t: ResolvedTarget,
    count: number,
    probe: ProbeFn,
    signal: AbortSignal,
  ): Promise<void> {
    const { spacingMs } = this.config.defaults.confirm;
    const timeoutMs = this.reprobeTimeoutFor(state, t);
    const started: Promise<ProbeResult>[] = [];
    try {
      const t0 = performance.now();
      for (let i = 1; i <= count && !signal.aborted; i++) {
        const waitMs = t0 + (i - 1) * spacingMs - performance.now();
        if (waitMs > 0) await sleep(waitMs, undefined, { signal });
        this.confirmCounts.probes++;
        started.push(probe(timeoutMs, signal, true, { index: i, of: count, spacingMs }));
      }
    } catch {
      // Aborted by stop(): the re-probes started still finish and are recorded below.
    }
    try {
      for (let i = 0; i < started.length; i++) {
        const result = await started[i]!;
        this.observe(state, t, result, timeoutMs);
        if (result.class !== 'internal_error') state.confirmClass = result.class;
        result.confirm = { of: count, index: i + 1 };
        this.record(result, t);
      }
    } finally {
      state.confirming = false;
    }
  }

  private record(result: ProbeResult, t: ResolvedTarget): void {
    this.telemetry.recordResult(result, t);
    const state = this.pathState(t);
    if (result.seq > state.newestSeq) state.newestSeq = result.seq;
    const wasOk = state.lastClass === undefined ? undefined : state.lastClass === 'ok';
    const isOk = result.class === 'ok';
    if (wasOk !== isOk || (!isOk && state.lastClass !== result.class)) {
      const fields = {
        target: t.name,
        kind: t.kind,
        address: t.address,
        class: result.class,
        error: result.error,
        // How long it took: for a timeout, the timeout it waited (adaptive or configured).
        ms: Math.round(result.timings.totalMs),
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
