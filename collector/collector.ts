import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../lib/logger.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import type { Plan } from '../wire/plan.js';
import type { ReportBatch } from '../wire/report.js';
import { tightenModes } from '../lib/file-modes.js';
import { listenError } from '../lib/listen-error.js';
import { tcpRetransmitFloorMs } from '../probes/types.js';
import { buildApi } from './api.js';
import type { CollectorConfig } from './config.js';
import type { AlertContext } from './alert-build.js';
import { AlertEngine } from './alerts.js';
import { plainListenWarning } from './connection-guard.js';
import { DiagnosisEngine, localiseInventory } from './diagnosis.js';
import { defaultEventWindowMs } from './localise/evidence.js';
import { LocaliseDriver } from './localise/driver.js';
import type { LocaliseInput, LocaliserOptions, Observer } from './localise/localise.js';
import { DeafSpans, withInputStall, type InputStall } from './input-stall.js';
import { whereCollectorStands } from './observer.js';
import { IncidentTracker, incidentDetail } from './incidents.js';
import { findAlertIncident } from './alert-link.js';
import { registerDashboard, type DashboardSource } from './dashboard.js';
import { EventHub } from './events.js';
import { buildMatrix } from './matrix-view.js';
import { Ingest } from './ingest.js';
import { inShare, NatsIngest } from './nats-ingest.js';
import { natsToken } from '../lib/nats.js';
import { shardName, type CollectorRole } from './nats-config.js';
import { ShardFedMatrix } from './shard/fed-matrix.js';
import { LocaliserFeed } from './shard/feed.js';
import { ShardPublisher } from './shard/publisher.js';
import { CollectorTelemetry } from './telemetry.js';
import { HindsightCache } from './hindsight.js';
import { ObservedPathMatrix } from './observed-matrix.js';
import { postmortem } from './postmortem.js';
import { PlanBook } from './plan-book.js';
import { reportsDue, Settler } from './settle.js';
import { lateAfterFor, silentAfterFor } from './plan.js';
import { Store } from './store.js';
import type { IncidentDetail, StoredIncident } from './store/incidents.js';
import { describePlanTarget } from './target-names.js';
import type { Credential, EnrolledCredential } from './auth.js';
import type {
  AgentLiveness,
  CollectorCore,
  EnrolOutcome,
  IngestOutcome,
  PathFilter,
  PathHead,
  PathState,
  ReportBody,
} from './types.js';

/** How often the matrix is checkpointed and old rows pruned (when due). */
const upkeepMs = 1_000;
/**
 * Liveness — a report overdue (late), none for `silentAfter` (silent) — is looked at this
 * often: it moves the diagnosis within it, so an agent killed reads as silent within this of
 * its `silentAfter`.
 */
const livenessCheckMs = 100;
const checkpointEveryMs = 60_000;
const pruneEveryMs = 10 * 60_000;

/** Active agent-role tokens without `agents`: any holder may report as any unbound name. */
export function fleetTokenNames(config: CollectorConfig): string[] {
  return config.tokens
    .filter((t) => !t.revoked && t.role === 'agent' && t.agents === undefined)
    .map((t) => t.name);
}

/** How a collector runs, beyond its config. */
export interface CollectorOptions {
  /**
   * The localiser thread's compiled worker (default: the build's, when there is one; from
   * TypeScript sources there is none and the collector localises on its own thread).
   */
  readonly localiserWorker?: URL;
  /** The agent started beside the collector (`--local-agent`): it shows the collector's side. */
  readonly localAgent?: string;
  /** This machine's addresses, to find the collector's own host in the inventory (default: its interfaces'). */
  readonly addresses?: readonly string[];
}

/**
 * The collector: store, path matrix, ingest, diagnosis, plans and the HTTP API, started
 * from a validated config. `start()` listens; `stop()` checkpoints and closes everything.
 */
