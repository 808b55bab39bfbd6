import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isolateOtelEnv } from '../test/helpers/otel-env.js';
import { ConfigError } from '../lib/errors.js';
import { OtlpReceiver } from '../test/helpers/otlp-receiver.js';
import { createLogger } from '../lib/logger.js';
import { pollUntil } from '../lab/poll-until.js';
import type { ProbeResult } from '../wire/result.js';
import {
  AgentTelemetry,
  otlpPushFromEnv,
  probeDurationBucketsS,
  prometheusContentType,
  type SeriesSelection,
  type TelemetryTarget,
} from './telemetry/index.js';

isolateOtelEnv();

const opened: AgentTelemetry[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((t) => t.shutdown(1000)));
});
/** The opt-in series too (`metrics.histograms: true`, `metrics.blackbox: full`). */
const everySeries: SeriesSelection = { histograms: true, blackbox: 'full' };
function telemetry(series?: SeriesSelection): AgentTelemetry {
  const t = new AgentTelemetry({
    agentName: 'a1',
    hostName: 'host-1',
    agentLabels: { zone: 'a' },
    serviceVersion: '1.2.3',
    ...(series === undefined ? {} : { series }),
  });
  opened.push(t);
  return t;
}

function result(
  r: Pick<ProbeResult, 'target' | 'kind' | 'class' | 'timings'> & Partial<ProbeResult>,
): ProbeResult {
  return { agent: 'a1', address: `${r.target}.example`, seq: 1, startedAtMs: Date.now(), ...r };
}

const certValidTo = 'Sep  3 21:33:03 2030 GMT'; // node's X509Certificate.validTo format
const web: TelemetryTarget = { labels: { zone: 'a' } };
const db: TelemetryTarget = { labels: { zone: 'b' } };
const gw: TelemetryTarget = { labels: { zone: 'b' } };
const webOk = result({
  target: 'web',
  kind: 'http',
  class: 'ok',
  timings: { dnsMs: 1, connectMs: 2, tlsMs: 4, firstByteMs: 8, totalMs: 20 },
  detail: {
    status: 200,
    httpVersion: '1.1',
    contentLength: 2,
    redirects: 1,
    ip: '2001:db8::7',
    tlsVersion: 'TLSv1.3',
    certificate: { validTo: certValidTo },
  },
});
const dbTimeout = result({
  target: 'db',
  kind: 'tcp',
  class: 'tcp_timeout',
  timings: { totalMs: 1000 },
  error: { code: 'ETIMEDOUT', message: 'connect timed out' },
});
const dbOk = result({
  target: 'db',
  kind: 'tcp',
  class: 'ok',
  timings: { connectMs: 0.5, totalMs: 0.75 },
});
const gwLossy = result({
  target: 'gw',
  kind: 'icmp',
  class: 'ok',
  timings: { rttMs: 1.5, totalMs: 2000 },
  detail: { lossRatio: 0.25, rttsMs: [1, 1.5, 2] },
});

function recordThree(t: AgentTelemetry): void {
  for (const lagMs of [0.2, 3, 30]) t.recordStart(lagMs);
  t.setInFlight(2);
  t.recordResult(webOk, web);
  t.recordResult(dbTimeout, db);
  t.recordResult(gwLossy, gw);
}

