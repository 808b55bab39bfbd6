import { gunzipSync } from 'node:zlib';
import type { PathSummary } from '../../wire/report.js';
import type { FailureClass, ProbeResult } from '../../wire/result.js';
import type { StoredAgent } from '../checkpoint.js';
import type { Transition } from '../paths/checkpoint.js';

/** Row shapes of the store's tables as its statements read them, and what they read as. */

/** Which agent id and credential an agent name is bound to (the `bindings` table). */
export interface NameBinding {
  readonly agent: string;
  readonly agentId: string;
  /** Credential id (collector/auth.ts Credential.id); '' for a binding older than credentials. */
  readonly credential: string;
  /** Bound by a credential that names the agent exactly: refused to every other credential. */
  readonly exact: boolean;
  /** When the bound agent id last sent an accepted batch, or was bound (collector clock). */
  readonly lastSeenMs: number;
}

/** A stored full result with where it came from. */
export interface StoredResult {
  readonly agentId: string;
  readonly batchSeq: number;
  readonly result: ProbeResult;
}

/** Row shape of `agents` as the hot path reads it. */
export interface AgentRow {
  agent_key: number;
  name: string;
  labels: string;
  accepted_seq: number;
  dropped_batches: number;
  dropped_results: number;
}

/** Row shape of `bindings` joined with the bound agent's last batch. */
export interface BindingRow {
  name: string;
  agent_id: string;
  credential: string;
  exact: number;
  bound_at_ms: number;
  last_seen_ms: number | null;
}

export function toBinding(r: BindingRow): NameBinding {
  return {
    agent: r.name,
    agentId: r.agent_id,
    credential: r.credential,
    exact: r.exact === 1,
    lastSeenMs: Math.max(r.bound_at_ms, r.last_seen_ms ?? 0),
  };
}

const emptyLabels: Readonly<Record<string, string>> = Object.freeze({});

function parseLabels(json: string): Readonly<Record<string, string>> {
  if (json === '{}') return emptyLabels;
  return JSON.parse(json) as Record<string, string>;
}

export interface AgentListRow {
  agent_id: string;
  name: string;
  labels: string;
  first_seen_ms: number;
  last_seen_ms: number;
  accepted_seq: number;
  dropped_batches: number;
  dropped_results: number;
}

export function toStoredAgent(r: AgentListRow): StoredAgent {
  return {
    agentId: r.agent_id,
    agent: r.name,
    labels: parseLabels(r.labels),
    firstSeenMs: r.first_seen_ms,
    lastSeenMs: r.last_seen_ms,
    acceptedSeq: r.accepted_seq,
    droppedBatches: r.dropped_batches,
    droppedResults: r.dropped_results,
  };
}

export interface TransitionRow {
  agent_id: string;
  agent: string;
  target: string;
  kind: string;
  from_class: string | null;
  to_class: string | null;
  from_state: string;
  to_state: string;
  at_ms: number;
  result_seq: number | null;
  batch_seq: number;
}

export function toTransition(r: TransitionRow): Transition {
  return {
    agentId: r.agent_id,
    agent: r.agent,
    target: r.target,
    kind: r.kind,
    fromClass: r.from_class as FailureClass | null,
    toClass: r.to_class as FailureClass | null,
    fromState: r.from_state,
    toState: r.to_state,
    atMs: r.at_ms,
    resultSeq: r.result_seq,
    batchSeq: r.batch_seq,
  };
}

export interface ResultRow {
  agent_id: string;
  seq: number;
  record: string;
}

export interface BatchRow {
  agent_key: number;
  seq: number;
  results: number;
  summaries: number;
  first_result_id: number | null;
}

export interface ReplayHeadRow {
  name: string;
  seq: number;
  received_at_ms: number;
  results: number;
  summaries: number;
  first_result_id: number | null;
  summaries_json: string | null;
  body: Buffer | null;
  body_gzip: number;
}

/** A stored batch's summaries: from its body as received, or as stored apart. */
export function storedSummaries(
  b: Pick<ReplayHeadRow, 'summaries_json' | 'body' | 'body_gzip'>,
): PathSummary[] {
  if (b.body !== null) {
    // Validated when it was received; the JSON of a strict schema parses to the same value.
    const json = b.body_gzip === 1 ? gunzipSync(b.body) : b.body;
    return (JSON.parse(json.toString('utf8')) as { summaries: PathSummary[] }).summaries;
  }
  return b.summaries_json === null ? [] : (JSON.parse(b.summaries_json) as PathSummary[]);
}