export class Collector implements CollectorCore {
  readonly store: Store;
  readonly matrix: ObservedPathMatrix;
  readonly ingestor: Ingest;
  /** The current diagnosis; subscribe with `diagnoser.onChange` (alerts, incidents, UI). */
  readonly diagnoser: DiagnosisEngine;
  /** Where and when the diagnosis localises (collector/localise/driver.ts). */
  private readonly localiser: LocaliseDriver;
  /** Where the collector stands in the topology (its host, local agents, labels). */
  readonly observer: Observer;
  /** Its name in its own cut-off alert: its inventory host, else the machine's host name. */
  private readonly collectorName: string;
  private readonly localiserOptions: LocaliserOptions;
  /** Whether a fault is still arriving, per host (collector/settle.ts). */
  private readonly settler: Settler;
  /** The inventory component each agent runs on. */
  private readonly agentHosts: ReadonlyMap<string, string>;
  private readonly hindsights: HindsightCache;
  /** Incidents, kept in step with the diagnosis. */
  readonly incidentTracker: IncidentTracker;
  /** The dashboard's live feed (collector/events.ts). */
  readonly events = new EventHub();
  /** Alerts to Alertmanager and webhooks, kept in step with the diagnosis. */
  readonly alerting: AlertEngine;
  /** The collector's own metrics: /metrics and the OTLP push. */
  readonly telemetry: CollectorTelemetry;
  private readonly roles: Readonly<Record<string, string>>;
  private api: FastifyInstance | undefined;
  private timers: NodeJS.Timeout[] = [];
  private lastCheckpointMs = Date.now();
  private checkpointing = false;
  private lastPruneMs = 0;
  /** A diagnosis the incident record could not take yet (store failure): retried. */
  private incidentPending = false;
  /** The plans handed out, and where the agents' hosts answer (collector/plan-book.ts). */
  private readonly planBook: PlanBook;
  /** With `transport: nats`: the durable consumer feeding ingest, and the plan bucket. */
  private natsIngest: NatsIngest | undefined;
  /**
   * What this collector does (`nats.role`): both ingest and diagnose (the default, and
   * always with HTTP), only ingest its share and publish the changes (`shardPublisher`), or
   * only localise from the shards' changes (`localiserFeed`).
   */
  readonly role: CollectorRole;
  /** With role: ingest, what of the matrix goes to the localiser. */
  shardPublisher: ShardPublisher | undefined;
  /** With role: localiser, the shards' changes feeding the matrix. */
  localiserFeed: LocaliserFeed | undefined;