/** The sample lines of a Prometheus text exposition (no comments). */
function samples(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}
/** The value of one exact series (`name{labels}`), or undefined. */
function valueOf(text: string, series: string): number | undefined {
  const line = samples(text).find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const dbLabels = 'agent="a1",target="db",kind="tcp",zone="b"';
const webLabels = 'agent="a1",target="web",kind="http",zone="a"';
const gwLabels = 'agent="a1",target="gw",kind="icmp",zone="b"';
// The blackbox-compatible probe_* series carry the target's address too.
const dbBb = `${dbLabels},address="db.example"`;
const webBb = `${webLabels},address="web.example"`;
const gwBb = `${gwLabels},address="gw.example"`;

describe('Prometheus exposition', () => {
  it('the default set: per path its state, success, results by class and the core blackbox series; no histograms', async () => {
    const t = telemetry();
    recordThree(t);
    const expiry = Date.parse('2030-09-03T21:33:03Z') / 1000;
    const byPath = (labels: string): string[] =>
      samples(text)
        .filter((l) => l.includes(`{${labels}`))
        .sort();
    const text = await t.renderPrometheus();
    // Every default series of each kind, and nothing else (what the README's table counts).
    expect(byPath(webLabels)).toEqual(
      [
        `faultline_probe_results_total{${webLabels},class="ok"} 1`,
        `faultline_probe_state{${webLabels},class="ok"} 1`,
        `faultline_probe_success{${webLabels}} 1`,
        `probe_duration_seconds{${webBb}} 0.02`,
        `probe_http_status_code{${webBb}} 200`,
        `probe_ssl_earliest_cert_expiry{${webBb}} ${expiry}`,
        `probe_success{${webBb}} 1`,
      ].sort(),
    );
    expect(byPath(dbLabels)).toEqual(
      [
        `faultline_probe_results_total{${dbLabels},class="tcp_timeout"} 1`,
        `faultline_probe_state{${dbLabels},class="tcp_timeout"} 1`,
        `faultline_probe_success{${dbLabels}} 0`,
        `probe_duration_seconds{${dbBb}} 1`,
        `probe_success{${dbBb}} 0`,
      ].sort(),
    );
    expect(byPath(gwLabels)).toEqual(
      [
        `faultline_probe_icmp_loss_ratio{${gwLabels}} 0.25`,
        `faultline_probe_results_total{${gwLabels},class="ok"} 1`,
        `faultline_probe_state{${gwLabels},class="ok"} 1`,
        `faultline_probe_success{${gwLabels}} 1`,
        `probe_duration_seconds{${gwBb}} 2`,
        `probe_success{${gwBb}} 1`,
      ].sort(),
    );
    // The agent's own series are all there, the schedule lag histogram among them.
    expect(samples(text)).toContain(
      'faultline_agent_schedule_lag_seconds_bucket{agent="a1",le="0.02"} 2',
    );
    expect(samples(text)).toContain('faultline_agent_probes_in_flight{agent="a1"} 2');
  });

  it('a dns path by default: probe_dns_query_succeeded besides the common series', async () => {
    const t = telemetry();
    const name: TelemetryTarget = { labels: {} };
    t.recordResult(
      result({
        target: 'name',
        kind: 'dns',
        class: 'ok',
        timings: { dnsMs: 3, totalMs: 3 },
        detail: { rcode: 'NOERROR', answers: ['192.0.2.1'] },
      }),
      name,
    );
    const labels = 'agent="a1",target="name",kind="dns",address="name.example"';
    const lines = samples(await t.renderPrometheus());
    expect(lines).toContain(`probe_dns_query_succeeded{${labels}} 1`);
    expect(lines.filter((l) => l.startsWith('probe_dns_answer_rrs'))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('probe_ip_protocol'))).toEqual([]);
  });

  it('setSeries (a reloaded config) turns the opt-in series on and off: histograms count from then on', async () => {
    const t = telemetry();
    t.recordResult(dbOk, db);
    t.setSeries(everySeries);
    t.recordResult(dbOk, db);
    let lines = samples(await t.renderPrometheus());
    expect(lines).toContain(`faultline_probe_duration_seconds_count{${dbLabels},phase="total"} 1`);
    expect(lines).toContain(`probe_ip_protocol{${dbBb}} 0`);
    t.setSeries({ histograms: false, blackbox: 'core' });
    t.recordResult(dbOk, db);
    lines = samples(await t.renderPrometheus());
    expect(lines.filter((l) => l.startsWith('faultline_probe_duration_seconds'))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('probe_ip_protocol'))).toEqual([]);
    expect(lines).toContain(`faultline_probe_results_total{${dbLabels},class="ok"} 3`);
    // On again: a fresh histogram, not the old counts.
    t.setSeries(everySeries);
    t.recordResult(dbOk, db);
    lines = samples(await t.renderPrometheus());
    expect(lines).toContain(`faultline_probe_duration_seconds_count{${dbLabels},phase="total"} 1`);
  });

  it('1,000 paths by default: at most 1 MB a scrape', async () => {
    const t = telemetry();
    for (let i = 0; i < 1000; i++) {
      const target: TelemetryTarget = { labels: { zone: `z${i % 4}`, rack: `r${i % 16}` } };
      const base = i % 3 === 0 ? webOk : i % 3 === 1 ? dbOk : gwLossy;
      const r = {
        ...base,
        target: `svc-${i}`,
        address:
          base.kind === 'http' ? `https://svc-${i}.internal.example:8443/healthz` : `10.0.0.${i}`,
      };
      for (let k = 0; k < 3; k++) t.recordResult(r, target);
    }
    const text = await t.renderPrometheus();
    expect(Buffer.byteLength(text)).toBeLessThan(1_000_000);
    expect(samples(text).filter((l) => l.startsWith('probe_success{'))).toHaveLength(1000);
  });

  it('exposes blackbox-compatible gauges of the last result per path, with agent, target, kind and the target labels', async () => {
    const t = telemetry(everySeries);
    recordThree(t);
    const lines = samples(await t.renderPrometheus());
    expect(lines).toContain(`probe_success{${dbBb}} 0`);
    expect(lines).toContain(`probe_success{${webBb}} 1`);
    expect(lines).toContain(`probe_success{${gwBb}} 1`);
    expect(lines).toContain(`probe_duration_seconds{${dbBb}} 1`);
    expect(lines).toContain(`probe_duration_seconds{${webBb}} 0.02`);
    expect(lines).toContain(`probe_dns_lookup_time_seconds{${webBb}} 0.001`);
    expect(lines).toContain(`probe_dns_lookup_time_seconds{${dbBb}} 0`);
    expect(lines).toContain(`probe_http_status_code{${webBb}} 200`);
    expect(lines).toContain(`probe_http_duration_seconds{${webBb},phase="resolve"} 0.001`);
    expect(lines).toContain(`probe_http_duration_seconds{${webBb},phase="connect"} 0.002`);
    expect(lines).toContain(`probe_http_duration_seconds{${webBb},phase="tls"} 0.004`);
    expect(lines).toContain(`probe_http_duration_seconds{${webBb},phase="processing"} 0.008`);
    expect(lines).toContain(`probe_http_duration_seconds{${webBb},phase="transfer"} 0.005`);
    expect(lines).toContain(
      `probe_ssl_earliest_cert_expiry{${webBb}} ${Date.UTC(2030, 8, 3, 21, 33, 3) / 1000}`,
    );
    expect(lines).toContain(`probe_icmp_duration_seconds{${gwBb},phase="rtt"} 0.0015`);
    // HTTP-only and ICMP-only aliases stay on their kinds.
    expect(lines.filter((l) => l.startsWith('probe_http_status_code{')).length).toBe(1);
    expect(lines.some((l) => l.startsWith(`probe_icmp_duration_seconds{${dbBb}`))).toBe(false);
  });

  it('the other blackbox_exporter series of the last result: ssl, http version, content length, redirects, regex failure, ip protocol, TLS version, DNS answers', async () => {
    const t = telemetry(everySeries);
    recordThree(t);
    const dnsLabels = 'agent="a1",target="ns",kind="dns",zone="b",address="ns.example"';
    t.recordResult(
      result({
        target: 'ns',
        kind: 'dns',
        class: 'ok',
        timings: { dnsMs: 2, totalMs: 2 },
        detail: {
          servers: ['10.0.0.53:5353'],
          rcode: 'NOERROR',
          answers: ['10.0.0.1', '10.0.0.2'],
        },
      }),
      db,
    );
    // The system's resolver, a bare IPv6 address, and no answer at all.
    const dns6Labels = 'agent="a1",target="ns6",kind="dns",zone="b",address="ns6.example"';
    t.recordResult(
      result({
        target: 'ns6',
        kind: 'dns',
        class: 'dns_timeout',
        timings: { dnsMs: 900, totalMs: 900 },
        detail: { servers: ['2001:db8::53'] },
      }),
      db,
    );
    const plain: TelemetryTarget = { labels: {} };
    const plainLabels = 'agent="a1",target="plain",kind="http",address="plain.example"';
    t.recordResult(
      result({
        target: 'plain',
        kind: 'http',
        class: 'http_body',
        timings: { totalMs: 3 },
        detail: {
          status: 200,
          httpVersion: '1.0',
          contentLength: -1,
          redirects: 0,
          ip: '10.0.0.9',
        },
      }),
      plain,
    );
    // The certificate refused: no response, so no SSL response (blackbox alike), but its
    // expiry stays visible (blackbox has none: an expired certificate would go unseen).
    const refused: TelemetryTarget = { labels: {} };
    const refusedLabels = 'agent="a1",target="refused",kind="http",address="refused.example"';
    t.recordResult(
      result({
        target: 'refused',
        kind: 'http',
        class: 'tls_error',
        timings: { totalMs: 3 },
        error: { code: 'CERT_HAS_EXPIRED', message: 'expired' },
        detail: {
          ip: '10.0.0.4',
          redirects: 0,
          tlsVersion: 'TLSv1.3',
          certificate: { validTo: certValidTo },
        },
      }),
      refused,
    );
    const banner: TelemetryTarget = { labels: {} };
    const bannerLabels = 'agent="a1",target="banner",kind="tcp",address="banner.example"';
    t.recordResult(
      result({
        target: 'banner',
        kind: 'tcp',
        class: 'protocol_error',
        timings: { totalMs: 3 },
        error: { code: 'FL_PEER_CLOSED', message: 'closed' },
        detail: { ip: '10.0.0.3', received: 'hello.' },
      }),
      banner,
    );
    const lines = samples(await t.renderPrometheus());
    for (const line of [
      `probe_failed_due_to_regex{${bannerLabels}} 1`,
      `probe_http_ssl{${refusedLabels}} 0`,
      `probe_http_status_code{${refusedLabels}} 0`,
      `probe_http_version{${refusedLabels}} 0`,
      `probe_http_content_length{${refusedLabels}} 0`,
      `probe_ssl_earliest_cert_expiry{${refusedLabels}} ${Date.UTC(2030, 8, 3, 21, 33, 3) / 1000}`,
      `probe_failed_due_to_regex{${dbBb}} 0`,
      `probe_dns_query_succeeded{${dnsLabels}} 1`,
      `probe_http_ssl{${webBb}} 1`,
      `probe_http_version{${webBb}} 1.1`,
      `probe_http_content_length{${webBb}} 2`,
      `probe_http_redirects{${webBb}} 1`,
      `probe_failed_due_to_regex{${webBb}} 0`,
      `probe_ip_protocol{${webBb}} 6`,
      `probe_tls_version_info{${webBb},version="TLS 1.3"} 1`,
      `probe_http_ssl{${plainLabels}} 0`,
      `probe_http_version{${plainLabels}} 1`,
      `probe_http_content_length{${plainLabels}} -1`,
      `probe_failed_due_to_regex{${plainLabels}} 1`,
      `probe_success{${plainLabels}} 0`,
      `probe_ip_protocol{${plainLabels}} 4`,
      // db timed out before anything was resolved; gw's result names no address.
      `probe_ip_protocol{${dbBb}} 0`,
      `probe_ip_protocol{${gwBb}} 0`,
      `probe_dns_answer_rrs{${dnsLabels}} 2`,
      `probe_ip_protocol{${dnsLabels}} 4`,
      `probe_ip_protocol{${dns6Labels}} 6`,
      `probe_dns_query_succeeded{${dns6Labels}} 0`,
      `probe_dns_answer_rrs{${dns6Labels}} 0`,
    ])
      expect(lines).toContain(line);
    // No TLS, no TLS version; one series per path.
    expect(lines.filter((l) => l.startsWith('probe_tls_version_info{'))).toHaveLength(1);
    // The faultline_* series do not carry the address (it would weigh on every bucket).
    expect(lines.filter((l) => l.startsWith('faultline_') && l.includes('address='))).toEqual([]);
  });

  it('probe_ssl_earliest_cert_expiry is the chain’s earliest expiry when an intermediate expires first', async () => {
    const t = telemetry();
    const chainValidTo = '2029-01-02T03:04:05.000Z';
    t.recordResult(
      {
        ...webOk,
        detail: { ...webOk.detail, certificate: { validTo: certValidTo, chainValidTo } },
      },
      web,
    );
    expect(valueOf(await t.renderPrometheus(), `probe_ssl_earliest_cert_expiry{${webBb}}`)).toBe(
      Date.parse(chainValidTo) / 1000,
    );
  });

  it('probeInstance "address": the probe_* series carry instance = the target address, the faultline_* series none', async () => {
    const t = new AgentTelemetry({
      agentName: 'a1',
      agentLabels: {},
      serviceVersion: '1.2.3',
      probeInstance: 'address',
      series: everySeries,
    });
    opened.push(t);
    recordThree(t);
    // A reloaded config moves db to another address: its probe_* series follow.
    t.recordResult({ ...dbOk, address: '10.9.9.9:5432' }, db);
    const lines = samples(await t.renderPrometheus());
    expect(lines).toContain(`probe_success{${webBb},instance="web.example"} 1`);
    expect(lines).toContain(
      `probe_http_duration_seconds{${webBb},instance="web.example",phase="tls"} 0.004`,
    );
    expect(lines).toContain(
      `probe_success{${dbLabels},address="10.9.9.9:5432",instance="10.9.9.9:5432"} 1`,
    );
    expect(lines.filter((l) => l.includes('db.example'))).toEqual([]);
    expect(lines.filter((l) => l.startsWith('faultline_') && l.includes('instance='))).toEqual([]);
    // A reload back to "scrape": the instance label goes, the address stays.
    t.setProbeInstance('scrape');
    const after = samples(await t.renderPrometheus());
    expect(after).toContain(`probe_success{${webBb}} 1`);
    expect(after.filter((l) => l.includes('instance='))).toEqual([]);
  });

  it('an mtu path is an ICMP echo too: per-reply RTTs, loss and the blackbox icmp alias; its failure class', async () => {
    const t = telemetry(everySeries);
    const labels = 'agent="a1",target="gw/mtu",kind="mtu",zone="b"';
    t.recordResult(
      result({
        target: 'gw/mtu',
        kind: 'mtu',
        class: 'ok',
        timings: { rttMs: 0.5, totalMs: 400 },
        detail: { lossRatio: 0, rttsMs: [0.4, 0.6], sizeBytes: 1500 },
      }),
      gw,
    );
    t.recordResult(
      result({
        target: 'gw/mtu',
        kind: 'mtu',
        class: 'mtu_exceeded',
        timings: { totalMs: 3 },
        error: { code: 'EMSGSIZE', message: 'ping: local error: message too long, mtu=1000' },
        detail: { lossRatio: 1, rttsMs: [null], sizeBytes: 1500, nextHopMtu: 1000 },
      }),
      gw,
    );
    const text = await t.renderPrometheus();
    const lines = samples(text);
    expect(lines).toContain(`faultline_probe_icmp_rtt_seconds_count{${labels}} 2`);
    expect(lines).toContain(`faultline_probe_icmp_loss_ratio{${labels}} 1`);
    expect(lines).toContain(
      `probe_icmp_duration_seconds{${labels},address="gw/mtu.example",phase="rtt"} 0`,
    );
    expect(lines).toContain(`faultline_probe_state{${labels},class="mtu_exceeded"} 1`);
    expect(lines).toContain(`faultline_probe_results_total{${labels},class="mtu_exceeded"} 1`);
    expect(lines).toContain(`faultline_probe_results_total{${labels},class="ok"} 1`);
    expect(lines).toContain(`probe_success{${labels},address="gw/mtu.example"} 0`);
  });

  it('exposes the OTel metrics under Prometheus names with unit suffixes, _total on counters, no scope labels', async () => {
    const t = telemetry(everySeries);
    recordThree(t);
    const text = await t.renderPrometheus();
    const lines = samples(text);
    expect(lines).toContain(`faultline_probe_success{${dbLabels}} 0`);
    expect(lines).toContain(`faultline_probe_state{${dbLabels},class="tcp_timeout"} 1`);
    expect(lines).toContain(`faultline_probe_state{${webLabels},class="ok"} 1`);
    expect(lines).toContain(`faultline_probe_results_total{${dbLabels},class="tcp_timeout"} 1`);
    expect(lines).toContain(`faultline_probe_icmp_loss_ratio{${gwLabels}} 0.25`);
    // Phase histogram: connect took 2 ms, so it is above the 1 ms bucket and inside 2.5 ms.
    expect(lines).toContain(
      `faultline_probe_duration_seconds_bucket{${webLabels},phase="connect",le="0.001"} 0`,
    );
    expect(lines).toContain(
      `faultline_probe_duration_seconds_bucket{${webLabels},phase="connect",le="0.0025"} 1`,
    );
    expect(lines).toContain(
      `faultline_probe_duration_seconds_bucket{${webLabels},phase="connect",le="+Inf"} 1`,
    );
    expect(lines).toContain(
      `faultline_probe_duration_seconds_count{${webLabels},phase="connect"} 1`,
    );
    expect(lines).toContain(
      `faultline_probe_duration_seconds_sum{${webLabels},phase="connect"} 0.002`,
    );
    expect(lines).toContain(
      `faultline_probe_duration_seconds_bucket{${webLabels},phase="first_byte",le="0.01"} 1`,
    );
    expect(lines).toContain(`faultline_probe_duration_seconds_count{${dbLabels},phase="total"} 1`);
    expect(
      lines.some((l) =>
        l.startsWith(`faultline_probe_duration_seconds_count{${dbLabels},phase="connect"}`),
      ),
    ).toBe(false);
    // Per-reply ICMP round trips: three replies.
    expect(lines).toContain(`faultline_probe_icmp_rtt_seconds_count{${gwLabels}} 3`);
    expect(valueOf(text, `faultline_probe_icmp_rtt_seconds_sum{${gwLabels}}`)).toBeCloseTo(
      0.0045,
      9,
    );
    expect(lines).toContain(`faultline_probe_icmp_rtt_seconds_bucket{${gwLabels},le="0.001"} 1`);
    // Agent health.
    expect(lines).toContain('faultline_agent_probes_total{agent="a1",result="started"} 3');
    expect(lines).toContain('faultline_agent_probes_total{agent="a1",result="completed"} 3');
    expect(lines).toContain('faultline_agent_probes_in_flight{agent="a1"} 2');
    expect(lines).toContain('faultline_agent_schedule_lag_seconds_count{agent="a1"} 3');
    expect(lines).toContain('faultline_agent_schedule_lag_seconds_bucket{agent="a1",le="0.02"} 2');
    expect(valueOf(text, 'faultline_agent_memory_rss_bytes{agent="a1"}')).toBeGreaterThan(1e6);

    expect(text).toContain('# TYPE probe_success gauge');
    expect(text).toContain('# TYPE faultline_probe_results_total counter');
    expect(text).toContain('# TYPE faultline_probe_duration_seconds histogram');
    expect(text).toContain('# TYPE faultline_agent_probes_total counter');
    expect(text).not.toContain('otel_scope');
    expect(text).not.toContain('# UNIT');
    const targetInfo = lines.find((l) => l.startsWith('target_info{'));
    expect(targetInfo).toMatch(/service_name="faultline-agent"/);
    expect(targetInfo).toMatch(/service_version="1\.2\.3"/);
    expect(targetInfo).toMatch(/host_name="host-1"/);
    expect(targetInfo).toMatch(/faultline_agent="a1"/);
    expect(targetInfo).toMatch(/faultline_agent_label_zone="a"/);
  });

  it('exposes report delivery (spool depth and bytes, lag, acked seq, rejected, implausible acks, enrol state) when a source is set', async () => {
    const t = new AgentTelemetry({ agentName: 'app-1', agentLabels: {}, serviceVersion: '0' });
    t.observeDelivery(() => ({
      spoolBatches: 3,
      spoolBytes: 4096,
      lagSeconds: 12.5,
      acceptedSeq: 41,
      rejected: 1,
      dropped: 2,
      implausibleAcks: 5,
      seqRefusals: 6,
      enrolState: 'enrolled',
    }));
    const text = await t.renderPrometheus();
    await t.shutdown();
    const want = [
      'faultline_agent_spool_batches{agent="app-1"} 3',
      'faultline_agent_spool_size_bytes{agent="app-1"} 4096',
      'faultline_agent_delivery_lag_seconds{agent="app-1"} 12.5',
      'faultline_agent_reports_acked_seq{agent="app-1"} 41',
      'faultline_agent_reports_rejected_total{agent="app-1"} 1',
      'faultline_agent_reports_dropped_total{agent="app-1"} 2',
      'faultline_agent_implausible_acks_total{agent="app-1"} 5',
      'faultline_agent_reports_seq_refusals_total{agent="app-1"} 6',
      'faultline_agent_enrol_state{agent="app-1",state="enrolled"} 1',
      'faultline_agent_enrol_state{agent="app-1",state="saved"} 0',
    ];
    for (const line of want) expect(text).toContain(line);
  });

  it('with several collectors, the delivery series are one per collector (label collector)', async () => {
    const t = new AgentTelemetry({ agentName: 'app-1', agentLabels: {}, serviceVersion: '0' });
    const one = { rejected: 0, implausibleAcks: 0, seqRefusals: 0, enrolState: 'enrolled' };
    t.observeDelivery(() => ({
      spoolBatches: 7,
      spoolBytes: 100,
      lagSeconds: 30,
      acceptedSeq: 50,
      rejected: 0,
      dropped: 0,
      implausibleAcks: 0,
      seqRefusals: 0,
      enrolState: 'enrolled',
      collectors: [
        { ...one, collector: 'http://c-a:7070', lagSeconds: 0, acceptedSeq: 50 },
        {
          ...one,
          collector: 'http://c-b:7070',
          lagSeconds: 30,
          acceptedSeq: 43,
          enrolState: 'saved',
        },
      ],
    }));
    const text = await t.renderPrometheus();
    await t.shutdown();
    for (const line of [
      'faultline_agent_spool_batches{agent="app-1"} 7',
      'faultline_agent_delivery_lag_seconds{agent="app-1",collector="http://c-a:7070"} 0',
      'faultline_agent_delivery_lag_seconds{agent="app-1",collector="http://c-b:7070"} 30',
      'faultline_agent_reports_acked_seq{agent="app-1",collector="http://c-a:7070"} 50',
      'faultline_agent_reports_acked_seq{agent="app-1",collector="http://c-b:7070"} 43',
      'faultline_agent_enrol_state{agent="app-1",collector="http://c-b:7070",state="saved"} 1',
    ])
      expect(text).toContain(line);
    expect(text).not.toContain('faultline_agent_reports_acked_seq{agent="app-1"} ');
  });

  it('a class change moves the state series: the old class disappears, the results counter keeps both', async () => {
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    expect(samples(await t.renderPrometheus())).toContain(
      `faultline_probe_state{${dbLabels},class="tcp_timeout"} 1`,
    );
    t.recordResult(dbOk, db);
    const lines = samples(await t.renderPrometheus());
    expect(lines.filter((l) => l.startsWith(`faultline_probe_state{${dbLabels}`))).toEqual([
      `faultline_probe_state{${dbLabels},class="ok"} 1`,
    ]);
    expect(lines).toContain(`probe_success{${dbBb}} 1`);
    expect(lines).toContain(`faultline_probe_results_total{${dbLabels},class="tcp_timeout"} 1`);
    expect(lines).toContain(`faultline_probe_results_total{${dbLabels},class="ok"} 1`);
  });

  it('removeTarget drops every series of the target; a late result of the removed target does not revive it', async () => {
    const t = telemetry();
    recordThree(t);
    t.removeTarget('db');
    let text = await t.renderPrometheus();
    expect(text).not.toContain('target="db"');
    expect(text).toContain('target="web"');
    // The probe that was in flight when the config dropped db answers now: ignored.
    t.recordResult(dbOk, db);
    text = await t.renderPrometheus();
    expect(text).not.toContain('target="db"');
    // A later config adds db back (a new target object): recorded afresh, counts from zero.
    t.recordResult(dbOk, { labels: { zone: 'c' } });
    const lines = samples(await t.renderPrometheus());
    expect(lines).toContain(
      'probe_success{agent="a1",target="db",kind="tcp",zone="c",address="db.example"} 1',
    );
    expect(lines).toContain(
      'faultline_probe_results_total{agent="a1",target="db",kind="tcp",zone="c",class="ok"} 1',
    );
  });

  it('removeTarget with a kind drops only that path', async () => {
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    t.recordResult(
      result({ target: 'db', kind: 'icmp', class: 'ok', timings: { rttMs: 1, totalMs: 1 } }),
      db,
    );
    t.removeTarget('db', 'tcp');
    const text = await t.renderPrometheus();
    expect(text).not.toContain('kind="tcp"');
    expect(samples(text)).toContain(
      'probe_success{agent="a1",target="db",kind="icmp",zone="b",address="db.example"} 1',
    );
  });

  it('a reloaded config keeps a target (new object, equal labels): its series go on, and removing it later still holds off late results', async () => {
    const t = telemetry();
    const before: TelemetryTarget = { labels: { zone: 'b' } };
    const after: TelemetryTarget = { labels: { zone: 'b' } };
    t.recordResult(dbTimeout, before);
    t.recordResult(dbTimeout, after);
    expect(samples(await t.renderPrometheus())).toContain(
      `faultline_probe_results_total{${dbLabels},class="tcp_timeout"} 2`,
    );
    t.removeTarget('db');
    t.recordResult(dbOk, after);
    expect(await t.renderPrometheus()).not.toContain('target="db"');
  });

  it('removing one kind of a target does not block another kind of the same target object', async () => {
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    t.removeTarget('db', 'tcp');
    t.recordResult(
      result({ target: 'db', kind: 'icmp', class: 'ok', timings: { rttMs: 1, totalMs: 1 } }),
      db,
    );
    t.recordResult(dbOk, db);
    const text = await t.renderPrometheus();
    expect(text).not.toContain('kind="tcp"');
    expect(samples(text)).toContain(
      `probe_success{agent="a1",target="db",kind="icmp",zone="b",address="db.example"} 1`,
    );
  });

  it('in-flight count can be read from a callback at collection time', async () => {
    const t = telemetry();
    let n = 4;
    t.observeInFlight(() => n);
    expect(samples(await t.renderPrometheus())).toContain(
      'faultline_agent_probes_in_flight{agent="a1"} 4',
    );
    n = 7;
    expect(samples(await t.renderPrometheus())).toContain(
      'faultline_agent_probes_in_flight{agent="a1"} 7',
    );
  });

  it('changed labels for a target (config reload) replace its series; equal labels in a new object keep them', async () => {
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    t.recordResult(dbTimeout, { labels: { zone: 'b' } });
    expect(samples(await t.renderPrometheus())).toContain(
      `faultline_probe_results_total{${dbLabels},class="tcp_timeout"} 2`,
    );
    t.recordResult(dbTimeout, { labels: { zone: 'b', rack: 'r7' } });
    const lines = samples(await t.renderPrometheus());
    expect(
      lines.filter((l) => l.includes(dbLabels) && !l.includes(`${dbLabels},rack="r7"`)),
    ).toEqual([]);
    expect(lines).toContain(
      'faultline_probe_results_total{agent="a1",target="db",kind="tcp",zone="b",rack="r7",class="tcp_timeout"} 1',
    );
  });

  it('target labels cannot override the agent’s own attributes', async () => {
    const t = telemetry();
    t.recordResult(dbTimeout, { labels: { kind: 'fake', class: 'fake', zone: 'b' } });
    expect(samples(await t.renderPrometheus())).toContain(`probe_success{${dbBb}} 0`);
  });

  it('counts skips per path and internal errors as result="error"', async () => {
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    t.recordSkip('db');
    t.recordSkip('db');
    t.recordResult(
      result({ target: 'web', kind: 'http', class: 'internal_error', timings: { totalMs: 1 } }),
      web,
    );
    const lines = samples(await t.renderPrometheus());
    expect(lines).toContain(`faultline_probe_skipped_total{${dbLabels}} 2`);
    expect(lines).toContain('faultline_agent_probes_total{agent="a1",result="skipped"} 2');
    expect(lines).toContain('faultline_agent_probes_total{agent="a1",result="error"} 1');
    expect(lines).toContain('faultline_agent_probes_total{agent="a1",result="completed"} 1');
  });

  it('duration histograms: phases for http only; tcp and icmp get phase="total" alone', async () => {
    const t = telemetry(everySeries);
    t.recordResult(dbOk, db); // tcp with a connect timing
    t.recordResult(gwLossy, gw); // icmp with an rtt timing
    t.recordResult(webOk, web);
    const lines = samples(await t.renderPrometheus());
    const phasesOf = (labels: string): string[] =>
      lines
        .filter((l) => l.startsWith(`faultline_probe_duration_seconds_count{${labels},`))
        .map((l) => /phase="([^"]+)"/.exec(l)?.[1] ?? '?')
        .sort();
    expect(phasesOf(dbLabels)).toEqual(['total']);
    expect(phasesOf(gwLabels)).toEqual(['total']);
    expect(phasesOf(webLabels)).toEqual(['connect', 'dns', 'first_byte', 'tls', 'total']);
    // Every duration histogram has the 11 bounds plus +Inf.
    const buckets = lines.filter((l) =>
      l.startsWith(`faultline_probe_duration_seconds_bucket{${dbLabels},phase="total",`),
    );
    expect(buckets).toHaveLength(probeDurationBucketsS.length + 1);
    expect(probeDurationBucketsS).toHaveLength(11);
  });

  it('a large exposition is built in slices, yielding to the event loop in between', async () => {
    const t = telemetry();
    const target: TelemetryTarget = { labels: { zone: 'a' } };
    for (let i = 0; i < 1000; i++) t.recordResult(result({ ...dbOk, target: `t${i}` }), target);
    let turns = 0;
    let counting = true;
    const count = (): void => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    // A slice of 0 ms: a yield at every look at the clock (every 16 paths).
    const text = await t.renderPrometheus(0);
    counting = false;
    // Probes due meanwhile get the event loop: once per slice, not once at the end.
    expect(turns).toBeGreaterThanOrEqual(50);
    expect(samples(text).filter((l) => l.startsWith('probe_success{'))).toHaveLength(1000);
  });

  it('a slice is bounded in time: no stretch of the render without a yield is much longer than it', async () => {
    const t = telemetry(everySeries);
    const target: TelemetryTarget = { labels: { zone: 'a' } };
    for (let i = 0; i < 3000; i++) t.recordResult(result({ ...webOk, target: `t${i}` }), target);
    await t.renderPrometheus(); // label strings are rendered once per attribute set
    const gaps: number[] = [];
    let last = performance.now();
    let counting = true;
    const tick = (): void => {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
      if (counting) setImmediate(tick);
    };
    setImmediate(tick);
    const t0 = performance.now();
    await t.renderPrometheus(2);
    const renderMs = performance.now() - t0;
    counting = false;
    // 3,000 https paths with every series take well over one 2 ms slice: it yielded.
    expect(gaps.length).toBeGreaterThan(1);
    // Loose: a slice stops at most 16 paths past its time; a busy CI machine adds its own.
    if (renderMs > 20) expect(Math.max(...gaps)).toBeLessThan(renderMs);
  });

  it('metricsHandler serves the exposition over HTTP', async () => {
    const t = telemetry();
    recordThree(t);
    const server = createHttpServer((req, res) => t.metricsHandler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(prometheusContentType);
      expect(samples(await res.text())).toContain(`probe_success{${dbBb}} 0`);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  describe.runIf(existsSync('/usr/bin/promtool'))('promtool', () => {
    it('accepts the exposition: `promtool check metrics` finds no problem', async () => {
      const t = telemetry();
      recordThree(t);
      const text = await t.renderPrometheus();
      const out = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
        const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, output }));
        child.stdin.end(text);
      });
      expect(out.output).toBe('');
      expect(out.code).toBe(0);
    });
  });
});

