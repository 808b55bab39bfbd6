import type { Diagnosis } from '../../wire/diagnosis.js';
import type { AgentLiveness, PathState } from '../types.js';
import { gatherEvidence, type EvidenceInput } from './evidence.js';
import { rank } from './rank.js';
import { ruledOutOf } from './rule-out.js';
import { unstableMs } from './kinds/packet-loss.js';
import { rules } from './rules.js';
import type { LocaliseComponent, LocaliserOptions, Observer } from './types.js';
import {
  HostIds,
  TowardTotals,
  livenessKey,
  sameMeaning,
  summarise,
  viewCounts,
  withBit,
  type AgentView,
} from './views.js';

export type { LocaliseComponent, LocaliserOptions, Observer } from './types.js';

/**
 * Localisation: from the live path matrix to the diagnosis document (DESIGN.md). Pure: no
 * I/O, no clock (the caller passes `nowMs`), deterministic whatever the input order.
 *
 * The parts, in the order a diagnosis runs through them:
 * - views.ts: each agent's paths summarised once per change (reachability as a bitset over
 *   hosts, its failing, degraded and full-size-echo paths, its word on each component);
 * - evidence.ts: what every rule reads — source faults, lit groups, dark clusters (by label,
 *   around the collector's side, by time), where the collector stands;
 * - kinds/<kind>.ts: one evidence rule per fault kind, proposing candidate explanations;
 *   rules.ts lists them;
 * - rank.ts: the search that chooses among the candidates and ranks the hypotheses;
 * - rule-out.ts: what is ruled out, and what cannot be.
 *
 * Cost: a diagnosis costs about agents × hosts / 32 word operations plus the failing paths.
 * `IncrementalLocaliser` keeps the views between report batches; `localise()` builds one
 * from scratch, so the two agree by construction (and by test).
 */

export interface LocaliseInput {
  readonly paths: readonly PathState[];
  readonly agents: readonly AgentLiveness[];
  readonly inventory: readonly LocaliseComponent[];
  /** The collector's own topology labels: says which side of a cut it is on. */
  readonly collectorLabels?: Readonly<Record<string, string>>;
  /** Where the collector stands (host, local agents, labels). */
  readonly observer?: Observer;
  readonly nowMs: number;
  /** Share of reachable hosts an agent must fail to be a source fault (default 0.8). */
  readonly sourceFaultShare?: number;
  /** Hosts dark within this many ms of each other are one event (default 10 s). */
  readonly eventWindowMs?: number;
}

/** Rows `localise()` grouped itself: one agent's, never shared, so kept without a copy. */
const ownRows = new WeakSet<readonly PathState[]>();

/**
 * The localiser kept warm between report batches: it holds the matrix per agent and
 * re-reads only the agents whose paths changed, so a diagnosis after one batch costs the
 * changed agent's paths plus the failing ones, not the whole matrix. `diagnose()` returns
 * exactly what `localise()` returns for the same paths, agents and inventory.
 */
export class IncrementalLocaliser {
  private readonly hosts = new HostIds();
  /** Each agent's paths: as given to `replaceAgentPaths`, keyed by target once upserted into. */
  private readonly pathsByAgent = new Map<string, Map<string, PathState> | readonly PathState[]>();
  private readonly views = new Map<string, AgentView>();
  private readonly dirty = new Set<string>();
  private agents: readonly AgentLiveness[] = [];
  /** Per host id: live agents it answers, and live agents with any verdict on it. */
  private reachers: Int32Array = new Int32Array(64);
  private tried: Int32Array = new Int32Array(64);
  /** The views the two counts above are made of. */
  private readonly counted = new Map<string, AgentView>();
  private readonly agentIds = new HostIds();
  private readonly towardTotals = new Map<string, TowardTotals>();
  /** The last diagnosis, and what it was made from beyond the views. */
  private last:
    { diagnosis: Diagnosis; agentsKey: string; usesNow: boolean; staleAtMs: number } | undefined;

  constructor(private readonly options: LocaliserOptions) {}

  /** Replaces the agents' liveness (every agent the collector knows). */
  setAgents(agents: readonly AgentLiveness[]): void {
    this.agents = agents;
  }

  /** Inserts or replaces paths, keyed by (agent, target): what one report batch changed. */
  upsertPaths(paths: readonly PathState[]): void {
    for (const p of paths) {
      const held = this.pathsByAgent.get(p.agent);
      let row: Map<string, PathState>;
      if (held instanceof Map) row = held;
      else {
        row = new Map((held ?? []).map((q) => [q.target, q]));
        this.pathsByAgent.set(p.agent, row);
      }
      row.set(p.target, p);
      this.dirty.add(p.agent);
    }
  }

  /** Replaces every path of one agent (an empty list forgets the agent's paths). */
  replaceAgentPaths(agent: string, paths: readonly PathState[]): void {
    if (ownRows.has(paths)) {
      this.pathsByAgent.set(agent, paths);
      this.dirty.add(agent);
      return;
    }
    for (const p of paths)
      if (p.agent !== agent)
        throw new Error(
          `replaceAgentPaths(${agent}): path ${p.agent} → ${p.target} is another agent's`,
        );
    this.pathsByAgent.set(agent, paths.slice());
    this.dirty.add(agent);
  }

