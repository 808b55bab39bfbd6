import { afterAll, describe, expect, it } from 'vitest';
import type { Diagnosis } from '../../../wire/diagnosis.js';
import { demoLab, demoLabPaths } from '../../../cli/demo.js';
import {
  canRunAlertmanager,
  recordAlertsTo,
  startAlertmanager,
  type AlertRecorder,
  type GettableAlert,
  type TestAlertmanager,
} from '../../../lab/alertmanager.js';
import {
  detections,
  faultCycle,
  labDiagnosis,
  labPaths,
  waitDiagnosisHealthy,
  watchDiagnosis,
  diagnosisLine,
  type ExpectedHypothesis,
} from '../../../lab/expect.js';
import { collectorCut } from '../../../lab/faults.js';
import type { Lab } from '../../../lab/lab.js';
import { canRunLab, type LabSpec } from '../../../lab/spec.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { useLab } from './use-lab.js';

/**
 * The collector is an observer inside the network: here it runs on ctl-1, a host on sw-1
 * beside the front (the demo's lab), and the fault is its own host's switch port moved to the
 * wrong VLAN. Its local agent (when it has one) then reaches nothing and every other agent
 * falls silent at once; the test process and Alertmanager still reach it over ctl-1's
 * management link. The diagnosis must say that the collector's side is cut off, and blame
 * nothing on the far side it can no longer see — with a local agent and without one.
 */

const collectorSide = ['ctl-1'];
const farSide = demoLab.hosts.map((h) => h.name).filter((n) => !collectorSide.includes(n));

const cutOff: ExpectedHypothesis = {
  kind: 'network_partition',
  collectorCutOff: true,
  components: collectorSide,
  summaryStartsWith: "the collector's side is cut off",
};

/** Throws at a hypothesis that blames a host on the far side of the collector's cut. */
function blamesNoFarHost(d: Diagnosis): void {
  const blame = d.hypotheses.find((h) => h.components.some((c) => !collectorSide.includes(c)));
  if (blame !== undefined) throw new Error(farBlame(blame, d));
}

function farBlame(h: Diagnosis['hypotheses'][number], d: Diagnosis): string {
  const far = h.components.filter((c) => !collectorSide.includes(c));
  return `a hypothesis blames the far side (${far.join(', ')}): ${h.kind}: ${h.summary} — ${diagnosisLine(d)}`;
}

/**
 * Throws at a settled diagnosis with a hypothesis that blames a host on the far side of the
 * collector's cut. While the cut is still arriving (`settling`: the far agents stop
 * reporting one by one, the local agent's paths fail one by one) the document is provisional
 * and alerts wait for it — the Alertmanager test below holds every alert to the same rule —
 * but not for longer than alerts wait (alerts.settleMax, 1.7 s here).
 */
function settledBlamesNoFarHost(): (d: Diagnosis) => void {
  let provisionalSinceMs: number | undefined;
  return (d) => {
    const blame = d.hypotheses.find((h) => h.components.some((c) => !collectorSide.includes(c)));
    if (blame === undefined) {
      provisionalSinceMs = undefined;
      return;
    }
    const what = farBlame(blame, d);
    if (d.settling !== true) throw new Error(what);
    provisionalSinceMs ??= Date.now();
    if (Date.now() - provisionalSinceMs > 1700) throw new Error(`${what} (settling > 1.7 s)`);
  };
}