  private constructor(
    readonly config: CollectorConfig,
    private readonly log: Logger,
    options: CollectorOptions,
  ) {
    // A data dir left wider (an older version made it 0755, its db 0644) is tightened.
    for (const note of tightenModes(config.dataDir, 'data directory')) {
      log.warn({ path: note.path, errorCode: note.errorCode }, note.message);
    }
    // Before the store opens: a bad OTEL_* environment (gRPC) stops the start with nothing to close.
    this.telemetry = new CollectorTelemetry({
      serviceVersion: process.env.npm_package_version ?? '0.1.0',
      logger: log,
    });
    this.store = Store.open(config.dataDir, {
      releaseAfterMs: config.identity.releaseAfterMs,
      maxSeqGap: config.identity.maxSeqGap,
    });
    this.role = config.transport === 'nats' ? (config.nats?.role ?? 'both') : 'both';
    const matrixOptions = {
      debounce: config.diagnosis.debounce,
      ...(config.diagnosis.flapDamping ? {} : { flapSuppressAt: Number.POSITIVE_INFINITY }),
      describeTarget: describePlanTarget,
    };
    // A localiser's matrix is the shards' changes, read through the same surface.
    this.matrix =
      this.role === 'localiser'
        ? new ShardFedMatrix(matrixOptions)
        : new ObservedPathMatrix(matrixOptions);
    this.ingestor = new Ingest(this.store, this.matrix);
    const inventory = localiseInventory(config.inventory.components);
    // Where the collector stands: a cut can isolate its own side, and the diagnosis must say
    // so rather than blame what it can no longer see.
    const observer = whereCollectorStands(config.inventory.components, {
      ...(options.localAgent === undefined ? {} : { localAgent: options.localAgent }),
      ...(options.addresses === undefined ? {} : { addresses: options.addresses }),
    });
    this.observer = { ...observer, upSinceMs: Date.now() };
    this.collectorName = observer.host ?? hostname();
    this.localiserOptions = {
      inventory,
      observer: this.observer,
      // Agents see one fault up to a probe interval apart: hosts dark within two are one event.
      eventWindowMs: Math.max(defaultEventWindowMs, 2 * config.probes.intervalMs),
    };
    const localiserOptions = this.localiserOptions;
    this.localiser = new LocaliseDriver(
      this.matrix,
      localiserOptions,
      options.localiserWorker ?? LocaliseDriver.builtWorker(),
    );
    this.hindsights = new HindsightCache(localiserOptions);
    this.planBook = new PlanBook(config, this.matrix);
    const hostOfAgent = new Map(config.inventory.components.map((c) => [c.agent, c.name]));
    this.agentHosts = hostOfAgent;
    const upSinceMs = this.observer.upSinceMs ?? 0;
    const settler = (this.settler = new Settler(
      {
        settleMaxMs: config.alerts.settleMaxMs,
        // Every agent probes a host once per interval; its result is known a timeout later
        // (the TCP floor of adaptive timeouts, or the timeout itself when shorter).
        roundMs: config.probes.intervalMs + Math.min(config.probes.timeoutMs, tcpRetransmitFloorMs),
      },
      (agent) => hostOfAgent.get(agent) ?? agent,
      reportsDue(
        config.inventory.components,
        (name) => this.matrix.agentNamed(name),
        () => lateAfterFor(config.agents, this.fleetSize()),
        upSinceMs,
      ),
    ));
    const localiseAsync = this.localiser.asyncLocaliser();
    const hosts = config.inventory.components.map((x) => x.name);
    // While reports cannot reach this collector (NATS), it says so once that lasts.
    const stalled = (d: Diagnosis, nowMs: number): Diagnosis =>
      withInputStall(d, this.inputStall(), this.observer, hosts, nowMs, config.nats?.blindAfter);
    this.diagnoser = new DiagnosisEngine({
      settler,
      // The incremental localiser reads only the paths of agents whose paths changed.
      input: () => ({ ...localiserOptions, paths: [], agents: this.matrix.agents() }),
      localise: (input) => stalled(this.localiser.localise(input), input.nowMs),
      ...(localiseAsync === undefined
        ? {}
        : {
            localiseAsync: async (input: LocaliseInput) =>
              stalled(await localiseAsync(input), input.nowMs),
          }),
      log,
    });
    // An ingest shard does not diagnose its share: the localiser diagnoses the whole.
    const diagnoses = this.role !== 'ingest';
    this.matrix.onChange = (reason) => {
      if (diagnoses) this.diagnoser.invalidate(reason);
      if (reason === 'agents') this.events.structureChanged();
      if (reason !== 'batch') this.events.agentsChanged();
    };
    this.matrix.onTransitions = (transitions) => this.events.transitions(transitions);
    this.matrix.onSignals = (signals, receivedAtMs) => {
      // Timed by the batch's arrival, as the agents' liveness is: an agent's own batch never
      // makes a fault at its host newer than the agent's last word.
      settler.take(signals, Math.min(receivedAtMs, Date.now()));
      // A burst that ended (confirmed or cancelled) can end the settling before its timer.
      if (diagnoses && this.diagnoser.current().settling === true)
        this.diagnoser.invalidate('settle');
    };
    this.incidentTracker = new IncidentTracker(this.store);
    this.diagnoser.onChange(({ current }) => this.events.diagnosis(current));
    this.diagnoser.onChange(({ current }) => this.trackIncident(current));
    this.roles = Object.fromEntries(config.inventory.components.map((c) => [c.name, c.role]));
    this.alerting = new AlertEngine({
      config: config.alerts,
      dataDir: config.dataDir,
      journal: this.store,
      log,
    });
    const meter = this.telemetry.meter;
    this.diagnoser.instrument(meter);
    this.ingestor.instrument(meter);
    this.alerting.instrument(meter);
    this.telemetry.observe({
      forEachPath: (visit) => this.matrix.forEachPath(visit),
      agents: () => this.matrix.agents(),
      diagnosis: () => this.diagnoser.current(),
      alerts: () => this.alerting.alerts(),
      openIncident: () => this.incidentTracker.current(),
    });
    // After the incident record: an alert links to the incident it belongs to.
    this.diagnoser.onChange(({ current }) =>
      this.alerting.update(current, Date.now(), this.alertContext()),
    );
  }

