import type { Meter } from '@opentelemetry/api';
import { PrometheusText } from '../../lib/telemetry.js';
import { MetricsPipeline } from '../../lib/telemetry-pipeline.js';

/**
 * A meter whose instruments render as the Prometheus text `/metrics` serves, for unit tests
 * of a part that adds its own instruments (`engine.instrument(meter)`). No OTLP push, whatever
 * the environment says.
 */
export function meterText(): { meter: Meter; render(): Promise<string> } {
  const pipeline = new MetricsPipeline({
    serviceName: 'faultline-test',
    serviceVersion: '0.0.0',
    resource: {},
    env: {},
  });
  const text = new PrometheusText();
  return {
    meter: pipeline.meter,
    render: async () => text.render((await pipeline.collectPrometheus()).resourceMetrics),
  };
}
