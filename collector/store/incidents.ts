import type { Database as Db } from 'better-sqlite3';
import type { Statements } from './statements.js';

/** The incidents and their timelines (tables `incidents`, `incident_events`). */

/** What opens an incident. */
export interface NewIncident {
  /** When the diagnosis turned unhealthy (detection). */
  readonly openedAtMs: number;
  /** The earliest failure the diagnosis explains. */
  readonly firstFailureMs: number;
  /** The leading hypothesis. */
  readonly kind: string;
  readonly summary: string;
  /** Every component the incident's hypotheses named so far, sorted. */
  readonly components: readonly string[];
}

/** An incident's head as it changes; `closedAtMs` set closes it. */
export interface IncidentHead extends Omit<NewIncident, 'openedAtMs'> {
  readonly closedAtMs?: number;
}

export interface StoredIncident extends NewIncident {
  readonly id: number;
  readonly closedAtMs?: number;
}

/** One entry of an incident's timeline, with the diagnosis at that moment. */
export interface IncidentEventRecord {
  readonly atMs: number;
  /** `opened`, `leading_changed`, `hypotheses_changed`, `recovered`. */
  readonly type: string;
  readonly diagnosis: unknown;
}

export type StoredIncidentEvent = IncidentEventRecord;

/** An incident with its timeline, as the API returns it. */
export interface IncidentDetail extends StoredIncident {
  readonly events: readonly StoredIncidentEvent[];
}

interface IncidentRow {
  id: number;
  opened_at_ms: number;
  first_failure_ms: number;
  closed_at_ms: number | null;
  kind: string;
  summary: string;
  components: string;
}

interface IncidentEventRow {
  at_ms: number;
  type: string;
  diagnosis: string;
}

function toStoredIncident(r: IncidentRow): StoredIncident {
  return {
    id: r.id,
    openedAtMs: r.opened_at_ms,
    firstFailureMs: r.first_failure_ms,
    ...(r.closed_at_ms === null ? {} : { closedAtMs: r.closed_at_ms }),
    kind: r.kind,
    summary: r.summary,
    components: JSON.parse(r.components) as string[],
  };
}

/**
 * The incidents' tables. The caller (Store) guards each call: it names what failed and
 * refuses a closed store.
 */
export class IncidentTable {
  constructor(
    private readonly db: Db,
    private readonly stmt: Statements,
  ) {}

  /**
   * Opens an incident with its first event, in one transaction; returns its id.
   * `components` and the event's diagnosis are stored as JSON.
   */
  open(i: NewIncident, event: IncidentEventRecord): number {
    return this.db.transaction(() => {
      const id = Number(
        this.stmt.insertIncident.run(
          i.openedAtMs,
          i.firstFailureMs,
          i.kind,
          i.summary,
          JSON.stringify(i.components),
        ).lastInsertRowid,
      );
      this.insertEvent(id, event);
      return id;
    })();
  }

  /** Updates an incident's head (and closes it when `closedAtMs` is set) and adds an event. */
  update(id: number, head: IncidentHead, event: IncidentEventRecord): void {
    this.db.transaction(() => {
      this.stmt.updateIncident.run(
        head.firstFailureMs,
        head.kind,
        head.summary,
        JSON.stringify(head.components),
        head.closedAtMs ?? null,
        id,
      );
      this.insertEvent(id, event);
    })();
  }

  /** Incidents, newest first; `beforeId` pages back. */
  list(limit: number, beforeId: number): StoredIncident[] {
    return (this.stmt.incidents.all(beforeId, limit) as IncidentRow[]).map(toStoredIncident);
  }

  get(id: number): StoredIncident | undefined {
    const row = this.stmt.incident.get(id) as IncidentRow | undefined;
    return row === undefined ? undefined : toStoredIncident(row);
  }

  /** The incident still open, if any (at most one is). */
  openNow(): StoredIncident | undefined {
    const row = this.stmt.openIncident.get() as IncidentRow | undefined;
    return row === undefined ? undefined : toStoredIncident(row);
  }

  /** An incident's timeline, oldest first. */
  events(id: number): StoredIncidentEvent[] {
    return (this.stmt.incidentEvents.all(id) as IncidentEventRow[]).map((r) => ({
      atMs: r.at_ms,
      type: r.type,
      diagnosis: JSON.parse(r.diagnosis) as unknown,
    }));
  }

  private insertEvent(id: number, e: IncidentEventRecord): void {
    this.stmt.insertIncidentEvent.run(id, e.atMs, e.type, JSON.stringify(e.diagnosis));
  }
}