  private alertContext(): AlertContext {
    const base = (this.config.alerts.externalUrl ?? this.url()).replace(/\/+$/, '');
    return {
      roles: this.roles,
      totalPaths: this.matrix.size,
      lateHosts: () => {
        const late = new Set<string>();
        for (const [agent, host] of this.agentHosts) if (this.matrix.isLate(agent)) late.add(host);
        return late;
      },
      recoveredAtMs: (host) => this.settler.recoveredAtMs(host),
      firingWhileSettling: (d) => this.trackIncident(d, { evenSettling: true }),
      collector: this.collectorName,
      incidentOf: () => {
        const i = this.incidentTracker.current();
        return i === undefined
          ? undefined
          : { id: String(i.id), url: `${base}/api/v1/incidents/${i.id}` };
      },
    };
  }

  /**
   * Records a diagnosis in the incident record. A store failure is logged; the tracker is
   * unchanged then, and the next change (or upkeep's retry) records it.
   */
  private trackIncident(d: Diagnosis, opts: { evenSettling?: boolean } = {}): void {
    try {
      const u = this.incidentTracker.update(d, opts);
      this.incidentPending = false;
      if (u !== undefined) {
        this.telemetry.recordIncidentEvent(u.type);
        this.log.info({ incident: u.incidentId, event: u.type }, 'incident');
        this.events.incident(u);
      }
    } catch (err) {
      this.incidentPending = true;
      this.log.error({ err }, 'could not record the diagnosis in the incident record');
    }
  }

  /** Opens the store, rebuilds the path matrix from it and listens. */
  static async start(
    config: CollectorConfig,
    log: Logger,
    options: CollectorOptions = {},
  ): Promise<Collector> {
    const c = new Collector(config, log, options);
    const fleet = fleetTokenNames(config);
    if (fleet.length > 0) {
      log.warn(
        { tokens: fleet },
        `fleet token${fleet.length > 1 ? 's' : ''} ${fleet.map((n) => JSON.stringify(n)).join(', ')} without \`agents\`: any holder can report as any agent not yet bound to a per-agent credential; give each token the names it may use, or make it \`role: bootstrap\` so agents enrol for their own`,
      );
    }
    try {
      c.ingestor.restore();
      if (c.role !== 'ingest') {
        c.diagnoser.computeNow('start');
        c.trackIncident(c.diagnoser.current());
        c.alerting.update(c.diagnoser.current(), Date.now(), c.alertContext());
      }
      const tls =
        config.tls === undefined
          ? undefined
          : {
              cert: readFileSync(config.tls.cert, 'utf8'),
              key: readFileSync(config.tls.key, 'utf8'),
            };
      c.api = buildApi(c, {
        tokens: config.tokens.filter((t) => t.token !== ''),
        viewers: config.viewers,
        readAccess: config.readAccess,
        maxReportBytes: config.limits.maxReportBytes,
        maxResultsPerBatch: config.limits.maxResultsPerBatch,
        connections: {
          maxConnections: config.limits.maxConnections,
          headersTimeoutMs: config.limits.headersTimeoutMs,
          keepAliveTimeoutMs: config.limits.keepAliveTimeoutMs,
        },
        log,
        metricsHandler: async () => c.metricsText(),
        routes: (app, ctx) => registerDashboard(app, c.dashboardSource(), ctx),
        ...(tls === undefined ? {} : { tls }),
      });
      const colon = config.listen.lastIndexOf(':');
      const host = config.listen.slice(0, colon).replace(/^\[|\]$/g, '');
      try {
        await c.api.listen({ host, port: Number(config.listen.slice(colon + 1)) });
      } catch (err) {
        throw listenError(config.listen, 'listen', err);
      }
    } catch (err) {
      await c.stop();
      throw err;
    }
    const nats = config.transport === 'nats' ? config.nats : undefined;
    if (nats !== undefined) {
      // A shard hands out the plans of its share's agents only.
      const agents = config.inventory.components.flatMap((x) =>
        x.agent === undefined || !inShare(nats, x.labels?.zone ?? 'default', x.agent)
          ? []
          : [x.agent],
      );
      try {
        if (c.role === 'localiser') {
          c.localiserFeed = new LocaliserFeed(nats, c.matrix as ShardFedMatrix, log);
          await c.localiserFeed.start();
        } else {
          if (c.role === 'ingest') {
            c.shardPublisher = new ShardPublisher(
              nats,
              nats.shard === undefined ? natsToken(c.collectorName) : shardName(nats.shard),
              c.matrix,
              log,
              () => c.inputStall(),
            );
            await c.shardPublisher.start();
          }
          c.natsIngest = new NatsIngest(nats, c, agents, log, config.agents.planRefreshMs);
          c.natsIngest.onInputStall = (stall) => c.inputStallChanged(stall);
          await c.natsIngest.start();
        }
      } catch (err) {
        await c.stop();
        throw err;
      }
    }
    const plain = plainListenWarning(config.listen, config.tls !== undefined);
    if (plain !== undefined) log.warn({ listen: config.listen }, plain);
    c.timers.push(setInterval(() => c.upkeep(), upkeepMs));
    c.timers.push(setInterval(() => c.checkLiveness(), livenessCheckMs));
    if (config.readAccess === 'token' && !config.viewers.some((v) => !v.revoked)) {
      log.warn(
        { readAccess: config.readAccess, viewers: config.viewers.length },
        'read endpoints refuse everyone: add viewers or readAccess: open',
      );
    }
    log.info(
      { url: c.url(), dataDir: config.dataDir, agents: c.matrix.agents().length },
      'collector started',
    );
    return c;
  }

