import type { Transition } from './checkpoint.js';
import { PathRuntime } from './runtime.js';
import type { AgentEntry } from './runtime.js';
import type { SettleSignal } from './states.js';

/**
 * The two-phase apply: a batch changes the matrix at once, and the store's transaction then
 * keeps it (`commit`) or undoes it (`rollback`). The journal is what makes the undo possible:
 * each path copied before the batch first changes it (copy-on-write), and the paths and agent
 * state the batch created or replaced.
 */

/** A batch applied to the matrix but not yet made final: the store decides. */
export interface AppliedBatch {
  /** State changes the batch caused, to be stored in the same transaction as the batch. */
  readonly transitions: readonly Transition[];
  /** Changes and bursts for the diagnosis' settling (empty for most batches). */
  readonly signals: readonly SettleSignal[];
  /** Keeps the changes; `agent` carries the store's watermark and counters for the agent. */
  commit(agent: { readonly acceptedSeq: number; readonly droppedResults: number }): void;
  /** Undoes every change of `apply` (the store refused or failed). */
  rollback(): void;
}

/** The matrix's maps a rollback puts back. */
export interface Holdings {
  /** agent name → target → path. */
  readonly byAgent: Map<string, Map<string, PathRuntime>>;
  readonly liveness: Map<string, AgentEntry>;
  /** agent name → the agentId that holds it now. */
  readonly nameToId: Map<string, string>;
}

const nowhere = { component: '' };

/**
 * Undo log of the open batch: touched paths as they were (copies kept in a pool, so a batch
 * allocates nothing per path), paths and agent state it created or replaced. One instance
 * per matrix, reused: only one batch is open at a time.
 */
export class Journal {
  readonly touched: PathRuntime[] = [];
  readonly before: PathRuntime[] = [];
  readonly createdPaths: PathRuntime[] = [];
  /** Copies for `before`, back from ended batches. */
  private readonly spare: PathRuntime[] = [];
  agentId = '';
  agent = '';
  agentBefore: AgentEntry | undefined;
  agentCreated = false;
  superseded: AgentEntry | undefined;
  holderBefore: string | undefined;

  reset(agentId: string, agent: string): void {
    this.touched.length = 0;
    this.before.length = 0;
    this.createdPaths.length = 0;
    this.agentId = agentId;
    this.agent = agent;
    this.agentBefore = undefined;
    this.agentCreated = false;
    this.superseded = undefined;
    this.holderBefore = undefined;
  }

  /** Copy-on-write: keeps `p` as it was before the batch first changes it. */
  keep(p: PathRuntime, slots: number): void {
    const copy = this.spare.pop() ?? new PathRuntime('', '', '', '', nowhere, slots, 0);
    copy.copyFrom(p);
    this.touched.push(p);
    this.before.push(copy);
  }

  /** Undoes every change of the batch in `h`; returns the number of paths it removed. */
  undo(h: Holdings): number {
    let removed = 0;
    for (let k = 0; k < this.touched.length; k++) {
      this.touched[k]!.copyFrom(this.before[k]!);
    }
    for (const p of this.createdPaths) {
      const m = h.byAgent.get(p.agent);
      if (m?.delete(p.target) === true) removed++;
      if (m?.size === 0) h.byAgent.delete(p.agent);
    }
    if (this.agentCreated) h.liveness.delete(this.agentId);
    if (this.agentBefore !== undefined) h.liveness.set(this.agentId, this.agentBefore);
    if (this.superseded !== undefined) h.liveness.set(this.superseded.agentId, this.superseded);
    if (this.holderBefore === undefined) h.nameToId.delete(this.agent);
    else h.nameToId.set(this.agent, this.holderBefore);
    return removed;
  }

  /** Ends the batch: the copies go back to the pool. */
  release(): void {
    for (const b of this.before) this.spare.push(b);
    this.reset('', '');
  }
}
