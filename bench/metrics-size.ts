/**
 * The agent's /metrics page at N targets, without probing: its size, samples and render
 * time, from the telemetry fed with realistic results (a third each https, tcp and icmp,
 * addresses ~40 characters long, two target labels). Prints Markdown.
 *
 *   node dist/bench/metrics-size.js [--targets 1000] [--probe-instance scrape|address]
 *     [--histograms] [--blackbox core|full] [--failing 0.1] [--dump FILE]
 *
 * A direct measurement of what a scrape costs, beside `bench:agent`'s end-to-end one.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  AgentTelemetry,
  blackboxSeriesModes,
  probeInstanceModes,
  type BlackboxSeries,
  type ProbeInstance,
  type TelemetryTarget,
} from '../agent/telemetry/index.js';
import type { ProbeResult } from '../wire/result.js';
import { runBench } from './lib.js';

function results(n: number, nowMs: number): { result: ProbeResult; target: TelemetryTarget }[] {
  return Array.from({ length: n }, (_, i) => {
    const target = { labels: { zone: `z${i % 4}`, rack: `r${i % 16}` } };
    const common = { agent: 'agent-01.example', target: `svc-${i}`, seq: 1, startedAtMs: nowMs };
    const ip = `10.${i % 3}.${i >> 8}.${i & 255}`;
    if (i % 3 === 0) {
      const url = `https://svc-${i}.internal.example:8443/healthz`;
      return {
        target,
        result: {
          ...common,
          kind: 'http',
          address: url,
          class: 'ok',
          timings: { dnsMs: 0.3, connectMs: 0.2, tlsMs: 2, firstByteMs: 3, totalMs: 6 },
          detail: {
            url,
            redirects: 0,
            status: 200,
            httpVersion: '1.1',
            bodyBytes: 2,
            contentLength: 2,
            ip,
            tlsVersion: 'TLSv1.3',
            certificate: { validTo: '2030-09-03T21:33:03.000Z' },
          },
        },
      };
    }
    if (i % 3 === 1) {
      return {
        target,
        result: {
          ...common,
          kind: 'tcp',
          address: `${ip}:5432`,
          class: 'ok',
          timings: { connectMs: 0.2, totalMs: 0.3 },
          detail: { ip },
        },
      };
    }
    return {
      target,
      result: {
        ...common,
        kind: 'icmp',
        address: ip,
        class: 'ok',
        timings: { rttMs: 0.1, totalMs: 1 },
        detail: { ip, lossRatio: 0, rttsMs: [0.1, 0.1, 0.1] },
      },
    };
  });
}

const failedClass: Readonly<Record<string, ProbeResult['class']>> = {
  http: 'http_timeout',
  tcp: 'tcp_timeout',
  icmp: 'icmp_timeout',
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      targets: { type: 'string', default: '1000' },
      'probe-instance': { type: 'string', default: 'scrape' },
      histograms: { type: 'boolean', default: false },
      blackbox: { type: 'string', default: 'core' },
      failing: { type: 'string', default: '0' },
      dump: { type: 'string' },
    },
  });
  const blackbox = values.blackbox as BlackboxSeries;
  if (!blackboxSeriesModes.includes(blackbox))
    throw new Error(
      `--blackbox: expected ${blackboxSeriesModes.join(' or ')} (actual: ${String(blackbox)})`,
    );
  const failing = Number(values.failing);
  if (!(failing >= 0 && failing <= 1))
    throw new Error(`--failing: expected a share 0..1 (actual: ${values.failing})`);
  const n = Number(values.targets);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--targets: expected a positive whole number (actual: ${values.targets})`);
  const mode = values['probe-instance'] as ProbeInstance;
  if (!probeInstanceModes.includes(mode))
    throw new Error(
      `--probe-instance: expected ${probeInstanceModes.join(' or ')} (actual: ${String(mode)})`,
    );

  const t = new AgentTelemetry({
    agentName: 'agent-01.example',
    hostName: 'host-01',
    agentLabels: { zone: 'a' },
    serviceVersion: '0',
    probeInstance: mode,
    series: { histograms: values.histograms, blackbox },
  });
  try {
    const all = results(n, Date.now());
    // A few rounds, so every histogram has counts in several buckets' worth of lines.
    for (let round = 0; round < 5; round++)
      for (const { result, target } of all) t.recordResult(result, target);
    // The failing share: one more round in which they time out (a second class each).
    const nFailing = Math.round(n * failing);
    for (const { result, target } of all.slice(0, nFailing))
      t.recordResult({ ...result, class: failedClass[result.kind] ?? 'tcp_timeout' }, target);
    await t.renderPrometheus(); // warm: label strings are rendered once per attribute set
    let bestMs = Infinity;
    let text = '';
    for (let k = 0; k < 5; k++) {
      const t0 = performance.now();
      text = await t.renderPrometheus();
      bestMs = Math.min(bestMs, performance.now() - t0);
    }
    if (values.dump !== undefined) writeFileSync(values.dump, text);
    const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const probe = lines.filter((l) => l.startsWith('probe_'));
    const mb = (bytes: number): string => (bytes / 1e6).toFixed(2);
    const probeBytes = probe.reduce((a, l) => a + Buffer.byteLength(l) + 1, 0);
    process.stdout.write(
      [
        `## Agent /metrics at ${n} targets (probeInstance: ${mode}, histograms: ${values.histograms}, blackbox: ${blackbox}, failing: ${nFailing})`,
        '',
        '| | bytes | MB | samples |',
        '| --- | ---: | ---: | ---: |',
        `| whole page | ${Buffer.byteLength(text)} | ${mb(Buffer.byteLength(text))} | ${lines.length} |`,
        `| probe_* series | ${probeBytes} | ${mb(probeBytes)} | ${probe.length} |`,
        '',
        `Rendered in ${bestMs.toFixed(1)} ms (best of 5).`,
        '',
      ].join('\n'),
    );
  } finally {
    await t.shutdown(1000);
  }
}

runBench('metrics-size', main);