  /** Base URL the API answers on. */
  url(): string {
    const addr = this.api?.server.address();
    if (addr === null || addr === undefined || typeof addr === 'string') return '';
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `${this.config.tls === undefined ? 'http' : 'https'}://${host}:${addr.port}`;
  }

  /**
   * `from`: the address the request came from. An agent's host is pinged by the others (mesh)
   * at the address its plan requests come from, unless that is loopback or link-local, or
   * other agents come from it too (a proxy or a NAT in between).
   */
  plan(agent: string, _labels?: Readonly<Record<string, string>>, from?: string): Plan {
    return this.planBook.plan(agent, from, this.fleetSize());
  }

  /**
   * The fleet `reportInterval: auto` scales with and `silentAfter` follows: the agents that
   * have reported (one number for both, so a report interval never outgrows silentAfter).
   */
  fleetSize(): number {
    return this.matrix.agentCount;
  }

  planRefusal(agent: string, credential: Credential): string | undefined {
    return this.store.refusal(agent, credential);
  }

  enrolled(digest: Buffer): EnrolledCredential | undefined {
    return this.store.enrolledByDigest(digest);
  }

  enrol(e: EnrolledCredential, digest: Buffer, issuedBy: Credential, nowMs: number): EnrolOutcome {
    return this.store.enrol(e, digest, issuedBy.id, nowMs);
  }

  ingest(
    batch: ReportBatch,
    receivedAtMs: number,
    body?: ReportBody,
    credential?: Credential,
    backlog?: number,
    version?: string,
  ): IngestOutcome {
    return this.ingestor.accept(batch, receivedAtMs, body, credential, backlog, version);
  }

  paths(filter: PathFilter): PathState[] {
    return this.matrix.paths(filter);
  }

  agents(): AgentLiveness[] {
    return this.matrix.agents();
  }

  diagnosis(): Diagnosis {
    return this.diagnoser.current();
  }

  incidents(limit: number, beforeId?: number): StoredIncident[] {
    return this.store.incidents(limit, beforeId);
  }

  incident(id: number): IncidentDetail | undefined {
    return incidentDetail(this.store, id);
  }

