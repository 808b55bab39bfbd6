import { sharedController } from '../lib/abort.js';
import type { Plan } from '../wire/plan.js';
import type { SpoolCursor, SpoolCursorStats } from './spool.js';

/*
 * A place the agent's report batches go. The agent keeps one spool; each destination reads
 * it through its own cursor, at its own pace, so one that is down or cut off delays no other.
 * A collector is one kind (collector-channel.ts), the NATS JetStream stream another
 * (nats-channel.ts); both also serve the agent's plan (PlanChannel), and the one
 * CollectorLink batches, spools, keeps the cursors and chooses the plan for all of them.
 */

/** What a destination is given to deliver from. */
export interface DeliverySource {
  /** Its cursor over the agent's spool: peek, ack, reject, declareGap. */
  readonly cursor: SpoolCursor;
  /** The highest seq spooled so far (an ack above it is implausible). */
  highestSpooled(): number;
  /** Calls `listener` after every append to the spool; returns the unsubscribe function. */
  onAppend(listener: () => void): () => void;
}

/** Delivery counters of one destination since start. */
export interface DestinationStats extends Readonly<
  Omit<ChannelCounts, 'planFetches' | 'planFailures'>
> {
  /** Its spool cursor's name. */
  readonly name: string;
  /** Where it is, for humans and the `collector` label of the agent's metrics (a URL). */
  readonly label: string;
  /** Whether the last exchange with it succeeded. */
  readonly connected: boolean;
  /** Where its credential came from (none, saved, enrolled, direct). */
  readonly enrolState: string;
  /** Its position in the spool. */
  readonly spool: SpoolCursorStats | undefined;
}

/** A report destination with its own cursor over the spool. */
export interface ReportDestination {
  /** The spool cursor's name: unique among the agent's destinations, stable across restarts. */
  readonly name: string;
  /** Starts delivering, in seq order, until stop(); returns at once. */
  deliver(source: DeliverySource): void;
  /** Resolves when its cursor has nothing left to send (at once when it is empty). */
  drained(): Promise<void>;
  /** Whether the last exchange succeeded (a stop waits for the drain of those). */
  connected(): boolean;
  /**
   * When it last took a batch (epoch ms), if ever: a stop also waits for the drain of one
   * that took a batch moments ago and failed once since (a NATS node restarting).
   */
  answeredAtMs?(): number | undefined;
  /** Aborts every request and ends its loops. */
  stop(): Promise<void>;
  stats(): DestinationStats;
}

/** The counters a {@link PlanChannel} keeps; the link sums them over its channels. */
export interface ChannelCounts {
  /** Acks above the highest seq this agent spooled: refused, the batch kept. */
  implausibleAcks: number;
  /** Refusals of the sequence or identity (FL_ERR_SEQ_*, conflict, forbidden): batch kept. */
  seqRefusals: number;
  /** Sends of report batches: POSTs, or JetStream publishes (retries included). */
  posts: number;
  /** Batches acknowledged as new (by the collector, or stored by JetStream). */
  accepted: number;
  /** Batches it already had (a retry of one whose answer was lost). */
  duplicates: number;
  /** 409 gap answers: the collector expected an earlier seq than the agent still had. */
  gaps: number;
  /** Batches refused as bad (400/413, over NATS' max_payload), moved to spool/rejected/. */
  rejected: number;
  /** Failed sends that were retried later (network, 429/503, 5xx, 401/403, no ack). */
  retries: number;
  /** Highest seq it acknowledged. */
  acceptedSeq: number;
  /** Plans fetched (HTTP) or taken from the bucket (NATS). */
  planFetches: number;
  planFailures: number;
}

/** Zeroed {@link ChannelCounts}. */
export function zeroCounts(): ChannelCounts {
  return {
    implausibleAcks: 0,
    seqRefusals: 0,
    posts: 0,
    accepted: 0,
    duplicates: 0,
    gaps: 0,
    rejected: 0,
    retries: 0,
    acceptedSeq: 0,
    planFetches: 0,
    planFailures: 0,
  };
}

/**
 * A report destination that also serves the agent's plan: a collector (GET /api/v1/plan),
 * or the NATS plan bucket. The link follows the newest plan any channel serves (see
 * plan-choice.ts); each channel caches the last plan it served for a start without it.
 */
