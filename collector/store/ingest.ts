import type { ReportBatch } from '../../wire/report.js';
import type { Credential, EnrolledCredential } from '../auth.js';
import { credentialNames, forbiddenReason } from '../auth.js';
import type { Transition } from '../paths/checkpoint.js';
import type { EnrolOutcome, IngestOutcome, ReportBody } from '../types.js';
import type { AgentRow, BindingRow } from './rows.js';
import { toBinding } from './rows.js';
import type { Statements } from './statements.js';
import type { StoreOptions } from './options.js';

/**
 * How a batch or an enrolment is admitted: the verdict on who may report as whom and on the
 * watermark, then the writes. Each runs inside one of the store's transactions.
 */

/** What `ingest` did, with the agent's counters after it. */
export interface StoreIngestResult {
  readonly outcome: IngestOutcome;
  readonly droppedBatches: number;
  readonly droppedResults: number;
}

type Verdict =
  | {
      readonly status: 'new';
      readonly row: AgentRow | undefined;
      readonly missing: number;
      /** The name's binding to write with the batch (undefined: it stands as it is). */
      readonly bind: { readonly credential: string; readonly exact: boolean } | undefined;
    }
  | (IngestOutcome & {
      readonly status: 'duplicate' | 'gap' | 'conflict' | 'forbidden' | 'implausible';
    });

/** A time as people read it in a refusal: ISO 8601, UTC. */
function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The verdict on a batch sent with `credential` (undefined: a trusted caller, treated as a
 * fleet token with no name). In order: the credential must allow the name (and an enrolled
 * one its agent id); a name bound to a credential that names it exactly is refused to every
 * other; the agent id must not belong to another name; a name bound to another agent id
 * moves only for a credential naming it exactly, or once that id has been silent for
 * `releaseAfterMs`; then the watermark: a duplicate, a seq jump or declared drop beyond
 * `maxSeqGap` (implausible), a gap, or new.
 */
export function judge(
  s: Statements,
  options: StoreOptions,
  batch: ReportBatch,
  credential: Credential | undefined,
  nowMs: number,
): Verdict {
  const row = s.agent.get(batch.agentId) as AgentRow | undefined;
  const acceptedSeq = row?.accepted_seq ?? 0;
  const name = JSON.stringify(batch.agent);
  if (credential !== undefined) {
    const reason = forbiddenReason(credential, batch.agent, batch.agentId);
    if (reason !== undefined) return { status: 'forbidden', acceptedSeq, message: reason };
  }
  const credentialId = credential?.id ?? '';
  const exact = credential !== undefined && credentialNames(credential, batch.agent);
  const bindingRow = s.binding.get(batch.agent) as BindingRow | undefined;
  const bound = bindingRow === undefined ? undefined : toBinding(bindingRow);
  if (bound !== undefined && bound.exact && bound.credential !== credentialId) {
    return {
      status: 'forbidden',
      acceptedSeq,
      message: `agent ${name} is bound to its own credential; ${credential?.label ?? 'this caller'} may not report as it`,
    };
  }
  if (row !== undefined && row.name !== batch.agent) {
    return {
      status: 'conflict',
      acceptedSeq,
      message: `agent id ${batch.agentId} belongs to agent "${row.name}", not "${batch.agent}"`,
    };
  }
  if (bound !== undefined && bound.agentId !== batch.agentId && !exact) {
    const freeAtMs = bound.lastSeenMs + options.releaseAfterMs;
    if (nowMs < freeAtMs) {
      return {
        status: 'conflict',
        acceptedSeq,
        freeAtMs,
        message: `agent ${name} is bound to another agent id, live ${Math.max(0, Math.round((nowMs - bound.lastSeenMs) / 1000))} s ago; the name is free for a new agent id at ${isoTime(freeAtMs)} (after ${Math.round(options.releaseAfterMs / 1000)} s of silence), or use a credential that names this agent`,
      };
    }
  }
  const bind =
    bound === undefined ||
    bound.agentId !== batch.agentId ||
    bound.credential !== credentialId ||
    bound.exact !== exact
      ? { credential: credentialId, exact }
      : undefined;
  const maxGap = options.maxSeqGap;
  const declared = batch.dropped?.batches ?? 0;
  const implausible = (what: string): Verdict => ({
    status: 'implausible',
    acceptedSeq,
    message: `${what} is more than any agent's spool holds (identity.maxSeqGap ${maxGap}): refused, nothing changed`,
  });
  // An id never seen starts its watermark at its first batch: a new or rebuilt collector
  // must not refuse agents that have been running (and numbering) for a while.
  if (row === undefined) {
    if (declared > maxGap) return implausible(`declaring ${declared} dropped batches`);
    return { status: 'new', row, missing: 0, bind };
  }
  if (batch.seq <= acceptedSeq) return { status: 'duplicate', acceptedSeq };
  const missing = batch.seq - acceptedSeq - 1;
  if (missing > maxGap) {
    return implausible(`seq ${batch.seq} skipping ${missing} batches past ${acceptedSeq}`);
  }
  if (declared > maxGap) return implausible(`declaring ${declared} dropped batches`);
  if (missing === 0 || declared >= missing) return { status: 'new', row, missing, bind };
  return { status: 'gap', acceptedSeq, expectedSeq: acceptedSeq + 1 };
}

