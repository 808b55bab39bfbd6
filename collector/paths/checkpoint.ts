import type { FailureClass, ProbeResult } from '../../wire/result.js';
import type { PathSummary } from '../../wire/report.js';
import type { AgentLiveness, PathState } from '../types.js';
import type { PathRuntime } from './runtime.js';
import { classIndex } from './window.js';

/**
 * What the path matrix and the store exchange: the transitions it records, the checkpoint of
 * its paths' state (written and read here), and what a restart reads back (`RestoreSource`).
 * Types only the matrix defines: the store implements `RestoreSource` without the matrix
 * importing the store.
 */

/**
 * A state change, as the store keeps it for timelines: a path changing state (or, while
 * failing, failure class), or an agent going silent or coming back (`kind: 'agent'`,
 * empty `target`, no classes).
 */
export interface Transition {
  readonly agentId: string;
  readonly agent: string;
  /** Plan target; empty for an agent liveness change. */
  readonly target: string;
  /** Probe kind; `agent` for an agent liveness change. */
  readonly kind: string;
  readonly fromClass: FailureClass | null;
  readonly toClass: FailureClass | null;
  readonly fromState: string;
  readonly toState: string;
  /** When the new state began (epoch ms, agent clock for paths): the first probe of the run. */
  readonly atMs: number;
  /** Sequence number of the probe that completed the run, when a probe did. */
  readonly resultSeq: number | null;
  /** The report batch that carried it (for agent changes: the agent's watermark then). */
  readonly batchSeq: number;
}

/** The part of a path's state that is not in the window, as checkpointed in the store. */
export interface PathCheckpoint {
  readonly agent: string;
  readonly agentId: string;
  readonly target: string;
  readonly kind: string;
  readonly state: PathState['state'];
  readonly stateClass: FailureClass;
  readonly sinceMs: number;
  readonly healthySinceMs: number;
  readonly lastClass: FailureClass;
  readonly lastSeq: number;
  readonly consecutiveFailures: number;
  readonly consecutiveSuccesses: number;
  readonly runStartMs: number;
  readonly classRun: number;
  readonly classRunStartMs: number;
  readonly fullSinceSummary: number;
  readonly lastSeenMs: number;
  readonly newestSlot: number;
  readonly baselineMs: number | null;
  readonly baselineSamples: number;
  /** The open confirmation burst: its size, the trigger's class and the re-probes seen (bits 1..of). Absent: none. */
  readonly burst?: { readonly of: number; readonly cls: FailureClass; readonly seen: number };
  /** Flap damping's penalty and when it was last updated (absent: none). */
  readonly flap?: { readonly penalty: number; readonly atMs: number };
  /** While failing: the class the failure began with, when it differs from `stateClass`. */
  readonly firstClass?: FailureClass;
}

/** A checkpoint of the whole matrix: path scalars plus each agent's watermark they reflect. */
export interface MatrixCheckpoint {
  readonly agents: readonly { readonly agentId: string; readonly seq: number }[];
  readonly paths: readonly PathCheckpoint[];
}

/** One agent's part of a checkpoint: its watermark and its paths' scalars at it. */
export interface AgentCheckpoint {
  readonly agentId: string;
  readonly agent: string;
  readonly seq: number;
  readonly paths: readonly PathCheckpoint[];
}

/** An agent as `restore` reads it (collector/store.ts: `StoredAgent`). */
export interface RestoreAgent {
  readonly agentId: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
  /** When its newest accepted batch was received (collector clock). */
  readonly lastSeenMs: number;
  readonly acceptedSeq: number;
  readonly droppedResults: number;
}

/** An accepted batch as `restore` replays it (collector/store.ts: `StoredBatch`). */
export interface RestoreBatch {
  readonly agentId: string;
  readonly agent: string;
  readonly seq: number;
  readonly results: readonly ProbeResult[];
  readonly summaries: readonly PathSummary[];
}

/** What `restore` reads from the store (collector/store.ts implements it). */
export interface RestoreSource {
  /** Every agent with its watermark, oldest `lastSeenMs` first. */
  agents(): RestoreAgent[];
  loadCheckpoint(): MatrixCheckpoint | undefined;
  /** The newest transition per target of an agent among those before batch `beforeSeq`. */
  lastPathTransitions(agentId: string, beforeSeq: number): Transition[];
  lastAgentTransition(agentId: string): Transition | undefined;
  /** Lowest stored batch seq of the agent received at or after `sinceMs`. */
  firstSeqReceivedSince(agentId: string, sinceMs: number): number | undefined;
  /** When batch `seq` of the agent was received, if it is still stored. */
  batchReceivedAt(agentId: string, seq: number): number | undefined;
  /** Stored batches of the agent with seq ≥ fromSeq, in seq order. */
  replay(agentId: string, fromSeq: number): Iterable<RestoreBatch>;
}

