/**
 * Detection benchmark (issue 6): fault injected → the right answer, for each injector of the
 * lab, Faultline side by side with the usual stack watching the same lab — Prometheus
 * blackbox_exporter probing the same hosts and ports, Debian's Prometheus scraping it every
 * second with a `probe_success == 0` alert rule, Debian's Alertmanager receiving the alerts.
 * The faults and their right answers are `faultline demo`'s (cli/demo.ts), in its lab (the
 * collector on ctl-1); blackbox also sends every host a full-size ping with Don't Fragment
 * (module icmp_mtu), the usual stack's best chance at a smaller MTU.
 *
 *   node dist/bench/detection.js [--runs 5] [--faults all|name,name] [--timeout-s 30]
 *       [--usual-scrape-s 1] [--usual-for-s 2] [--json FILE]
 *
 * Faultline: until GET /api/v1/diagnosis has the expected hypothesis on top (kind and
 * components). The usual stack: until Alertmanager holds an active ProbeFailed alert for a
 * probe of the faulty host — which says that a probe fails, not why; the table says how many
 * alerts it raised for the one fault, and what Faultline had on top before the right answer (a
 * wrong first answer pages too). Both watch every 100 ms. Needs root (namespaces).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Diagnosis } from '../wire/diagnosis.js';
import { startAlertmanager, type TestAlertmanager } from '../test/helpers/alertmanager.js';
import { labDiagnosis, matches, waitDiagnosisHealthy } from '../test/helpers/lab/expect.js';
import type { ExpectedHypothesis } from '../test/helpers/lab/expect.js';
import type { Fault } from '../test/helpers/lab/faults.js';
import { canRunLab, Lab } from '../test/helpers/lab/lab.js';
import { demoFaults, demoLab as spec } from '../cli/demo.js';
import { pollUntil } from '../test/helpers/poll-until.js';
import { startPrometheus, type TestPrometheus } from '../test/helpers/prometheus.js';
import {
  diesWithParent,
  freePort,
  httpReady,
  ManagedServer,
} from '../test/helpers/server-process.js';
import { blackboxConfig, runBench } from './lib.js';

const exporterBin = '/usr/bin/prometheus-blackbox-exporter';
const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

interface Case {
  readonly name: string;
  readonly fault: (lab: Lab) => Fault;
  readonly want: ExpectedHypothesis;
  /** Hosts whose blackbox probes failing is the usual stack's detection; none: it has no probe for it. */
  readonly usualHosts: readonly string[];
}

/**
 * The hosts whose failing blackbox probe counts as the usual stack's detection of each of
 * `faultline demo`'s faults (the same catalogue, the same right answers); none: no probe of
 * it can see the fault. For the collector's cut, its host's ping (blackbox sits on sw-1 with
 * the test process, not behind ctl-1's management link); for the MTU, web-1's full-size
 * ping with Don't Fragment (module icmp_mtu) or its HTTP page, whichever fails first.
 */
const usualHosts: Readonly<Record<string, readonly string[]>> = {
  'wrong-vlan': ['db-1', 'db-2'],
  'uplink-cut': ['db-1', 'db-2'],
  'host-link-down': ['db-2'],
  'postgres-stopped': ['db-1'],
  'postgres-frozen': ['db-1'],
  'port-dropped': [],
  'loss-30pct': ['db-2'],
  'agent-killed': [],
  'collector-cut': ['ctl-1'],
  'hosts-cut': ['app-1', 'app-2'],
  mtu: ['web-1'],
  'flapping-link': ['db-2'],
};

const cases: readonly Case[] = demoFaults.map((f) => ({
  name: f.name,
  fault: f.fault,
  want: f.want,
  usualHosts: usualHosts[f.name] ?? [],
}));

