import type { PathSummary, ReportBatch } from '../../wire/report.js';
import type { FailureClass, ProbeResult } from '../../wire/result.js';
import { viewersYaml } from './viewer.js';

/** Builders of report batches for the collector's tests. */

export const t0 = 1_700_000_000_000;

export function result(
  target: string,
  cls: FailureClass,
  seq: number,
  startedAtMs: number,
  kind = target.split('/')[1] ?? 'tcp',
): ProbeResult {
  return {
    agent: 'app-1',
    target,
    address: '198.18.0.2:5432',
    kind,
    class: cls,
    seq,
    startedAtMs,
    timings: cls === 'ok' ? { connectMs: 1, totalMs: 1 } : { totalMs: 1000 },
    ...(cls === 'ok' ? {} : { error: { code: 'ETIMEDOUT', message: 'connect timed out' } }),
  };
}

export function summary(
  target: string,
  fromMs: number,
  lastSeq: number,
  s: {
    count?: number;
    ok?: number;
    failures?: Partial<Record<FailureClass, number>>;
    p50?: number;
    p99?: number;
    loss?: number;
    /** Echoes sent, with `loss`: default 3 per probe (the icmp probe's default count). */
    echoes?: number;
    lastClass?: FailureClass;
    periodMs?: number;
    kind?: string;
  } = {},
): PathSummary {
  const failures = s.failures ?? {};
  const failed = Object.values(failures).reduce((a, b) => a + b, 0);
  const count = s.count ?? (s.ok ?? 1) + failed;
  const ok = s.ok ?? count - failed;
  const p50 = s.p50 ?? 1;
  return {
    target,
    kind: s.kind ?? target.split('/')[1] ?? 'tcp',
    fromMs,
    toMs: fromMs + (s.periodMs ?? 1000),
    count,
    ok,
    failures,
    ...(ok > 0
      ? { latencyMs: { min: p50, p50, p90: p50, p99: s.p99 ?? p50, max: s.p99 ?? p50 } }
      : {}),
    ...(s.loss !== undefined ? { lossRatio: s.loss, echoes: s.echoes ?? 3 * count } : {}),
    lastClass: s.lastClass ?? (failed > 0 ? (Object.keys(failures)[0] as FailureClass) : 'ok'),
    lastSeq,
  };
}

export function batch(
  seq: number,
  parts: {
    results?: ProbeResult[];
    summaries?: PathSummary[];
    agent?: string;
    agentId?: string;
    labels?: Record<string, string>;
    dropped?: { batches: number; results: number };
  } = {},
): ReportBatch {
  return {
    agentId: parts.agentId ?? 'agent-app-1-0001',
    agent: parts.agent ?? 'app-1',
    ...(parts.labels !== undefined ? { labels: parts.labels } : { labels: { zone: 'a' } }),
    seq,
    ...(parts.dropped !== undefined ? { dropped: parts.dropped } : {}),
    createdAtMs: t0 + seq * 1000,
    results: parts.results ?? [],
    summaries: parts.summaries ?? [],
  };
}

/**
 * One report period of `agent` probing db-1: its ping answers, postgres's port is `pg`.
 * Fits {@link dbInventoryYaml}; `baseMs` is the timestamp of seq 0.
 */
export function dbPeriod(
  agent: string,
  seq: number,
  pg: FailureClass,
  baseMs = 1_700_000_000_000,
): ReportBatch {
  const at = baseMs + seq * 1000;
  return batch(seq, {
    agent,
    agentId: `agent-${agent}-0001`,
    labels: { zone: 'a' },
    results: [
      { ...result('db-1/icmp', 'ok', seq * 2 - 1, at, 'icmp'), agent },
      { ...result('db-1/postgres/tcp', pg, seq * 2, at, 'tcp'), agent },
    ],
  });
}

/** Collector config lines of the inventory {@link dbPeriod} reports on: app-1, app-2, db-1. */
export const dbInventoryYaml: readonly string[] = [
  'inventory:',
  '  components:',
  '    - { name: app-1, address: 127.0.0.1, role: api, labels: { zone: a } }',
  '    - { name: app-2, address: 127.0.0.2, role: api, labels: { zone: a } }',
  '    - name: db-1',
  '      address: 127.0.0.3',
  '      role: database',
  '      labels: { zone: b }',
  '      services: [{ name: postgres, kind: postgres }]',
];

/**
 * A collector's YAML on {@link dbInventoryYaml}: one fleet token, the data directory, and
 * `more` lines (sections of its own) before the inventory.
 */
export function dbCollectorYaml(o: {
  dataDir: string;
  token: string;
  listen?: string;
  more?: readonly string[];
}): string {
  return [
    `listen: ${o.listen ?? '127.0.0.1:0'}`,
    `dataDir: ${o.dataDir}`,
    'tokens:',
    `  - { name: fleet, token: ${o.token} }`,
    ...viewersYaml,
    ...(o.more ?? []),
    ...dbInventoryYaml,
    '',
  ].join('\n');
}

/**
 * POSTs a batch to a collector's `/api/v1/reports` as an agent would (uncompressed) and
 * throws with the answer unless it is 200.
 */
export async function postReport(baseUrl: string, token: string, b: ReportBatch): Promise<void> {
  const res = await fetch(`${baseUrl}/api/v1/reports`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(b),
    signal: AbortSignal.timeout(5_000),
  });
  if (res.status !== 200)
    throw new Error(`POST /api/v1/reports: ${res.status} ${await res.text()}`);
}
