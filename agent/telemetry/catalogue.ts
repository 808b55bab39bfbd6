import { ValueType, type Attributes, type Meter } from '@opentelemetry/api';
import type { MetricDescriptor } from '@opentelemetry/sdk-metrics';
import { descriptor } from '../../lib/telemetry.js';
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

/** Where the agent-level instruments read their values at each collection. */
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
}

/**
 * The agent-level instruments (probe counts, in-flight, RSS, report delivery, confirmation
 * bursts): ordinary observable SDK instruments on `meter`, read from `read` at collection.
 */
export function registerAgentInstruments(meter: Meter, read: AgentInstrumentSources): void {
  const probes = meter.createObservableCounter('faultline.agent.probes', {
    unit: '{probe}',
    description:
      'Probes by outcome: started, completed, skipped (previous still running), error (the probe itself failed).',
  });
  const inFlight = meter.createObservableGauge('faultline.agent.probes.in_flight', {
    unit: '{probe}',
    description: 'Probes running now.',
  });
  const rss = meter.createObservableGauge('faultline.agent.memory.rss', {
    unit: 'By',
    description: 'Resident set size of the agent process.',
    valueType: ValueType.INT,
  });
  const delivery = {
    spoolBatches: meter.createObservableGauge('faultline.agent.spool.batches', {
      unit: '{batch}',
      description: 'Report batches in the spool, waiting for the collector.',
      valueType: ValueType.INT,
    }),
    spoolBytes: meter.createObservableGauge('faultline.agent.spool.size', {
      unit: 'By',
      description: 'Bytes of the spooled report batches on disk (compressed).',
      valueType: ValueType.INT,
    }),
    lag: meter.createObservableGauge('faultline.agent.delivery.lag', {
      unit: 's',
      description: 'Age of the oldest report batch not yet acknowledged (0 when none waits).',
    }),
    ackedSeq: meter.createObservableGauge('faultline.agent.reports.acked_seq', {
      unit: '{seq}',
      description: 'Highest report batch seq the collector acknowledged.',
      valueType: ValueType.INT,
    }),
    rejected: meter.createObservableCounter('faultline.agent.reports.rejected', {
      unit: '{batch}',
      description: 'Report batches the collector refused as bad (moved to spool/rejected/).',
      valueType: ValueType.INT,
    }),
    dropped: meter.createObservableCounter('faultline.agent.reports.dropped', {
      unit: '{batch}',
      description: 'Report batches dropped by the spool bounds (declared to the collector).',
      valueType: ValueType.INT,
    }),
    implausible: meter.createObservableCounter('faultline.agent.implausible_acks', {
      unit: '{ack}',
      description:
        'Acks whose acceptedSeq is above every seq this agent spooled: refused, the batch kept.',
      valueType: ValueType.INT,
    }),
    refusals: meter.createObservableCounter('faultline.agent.reports.seq_refusals', {
      unit: '{reply}',
      description:
        'Replies refusing the sequence or identity (seq gap/implausible, conflict, forbidden, enrol required): the batch kept.',
      valueType: ValueType.INT,
    }),
    enrol: meter.createObservableGauge('faultline.agent.enrol.state', {
      unit: '{state}',
      description:
        'Where the credential in use came from: 1 for the current state (none, saved, enrolled, direct).',
      valueType: ValueType.INT,
    }),
  };
  meter.addBatchObservableCallback((observer) => {
    const d = read.delivery();
    if (d === undefined) return;
    const a = read.agentAttrs;
    observer.observe(delivery.spoolBatches, d.spoolBatches, a);
    observer.observe(delivery.spoolBytes, d.spoolBytes, a);
    observer.observe(delivery.dropped, d.dropped, a);
    const perCollector = d.collectors?.map((c) => ({
      ...c,
      attrs: { ...a, collector: c.collector },
    }));
    for (const c of perCollector ?? [{ ...d, attrs: a }]) {
      observer.observe(delivery.lag, c.lagSeconds, c.attrs);
      observer.observe(delivery.ackedSeq, c.acceptedSeq, c.attrs);
      observer.observe(delivery.rejected, c.rejected, c.attrs);
      observer.observe(delivery.implausible, c.implausibleAcks, c.attrs);
      observer.observe(delivery.refusals, c.seqRefusals, c.attrs);
      for (const state of ['none', 'saved', 'enrolled', 'direct'])
        observer.observe(delivery.enrol, c.enrolState === state ? 1 : 0, { ...c.attrs, state });
    }
  }, Object.values(delivery));
  const confirm = {
    bursts: meter.createObservableCounter('faultline.agent.confirm.bursts', {
      unit: '{burst}',
      description: 'Confirmation bursts started: a path changed class and was re-probed at once.',
      valueType: ValueType.INT,
    }),
    probes: meter.createObservableCounter('faultline.agent.confirm.probes', {
      unit: '{probe}',
      description: 'Re-probes run by confirmation bursts (beyond the regular schedule).',
      valueType: ValueType.INT,
    }),
    skipped: meter.createObservableCounter('faultline.agent.confirm.skipped', {
      unit: '{burst}',
      description:
        "Changes of class not confirmed by a burst because the agent's budget of extra probes was spent; the collector confirms them round by round.",
      valueType: ValueType.INT,
    }),
    budget: meter.createObservableGauge('faultline.agent.confirm.budget', {
      unit: '{probe}',
      description: 'Re-probes the budget of confirmation bursts holds now.',
    }),
  };
  meter.addBatchObservableCallback((observer) => {
    const c = read.confirm();
    if (c === undefined) return;
    const a = read.agentAttrs;
    observer.observe(confirm.bursts, c.bursts, a);
    observer.observe(confirm.probes, c.probes, a);
    observer.observe(confirm.skipped, c.skipped, a);
    observer.observe(confirm.budget, c.budget, a);
  }, Object.values(confirm));
  meter.addBatchObservableCallback(
    (observer) => {
      const counts = read.probeCounts;
      for (let i = 0; i < probeResults.length; i++)
        observer.observe(probes, counts[i]!, read.probeAttrs[i]);
      observer.observe(inFlight, read.inFlight(), read.agentAttrs);
      observer.observe(rss, process.memoryUsage.rss(), read.agentAttrs);
    },
    [probes, inFlight, rss],
  );
}
