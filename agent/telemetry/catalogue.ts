import type { Attributes } from '@opentelemetry/api';
import type { MetricDescriptor } from '@opentelemetry/sdk-metrics';
import {
  descriptor,
  otlpExportsMetric,
  valueTypes,
  type ExportWatch,
} from '../../lib/telemetry.js';
import type { KindMetric } from '../../probes/types.js';

/*
 * The agent's metric catalogue: every name, unit, description and bucket layout it exports,
 * whichever exporter (Prometheus text, OTLP) carries them. A kind's own series are declared
 * by its ProbeDefinition (`telemetry.series`); `kindDescriptor` gives them their descriptor.
 */

/**
 * Attribute names the agent puts on path metrics itself, plus the ones Prometheus adds at
 * scrape time. A target label must not use them (the config schema rejects them); were one
 * to slip through, the agent's own value wins.
 */
export const reservedMetricLabels: readonly string[] = [
  'agent',
  'target',
  'kind',
  'phase',
  'class',
  'result',
  'le',
  'job',
  'instance',
];

/**
 * Bucket upper bounds (seconds) of the probe duration histograms: 100 µs to 10 s, in steps
 * of ×2.5 and ×4. Eleven rather than the sixteen of a 1-2.5-5 ladder: at 1,000 paths each
 * bucket is another ~2,000 lines in every scrape.
 */
export const probeDurationBucketsS: readonly number[] = [
  0.0001, 0.00025, 0.001, 0.0025, 0.01, 0.025, 0.1, 0.25, 1, 2.5, 10,
];

/** Bucket upper bounds (seconds) of the schedule lag histogram; 20 ms is the agent's p99 goal. */
export const scheduleLagBucketsS: readonly number[] = [
  0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5,
];

/** Phases of `faultline.probe.duration` (`phase` attribute) and the timings they read. */
export const phaseNames = ['dns', 'connect', 'tls', 'first_byte', 'total'] as const;
export const phaseTimings = ['dnsMs', 'connectMs', 'tlsMs', 'firstByteMs', 'totalMs'] as const;
export const totalPhase = phaseNames.indexOf('total');

/** `result` values of `faultline.agent.probes`, and their indices. */
export const probeResults = ['started', 'completed', 'skipped', 'error'] as const;
export const [STARTED, COMPLETED, SKIPPED, ERROR] = [0, 1, 2, 3] as const;

/** Metrics produced from per-path state (see PathMetricProducer for why not SDK instruments). */
export const pathMetrics = {
  duration: descriptor(
    'faultline.probe.duration',
    's',
    'Probe durations: phase="total" for every kind; http adds dns, connect, tls and first_byte.',
  ),
  results: descriptor('faultline.probe.results', '{result}', 'Probe results by failure class.'),
  skipped: descriptor(
    'faultline.probe.skipped',
    '{probe}',
    'Probes not started because the previous one on this path was still running.',
  ),
  success: descriptor(
    'faultline.probe.success',
    '',
    '1 if the last probe on this path passed, else 0.',
  ),
  state: descriptor(
    'faultline.probe.state',
    '',
    'Always 1; its class attribute is the failure class of the last probe on this path.',
  ),
  icmpRtt: descriptor('faultline.probe.icmp.rtt', 's', 'ICMP echo round-trip times, per reply.'),
  icmpLoss: descriptor(
    'faultline.probe.icmp.loss',
    '1',
    'ICMP packet loss ratio (0..1) of the last probe.',
  ),
  lag: descriptor(
    'faultline.agent.schedule.lag',
    's',
    'How late probes started against their schedule.',
  ),
  bbSuccess: descriptor(
    'probe_success',
    '',
    'Displays whether or not the probe was a success (blackbox_exporter compatible).',
  ),
  bbDuration: descriptor(
    'probe_duration_seconds',
    's',
    'Returns how long the probe took to complete in seconds (blackbox_exporter compatible).',
  ),
  bbDns: descriptor(
    'probe_dns_lookup_time_seconds',
    's',
    'Returns the time taken for probe dns lookup in seconds (blackbox_exporter compatible).',
  ),
  bbIpProtocol: descriptor(
    'probe_ip_protocol',
    '',
    'Specifies whether probe ip protocol is IP4 or IP6, 0 when not resolved (blackbox_exporter compatible).',
  ),
};

