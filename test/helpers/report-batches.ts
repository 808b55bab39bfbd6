import type { PathSummary, ReportBatch } from '../../wire/report.js';
import type { FailureClass, ProbeResult } from '../../wire/result.js';

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
    ...(s.loss !== undefined ? { lossRatio: s.loss } : {}),
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