/** Largest burst the wire allows (`confirm.of`). */
const maxBurst = 10;

/** The part of a path's state that is not in the window, for the store's checkpoint. */
export function pathCheckpoint(p: PathRuntime): PathCheckpoint {
  return {
    agent: p.agent,
    agentId: p.agentId,
    target: p.target,
    kind: p.kind,
    state: p.state,
    stateClass: p.stateClass,
    sinceMs: p.sinceMs,
    healthySinceMs: p.healthySinceMs,
    lastClass: p.lastClass,
    lastSeq: p.lastSeq,
    consecutiveFailures: p.consecutiveFailures,
    consecutiveSuccesses: p.consecutiveSuccesses,
    runStartMs: p.runStartMs,
    classRun: p.classRun,
    classRunStartMs: p.classRunStartMs,
    fullSinceSummary: p.fullSinceSummary,
    lastSeenMs: p.lastSeenMs,
    newestSlot: p.newestSlot,
    baselineMs: Number.isNaN(p.baselineMs) ? null : p.baselineMs,
    baselineSamples: p.baselineSamples,
    ...(p.burstOf > 0 ? { burst: { of: p.burstOf, cls: p.burstClass, seen: p.burstSeen } } : {}),
    ...(p.flapPenalty > 0 ? { flap: { penalty: p.flapPenalty, atMs: p.flapAtMs } } : {}),
    ...(p.state === 'failing' && p.firstClass !== p.stateClass ? { firstClass: p.firstClass } : {}),
  };
}

/** Puts a checkpointed path's state back (a burst or flap penalty that does not read right: none). */
export function loadPathCheckpoint(p: PathRuntime, c: PathCheckpoint): void {
  p.state = c.state;
  p.stateClass = c.stateClass;
  p.firstClass =
    c.state === 'failing' && c.firstClass !== undefined && c.firstClass in classIndex
      ? c.firstClass
      : c.stateClass;
  p.sinceMs = c.sinceMs;
  p.healthySinceMs = c.healthySinceMs;
  p.lastClass = c.lastClass;
  p.lastSeq = c.lastSeq;
  p.consecutiveFailures = c.consecutiveFailures;
  p.consecutiveSuccesses = c.consecutiveSuccesses;
  p.runStartMs = c.runStartMs;
  p.classRun = c.classRun;
  p.classRunStartMs = c.classRunStartMs;
  p.fullSinceSummary = c.fullSinceSummary;
  p.lastSeenMs = c.lastSeenMs;
  p.newestSlot = c.newestSlot;
  p.baselineMs = c.baselineMs ?? Number.NaN;
  p.baselineSamples = c.baselineSamples;
  const b = c.burst;
  if (b !== undefined && Number.isInteger(b.of) && b.of >= 1 && b.of <= maxBurst) {
    p.burstOf = b.of;
    p.burstClass = b.cls;
    p.burstSeen = b.seen;
  } else p.burstOf = 0;
  const f = c.flap;
  if (f !== undefined && Number.isFinite(f.penalty) && f.penalty > 0) {
    p.flapPenalty = f.penalty;
    p.flapAtMs = f.atMs;
  } else p.flapPenalty = p.flapAtMs = 0;
}

/** An agent going silent or coming back, as a transition. */
export function agentTransition(
  entry: AgentLiveness,
  from: 'live' | 'silent',
  to: 'live' | 'silent',
  atMs: number,
  batchSeq = entry.acceptedSeq,
): Transition {
  return {
    agentId: entry.agentId,
    agent: entry.agent,
    target: '',
    kind: 'agent',
    fromClass: null,
    toClass: null,
    fromState: from,
    toState: to,
    atMs,
    resultSeq: null,
    batchSeq,
  };
}

/** The agent's transition for a liveness change reported by `markSilent`. */
export function silentTransition(agent: AgentLiveness): Transition {
  return agentTransition(agent, 'live', 'silent', agent.lastSeenMs);
}
