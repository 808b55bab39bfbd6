import type { AppliedBatch } from '../paths/journal.js';
import type { AgentCheckpoint, MatrixCheckpoint } from '../paths/checkpoint.js';
import { agentTransition } from '../paths/checkpoint.js';
import { markLateEntries, markSilentEntries, type DeafMs } from '../paths/matrix.js';
import { AgentEntry } from '../paths/runtime.js';
import { DeafSpans } from '../input-stall.js';
import { ObservedPathMatrix } from '../observed-matrix.js';
import type { AgentLiveness, PathFilter, PathHead, PathState } from '../types.js';
import type { ShardChange } from './changes.js';

/**
 * The localiser's path matrix (`nats.role: localiser`): the same reading surface the
 * collector's diagnosis, alerts, API and dashboard use (ObservedPathMatrix's), filled not
 * by report batches but by the ingest shards' changes. Each change puts the shard's
 * newest view of its changed paths in place and marks their agents dirty, exactly as a
 * committed batch does in a single collector, so the same incremental localiser reads
 * them; agents' liveness (last heard, behind, labels) comes from the shards and late and
 * silent are decided here, from it, by the very code a single collector runs
 * (paths/matrix.ts `markLateEntries`, `markSilentEntries`).
 *
 * A shard that has said nothing for `shardStaleMs` is not heard, not its agents' silence:
 * their late and silent flags hold until it speaks again (as a collector's own stall holds
 * them: collector.ts `checkLate`).
 */
export class ShardFedMatrix extends ObservedPathMatrix {
  private readonly byAgentPaths = new Map<string, Map<string, PathState>>();
  private readonly entries = new Map<string, AgentEntry>();
  private readonly shardOfAgent = new Map<string, string>();
  private readonly shardHeardMs = new Map<string, number>();
  /** Per shard: when its own reports could not reach it (its changes' `inputStalledSinceMs`). */
  private readonly shardDeaf = new Map<string, DeafSpans>();
  private pathTotal = 0;
  /** How long a shard may say nothing (it flushes a heartbeat every second) before its agents' liveness holds. */
  shardStaleMs = 5_000;

  /** Applies one shard change (in order, once: see ChangeOrder). */
  applyChange(c: ShardChange, nowMs = Date.now()): void {
    this.shardHeardMs.set(c.shard, nowMs);
    let deaf = this.shardDeaf.get(c.shard);
    if (deaf === undefined) this.shardDeaf.set(c.shard, (deaf = new DeafSpans()));
    if (c.inputStalledSinceMs !== undefined) deaf.begin(c.inputStalledSinceMs);
    else deaf.end(c.atMs);
    let reason: string | undefined;
    for (const a of c.agents) {
      const r = this.takeLiveness(c.shard, a);
      if (r !== undefined && reason === undefined) reason = r;
    }
    for (const p of c.paths) {
      let m = this.byAgentPaths.get(p.agent);
      if (m === undefined) {
        m = new Map();
        this.byAgentPaths.set(p.agent, m);
      }
      if (!m.has(p.target)) this.pathTotal++;
      m.set(p.target, p);
      this.markDirty(p.agent);
    }
    for (const s of c.signals) if (s.list.length > 0) this.onSignals(s.list, s.atMs);
    if (c.transitions.length > 0) this.onTransitions(c.transitions);
    if (c.paths.length > 0) this.onChange('batch');
    else if (reason !== undefined) this.onChange(reason);
  }

  /** An agent heard by a shard: returns why the diagnosis must look again, if it must. */
  private takeLiveness(shard: string, a: AgentLiveness): string | undefined {
    this.shardOfAgent.set(a.agent, shard);
    const e = this.entries.get(a.agent);
    if (e === undefined || e.agentId !== a.agentId) {
      const fresh = new AgentEntry(
        a.agentId,
        a.agent,
        a.labels,
        'live',
        a.lastSeenMs,
        a.acceptedSeq,
        a.droppedResults,
      );
      fresh.spoolBacklog = a.spoolBacklog;
      fresh.behind = fresh.late = a.spoolBacklog > 0;
      fresh.version = a.version;
      this.entries.set(a.agent, fresh);
      this.markDirty(a.agent);
      return 'agents';
    }
    let reason: string | undefined;
    if (JSON.stringify(e.labels) !== JSON.stringify(a.labels)) {
      e.labels = a.labels;
      this.markDirty(a.agent);
      reason = 'agents';
    }
    if (a.lastSeenMs > e.lastSeenMs) {
      e.lastSeenMs = a.lastSeenMs;
      if (e.state === 'silent') {
        e.state = 'live';
        this.onTransitions([agentTransition(e, 'silent', 'live', a.lastSeenMs)]);
        reason = 'agent-live';
      }
    }
    e.acceptedSeq = Math.max(e.acceptedSeq, a.acceptedSeq);
    e.droppedResults = a.droppedResults;
    e.spoolBacklog = a.spoolBacklog;
    e.behind = a.spoolBacklog > 0;
    e.version = a.version;
    const wasLate = e.late;
    e.late = e.behind;
    return reason ?? (wasLate !== e.late ? 'agents' : undefined);
  }