/** The network really is cut the way the issue describes (run with the fault in place). */
async function expectCollectorCutOff(l: Lab): Promise<void> {
  const ctl = l.host('ctl-1');
  // ctl-1 reaches nothing on the lab's switches, and no agent reaches the collector there…
  await expect(l.exec(ctl, 'ping', ['-c', '1', '-W', '1', l.host('app-1').ip])).rejects.toThrow();
  await expect(
    l.exec('app-1', 'curl', ['-sf', '-m', '2', `${l.agentCollectorUrl}/healthz`]),
  ).rejects.toThrow();
  // …while the far side still reaches itself,
  await l.exec('app-1', 'ping', ['-c', '1', '-W', '1', l.host('db-1').ip]);
  // and the test process the collector, over the management link only.
  const res = await fetch(`${l.collectorUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
  expect(res.status).toBe(200);
}

/** The lab with ctl-1's agent left out: the collector alone on its host. */
const noLocalAgent: LabSpec = {
  ...demoLab,
  hosts: demoLab.hosts.map((h) => (h.name === 'ctl-1' ? { ...h, agent: false } : h)),
};

describe.runIf(canRunLab)('lab: the collector cut off, with its local agent (ctl-1)', () => {
  let am: TestAlertmanager | undefined;
  let recorder: AlertRecorder | undefined;
  const theLab = useLab(demoLab, demoLabPaths, 'observer.test.ts', {
    // Alertmanager's recording front listens on the management link's root end: the
    // collector reaches it there also while its switch port is cut off. No holdFor (the
    // default): whatever the diagnosis says, it pages.
    extraCollectorYaml: async (lab) => {
      if (!canRunAlertmanager) return '';
      am = await startAlertmanager();
      recorder = await recordAlertsTo(am, lab.managementAddress);
      return [
        'alerts:',
        // Each test cuts the collector off again within the minute: an alert resolved in the
        // test before must fire again at once, not after the flap control's 30 s.
        '  refireHoldFor: 0s',
        `  labels: { lab: ${lab.prefix} }`,
        '  sinks:',
        `    - { type: alertmanager, urls: [${recorder.url}] }`,
      ].join('\n');
    },
  });
  afterAll(async () => {
    await recorder?.stop();
    await am?.stop();
  });

  it("its host's port in the wrong VLAN is the collector's side cut off; nothing on the far side blamed", async () => {
    const l = theLab();
    const { diagnosis } = await faultCycle(l, collectorCut(l, 'vlan-99'), cutOff, {
      // From the injection on, never a far-side host as the settled culprit.
      observe: settledBlamesNoFarHost(),
      whileInjected: async () => {
        await expectCollectorCutOff(l);
        // The local agent's view: every path to the far side fails at the network layer.
        const mine = await pollUntil(
          "ctl-1's 20 paths failing",
          async () => {
            const paths = await labPaths(l, '?agent=ctl-1');
            return paths.length === 20 && paths.every((p) => p.state === 'failing')
              ? paths
              : undefined;
          },
          { timeoutMs: 10_000, intervalMs: 200 },
        );
        for (const p of mine) {
          expect(['icmp_timeout', 'icmp_unreachable', 'tcp_timeout', 'tcp_unreachable']).toContain(
            p.lastClass,
          );
        }
        // The answer holds while the cut lasts, and still blames nothing on the far side.
        await watchDiagnosis(l, 5000, (d) => {
          blamesNoFarHost(d);
          expect(d.hypotheses[0]?.collectorCutOff, diagnosisLine(d)).toBe(true);
        });
      },
    });
    const top = diagnosis.hypotheses[0]!;
    // The collector's side first; the far side, if named, only as the other group.
    expect(top.groups[0]?.members, top.summary).toEqual(collectorSide);
    for (const g of top.groups.slice(1)) {
      expect(
        g.members.every((m) => farSide.includes(m)),
        top.summary,
      ).toBe(true);
    }
  }, 120_000);

  it.runIf(canRunAlertmanager)(
    "the real collector through its own cut: Alertmanager hears the collector's side is cut off, and no alert blames the far side",
    async () => {
      const l = theLab();
      const alertmanager = am!;
      const sent = recorder!.received;
      const ours = async (): Promise<GettableAlert[]> =>
        (await alertmanager.alerts()).filter((a) => a.labels.lab === l.prefix);
      await waitDiagnosisHealthy(l, 45_000, 1000);
      await pollUntil(
        'no alert of this lab in Alertmanager',
        async () => (await ours()).length === 0,
        { timeoutMs: 45_000, intervalMs: 250 },
      );
      const fault = collectorCut(l, 'vlan-99');
      const startMs = Date.now();
      await fault.inject();
      let endMs = 0;
      let cutAlert: GettableAlert;
      try {
        // Alertmanager itself holds the alert, active.
        cutAlert = await pollUntil(
          'the alert that the collector is cut off, active in Alertmanager',
          async () =>
            (await ours()).find(
              (a) =>
                a.labels.alertname === 'FaultlineCollectorCutOff' && a.status.state === 'active',
            ),
          { timeoutMs: 30_000, intervalMs: 100 },
        );
        detections.push({
          fault: `${fault.name} (Alertmanager)`,
          detectionMs: Date.now() - startMs,
          diagnosis: await labDiagnosis(l),
        });
        // The cut lasts a while longer: nothing else may turn up meanwhile.
        await new Promise((r) => setTimeout(r, 5000));
      } finally {
        await fault.heal();
        endMs = Date.now();
      }
      expect(cutAlert.labels).toMatchObject({ kind: 'network_partition', component: 'ctl-1' });
      expect(cutAlert.annotations.summary).toMatch(/^The collector's side is cut off/);
      // Everything Alertmanager was sent from the injection to the heal (firing or resolved,
      // however briefly): no alert names a host on the far side — no database, no service, no
      // host down, no silent agent.
      const during = sent.filter((a) => a.atMs >= startMs && a.atMs <= endMs);
      expect(during.length).toBeGreaterThan(0);
      for (const a of during) {
        const named = (a.labels.component ?? '').split(',').filter((c) => c !== '');
        expect(
          named.filter((c) => !collectorSide.includes(c)),
          `${a.labels.alertname}: ${a.annotations.summary}`,
        ).toEqual([]);
      }
      // Healed: healthy again, and the alert resolved in Alertmanager.
      await waitDiagnosisHealthy(l);
      await pollUntil('the alerts of the cut resolved', async () => (await ours()).length === 0, {
        timeoutMs: 30_000,
        intervalMs: 250,
      });
    },
    150_000,
  );
});

describe.runIf(canRunLab)('lab: the collector cut off, alone on its host (no local agent)', () => {
  const theLab = useLab(noLocalAgent, demoLabPaths - 20, 'observer.test.ts (no local agent)');

  it("its host's port in the wrong VLAN is still the collector's side cut off, nothing on the far side blamed", async () => {
    const l = theLab();
    await faultCycle(l, collectorCut(l, 'vlan-99'), cutOff, {
      observe: settledBlamesNoFarHost(),
      whileInjected: async () => {
        await expectCollectorCutOff(l);
        await watchDiagnosis(l, 5000, (d) => {
          blamesNoFarHost(d);
          expect(d.hypotheses[0]?.collectorCutOff, diagnosisLine(d)).toBe(true);
        });
      },
    });
  }, 120_000);
});
