import type { InputStall } from './input-stall.js';
import type { Credential, EnrolledCredential } from './auth.js';
import type { IncidentDetail } from './store/incidents.js';
import type { StoredIncident } from './store/incidents.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import type { FailureClass } from '../wire/result.js';
import type { Plan } from '../wire/plan.js';
import type { ReportBatch } from '../wire/report.js';

/** The outcome of ingesting one report batch. */
export type IngestOutcome =
  /** Stored and applied; `acceptedSeq` is the new watermark. */
  | { readonly status: 'accepted'; readonly acceptedSeq: number }
  /** Already accepted earlier (a retry): nothing changed. */
  | { readonly status: 'duplicate'; readonly acceptedSeq: number }
  /** `seq` skips ahead of the watermark without declaring dropped batches: refused. */
  | { readonly status: 'gap'; readonly acceptedSeq: number; readonly expectedSeq: number }
  /**
   * The agent id is already held by another agent name, or the name is bound to another
   * live agent id (`freeAtMs`: when it may move): refused.
   */
  | {
      readonly status: 'conflict';
      readonly acceptedSeq: number;
      readonly message: string;
      readonly freeAtMs?: number;
    }
  /** The credential may not report as this agent (name, agent id or binding): refused. */
  | { readonly status: 'forbidden'; readonly acceptedSeq: number; readonly message: string }
  /** A seq jump or declared drop larger than any spool: refused, nothing changed. */
  | { readonly status: 'implausible'; readonly acceptedSeq: number; readonly message: string };

/** The outcome of an enrolment (collector/store.ts `enrol`). */
export type EnrolOutcome =
  | { readonly status: 'enrolled' }
  /** The name is bound to another live agent id, or the id to another name. */
  | { readonly status: 'conflict'; readonly message: string; readonly freeAtMs?: number };

/** Health of one path: (agent, plan target). */
export interface PathState {
  readonly agent: string;
  /** Plan target name: `<component>/icmp`, `<component>/<service>/tcp`, `<component>/<service>/<kind>`. */
  readonly target: string;
  readonly component: string;
  readonly service?: string;
  readonly kind: string;
  /** ok: last result ok and recovered; failing: consecutive failures ≥ the debounce; … */
  readonly state: 'ok' | 'failing' | 'degraded' | 'unknown';
  readonly lastClass: FailureClass;
  /**
   * While failing, when the newest result's class is not the one the failure began with:
   * that first class (a hung service whose listen queue then filled: `protocol_timeout`,
   * then `tcp_timeout`), also before the new class has passed the debounce. Absent
   * otherwise.
   */
  readonly firstClass?: FailureClass;
  /**
   * When the path last fell to failing at the network layer (a timeout, an unreachable), if
   * that was within the matrix's `flapStableMs` of its newest result; `fellAgain`: that fall
   * came within `flapStableMs` of one before it that was a blip (back within `flapBlipMs`). A path that fell and came back, or fell
   * again, makes its host pair unstable: loss, not a filter (collector/localise/kinds/packet-loss.ts).
   */
  readonly fellAtMs?: number;
  readonly fellAgain?: boolean;
  /**
   * When a network-layer failure of this path last came back without the path falling (a
   * lost probe, a confirmation burst cancelled by a success), shown when it did so twice
   * within the matrix's `blipShowMs` of its newest result. Loss blips a lossy host's paths
   * again and again; background loss now and then; a filter, a dead host or a smaller MTU
   * does not come back.
   */
  readonly blippedAtMs?: number;
  readonly consecutiveFailures: number;
  readonly consecutiveSuccesses: number;
  /** Share of failed probes in the sliding window. */
  readonly failureRatio: number;
  /** ICMP loss in the sliding window, when known. */
  readonly lossRatio?: number;
  /** Latency: the path's own baseline and the current window (ms). */
  readonly latencyMs?: { readonly baseline: number; readonly p50: number; readonly p99: number };
  /** Failures by class in the sliding window. */
  readonly failures: Readonly<Partial<Record<FailureClass, number>>>;
  readonly probes: number;
  /** When the current state began (epoch ms). */
  readonly sinceMs: number;
  /** Timestamp of the newest result or summary for this path (epoch ms). */
  readonly lastSeenMs: number;
}

