import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AlertEngine } from '../../collector/alerts.js';
import { Collector } from '../../collector/collector.js';
import type { AlertContext } from '../../collector/alert-build.js';
import { parseCollectorConfig } from '../../collector/config.js';
import type { AlertsConfig } from '../../collector/config.js';
import type { DeadLetter, DeliveryJournal, RetryPolicy } from '../../collector/sinks/dispatcher.js';
import { Store } from '../../collector/store.js';
import { DiagnosisSchema } from '../../wire/diagnosis.js';
import type { Diagnosis } from '../../wire/diagnosis.js';
import { canRunAlertmanager, startAlertmanager } from '../../lab/alertmanager.js';
import type { GettableAlert, TestAlertmanager } from '../../lab/alertmanager.js';
import { pollUntil } from '../../lab/poll-until.js';
import { dbCollectorYaml, dbPeriod, postReport } from '../helpers/report-batches.js';
import type { ReportBatch } from '../../wire/report.js';
import { freePort } from '../../lab/server-process.js';
import { meterText } from '../helpers/meter-text.js';

/**
 * The alert engine against a real Alertmanager (Debian's) and real local webhook receivers:
 * what an on-call engineer would see in Alertmanager while the founding incident's
 * partition lasts, after it heals, with two collectors (HA), and with a receiver down.
 */

const t0 = Date.now();
const silentLog = pino({ level: 'silent' });

/** The founding incident: switch sw-2 cut off from sw-1; the databases are fine. */
const partition: Diagnosis = DiagnosisSchema.parse({
  healthy: false,
  hypotheses: [
    {
      kind: 'network_partition',
      confidence: 0.9,
      summary:
        'network partition between {app-1, app-2, dns-1, web-1} and {cache-1, db-1, db-2}, all behind switch sw-2; every failure is a network-layer timeout — no connection refused, no protocol error, so nothing points at the database',
      components: ['cache-1', 'db-1', 'db-2'],
      groups: [
        { name: 'switch=sw-1', members: ['app-1', 'app-2', 'dns-1', 'web-1'] },
        { name: 'switch=sw-2', members: ['cache-1', 'db-1', 'db-2'] },
      ],
      cutLabel: { key: 'switch', values: ['sw-2'] },
      evidence: {
        counts: { tcp_timeout: 12, icmp_timeout: 12 },
        examples: ['app-1 → db-1/postgres/tcp: tcp_timeout', 'app-2 → db-2/icmp: icmp_timeout'],
      },
      since: t0 - 15_000,
    },
  ],
  ruledOut: [
    {
      component: 'db-1',
      canBeRuledOut: true,
      reason:
        'db-1: postgres handshake succeeds from 2/2 agents on its side; failures toward it are network-layer timeouts, never refused connections or protocol errors',
    },
    {
      component: 'db-2',
      canBeRuledOut: true,
      reason:
        'db-2: postgres handshake succeeds from 2/2 agents on its side; failures toward it are network-layer timeouts, never refused connections or protocol errors',
    },
  ],
  computedAtMs: t0,
});

const healed: Diagnosis = { healthy: true, hypotheses: [], ruledOut: [], computedAtMs: t0 };

const ctx: AlertContext = {
  roles: {
    'app-1': 'api',
    'app-2': 'api',
    'web-1': 'web',
    'dns-1': 'dns',
    'db-1': 'database',
    'db-2': 'database',
    'cache-1': 'cache',
  },
  totalPaths: 60,
  incidentOf: () => ({ id: 'inc-1', url: 'http://faultline.test/incidents/inc-1' }),
};

const expectedLabels = {
  alertname: 'FaultlineNetworkPartition',
  kind: 'network_partition',
  component: 'cache-1,db-1,db-2',
  severity: 'critical',
  cut_switch: 'sw-2',
  cluster: 'e2e',
};

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-alerts-e2e-'));
  tempDirs.push(dir);
  return dir;
}

/** The `alerts:` section as a user writes it, through the real config parser. */
function alertsConfig(sinksYaml: string, extra = ''): AlertsConfig {
  const text = [
    'tokens:',
    '  - { name: fleet, token: 0123456789abcdef0123 }',
    `dataDir: ${tempDir()}`,
    'alerts:',
    '  resendEvery: 1s',
    '  refireHoldFor: 0s',
    '  externalUrl: http://faultline.test:7070/',
    '  runbookUrl: https://wiki.example.com/faultline/{kind}',
    '  labels: { cluster: e2e }',
    ...extra.split('\n').filter((l) => l !== ''),
    '  sinks:',
    ...sinksYaml.split('\n').filter((l) => l !== ''),
  ].join('\n');
  return parseCollectorConfig(text, 'collector.yaml').alerts;
}