  postmortem(id: number): string | undefined {
    const detail = incidentDetail(this.store, id);
    if (detail === undefined) return undefined;
    const endMs = detail.closedAtMs ?? Date.now();
    // Agents' own views: every state change from shortly before the first failure to the end.
    const transitions = this.store
      .transitionsSince(detail.firstFailureMs - 60_000)
      .filter((t) => t.atMs <= endMs);
    const viewers = new Map<string, string[]>();
    for (const p of this.matrix.paths()) {
      const list = viewers.get(p.component);
      if (list === undefined) viewers.set(p.component, [p.agent]);
      else if (!list.includes(p.agent)) list.push(p.agent);
    }
    // Agents cut off during the incident have delivered their spooled results since it
    // closed: the matrix midway through it, localised again, shows what the cut really was.
    const wentSilent = transitions.some(
      (t) => t.kind === 'agent' && t.toState === 'silent' && t.atMs >= detail.firstFailureMs,
    );
    const hindsight =
      detail.closedAtMs !== undefined && wentSilent
        ? this.hindsights.of(
            detail.id,
            (detail.openedAtMs + detail.closedAtMs) / 2,
            transitions,
            () => this.matrix.paths(),
            () => this.matrix.agents(),
          )
        : undefined;
    return postmortem(detail, transitions, Date.now(), this.url(), viewers, hindsight);
  }

  overloaded(): boolean {
    return this.ingestor.overloaded();
  }

  /** What the dashboard's routes read (collector/dashboard.ts). */
  /** Every path's identity and state (read at once: the objects are the matrix's own). */
  private pathHeads(): PathHead[] {
    const out: PathHead[] = [];
    this.matrix.forEachPath((p) => out.push(p));
    return out;
  }

  dashboardSource(): DashboardSource {
    return {
      events: this.events,
      matrix: () => ({
        ...buildMatrix({
          paths: this.pathHeads(),
          agents: this.matrix.agents(),
          components: this.config.inventory.components,
          nowMs: Date.now(),
        }),
        feed: { bootId: this.events.bootId, seq: this.events.seq },
      }),
      alertIncident: (fingerprint) =>
        findAlertIncident(
          fingerprint,
          {
            incidents: (limit) => this.store.incidents(limit),
            incidentEvents: (id) => this.store.incidentEvents(id),
          },
          this.config.alerts,
          this.collectorName,
        ),
      pathHistory: (agent, target, limit) => this.store.pathTransitions(agent, target, limit),
      pathResults: (agent, target, limit) => this.store.pathResults(agent, target, limit),
    };
  }

  /** The collector's own metrics (Prometheus text) for GET /metrics (collector/telemetry.ts). */
  metricsText(): Promise<string> {
    return this.telemetry.renderPrometheus();
  }

  health(): ReturnType<CollectorCore['health']> {
    const ok = this.store.healthy();
    const load = this.ingestor.load();
    const stall = this.inputStall();
    const out = {
      ok: ok && load.storeError === undefined,
      agents: this.matrix.agents().length,
      paths: this.matrix.paths().length,
      ...(stall === undefined ? {} : { inputStall: stall }),
    };
    if (!out.ok) return { ...out, detail: load.storeError ?? 'the store is not answering' };
    return out;
  }

  /** Since when reports cannot reach this collector, and why (NATS only), or undefined. */
  inputStall(): InputStall | undefined {
    return this.natsIngest?.inputStall();
  }

  /** Stops listening, checkpoints the matrix and closes the store. Idempotent. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // First: no report is taken while the rest closes (unacked ones go to the next run).
    await this.natsIngest?.stop();
    this.natsIngest = undefined;
    await this.localiserFeed?.stop();
    this.localiserFeed = undefined;
    await this.shardPublisher?.stop();
    this.shardPublisher = undefined;
    if (this.blindTimer !== undefined) clearTimeout(this.blindTimer);
    this.diagnoser.close();
    this.events.close();
    await this.localiser.close();
    if (this.api !== undefined) {
      const api = this.api;
      this.api = undefined;
      await api.close();
    }
    // Before the store closes: pending deliveries are journalled in it.
    await this.alerting.close();
    // The final OTLP push, while the matrix is still there to read.
    const pushed = await this.telemetry.shutdown();
    if (!pushed.ok) this.log.warn({ err: pushed.error }, 'telemetry shutdown incomplete');
    try {
      this.ingestor.close();
    } catch (err) {
      this.log.warn({ err }, 'could not save the path matrix checkpoint at shutdown');
    }
  }

  private lastLivenessCheckMs = 0;
  /** When reports could not reach this collector (NATS): agents unheard then were not silent. */
  private readonly deaf = new DeafSpans();
  private blindTimer: NodeJS.Timeout | undefined;