const blackboxBin = '/usr/bin/prometheus-blackbox-exporter';
describe.runIf(existsSync(blackboxBin) && process.getuid?.() === 0)(
  'compatibility with the real blackbox_exporter',
  () => {
    let dir: string;
    let blackbox: ChildProcess | undefined;
    let blackboxUrl: string;
    let httpsServer: Server;
    let httpsPort: number;
    let certPem: string;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'faultline-bbx-'));
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '2',
          '-subj',
          '/CN=localhost',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      certPem = readFileSync(join(dir, 'cert.pem'), 'utf8');
      httpsServer = createHttpsServer(
        { key: readFileSync(join(dir, 'key.pem')), cert: certPem },
        (_req, res) => res.end('ok'),
      );
      await new Promise<void>((resolve) => httpsServer.listen(0, '127.0.0.1', resolve));
      httpsPort = (httpsServer.address() as AddressInfo).port;
      writeFileSync(
        join(dir, 'blackbox.yml'),
        [
          'modules:',
          '  http: { prober: http, timeout: 2s, http: { tls_config: { insecure_skip_verify: true } } }',
          '  tcp: { prober: tcp, timeout: 2s }',
          '  icmp: { prober: icmp, timeout: 2s, icmp: { preferred_ip_protocol: ip4 } }',
        ].join('\n'),
      );
      const port = await freePort();
      blackboxUrl = `http://127.0.0.1:${port}`;
      blackbox = spawn(
        blackboxBin,
        [`--config.file=${join(dir, 'blackbox.yml')}`, `--web.listen-address=127.0.0.1:${port}`],
        { stdio: 'ignore' },
      );
      await pollUntil(
        'blackbox_exporter to listen',
        async () => (await fetch(`${blackboxUrl}/-/healthy`)).ok,
      );
    });
    afterAll(async () => {
      blackbox?.kill('SIGKILL');
      httpsServer?.closeAllConnections();
      await new Promise((resolve) => httpsServer?.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    });

    async function probe(module: string, target: string): Promise<string> {
      const res = await fetch(
        `${blackboxUrl}/probe?module=${module}&target=${encodeURIComponent(target)}`,
      );
      return res.text();
    }
    /** name → TYPE, and name → the `phase` values seen. */
    function shape(text: string): { types: Map<string, string>; phases: Map<string, Set<string>> } {
      const types = new Map<string, string>();
      const phases = new Map<string, Set<string>>();
      for (const line of text.split('\n')) {
        const type = /^# TYPE (\S+) (\S+)$/.exec(line);
        if (type) types.set(type[1]!, type[2]!);
        const phase = /^(\w+)\{.*phase="(\w+)".*\} /.exec(line);
        if (phase) {
          if (!phases.has(phase[1]!)) phases.set(phase[1]!, new Set());
          phases.get(phase[1]!)!.add(phase[2]!);
        }
      }
      return { types, phases };
    }

    it('every probe_* alias has the name, type and phase values blackbox_exporter uses', async () => {
      const bb = shape(
        (
          await Promise.all([
            probe('http', `https://127.0.0.1:${httpsPort}/`),
            probe('tcp', `127.0.0.1:${httpsPort}`),
            probe('icmp', '127.0.0.1'),
          ])
        ).join('\n'),
      );
      expect(bb.types.get('probe_success')).toBe('gauge');

      const t = telemetry(everySeries);
      recordThree(t);
      const ours = shape(await t.renderPrometheus());
      const aliases = [...ours.types.keys()].filter((n) => n.startsWith('probe_'));
      expect(aliases.sort()).toEqual([
        'probe_dns_lookup_time_seconds',
        'probe_duration_seconds',
        'probe_failed_due_to_regex',
        'probe_http_content_length',
        'probe_http_duration_seconds',
        'probe_http_redirects',
        'probe_http_ssl',
        'probe_http_status_code',
        'probe_http_version',
        'probe_icmp_duration_seconds',
        'probe_ip_protocol',
        'probe_ssl_earliest_cert_expiry',
        'probe_success',
        'probe_tls_version_info',
      ]);
      for (const name of aliases) {
        expect({ name, type: bb.types.get(name) }).toEqual({ name, type: ours.types.get(name) });
        for (const phase of ours.phases.get(name) ?? [])
          expect(bb.phases.get(name), `${name} phase ${phase}`).toContain(phase);
      }
    });

    it('probe_ssl_earliest_cert_expiry matches blackbox_exporter for a certificate validTo as node reports it', async () => {
      const bbText = await probe('http', `https://127.0.0.1:${httpsPort}/`);
      const bbExpiry = Number(/^probe_ssl_earliest_cert_expiry (\S+)$/m.exec(bbText)?.[1]);
      expect(bbExpiry).toBeGreaterThan(Date.now() / 1000);

      const t = telemetry();
      const validTo = new X509Certificate(certPem).validTo;
      t.recordResult(
        result({
          target: 'web',
          kind: 'http',
          class: 'ok',
          timings: { totalMs: 1 },
          detail: { status: 200, certificate: { validTo } },
        }),
        web,
      );
      expect(valueOf(await t.renderPrometheus(), `probe_ssl_earliest_cert_expiry{${webBb}}`)).toBe(
        bbExpiry,
      );
    });
  },
);

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('OTLP push settings from the environment', () => {
  const cases: { name: string; env: Record<string, string>; expected?: unknown; error?: RegExp }[] =
    [
      {
        name: 'no endpoint: no push',
        env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
        expected: undefined,
      },
      {
        name: 'an empty endpoint counts as unset',
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: '' },
        expected: undefined,
      },
      {
        name: 'general endpoint: /v1/metrics appended, protobuf and spec intervals by default',
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318' },
        expected: {
          protocol: 'http/protobuf',
          url: 'http://otel:4318/v1/metrics',
          intervalMs: 60_000,
          timeoutMs: 30_000,
        },
      },
      {
        name: 'general endpoint with a path and trailing slash',
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otel/prefix/' },
        expected: {
          protocol: 'http/protobuf',
          url: 'https://otel/prefix/v1/metrics',
          intervalMs: 60_000,
          timeoutMs: 30_000,
        },
      },
      {
        name: 'metrics endpoint used as is; metrics protocol wins over the general one',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
          OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://otel:4318/custom',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
          OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
          OTEL_METRIC_EXPORT_INTERVAL: '5000',
        },
        expected: {
          protocol: 'http/json',
          url: 'http://otel:4318/custom',
          intervalMs: 5000,
          timeoutMs: 5000,
        },
      },
      {
        name: 'grpc is refused, pointing at http/protobuf',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4317',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        },
        error: /^OTEL_EXPORTER_OTLP_PROTOCOL=grpc: .*not supported.*http\/protobuf/,
      },
      {
        name: 'grpc in the metrics protocol names that variable',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4317',
          OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'grpc',
        },
        error: /^OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=grpc/,
      },
      {
        name: 'an unknown protocol',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/xml',
        },
        error: /expected http\/protobuf or http\/json \(actual: "http\/xml"\)/,
      },
      {
        name: 'an endpoint without a scheme',
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'otel:4318' },
        error: /^OTEL_EXPORTER_OTLP_ENDPOINT: expected an http\(s\) URL \(actual: "otel:4318"\)/,
      },
      {
        name: 'a bad interval',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318',
          OTEL_METRIC_EXPORT_INTERVAL: '10s',
        },
        error: /^OTEL_METRIC_EXPORT_INTERVAL: expected a positive whole number/,
      },
      {
        name: 'a zero timeout',
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318', OTEL_METRIC_EXPORT_TIMEOUT: '0' },
        error: /^OTEL_METRIC_EXPORT_TIMEOUT:/,
      },
    ];
  for (const c of cases) {
    it(c.name, () => {
      if (c.error !== undefined) {
        expect(() => otlpPushFromEnv(c.env)).toThrow(ConfigError);
        expect(() => otlpPushFromEnv(c.env)).toThrow(c.error);
      } else {
        expect(otlpPushFromEnv(c.env)).toEqual(c.expected);
      }
    });
  }

  it('the agent refuses to start with OTEL_EXPORTER_OTLP_PROTOCOL=grpc (ConfigError, FL_ERR_CONFIG)', () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:4317';
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'grpc';
    let caught: unknown;
    try {
      telemetry();
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).code).toBe('FL_ERR_CONFIG');
    expect((caught as ConfigError).message).toMatch(/gRPC is not supported.*http\/protobuf/);
  });

  it('without an endpoint there is no push reader', () => {
    expect(telemetry().otlp).toBeUndefined();
  });
});

