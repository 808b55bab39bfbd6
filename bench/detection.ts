/**
 * Detection benchmark (issues 6 and 14): fault injected → the right answer, for each injector
 * of the lab, Faultline side by side with the usual stack watching the same lab — Prometheus
 * blackbox_exporter probing the same hosts and ports, Debian's Prometheus scraping it with a
 * `probe_success == 0` alert rule, Debian's Alertmanager receiving the alerts — at one or
 * more settings of scrape interval and `for` (default both the fastest, 1 s / `for: 2s`, and
 * production, 15 s / `for: 1m`, side by side: one Prometheus each, the same exporter). The
 * faults and their right answers are `faultline demo`'s (cli/demo.ts), in its lab (the
 * collector on ctl-1); blackbox also sends every host a full-size ping with Don't Fragment
 * (module icmp_mtu), the usual stack's best chance at a smaller MTU.
 *
 *   node dist/bench/detection.js [--runs 5] [--faults all|name,name] [--timeout-s 30]
 *       [--usual 1/2,15/60] [--soak-minutes 10] [--soak-loss 1-2] [--tail-s 3] [--seed 1] [--json FILE]
 *
 * Faultline: until GET /api/v1/diagnosis has the expected hypothesis on top (kind and
 * components); each other answer on top before it is counted with how long it stayed there.
 * The lab's collector sends its alerts (defaults: `holdFor: 0s`; `refireHoldFor: 0s` so that
 * each run pages afresh) to a webhook receiver of the bench and, through a recording front,
 * to the Alertmanager: every alert that starts firing between the injection and the heal
 * (plus `--tail-s` after the right answer) for another cause than the right answer is a
 * wrong page; the first right one gives "first right alert". The usual stack: until
 * Alertmanager holds an active ProbeFailed alert of that setting for a probe of the faulty
 * host — which says that a probe fails, not why. Then a healthy soak: `--soak-minutes` of the
 * same lab with random loss on every host's link (nftables numgen: each path loses 1–2 % of
 * its round trips by default), counting every non-healthy diagnosis on top and every
 * alert sent (the goal: 0). Everything is polled every 100 ms (the soak: 500 ms). Needs root
 * (namespaces).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Diagnosis } from '../wire/diagnosis.js';
import type { PathState } from '../collector/types.js';
import {
  recordAlertsTo,
  startAlertmanager,
  type AlertRecorder,
  type TestAlertmanager,
} from '../lab/alertmanager.js';
import { labDiagnosis, matches, waitDiagnosisHealthy } from '../lab/expect.js';
import type { ExpectedHypothesis } from '../lab/expect.js';
import { randomLoss, type Fault } from '../lab/faults.js';
import { Lab } from '../lab/lab.js';
import { canRunLab } from '../lab/spec.js';
import { demoFaults, demoLab as spec } from '../cli/demo.js';
import { pollUntil } from '../lab/poll-until.js';
import { startPrometheus, type TestPrometheus } from '../lab/prometheus.js';
import { diesWithParent, freePort, httpReady, ManagedServer } from '../lab/server-process.js';
import {
  alertLine,
  alertMatches,
  alertmanagerEvents,
  firings,
  startWebhookLog,
  type AlertEvent,
  type WebhookLog,
} from './alert-log.js';
import { blackboxConfig, detectionLabTiming, runBench } from './lib.js';
import { rng } from '../lib/prng.js';

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

/** One setting of the usual stack: scrape (and rule evaluation) interval, the rule's `for`. */
interface UsualSetting {
  readonly scrapeS: number;
  readonly forS: number;
  /** "1s/2s": the `setting` label of its alerts and the table's name for it. */
  readonly id: string;
}

interface Settings {
  readonly runs: number;
  readonly cases: readonly Case[];
  /** Faultline's (and its alerts') deadline per run. */
  readonly timeoutMs: number;
  /** The usual stack's settings, the first one the fastest (the ratio column's). */
  readonly usual: readonly UsualSetting[];
  /** After the right answer, alerts are still watched this long (a late wrong page counts). */
  readonly tailMs: number;
  /** 0: no soak. */
  readonly soakMinutes: number;
  /** Round-trip loss % of the soak's paths, by host in turn (see {@link soak}). */
  readonly soakLoss: readonly number[];
  /**
   * Each run's fault arrives this long (ms, in one probe interval) after both sides are
   * quiet: a fault comes at any moment of the probe cycle. Without it, a fault after another
   * on the same path came at the same moment of the cycle every run — the quiet wait starts
   * at the last one's heal — and measured that moment, not the spread.
   */
  readonly phaseMs: () => number;
  readonly seed: number;
  readonly json?: string;
}

