import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ReceivedAlert } from '../lab/alertmanager.js';
import type { ExpectedHypothesis } from '../lab/expect.js';
import { collectorCutOffAlert } from '../collector/alert-build.js';

/**
 * What the detection bench's collector sent its alert receivers: a webhook sink (one POST per
 * batch of status changes: every firing is a page) recorded here, and an Alertmanager sink
 * recorded by the front of lab/alertmanager.ts. Both reduce to {@link AlertEvent}s,
 * and {@link firings} picks out the moments an alert started firing.
 */

/** One alert as a receiver got it. */
export interface AlertEvent {
  /** When the receiver got it (epoch ms). */
  readonly atMs: number;
  readonly firing: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** Its annotations (summary, description), for reading what an unexpected alert said. */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** A webhook receiver that keeps every alert of every delivery, in order. */
export interface WebhookLog {
  /** What the webhook sink's `url` takes. */
  readonly url: string;
  readonly events: readonly AlertEvent[];
  /** Deliveries it could not read (should stay 0). */
  readonly badBodies: number;
  stop(): Promise<void>;
}

/** Most alert events kept: a bench run sends a few hundred at most. */
const maxEvents = 1_000_000;

/** Starts a webhook receiver on `host` (a free port); it answers 200 to every POST. */
export async function startWebhookLog(host: string): Promise<WebhookLog> {
  const events: AlertEvent[] = [];
  let badBodies = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 16 << 20) chunks.push(c);
    });
    req.on('end', () => {
      const atMs = Date.now();
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          alerts?: {
            status?: string;
            labels?: Record<string, string>;
            annotations?: Record<string, string>;
          }[];
        };
        for (const a of body.alerts ?? []) {
          if (events.length >= maxEvents) break;
          events.push({
            atMs,
            firing: a.status === 'firing',
            labels: a.labels ?? {},
            ...(a.annotations === undefined ? {} : { annotations: a.annotations }),
          });
        }
      } catch {
        badBodies++;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/hook`,
    events,
    get badBodies() {
      return badBodies;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Alertmanager posts as events: an alert whose `endsAt` is not after its arrival (with a
 * second of slack) is a resolve, anything else is firing.
 */
export function alertmanagerEvents(received: readonly ReceivedAlert[]): AlertEvent[] {
  return received.map((a) => ({
    atMs: a.atMs,
    firing: !(Date.parse(a.endsAt) <= a.atMs + 1000),
    labels: a.labels,
  }));
}

/** An alert's identity: its labels without severity (a severity change is the same cause). */
export function alertKey(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .filter((k) => k !== 'severity')
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(' ');
}

/** One line for tables: `kind [components]` (the collector's cut says so). */
export function alertLine(labels: Readonly<Record<string, string>>): string {
  const cut = labels.alertname === collectorCutOffAlert ? ' (collector cut off)' : '';
  return `${labels.kind ?? labels.alertname ?? '?'} [${(labels.component ?? '').replaceAll(',', ', ')}]${cut}`;
}

/**
 * The moments an alert started firing: a firing event of an alert that was not firing
 * (never seen, or resolved since). Re-sends of a firing alert are not new pages. Call it with
 * every event since the receiver started, then filter by time: the state carries over.
 */
export function firings(events: readonly AlertEvent[]): AlertEvent[] {
  const firingNow = new Set<string>();
  const out: AlertEvent[] = [];
  for (const e of events) {
    const key = alertKey(e.labels);
    if (e.firing) {
      if (!firingNow.has(key)) out.push(e);
      firingNow.add(key);
    } else firingNow.delete(key);
  }
  return out;
}

/** Whether an alert's labels name the expected hypothesis (kind, components, the collector's cut). */
export function alertMatches(
  labels: Readonly<Record<string, string>>,
  want: ExpectedHypothesis,
): boolean {
  if (labels.kind !== want.kind) return false;
  if (want.components !== undefined) {
    const got = (labels.component ?? '').split(',').filter((c) => c !== '');
    if ([...got].sort().join(',') !== [...want.components].sort().join(',')) return false;
  }
  if (
    want.collectorCutOff !== undefined &&
    (labels.alertname === collectorCutOffAlert) !== want.collectorCutOff
  ) {
    return false;
  }
  return true;
}