describe('OTLP push', () => {
  let receiver: OtlpReceiver | undefined;
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((t) => t.shutdown(1000)));
    await receiver?.close();
    receiver = undefined;
  });

  it('pushes http/protobuf to OTEL_EXPORTER_OTLP_ENDPOINT with the resource (plus OTEL_RESOURCE_ATTRIBUTES), OTel names, units, attributes and headers', async () => {
    receiver = await OtlpReceiver.start();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '100';
    process.env.OTEL_EXPORTER_OTLP_HEADERS = 'x-faultline-test=yes';
    process.env.OTEL_RESOURCE_ATTRIBUTES = 'deployment.environment=test,service.name=not-us';
    const t = telemetry(everySeries);
    expect(t.otlp).toMatchObject({
      protocol: 'http/protobuf',
      url: `${receiver.url}/v1/metrics`,
      intervalMs: 100,
    });
    recordThree(t);
    const r = receiver;
    await pollUntil('probe_success of db pushed', () =>
      r.latest('probe_success', { target: 'db' }),
    );

    const exp = r.exports.at(-1)!;
    expect(r.errors).toEqual([]);
    expect(exp.path).toBe('/v1/metrics');
    expect(exp.encoding).toBe('protobuf');
    expect(exp.headers['content-type']).toBe('application/x-protobuf');
    expect(exp.headers['x-faultline-test']).toBe('yes');
    expect(exp.resource).toMatchObject({
      'service.name': 'faultline-agent',
      'service.version': '1.2.3',
      'host.name': 'host-1',
      'faultline.agent': 'a1',
      'faultline.agent.label.zone': 'a',
      'telemetry.sdk.language': 'nodejs',
      'deployment.environment': 'test',
    });

    const success = r.latest('probe_success', { target: 'db' })!;
    expect(success.metric.type).toBe('gauge');
    expect(success.point).toMatchObject({
      attributes: { agent: 'a1', target: 'db', kind: 'tcp', zone: 'b' },
      value: 0,
    });
    expect(r.latest('faultline.probe.state', { target: 'db' })!.point).toMatchObject({
      attributes: { class: 'tcp_timeout' },
      value: 1,
    });

    const results = r.latest('faultline.probe.results', { target: 'db' })!;
    expect(results.metric).toMatchObject({
      type: 'sum',
      monotonic: true,
      temporality: 2,
      unit: '{result}',
    });
    expect(results.point).toMatchObject({
      attributes: { agent: 'a1', target: 'db', kind: 'tcp', zone: 'b', class: 'tcp_timeout' },
      value: 1,
    });

    const connect = r.latest('faultline.probe.duration', { target: 'web', phase: 'connect' })!;
    expect(connect.metric).toMatchObject({ type: 'histogram', unit: 's', temporality: 2 });
    expect(connect.point.explicitBounds).toEqual(probeDurationBucketsS);
    expect(connect.point).toMatchObject({ count: 1, sum: 0.002, min: 0.002, max: 0.002 });
    const bucketCounts = connect.point.bucketCounts!;
    expect(bucketCounts[probeDurationBucketsS.indexOf(0.0025)]).toBe(1);
    expect(bucketCounts.reduce((a, b) => a + b, 0)).toBe(1);

    expect(r.latest('faultline.probe.icmp.loss', { target: 'gw' })!).toMatchObject({
      metric: { unit: '1' },
      point: { value: 0.25 },
    });
    expect(r.latest('faultline.agent.probes', { result: 'started' })!).toMatchObject({
      metric: { type: 'sum', monotonic: true },
      point: { value: 3 },
    });
    expect(r.latest('faultline.agent.memory.rss')!.metric.unit).toBe('By');
    expect(r.latest('faultline.agent.memory.rss')!.point.value).toBeGreaterThan(1e6);
    // OTLP carries the OTel names; the Prometheus names are the Prometheus side's business.
    expect(r.points('faultline_probe_duration_seconds')).toEqual([]);
  });

  it('over OTLP too, a class change replaces the state series instead of leaving the old one at 1', async () => {
    receiver = await OtlpReceiver.start();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '100';
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    const r = receiver;
    await pollUntil('tcp_timeout state pushed', () =>
      r.latest('faultline.probe.state', { target: 'db', class: 'tcp_timeout' }),
    );
    t.recordResult(dbOk, db);
    await pollUntil('ok state pushed', () =>
      r.latest('faultline.probe.state', { target: 'db', class: 'ok' }),
    );
    const last = r.exports.at(-1)!;
    const states = last.metrics
      .filter((x) => x.name === 'faultline.probe.state')
      .flatMap((x) => x.points);
    expect(states.map((p) => p.attributes.class)).toEqual(['ok']);
  });

  it('pushes http/json to OTEL_EXPORTER_OTLP_METRICS_ENDPOINT as is, gzip-compressed when asked', async () => {
    receiver = await OtlpReceiver.start();
    process.env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = `${receiver.url}/custom/metrics`;
    process.env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = 'http/json';
    process.env.OTEL_EXPORTER_OTLP_COMPRESSION = 'gzip';
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '100';
    const t = telemetry(everySeries);
    recordThree(t);
    const r = receiver;
    const got = await pollUntil('probe_success of db pushed', () =>
      r.latest('probe_success', { target: 'db' }),
    );
    expect(got.point.value).toBe(0);
    const exp = r.exports.at(-1)!;
    expect(r.errors).toEqual([]);
    expect(exp).toMatchObject({
      path: '/custom/metrics',
      encoding: 'json',
      headers: { 'content-encoding': 'gzip' },
    });
    expect(exp.resource['service.name']).toBe('faultline-agent');
    expect(
      r.latest('faultline.probe.duration', { target: 'web', phase: 'tls' })!.point,
    ).toMatchObject({ count: 1, sum: 0.004 });
  });

  it('shutdown flushes: a result recorded just before it reaches the receiver, although the interval is a minute', async () => {
    receiver = await OtlpReceiver.start();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '60000';
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    expect(receiver.exports).toEqual([]);
    const outcome = await t.shutdown();
    expect(outcome).toEqual({ ok: true });
    expect(receiver.latest('faultline.probe.state', { target: 'db' })?.point.attributes.class).toBe(
      'tcp_timeout',
    );
    // A second shutdown is harmless and answers the same.
    expect(await t.shutdown()).toEqual({ ok: true });
  });

  it('shutdown is bounded and never throws when the collector does not answer', async () => {
    receiver = await OtlpReceiver.start({ hang: true });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '60000';
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    const t0 = performance.now();
    const outcome = await t.shutdown(300);
    const elapsedMs = performance.now() - t0;
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toMatch(/within 300 ms|timeout|timed out/i);
    expect(elapsedMs).toBeLessThan(1500);
    expect(receiver.exports.length).toBe(1); // it did try
  });

  it('shutdown reports a failed final export (collector answers 400)', async () => {
    receiver = await OtlpReceiver.start({ status: 400 });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '60000';
    const t = telemetry();
    t.recordResult(dbTimeout, db);
    const outcome = await t.shutdown(3000);
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toMatch(/final OTLP export failed/);
  });
});

