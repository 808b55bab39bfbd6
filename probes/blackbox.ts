import type { KindMetric } from './types.js';

/**
 * The blackbox_exporter-compatible series that belong to one prober or another (`probe_http_*`,
 * `probe_icmp_*`, `probe_dns_*`…), named and described as the agent exports them. The kinds
 * that have such a prober write them from their `telemetry.series` hook; the series every
 * kind has (`probe_success`, `probe_duration_seconds`…) are the agent's own.
 */
export const blackboxMetrics = {
  certExpiry: {
    name: 'probe_ssl_earliest_cert_expiry',
    core: true,
    unit: '',
    description: 'Returns last SSL chain expiry in unixtime (blackbox_exporter compatible).',
  },
  httpStatus: {
    name: 'probe_http_status_code',
    core: true,
    unit: '',
    description: 'Response HTTP status code, 0 without a response (blackbox_exporter compatible).',
  },
  httpDuration: {
    name: 'probe_http_duration_seconds',
    unit: 's',
    description:
      'Duration of http request by phase, summed over all redirects (blackbox_exporter compatible).',
  },
  icmpDuration: {
    name: 'probe_icmp_duration_seconds',
    unit: 's',
    description: 'Duration of icmp request by phase (blackbox_exporter compatible).',
  },
  httpSsl: {
    name: 'probe_http_ssl',
    unit: '',
    description: 'Indicates if SSL was used for the final redirect (blackbox_exporter compatible).',
  },
  httpVersion: {
    name: 'probe_http_version',
    unit: '',
    description:
      'Returns the version of HTTP of the probe response, 0 without one (blackbox_exporter compatible).',
  },
  httpContentLength: {
    name: 'probe_http_content_length',
    unit: '',
    description:
      'Length of http content response, -1 when not given (blackbox_exporter compatible).',
  },
  httpRedirects: {
    name: 'probe_http_redirects',
    unit: '',
    description: 'The number of redirects (blackbox_exporter compatible).',
  },
  failedDueToRegex: {
    name: 'probe_failed_due_to_regex',
    unit: '',
    description: 'Indicates if probe failed due to regex (blackbox_exporter compatible).',
  },
  tlsVersion: {
    name: 'probe_tls_version_info',
    unit: '',
    description:
      'Always 1; its version label is the TLS version used (blackbox_exporter compatible).',
  },
  dnsQuerySucceeded: {
    name: 'probe_dns_query_succeeded',
    core: true,
    unit: '',
    description:
      'Displays whether or not the query was executed successfully (blackbox_exporter compatible).',
  },
  dnsAnswerRrs: {
    name: 'probe_dns_answer_rrs',
    unit: '',
    description:
      'Returns number of entries in the answer resource record list (blackbox_exporter compatible).',
  },
} as const satisfies Record<string, KindMetric>;

/** node's TLS protocol name (`TLSv1.3`) as Go's, which blackbox_exporter reports (`TLS 1.3`). */
export function tlsVersionName(protocol: string): string {
  const m = /^TLSv(\d)(?:\.(\d))?$/.exec(protocol);
  return m === null ? protocol : `TLS ${m[1]}.${m[2] ?? '0'}`;
}

/** Epoch ms of a date string, or of epoch ms/s; NaN when unreadable. */
function epochMs(v: unknown): number {
  return typeof v === 'string'
    ? Date.parse(v)
    : typeof v === 'number'
      ? v > 1e11
        ? v
        : v * 1000
      : NaN;
}

/**
 * Unix seconds of the certificate's earliest expiry: its chain's (`chainValidTo`) when
 * earlier than the leaf's `validTo`, as blackbox_exporter reads it; undefined if unreadable.
 */
export function certExpiryS(detail: Record<string, unknown> | undefined): number | undefined {
  const cert = detail?.certificate;
  if (cert === null || typeof cert !== 'object') return undefined;
  const c = cert as Record<string, unknown>;
  const leaf = epochMs(c.validTo);
  const chain = epochMs(c.chainValidTo);
  const ms = Number.isFinite(chain) && !(chain >= leaf) ? chain : leaf;
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}