interface Settings {
  readonly runs: number;
  readonly cases: readonly Case[];
  readonly timeoutMs: number;
  /** The usual stack's scrape (and rule evaluation) interval and the alert rule's `for`. */
  readonly usualScrapeS: number;
  readonly usualForS: number;
  readonly json?: string;
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      faults: { type: 'string', default: 'all' },
      'timeout-s': { type: 'string', default: '30' },
      'usual-scrape-s': { type: 'string', default: '1' },
      'usual-for-s': { type: 'string', default: '2' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(
      `Usage: node dist/bench/detection.js [--runs 5] [--faults all|${cases.map((c) => c.name).join(',')}] [--timeout-s 30] [--json FILE]\n`,
    );
    process.exit(0);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50)
    throw new Error(`--runs: expected 1–50 (actual: ${values.runs})`);
  const timeoutS = Number(values['timeout-s']);
  if (!Number.isFinite(timeoutS) || timeoutS < 5 || timeoutS > 600)
    throw new Error(`--timeout-s: expected 5–600 (actual: ${values['timeout-s']})`);
  const names = String(values.faults);
  const chosen =
    names === 'all'
      ? cases
      : names.split(',').map((n) => {
          const c = cases.find((x) => x.name === n.trim());
          if (c === undefined)
            throw new Error(
              `--faults: no fault ${JSON.stringify(n)} (known: ${cases.map((x) => x.name).join(', ')})`,
            );
          return c;
        });
  const usualScrapeS = Number(values['usual-scrape-s']);
  const usualForS = Number(values['usual-for-s']);
  if (!Number.isInteger(usualScrapeS) || usualScrapeS < 1 || usualScrapeS > 300)
    throw new Error(`--usual-scrape-s: expected 1–300 (actual: ${values['usual-scrape-s']})`);
  if (!Number.isInteger(usualForS) || usualForS < 0 || usualForS > 3600)
    throw new Error(`--usual-for-s: expected 0–3600 (actual: ${values['usual-for-s']})`);
  return {
    runs,
    cases: chosen,
    timeoutMs: timeoutS * 1000,
    usualScrapeS,
    usualForS,
    ...(values.json === undefined ? {} : { json: values.json }),
  };
}

/** The usual stack: blackbox_exporter + Prometheus (1 s, alert rule) + Alertmanager. */
interface UsualStack {
  readonly alertmanager: TestAlertmanager;
  readonly prometheus: TestPrometheus;
  readonly exporter: ManagedServer;
  /** Blackbox probe instance → lab host. */
  readonly instanceHost: ReadonlyMap<string, string>;
  stop(): Promise<void>;
}

async function startUsualStack(lab: Lab, dir: string, s: Settings): Promise<UsualStack> {
  const alertmanager = await startAlertmanager();
  const port = await freePort();
  const configFile = `${dir}/blackbox.yml`;
  writeFileSync(configFile, blackboxConfig(800));
  const [command, args] = diesWithParent(exporterBin, [
    `--config.file=${configFile}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ]);
  const exporter = new ManagedServer('127.0.0.1', port, dir, {
    name: 'blackbox_exporter',
    command,
    args,
    stopSignal: 'SIGTERM',
    startTimeoutMs: 20_000,
    ready: httpReady(`http://127.0.0.1:${port}/-/healthy`),
  });
  await exporter.start();
  // The same hosts and ports the agents probe: every host, every service port, http apps.
  const instanceHost = new Map<string, string>();
  const byModule: Record<'icmp' | 'icmp_mtu' | 'tcp_connect' | 'http_2xx', string[]> = {
    icmp: [],
    icmp_mtu: [],
    tcp_connect: [],
    http_2xx: [],
  };
  for (const h of lab.hosts) {
    byModule.icmp.push(h.ip);
    byModule.icmp_mtu.push(h.ip);
    instanceHost.set(h.ip, h.name);
    for (const s of h.spec.services ?? []) {
      const p =
        s.kind === 'postgres'
          ? 5432
          : s.kind === 'redis'
            ? 6379
            : s.kind === 'http'
              ? (s.port ?? 8080)
              : 0;
      if (p === 0) continue;
      byModule.tcp_connect.push(`${h.ip}:${p}`);
      instanceHost.set(`${h.ip}:${p}`, h.name);
      if (s.kind === 'http') {
        const url = `http://${h.ip}:${p}/healthz`;
        byModule.http_2xx.push(url);
        instanceHost.set(url, h.name);
      }
    }
  }
  const scrapeConfigs = (['icmp', 'icmp_mtu', 'tcp_connect', 'http_2xx'] as const)
    .map((m) =>
      [
        `  - job_name: blackbox-${m}`,
        '    metrics_path: /probe',
        `    params: { module: [${m}] }`,
        '    static_configs:',
        `      - targets: [${byModule[m].map((t) => JSON.stringify(t)).join(', ')}]`,
        '    relabel_configs:',
        '      - { source_labels: [__address__], target_label: __param_target }',
        '      - { source_labels: [__param_target], target_label: instance }',
        `      - { target_label: __address__, replacement: "127.0.0.1:${port}" }`,
      ].join('\n'),
    )
    .join('\n');
  // Default `for: 2s` at a 1 s interval: three failing probes in a row, Faultline's debounce
  // (the usual production setting is a 15 s scrape and `for: 1m`: --usual-scrape-s 15
  // --usual-for-s 60, with --timeout-s 120).
  const rules = [
    'groups:',
    '  - name: blackbox',
    '    rules:',
    '      - alert: ProbeFailed',
    '        expr: probe_success == 0',
    `        for: ${s.usualForS}s`,
    '        labels: { severity: critical }',
    '        annotations: { summary: "probe of {{ $labels.instance }} ({{ $labels.job }}) fails" }',
    '',
  ].join('\n');
  const prometheus = await startPrometheus([], s.usualScrapeS, {
    scrapeConfigs,
    rules,
    alertmanagers: [alertmanager.url],
  });
  return {
    alertmanager,
    prometheus,
    exporter,
    instanceHost,
    async stop() {
      await prometheus.stop();
      await exporter.stop();
      await alertmanager.stop();
    },
  };
}