export interface PlanChannel extends ReportDestination {
  readonly counts: ChannelCounts;
  /**
   * Readies it for the agent's id; `onServed` is called, once startPlanLoop ran, with each
   * plan it serves whose version differs from the last.
   */
  open(agentId: string, onServed: (plan: Plan) => void): Promise<void>;
  /** Its cached plan, if any. */
  loadCached(): Promise<Plan | undefined>;
  /** Its plan at start, within `timeoutMs` (cached when new); throws when none comes. */
  fetchFirstPlan(timeoutMs: number, cached: Plan | undefined): Promise<Plan>;
  /** Follows its plan from now on; `fresh`: fetchFirstPlan succeeded. */
  startPlanLoop(fresh: boolean, cached: Plan | undefined): void;
  /** The last plan it served (or the one cached from it). */
  servedPlan(): Plan | undefined;
  stats(): DestinationStats & { readonly planVersion: string | undefined };
}

/**
 * The pacing every destination's delivery loop shares: it sleeps while its cursor is
 * empty and wakes at the next append or the stop, and answers drained() when the cursor
 * is empty.
 */
export class DeliveryPace {
  private wake: (() => void) | undefined;
  private appended = false;
  private waitingForDrain: (() => void)[] = [];
  private unsubscribe: (() => void) | undefined;
  private source: DeliverySource | undefined;

  /** Wakes on every append to `source`'s spool. */
  attach(source: DeliverySource): void {
    this.source = source;
    this.unsubscribe = source.onAppend(() => {
      this.appended = true;
      this.wake?.();
    });
  }

  /** Called before each peek: an append after it wakes the next wait at once. */
  beforePeek(): void {
    this.appended = false;
  }

  /** The cursor is empty: answers the drained() waiting, and sleeps until an append or `stopped`. */
  async idle(stopped: () => boolean): Promise<void> {
    for (const resolve of this.waitingForDrain.splice(0)) resolve();
    if (this.appended || stopped()) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
    this.wake = undefined;
  }

  drained(): Promise<void> {
    if ((this.source?.cursor.stats().batches ?? 0) === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.waitingForDrain.push(resolve));
  }

  /** Ends the wait (at the stop) and the subscription. */
  detach(): void {
    this.wake?.();
    this.unsubscribe?.();
  }
}

/**
 * What every PlanChannel does alike: its counters, its delivery loop's start, pace and
 * stop, and its stats. A channel adds how it sends (sendLoop), how it serves plans, and
 * what it closes at the stop.
 */
export abstract class DeliveryChannel {
  readonly counts = zeroCounts();
  protected readonly abort = sharedController();
  protected readonly pace = new DeliveryPace();
  protected loops: Promise<void>[] = [];
  protected source: DeliverySource | undefined;
  protected isConnected = false;
  private lastAnsweredMs: number | undefined;

  constructor(readonly name: string) {}

  answeredAtMs(): number | undefined {
    return this.lastAnsweredMs;
  }

  /** It took a batch: connected, and when. */
  protected answered(): void {
    this.isConnected = true;
    this.lastAnsweredMs = Date.now();
  }

  deliver(source: DeliverySource): void {
    this.source = source;
    this.pace.attach(source);
    this.loops.push(this.sendLoop(source));
  }

  drained(): Promise<void> {
    return this.pace.drained();
  }

  connected(): boolean {
    return this.isConnected;
  }

  /** Aborts every request, ends its loops (`beforeJoin` first), then `close`. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.pace.detach();
    this.beforeJoin();
    await Promise.allSettled(this.loops);
    await this.close();
  }

  protected get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** Delivers `source`'s cursor in seq order until the stop. */
  protected abstract sendLoop(source: DeliverySource): Promise<void>;

  /** At the stop, before its loops are awaited: ends what the abort does not. */
  protected beforeJoin(): void {}

  /** At the stop, after its loops ended: releases its connections. */
  protected abstract close(): Promise<void>;

  protected destinationStats(
    label: string,
    enrolState: string,
    planVersion: string | undefined,
  ): DestinationStats & { readonly planVersion: string | undefined } {
    const { planFetches: _f, planFailures: _p, ...counts } = this.counts;
    return {
      ...counts,
      name: this.name,
      label,
      connected: this.isConnected,
      enrolState,
      spool: this.source?.cursor.stats(),
      planVersion,
    };
  }
}
