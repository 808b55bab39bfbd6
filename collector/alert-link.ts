import type { Diagnosis } from '../wire/diagnosis.js';
import { buildAlert, labelsFingerprint, severities } from './alert-build.js';
import type { AlertsConfig } from './alerts-config.js';
import type { StoredIncident, StoredIncidentEvent } from './store/incidents.js';

/**
 * Which incident an alert belongs to, from the fingerprint in its link
 * (`generatorURL = <externalUrl>/?alert=<fingerprint>`): what the dashboard opens when the
 * on-call engineer clicks it.
 *
 * A fingerprint is the digest of the alert's labels, and those come from the hypothesis
 * (kind, components, cut label), the config's extra labels and a severity. Every hypothesis
 * an incident went through is in its timeline, so the labels are made again from it for each
 * severity: no table of sent alerts to keep, it survives restarts, and the other collector
 * of an HA pair (same labels, same fingerprint) answers the same.
 */

/** An alert's incident, as `GET /api/v1/alerts/:fingerprint` answers it. */
export interface AlertLink {
  readonly fingerprint: string;
  readonly incidentId: number;
  readonly alertname: string;
  readonly kind: string;
}

/** What {@link findAlertIncident} reads: the store's incidents, newest first. */
export interface IncidentSource {
  incidents(limit: number): StoredIncident[];
  incidentEvents(id: number): StoredIncidentEvent[];
}

/** Incidents searched, newest first: an alert link older than this many is not found. */
export const maxIncidentsSearched = 500;

export function findAlertIncident(
  fingerprint: string,
  source: IncidentSource,
  config: Pick<AlertsConfig, 'labels' | 'externalUrl' | 'runbookUrl'>,
  /** This collector's name (see AlertContext.collector). */
  collector?: string,
): AlertLink | undefined {
  const seen = new Set<string>();
  for (const incident of source.incidents(maxIncidentsSearched)) {
    for (const event of source.incidentEvents(incident.id)) {
      const d = event.diagnosis as Diagnosis | undefined;
      if (d === undefined || !Array.isArray(d.hypotheses)) continue;
      for (const h of d.hypotheses) {
        // Severity aside, the labels do not depend on the context: none is needed.
        const ctx = { roles: {}, totalPaths: 0, ...(collector === undefined ? {} : { collector }) };
        const { labels } = buildAlert(h, d, ctx, config);
        const key = JSON.stringify(labels);
        if (seen.has(key)) continue;
        seen.add(key);
        for (const severity of severities) {
          if (labelsFingerprint({ ...labels, severity }) === fingerprint) {
            return {
              fingerprint,
              incidentId: incident.id,
              alertname: labels.alertname ?? '',
              kind: h.kind,
            };
          }
        }
      }
    }
    seen.clear();
  }
  return undefined;
}
