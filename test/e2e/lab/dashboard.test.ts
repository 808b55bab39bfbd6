import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultlineVersion } from '../../../lib/version.js';
import type { Diagnosis } from '../../../wire/diagnosis.js';
import { canRunBrowser, launchBrowser } from '../../helpers/browser.js';
import { cutUplink } from '../../../lab/faults.js';
import { labDiagnosis } from '../../../lab/expect.js';
import type { Lab } from '../../../lab/lab.js';
import { canRunLab, type LabSpec } from '../../../lab/spec.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { useLab } from './use-lab.js';

/**
 * The dashboard as a person uses it: Debian's Chromium (playwright-core) on the page the
 * collector serves at `/`, the collector fed by real agents in the lab. The page is asked
 * through the data attributes the views expose (counts, the cut, the incident shown), not
 * pixels. Screenshots of each view land in docs/screenshots/ for the README.
 */
const spec: LabSpec = {
  switches: [
    { name: 'sw-app', zone: 'front' },
    { name: 'sw-db', zone: 'data' },
  ],
  uplinks: [['sw-app', 'sw-db']],
  hosts: [
    { name: 'app-1', switch: 'sw-app', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'app-2', switch: 'sw-app', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'web-1', switch: 'sw-app', role: 'web', services: [{ kind: 'http', name: 'web' }] },
    { name: 'db-1', switch: 'sw-db', role: 'database', services: [{ kind: 'postgres' }] },
    { name: 'db-2', switch: 'sw-db', role: 'database', services: [{ kind: 'postgres' }] },
  ],
};
const pathCount = 5 * 4 * 4;
/**
 * Where the screenshots go: docs/screenshots/ when asked
 * (`FAULTLINE_SCREENSHOTS_DIR=docs/screenshots npx vitest run test/e2e/lab/dashboard.test.ts`),
 * else a temp dir removed afterwards — a test run leaves the committed images alone.
 */
const shotsWanted = process.env.FAULTLINE_SCREENSHOTS_DIR;
const shots =
  shotsWanted === undefined
    ? mkdtempSync(join(tmpdir(), 'faultline-dashboard-shots-'))
    : resolve(shotsWanted);

/** An alert as the webhook sink posts it (the fields read here). */
interface PostedAlert {
  readonly status: string;
  readonly labels: Record<string, string>;
  readonly generatorURL?: string;
  readonly incident?: { readonly id: string };
}

interface Block {
  readonly rows: string;
  readonly cols: string;
  readonly failing: number;
  readonly cells: number;
}