/** A path's identity and debounced state: the part of {@link PathState} metrics read. */
export interface PathHead {
  readonly agent: string;
  readonly target: string;
  readonly component: string;
  readonly service?: string | undefined;
  readonly kind: string;
  readonly state: PathState['state'];
  readonly lastClass: FailureClass;
  /** When the current state began (epoch ms). */
  readonly sinceMs: number;
}

/** Liveness of one agent from its heartbeats (every report batch is one). */
export interface AgentLiveness {
  readonly agentId: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly state: 'live' | 'silent';
  /**
   * Live, but its word predates what is happening now: its report is overdue (not heard for
   * a report interval and a half, at least 500 ms more than one), or it has not reported
   * since a fault began arriving at its host.
   */
  readonly late?: boolean;
  readonly lastSeenMs: number;
  readonly acceptedSeq: number;
  /** Results the agent declared lost to its spool bound. */
  readonly droppedResults: number;
  /**
   * Batches the agent had spooled behind its last report (its `faultline-backlog` header):
   * 0 when it is caught up. In memory: 0 after a collector restart until it reports again.
   */
  readonly spoolBacklog: number;
  /**
   * The agent's version, from the `user-agent` of its last report (`faultline-agent/<v>`);
   * absent when unknown (another client, an older agent, or none since a collector restart).
   */
  readonly version?: string;
}

/** Filters of `GET /api/v1/paths`. */
export interface PathFilter {
  readonly agent?: string;
  readonly component?: string;
  readonly kind?: string;
  readonly state?: PathState['state'];
}

/** A report batch's body as received: the JSON, or its gzip when it came so. */
export interface ReportBody {
  readonly bytes: Buffer;
  readonly gzip: boolean;
}

/**
 * What the HTTP API needs from the collector. Implemented by collector/collector.ts;
 * faked in API unit tests.
 */
export interface CollectorCore {
  /** The plan for an agent (it may be unknown to the inventory: then it gets the shared plan). */
  /** `from`: the address the request came from (the agent's host, for the mesh). */
  plan(agent: string, labels: Readonly<Record<string, string>>, from?: string): Plan;
  /**
   * Why `credential` may not fetch the plan of (act as) `agent`, or undefined when it may:
   * its patterns, or a binding of the name to a credential that names it exactly.
   */
  planRefusal(agent: string, credential: Credential): string | undefined;
  /** The enrolled credential whose secret has this SHA-256 digest. */
  enrolled(digest: Buffer): EnrolledCredential | undefined;
  /** Records an enrolled credential (see Store.enrol). */
  enrol(e: EnrolledCredential, digest: Buffer, issuedBy: Credential, nowMs: number): EnrolOutcome;
  /**
   * Validated batch in; transactional: stored, then applied to the path matrix. `body`, the
   * batch as received, is what the store keeps of its summaries (no need to serialise them
   * again). `backlog`: the batches the agent spooled behind this one (PathMatrix.apply);
   * `version`: the agent's, from its `user-agent` (undefined when unknown).
   */
  ingest(
    batch: ReportBatch,
    receivedAtMs: number,
    body?: ReportBody,
    credential?: Credential,
    backlog?: number,
    version?: string,
  ): IngestOutcome;
  paths(filter: PathFilter): PathState[];
  agents(): AgentLiveness[];
  /** The current diagnosis document (collector/diagnosis.ts keeps it current). */
  diagnosis(): Diagnosis;
  /** Incidents, newest first; `beforeId` pages back. */
  incidents(limit: number, beforeId?: number): StoredIncident[];
  /** One incident with its timeline. */
  incident(id: number): IncidentDetail | undefined;
  /** The postmortem draft of an incident (Markdown). */
  postmortem(id: number): string | undefined;
  /** Whether the collector can take more reports now (backpressure). */
  overloaded(): boolean;
  /**
   * For /healthz: store reachable, counts, and (NATS) since when reports cannot reach the
   * collector and why. That stall does not make it unhealthy: it is alive and says so.
   */
  health(): {
    readonly ok: boolean;
    readonly agents: number;
    readonly paths: number;
    readonly detail?: string;
    readonly inputStall?: InputStall;
  };
}