describe('a failing OTLP endpoint', () => {
  let receiver: OtlpReceiver | undefined;
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((t) => t.shutdown(1000)));
    await receiver?.close();
    receiver = undefined;
  });

  it('is counted (faultline_otlp_exports_total{outcome="failure"}) and logged once, not once per export', async () => {
    receiver = await OtlpReceiver.start({ status: 400 });
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_METRIC_EXPORT_INTERVAL = '100';
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger(
      'agent',
      {},
      { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
    );
    const t = new AgentTelemetry({
      agentName: 'a1',
      agentLabels: {},
      serviceVersion: '1.2.3',
      logger,
    });
    opened.push(t);
    t.recordResult(dbTimeout, db);
    const failures = (text: string): number =>
      Number(
        /^faultline_otlp_exports_total\{agent="a1",outcome="failure"\} (\d+)$/m.exec(text)?.[1],
      );
    const text = await pollUntil('three failed exports counted', async () => {
      const body = await t.renderPrometheus();
      return failures(body) >= 3 ? body : undefined;
    });
    expect(text).toMatch(/^# TYPE faultline_otlp_exports_total counter$/m);
    expect(text).toMatch(/^faultline_otlp_exports_total\{agent="a1",outcome="success"\} 0$/m);
    const failing = lines.filter((l) => l.msg === 'OTLP metrics export failing');
    expect(failing).toHaveLength(1);
    expect(failing[0]).toMatchObject({ level: 40, url: `${receiver.url}/v1/metrics` });
    expect(String(failing[0]?.err)).not.toBe('');
  });
});

