import { z } from 'zod';
import { httpUrlField, postBody, sinkNameField, sinkTimeoutField } from './http.js';
import type { AlertNotice, DeliveryTarget, SinkConfigBase, SinkDefinition } from './types.js';

/**
 * Prometheus Alertmanager, API v2 (`POST /api/v2/alerts`). Every URL is its own delivery
 * target (its own queue), as Prometheus sends to every Alertmanager of an HA cluster; the
 * cluster deduplicates. Alertmanager keeps state: it gets every firing alert again every
 * `resendEvery` (with `endsAt` a few periods ahead) and the resolved ones with `endsAt` now.
 */

/** A resolved `type: alertmanager` entry. */
export interface AlertmanagerSinkConfig extends SinkConfigBase {
  readonly type: 'alertmanager';
  /** Base URLs (the API path is appended), one per Alertmanager of the cluster. */
  readonly urls: readonly string[];
  readonly timeoutMs: number;
}

const schema = z
  .object({
    type: z.literal('alertmanager'),
    name: sinkNameField(),
    urls: z
      .array(httpUrlField())
      .min(1, { error: 'expected at least one Alertmanager URL' })
      .describe(
        'Base URL of each Alertmanager (e.g. http://alertmanager:9093); all of an HA cluster, which deduplicates.',
      ),
    timeout: sinkTimeoutField(),
  })
  .strict()
  .describe('Alertmanager API v2: one alert per hypothesis, re-sent while it lasts.');

/** The Alertmanager v2 `postableAlert` of a notice. */
export function postableAlert(a: AlertNotice): Record<string, unknown> {
  return {
    labels: a.labels,
    annotations: a.annotations,
    startsAt: new Date(a.startsAtMs).toISOString(),
    endsAt: new Date(a.endsAtMs).toISOString(),
    ...(a.generatorUrl === undefined ? {} : { generatorURL: a.generatorUrl }),
  };
}

/** `http://am:9093/prefix` → `http://am:9093/prefix/api/v2/alerts`. */
export function alertsEndpoint(base: string): string {
  const u = new URL(base);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/api/v2/alerts`;
  u.search = '';
  u.hash = '';
  return u.toString();
}

/**
 * The `sink` label of each URL: the sink's name alone for one URL, else `name@host:port`
 * (`name@host:port/path` where two share a host). URLs seldom hold secrets; the path is
 * shown only when needed, and query strings never.
 */
export function targetNames(config: Pick<AlertmanagerSinkConfig, 'name' | 'urls'>): string[] {
  if (config.urls.length === 1) return [config.name];
  const hosts = config.urls.map((u) => new URL(u).host);
  return config.urls.map((u, i) => {
    const host = hosts[i] ?? '';
    const shared = hosts.filter((h) => h === host).length > 1;
    const path = new URL(u).pathname.replace(/\/+$/, '');
    return `${config.name}@${host}${shared ? path : ''}`;
  });
}

/** The `alertmanager` sink kind. */
export const alertmanagerSink: SinkDefinition<AlertmanagerSinkConfig> = {
  type: 'alertmanager',
  description: 'Prometheus Alertmanager (API v2), every URL of an HA cluster',
  schema,
  resolve(entry, name, report) {
    const urls = Array.isArray(entry.urls) ? entry.urls.map(String) : [];
    const seen = new Map<string, number>();
    urls.forEach((u, i) => {
      const first = seen.get(u);
      if (first !== undefined) report(['urls', i], `URL listed twice (first at urls[${first}])`);
      else seen.set(u, i);
    });
    return {
      type: 'alertmanager',
      name,
      urls,
      timeoutMs: typeof entry.timeout === 'number' ? entry.timeout : 10_000,
    };
  },
  targets(config, env) {
    const names = targetNames(config);
    return config.urls.map((base, i): DeliveryTarget => {
      const endpoint = alertsEndpoint(base);
      return {
        name: names[i] ?? config.name,
        type: 'alertmanager',
        mode: 'state',
        encode: (alerts) => JSON.stringify(alerts.map(postableAlert)),
        send: (body, signal) =>
          postBody(endpoint, body, { 'user-agent': env.userAgent }, config.timeoutMs, signal),
      };
    });
  },
};