/** The OTel descriptor of a kind's own metric, made once per metric. */
const kindDescriptors = new Map<KindMetric, MetricDescriptor>();
export function kindDescriptor(metric: KindMetric): MetricDescriptor {
  let d = kindDescriptors.get(metric);
  if (d === undefined)
    kindDescriptors.set(metric, (d = descriptor(metric.name, metric.unit, metric.description)));
  return d;
}

/** Report delivery of an agent with a collector, read at each collection. */
export interface DeliveryStats {
  readonly spoolBatches: number;
  readonly spoolBytes: number;
  /** Age of the oldest unacknowledged batch, seconds (0 when none waits). */
  readonly lagSeconds: number;
  readonly acceptedSeq: number;
  readonly rejected: number;
  readonly dropped: number;
  readonly implausibleAcks: number;
  readonly seqRefusals: number;
  readonly enrolState: string;
  /**
   * Per collector (an agent reports to one or several): when present, the per-collector
   * series (lag, acked seq, rejected, implausible acks, seq refusals, enrol state) are one
   * per collector, labelled `collector` with its URL, instead of the totals above.
   */
  readonly collectors?: readonly CollectorDeliveryStats[];
}

/** Report delivery to one collector. */
export interface CollectorDeliveryStats {
  /** The collector's URL: the `collector` label. */
  readonly collector: string;
  /** Age of the oldest batch this collector has not acknowledged, seconds (0 when none). */
  readonly lagSeconds: number;
  readonly acceptedSeq: number;
  readonly rejected: number;
  readonly implausibleAcks: number;
  readonly seqRefusals: number;
  readonly enrolState: string;
}

/** Confirmation bursts of an agent (issue 14), read at each collection. */
export interface ConfirmStats {
  /** Bursts started (each after a change of class on a path). */
  readonly bursts: number;
  /** Re-probes run by bursts. */
  readonly probes: number;
  /** Changes not confirmed by a burst because the per-agent budget was spent. */
  readonly skipped: number;
  /** Re-probes the budget holds now. */
  readonly budget: number;
}

/** Where the agent-level series read their values at each collection. */
export interface AgentInstrumentSources {
  /** `{ agent }`, the attributes of every agent-level series. */
  readonly agentAttrs: Attributes;
  /** `{ agent, result }` per entry of `probeResults`. */
  readonly probeAttrs: readonly Attributes[];
  /** Probe counts per entry of `probeResults`, updated in place. */
  readonly probeCounts: Float64Array;
  inFlight(): number;
  delivery(): DeliveryStats | undefined;
  confirm(): ConfirmStats | undefined;
  /** The OTLP exports' outcomes (an agent that pushes). */
  readonly exports: ExportWatch | undefined;
}

const INT = valueTypes.INT;

/** The agent-level metrics (probe counts, in-flight, RSS, report delivery, confirmation bursts). */
export const agentMetrics = {
  probes: descriptor(
    'faultline.agent.probes',
    '{probe}',
    'Probes by outcome: started, completed, skipped (previous still running), error (the probe itself failed).',
  ),
  inFlight: descriptor('faultline.agent.probes.in_flight', '{probe}', 'Probes running now.'),
  rss: descriptor(
    'faultline.agent.memory.rss',
    'By',
    'Resident set size of the agent process.',
    INT,
  ),
  spoolBatches: descriptor(
    'faultline.agent.spool.batches',
    '{batch}',
    'Report batches in the spool, waiting for the collector.',
    INT,
  ),
  spoolBytes: descriptor(
    'faultline.agent.spool.size',
    'By',
    'Bytes of the spooled report batches on disk (compressed).',
    INT,
  ),
  lag: descriptor(
    'faultline.agent.delivery.lag',
    's',
    'Age of the oldest report batch not yet acknowledged (0 when none waits).',
  ),
  ackedSeq: descriptor(
    'faultline.agent.reports.acked_seq',
    '{seq}',
    'Highest report batch seq the collector acknowledged.',
    INT,
  ),
  rejected: descriptor(
    'faultline.agent.reports.rejected',
    '{batch}',
    'Report batches the collector refused as bad (moved to spool/rejected/).',
    INT,
  ),
  dropped: descriptor(
    'faultline.agent.reports.dropped',
    '{batch}',
    'Report batches dropped by the spool bounds (declared to the collector).',
    INT,
  ),
  implausible: descriptor(
    'faultline.agent.implausible_acks',
    '{ack}',
    'Acks whose acceptedSeq is above every seq this agent spooled: refused, the batch kept.',
    INT,
  ),
  refusals: descriptor(
    'faultline.agent.reports.seq_refusals',
    '{reply}',
    'Replies refusing the sequence or identity (seq gap/implausible, conflict, forbidden, enrol required): the batch kept.',
    INT,
  ),
  enrol: descriptor(
    'faultline.agent.enrol.state',
    '{state}',
    'Where the credential in use came from: 1 for the current state (none, saved, enrolled, direct).',
    INT,
  ),
  confirmBursts: descriptor(
    'faultline.agent.confirm.bursts',
    '{burst}',
    'Confirmation bursts started: a path changed class and was re-probed at once.',
    INT,
  ),
  confirmProbes: descriptor(
    'faultline.agent.confirm.probes',
    '{probe}',
    'Re-probes run by confirmation bursts (beyond the regular schedule).',
    INT,
  ),
  confirmSkipped: descriptor(
    'faultline.agent.confirm.skipped',
    '{burst}',
    "Changes of class not confirmed by a burst because the agent's budget of extra probes was spent; the collector confirms them round by round.",
    INT,
  ),
  confirmBudget: descriptor(
    'faultline.agent.confirm.budget',
    '{probe}',
    'Re-probes the budget of confirmation bursts holds now.',
  ),
};

