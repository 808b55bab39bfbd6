import type { Attributes } from '@opentelemetry/api';
import type { DataPointType, MetricDescriptor } from '@opentelemetry/sdk-metrics';
import { dataPointTypes, type PrometheusText } from '../../lib/telemetry.js';
import { pathMetrics as m } from './catalogue.js';
import {
  visitPath,
  type Hist,
  type PathState,
  type SeriesSelection,
  type SeriesSink,
} from './series.js';

/* The Prometheus exporter's side: the per-path series as text exposition, in chunks. */

/**
 * How long /metrics is built before it yields to the event loop (probes due meanwhile run):
 * a quarter of the 20 ms schedule lag goal. A yield costs a turn of a busy loop (a few ms
 * at 1,000 probes/s), so it is taken by time, not every N paths: the default page of 1,000
 * paths is built in ~6 ms, one or two slices, where a yield per 50 paths made a scrape wait
 * out 20 turns (~270 ms on a loaded machine).
 */
export const renderSliceMs = 5;
/** Paths between two looks at the clock. */
const clockEveryPaths = 16;

/**
 * Collects series as Prometheus text, one buffer per family (the format wants a family's
 * samples together, while paths are visited one after the other).
 */
export class TextSink implements SeriesSink {
  private readonly families = new Map<MetricDescriptor, { name: string; body: string }>();
  private out = '';

  constructor(private readonly text: PrometheusText) {}

  gauge(d: MetricDescriptor, value: number, attributes: Attributes): void {
    const f = this.family(d, dataPointTypes.GAUGE);
    f.body += this.text.sample(f.name, attributes, value);
  }
  counter(d: MetricDescriptor, value: number, attributes: Attributes): void {
    const f = this.family(d, dataPointTypes.SUM);
    f.body += this.text.sample(f.name, attributes, value);
  }
  histogram(d: MetricDescriptor, h: Hist, attributes: Attributes): void {
    const f = this.family(d, dataPointTypes.HISTOGRAM);
    f.body += this.text.histogram(f.name, attributes, h.bounds, h.counts, h.sum, h.count);
  }

  /** Everything collected, family after family. */
  finish(): string {
    for (const f of this.families.values()) this.out += f.body;
    return this.out;
  }

  private family(d: MetricDescriptor, type: DataPointType): { name: string; body: string } {
    let f = this.families.get(d);
    if (f === undefined) {
      const { name, head } = this.text.family({
        descriptor: d,
        dataPointType: type,
        isMonotonic: true,
      });
      f = { name, body: head };
      this.families.set(d, f);
    }
    return f;
  }
}

export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The agent's series (`agent` writes its own first), the schedule lag histogram and the
 * per-path series as Prometheus text, the latter written straight from the per-path state in
 * slices of `sliceMs` with a yield to the event loop in between, so that a scrape of
 * thousands of paths does not hold up the probes due meanwhile.
 */
export async function renderPathText(
  text: PrometheusText,
  paths: Iterable<ReadonlyMap<string, PathState>>,
  lag: { readonly hist: Hist; readonly attributes: Attributes },
  select: SeriesSelection,
  sliceMs = renderSliceMs,
  agent?: (sink: SeriesSink) => void,
): Promise<string> {
  const sink = new TextSink(text);
  agent?.(sink);
  if (lag.hist.count > 0) sink.histogram(m.lag, lag.hist, lag.attributes);
  const list: PathState[] = [];
  for (const byKind of paths) for (const p of byKind.values()) list.push(p);
  let sliceStart = performance.now();
  for (let i = 0; i < list.length; i++) {
    if (i > 0 && i % clockEveryPaths === 0 && performance.now() - sliceStart >= sliceMs) {
      await yieldToLoop();
      sliceStart = performance.now();
    }
    const p = list[i]!;
    if (!p.removed) visitPath(p, sink, select);
  }
  return sink.finish();
}