  /**
   * The entries whose shard has been heard lately (only those may turn late or silent), by
   * shard, with the time that shard's own reports could not reach it (`deafMs`, from its
   * `inputStalledSinceMs`: that time does not count against its agents).
   */
  private heardByShard(nowMs: number): Map<string, { entries: AgentEntry[]; deafMs: DeafMs }> {
    const out = new Map<string, { entries: AgentEntry[]; deafMs: DeafMs }>();
    for (const e of this.entries.values()) {
      const shard = this.shardOfAgent.get(e.agent);
      const heard = shard === undefined ? undefined : this.shardHeardMs.get(shard);
      if (shard === undefined || heard === undefined || nowMs - heard > this.shardStaleMs) continue;
      let group = out.get(shard);
      if (group === undefined) {
        const spans = this.shardDeaf.get(shard);
        group = { entries: [], deafMs: (from) => spans?.deafMs(from, nowMs) ?? 0 };
        out.set(shard, group);
      }
      group.entries.push(e);
    }
    return out;
  }

  /** The shards heard, and when (localiser clock). */
  shards(): ReadonlyMap<string, number> {
    return this.shardHeardMs;
  }

  // ---- the reading surface of the matrix ----

  override apply(): AppliedBatch {
    throw new Error(
      'a localiser (nats.role: localiser) takes no report batches: agents report to the ingest shards',
    );
  }

  override heartbeat(): undefined {
    return undefined;
  }

  /** (The localiser's own `deafMs` is always none: it takes no reports. Its shards' count.) */
  override markSilent(nowMs: number, silentAfterMs: number): AgentLiveness[] {
    const changed: AgentLiveness[] = [];
    for (const { entries, deafMs } of this.heardByShard(nowMs).values())
      changed.push(...markSilentEntries(entries, nowMs, silentAfterMs, deafMs));
    if (changed.length > 0) this.onChange('agent-silent');
    return changed;
  }

  override markLate(
    nowMs: number,
    lateAfterMs: number,
    sinceMs = 0,
    faultSince: (agent: string) => number | undefined = () => undefined,
  ): string[] {
    const changed: string[] = [];
    for (const { entries, deafMs } of this.heardByShard(nowMs).values())
      changed.push(...markLateEntries(entries, nowMs, lateAfterMs, sinceMs, faultSince, deafMs));
    if (changed.length > 0) this.onChange('agent-late');
    return changed;
  }

  override isLate(name: string): boolean {
    return this.entries.get(name)?.late === true;
  }

  override agentNamed(name: string): AgentLiveness | undefined {
    return this.entries.get(name)?.snapshot();
  }

  override agentById(agentId: string): AgentLiveness | undefined {
    for (const e of this.entries.values()) if (e.agentId === agentId) return e.snapshot();
    return undefined;
  }

  override paths(filter: PathFilter = {}): PathState[] {
    const out: PathState[] = [];
    const pick = (m: Map<string, PathState>): void => {
      for (const p of m.values()) {
        if (filter.component !== undefined && p.component !== filter.component) continue;
        if (filter.kind !== undefined && p.kind !== filter.kind) continue;
        if (filter.state !== undefined && p.state !== filter.state) continue;
        out.push(p);
      }
    };
    if (filter.agent !== undefined) {
      const m = this.byAgentPaths.get(filter.agent);
      if (m !== undefined) pick(m);
    } else for (const m of this.byAgentPaths.values()) pick(m);
    return out;
  }

  override forEachPath(visit: (p: PathHead) => void): void {
    for (const m of this.byAgentPaths.values()) for (const p of m.values()) visit(p);
  }

  override path(agent: string, target: string): PathState | undefined {
    return this.byAgentPaths.get(agent)?.get(target);
  }

  override agents(): AgentLiveness[] {
    return [...this.entries.values()].map((e) => e.snapshot());
  }

  override get agentCount(): number {
    return this.entries.size;
  }

  override get size(): number {
    return this.pathTotal;
  }

  override hasAgent(name: string): boolean {
    return this.entries.has(name);
  }

  // The shards keep the matrix in their stores; the localiser's is rebuilt from their snapshots.
  override agentIds(): string[] {
    return [];
  }

  override checkpointAgent(): AgentCheckpoint | undefined {
    return undefined;
  }

  override checkpoint(): MatrixCheckpoint {
    return { agents: [], paths: [] };
  }

  override restore(): void {
    // Nothing to read back: the shards send their snapshots when the localiser starts.
  }
}
