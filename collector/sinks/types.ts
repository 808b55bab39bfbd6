import type { ZodObject } from 'zod';
import type { Diagnosis } from '../../wire/diagnosis.js';

/**
 * What the alert engine hands to sinks, and what a sink is. One sink kind is one file in
 * this folder plus one line in registry.ts; the dispatcher (dispatcher.ts) gives every
 * delivery target its own queue, retries and dead-letter record.
 */

/** The incident an alert belongs to, when the incident store has one. */
export interface IncidentRef {
  /** The incident's id in the store. */
  readonly id: string;
  /** Where a person reads it (the collector's incident page or API). */
  readonly url?: string;
}

/** One alert as it is sent: the Alertmanager v2 shape, times in epoch ms. */
export interface AlertNotice {
  /** Hex digest of the sorted labels: the same alert has the same fingerprint on every collector. */
  readonly fingerprint: string;
  readonly status: 'firing' | 'resolved';
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** When the fault began (the hypothesis' `since`). */
  readonly startsAtMs: number;
  /** Firing: a few resend periods ahead; resolved: the moment it was resolved. */
  readonly endsAtMs: number;
  /** Link back to the collector's view of it; absent without `alerts.externalUrl`. */
  readonly generatorUrl?: string;
  readonly incident?: IncidentRef;
}

/**
 * What one evaluation of the engine produced. `alerts` is what a state-keeping receiver
 * (Alertmanager) should get now: alerts that fired, resolved, changed or are due for their
 * periodic re-send. `changes` is the subset whose status changed (fired, resolved, or fired
 * again under new labels), for notification receivers (webhook, Slack).
 */
export interface AlertBatch {
  readonly sentAtMs: number;
  readonly alerts: readonly AlertNotice[];
  readonly changes: readonly AlertNotice[];
  /** Every alert firing after this evaluation (for a receiver's summary line). */
  readonly firing: number;
  /** The diagnosis the batch was computed from. */
  readonly diagnosis: Diagnosis;
}

/**
 * Result of one delivery attempt (opentelemetry-js style: returned, never thrown).
 * `retryable` goes through backoff; `failure` (e.g. a 4xx) is dead-lettered at once.
 */
export type SendOutcome =
  | { readonly status: 'success' }
  | { readonly status: 'retryable'; readonly reason: string }
  | { readonly status: 'failure'; readonly reason: string };

/** One place alerts are delivered to; a sink config may make several (one per URL). */
export interface DeliveryTarget {
  /** The `sink` label of the metrics and dead-letter records; never holds a secret. */
  readonly name: string;
  /** The sink type (`alertmanager`, `webhook`). */
  readonly type: string;
  /**
   * `state`: the receiver keeps alert state and needs periodic re-sends; its queue keeps
   * only the newest version of each alert (by fingerprint). `notify`: it gets one message
   * per batch with status changes, queued in order.
   */
  readonly mode: 'state' | 'notify';
  /**
   * The request body for `alerts` (state mode: the alerts to post; notify mode: the batch's
   * changes, with `batch` for the diagnosis). Built when queued, so a retry sends the same
   * bytes (and the same signature timestamp is re-made per attempt by `send`).
   */
  encode(alerts: readonly AlertNotice[], batch: AlertBatch): string;
  /** Sends one body; resolves with the outcome, rejecting only on a programming error. */
  send(body: string, signal: AbortSignal): Promise<SendOutcome>;
}

/** Reports a config problem at `path` (relative to the sink's entry) without throwing. */
export type SinkConfigReport = (
  path: readonly PropertyKey[],
  message: string,
  input?: unknown,
  params?: { readonly pointAt?: 'key' },
) => void;

/** What every resolved sink config has. */
export interface SinkConfigBase {
  readonly type: string;
  /** Unique among the sinks; the `sink` label of metrics (default: the type). */
  readonly name: string;
}

/** What targets are built with besides their config. */
export interface SinkEnv {
  /** The collector's name for logs (not used in what is sent). */
  readonly userAgent: string;
}

/**
 * One sink kind: its YAML entry's schema (with `type: <kind>`), the checks that need more
 * than the schema (files, secrets), and the delivery targets made from a resolved entry.
 */
export interface SinkDefinition<Resolved extends SinkConfigBase = SinkConfigBase> {
  readonly type: Resolved['type'];
  /** One line for docs and messages. */
  readonly description: string;
  /** The entry as written (strict object with `type: z.literal(type)`). */
  readonly schema: ZodObject;
  /**
   * The resolved entry from one that passed `schema` (as zod output), reporting anything
   * else wrong through `report`; undefined when it cannot be built.
   */
  resolve(
    entry: Record<string, unknown>,
    name: string,
    report: SinkConfigReport,
  ): Resolved | undefined;
  targets(config: Resolved, env: SinkEnv): DeliveryTarget[];
}