export function enrolLocked(
  s: Statements,
  options: StoreOptions,
  e: EnrolledCredential,
  digest: Buffer,
  issuedBy: string,
  nowMs: number,
): EnrolOutcome {
  const row = s.agent.get(e.agentId) as AgentRow | undefined;
  if (row !== undefined && row.name !== e.agent) {
    return {
      status: 'conflict',
      message: `agent id ${e.agentId} belongs to agent "${row.name}", not "${e.agent}"`,
    };
  }
  const bindingRow = s.binding.get(e.agent) as BindingRow | undefined;
  const bound = bindingRow === undefined ? undefined : toBinding(bindingRow);
  if (bound !== undefined && bound.agentId !== e.agentId) {
    const freeAtMs = bound.lastSeenMs + options.releaseAfterMs;
    if (nowMs < freeAtMs) {
      return {
        status: 'conflict',
        freeAtMs,
        message: `agent ${JSON.stringify(e.agent)} is bound to another agent id; the name is free for a new agent id at ${isoTime(freeAtMs)} (after ${Math.round(options.releaseAfterMs / 1000)} s of silence)`,
      };
    }
  }
  s.deleteCredentials.run(e.agent);
  s.insertCredential.run(e.id, digest, e.agent, e.agentId, issuedBy, nowMs);
  s.upsertBinding.run(e.agent, e.agentId, `enrolled:${e.id}`, 1, nowMs);
  return { status: 'enrolled' };
}

export function ingestLocked(
  s: Statements,
  options: StoreOptions,
  batch: ReportBatch,
  receivedAtMs: number,
  transitions: readonly Transition[],
  body: ReportBody | undefined,
  credential: Credential | undefined,
): StoreIngestResult {
  const v = judge(s, options, batch, credential, receivedAtMs);
  if (v.status !== 'new') {
    const row = s.agent.get(batch.agentId) as AgentRow | undefined;
    return {
      outcome: v,
      droppedBatches: row?.dropped_batches ?? 0,
      droppedResults: row?.dropped_results ?? 0,
    };
  }
  const labels = batch.labels === undefined ? undefined : JSON.stringify(batch.labels);
  let key: number;
  let droppedBatches: number;
  let droppedResults: number;
  const row = v.row;
  if (row === undefined) {
    droppedBatches = batch.dropped?.batches ?? 0;
    droppedResults = batch.dropped?.results ?? 0;
    key = Number(
      s.insertAgent.run(
        batch.agentId,
        batch.agent,
        labels ?? '{}',
        receivedAtMs,
        receivedAtMs,
        batch.seq,
        droppedBatches,
        droppedResults,
      ).lastInsertRowid,
    );
  } else {
    key = row.agent_key;
    // Declared drops the collector had in fact accepted (lost acks) lost nothing.
    droppedBatches = row.dropped_batches + v.missing;
    droppedResults = row.dropped_results + (v.missing > 0 ? (batch.dropped?.results ?? 0) : 0);
    s.updateAgent.run(
      receivedAtMs,
      batch.seq,
      droppedBatches,
      droppedResults,
      labels ?? row.labels,
      key,
    );
  }
  const results = batch.results;
  const summaries = batch.summaries;
  let firstResult: number | bigint | null = null;
  for (let i = 0; i < results.length; i++) {
    const r = results[i]!;
    const id = s.insertResult.run(
      key,
      batch.seq,
      i,
      r.target,
      r.kind,
      r.class,
      r.startedAtMs,
      JSON.stringify(r),
    ).lastInsertRowid;
    if (i === 0) firstResult = id;
  }
  s.insertBatch.run(
    key,
    batch.seq,
    receivedAtMs,
    batch.createdAtMs,
    results.length,
    summaries.length,
    firstResult,
    summaries.length === 0 || body !== undefined ? null : JSON.stringify(summaries),
    summaries.length === 0 || body === undefined ? null : body.bytes,
    body?.gzip === true ? 1 : 0,
  );
  for (const t of transitions) insertTransition(s, key, t);
  if (v.bind !== undefined) {
    s.upsertBinding.run(
      batch.agent,
      batch.agentId,
      v.bind.credential,
      v.bind.exact ? 1 : 0,
      receivedAtMs,
    );
  }
  return {
    outcome: { status: 'accepted', acceptedSeq: batch.seq },
    droppedBatches,
    droppedResults,
  };
}

export function insertTransition(s: Statements, key: number, t: Transition): void {
  s.insertTransition.run(
    key,
    t.agent,
    t.target,
    t.kind,
    t.fromClass,
    t.toClass,
    t.fromState,
    t.toState,
    t.atMs,
    t.resultSeq,
    t.batchSeq,
  );
}