const usage = `Usage: node dist/bench/detection.js [--runs 5] [--faults all|name,name] [--timeout-s 30]
    [--usual 1/2,15/60] [--soak-minutes 10] [--soak-loss 1-2] [--tail-s 3] [--seed 1] [--json FILE]
  --usual        the usual stack's settings, scrape/for in seconds, comma-separated (one
                 Prometheus each); --usual-scrape-s S --usual-for-s F is one setting
  --soak-minutes the healthy soak with random loss after the faults (0: none)
  --soak-loss    round-trip loss % of the paths: N, or A-B (A…B over the hosts in turn; a
                 quarter of a host's figure is dropped in each direction of its link)
  --seed         of the moments in the probe cycle at which the faults arrive (each run
                 waits 0–1 s, uniformly, after both sides are quiet; the same seed, the
                 same moments)
faults: ${cases.map((c) => c.name).join(', ')}
`;

function intIn(name: string, raw: string, lo: number, hi: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < lo || n > hi)
    throw new Error(`--${name}: expected an integer ${lo}–${hi} (actual: ${JSON.stringify(raw)})`);
  return n;
}

function usualSetting(scrapeS: number, forS: number): UsualSetting {
  return { scrapeS, forS, id: `${scrapeS}s/${forS}s` };
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      faults: { type: 'string', default: 'all' },
      'timeout-s': { type: 'string', default: '30' },
      usual: { type: 'string', default: '1/2,15/60' },
      'usual-scrape-s': { type: 'string' },
      'usual-for-s': { type: 'string' },
      'tail-s': { type: 'string', default: '3' },
      seed: { type: 'string', default: '1' },
      'soak-minutes': { type: 'string', default: '10' },
      'soak-loss': { type: 'string', default: '1-2' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const runs = intIn('runs', values.runs, 1, 50);
  const timeoutS = intIn('timeout-s', values['timeout-s'], 5, 600);
  const names = String(values.faults);
  const chosen =
    names === 'all'
      ? cases
      : names === ''
        ? []
        : names.split(',').map((n) => {
            const c = cases.find((x) => x.name === n.trim());
            if (c === undefined)
              throw new Error(
                `--faults: no fault ${JSON.stringify(n)} (known: ${cases.map((x) => x.name).join(', ')})`,
              );
            return c;
          });
  let usual: UsualSetting[];
  if (values['usual-scrape-s'] !== undefined || values['usual-for-s'] !== undefined) {
    usual = [
      usualSetting(
        intIn('usual-scrape-s', values['usual-scrape-s'] ?? '1', 1, 300),
        intIn('usual-for-s', values['usual-for-s'] ?? '2', 0, 3600),
      ),
    ];
  } else {
    usual = values.usual.split(',').map((item) => {
      const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(item);
      if (m === null)
        throw new Error(`--usual: expected scrape/for in seconds, e.g. 1/2 (actual: ${item})`);
      return usualSetting(intIn('usual', m[1]!, 1, 300), intIn('usual', m[2]!, 0, 3600));
    });
    if (usual.length > 3) throw new Error('--usual: at most 3 settings');
    if (new Set(usual.map((u) => u.id)).size < usual.length)
      throw new Error('--usual: a setting twice');
  }
  const lossRaw = values['soak-loss'];
  const lm = /^(\d+)(?:-(\d+))?$/.exec(lossRaw.trim());
  if (lm === null) throw new Error(`--soak-loss: expected N or A-B (actual: ${lossRaw})`);
  const lossLo = intIn('soak-loss', lm[1]!, 1, 50);
  const lossHi = intIn('soak-loss', lm[2] ?? lm[1]!, lossLo, 50);
  const soakLoss = Array.from({ length: lossHi - lossLo + 1 }, (_, i) => lossLo + i);
  const seed = intIn('seed', values.seed, 0, 2 ** 31 - 1);
  return {
    runs,
    cases: chosen,
    timeoutMs: timeoutS * 1000,
    usual,
    tailMs: intIn('tail-s', values['tail-s'], 0, 60) * 1000,
    soakMinutes: intIn('soak-minutes', values['soak-minutes'], 0, 240),
    soakLoss,
    phaseMs: (
      (random) => () =>
        Math.floor(random() * detectionLabTiming.probeIntervalMs)
    )(rng(seed)),
    seed,
    ...(values.json === undefined ? {} : { json: values.json }),
  };
}

/**
 * How long the bench waits for the usual stack at a setting: a probe fails at the next scrape,
 * the rule sees it at its next evaluation, holds `for`, and one more evaluation fires it.
 */
function usualTimeoutMs(s: Settings, u: UsualSetting): number {
  return Math.max(s.timeoutMs, (3 * u.scrapeS + u.forS + 20) * 1000);
}

/** The usual stack: blackbox_exporter + one Prometheus (alert rule) per setting + Alertmanager. */
interface UsualStack {
  readonly alertmanager: TestAlertmanager;
  readonly prometheus: readonly TestPrometheus[];
  readonly exporter: ManagedServer;
  /** Blackbox probe instance → lab host. */
  readonly instanceHost: ReadonlyMap<string, string>;
  stop(): Promise<void>;
}

/** Starts the exporter and the Prometheus servers; `alertmanager` is shared (not stopped here). */
async function startUsualStack(
  lab: Lab,
  dir: string,
  s: Settings,
  alertmanager: TestAlertmanager,
): Promise<UsualStack> {
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
  const prometheus: TestPrometheus[] = [];
  const stop = async (): Promise<void> => {
    for (const p of prometheus) await p.stop();
    await exporter.stop();
  };
  try {
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
      for (const svc of h.spec.services ?? []) {
        const p =
          svc.kind === 'postgres'
            ? 5432
            : svc.kind === 'redis'
              ? 6379
              : svc.kind === 'http'
                ? (svc.port ?? 8080)
                : 0;
        if (p === 0) continue;
        byModule.tcp_connect.push(`${h.ip}:${p}`);
        instanceHost.set(`${h.ip}:${p}`, h.name);
        if (svc.kind === 'http') {
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
    // One Prometheus per setting, its alerts labelled with it. At 1 s and `for: 2s`: three
    // failing probes in a row, Faultline's debounce; 15 s and `for: 1m` is the usual production.
    for (const u of s.usual) {
      const rules = [
        'groups:',
        '  - name: blackbox',
        '    rules:',
        '      - alert: ProbeFailed',
        '        expr: probe_success == 0',
        `        for: ${u.forS}s`,
        `        labels: { severity: critical, setting: ${JSON.stringify(u.id)} }`,
        '        annotations: { summary: "probe of {{ $labels.instance }} ({{ $labels.job }}) fails" }',
        '',
      ].join('\n');
      prometheus.push(
        await startPrometheus([], u.scrapeS, {
          scrapeConfigs,
          rules,
          alertmanagers: [alertmanager.url],
        }),
      );
    }
    return { alertmanager, prometheus, exporter, instanceHost, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

interface UsualAlert {
  readonly host: string;
  readonly probe: string;
  readonly setting: string;
}

/** Active ProbeFailed alerts in Alertmanager, by lab host and setting. */
async function usualAlerts(stack: UsualStack): Promise<UsualAlert[]> {
  const alerts = await stack.alertmanager.alerts();
  return alerts
    .filter((a) => a.labels.alertname === 'ProbeFailed' && a.status.state === 'active')
    .map((a) => ({
      // One alert per probe: a host's ping and full-size ping share the instance label.
      probe: `${a.labels.job ?? ''} ${a.labels.instance ?? ''}`,
      host: stack.instanceHost.get(a.labels.instance ?? '') ?? '?',
      setting: a.labels.setting ?? '?',
    }));
}

/** Where the lab's collector sends its alerts, both recorded. */
interface FaultlineAlerts {
  readonly webhook: WebhookLog;
  readonly recorder: AlertRecorder;
}

/** Alerts that started firing in [fromMs, toMs), per receiver. */
function firedBetween(
  fl: FaultlineAlerts,
  fromMs: number,
  toMs: number,
): { webhook: AlertEvent[]; alertmanager: AlertEvent[] } {
  const within = (es: AlertEvent[]): AlertEvent[] =>
    es.filter((e) => e.atMs >= fromMs && e.atMs < toMs);
  return {
    webhook: within(firings(fl.webhook.events)),
    alertmanager: within(firings(alertmanagerEvents(fl.recorder.received))),
  };
}

/** One answer on top before the right one, and how long it stayed there. */
interface WrongOnTop {
  readonly answer: string;
  readonly ms: number;
  /** Whether the diagnosis said it was settling the whole time (issue 14's `settling`). */
  readonly settling: boolean;
  /** The soak's: the evidence's example paths when it first came on top. */
  readonly examples?: readonly string[];
  /** The soak's: the degraded paths then — what made each one degraded. */
  readonly degraded?: readonly string[];
}

interface UsualResult {
  /** ms, or undefined when it did not fire within its timeout. */
  readonly ms?: number;
  /** Distinct ProbeFailed alerts of this setting during the run. */
  readonly alerts: number;
}

interface Run {
  readonly fault: string;
  readonly run: number;
  /** ms, or undefined when not detected within the timeout. */
  readonly faultlineMs?: number;
  readonly faultlineAnswer: string;
  /** Other answers Faultline had on top before the right one, in order (none: straight to it). */
  readonly wrongFirst: readonly WrongOnTop[];
  /** ms from the injection to the webhook's first alert for the right cause. */
  readonly rightAlertMs?: number;
  /**
   * Alerts that started firing for another cause (webhook: `kind [components]`) from the
   * injection to `--tail-s` after the right answer on top (or to the timeout): what pages
   * while the fault arrives, whatever the usual stack's setting.
   */
  readonly wrongAlerts: readonly string[];
  /** The same through the Alertmanager sink (it keeps only the newest state of an alert). */
  readonly wrongAlertsAlertmanager: readonly string[];
  /** Alerts for another cause after that while the fault was held (for the usual stack). */
  readonly wrongAlertsLater: readonly string[];
  /** How long the fault was held (ms). */
  readonly heldMs: number;
  /** Alerts that started firing between the heal and the diagnosis healthy again (webhook). */
  readonly healAlerts: readonly string[];
  /** By setting id ("1s/2s"). */
  readonly usual: Readonly<Record<string, UsualResult>>;
}

function answer(d: Diagnosis | undefined): string {
  const h = d?.hypotheses[0];
  return h === undefined
    ? d?.healthy === true
      ? 'healthy'
      : '—'
    : `${h.kind} [${h.components.join(', ')}]${h.collectorCutOff === true ? ' (collector cut off)' : ''}`;
}

/** Issue 14's `settling` flag, when the collector has it. */
function settlingOf(d: Diagnosis): boolean {
  return (d as Diagnosis & { readonly settling?: boolean }).settling === true;
}

/** Both sides quiet: the diagnosis healthy 2 s in a row, no active ProbeFailed alert. */
async function quiet(lab: Lab, stack: UsualStack): Promise<void> {
  await waitDiagnosisHealthy(lab, 120_000, 2000);
  await pollUntil(
    'no active alerts in Alertmanager',
    async () => (await usualAlerts(stack)).length === 0,
    { timeoutMs: 180_000, intervalMs: 250 },
  );
}

async function measure(
  lab: Lab,
  stack: UsualStack,
  fl: FaultlineAlerts,
  c: Case,
  run: number,
  s: Settings,
): Promise<Run> {
  await quiet(lab, stack);
  await sleep(s.phaseMs());
  const fault = c.fault(lab);
  const startMs = Date.now();
  await fault.inject();
  let faultlineMs: number | undefined;
  let rightAlertMs: number | undefined;
  let last: Diagnosis | undefined;
  const wrongFirst: WrongOnTop[] = [];
  let current: { answer: string; fromMs: number; settling: boolean } | undefined;
  const usualMs = new Map<string, number>();
  const raised = new Map<string, Set<string>>(s.usual.map((u) => [u.id, new Set<string>()]));
  const usualDone = (u: UsualSetting, elapsed: number): boolean =>
    c.usualHosts.length === 0 || usualMs.has(u.id) || elapsed >= usualTimeoutMs(s, u);
  const deadlineMs = Math.max(s.timeoutMs, ...s.usual.map((u) => usualTimeoutMs(s, u)));
  let healMs = startMs;
  try {
    for (let i = 0; i < 100_000; i++) {
      const now = Date.now();
      const elapsed = now - startMs;
      if (elapsed >= deadlineMs) break;
      if (faultlineMs === undefined && elapsed < s.timeoutMs) {
        last = await labDiagnosis(lab);
        const seenMs = Date.now() - startMs;
        const top = answer(last);
        if (current !== undefined && current.answer !== top) {
          wrongFirst.push({
            answer: current.answer,
            ms: seenMs - current.fromMs,
            settling: current.settling,
          });
          current = undefined;
        }
        if (matches(last.hypotheses[0], c.want)) faultlineMs = seenMs;
        else if (!last.healthy && last.hypotheses.length > 0) {
          if (current === undefined)
            current = { answer: top, fromMs: seenMs, settling: settlingOf(last) };
          else if (!settlingOf(last)) current.settling = false;
        }
      }
      if (rightAlertMs === undefined) {
        const right = firedBetween(fl, startMs, Number.POSITIVE_INFINITY).webhook.find((e) =>
          alertMatches(e.labels, c.want),
        );
        if (right !== undefined) rightAlertMs = right.atMs - startMs;
      }
      const alerts = await usualAlerts(stack);
      for (const a of alerts) {
        raised.get(a.setting)?.add(a.probe);
        if (!usualMs.has(a.setting) && c.usualHosts.includes(a.host))
          usualMs.set(a.setting, Date.now() - startMs);
      }
      const after = Date.now() - startMs;
      const faultlineDone =
        after >= s.timeoutMs ||
        (faultlineMs !== undefined &&
          rightAlertMs !== undefined &&
          after - faultlineMs >= s.tailMs);
      if (faultlineDone && s.usual.every((u) => usualDone(u, after))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    healMs = Date.now();
    await fault.heal();
  }
  // Never found the right answer: the last wrong one counts until the diagnosis was last read.
  if (current !== undefined)
    wrongFirst.push({
      answer: current.answer,
      ms: Math.min(healMs - startMs, s.timeoutMs) - current.fromMs,
      settling: current.settling,
    });
  const arrivedMs = Math.min(healMs, startMs + (faultlineMs ?? s.timeoutMs) + s.tailMs);
  const sent = firedBetween(fl, startMs, arrivedMs);
  const later = firedBetween(fl, arrivedMs, healMs);
  const wrong = (es: AlertEvent[]): string[] =>
    es.filter((e) => !alertMatches(e.labels, c.want)).map((e) => alertLine(e.labels));
  // The heal, until the diagnosis is healthy again: what it pages on the way back.
  await waitDiagnosisHealthy(lab, 120_000, 2000);
  const healed = firedBetween(fl, healMs, Date.now());
  // What an alert on the heal said, to read why it came.
  for (const e of healed.webhook)
    process.stderr.write(
      `  on the heal of ${c.name}, ${((e.atMs - healMs) / 1000).toFixed(1)} s after it: ${alertLine(e.labels)} — ${e.annotations?.summary ?? ''} ${e.annotations?.description ?? ''}\n`,
    );
  return {
    fault: c.name,
    run,
    ...(faultlineMs === undefined ? {} : { faultlineMs }),
    faultlineAnswer: answer(last),
    wrongFirst,
    ...(rightAlertMs === undefined ? {} : { rightAlertMs }),
    wrongAlerts: wrong(sent.webhook),
    wrongAlertsAlertmanager: wrong(sent.alertmanager),
    wrongAlertsLater: wrong(later.webhook),
    heldMs: healMs - startMs,
    healAlerts: healed.webhook.map((e) => alertLine(e.labels)),
    usual: Object.fromEntries(
      s.usual.map((u) => [
        u.id,
        {
          ...(usualMs.has(u.id) ? { ms: usualMs.get(u.id)! } : {}),
          alerts: raised.get(u.id)!.size,
        },
      ]),
    ),
  };
}

interface SoakResult {
  readonly minutes: number;
  /** By host: the round-trip loss % of its paths (a quarter of it dropped each way on its link). */
  readonly loss: Readonly<Record<string, number>>;
  /** Diagnoses polled, and how many were not healthy. */
  readonly polls: number;
  readonly unhealthyPolls: number;
  /** Each time something other than healthy came on top: the answer and how long it stayed. */
  readonly falseHypotheses: readonly WrongOnTop[];
  /** Alerts that started firing (webhook, Alertmanager). */
  readonly alerts: readonly string[];
  readonly alertsAlertmanager: readonly string[];
  /** Distinct ProbeFailed alerts of each usual setting. */
  readonly usual: Readonly<Record<string, number>>;
}

/** The degraded paths with what their window holds, for the soak's record of a false hypothesis. */
async function degradedPaths(lab: Lab): Promise<string[]> {
  const { paths } = await lab.get<{ paths: PathState[] }>('/api/v1/paths?state=degraded');
  return paths.map((p) => {
    const loss = p.lossRatio === undefined ? '' : ` loss ${Math.round(p.lossRatio * 100)}%`;
    const lat =
      p.latencyMs === undefined
        ? ''
        : ` p50 ${p.latencyMs.p50.toFixed(1)} ms (baseline ${p.latencyMs.baseline.toFixed(1)})`;
    return `${p.agent} → ${p.target}: ${p.probes} probes, failed ${Math.round(p.failureRatio * 100)}% ${JSON.stringify(p.failures)}${loss}${lat}`;
  });
}

/** The healthy soak: random loss on every host's link, nothing should be raised. */
async function soak(
  lab: Lab,
  stack: UsualStack,
  fl: FaultlineAlerts,
  s: Settings,
): Promise<SoakResult> {
  await quiet(lab, stack);
  const loss: Record<string, number> = {};
  // A probe's round trip crosses its two hosts' links twice each: a quarter of a host's
  // figure dropped in each direction of its link makes a path lose about the mean of its two
  // hosts' figures (1–2 % by default), not four times it.
  const faults = lab.hosts.map((h, i) => {
    const pct = s.soakLoss[i % s.soakLoss.length]!;
    loss[h.name] = pct;
    return randomLoss(lab, h.name, pct / 4);
  });
  const injected: Fault[] = [];
  const startMs = Date.now();
  const endMs = startMs + s.soakMinutes * 60_000;
  let polls = 0;
  let unhealthyPolls = 0;
  const falseHypotheses: WrongOnTop[] = [];
  let current:
    | {
        answer: string;
        fromMs: number;
        settling: boolean;
        examples: readonly string[];
        degraded: readonly string[];
      }
    | undefined;
  const raised = new Map<string, Set<string>>(s.usual.map((u) => [u.id, new Set<string>()]));
  let stopMs = startMs;
  try {
    for (const f of faults) {
      await f.inject();
      injected.push(f);
    }
    for (let i = 0; i < 1_000_000 && Date.now() < endMs; i++) {
      const d = await labDiagnosis(lab);
      const t = Date.now();
      polls++;
      const top = answer(d);
      if (current !== undefined && current.answer !== top) {
        falseHypotheses.push({
          answer: current.answer,
          ms: t - current.fromMs,
          settling: current.settling,
          examples: current.examples,
          degraded: current.degraded,
        });
        current = undefined;
      }
      if (!d.healthy) {
        unhealthyPolls++;
        if (current === undefined)
          current = {
            answer: top,
            fromMs: t,
            settling: settlingOf(d),
            examples: d?.hypotheses[0]?.evidence.examples ?? [],
            degraded: await degradedPaths(lab),
          };
        else if (!settlingOf(d)) current.settling = false;
      }
      for (const a of await usualAlerts(stack)) raised.get(a.setting)?.add(a.probe);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    stopMs = Date.now();
    for (const f of injected.reverse()) await f.heal();
  }
  if (current !== undefined)
    falseHypotheses.push({
      answer: current.answer,
      ms: stopMs - current.fromMs,
      settling: current.settling,
      examples: current.examples,
      degraded: current.degraded,
    });
  const sent = firedBetween(fl, startMs, stopMs);
  return {
    minutes: s.soakMinutes,
    loss,
    polls,
    unhealthyPolls,
    falseHypotheses,
    alerts: sent.webhook.map((e) => alertLine(e.labels)),
    alertsAlertmanager: sent.alertmanager.map((e) => alertLine(e.labels)),
    usual: Object.fromEntries(s.usual.map((u) => [u.id, raised.get(u.id)!.size])),
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

/** "median / max" of the runs that have a time, with how many missed it. */
function medMax(times: readonly (number | undefined)[], missed: string): string {
  const got = times.flatMap((t) => (t === undefined ? [] : [t]));
  if (got.length === 0) return missed;
  const n = times.length - got.length;
  return `${fmtS(median(got))} / ${fmtS(Math.max(...got))}${n > 0 ? ` (${n} missed)` : ''}`;
}

/** Each item once with the number of runs it came up in, the three most frequent. */
function ranked(perRun: readonly (readonly string[])[], of: number): string {
  const seen = new Map<string, number>();
  for (const r of perRun) for (const w of new Set(r)) seen.set(w, (seen.get(w) ?? 0) + 1);
  const order = [...seen].sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  return order.length === 0
    ? ''
    : order
        .slice(0, 3)
        .map(([w, n]) => `${w} (${n}/${of})`)
        .join('; ') + (order.length > 3 ? `; ${order.length - 3} more` : '');
}

/** Wrong answers on top: how many in all, the longest, and which. */
function wrongCell(perRun: readonly (readonly WrongOnTop[])[], of: number): string {
  const all = perRun.flat();
  if (all.length === 0) return '0';
  const settling = all.filter((w) => w.settling).length;
  const longest = Math.max(...all.map((w) => w.ms));
  return `${all.length}${settling > 0 ? ` (${settling} settling)` : ''}, longest ${fmtS(longest)} s: ${ranked(
    perRun.map((r) => r.map((w) => w.answer)),
    of,
  )}`;
}

function table(s: Settings, runs: readonly Run[], soakResult: SoakResult | undefined): string {
  const usualHead = s.usual
    .map((u) => `usual ${u.scrapeS} s / \`for: ${u.forS}s\` median / max, s (its alerts)`)
    .join(' | ');
  const out = [
    `## Detection time: Faultline vs blackbox_exporter + Prometheus + Alertmanager`,
    '',
    `${new Date().toISOString()} · ${s.runs} run(s) per fault · each fault arrives 0–1 s after both sides are quiet (seed ${s.seed}) · Faultline probes every 1 s (debounce 3 probes), its alerts at the collector's defaults but \`refireHoldFor: 0s\`; the usual stack at ${s.usual.map((u) => `${u.scrapeS} s scrape / \`for: ${u.forS}s\``).join(' and ')} · timeout ${s.timeoutMs / 1000} s${s.usual.map((u) => `, ${u.id} ${usualTimeoutMs(s, u) / 1000} s`).join('')}.`,
    '',
    `| fault | Faultline median / max, s | its answer | wrong answers on top before it: count, longest (runs) | alerts sent for a wrong cause: as it arrives (runs) · later while held · on the heal | first right alert median / max, s | ${usualHead} | Faultline ÷ usual ${s.usual[0]!.id} (median) |`,
    `|---|---:|---|---|---|---:|${s.usual.map(() => '---:|').join('')}---:|`,
  ];
  for (const c of s.cases) {
    const rs = runs.filter((r) => r.fault === c.name);
    if (rs.length === 0) continue;
    const fl = rs.flatMap((r) => (r.faultlineMs === undefined ? [] : [r.faultlineMs]));
    const answers = [...new Set(rs.map((r) => r.faultlineAnswer))].join('; ');
    const nWrong = rs.reduce((n, r) => n + r.wrongAlerts.length, 0);
    const nWrongAm = rs.reduce((n, r) => n + r.wrongAlertsAlertmanager.length, 0);
    const nLater = rs.reduce((n, r) => n + r.wrongAlertsLater.length, 0);
    const nHeal = rs.reduce((n, r) => n + r.healAlerts.length, 0);
    const wrongAlerts =
      `${nWrong}${nWrongAm !== nWrong ? ` (Alertmanager ${nWrongAm})` : ''}` +
      (nWrong > 0
        ? `: ${ranked(
            rs.map((r) => r.wrongAlerts),
            rs.length,
          )}`
        : '') +
      ` · later ${nLater} · on the heal ${nHeal}`;
    const usualCells = s.usual.map((u) => {
      if (c.usualHosts.length === 0) return 'no probe can see it';
      const cell = medMax(
        rs.map((r) => r.usual[u.id]?.ms),
        'never fired',
      );
      return `${cell} (${median(rs.map((r) => r.usual[u.id]?.alerts ?? 0))})`;
    });
    const us0 = rs.flatMap((r) => {
      const ms = r.usual[s.usual[0]!.id]?.ms;
      return ms === undefined ? [] : [ms];
    });
    const ratio = fl.length > 0 && us0.length > 0 ? (median(fl) / median(us0)).toFixed(2) : '—';
    out.push(
      `| ${c.name} | ${medMax(
        rs.map((r) => r.faultlineMs),
        'not detected',
      )} | ${answers} | ${wrongCell(
        rs.map((r) => r.wrongFirst),
        rs.length,
      )} | ${wrongAlerts} | ${medMax(
        rs.map((r) => r.rightAlertMs),
        'none',
      )} | ${usualCells.join(' | ')} | ${ratio} |`,
    );
  }
  if (soakResult !== undefined) {
    const k = soakResult;
    const pcts = [...new Set(Object.values(k.loss))].sort((a, b) => a - b);
    const fh = k.falseHypotheses;
    const fhCell =
      fh.length === 0
        ? '0'
        : `${fh.length}, longest ${fmtS(Math.max(...fh.map((w) => w.ms)))} s: ${ranked(
            fh.map((w) => [w.answer]),
            fh.length,
          )}`;
    const alertsCell =
      `${k.alerts.length}${k.alertsAlertmanager.length !== k.alerts.length ? ` (Alertmanager ${k.alertsAlertmanager.length})` : ''}` +
      (k.alerts.length > 0
        ? `: ${ranked(
            k.alerts.map((a) => [a]),
            k.alerts.length,
          )}`
        : '');
    out.push(
      `| healthy soak, ${k.minutes} min, ${pcts.join('–')} % loss per path | — | ${k.unhealthyPolls === 0 ? 'healthy' : `not healthy in ${k.unhealthyPolls} of ${k.polls} polls`} | ${fhCell} | ${alertsCell} | — | ${s.usual.map((u) => `${k.usual[u.id] ?? 0} alert(s)`).join(' | ')} | — |`,
    );
  }
  out.push(
    '',
    `"Wrong answers on top" are the other answers \`GET /api/v1/diagnosis\` had on top between the injection and the right answer (a wrong first answer misleads whoever looks), with how many were marked \`settling\`. "Alerts sent for a wrong cause" are the alerts that started firing at the webhook receiver whose kind or components are not the right answer: as the fault arrives, from the injection to ${s.tailMs / 1000} s after the right answer on top (the Alertmanager sink, which keeps only the newest state of each alert, in brackets when it differs); later, while the fault was held as long as the slowest usual setting needed; and on the heal, until the diagnosis is healthy again (all of those: the cause is gone). The usual stack's alerts are distinct \`ProbeFailed\` alerts (one per failing probe target) for the one fault: it says what fails, not why. Alertmanager notifies after its \`group_wait\` on top of the times shown (30 s by default). The soak's row counts each time something other than healthy came on top and every alert sent: the goal is 0.`,
    '',
  );
  return out.join('\n');
}

async function main(): Promise<void> {
  const s = settings();
  if (!canRunLab)
    throw new Error('the detection benchmark needs root on Linux (network namespaces)');
  // One Alertmanager: the usual stack's Prometheus servers post to it directly, the lab's
  // collector through a recording front on the management link's root end (reachable also
  // while ctl-1's switch port is cut off), and to the bench's webhook receiver beside it.
  let alertmanager: TestAlertmanager | undefined;
  let faultlineAlerts: FaultlineAlerts | undefined;
  let lab: Lab | undefined;
  let stack: UsualStack | undefined;
  const runs: Run[] = [];
  let soakResult: SoakResult | undefined;
  try {
    lab = await Lab.up(spec, {
      cliPath,
      ...detectionLabTiming,
      extraCollectorYaml: async (l) => {
        alertmanager = await startAlertmanager();
        const recorder = await recordAlertsTo(alertmanager, l.managementAddress);
        const webhook = await startWebhookLog(l.managementAddress);
        faultlineAlerts = { recorder, webhook };
        return [
          'alerts:',
          // Each run pages afresh: no re-fire hold after the run before resolved the same alert.
          '  refireHoldFor: 0s',
          '  sinks:',
          `    - { type: webhook, name: bench-webhook, url: ${JSON.stringify(webhook.url)} }`,
          `    - { type: alertmanager, name: bench-alertmanager, urls: [${JSON.stringify(recorder.url)}] }`,
        ].join('\n');
      },
    });
    if (alertmanager === undefined || faultlineAlerts === undefined)
      throw new Error('the lab did not ask for its collector config');
    stack = await startUsualStack(lab, lab.dir, s, alertmanager);
    for (let r = 1; r <= s.runs; r++) {
      for (const c of s.cases) {
        const run = await measure(lab, stack, faultlineAlerts, c, r, s);
        runs.push(run);
        process.stderr.write(
          `run ${r} ${c.name}: Faultline ${fmtS(run.faultlineMs)} s (${run.faultlineAnswer}${run.wrongFirst.length > 0 ? `; before it: ${run.wrongFirst.map((w) => `${w.answer} ${fmtS(w.ms)} s`).join(' → ')}` : ''}), first right alert ${fmtS(run.rightAlertMs)} s, ${run.wrongAlerts.length} wrong alert(s)${run.wrongAlerts.length > 0 ? ` (${run.wrongAlerts.join(', ')})` : ''}${run.wrongAlertsLater.length > 0 ? `, ${run.wrongAlertsLater.length} later while held ${fmtS(run.heldMs)} s (${run.wrongAlertsLater.join(', ')})` : ''}${run.healAlerts.length > 0 ? `, ${run.healAlerts.length} on the heal (${run.healAlerts.join(', ')})` : ''}; ${s.usual.map((u) => `usual ${u.id} ${fmtS(run.usual[u.id]?.ms)} s, ${run.usual[u.id]?.alerts ?? 0} alert(s)`).join('; ')}\n`,
        );
      }
    }
    if (s.soakMinutes > 0) {
      process.stderr.write(`soak: ${s.soakMinutes} min with ${s.soakLoss.join('–')} % loss…\n`);
      soakResult = await soak(lab, stack, faultlineAlerts, s);
      process.stderr.write(
        `soak: ${soakResult.falseHypotheses.length} false hypothesis(es) on top${soakResult.falseHypotheses.length > 0 ? ` (${soakResult.falseHypotheses.map((w) => `${w.answer} ${fmtS(w.ms)} s`).join(', ')})` : ''}, ${soakResult.alerts.length} alert(s) sent; ${s.usual.map((u) => `usual ${u.id} ${soakResult?.usual[u.id] ?? 0}`).join(', ')}\n`,
      );
    }
  } finally {
    await stack?.stop();
    await lab?.down();
    await faultlineAlerts?.webhook.stop();
    await faultlineAlerts?.recorder.stop();
    await alertmanager?.stop();
  }
  process.stdout.write(table(s, runs, soakResult));
  if (s.json !== undefined)
    writeFileSync(
      s.json,
      JSON.stringify(
        {
          settings: {
            runs: s.runs,
            faults: s.cases.map((c) => c.name),
            timeoutMs: s.timeoutMs,
            usual: s.usual,
            tailMs: s.tailMs,
            soakMinutes: s.soakMinutes,
            soakLoss: s.soakLoss,
          },
          runs,
          ...(soakResult === undefined ? {} : { soak: soakResult }),
        },
        null,
        2,
      ),
    );
}

runBench('bench/detection', main);
