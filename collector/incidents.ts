import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import type { Store } from './store.js';
import type { IncidentDetail, IncidentHead, StoredIncident } from './store/incidents.js';

/**
 * Incidents: a diagnosis that turns unhealthy opens one; while it lasts, every change of the
 * leading hypothesis and of the set of hypotheses is recorded with the diagnosis of that
 * moment (the evidence snapshot); when the diagnosis is healthy again the incident is closed
 * with its recovery time. Everything is in the store at once, so a restart continues the open
 * incident instead of opening a second one, and nothing of the timeline is lost.
 *
 * A settling diagnosis (a fault still arriving, bounded by `alerts.settleMax`) is not
 * recorded: the settled one follows within that bound and is the one recorded. So an
 * incident opens with the settled leading hypothesis, and its timeline has no transient
 * wrong cause for a postmortem to repeat; `firstFailureMs` still comes from the probes (the
 * first change), so the wait moves no time but `openedAtMs`, which is then when the
 * collector concluded. A recovery (a healthy document) never settles.
 *
 * Times: `firstFailureMs` is the earliest `since` of the hypotheses (the first failed probe
 * they explain), `openedAtMs` when the collector concluded (detection), `closedAtMs` when
 * it saw health again (recovery).
 */

/** Kinds of timeline entries. */
export type IncidentEventType = 'opened' | 'leading_changed' | 'hypotheses_changed' | 'recovered';

/** What changed with one diagnosis. */
export interface IncidentUpdate {
  readonly incidentId: number;
  readonly type: IncidentEventType;
}

/**
 * A hypothesis' identity: what it blames, not its evidence counts or confidence. It holds
 * everything an alert's labels are made of (collector/alert-build.ts), so that every alert
 * sent has its hypothesis in the timeline and its link finds the incident: a partition that
 * turns out to cut the collector itself off is an alert of its own, and a change here.
 */
export function hypothesisKey(h: Hypothesis): string {
  const cut = h.cutLabel === undefined ? '' : `${h.cutLabel.key}=${h.cutLabel.values.join(',')}`;
  return `${h.kind}|${h.components.join(',')}|${cut}${h.collectorCutOff === true ? '|cut-off' : ''}`;
}

function setKey(d: Diagnosis): string {
  return d.hypotheses.map(hypothesisKey).sort().join(';');
}

function earliestSince(d: Diagnosis): number {
  let min = Number.POSITIVE_INFINITY;
  for (const h of d.hypotheses) if (h.since < min) min = h.since;
  return Number.isFinite(min) ? min : d.computedAtMs;
}

/** Keeps the incident record in step with the diagnosis. */
export class IncidentTracker {
  private open: StoredIncident | undefined;
  private leadingKey = '';
  private hypothesesKey = '';

  constructor(private readonly store: Store) {
    this.open = store.openIncidentNow();
    if (this.open !== undefined) {
      const last = store.incidentEvents(this.open.id).at(-1)?.diagnosis as Diagnosis | undefined;
      if (last !== undefined && Array.isArray(last.hypotheses)) {
        const lead = last.hypotheses[0];
        this.leadingKey = lead === undefined ? '' : hypothesisKey(lead);
        this.hypothesesKey = setKey(last);
      }
    }
  }

  /** The incident open now, if any. */
  current(): StoredIncident | undefined {
    return this.open;
  }

  /**
   * Takes a new diagnosis (at most one call per change; an unchanged one records nothing).
   * A settling one is skipped unless `evenSettling`: an alert that fired from it (its wait for
   * the settled answer ran out) must find its hypothesis in the timeline.
   * Throws the store's FL_ERR_STORE when it cannot write; the tracker is then unchanged, so
   * the next diagnosis tries again.
   */
  update(d: Diagnosis, { evenSettling = false } = {}): IncidentUpdate | undefined {
    if (d.settling === true && !evenSettling) return undefined;
    const nowMs = d.computedAtMs;
    const open = this.open;
    if (d.healthy || d.hypotheses.length === 0) {
      if (open === undefined) return undefined;
      this.store.updateIncident(
        open.id,
        { ...headOf(open), closedAtMs: nowMs },
        { atMs: nowMs, type: 'recovered', diagnosis: d },
      );
      this.open = undefined;
      this.leadingKey = '';
      this.hypothesesKey = '';
      return { incidentId: open.id, type: 'recovered' };
    }
    const lead = d.hypotheses[0]!;
    const leadKey = hypothesisKey(lead);
    const allKey = setKey(d);
    if (open === undefined) {
      const head = {
        openedAtMs: nowMs,
        firstFailureMs: Math.min(earliestSince(d), nowMs),
        kind: lead.kind,
        summary: lead.summary,
        components: componentsOf(d, []),
      };
      const id = this.store.openIncident(head, { atMs: nowMs, type: 'opened', diagnosis: d });
      this.open = { id, ...head };
      this.leadingKey = leadKey;
      this.hypothesesKey = allKey;
      return { incidentId: id, type: 'opened' };
    }
    if (leadKey === this.leadingKey && allKey === this.hypothesesKey) return undefined;
    const type: IncidentEventType =
      leadKey === this.leadingKey ? 'hypotheses_changed' : 'leading_changed';
    const head: IncidentHead = {
      firstFailureMs: Math.min(open.firstFailureMs, earliestSince(d)),
      kind: lead.kind,
      summary: lead.summary,
      components: componentsOf(d, open.components),
    };
    this.store.updateIncident(open.id, head, { atMs: nowMs, type, diagnosis: d });
    this.open = { ...open, ...head };
    this.leadingKey = leadKey;
    this.hypothesesKey = allKey;
    return { incidentId: open.id, type };
  }
}

function headOf(i: StoredIncident): IncidentHead {
  return {
    firstFailureMs: i.firstFailureMs,
    kind: i.kind,
    summary: i.summary,
    components: i.components,
  };
}

function componentsOf(d: Diagnosis, before: readonly string[]): string[] {
  const all = new Set(before);
  for (const h of d.hypotheses) for (const c of h.components) all.add(c);
  return [...all].sort();
}

export function incidentDetail(store: Store, id: number): IncidentDetail | undefined {
  const i = store.incident(id);
  if (i === undefined) return undefined;
  return { ...i, events: store.incidentEvents(id) };
}
