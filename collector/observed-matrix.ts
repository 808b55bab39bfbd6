import type { Transition } from './paths/checkpoint.js';
import type { AppliedBatch } from './paths/journal.js';
import { PathMatrix, type DeafMs } from './paths/matrix.js';
import type { SettleSignal } from './paths/states.js';
import type { DirtyPathSource } from './localise/driver.js';

/**
 * The path matrix, telling the diagnosis what changed: a committed batch that caused
 * transitions (state, failure class, degradation, an agent back from silence), brought a
 * new agent, new paths or new labels; a heartbeat that revived a silent agent; agents that
 * went silent. A rolled-back batch changed nothing. Everything else (window counters) does
 * not move the diagnosis, so it costs no localisation.
 */
export class ObservedPathMatrix extends PathMatrix implements DirtyPathSource {
  /** Called with a reason whenever something the diagnosis reads has changed. */
  onChange: (reason: string) => void = () => undefined;
  /** Called with a committed batch's state changes (the dashboard's live feed). */
  onTransitions: (transitions: readonly Transition[]) => void = () => undefined;
  /** Called with a committed batch's settle signals (path changes, confirmation bursts). */
  onSignals: (signals: readonly SettleSignal[], receivedAtMs: number) => void = () => undefined;
  /** Called with the agent id of every committed batch and heartbeat (an ingest shard's liveness feed). */
  onSeen: (agentId: string) => void = () => undefined;
  private readonly labelsSeen = new Map<string, string>();
  /** Agents whose paths changed since the localiser last read them; `all` at first. */
  private dirtyAgents = new Set<string>();
  private allDirty = true;

  /** The agents whose paths changed since the last call (`all`: read every path again). */
  takeDirtyAgents(): { readonly all: boolean; readonly agents: readonly string[] } {
    const taken = { all: this.allDirty, agents: [...this.dirtyAgents] };
    this.allDirty = false;
    this.dirtyAgents = new Set();
    return taken;
  }

  /** After a failed localisation: read everything again next time. */
  markAllDirty(): void {
    this.allDirty = true;
  }

  /** The agent's paths changed: the localiser reads them again. */
  protected markDirty(agent: string): void {
    this.dirtyAgents.add(agent);
  }

  // The matrix's own parameters, passed on whole: a wrapper that spelled them out once
  // dropped one (the backlog) and nothing failed but the behaviour.
  override apply(...args: Parameters<PathMatrix['apply']>): AppliedBatch {
    const [batch, receivedAtMs] = args;
    const sizeBefore = this.size;
    const wasLate = this.isLate(batch.agent);
    const applied = super.apply(...args);
    const meaningChanged = this.meaningChanged;
    const fallsShownChanged = this.fallsShownChanged;
    const labels = batch.labels === undefined ? undefined : JSON.stringify(batch.labels);
    const known = this.labelsSeen.get(batch.agentId);
    const newAgent = known === undefined;
    const newLabels = labels !== undefined && known !== labels;
    const grew = this.size !== sizeBefore;
    return {
      transitions: applied.transitions,
      signals: applied.signals,
      commit: (agent) => {
        applied.commit(agent);
        this.onSeen(batch.agentId);
        if (applied.signals.length > 0) this.onSignals(applied.signals, receivedAtMs);
        if (applied.transitions.length > 0) this.onTransitions(applied.transitions);
        if (newAgent || newLabels) this.labelsSeen.set(batch.agentId, labels ?? known ?? '{}');
        // Full results can move a path's last class while its debounced state holds; a
        // batch that only repeats what the paths said (the bulk of a storm's
        // confirmations) leaves the localiser's copy as it is.
        if (applied.transitions.length > 0 || meaningChanged || newAgent || newLabels || grew)
          this.dirtyAgents.add(batch.agent);
        // A recent fall's showing ending (collector/paths.ts showFall) changes the diagnosis
        // with no transition: a flapping link's instability expires.
        if (applied.transitions.length > 0 || fallsShownChanged) this.onChange('batch');
        else if (newAgent || newLabels || grew || wasLate) this.onChange('agents');
      },
      rollback: () => applied.rollback(),
    };
  }

  override heartbeat(agentId: string, receivedAtMs: number): ReturnType<PathMatrix['heartbeat']> {
    const wasLate = this.isLate('', agentId);
    const t = super.heartbeat(agentId, receivedAtMs);
    this.onSeen(agentId);
    if (t !== undefined) this.onChange('agent-live');
    else if (wasLate) this.onChange('agents');
    return t;
  }

  override markLate(
    nowMs: number,
    lateAfterMs: number,
    sinceMs?: number,
    faultSince?: (agent: string) => number | undefined,
    deafMs?: DeafMs,
  ): string[] {
    const changed = super.markLate(nowMs, lateAfterMs, sinceMs, faultSince, deafMs);
    if (changed.length > 0) this.onChange('agent-late');
    return changed;
  }

  override markSilent(
    nowMs: number,
    silentAfterMs: number,
    deafMs?: DeafMs,
  ): ReturnType<PathMatrix['markSilent']> {
    const changed = super.markSilent(nowMs, silentAfterMs, deafMs);
    if (changed.length > 0) this.onChange('agent-silent');
    return changed;
  }
}
