import type { FaultKind, Hypothesis, RuledOut } from '../../wire/diagnosis.js';
import type { Evidence } from './evidence.js';
import type { LocaliseComponent } from './types.js';
import { countBoth, hasBit, pushTo, sorted, withBit } from './views.js';

/**
 * What is ruled out: every database touched by a failing path or named by a hypothesis,
 * ruled out only with its protocol answering from agents on its own side of any cut;
 * otherwise "cannot be ruled out", with the reason.
 */
export function ruledOutOf(ev: Evidence, hypotheses: readonly Hypothesis[]): RuledOut[] {
  // Sound agents (as bitsets of agent ids) by the group their host is in: a database's side.
  const agentsByGroup = new Map<string, Uint32Array>();
  const soundByHost = new Map<string, string[]>();
  for (const a of ev.sound) {
    pushTo(soundByHost, ev.host(a), a);
    const g = ev.groupOf.get(ev.host(a));
    if (g === undefined) continue;
    agentsByGroup.set(
      g,
      withBit(agentsByGroup.get(g) ?? new Uint32Array(0), ev.agentIds.id(a), true),
    );
  }
  const touched: string[] = [];
  for (const [name, totals] of ev.towardTotals) if (totals.touching > 0) touched.push(name);
  return ruleOut(hypotheses, touched, ev.components, (name) => {
    const totals = ev.towardTotals.get(name);
    const g = ev.groupOf.get(name);
    const side = (g === undefined ? undefined : agentsByGroup.get(g)) ?? new Uint32Array(0);
    let sideSize = countBoth(side, side);
    let okOnSide = totals ? countBoth(totals.ok, side) : 0;
    let triedOnSide = totals ? countBoth(totals.tried, side) : 0;
    // Agents on the component itself are not its side's witnesses.
    for (const a of soundByHost.get(name) ?? []) {
      const id = ev.agentIds.id(a);
      if (!hasBit(side, id)) continue;
      sideSize -= 1;
      if (totals && hasBit(totals.ok, id)) okOnSide -= 1;
      if (totals && hasBit(totals.tried, id)) triedOnSide -= 1;
    }
    // The kinds probed by anyone: a database speaks one protocol, whoever asks.
    return {
      failing: totals?.failing ?? 0,
      aboveNetwork: totals?.aboveNetwork ?? 0,
      sideSize,
      okOnSide,
      triedOnSide,
      kinds: triedOnSide > 0 && totals ? sorted(totals.kinds.keys()) : [],
    };
  });
}

const culpritKinds: ReadonlySet<FaultKind> = new Set([
  'service_down',
  'service_unresponsive',
  'host_unreachable',
  'source_fault',
  'packet_loss',
  'unexplained',
]);

/** What ruling out needs to know of one component. */
interface RuleOutEvidence {
  /** Failing paths toward it from live agents, and how many of them above the network layer. */
  readonly failing: number;
  readonly aboveNetwork: number;
  /** Sound agents on its side of any cut (not on it), those with a protocol path, those succeeding. */
  readonly sideSize: number;
  readonly triedOnSide: number;
  readonly okOnSide: number;
  /** Protocol kinds probed. */
  readonly kinds: readonly string[];
}

function ruleOut(
  hypotheses: readonly Hypothesis[],
  failingTo: readonly string[],
  components: ReadonlyMap<string, LocaliseComponent>,
  evidence: (component: string) => RuleOutEvidence,
): RuledOut[] {
  // Targets of failing paths, and whatever a hypothesis names (a source fault's own host).
  const touched = new Set<string>(failingTo);
  for (const h of hypotheses) for (const c of h.components) touched.add(c);
  const out: RuledOut[] = [];
  for (const name of sorted(touched)) {
    const c = components.get(name);
    if (c?.role !== 'database') continue;
    const blamed = hypotheses.find((h) => culpritKinds.has(h.kind) && h.components.includes(name));
    if (blamed) {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: not ruled out — it is implicated (${blamed.kind}): ${blamed.summary}`,
      });
      continue;
    }
    const unseen = hypotheses.find(
      (h) => h.collectorCutOff === true && (h.groups[1]?.members ?? []).includes(name),
    );
    if (unseen) {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: cannot be ruled out — the collector's side is cut off and cannot see it; nothing points at it either`,
      });
      continue;
    }
    const e = evidence(name);
    const networkOnly = e.aboveNetwork === 0;
    const kinds = e.kinds.join('/');
    if (networkOnly && e.okOnSide > 0) {
      const cut = e.triedOnSide - e.okOnSide;
      out.push({
        component: name,
        canBeRuledOut: true,
        reason: `${name}: ${kinds} handshake succeeds from ${e.okOnSide}/${e.triedOnSide} agents on its side${cut > 0 ? ` (the other ${cut} cannot reach it at the network layer)` : ''}; ${e.failing > 0 ? 'failures toward it are network-layer timeouts, never refused connections or protocol errors' : 'no failure reaches it at the service layer'}`,
      });
    } else if (networkOnly) {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: cannot be ruled out — ${e.sideSize === 0 ? 'no reporting agent is on its side of the cut' : 'no agent gets through to its service'}; but every failure toward it is a network-layer timeout, so nothing points at the database either`,
      });
    } else {
      out.push({
        component: name,
        canBeRuledOut: false,
        reason: `${name}: cannot be ruled out — some failures toward it are at the service layer`,
      });
    }
  }
  return out;
}
