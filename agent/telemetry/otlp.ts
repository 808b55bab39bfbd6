import type { Attributes, HrTime } from '@opentelemetry/api';
import type {
  CollectionResult,
  DataPoint,
  Histogram,
  MetricData,
  MetricDescriptor,
  ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { aggregationTemporalities, dataPointTypes } from '../../lib/telemetry.js';
import { pathMetrics as m } from './catalogue.js';
import {
  msToHrTime,
  visitPath,
  type Hist,
  type PathState,
  type SeriesSelection,
  type SeriesSink,
} from './series.js';

/* The OTLP exporter's side: the per-path series as OTel data points, for the push reader. */

/** Collects series as OTel data points, grouped per metric (for the OTLP push). */
export class DataPointSink implements SeriesSink {
  readonly gauges = new Map<MetricDescriptor, DataPoint<number>[]>();
  readonly sums = new Map<MetricDescriptor, DataPoint<number>[]>();
  readonly hists = new Map<MetricDescriptor, DataPoint<Histogram>[]>();
  /** Start time of the series being visited (the path's, or the agent's). */
  startTime: HrTime = [0, 0];

  constructor(private readonly endTime: HrTime) {}

  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void {
    this.push(this.gauges, d, value, attributes);
  }
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void {
    this.push(this.sums, d, value, attributes);
  }
  histogram(d: MetricDescriptor, h: Hist, attributes: Attributes): void {
    this.push(this.hists, d, h.value(), attributes);
  }

  private push<T>(
    into: Map<MetricDescriptor, DataPoint<T>[]>,
    d: MetricDescriptor,
    value: T,
    attributes: Attributes,
  ): void {
    let list = into.get(d);
    if (list === undefined) into.set(d, (list = []));
    list.push({ startTime: this.startTime, endTime: this.endTime, attributes, value });
  }

  metrics(): MetricData[] {
    const metrics: MetricData[] = [];
    const cumulative = aggregationTemporalities.CUMULATIVE;
    for (const [descriptor, dataPoints] of this.hists)
      metrics.push({
        descriptor,
        aggregationTemporality: cumulative,
        dataPointType: dataPointTypes.HISTOGRAM,
        dataPoints,
      });
    for (const [descriptor, dataPoints] of this.sums)
      metrics.push({
        descriptor,
        aggregationTemporality: cumulative,
        dataPointType: dataPointTypes.SUM,
        isMonotonic: true,
        dataPoints,
      });
    for (const [descriptor, dataPoints] of this.gauges)
      metrics.push({
        descriptor,
        aggregationTemporality: cumulative,
        dataPointType: dataPointTypes.GAUGE,
        dataPoints,
      });
    return metrics;
  }
}

/**
 * Builds the agent's metrics for one OTLP collection: its own series (`agent` writes them,
 * with the agent's start time), the schedule lag histogram and the per-path metrics.
 */
export function collectPathMetrics(
  paths: Iterable<ReadonlyMap<string, PathState>>,
  lag: { readonly hist: Hist; readonly startTime: HrTime; readonly attributes: Attributes },
  scope: { readonly name: string; readonly version: string },
  resource: ResourceMetrics['resource'],
  select: SeriesSelection,
  agent?: (sink: SeriesSink) => void,
): CollectionResult {
  const sink = new DataPointSink(msToHrTime(Date.now()));
  if (agent !== undefined) {
    sink.startTime = lag.startTime;
    agent(sink);
  }
  for (const byKind of paths) {
    for (const p of byKind.values()) {
      sink.startTime = p.startTime;
      visitPath(p, sink, select);
    }
  }
  if (lag.hist.count > 0) {
    sink.startTime = lag.startTime;
    sink.histogram(m.lag, lag.hist, lag.attributes);
  }
  return {
    resourceMetrics: { resource, scopeMetrics: [{ scope, metrics: sink.metrics() }] },
    errors: [],
  };
}