describe('recordResult cost (printed, loosely bounded)', () => {
  it('100k results over 1,000 targets', async () => {
    const t = telemetry();
    const n = 1000;
    const targets = Array.from({ length: n }, (_, i): TelemetryTarget => ({
      labels: { zone: `z${i % 4}`, rack: `r${i % 16}` },
    }));
    const results = Array.from({ length: n }, (_, i) =>
      i % 3 === 0
        ? result({
            target: `t${i}`,
            kind: 'http',
            class: 'ok',
            timings: { dnsMs: 0.3, connectMs: 0.2, tlsMs: 2, firstByteMs: 3, totalMs: 6 },
            detail: { status: 200 },
          })
        : i % 3 === 1
          ? result({
              target: `t${i}`,
              kind: 'tcp',
              class: i % 7 === 0 ? 'tcp_timeout' : 'ok',
              timings: { connectMs: 0.2, totalMs: 0.3 },
            })
          : result({
              target: `t${i}`,
              kind: 'icmp',
              class: 'ok',
              timings: { rttMs: 0.1, totalMs: 1 },
              detail: { lossRatio: 0, rttsMs: [0.1, 0.1, 0.1] },
            }),
    );
    for (let i = 0; i < n; i++) t.recordResult(results[i]!, targets[i]!); // paths created outside the timing
    const calls = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) {
      const k = i % n;
      t.recordStart(0.1);
      t.recordResult(results[k]!, targets[k]!);
    }
    const usPerCall = ((performance.now() - t0) * 1000) / calls;
    const r0 = performance.now();
    const text = await t.renderPrometheus();
    const renderMs = performance.now() - r0;
    console.log(
      `recordStart+recordResult: ${usPerCall.toFixed(3)} µs/call over ${n} targets; ` +
        `/metrics for ${n} paths: ${renderMs.toFixed(0)} ms, ${(text.length / 1e6).toFixed(1)} MB, ${samples(text).length} samples`,
    );
    expect(valueOf(text, 'faultline_agent_probes_total{agent="a1",result="completed"}')).toBe(
      calls + n,
    );
    expect(usPerCall).toBeLessThan(50);
  });
});
