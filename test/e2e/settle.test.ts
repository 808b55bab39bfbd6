import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Diagnosis } from '../../wire/diagnosis.js';
import type { ReportBatch } from '../../wire/report.js';
import type { FailureClass, ProbeResult } from '../../wire/result.js';
import {
  canRunAlertmanager,
  recordAlertsTo,
  startAlertmanager,
  type AlertRecorder,
  type TestAlertmanager,
} from '../../lab/alertmanager.js';
import { ensureBuilt } from '../helpers/cli.js';
import { CollectorProcess } from '../helpers/collector-process.js';
import { pollUntil } from '../../lab/poll-until.js';
import { postReport } from '../helpers/report-batches.js';
import { freePort } from '../../lab/server-process.js';
import { viewersYaml } from '../helpers/viewer.js';

/**
 * Issue 14, "the first answer is the right one", against a real `faultline collector`
 * process, a real Alertmanager (through a recording front, so an alert that fired and
 * resolved between two reads still counts) and a real webhook receiver.
 *
 * Postgres on db-1 stops. Three agents see it a moment apart, each confirming the change
 * with a burst (issue 14's `confirm` results) as the agent sends them: the first agent's
 * confirmed refusals alone look like a blocked path (one source fails, two succeed) until
 * the other two arrive a few hundred milliseconds later and it is `service_down`. The
 * diagnosis must say `settling` meanwhile, and nothing may page for the blocked path:
 * Alertmanager and the webhook hear only FaultlineServiceDown, and the incident opens with
 * it, dated from the first refused probe.
 */

const token = 'fleet-token-0123456789abcdef';
const agents = ['app-1', 'app-2', 'app-3'] as const;
const pgTarget = 'db-1/postgres/tcp';
const burstOf = 3;
const spacingMs = 150;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Hook {
  readonly url: string;
  readonly received: {
    atMs: number;
    body: { alerts: { status: string; labels: Record<string, string> }[] };
  }[];
  close(): Promise<void>;
}

async function webhook(): Promise<Hook> {
  const received: Hook['received'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        atMs: Date.now(),
        body: JSON.parse(
          Buffer.concat(chunks).toString('utf8'),
        ) as Hook['received'][number]['body'],
      });
      res.statusCode = 204;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** One agent's reporting: batch and probe sequence numbers, as a real agent keeps them. */
class FakeAgent {
  private batchSeq = 0;
  private probeSeq = 0;
  constructor(
    readonly name: string,
    private readonly url: string,
  ) {}

  private result(target: string, kind: string, cls: FailureClass, atMs: number): ProbeResult {
    return {
      agent: this.name,
      target,
      address: kind === 'icmp' ? '127.0.0.13' : '127.0.0.13:5432',
      kind,
      class: cls,
      seq: ++this.probeSeq,
      startedAtMs: atMs,
      timings: { totalMs: 1 },
    };
  }

  private batch(results: ProbeResult[]): ReportBatch {
    return {
      agentId: `agent-${this.name}-0001`,
      agent: this.name,
      seq: ++this.batchSeq,
      createdAtMs: Date.now(),
      labels: { zone: 'a' },
      results,
      summaries: [],
    };
  }

  /** A period: icmp ok, postgres `cls`. */
  async period(cls: FailureClass, atMs = Date.now()): Promise<void> {
    await postReport(
      this.url,
      token,
      this.batch([
        this.result('db-1/icmp', 'icmp', 'ok', atMs),
        this.result(pgTarget, 'tcp', cls, atMs),
      ]),
    );
  }

