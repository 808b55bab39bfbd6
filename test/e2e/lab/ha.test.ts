import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storedSummaries } from '../../../collector/store/rows.js';
import {
  canRunAlertmanager,
  recordAlertsTo,
  startAlertmanager,
  type AlertRecorder,
  type GettableAlert,
  type TestAlertmanager,
} from '../../../lab/alertmanager.js';
import { detectionReport, detections, diagnosisLine } from '../../../lab/expect.js';
import { cutUplink } from '../../../lab/faults.js';
import {
  diagnosisAt,
  haCollectors,
  haLab,
  haZoneB,
  waitBothHealthy,
  watchHaAnswers,
} from '../../../lab/ha.js';
import { Lab } from '../../../lab/lab.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { canRunLab } from '../../../lab/spec.js';
import { cliPath, ensureBuilt } from '../../helpers/cli.js';

/**
 * Issue 17: two collectors in two failure domains. ctl-a stands in zone a, ctl-b in zone b,
 * the database in a third zone joined to both; every agent reports to both collectors (one
 * spool, a cursor each), which share the inventory and the alert labels, and alert to one
 * real Alertmanager. Zone b's uplink is cut: collector a must page the real cause (zone b
 * cut off), collector b its own isolation ("I am cut off", labelled with its name) — one
 * alert each in Alertmanager, nothing else. After the heal every batch every agent made
 * during the cut reaches the collector it could not reach: each collector holds every batch
 * of every agent exactly once, seq 1…N without a gap or a declared drop, the same results.
 */

interface CountRow {
  readonly batches: number;
  readonly minSeq: number;
  readonly maxSeq: number;
  readonly results: number;
}

/** One collector's store, read after a clean stop: per agent, batches 1…upTo and their results. */
function storeCounts(dataDir: string, agents: ReadonlyMap<string, number>) {
  const db = new Database(join(dataDir, 'faultline.db'), { readonly: true, fileMustExist: true });
  try {
    const out = new Map<
      string,
      CountRow & {
        resultRows: number;
        distinctResults: number;
        summaryProbes: number;
        droppedBatches: number;
      }
    >();
    for (const [name, upTo] of agents) {
      const agent = db
        .prepare('SELECT agent_key AS key, dropped_batches AS dropped FROM agents WHERE name = ?')
        .get(name) as { key: number; dropped: number } | undefined;
      if (agent === undefined) throw new Error(`${dataDir}: no agent ${name}`);
      const row = db
        .prepare(
          'SELECT count(*) AS batches, min(seq) AS minSeq, max(seq) AS maxSeq, coalesce(sum(results), 0) AS results FROM batches WHERE agent_key = ? AND seq <= ?',
        )
        .get(agent.key, upTo) as CountRow;
      const rows = db
        .prepare(
          "SELECT count(*) AS n, count(DISTINCT seq || '/' || idx) AS d FROM results WHERE agent_key = ? AND seq <= ?",
        )
        .get(agent.key, upTo) as { n: number; d: number };
      // Probes the batches' summaries count (each probe once, in its period's summary).
      const bodies = db
        .prepare(
          'SELECT summaries_json, body, body_gzip FROM batches WHERE agent_key = ? AND seq <= ?',
        )
        .all(agent.key, upTo) as Parameters<typeof storedSummaries>[0][];
      const probes = bodies.flatMap((x) => storedSummaries(x)).reduce((n, x) => n + x.count, 0);
      out.set(name, {
        ...row,
        resultRows: rows.n,
        distinctResults: rows.d,
        summaryProbes: probes,
        droppedBatches: agent.dropped,
      });
    }
    return out;
  } finally {
    db.close();
  }
}