describe.runIf(canRunLab && canRunBrowser)('lab: the dashboard in Chromium', () => {
  const posted: PostedAlert[] = [];
  let receiver: Server | undefined;
  let browser: Browser | undefined;
  let page: Page;

  const theLab = useLab(spec, pathCount, 'dashboard.test.ts', {
    extraCollectorYaml: async (lab: Lab) => {
      receiver = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          try {
            const doc = JSON.parse(body) as { alerts?: PostedAlert[] };
            posted.push(...(doc.alerts ?? []));
          } catch {
            // Not ours: ignored.
          }
          res.writeHead(200).end();
        });
      });
      await new Promise<void>((resolve) =>
        receiver!.listen(0, lab.managementAddress, () => resolve()),
      );
      const addr = receiver.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      return [
        'alerts:',
        `  externalUrl: http://${lab.gateway}:${lab.apiPort}/`,
        '  sinks:',
        `    - { type: webhook, name: hook, url: "http://${lab.managementAddress}:${port}/" }`,
      ].join('\n');
    },
  });

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  }, 60_000);
  afterAll(async () => {
    if (shotsWanted === undefined) rmSync(shots, { recursive: true, force: true });
    await browser?.close();
    await new Promise((resolve) =>
      receiver === undefined ? resolve(undefined) : receiver.close(resolve),
    );
  });

  const attr = async (selector: string, name: string): Promise<string | null> =>
    page.locator(selector).first().getAttribute(name, { timeout: 1000 });

  it('asks for a viewer token when a read answers 401, keeps it, and then shows the data', async () => {
    const l = theLab();
    await page.goto(`${l.collectorUrl}/#/now`);
    await page.locator('.token-prompt input[name=token]').waitFor({ timeout: 10_000 });
    expect(await attr('[data-connection]', 'data-connection')).toBe('token');
    await page.fill('.token-prompt input[name=token]', l.viewerToken);
    await page.click('.token-prompt button[type=submit]');
    await pollUntil(
      'the Now view healthy',
      async () => (await attr('.now', 'data-healthy')) === 'true',
      {
        timeoutMs: 10_000,
      },
    );
    expect(await page.evaluate("localStorage.getItem('faultline.viewerToken')")).toBe(
      l.viewerToken,
    );
    // Kept: a reload does not ask again.
    await page.reload();
    await pollUntil(
      'live again',
      async () => (await attr('[data-connection]', 'data-connection')) === 'live',
      {
        timeoutMs: 10_000,
      },
    );
    expect(await page.locator('.token-prompt').count()).toBe(0);
    await page.screenshot({ path: join(shots, 'now-healthy.png') });
  }, 40_000);

  it('the matrix shows the cut as a block within 2 s of the diagnosis, the topology marks the cut switch', async () => {
    const l = theLab();
    await page.goto(`${l.collectorUrl}/#/matrix`);
    await pollUntil('the matrix drawn', async () => (await attr('.matrix', 'data-rows')) === '5', {
      timeoutMs: 10_000,
    });
    expect(await attr('.matrix', 'data-group-by')).toBe('switch');
    expect(Number(await attr('.matrix', 'data-failing'))).toBe(0);

    const fault = cutUplink(l, 'sw-app', 'sw-db');
    await fault.inject();
    try {
      const diagnosed = await pollUntil(
        'a network partition diagnosed',
        async () => {
          const d: Diagnosis = await labDiagnosis(l);
          return d.hypotheses[0]?.kind === 'network_partition' && d.settling !== true
            ? Date.now()
            : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      // The collector is on sw-app: its agents' paths to sw-db are the block it can see.
      const shown = await pollUntil(
        'the sw-app × sw-db block failing in the matrix',
        async () => {
          const blocks = JSON.parse((await attr('.matrix', 'data-blocks')) ?? '[]') as Block[];
          const b = blocks.find((x) => x.rows === 'sw-app' && x.cols === 'sw-db');
          const inside = blocks.filter((x) => x.rows === x.cols);
          return b !== undefined &&
            b.cells > 0 &&
            b.failing === b.cells &&
            inside.every((x) => x.failing === 0)
            ? Date.now()
            : undefined;
        },
        { timeoutMs: 5_000, intervalMs: 50 },
      );
      expect(shown - diagnosed).toBeLessThanOrEqual(2000);
      await page.screenshot({ path: join(shots, 'matrix-cut.png') });

      // Hover: the path under the pointer (app-1, the first row; a sw-db target, the last
      // column); click: its history, which holds the change to failing.
      const cw = Number(await attr('.matrix', 'data-cell-width'));
      const ch = Number(await attr('.matrix', 'data-cell-height'));
      const cols = Number(await attr('.matrix', 'data-cols'));
      const at = { x: (cols - 1) * cw + cw / 2, y: ch / 2 };
      await page.locator('.matrix canvas').hover({ position: at });
      await page.locator('.path-detail[data-agent="app-1"] dl').waitFor({ timeout: 5_000 });
      expect(await attr('.path-detail', 'data-target')).toMatch(/^db-/);
      expect(await page.locator('.path-detail').textContent()).toMatch(/probes, \d+% failed/);
      // …and its last stored results: the cut's failures, newest first.
      await page.locator('.path-detail table.results tr').first().waitFor({ timeout: 5_000 });
      const rows = page.locator('.path-detail table.results tr');
      expect(await rows.count()).toBeGreaterThan(0);
      expect(await rows.first().getAttribute('data-class')).not.toBe('ok');
      expect(await page.locator('.path-detail').textContent()).toMatch(
        /Only failures and state changes are stored in full/,
      );
      await page.locator('.matrix canvas').click({ position: at });
      await page.locator('.path-detail table.history tr').first().waitFor({ timeout: 5_000 });
      expect(await page.locator('.path-detail table.history').textContent()).toMatch(
        /ok → failing/,
      );
      await page.locator('.matrix canvas').click({ position: at });

      // Filters: failing paths only leaves the rows and columns of the block.
      await page.selectOption('.matrix select[name=state]', 'failing');
      await pollUntil(
        'the state filter applied',
        async () => (await attr('.matrix', 'data-rows')) === '3',
        { timeoutMs: 5_000 },
      );
      await page.selectOption('.matrix select[name=state]', 'all');

      await page.goto(`${l.collectorUrl}/#/topology`);
      await pollUntil(
        'the cut switch marked',
        async () => (await attr('.topology', 'data-cut')) === 'sw-db',
        {
          timeoutMs: 5_000,
        },
      );
      expect(await attr('.switch[data-switch="sw-db"]', 'data-cut')).toBe('true');
      expect(await attr('.switch[data-switch="sw-app"]', 'data-cut')).toBe('false');
      expect(await attr('.host[data-host="db-1"]', 'data-status')).toMatch(/cut-off|silent|late/);
      await page.screenshot({ path: join(shots, 'topology-cut.png') });

      await page.goto(`${l.collectorUrl}/#/now`);
      await pollUntil(
        'the hypothesis shown',
        async () => (await attr('.hypothesis', 'data-kind')) === 'network_partition',
        {
          timeoutMs: 5_000,
        },
      );
      await page.screenshot({ path: join(shots, 'now-partition.png') });
      await page.goto(`${l.collectorUrl}/#/agents`);
      await page.locator('.agents').waitFor({ timeout: 5_000 });
      // Each real agent's version (its user-agent) and spool backlog, as the API has them.
      await pollUntil(
        'the Agents view shows what /api/v1/agents says',
        async () => {
          const api = await l.get<{
            agents: { agent: string; version?: string; spoolBacklog: number }[];
          }>('/api/v1/agents');
          const cell = async (agent: string, column: string): Promise<string | undefined> =>
            (
              await page
                .locator(`.agents tr[data-agent="${agent}"] td.${column}`)
                .textContent({ timeout: 1000 })
                .catch(() => null)
            )?.trim();
          const rows = [];
          for (const a of api.agents) {
            rows.push([a.agent, await cell(a.agent, 'version'), await cell(a.agent, 'backlog')]);
          }
          const want = api.agents.map((a) => [
            a.agent,
            a.version ?? 'unknown',
            String(a.spoolBacklog),
          ]);
          if (
            api.agents.length === spec.hosts.length &&
            JSON.stringify(rows) === JSON.stringify(want)
          ) {
            return want;
          }
          await page.reload();
          await page.locator('.agents').waitFor({ timeout: 5_000 });
          return undefined;
        },
        { timeoutMs: 10_000 },
      );
      const versions = await page.locator('.agents td.version').allTextContents();
      expect(versions.map((v) => v.trim())).toEqual(spec.hosts.map(() => faultlineVersion));
      expect(
        (await page.locator('.agents td.backlog').allTextContents()).every((b) =>
          /^\d+$/.test(b.trim()),
        ),
      ).toBe(true);
      expect(await page.locator('.agents th', { hasText: 'spool backlog' }).count()).toBe(1);
      await page.screenshot({ path: join(shots, 'agents.png') });
    } finally {
      await fault.heal();
    }
    await pollUntil('healthy again', async () => (await labDiagnosis(l)).healthy, {
      timeoutMs: 60_000,
    });
  }, 120_000);

  it("an alert's link opens its incident, with the timeline and the postmortem rendered", async () => {
    const l = theLab();
    const alert = await pollUntil(
      'the partition alert posted',
      () =>
        posted.find((a) => a.labels.kind === 'network_partition' && a.generatorURL !== undefined),
      { timeoutMs: 20_000 },
    );
    expect(alert.generatorURL).toMatch(/\/\?alert=[0-9a-f]{16}$/);
    await page.goto(alert.generatorURL!);
    const fingerprint = new URL(alert.generatorURL!).searchParams.get('alert')!;
    // Past the dashboard's own retries (10 × 1 s) for a link ahead of its incident's record.
    const id = await pollUntil(
      'the incident opened',
      async () => {
        const opened = await attr('.incident', 'data-incident-id').catch(() => null);
        if (opened !== null) return opened;
        // Why not, for the failure message: the page's notice and the API's answer.
        const notice = await page
          .locator('.notice')
          .first()
          .textContent({ timeout: 200 })
          .catch(() => null);
        const link = await l
          .get(`/api/v1/alerts/${fingerprint}`)
          .then((r) => JSON.stringify(r))
          .catch((err: unknown) => String(err));
        throw new Error(`no incident shown; notice: ${notice}; GET /api/v1/alerts: ${link}`);
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    // The incident opened is the one whose timeline holds the alert's hypothesis (and the
    // one the alert names, when it names one).
    const detail = await l.get<{ events: { diagnosis: Diagnosis }[] }>(`/api/v1/incidents/${id}`);
    expect(
      detail.events.some((e) => e.diagnosis.hypotheses.some((h) => h.kind === 'network_partition')),
    ).toBe(true);
    if (alert.incident !== undefined) expect(id).toBe(alert.incident.id);
    expect(page.url()).toContain(`#/incidents/${id}`);
    await pollUntil(
      'the postmortem rendered',
      async () => (await attr('.postmortem', 'data-rendered')) === 'true',
      {
        timeoutMs: 10_000,
      },
    );
    expect(await page.locator('.postmortem h1').first().textContent()).toContain(`incident ${id}`);
    expect(await page.locator('.postmortem h2', { hasText: 'Ruled out' }).count()).toBe(1);
    expect(Number(await attr('.timeline', 'data-series'))).toBeGreaterThan(0);
    await page.screenshot({ path: join(shots, 'incident.png') });
  }, 40_000);

  it('stays correct when the collector restarts: reconnects and reads the snapshots again', async () => {
    const l = theLab();
    await page.goto(`${l.collectorUrl}/#/matrix`);
    await pollUntil(
      'live',
      async () => (await attr('[data-connection]', 'data-connection')) === 'live',
      {
        timeoutMs: 10_000,
      },
    );
    const before = await attr('.matrix', 'data-version');
    await l.collector?.stop();
    await l.restartCollector();
    await pollUntil(
      'live again with a fresh matrix',
      async () =>
        (await attr('[data-connection]', 'data-connection')) === 'live' &&
        (await attr('.matrix', 'data-rows')) === '5' &&
        (await attr('.matrix', 'data-version')) !== before,
      { timeoutMs: 20_000 },
    );
  }, 60_000);
});
