import type { ProbeResult } from '../wire/result.js';
import { blackboxMetrics as bb, certExpiryS, tlsVersionName } from './blackbox.js';
import type { KindSeriesSink } from './types.js';

/** blackbox_exporter's http prober series, from the path's last result. */
export function httpSeries(r: ProbeResult, sink: KindSeriesSink): void {
  const d = r.detail;
  const t = r.timings;
  const expiry = certExpiryS(d);
  if (expiry !== undefined) sink.gauge(bb.certExpiry, expiry);
  const status = d?.status;
  const answered = typeof status === 'number';
  sink.gauge(bb.httpStatus, answered ? status : 0);
  const version = typeof d?.httpVersion === 'string' ? Number(d.httpVersion) : NaN;
  sink.gauge(bb.httpVersion, Number.isFinite(version) ? version : 0);
  // As blackbox_exporter: TLS of a response, not of a handshake whose certificate was refused.
  const tlsVersion = answered ? d?.tlsVersion : undefined;
  sink.gauge(bb.httpSsl, typeof tlsVersion === 'string' ? 1 : 0);
  if (typeof tlsVersion === 'string')
    sink.gauge(bb.tlsVersion, 1, 'version', tlsVersionName(tlsVersion));
  const length = d?.contentLength;
  sink.gauge(bb.httpContentLength, typeof length === 'number' ? length : answered ? -1 : 0);
  sink.gauge(bb.httpRedirects, typeof d?.redirects === 'number' ? d.redirects : 0);
  sink.gauge(bb.failedDueToRegex, r.class === 'http_body' ? 1 : 0);
  const dns = t.dnsMs ?? 0;
  const connect = t.connectMs ?? 0;
  const tls = t.tlsMs ?? 0;
  const firstByte = t.firstByteMs ?? 0;
  const transfer =
    t.firstByteMs === undefined ? 0 : Math.max(0, t.totalMs - dns - connect - tls - firstByte);
  sink.gauge(bb.httpDuration, dns / 1000, 'phase', 'resolve');
  sink.gauge(bb.httpDuration, connect / 1000, 'phase', 'connect');
  sink.gauge(bb.httpDuration, tls / 1000, 'phase', 'tls');
  sink.gauge(bb.httpDuration, firstByte / 1000, 'phase', 'processing');
  sink.gauge(bb.httpDuration, transfer / 1000, 'phase', 'transfer');
}