/** Active ProbeFailed alerts in Alertmanager, by lab host. */
async function usualAlerts(stack: UsualStack): Promise<{ host: string; probe: string }[]> {
  const alerts = await stack.alertmanager.alerts();
  return alerts
    .filter((a) => a.labels.alertname === 'ProbeFailed' && a.status.state === 'active')
    .map((a) => ({
      // One alert per probe: a host's ping and full-size ping share the instance label.
      probe: `${a.labels.job ?? ''} ${a.labels.instance ?? ''}`,
      host: stack.instanceHost.get(a.labels.instance ?? '') ?? '?',
    }));
}

interface Run {
  readonly fault: string;
  readonly run: number;
  /** ms, or undefined when not detected within the timeout. */
  readonly faultlineMs?: number;
  readonly faultlineAnswer: string;
  /** Other answers Faultline had on top before the right one, in order (none: straight to it). */
  readonly wrongFirst: readonly string[];
  readonly usualMs?: number;
  /** Distinct ProbeFailed alerts the usual stack raised during the run. */
  readonly usualAlerts: number;
}

function answer(d: Diagnosis | undefined): string {
  const h = d?.hypotheses[0];
  return h === undefined
    ? d?.healthy === true
      ? 'healthy'
      : '—'
    : `${h.kind} [${h.components.join(', ')}]`;
}