  /** The diagnosis of the matrix as it stands. */
  diagnose(nowMs: number): Diagnosis {
    let changed = false;
    for (const agent of this.dirty) {
      const row = this.pathsByAgent.get(agent);
      const rows = row instanceof Map ? [...row.values()] : (row ?? []);
      const old = this.views.get(agent);
      // Most batches only say again what the last one said: then the view stands.
      if (old && sameMeaning(old.rows, rows)) continue;
      changed = true;
      if (rows.length > 0) this.views.set(agent, summarise(agent, rows, this.hosts));
      else this.views.delete(agent);
    }
    this.dirty.clear();
    const agentsKey = livenessKey(this.agents);
    const cached = this.last;
    if (
      !changed &&
      cached &&
      cached.agentsKey === agentsKey &&
      !cached.usesNow &&
      nowMs < cached.staleAtMs
    )
      return { ...cached.diagnosis, computedAtMs: Math.max(0, Math.round(nowMs)) };
    // Silent and late agents' views are older than what is happening (viewCounts).
    const stale = new Set(this.agents.filter((a) => !viewCounts(a)).map((a) => a.agent));
    const live = new Map<string, AgentView>();
    for (const [agent, v] of this.views) if (v.counted && !stale.has(agent)) live.set(agent, v);
    this.recount(live);
    const out = diagnoseViews({
      options: this.options,
      agents: this.agents,
      live,
      hosts: this.hosts,
      reachers: this.reachers,
      tried: this.tried,
      agentIds: this.agentIds,
      towardTotals: this.towardTotals,
      nowMs,
    });
    // A recent fall reads as instability (kinds/packet-loss.ts) until it is `unstableMs` old:
    // then the same views mean something else.
    let staleAtMs = Number.POSITIVE_INFINITY;
    for (const v of live.values())
      for (const p of v.fell) {
        const until = (p.fellAtMs ?? 0) + unstableMs;
        if (until > nowMs && until < staleAtMs) staleAtMs = until;
      }
    this.last = { diagnosis: out.diagnosis, agentsKey, usesNow: out.usesNow, staleAtMs };
    return out.diagnosis;
  }

  /** Brings the per-host counts in line with the live views, touching only what changed. */
  private recount(live: ReadonlyMap<string, AgentView>): void {
    const size = this.hosts.names.length;
    if (size > this.reachers.length) {
      const grow = (a: Int32Array): Int32Array => {
        const b = new Int32Array(Math.max(size, 2 * a.length));
        b.set(a);
        return b;
      };
      this.reachers = grow(this.reachers);
      this.tried = grow(this.tried);
    }
    const apply = (v: AgentView, sign: number): void => {
      for (const id of v.yesIds) {
        this.reachers[id] = (this.reachers[id] ?? 0) + sign;
        this.tried[id] = (this.tried[id] ?? 0) + sign;
      }
      for (const id of v.no) this.tried[id] = (this.tried[id] ?? 0) + sign;
      const agentId = this.agentIds.id(v.agent);
      for (const [component, t] of v.toward) {
        let totals = this.towardTotals.get(component);
        if (!totals) {
          totals = new TowardTotals();
          this.towardTotals.set(component, totals);
        }
        totals.touching += sign * t.touching;
        totals.failing += sign * t.failing;
        totals.aboveNetwork += sign * t.aboveNetwork;
        if (t.protoKinds.length > 0) {
          totals.tried = withBit(totals.tried, agentId, sign > 0);
          totals.ok = withBit(totals.ok, agentId, sign > 0 && t.protoOk);
        }
        for (const k of t.protoKinds) {
          const n = (totals.kinds.get(k) ?? 0) + sign;
          if (n > 0) totals.kinds.set(k, n);
          else totals.kinds.delete(k);
        }
      }
    };
    for (const [agent, v] of this.counted) {
      if (live.get(agent) === v) continue;
      apply(v, -1);
      this.counted.delete(agent);
    }
    for (const [agent, v] of live) {
      if (this.counted.get(agent) === v) continue;
      apply(v, 1);
      this.counted.set(agent, v);
    }
  }
}

/**
 * Localises the faults in the path matrix: ranked hypotheses and what is ruled out.
 */
export function localise(input: LocaliseInput): Diagnosis {
  const l = new IncrementalLocaliser({
    inventory: input.inventory,
    ...(input.collectorLabels ? { collectorLabels: input.collectorLabels } : {}),
    ...(input.observer ? { observer: input.observer } : {}),
    ...(input.sourceFaultShare === undefined ? {} : { sourceFaultShare: input.sourceFaultShare }),
    ...(input.eventWindowMs === undefined ? {} : { eventWindowMs: input.eventWindowMs }),
  });
  const byAgent = new Map<string, PathState[]>();
  // A matrix usually lists an agent's paths together: look its bucket up once per run.
  let lastAgent: string | undefined;
  let bucket: PathState[] = [];
  for (const p of input.paths) {
    if (p.agent !== lastAgent) {
      lastAgent = p.agent;
      bucket = byAgent.get(p.agent) ?? [];
      ownRows.add(bucket);
      byAgent.set(p.agent, bucket);
    }
    bucket.push(p);
  }
  for (const [agent, paths] of byAgent) l.replaceAgentPaths(agent, paths);
  l.setAgents(input.agents);
  return l.diagnose(input.nowMs);
}

function diagnoseViews(input: EvidenceInput): { diagnosis: Diagnosis; usesNow: boolean } {
  const ev = gatherEvidence(input);
  const { hypotheses, usesNow } = rank(ev, rules);
  const diagnosis = {
    healthy: hypotheses.length === 0,
    hypotheses,
    ruledOut: ruledOutOf(ev, hypotheses),
    computedAtMs: Math.max(0, Math.round(input.nowMs)),
  };
  return { diagnosis, usesNow };
}