const enrolStates = ['none', 'saved', 'enrolled', 'direct'] as const;

/** Where `visitAgent` writes: the gauge and counter half of a `SeriesSink` (series.ts). */
export interface AgentSeriesSink {
  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void;
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void;
}

/**
 * Every agent-level series, read from `read` now: the one definition both exports share
 * (Prometheus text and OTLP), as `visitPath` is for a path's. Built by the agent itself
 * rather than as SDK instruments, so that an agent that does not push never loads the SDK.
 * Attribute sets per collector and enrol state are cached on `cache` (built once, not per
 * collection: the text writer renders a label set once per object).
 */
export function visitAgent(
  sink: AgentSeriesSink,
  read: AgentInstrumentSources,
  cache: Map<string, Attributes>,
): void {
  const a = read.agentAttrs;
  const attrs = (key: string, extra: Attributes): Attributes => {
    let v = cache.get(key);
    if (v === undefined) cache.set(key, (v = { ...a, ...extra }));
    return v;
  };
  const w = read.exports;
  if (w !== undefined) {
    sink.counter(otlpExportsMetric, w.successes, attrs('o\u0000success', { outcome: 'success' }));
    sink.counter(otlpExportsMetric, w.failures, attrs('o\u0000failure', { outcome: 'failure' }));
  }
  const m = agentMetrics;
  for (let i = 0; i < probeResults.length; i++)
    sink.counter(m.probes, read.probeCounts[i]!, read.probeAttrs[i]!);
  sink.gauge(m.inFlight, read.inFlight(), a);
  sink.gauge(m.rss, process.memoryUsage.rss(), a);

  const d = read.delivery();
  if (d !== undefined) {
    sink.gauge(m.spoolBatches, d.spoolBatches, a);
    sink.gauge(m.spoolBytes, d.spoolBytes, a);
    // The SDK wrote a family's points in the order they were observed, collector by collector.
    const per = (d.collectors ?? [{ ...d, collector: undefined }]).map((c) => ({
      c,
      attrs:
        c.collector === undefined ? a : attrs(`c\u0000${c.collector}`, { collector: c.collector }),
    }));
    for (const { c, attrs: ca } of per) sink.gauge(m.lag, c.lagSeconds, ca);
    for (const { c, attrs: ca } of per) sink.gauge(m.ackedSeq, c.acceptedSeq, ca);
    for (const { c, attrs: ca } of per) sink.counter(m.rejected, c.rejected, ca);
    sink.counter(m.dropped, d.dropped, a);
    for (const { c, attrs: ca } of per) sink.counter(m.implausible, c.implausibleAcks, ca);
    for (const { c, attrs: ca } of per) sink.counter(m.refusals, c.seqRefusals, ca);
    for (const { c, attrs: ca } of per)
      for (const state of enrolStates)
        sink.gauge(
          m.enrol,
          c.enrolState === state ? 1 : 0,
          attrs(`e\u0000${c.collector ?? ''}\u0000${state}`, { ...ca, state }),
        );
  }
  const c = read.confirm();
  if (c !== undefined) {
    sink.counter(m.confirmBursts, c.bursts, a);
    sink.counter(m.confirmProbes, c.probes, a);
    sink.counter(m.confirmSkipped, c.skipped, a);
    sink.gauge(m.confirmBudget, c.budget, a);
  }
}
