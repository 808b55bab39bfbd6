import type { Diagnosis } from '../wire/diagnosis.js';
import { localise, type LocaliserOptions } from './localise/localise.js';
import type { Transition } from './paths/checkpoint.js';
import type { AgentLiveness, PathState } from './types.js';

/**
 * The diagnosis in hindsight: the path matrix as it stood at `atMs`, rebuilt from the state
 * transitions recorded since — which by now include those of agents that were cut off from
 * the collector and delivered their spooled results after the heal — localised again with
 * every agent that reported since counted as live. During a cut the collector sees one side;
 * afterwards this shows which hosts reached each other, so the incident can say what the cut
 * really was.
 */
export function hindsightDiagnosis(
  paths: readonly PathState[],
  agents: readonly AgentLiveness[],
  transitions: readonly Transition[],
  atMs: number,
  options: LocaliserOptions,
): Diagnosis {
  const byPath = new Map<string, Transition[]>();
  for (const t of transitions) {
    if (t.kind === 'agent') continue;
    const key = `${t.agent}\u0000${t.target}`;
    const list = byPath.get(key);
    if (list === undefined) byPath.set(key, [t]);
    else list.push(t);
  }
  const then: PathState[] = paths.map((p) => {
    const ts = (byPath.get(`${p.agent}\u0000${p.target}`) ?? []).sort((a, b) => a.atMs - b.atMs);
    let before: Transition | undefined;
    let after: Transition | undefined;
    for (const t of ts) {
      if (t.atMs <= atMs) before = t;
      else if (after === undefined) after = t;
    }
    const state = (before?.toState ?? after?.fromState ?? p.state) as PathState['state'];
    const cls =
      (before ? before.toClass : after?.fromClass) ?? (state === 'ok' ? 'ok' : p.lastClass);
    return {
      ...p,
      state,
      lastClass: state === 'ok' ? 'ok' : cls,
      sinceMs: before?.atMs ?? (after ? Math.min(p.sinceMs, atMs) : p.sinceMs),
    };
  });
  // Everyone whose reports came in since is live now: their view of the time counts.
  return localise({
    paths: then,
    agents,
    inventory: options.inventory,
    ...(options.observer ? { observer: options.observer } : {}),
    ...(options.eventWindowMs === undefined ? {} : { eventWindowMs: options.eventWindowMs }),
    nowMs: atMs,
  });
}

/** Hindsight diagnoses kept for postmortems read again. */
const maxHindsights = 16;

/**
 * The diagnosis in hindsight of closed incidents: a full localisation of the whole matrix, on
 * this thread — so made once per incident and made again only when more of its transitions
 * arrived (late spooled reports), not on every read of the postmortem.
 */
export class HindsightCache {
  private readonly known = new Map<
    number,
    { key: string; value: { atMs: number; diagnosis: Diagnosis } }
  >();

  constructor(private readonly options: LocaliserOptions) {}

  /** Incident `id`'s diagnosis at `midMs`, from the matrix now and `transitions` since. */
  of(
    id: number,
    midMs: number,
    transitions: readonly Transition[],
    paths: () => readonly PathState[],
    agents: () => readonly AgentLiveness[],
  ): { atMs: number; diagnosis: Diagnosis } {
    const atMs = Math.round(midMs);
    const key = `${transitions.length}:${transitions[transitions.length - 1]?.atMs ?? 0}`;
    const known = this.known.get(id);
    if (known?.key === key) return known.value;
    const value = {
      atMs,
      diagnosis: hindsightDiagnosis(paths(), agents(), transitions, atMs, this.options),
    };
    // A few recent incidents are read again; older ones are rare.
    if (this.known.size >= maxHindsights) this.known.clear();
    this.known.set(id, { key, value });
    return value;
  }
}