/** Batches of `agent` made during [fromMs, toMs] and received only after `afterMs`. */
function lateBatches(
  dataDir: string,
  agent: string,
  fromMs: number,
  toMs: number,
  afterMs: number,
) {
  const db = new Database(join(dataDir, 'faultline.db'), { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare(
        'SELECT count(*) FROM batches b JOIN agents a ON a.agent_key = b.agent_key WHERE a.name = ? AND b.created_at_ms BETWEEN ? AND ? AND b.received_at_ms > ?',
      )
      .pluck()
      .get(agent, fromMs, toMs, afterMs) as number;
  } finally {
    db.close();
  }
}

/** The highest seq an agent has spooled (its state dir's next-seq, minus one). */
function spooledSeq(lab: Lab, agent: string): number {
  return Number(readFileSync(join(lab.dir, `agent-${agent}`, 'spool', 'next-seq'), 'utf8')) - 1;
}

/** Each collector's acknowledged seq, from the agent's spool cursors. */
function cursorSeqs(lab: Lab, agent: string): number[] {
  const text = readFileSync(join(lab.dir, `agent-${agent}`, 'spool', 'cursors.json'), 'utf8');
  return Object.values(JSON.parse(text) as Record<string, number>);
}

describe.runIf(canRunLab && canRunAlertmanager)(
  'lab: two collectors in two failure domains',
  () => {
    let lab: Lab | undefined;
    let am: TestAlertmanager | undefined;
    let recorder: AlertRecorder | undefined;
    const agents = haLab.hosts.map((h) => h.name);

    beforeAll(async () => {
      ensureBuilt();
      lab = await Lab.up(haLab, {
        cliPath,
        extraCollectorYaml: async (l) => {
          am = await startAlertmanager();
          recorder = await recordAlertsTo(am, l.managementAddress);
          // The same for both collectors: the same labels, so one fault is one alert.
          return [
            'alerts:',
            `  labels: { lab: ${l.prefix} }`,
            '  sinks:',
            `    - { type: alertmanager, urls: [${recorder.url}] }`,
          ].join('\n');
        },
      });
      await waitBothHealthy(lab, 90_000);
    }, 150_000);
    afterAll(async () => {
      console.info(`lab detection times (ha.test.ts):\n${detectionReport()}`);
      await lab?.down();
      await recorder?.stop();
      await am?.stop();
    });

    it("a cut of collector b's zone: a pages the real cause, b its own isolation, one alert each; every result reaches both, once", async () => {
      const l = lab!;
      const alertmanager = am!;
      const { a, b } = haCollectors(l);
      const ours = async (): Promise<GettableAlert[]> =>
        (await alertmanager.alerts()).filter((x) => x.labels.lab === l.prefix);
      await pollUntil(
        'no alert of this lab in Alertmanager',
        async () => (await ours()).length === 0,
        {
          timeoutMs: 45_000,
          intervalMs: 250,
        },
      );

      const fault = cutUplink(l, 'sw-b', 'sw-db');
      const startMs = Date.now();
      await fault.inject();
      let endMs = 0;
      let active: GettableAlert[] = [];
      try {
        const answers = await watchHaAnswers(l, startMs, 30_000, 'b');
        const [da, db] = await Promise.all([diagnosisAt(l, a), diagnosisAt(l, b)]);
        expect(answers.a.realCauseMs, `collector a: ${diagnosisLine(da)}`).toBeDefined();
        expect(answers.b.cutOffMs, `collector b: ${diagnosisLine(db)}`).toBeDefined();
        // Collector b cannot see the far side: it never names the partition as if it could,
        // and collector a never thinks itself cut off.
        expect(answers.b.realCauseMs, diagnosisLine(db)).toBeUndefined();
        expect(answers.a.cutOffMs, diagnosisLine(da)).toBeUndefined();
        detections.push(
          {
            fault: 'zone b cut: the real cause (collector a)',
            detectionMs: answers.a.realCauseMs!,
            diagnosis: da,
          },
          {
            fault: 'zone b cut: "I am cut off" (collector b)',
            detectionMs: answers.b.cutOffMs!,
            diagnosis: db,
          },
        );
        // Alertmanager: one alert for the real cause, one for collector b's isolation.
        active = await pollUntil(
          'the real cause and the cut-off alert, active in Alertmanager',
          async () => {
            const list = (await ours()).filter((x) => x.status.state === 'active');
            const real = list.filter((x) => x.labels.alertname === 'FaultlineNetworkPartition');
            const cut = list.filter((x) => x.labels.alertname === 'FaultlineCollectorCutOff');
            return real.length >= 1 && cut.length >= 1 ? list : undefined;
          },
          { timeoutMs: 30_000, intervalMs: 100 },
        );
        detections.push({
          fault: 'zone b cut: both alerts in Alertmanager',
          detectionMs: Date.now() - startMs,
          diagnosis: da,
        });
        // The cut lasts a while longer: nothing else may turn up meanwhile, and the spools fill.
        await new Promise((r) => setTimeout(r, 5000));
        // Then Alertmanager shows exactly two: one per cause. (A change of severity resolves
        // the old label set as it fires the new one: let Alertmanager take both in.)
        active = await pollUntil(
          'exactly one alert per cause in Alertmanager',
          async () => {
            const list = (await ours()).filter((x) => x.status.state === 'active');
            const names = list.map((x) => x.labels.alertname).sort();
            if (
              names.join() === 'FaultlineCollectorCutOff,FaultlineNetworkPartition' &&
              list.length === 2
            )
              return list;
            throw new Error(list.map((x) => JSON.stringify(x.labels)).join('\n'));
          },
          { timeoutMs: 5000, intervalMs: 200 },
        );
      } finally {
        await fault.heal();
        endMs = Date.now();
      }
      const labelsOf = (x: { labels: Record<string, string> }): string =>
        JSON.stringify(Object.entries(x.labels).sort(([p], [q]) => p.localeCompare(q)));
      const real = active.filter((x) => x.labels.alertname === 'FaultlineNetworkPartition');
      const cut = active.filter((x) => x.labels.alertname === 'FaultlineCollectorCutOff');
      expect(real.map(labelsOf), active.map(labelsOf).join('\n')).toHaveLength(1);
      expect(cut.map(labelsOf), active.map(labelsOf).join('\n')).toHaveLength(1);
      expect(active, active.map(labelsOf).join('\n')).toHaveLength(2);
      expect(real[0]!.labels).toMatchObject({
        kind: 'network_partition',
        component: haZoneB.join(','),
      });
      expect(real[0]!.labels.collector).toBeUndefined();
      expect(cut[0]!.labels).toMatchObject({ collector: 'ctl-b', component: haZoneB.join(',') });
      // Everything either collector sent from the injection to the heal: these two causes
      // only (firing or resolved, however briefly; at any severity) — no wrong cause.
      const sent = recorder!.received.filter((x) => x.atMs >= startMs && x.atMs <= endMs);
      const cause = (x: { labels: Record<string, string> }): string => {
        const { severity: _s, ...rest } = x.labels;
        return labelsOf({ labels: rest });
      };
      const allowed = new Set([cause(real[0]!), cause(cut[0]!)]);
      const wrong = sent.filter((x) => !allowed.has(cause(x)));
      expect(wrong.map((x) => `${labelsOf(x)}: ${x.annotations.summary}`)).toEqual([]);
      // Healed: both collectors healthy again, the alerts resolved.
      await waitBothHealthy(l, 60_000, 2000);
      await pollUntil('the alerts of the cut resolved', async () => (await ours()).length === 0, {
        timeoutMs: 45_000,
        intervalMs: 250,
      });

      // The count: the batches each agent made up to now reach both collectors.
      const upTo = new Map(agents.map((n) => [n, spooledSeq(l, n)]));
      await pollUntil(
        'every agent: both collectors acknowledged every batch made so far',
        () => {
          const behind = agents.filter((n) => {
            const seqs = cursorSeqs(l, n);
            return seqs.length !== 2 || seqs.some((s) => s < upTo.get(n)!);
          });
          if (behind.length > 0)
            throw new Error(
              `behind: ${behind.map((n) => `${n} ${JSON.stringify(cursorSeqs(l, n))} < ${upTo.get(n)}`).join(', ')}`,
            );
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
      // The stores are held exclusively by the running collectors: read them after a clean stop.
      await l.collector?.stop();
      await l.secondCollector?.stop();
      const atA = storeCounts(join(l.dir, 'data'), upTo);
      const atB = storeCounts(join(l.dir, 'data-2'), upTo);
      for (const name of agents) {
        const n = upTo.get(name)!;
        const x = atA.get(name)!;
        const y = atB.get(name)!;
        const what = `${name}: a ${JSON.stringify(x)}, b ${JSON.stringify(y)}`;
        for (const s of [x, y]) {
          // Every batch the agent made, once, without a gap or a drop declared.
          expect(s, what).toMatchObject({ batches: n, minSeq: 1, maxSeq: n, droppedBatches: 0 });
          // Every result once: as many rows as the batches say, no (seq, index) twice.
          expect(s.resultRows, what).toBe(s.results);
          expect(s.distinctResults, what).toBe(s.resultRows);
        }
        // Produced = stored, in each: the same batches, the same results and probe counts.
        expect(y.results, what).toBe(x.results);
        expect(y.summaryProbes, what).toBe(x.summaryProbes);
        expect(x.summaryProbes, what).toBeGreaterThan(0);
      }
      // The cut really held batches back: zone b's agents reached collector a only after the
      // heal, the other zones' agents collector b.
      for (const [name, dir] of [
        ['app-2', 'data'],
        ['db-1', 'data-2'],
        ['app-1', 'data-2'],
      ] as const) {
        expect(
          lateBatches(join(l.dir, dir), name, startMs + 2000, endMs - 1000, endMs - 500),
          `${name} → ${dir}`,
        ).toBeGreaterThanOrEqual(2);
      }
    }, 240_000);
  },
);