async function measure(
  lab: Lab,
  stack: UsualStack,
  c: Case,
  run: number,
  timeoutMs: number,
): Promise<Run> {
  // Both sides quiet before the injection.
  await waitDiagnosisHealthy(lab, 90_000, 2000);
  await pollUntil(
    'no active alerts in Alertmanager',
    async () => (await usualAlerts(stack)).length === 0,
    {
      timeoutMs: 90_000,
      intervalMs: 250,
    },
  );
  const fault = c.fault(lab);
  const startMs = Date.now();
  await fault.inject();
  let faultlineMs: number | undefined;
  let usualMs: number | undefined;
  let last: Diagnosis | undefined;
  const wrongFirst: string[] = [];
  const raised = new Set<string>();
  const usualDone = c.usualHosts.length === 0;
  try {
    for (let i = 0; i < 100_000 && Date.now() - startMs < timeoutMs; i++) {
      if (faultlineMs === undefined) {
        last = await labDiagnosis(lab);
        if (matches(last.hypotheses[0], c.want)) faultlineMs = Date.now() - startMs;
        else if (!last.healthy && wrongFirst.at(-1) !== answer(last)) wrongFirst.push(answer(last));
      }
      const alerts = await usualAlerts(stack);
      for (const a of alerts) raised.add(a.probe);
      if (usualMs === undefined && alerts.some((a) => c.usualHosts.includes(a.host)))
        usualMs = Date.now() - startMs;
      if (faultlineMs !== undefined && (usualDone || usualMs !== undefined)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await fault.heal();
  }
  return {
    fault: c.name,
    run,
    ...(faultlineMs === undefined ? {} : { faultlineMs }),
    faultlineAnswer: answer(last),
    wrongFirst,
    ...(usualMs === undefined ? {} : { usualMs }),
    usualAlerts: raised.size,
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function fmtS(ms: number | undefined): string {
  return ms === undefined ? '—' : (ms / 1000).toFixed(1);
}

function table(s: Settings, runs: readonly Run[]): string {
  const out = [
    `## Detection time: Faultline vs blackbox_exporter + Prometheus + Alertmanager`,
    '',
    `${new Date().toISOString()} · ${s.runs} run(s) per fault · Faultline probes every 1 s (debounce 3 probes); Prometheus scrapes every ${s.usualScrapeS} s, alert rule \`for: ${s.usualForS}s\` · timeout ${s.timeoutMs / 1000} s.`,
    '',
    '| fault | Faultline median / max, s | its answer | on top before it (runs) | usual stack median / max, s | alerts it raised | Faultline ÷ usual (median) |',
    '|---|---:|---|---|---:|---:|---:|',
  ];
  for (const c of s.cases) {
    const rs = runs.filter((r) => r.fault === c.name);
    const fl = rs.flatMap((r) => (r.faultlineMs === undefined ? [] : [r.faultlineMs]));
    const us = rs.flatMap((r) => (r.usualMs === undefined ? [] : [r.usualMs]));
    const flCell =
      fl.length === 0
        ? 'not detected'
        : `${fmtS(median(fl))} / ${fmtS(Math.max(...fl))}${fl.length < rs.length ? ` (${rs.length - fl.length} missed)` : ''}`;
    const usCell =
      c.usualHosts.length === 0
        ? 'no probe can see it'
        : us.length === 0
          ? 'never fired'
          : `${fmtS(median(us))} / ${fmtS(Math.max(...us))}${us.length < rs.length ? ` (${rs.length - us.length} missed)` : ''}`;
    const answers = [...new Set(rs.map((r) => r.faultlineAnswer))].join('; ');
    // Each wrong answer once, with the number of runs it came up in: the three most frequent.
    const wrong = new Map<string, number>();
    for (const r of rs)
      for (const w of new Set(r.wrongFirst)) wrong.set(w, (wrong.get(w) ?? 0) + 1);
    const ranked = [...wrong].sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
    const before =
      ranked.length === 0
        ? '—'
        : ranked
            .slice(0, 3)
            .map(([w, n]) => `${w} (${n}/${rs.length})`)
            .join('; ') + (ranked.length > 3 ? `; ${ranked.length - 3} more` : '');
    const alerts = rs.length === 0 ? '—' : median(rs.map((r) => r.usualAlerts)).toString();
    const ratio = fl.length > 0 && us.length > 0 ? (median(fl) / median(us)).toFixed(2) : '—';
    out.push(
      `| ${c.name} | ${flCell} | ${answers} | ${before} | ${usCell} | ${alerts} | ${ratio} |`,
    );
  }
  out.push(
    '',
    'The usual stack\'s "alerts it raised" are distinct `ProbeFailed` alerts (one per failing probe target) for the one fault: it says what fails, not why; Faultline raises one hypothesis with the cause and what is ruled out. Alertmanager notifies after its `group_wait` on top of the times shown (30 s by default).',
    '',
  );
  return out.join('\n');
}

async function main(): Promise<void> {
  const s = settings();
  if (!canRunLab)
    throw new Error('the detection benchmark needs root on Linux (network namespaces)');
  const lab = await Lab.up(spec, {
    cliPath,
    probeIntervalMs: 1000,
    probeTimeoutMs: 800,
    reportIntervalMs: 1000,
    silentAfterMs: 3000,
    debounce: 3,
  });
  let stack: UsualStack | undefined;
  const runs: Run[] = [];
  try {
    stack = await startUsualStack(lab, lab.dir, s);
    for (let r = 1; r <= s.runs; r++) {
      for (const c of s.cases) {
        const run = await measure(lab, stack, c, r, s.timeoutMs);
        runs.push(run);
        process.stderr.write(
          `run ${r} ${c.name}: Faultline ${fmtS(run.faultlineMs)} s (${run.faultlineAnswer}${run.wrongFirst.length > 0 ? `; before it: ${run.wrongFirst.join(' → ')}` : ''}), usual ${fmtS(run.usualMs)} s, ${run.usualAlerts} alert(s)\n`,
        );
      }
    }
  } finally {
    await stack?.stop();
    await lab.down();
  }
  process.stdout.write(table(s, runs));
  if (s.json !== undefined) writeFileSync(s.json, JSON.stringify({ runs }, null, 2));
}

runBench('bench/detection', main);
