import { alertmanagerSink } from './alertmanager.js';
import type { SinkConfigBase, SinkDefinition } from './types.js';
import { webhookSink } from './webhook.js';

/**
 * Every alert sink kind, one line each: the config's `alerts.sinks[].type`, its schema, the
 * docs and the dispatcher all derive from this table (read when they are used, so a line is
 * all a sink needs: collector/sinks/sink-kind.test.ts registers one in memory). Adding a
 * sink = one file + one line.
 */
export const sinkRegistry = {
  alertmanager: alertmanagerSink,
  webhook: webhookSink,
} as const;

export type SinkType = keyof typeof sinkRegistry;
/** The registered sink types, in the table's order. */
export function sinkTypes(): SinkType[] {
  return Object.keys(sinkRegistry) as SinkType[];
}

/** A resolved `alerts.sinks[]` entry, of any kind. */
export type SinkConfig = {
  [K in SinkType]: Parameters<(typeof sinkRegistry)[K]['targets']>[0];
}[SinkType];

/** The definition of `type`, loosely typed for code that handles every kind alike. */
export function sinkDefinition(type: SinkType): SinkDefinition<SinkConfigBase> {
  return sinkRegistry[type];
}