const engines: AlertEngine[] = [];
function engine(
  config: AlertsConfig,
  dataDir = tempDir(),
  retry: Partial<RetryPolicy> = { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 400 },
  journal?: DeliveryJournal,
): AlertEngine {
  const e = new AlertEngine({
    config,
    dataDir,
    tickMs: 100,
    retry,
    ...(journal === undefined ? {} : { journal }),
  });
  engines.push(e);
  return e;
}

afterEach(async () => {
  for (const e of engines.splice(0)) await e.close(500);
});

let am: TestAlertmanager;
beforeAll(async () => {
  am = await startAlertmanager();
});
afterAll(async () => {
  await am?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

async function ours(): Promise<GettableAlert[]> {
  return (await am.alerts()).filter((a) => a.labels.cluster === 'e2e');
}

/** Waits until Alertmanager shows no alert of ours (resolved alerts leave the list). */
async function waitGone(): Promise<void> {
  await pollUntil(
    'alertmanager to show none of our alerts',
    async () => (await ours()).length === 0,
    {
      timeoutMs: 10_000,
      intervalMs: 100,
    },
  );
}

describe.skipIf(!canRunAlertmanager)('alerts into a real Alertmanager', () => {
  it('fires one alert with the hint and the ruled-out list, keeps it alive, resolves it on heal', async () => {
    const e = engine(alertsConfig(`    - type: alertmanager\n      urls: [${am.url}]`));
    e.update(partition, Date.now(), ctx);
    const [alert] = await pollUntil(
      'the partition alert in alertmanager',
      async () => {
        const list = await ours();
        return list.length > 0 && list;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    expect(await ours()).toHaveLength(1);
    expect(alert?.labels).toEqual(expectedLabels);
    expect(alert?.status.state).toBe('active');
    const summary = alert?.annotations.summary ?? '';
    // First line: what is most likely wrong, and what is not.
    expect(summary).toMatch(/^Network partition between .* all behind switch sw-2/);
    expect(summary).toMatch(/— ruled out: db-1, db-2$/);
    const description = alert?.annotations.description ?? '';
    expect(description).toContain(
      'Evidence: 24 failing paths of 60 (40%): icmp_timeout 12, tcp_timeout 12.',
    );
    expect(description).toContain('e.g. app-1 → db-1/postgres/tcp: tcp_timeout');
    expect(description).toContain(
      'Ruled out:\n  - db-1: postgres handshake succeeds from 2/2 agents on its side',
    );
    expect(alert?.annotations.runbook_url).toBe(
      'https://wiki.example.com/faultline/network_partition',
    );
    expect(alert?.annotations.incident_url).toBe('http://faultline.test/incidents/inc-1');
    expect(alert?.generatorURL).toMatch(/^http:\/\/faultline\.test:7070\/\?alert=[0-9a-f]{16}$/);
    expect(Date.parse(alert?.startsAt ?? '')).toBe(t0 - 15_000);

    // Re-sent every resendEvery with endsAt ahead: Alertmanager's endsAt keeps moving.
    const firstEndsAt = Date.parse(alert?.endsAt ?? '');
    await pollUntil(
      'a re-send moving endsAt forward',
      async () => {
        const [a] = await ours();
        return a !== undefined && Date.parse(a.endsAt) > firstEndsAt;
      },
      { timeoutMs: 5_000, intervalMs: 100 },
    );

    e.update(healed, Date.now(), ctx);
    await waitGone();
    expect(e.metrics().find((m) => m.name === 'faultline_alerts_firing')?.value).toBe(0);
    const sent = e.deliveryStats()[0];
    expect(sent).toMatchObject({ sink: 'alertmanager', failed: 0, deadLetters: 0 });
    expect(sent?.sent).toBeGreaterThanOrEqual(3);
  });

  it('two collectors fed the same diagnoses make ONE alert, which stays while one of them stops', async () => {
    const sinks = `    - type: alertmanager\n      urls: [${am.url}]`;
    const a = engine(alertsConfig(sinks));
    const b = engine(alertsConfig(sinks));
    a.update(partition, Date.now(), ctx);
    b.update(partition, Date.now(), ctx);
    await pollUntil('both collectors to have delivered', async () => {
      const stats = [...a.deliveryStats(), ...b.deliveryStats()];
      return stats.every((s) => s.sent >= 1) && (await ours()).length > 0;
    });
    const list = await ours();
    expect(list).toHaveLength(1);
    expect(list[0]?.labels).toEqual(expectedLabels);

    // Collector a stops: its last endsAt is at most 4 resend periods (4 s) ahead. The alert
    // outliving that shows b keeps it alive, and that stopping resolved nothing.
    const stoppedAtMs = Date.now();
    await a.close(500);
    const lapseMs = stoppedAtMs + 4 * 1000;
    let gone = false;
    const kept = await pollUntil(
      'the alert to outlive a’s last endsAt',
      async () => {
        const [alert] = await ours();
        if (alert === undefined) gone = true;
        return Date.now() > lapseMs + 1000 && alert;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    expect(gone).toBe(false);
    expect(Date.parse(kept.endsAt)).toBeGreaterThan(lapseMs);
    expect(kept.status.state).toBe('active');
    expect(await ours()).toHaveLength(1);

    b.update(healed, Date.now(), ctx);
    await waitGone();
  });

  describe('webhooks', () => {
    const servers: Server[] = [];
    afterEach(async () => {
      for (const s of servers.splice(0)) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    });

    interface Received {
      readonly headers: IncomingMessage['headers'];
      readonly body: string;
    }

    /** A receiver on 127.0.0.1 answering each request with `answer(n)` (n from 1). */
    async function receiver(
      answer: (n: number, req: IncomingMessage, res: ServerResponse, body: string) => void,
    ): Promise<{ url: string; received: Received[] }> {
      const received: Received[] = [];
      const server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          received.push({ headers: req.headers, body });
          answer(received.length, req, res, body);
        });
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as AddressInfo;
      return { url: `http://127.0.0.1:${port}/hook`, received };
    }

    const secret = 'webhook-secret-0123456789';

    function verified(r: Received): boolean {
      const header = String(r.headers['x-faultline-signature'] ?? '');
      const expected = `sha256=${createHmac('sha256', secret).update(r.body).digest('hex')}`;
      return (
        header.length === expected.length &&
        timingSafeEqual(Buffer.from(header), Buffer.from(expected))
      );
    }

    it('signs each body; the receiver verifies it and gets the alert, the diagnosis and the incident', async () => {
      // The receiver answers 503 twice before it takes the delivery: retried, not lost.
      const hook = await receiver((n, _req, res) => {
        res.statusCode = n <= 2 ? 503 : 204;
        res.end();
      });
      const e = engine(
        alertsConfig(`    - type: webhook\n      url: ${hook.url}\n      secret: ${secret}`),
      );
      e.update(partition, Date.now(), ctx);
      await pollUntil('the third attempt to be accepted', () => e.deliveryStats()[0]?.sent === 1);
      expect(hook.received).toHaveLength(3);
      expect(hook.received.every(verified)).toBe(true);
      // A body altered in transit fails verification.
      const last = hook.received[2] as Received;
      expect(verified({ ...last, body: last.body.replace('critical', 'warning') })).toBe(false);
      expect(Number(last.headers['x-faultline-timestamp'])).toBeGreaterThan(t0 / 1000 - 5);
      const body = JSON.parse(last.body) as {
        status: string;
        alerts: { status: string; labels: Record<string, string>; incident: unknown }[];
        incidents: unknown[];
        diagnosis: Diagnosis;
      };
      expect(body.status).toBe('firing');
      expect(body.alerts).toHaveLength(1);
      expect(body.alerts[0]?.labels).toEqual(expectedLabels);
      expect(body.incidents).toEqual([
        { id: 'inc-1', url: 'http://faultline.test/incidents/inc-1' },
      ]);
      expect(DiagnosisSchema.parse(body.diagnosis)).toEqual(partition);
      expect(e.deliveryStats()[0]).toMatchObject({ failed: 2, retries: 2, deadLetters: 0 });

      // Re-sends are for Alertmanager; the webhook hears the next change: the resolve.
      e.update(healed, Date.now(), ctx);
      await pollUntil('the resolve notification', () => e.deliveryStats()[0]?.sent === 2);
      const resolved = JSON.parse(hook.received.at(-1)?.body ?? '{}') as {
        status: string;
        alerts: { status: string }[];
      };
      expect(resolved.status).toBe('resolved');
      expect(resolved.alerts.map((a) => a.status)).toEqual(['resolved']);
      expect(hook.received.every(verified)).toBe(true);
    });

    it('a receiver that is down or hangs is retried, then dead-lettered — while Alertmanager still gets the alert', async () => {
      const downPort = await freePort();
      const hung = await receiver(() => {
        /* never answers */
      });
      const dataDir = tempDir();
      const e = engine(
        alertsConfig(
          [
            `    - type: webhook`,
            `      name: down`,
            `      url: http://127.0.0.1:${downPort}/hook`,
            `      secret: ${secret}`,
            `    - type: webhook`,
            `      name: hung`,
            `      url: ${hung.url}`,
            `      timeout: 300ms`,
            `    - type: alertmanager`,
            `      urls: [${am.url}]`,
          ].join('\n'),
        ),
        dataDir,
      );
      e.update(partition, Date.now(), ctx);
      // update() returned at once; Alertmanager is not held up by the two dead receivers.
      await pollUntil('the alert in alertmanager', async () => (await ours()).length === 1, {
        timeoutMs: 5_000,
        intervalMs: 50,
      });
      const stat = (sink: string) => e.deliveryStats().find((s) => s.sink === sink);
      // The hung receiver needs 3 × 300 ms to be given up: it is still being tried.
      expect(stat('hung')?.deadLetters).toBe(0);

      const file = join(dataDir, 'alerts-dead-letter.jsonl');
      const letters = await pollUntil(
        'both webhooks to be dead-lettered',
        () => {
          if (!existsSync(file)) return false;
          const lines = readFileSync(file, 'utf8').trim().split('\n');
          const parsed = lines.map((l) => JSON.parse(l) as DeadLetter);
          return parsed.length >= 2 && parsed;
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      const bySink = new Map(letters.map((l) => [l.sink, l]));
      expect(bySink.get('down')).toMatchObject({
        type: 'webhook',
        attempts: 3,
        reason: 'gave up after 3 attempts; last: request failed: ECONNREFUSED',
      });
      expect(bySink.get('hung')).toMatchObject({
        attempts: 3,
        reason: 'gave up after 3 attempts; last: timed out after 300 ms',
      });
      // The undelivered body is kept whole, to be replayed by hand.
      const kept = bySink.get('down')?.body as { alerts: { labels: Record<string, string> }[] };
      expect(kept.alerts[0]?.labels).toEqual(expectedLabels);
      expect(hung.received).toHaveLength(3);
      expect(stat('down')).toMatchObject({ sent: 0, failed: 3, retries: 2, deadLetters: 1 });
      expect(stat('alertmanager')).toMatchObject({ failed: 0, deadLetters: 0 });
      const metrics = meterText();
      e.instrument(metrics.meter);
      const text = await metrics.render();
      expect(text).toContain('faultline_alerts_dead_letters_total{sink="down"} 1');
      expect(text).toContain('faultline_alerts_failed_total{sink="hung"} 3');
      expect(text).toContain('faultline_alerts_firing 1');

      e.update(healed, Date.now(), ctx);
      await waitGone();
    });

    it('a message still being retried when the collector stops is sent by the next one from the store, not lost', async () => {
      let up = false;
      const hook = await receiver((_n, _req, res) => {
        res.statusCode = up ? 204 : 503;
        res.end();
      });
      const dataDir = tempDir();
      const config = alertsConfig(
        `    - type: webhook\n      url: ${hook.url}\n      secret: ${secret}`,
      );
      // Long backoff: the stop comes while the retry waits.
      const slow = { maxAttempts: 10, initialBackoffMs: 60_000, maxBackoffMs: 60_000 };
      const firstStore = Store.open(dataDir);
      try {
        const before = engine(config, dataDir, slow, firstStore);
        before.update(partition, Date.now(), ctx);
        await pollUntil('the first attempt to fail', () => hook.received.length === 1);
        await before.close(100);
        expect(firstStore.outboxPending('webhook')).toMatchObject([
          { attempts: 1, lastError: 'HTTP 503' },
        ]);
      } finally {
        firstStore.close();
      }

      up = true;
      const store = Store.open(dataDir);
      try {
        const after = engine(config, dataDir, slow, store);
        await pollUntil(
          'the kept message to be delivered',
          () => after.deliveryStats()[0]?.sent === 1,
        );
        // The same message, signed by the new process.
        expect(hook.received.at(-1)?.body).toBe(hook.received[0]?.body);
        expect(hook.received.every(verified)).toBe(true);
        expect(store.outboxPending('webhook')).toEqual([]);
        expect(store.deadLetters()).toEqual([]);
        expect(existsSync(join(dataDir, 'alerts-dead-letter.jsonl'))).toBe(false);
        await after.close(100);
      } finally {
        store.close();
      }
    });

    it('format: slack posts a Slack incoming-webhook body', async () => {
      const hook = await receiver((_n, _req, res) => res.end('ok'));
      const e = engine(
        alertsConfig(`    - type: webhook\n      url: ${hook.url}\n      format: slack`),
      );
      e.update(partition, Date.now(), ctx);
      await pollUntil('the slack message', () => hook.received.length === 1);
      const body = JSON.parse(hook.received[0]?.body ?? '{}') as {
        text: string;
        blocks: { type: string; text?: { type: string; text: string } }[];
      };
      expect(Object.keys(body).sort()).toEqual(['blocks', 'text']);
      expect(body.text).toMatch(
        /^:red_circle: FIRING \(critical\) FaultlineNetworkPartition: Network partition/,
      );
      expect(body.blocks[0]).toMatchObject({ type: 'section', text: { type: 'mrkdwn' } });
      expect(body.blocks[0]?.text?.text).toContain('ruled out: db-1, db-2');
      // Unsigned without a secret.
      expect(hook.received[0]?.headers['x-faultline-signature']).toBeUndefined();
    });
  });
});

describe.skipIf(!canRunAlertmanager)(
  'two collectors fed the same reports alert as one (HA)',
  () => {
    const token = 'fleet-token-0123456789abcdef';
    const collectors: Collector[] = [];
    afterEach(async () => {
      for (const c of collectors.splice(0)) await c.stop();
    });

    async function start(): Promise<Collector> {
      const config = parseCollectorConfig(
        dbCollectorYaml({
          dataDir: tempDir(),
          token,
          more: [
            'agents: { reportInterval: 5m, silentAfter: 10m }',
            'alerts:',
            '  resendEvery: 1s',
            '  externalUrl: http://faultline.test:7070/',
            '  labels: { cluster: e2e-ha }',
            '  sinks:',
            `    - { type: alertmanager, urls: [${am.url}] }`,
          ],
        }),
        'collector.yaml',
      );
      const c = await Collector.start(config, silentLog);
      collectors.push(c);
      return c;
    }

    const post = (c: Collector, b: ReportBatch): Promise<void> => postReport(c.url(), token, b);

    const theirs = async (): Promise<GettableAlert[]> =>
      (await am.alerts()).filter((a) => a.labels.cluster === 'e2e-ha');

    it('a database refusing connections: ONE alert in Alertmanager with the hint and the incident link; resolved when it heals', async () => {
      const both = [await start(), await start()];
      const baseMs = Date.now() - 20_000;
      const feed = async (from: number, to: number, pg: 'ok' | 'tcp_refused'): Promise<void> => {
        for (let seq = from; seq <= to; seq++)
          for (const agent of ['app-1', 'app-2'])
            for (const c of both) await post(c, dbPeriod(agent, seq, pg, baseMs));
      };
      await feed(1, 3, 'ok');
      await feed(4, 6, 'tcp_refused');
      const [alert] = await pollUntil(
        'one service_down alert in Alertmanager',
        async () => {
          const list = await theirs();
          return list.length === 1 && list[0]!.labels.kind === 'service_down' ? list : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      // Both collectors sent it (same labels): Alertmanager holds one. Each sends when its
      // own diagnosis settles, so the second may follow the first by a moment.
      await pollUntil(
        'both collectors to have sent it',
        () => both.every((c) => c.alerting.deliveryStats().every((s) => s.sent >= 1)),
        { timeoutMs: 5_000, intervalMs: 50 },
      );
      expect(alert!.labels).toMatchObject({
        alertname: 'FaultlineServiceDown',
        kind: 'service_down',
        component: 'db-1',
        severity: 'critical',
        cluster: 'e2e-ha',
      });
      expect(alert!.annotations.summary).toMatch(/^Postgres on db-1 is down: /);
      expect(alert!.annotations.incident_url).toBe('http://faultline.test:7070/api/v1/incidents/1');
      expect(await theirs()).toHaveLength(1);

      await feed(7, 9, 'ok');
      await pollUntil('the alert resolved', async () => (await theirs()).length === 0, {
        timeoutMs: 10_000,
        intervalMs: 100,
      });
    });
  },
);