  /**
   * Reports stopped, or started again, being able to reach this collector (NATS): once that
   * lasts `nats.blindAfter`, the diagnosis says the collector is blind. (Meanwhile the
   * agents' liveness holds: `checkLiveness` does not count the time toward their late-after
   * and silent-after.)
   */
  private inputStallChanged(stall: InputStall | undefined): void {
    if (this.blindTimer !== undefined) clearTimeout(this.blindTimer);
    this.blindTimer = undefined;
    if (stall !== undefined) {
      // A little past the moment: a timer may fire a millisecond early, and a look before
      // the moment would leave the diagnosis without it until something else changes.
      const waitMs = stall.sinceMs + (this.config.nats?.blindAfter ?? 0) - Date.now() + 20;
      this.blindTimer = setTimeout(() => this.diagnoser.invalidate('input'), Math.max(0, waitMs));
      this.blindTimer.unref();
    }
    this.diagnoser.invalidate('input');
  }

  /**
   * Flags agents whose report is overdue (see `PathMatrix.markLate`) and flips those not
   * heard from for `silentAfter` to silent. A check that itself comes late (this process was
   * stalled: batches may be waiting unread, and timers run before the reads) only notes the
   * time: the stall is ours, not the agents'. The next check, after the reads, decides.
   */
  private checkLiveness(): void {
    const now = Date.now();
    const stalled = now - this.lastLivenessCheckMs > 3 * livenessCheckMs;
    this.lastLivenessCheckMs = now;
    if (stalled) return;
    const lateAfterMs = lateAfterFor(this.config.agents, this.fleetSize());
    // Time in which reports could not reach this collector does not count: an agent's silence
    // then is the transport's. (Those found late in a stall's first moments, before it was
    // known, are not late once it is.)
    const stall = this.inputStall();
    if (stall === undefined) this.deaf.end(now);
    else this.deaf.begin(stall.sinceMs);
    const deafMs = (fromMs: number): number => this.deaf.deafMs(fromMs, now);
    this.matrix.markLate(
      now,
      lateAfterMs,
      this.observer.upSinceMs ?? 0,
      (agent) => this.settler.activeSince(this.agentHosts.get(agent) ?? agent, now),
      deafMs,
    );
    try {
      const silentAfterMs = silentAfterFor(this.config.agents, this.fleetSize());
      for (const a of this.ingestor.markSilent(now, silentAfterMs, deafMs))
        this.log.warn({ agent: a.agent, lastSeenMs: a.lastSeenMs }, 'agent silent');
    } catch (err) {
      this.log.error({ err }, 'could not mark silent agents');
    }
  }

  private upkeep(): void {
    const now = Date.now();
    if (this.incidentPending) {
      this.trackIncident(this.diagnoser.current());
      // The alerts link to the incident now recorded.
      if (!this.incidentPending)
        this.alerting.update(this.diagnoser.current(), Date.now(), this.alertContext());
    }
    try {
      if (now - this.lastCheckpointMs >= checkpointEveryMs && !this.checkpointing) {
        this.lastCheckpointMs = now;
        this.checkpointing = true;
        this.ingestor
          .checkpointInSlices()
          .catch((err: unknown) => this.log.error({ err }, 'could not save the matrix checkpoint'))
          .finally(() => {
            this.checkpointing = false;
          });
      }
      if (now - this.lastPruneMs >= pruneEveryMs) {
        this.lastPruneMs = now;
        this.ingestor
          .prune(now)
          .catch((err: unknown) => this.log.error({ err }, 'pruning old rows failed'));
      }
    } catch (err) {
      this.log.error({ err }, 'collector upkeep failed');
    }
  }
}