  /**
   * A class change on postgres as an issue-14 agent reports it: the trigger flushed at
   * once, the re-probes `spacingMs` apart, flushed when the burst is complete. `reprobe`
   * gives each re-probe's class (default: the trigger's). Returns the trigger's start.
   */
  async burst(
    cls: FailureClass,
    reprobe: (i: number) => FailureClass = () => cls,
  ): Promise<number> {
    const triggerAt = Date.now();
    const trigger = {
      ...this.result(pgTarget, 'tcp', cls, triggerAt),
      confirm: { of: burstOf, index: 0 },
    };
    await postReport(this.url, token, this.batch([trigger]));
    const reprobes: ProbeResult[] = [];
    for (let i = 1; i <= burstOf; i++) {
      await sleep(spacingMs);
      reprobes.push({
        ...this.result(pgTarget, 'tcp', reprobe(i), Date.now()),
        confirm: { of: burstOf, index: i },
      });
    }
    await postReport(this.url, token, this.batch(reprobes));
    return triggerAt;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function collectorYaml(o: {
  port: number;
  dataDir: string;
  amUrl?: string;
  hookUrl: string;
}): string {
  return [
    `listen: 127.0.0.1:${o.port}`,
    `dataDir: ${o.dataDir}`,
    'tokens:',
    `  - { name: fleet, token: ${token} }`,
    ...viewersYaml,
    // The agents are the test's posts: never silent, nor late (a report interval and a half).
    'agents: { reportInterval: 5m, silentAfter: 10m }',
    // Without bursts, five failures in a row: a burst of 1 + 3 confirms in four.
    'diagnosis: { debounce: 5 }',
    'alerts:',
    // The bound under test, written out (auto would be a probe interval and a burst).
    '  settleMax: 1s',
    '  resendEvery: 1m',
    '  labels: { cluster: e2e-settle }',
    '  sinks:',
    ...(o.amUrl === undefined ? [] : [`    - { type: alertmanager, urls: [${o.amUrl}] }`]),
    `    - { type: webhook, url: ${o.hookUrl} }`,
    'inventory:',
    '  components:',
    ...agents.map(
      (a, i) =>
        `    - { name: ${a}, address: 127.0.0.${10 + i}, role: api, agent: ${a}, labels: { zone: a } }`,
    ),
    '    - name: db-1',
    '      address: 127.0.0.13',
    '      role: database',
    '      labels: { zone: b }',
    '      services: [{ name: postgres, kind: postgres }]',
    '',
  ].join('\n');
}

let am: TestAlertmanager | undefined;
let front: AlertRecorder | undefined;
beforeAll(async () => {
  ensureBuilt();
  if (canRunAlertmanager) {
    am = await startAlertmanager();
    front = await recordAlertsTo(am, '127.0.0.1');
  }
}, 60_000);
afterAll(async () => {
  await front?.stop();
  await am?.stop();
});

describe('a fault that first looks like another cause (issue 14)', () => {
  let collector: CollectorProcess | undefined;
  let hook: Hook | undefined;
  afterEach(async () => {
    await collector?.stop();
    collector = undefined;
    await hook?.close();
    hook = undefined;
  });

  async function start(): Promise<{ c: CollectorProcess; fleet: FakeAgent[] }> {
    const dataDir = mkdtempSync(join(tmpdir(), 'faultline-settle-e2e-'));
    dirs.push(dataDir);
    hook = await webhook();
    const port = await freePort();
    const file = join(dataDir, 'collector.yaml');
    writeFileSync(
      file,
      collectorYaml({
        port,
        dataDir,
        hookUrl: hook.url,
        ...(front === undefined ? {} : { amUrl: front.url }),
      }),
    );
    collector = await CollectorProcess.start(file, `http://127.0.0.1:${port}`);
    const fleet = agents.map((a) => new FakeAgent(a, collector!.url));
    // Healthy first: every path ok.
    for (let round = 0; round < 2; round++) for (const a of fleet) await a.period('ok');
    await pollUntil('a healthy diagnosis', async () => {
      const d = await collector!.get<Diagnosis>('/api/v1/diagnosis');
      return d.healthy && d.settling === false;
    });
    // The paths' first states are changes too: let them go quiet before the fault.
    await sleep(600);
    return { c: collector, fleet };
  }

  const firedNames = (h: Hook): string[] =>
    h.received.flatMap((r) =>
      r.body.alerts.filter((a) => a.status === 'firing').map((a) => a.labels.alertname!),
    );

  it('a service stopping: settling while the agents arrive, and only FaultlineServiceDown is ever sent, to Alertmanager and the webhook alike', async () => {
    const { c, fleet } = await start();
    const amBefore = front?.received.length ?? 0;

    // Every document the API shows from now on, with when.
    const seen: { atMs: number; d: Diagnosis }[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        seen.push({ atMs: Date.now(), d: await c.get<Diagnosis>('/api/v1/diagnosis') });
        await sleep(10);
      }
    })();

    // The three agents' probes of postgres come round 150 ms apart (probes are spread over
    // the interval): each sees the refusal and confirms it with its burst.
    const t0 = Date.now();
    const triggers = await Promise.all(
      fleet.map((a, i) => sleep(i * 150).then(() => a.burst('tcp_refused'))),
    );
    const settled = await pollUntil(
      'the settled diagnosis',
      () => {
        const last = seen.at(-1);
        return last !== undefined && last.d.settling === false && !last.d.healthy
          ? last
          : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 10 },
    );
    expect(settled.d.hypotheses[0]).toMatchObject({ kind: 'service_down', components: ['db-1'] });

    await pollUntil('the webhook to hear the alert', () => firedNames(hook!).length > 0, {
      timeoutMs: 5_000,
      intervalMs: 10,
    });
    const alertMs = hook!.received[0]!.atMs - t0;
    if (front !== undefined) {
      await pollUntil('Alertmanager to be told', () => front!.received.length > amBefore, {
        timeoutMs: 5_000,
        intervalMs: 10,
      });
    }
    // Let anything late arrive: a transient alert would have gone out within this.
    await sleep(1_500);
    watching = false;
    await watcher;

    // The fault did arrive as another cause first (one source refused, two fine): the API
    // showed it, marked settling, never as a settled answer.
    const unhealthy = seen.filter((s) => !s.d.healthy);
    const wrong = unhealthy.filter((s) => s.d.hypotheses[0]?.kind !== 'service_down');
    expect(wrong.length).toBeGreaterThan(0);
    expect(wrong.every((s) => s.d.settling === true)).toBe(true);
    const firstSettling = unhealthy[0]!.d;
    expect(firstSettling.settlingSinceMs).toBeGreaterThanOrEqual(triggers[0]! - 50);
    // Bounded: settled within settleMax (1 s) of the first change, by the timer alone.
    const settledMs = unhealthy.find((s) => s.d.settling === false)!.atMs - t0;
    expect(settledMs).toBeLessThan(1_000 + 300);

    expect(firedNames(hook!)).toEqual(['FaultlineServiceDown']);
    if (front !== undefined) {
      const told = front.received.slice(amBefore).filter((a) => a.labels.cluster === 'e2e-settle');
      expect(told.length).toBeGreaterThan(0);
      expect([...new Set(told.map((a) => a.labels.alertname))]).toEqual(['FaultlineServiceDown']);
      const active = (await am!.alerts()).filter((a) => a.labels.cluster === 'e2e-settle');
      expect(active.map((a) => a.labels.alertname)).toEqual(['FaultlineServiceDown']);
    }

    // The incident opened with the settled cause, dated from the first refused probe, and
    // its timeline holds no transient leading hypothesis.
    const { incidents: list } = await c.get<{
      incidents: { id: number; kind: string; firstFailureMs: number }[];
    }>('/api/v1/incidents');
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ kind: 'service_down', firstFailureMs: triggers[0] });
    const detail = await c.get<{ events: { type: string }[] }>(`/api/v1/incidents/${list[0]!.id}`);
    expect(detail.events.map((e) => e.type)).toEqual(['opened']);

    const wrongKinds = [...new Set(wrong.map((s) => s.d.hypotheses[0]?.kind))].join(',');
    const wrongSpanMs = wrong.at(-1)!.atMs - wrong[0]!.atMs;
    console.log(
      `settle e2e: wrong answer on top while settling: ${wrongKinds} for ~${wrongSpanMs} ms; settled ${settledMs} ms after the first trigger; alert at the webhook ${alertMs} ms after it; alerts for the wrong cause: 0`,
    );
  });

  it('one lost probe, cancelled by its burst, raises nothing and pages nobody', async () => {
    const { c, fleet } = await start();
    await fleet[0]!.burst('tcp_timeout', () => 'ok');
    await sleep(1_500);
    const d = await c.get<Diagnosis>('/api/v1/diagnosis');
    expect(d).toMatchObject({ healthy: true, settling: false });
    expect(hook!.received).toEqual([]);
  });
});
