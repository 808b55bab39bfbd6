import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import { alertName, alertSeverity, labelsFingerprint } from './alert-build.js';
import type { AlertContext } from './alert-build.js';
import { AlertEngine, endsAtResends, flapMemoryMs, latePollMs } from './alerts.js';
import type { AlertsConfig } from './config.js';
import type { AlertBatch, AlertNotice, DeliveryTarget, SendOutcome } from './sinks/types.js';
import { meterText } from '../test/helpers/meter-text.js';

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-alerts-'));
  tempDirs.push(dir);
  return dir;
}

function hypothesis(over: Partial<Hypothesis> = {}): Hypothesis {
  return {
    kind: 'network_partition',
    confidence: 0.9,
    summary: 'network partition between {app-1} and {db-1, db-2}, all behind switch sw-2',
    components: ['db-2', 'db-1'],
    groups: [{ members: ['app-1'] }, { name: 'switch=sw-2', members: ['db-1', 'db-2'] }],
    cutLabel: { key: 'switch', values: ['sw-2'] },
    evidence: {
      counts: { tcp_timeout: 4, icmp_timeout: 2 },
      examples: ['app-1 → db-1/icmp: icmp_timeout'],
    },
    since: 1_000,
    ...over,
  };
}

function diagnosis(...hypotheses: Hypothesis[]): Diagnosis {
  return {
    healthy: hypotheses.length === 0,
    hypotheses,
    ruledOut: [],
    computedAtMs: 0,
  };
}

const faulty = diagnosis(hypothesis());
const healthy = diagnosis();
const ctx: AlertContext = {
  roles: { 'app-1': 'api', 'db-1': 'database', 'db-2': 'database', 'web-1': 'web', 'x-1': 'other' },
  totalPaths: 100,
};

const config: AlertsConfig = {
  holdForMs: 10_000,
  refireHoldForMs: 30_000,
  settleMaxMs: 1_000,
  healTailHoldMs: 5_000,
  lossHoldForMs: 0,
  lossTailHoldMs: 0,
  lateHoldMaxMs: 0,
  resendEveryMs: 60_000,
  labels: {},
  sinks: [],
};

/** A target that records what it is given and accepts it. */
function recorder(mode: 'state' | 'notify'): DeliveryTarget & { got: AlertNotice[][] } {
  const got: AlertNotice[][] = [];
  return {
    name: mode,
    type: mode,
    mode,
    got,
    encode: (alerts: readonly AlertNotice[], _batch: AlertBatch) => JSON.stringify(alerts),
    send: async (body: string): Promise<SendOutcome> => {
      got.push(JSON.parse(body) as AlertNotice[]);
      return { status: 'success' };
    },
  };
}

const engines: AlertEngine[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close(100);
});

function setup(cfg: Partial<AlertsConfig> = {}) {
  const state = recorder('state');
  const notify = recorder('notify');
  const engine = new AlertEngine({
    config: { ...config, ...cfg },
    dataDir: tempDir(),
    targets: [state, notify],
    tickMs: 0,
  });
  engines.push(engine);
  /** What each target got since the last call, flattened, as `status:severity`. */
  const drain = async (): Promise<{ state: AlertNotice[]; notify: AlertNotice[] }> => {
    await engine.idle();
    return { state: state.got.splice(0).flat(), notify: notify.got.splice(0).flat() };
  };
  return { engine, drain };
}

const statuses = (alerts: readonly AlertNotice[]): string[] =>
  alerts.map((a) => `${a.status}:${a.labels.severity}`);

describe('labels', () => {
  it('are the same for the same hypothesis on any collector, and name kind, components, cut and severity', async () => {
    const { engine } = setup({ holdForMs: 0, labels: { cluster: 'prod' } });
    engine.update(faulty, 5_000, ctx);
    const [view] = engine.alerts();
    expect(view?.labels).toEqual({
      cluster: 'prod',
      alertname: 'FaultlineNetworkPartition',
      kind: 'network_partition',
      component: 'db-1,db-2',
      cut_switch: 'sw-2',
      severity: 'critical',
    });
    expect(view?.fingerprint).toBe(labelsFingerprint({ ...view?.labels }));
    // Key order does not matter; any value does.
    expect(labelsFingerprint({ b: '1', a: '2' })).toBe(labelsFingerprint({ a: '2', b: '1' }));
    expect(labelsFingerprint({ a: '1' })).not.toBe(labelsFingerprint({ a: '2' }));
    expect(alertName('service_unresponsive')).toBe('FaultlineServiceUnresponsive');
  });

  it("page the collector's own cut as that, never as the far side", async () => {
    const { engine } = setup({ holdForMs: 0 });
    const cut = hypothesis({
      summary: "the collector's side is cut off: {ctl-1} — its agent ctl-1 reaches nothing",
      components: ['ctl-1'],
      groups: [
        { name: 'collector side', members: ['ctl-1'] },
        { name: 'far side (unseen)', members: ['db-1', 'db-2'] },
      ],
      cutLabel: undefined,
      collectorCutOff: true,
      evidence: { counts: { icmp_timeout: 2 }, examples: [] },
    });
    engine.update(diagnosis(cut), 5_000, { ...ctx, roles: { ...ctx.roles, 'ctl-1': 'other' } });
    const [view] = engine.alerts();
    expect(view?.labels).toMatchObject({
      alertname: 'FaultlineCollectorCutOff',
      kind: 'network_partition',
      component: 'ctl-1',
      severity: 'critical',
    });
  });

  it('two collectors (HA): the same labels for the same fault; each its own cut-off alert, named', async () => {
    const a = setup({ holdForMs: 0, labels: { cluster: 'prod' } }).engine;
    const b = setup({ holdForMs: 0, labels: { cluster: 'prod' } }).engine;
    a.update(faulty, 5_000, { ...ctx, collector: 'ctl-a' });
    b.update(faulty, 5_000, { ...ctx, collector: 'ctl-b' });
    // The real cause: one alert in Alertmanager (same labels, same fingerprint).
    expect(a.alerts()[0]?.labels).toEqual(b.alerts()[0]?.labels);
    expect(a.alerts()[0]?.labels.collector).toBeUndefined();
    expect(a.alerts()[0]?.fingerprint).toBe(b.alerts()[0]?.fingerprint);
    // Both cut off (say on one switch): two alerts, each naming its collector.
    const cut = hypothesis({
      components: ['ctl-1'],
      groups: [],
      cutLabel: undefined,
      collectorCutOff: true,
      evidence: { counts: { icmp_timeout: 2 }, examples: [] },
    });
    const cutA = setup({ holdForMs: 0 }).engine;
    const cutB = setup({ holdForMs: 0 }).engine;
    cutA.update(diagnosis(cut), 5_000, { ...ctx, collector: 'ctl-a' });
    cutB.update(diagnosis(cut), 5_000, { ...ctx, collector: 'ctl-b' });
    expect(cutA.alerts()[0]?.labels).toMatchObject({
      alertname: 'FaultlineCollectorCutOff',
      collector: 'ctl-a',
    });
    expect(cutB.alerts()[0]?.labels.collector).toBe('ctl-b');
    expect(cutA.alerts()[0]?.fingerprint).not.toBe(cutB.alerts()[0]?.fingerprint);
  });

  const severityCases: { what: string; h: Partial<Hypothesis>; severity: string }[] = [
    { what: 'a database among the components', h: {}, severity: 'critical' },
    { what: 'an api host, few paths', h: { components: ['app-1'] }, severity: 'warning' },
    { what: 'a role without weight, few paths', h: { components: ['x-1'] }, severity: 'info' },
    {
      what: 'a role without weight, 10% of paths',
      h: { components: ['x-1'], evidence: { counts: { tcp_timeout: 10, ok: 50 }, examples: [] } },
      severity: 'warning',
    },
    {
      what: 'any role, half the paths',
      h: { components: ['x-1'], evidence: { counts: { tcp_timeout: 50 }, examples: [] } },
      severity: 'critical',
    },
    {
      what: 'a silent agent, even on a database host',
      h: { kind: 'agent_silent' as const, components: ['db-1'] },
      severity: 'warning',
    },
    { what: 'an unknown component', h: { components: ['nobody'] }, severity: 'info' },
  ];
  it.each(severityCases)('severity: $what → $severity', ({ h, severity }) => {
    expect(alertSeverity(hypothesis(h), ctx)).toBe(severity);
  });

  it('puts the hint first, and the evidence, ruled-out list, runbook and links in the annotations', async () => {
    const { engine } = setup({
      holdForMs: 0,
      externalUrl: 'https://faultline.example.com/base/',
      runbookUrl: 'https://wiki.example.com/{alertname}?kind={kind}',
    });
    const d: Diagnosis = {
      ...faulty,
      ruledOut: [
        { component: 'db-1', canBeRuledOut: true, reason: 'db-1: postgres answers on its side' },
        {
          component: 'app-1',
          canBeRuledOut: false,
          reason: 'app-1: cannot be ruled out — no agent',
        },
      ],
    };
    engine.update(d, 5_000, { ...ctx, incidentOf: () => ({ id: '7' }) });
    const [view] = engine.alerts();
    const a = view?.annotations ?? {};
    expect(a.summary).toBe(
      'Network partition between {app-1} and {db-1, db-2}, all behind switch sw-2 — ruled out: db-1',
    );
    expect(a.description?.split('\n')).toEqual([
      'Most likely (confidence 90%): network partition between {app-1} and {db-1, db-2}, all behind switch sw-2.',
      'Since 1970-01-01T00:00:01.000Z.',
      'Cut: switch sw-2.',
      'Groups: {app-1}; switch=sw-2 {db-1, db-2}.',
      'Evidence: 6 failing paths of 100 (6%): tcp_timeout 4, icmp_timeout 2.',
      '  e.g. app-1 → db-1/icmp: icmp_timeout',
      'Ruled out:',
      '  - db-1: postgres answers on its side',
      'Cannot be ruled out:',
      '  - app-1: cannot be ruled out — no agent',
    ]);
    expect(a.ruled_out).toBe('db-1');
    expect(a.runbook_url).toBe(
      'https://wiki.example.com/FaultlineNetworkPartition?kind=network_partition',
    );
    expect(a.incident_id).toBe('7');
  });

  it('names the five best-ranked other hypotheses and counts the rest', async () => {
    const { engine } = setup({ holdForMs: 0 });
    const hs = Array.from({ length: 8 }, (_, i) =>
      hypothesis({
        kind: 'service_down',
        summary: `postgres down on db-${i}`,
        components: [`db-${i}`],
        groups: [],
        cutLabel: undefined,
        confidence: 0.9 - i / 100,
      }),
    );
    engine.update(diagnosis(...hs), 5_000, ctx);
    const first = engine.alerts().find((v) => v.labels.component === 'db-0');
    expect(first?.annotations.description?.split('\n').at(-1)).toBe(
      'Other hypotheses: service_down (db-1, 89%); service_down (db-2, 88%); service_down (db-3, 87%); service_down (db-4, 86%); service_down (db-5, 85%); and 2 more (GET /api/v1/diagnosis).',
    );
  });
});

describe('one page per fault', () => {
  it('a hypothesis naming a component a better-ranked one pages for is listed, not paged; alone, it pages', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    const partition = hypothesis({
      kind: 'network_partition',
      summary: 'network partition between {app-1, web-1} and {db-1, db-2}',
      components: ['db-1', 'db-2'],
      groups: [],
      cutLabel: undefined,
      confidence: 0.9,
    });
    const blocked = hypothesis({
      kind: 'path_blocked',
      summary: 'paths from {app-1} to {db-1} are blocked',
      components: ['db-1'],
      groups: [],
      cutLabel: undefined,
      confidence: 0.6,
    });
    const mtu = hypothesis({
      kind: 'mtu_mismatch',
      summary: 'full-size packets vanish at web-1',
      components: ['web-1'],
      groups: [],
      cutLabel: undefined,
      confidence: 0.5,
    });
    engine.update(diagnosis(partition, blocked, mtu), 5_000, ctx);
    const first = await drain();
    expect(first.notify.map((a) => a.labels.kind)).toEqual(['network_partition', 'mtu_mismatch']);
    expect(
      engine.alerts().find((a) => a.labels.kind === 'network_partition')?.annotations.description,
    ).toContain('Other hypotheses: path_blocked (db-1, 60%)');
    // The partition heals, the blocked path stays: now it stands alone, and pages (at once:
    // it speaks of as many failing paths as the partition did, so it is not the heal's tail).
    engine.update(diagnosis(blocked, mtu), 6_000, ctx);
    const second = await drain();
    expect(statuses(second.notify).sort()).toEqual(['firing:critical', 'resolved:critical']);
    expect(second.notify.map((a) => a.labels.kind).sort()).toEqual([
      'network_partition',
      'path_blocked',
    ]);
  });
});

describe('flap control (injected clock)', () => {
  it('fires only once the hypothesis held for holdFor; a gap starts the wait again', async () => {
    const { engine, drain } = setup();
    engine.update(faulty, 0, ctx);
    engine.tick(9_999);
    expect((await drain()).state).toEqual([]);
    expect(engine.alerts().map((a) => a.phase)).toEqual(['pending']);
    // Gone for one diagnosis: the hold starts over.
    engine.update(healthy, 9_999, ctx);
    engine.update(faulty, 10_000, ctx);
    engine.tick(19_999);
    expect((await drain()).state).toEqual([]);
    engine.tick(20_000);
    const got = await drain();
    expect(statuses(got.state)).toEqual(['firing:critical']);
    expect(statuses(got.notify)).toEqual(['firing:critical']);
    expect(got.state[0]?.endsAtMs).toBe(20_000 + endsAtResends * 60_000);
    // startsAt is when the fault began, the same on every collector.
    expect(got.state[0]?.startsAtMs).toBe(1_000);
  });

  it('re-sends a firing alert every resendEvery to Alertmanager only, with endsAt moving ahead', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    engine.update(faulty, 0, ctx);
    await drain();
    engine.tick(59_999);
    expect((await drain()).state).toEqual([]);
    engine.tick(60_000);
    const got = await drain();
    expect(got.state.map((a) => [a.status, a.endsAtMs])).toEqual([
      ['firing', 60_000 + endsAtResends * 60_000],
    ]);
    expect(got.notify).toEqual([]);
  });

  it('resolves with endsAt = now when the hypothesis disappears; one bad probe after that does not re-fire it', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    engine.update(faulty, 0, ctx);
    await drain();
    engine.update(healthy, 5_000, ctx);
    let got = await drain();
    expect(got.state.map((a) => [a.status, a.endsAtMs])).toEqual([['resolved', 5_000]]);
    expect(statuses(got.notify)).toEqual(['resolved:critical']);
    // A single bad probe: back for one diagnosis, gone at the next.
    engine.update(faulty, 6_000, ctx);
    engine.update(healthy, 7_000, ctx);
    expect(await drain()).toEqual({ state: [], notify: [] });
    // A fault that comes back for good fires again after refireHoldFor.
    engine.update(faulty, 8_000, ctx);
    engine.tick(37_999);
    expect((await drain()).state).toEqual([]);
    engine.tick(38_000);
    got = await drain();
    expect(statuses(got.notify)).toEqual(['firing:critical']);
    // An hour after the resolve it is a new fault: holdFor (0 here) alone applies.
    engine.update(healthy, 40_000, ctx);
    await drain();
    engine.update(
      diagnosis(hypothesis({ since: 40_000 + flapMemoryMs })),
      40_000 + flapMemoryMs,
      ctx,
    );
    expect(statuses((await drain()).notify)).toEqual(['firing:critical']);
  });

  it('a change of severity resolves the old label set and fires the new one, without a new hold', async () => {
    const { engine, drain } = setup({ holdForMs: 10_000 });
    const api = diagnosis(hypothesis({ components: ['app-1'], cutLabel: undefined }));
    engine.update(api, 0, ctx);
    engine.tick(10_000);
    expect(statuses((await drain()).notify)).toEqual(['firing:warning']);
    const worse = diagnosis(
      hypothesis({
        components: ['app-1'],
        cutLabel: undefined,
        evidence: { counts: { tcp_timeout: 60 }, examples: [] },
      }),
    );
    engine.update(worse, 11_000, ctx);
    const got = await drain();
    expect(statuses(got.notify)).toEqual(['resolved:warning', 'firing:critical']);
    expect(got.notify[0]?.fingerprint).not.toBe(got.notify[1]?.fingerprint);
  });

  it('sends a changed text to Alertmanager at once, without a notification', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    engine.update(faulty, 0, ctx);
    await drain();
    const more = diagnosis(
      hypothesis({ evidence: { counts: { tcp_timeout: 8, icmp_timeout: 4 }, examples: [] } }),
    );
    engine.update(more, 1_000, ctx);
    const got = await drain();
    expect(got.state).toHaveLength(1);
    expect(got.state[0]?.annotations.description).toContain('12 failing paths');
    expect(got.notify).toEqual([]);
  });

  it('close() resolves nothing: an HA peer keeps the alert, or it lapses at endsAt', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    engine.update(faulty, 0, ctx);
    await drain();
    await engine.close(100);
    engine.update(healthy, 1_000, ctx);
    expect(await drain()).toEqual({ state: [], notify: [] });
  });

  it('counts firing and pending alerts in its metrics', async () => {
    const { engine } = setup();
    engine.update(diagnosis(hypothesis(), hypothesis({ components: ['app-1'] })), 0, ctx);
    engine.tick(10_000);
    engine.update(
      diagnosis(
        hypothesis(),
        hypothesis({ components: ['app-1'] }),
        hypothesis({ components: ['web-1'] }),
      ),
      10_000,
      ctx,
    );
    await engine.idle();
    const metrics = meterText();
    engine.instrument(metrics.meter);
    const text = await metrics.render();
    expect(text).toContain('faultline_alerts_firing 2\n');
    expect(text).toContain('faultline_alerts_pending 1\n');
    expect(text).toContain('# TYPE faultline_alerts_sent_total counter');
    expect(text).toContain('faultline_alerts_sent_total{sink="state"} 2\n');
    expect(text).toContain('faultline_alerts_sent_total{sink="notify"} 1\n');
  });
});

describe('delivery', () => {
  it('a refused body (4xx) is dead-lettered at once with the reason; nothing is retried', async () => {
    const dataDir = tempDir();
    let calls = 0;
    const refusing: DeliveryTarget = {
      name: 'picky',
      type: 'webhook',
      mode: 'notify',
      encode: (alerts) => JSON.stringify({ alerts }),
      send: async () => {
        calls++;
        return { status: 'failure', reason: 'HTTP 400: bad body' };
      },
    };
    const engine = new AlertEngine({
      config: { ...config, holdForMs: 0 },
      dataDir,
      targets: [refusing],
      tickMs: 0,
    });
    engines.push(engine);
    engine.update(faulty, 0, ctx);
    await engine.idle();
    expect(calls).toBe(1);
    const [line] = readFileSync(join(dataDir, 'alerts-dead-letter.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(JSON.parse(line ?? '{}')).toMatchObject({
      sink: 'picky',
      reason: 'refused: HTTP 400: bad body',
      attempts: 1,
      body: { alerts: [{ status: 'firing' }] },
    });
    expect(engine.deliveryStats()[0]).toMatchObject({ failed: 1, retries: 0, deadLetters: 1 });
  });

  it('while Alertmanager is down, only the newest version of each alert waits; close() dead-letters what is left', async () => {
    const dataDir = tempDir();
    const bodies: string[] = [];
    const down: DeliveryTarget = {
      name: 'am',
      type: 'alertmanager',
      mode: 'state',
      encode: (alerts) => JSON.stringify(alerts.map((a) => [a.status, a.endsAtMs])),
      send: async (body, signal) => {
        bodies.push(body);
        // Down for good: answers only when the dispatcher stops.
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
        return { status: 'retryable', reason: 'request failed: ECONNREFUSED' };
      },
    };
    const engine = new AlertEngine({
      config: { ...config, holdForMs: 0 },
      dataDir,
      targets: [down],
      tickMs: 0,
    });
    engines.push(engine);
    engine.update(faulty, 0, ctx);
    for (let i = 1; i <= 5; i++) engine.tick(i * 60_000);
    expect(engine.deliveryStats()[0]?.queued).toBe(2);
    await engine.close(50);
    const letters = readFileSync(join(dataDir, 'alerts-dead-letter.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { reason: string; body: unknown });
    expect(letters.map((l) => l.reason)).toEqual([
      'collector stopped before delivery; last attempt: request failed: ECONNREFUSED',
      'collector stopped before delivery',
    ]);
    // Five re-sends waited as one: the newest.
    expect(letters[1]?.body).toEqual([['firing', 5 * 60_000 + endsAtResends * 60_000]]);
    expect(bodies).toHaveLength(1);
  });
});

describe('settling (issue 14)', () => {
  const blocked = hypothesis({
    kind: 'path_blocked',
    summary: 'app-1 cannot reach db-1 at TCP while others can',
    components: ['db-1'],
    groups: [{ members: ['app-1'] }],
    cutLabel: undefined,
    evidence: { counts: { tcp_refused: 1 }, examples: [] },
  });
  delete (blocked as { cutLabel?: unknown }).cutLabel;
  const down = hypothesis({
    kind: 'service_down',
    summary: 'postgres on db-1 refuses connections',
    components: ['db-1'],
    groups: [],
    evidence: { counts: { tcp_refused: 3 }, examples: [] },
  });
  delete (down as { cutLabel?: unknown }).cutLabel;
  /** A packet_loss hypothesis naming these hosts, `paths` of them degraded. */
  const loss = (components: string[], paths = 0): Hypothesis => {
    const h = hypothesis({
      kind: 'packet_loss',
      summary: `paths to and from ${components.join(', ')} lose packets`,
      components,
      groups: [{ members: components }],
      evidence: { counts: paths > 0 ? { degraded: paths, ok: 3 } : { ok: 3 }, examples: [] },
      since: 10_000,
    });
    delete (h as { cutLabel?: unknown }).cutLabel;
    return h;
  };
  const settling = (sinceMs: number, ...hs: Hypothesis[]): Diagnosis => ({
    ...diagnosis(...hs),
    settling: true,
    settlingSinceMs: sinceMs,
  });
  const settled = (...hs: Hypothesis[]): Diagnosis => ({ ...diagnosis(...hs), settling: false });
  const names = (alerts: readonly AlertNotice[]): string[] =>
    alerts.map((a) => `${a.status}:${a.labels.alertname}`);

  it('the transient cause seen while settling is never sent; the settled one is, at once', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    engine.update(settling(10_000, blocked), 10_050, ctx);
    engine.tick(10_300);
    expect(engine.alerts().map((a) => a.phase)).toEqual(['pending']);
    engine.update(settling(10_000, down), 10_400, ctx);
    engine.tick(10_600);
    expect((await drain()).state).toEqual([]);
    engine.update(settled(down), 10_800, ctx);
    const got = await drain();
    expect(names(got.state)).toEqual(['firing:FaultlineServiceDown']);
    expect(names(got.notify)).toEqual(['firing:FaultlineServiceDown']);
    engine.tick(12_000);
    expect(names((await drain()).notify)).toEqual([]);
  });

  it('an alert that fires while the diagnosis still settles has it recorded first, and is sent again with its incident', async () => {
    const recorded: Diagnosis[] = [];
    const recording: AlertContext = {
      ...ctx,
      firingWhileSettling: (d) => recorded.push(d),
      incidentOf: () => (recorded.length > 0 ? { id: '7' } : undefined),
    };
    const { engine, drain } = setup({ holdForMs: 0, settleMaxMs: 1_000 });
    const still = settling(10_000, down);
    engine.update(still, 10_050, recording);
    engine.tick(10_900);
    expect(recorded).toEqual([]);
    // The wait runs out with the diagnosis still settling: it fires from that one.
    engine.tick(11_000);
    expect(recorded).toEqual([still]);
    const first = await drain();
    expect(names(first.notify)).toEqual(['firing:FaultlineServiceDown']);
    engine.tick(11_500);
    const again = (await drain()).state;
    expect(again.map((a) => a.annotations.incident_id)).toEqual(['7']);
    expect(recorded).toHaveLength(1);
    // A settled diagnosis firing needs no record from the engine.
    const calm = setup({ holdForMs: 0 });
    calm.engine.update(settled(blocked), 20_000, recording);
    expect(names((await calm.drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
    expect(recorded).toHaveLength(1);
  });

  it('a fault whose paths come back before it was paged is healing: it holds healTailHold, and pages then only if it stays', async () => {
    const unreachable = (failing: number): Hypothesis => {
      const h = hypothesis({
        kind: 'host_unreachable',
        summary: 'db-2 does not answer at any layer',
        components: ['db-2'],
        groups: [],
        evidence: { counts: { icmp_timeout: failing }, examples: [] },
        since: 10_000,
      });
      delete (h as { cutLabel?: unknown }).cutLabel;
      return h;
    };
    let recovered: number | undefined;
    const healing: AlertContext = {
      ...ctx,
      recoveredAtMs: (h) => (h === 'db-2' ? recovered : undefined),
    };
    // db-2's link goes down a moment (a flapping link's first fall): the paths fall…
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settling(10_000, unreachable(6)), 10_100, healing);
    // …and come back while the diagnosis still settles: fewer paths, some back.
    recovered = 10_700;
    engine.update(settling(10_000, unreachable(3)), 10_800, healing);
    engine.update(settled(unreachable(3)), 11_200, healing);
    engine.tick(15_099);
    expect((await drain()).notify).toEqual([]);
    engine.update(settled(), 15_050, healing);
    engine.tick(20_000);
    expect((await drain()).notify).toEqual([]);
    // One that stays pages healTailHold after it appeared.
    recovered = undefined;
    const stays = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    stays.engine.update(settling(10_000, unreachable(6)), 10_100, healing);
    recovered = 10_700;
    stays.engine.update(settled(unreachable(3)), 10_800, healing);
    stays.engine.tick(15_099);
    expect((await stays.drain()).notify).toEqual([]);
    stays.engine.tick(15_100);
    expect(names((await stays.drain()).notify)).toEqual(['firing:FaultlineHostUnreachable']);
    // Fewer paths with none back (a cut host's agent falling late: its view no longer
    // counts) is no heal: it pages as soon as it settles.
    recovered = undefined;
    const cut = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    cut.engine.update(settling(10_000, unreachable(6)), 10_100, healing);
    cut.engine.update(settled(unreachable(3)), 10_800, healing);
    expect(names((await cut.drain()).notify)).toEqual(['firing:FaultlineHostUnreachable']);
  });

  it('a host that fell, came back and falls again within healTailHold is flapping: its network fault holds healTailHold, a fall with none back before pages at once', async () => {
    const unreachable = hypothesis({
      kind: 'host_unreachable',
      summary: 'db-2 does not answer at any layer',
      components: ['db-2'],
      groups: [],
      evidence: { counts: { icmp_timeout: 6 }, examples: [] },
      since: 20_000,
    });
    delete (unreachable as { cutLabel?: unknown }).cutLabel;
    // db-2's link went down a moment and its paths came back at 17 s (that fall paged
    // nothing); at 20 s it is down again.
    const flapping: AlertContext = {
      ...ctx,
      recoveredAtMs: (h) => (h === 'db-2' ? 17_000 : undefined),
    };
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settled(unreachable), 20_000, flapping);
    engine.tick(24_999);
    expect((await drain()).notify).toEqual([]);
    // The engine says what the pending alert waits for, and until when.
    expect(engine.alerts().map((a) => [a.phase, a.waitingFor])).toEqual([
      ['pending', [{ reason: 'fell again', untilMs: 25_000 }]],
    ]);
    // A link that died for good after its blip pages healTailHold later.
    engine.tick(25_000);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineHostUnreachable']);
    // Its paths came back longer ago than healTailHold, or never: at once.
    for (const recovered of [14_999, undefined]) {
      const other = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
      other.engine.update(settled(unreachable), 20_000, {
        ...ctx,
        recoveredAtMs: (h) => (h === 'db-2' ? recovered : undefined),
      });
      expect(names((await other.drain()).notify)).toEqual(['firing:FaultlineHostUnreachable']);
    }
    // Nor does a full-size echo lost at the fall of a flapping link read as a smaller MTU.
    const mtu = hypothesis({
      kind: 'mtu_mismatch',
      summary: 'full-size packets vanish on the path from db-2 to web-1',
      components: ['db-2', 'web-1'],
      groups: [],
      evidence: { counts: { icmp_timeout: 1 }, examples: [] },
    });
    delete (mtu as { cutLabel?: unknown }).cutLabel;
    const big = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    big.engine.update(settled(mtu), 20_000, flapping);
    expect((await big.drain()).notify).toEqual([]);
    // A service's fault is not a flap of the network: at once.
    const down = hypothesis({
      kind: 'service_down',
      summary: 'postgres on db-2 refuses connections',
      components: ['db-2'],
      groups: [],
      evidence: { counts: { tcp_refused: 3 }, examples: [] },
    });
    delete (down as { cutLabel?: unknown }).cutLabel;
    const svc = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    svc.engine.update(settled(down), 20_000, flapping);
    expect(names((await svc.drain()).notify)).toEqual(['firing:FaultlineServiceDown']);
  });

  it("the heal's tail also holds the same fault re-read as it resolves: a new reading on its hosts about its paths; one that was there before, or stays, pages", async () => {
    // The collector's side was cut off (its own host ctl-1): as the far side's spooled
    // reports arrive, its own agent's paths — not probed again yet — read as ctl-1's fault.
    const cut = hypothesis({
      kind: 'network_partition',
      components: ['ctl-1'],
      groups: [{ members: ['ctl-1'] }],
      evidence: { counts: { tcp_timeout: 10, icmp_timeout: 10 }, examples: [] },
      since: 1_000,
    });
    const own = hypothesis({
      kind: 'source_fault',
      summary: 'the problem is on ctl-1 itself',
      components: ['ctl-1'],
      groups: [{ members: ['ctl-1'] }],
      evidence: { counts: { tcp_timeout: 10, icmp_timeout: 10 }, examples: [] },
      since: 1_000,
    });
    for (const h of [cut, own]) delete (h as { cutLabel?: unknown }).cutLabel;
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settled(cut), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineNetworkPartition']);
    engine.update(settled(own), 20_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlineNetworkPartition']);
    engine.tick(24_999);
    expect((await drain()).notify).toEqual([]);
    // Its own agent probes again: healthy. Nothing was paged for the re-reading.
    engine.update(settled(), 21_500, ctx);
    engine.tick(30_000);
    expect((await drain()).notify).toEqual([]);
    // A re-reading that stays pages, healTailHold later.
    const stays = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    stays.engine.update(settled(cut), 10_000, ctx);
    stays.engine.update(settled(own), 20_000, ctx);
    stays.engine.tick(25_000);
    expect(names((await stays.drain()).notify)).toEqual([
      'firing:FaultlineNetworkPartition',
      'resolved:FaultlineNetworkPartition',
      'firing:FaultlineSourceFault',
    ]);
    // One that was in the diagnosis already, beside the fault, pages when it stands alone.
    const beside = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    beside.engine.update(settled(cut, own), 10_000, ctx);
    beside.engine.update(settled(own), 20_000, ctx);
    expect(names((await beside.drain()).notify)).toContain('firing:FaultlineSourceFault');
  });

  it("the heal's tail also holds what appears on the healed fault's hosts just after it (loss as paths come back unevenly); elsewhere, or later, it pages", async () => {
    const loss = (components: string[], since: number): Hypothesis => {
      const h = hypothesis({
        kind: 'packet_loss',
        summary: 'paths to and from db-2 lose packets',
        components,
        groups: [{ members: components }],
        evidence: { counts: { ok: 3 }, examples: [] },
        since,
      });
      delete (h as { cutLabel?: unknown }).cutLabel;
      return h;
    };
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settled(hypothesis({ since: 1_000 })), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineNetworkPartition']);
    engine.update(settled(), 20_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlineNetworkPartition']);
    // A second after the heal, loss on one of the partition's hosts: its tail, held.
    engine.update(settled(loss(['db-2'], 21_000)), 21_000, ctx);
    engine.tick(25_999);
    expect((await drain()).notify).toEqual([]);
    engine.update(settled(), 23_000, ctx);
    engine.tick(40_000);
    expect((await drain()).notify).toEqual([]);
    // The same on a host the partition did not name pages at once.
    const other = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    other.engine.update(settled(hypothesis({ since: 1_000 })), 10_000, ctx);
    other.engine.update(settled(), 20_000, ctx);
    await other.drain();
    other.engine.update(settled(loss(['web-1'], 21_000)), 21_000, ctx);
    expect(names((await other.drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
    // Loss that outlasts the hold pages, healTailHold after it appeared.
    const stays = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    stays.engine.update(settled(hypothesis({ since: 1_000 })), 10_000, ctx);
    stays.engine.update(settled(), 20_000, ctx);
    await stays.drain();
    stays.engine.update(settled(loss(['db-2'], 21_000)), 21_000, ctx);
    stays.engine.tick(25_999);
    expect((await stays.drain()).notify).toEqual([]);
    stays.engine.tick(26_000);
    expect(names((await stays.drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
    // With lossTailHold, loss at the heal's tail waits that long: the heal's own lost
    // probes (the first echoes after the link came up) stay in the paths' 30 s windows.
    const window = setup({ holdForMs: 0, healTailHoldMs: 5_000, lossTailHoldMs: 30_000 });
    window.engine.update(settled(hypothesis({ since: 1_000 })), 10_000, ctx);
    window.engine.update(settled(), 20_000, ctx);
    await window.drain();
    window.engine.update(settled(loss(['db-2'], 21_000)), 21_000, ctx);
    window.engine.tick(50_999);
    expect((await window.drain()).notify).toEqual([]);
    expect(window.engine.alerts().find((a) => a.phase === 'pending')?.waitingFor).toEqual([
      { reason: 'heal tail', untilMs: 51_000 },
    ]);
    window.engine.tick(51_000);
    expect(names((await window.drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
  });

  it("after the collector's own isolation heals, a far-side agent not heard yet is the heal's tail: it holds healTailHold", async () => {
    const cut = hypothesis({
      summary: "the collector's side is cut off: {ctl-1}",
      components: ['ctl-1'],
      groups: [{ name: 'collector side', members: ['ctl-1'] }],
      collectorCutOff: true,
      evidence: { counts: { icmp_timeout: 10, tcp_timeout: 10 }, examples: [] },
      since: 1_000,
    });
    delete (cut as { cutLabel?: unknown }).cutLabel;
    // app-1's report was in flight through the cut: it arrives after TCP's next retransmission.
    const silent = hypothesis({
      kind: 'agent_silent',
      summary: 'agent app-1 stopped reporting while app-1 still answers 5 other agents',
      components: ['app-1'],
      groups: [{ members: ['app-1'] }],
      evidence: { counts: { ok: 20 }, examples: [] },
      // Read as silent once the others were heard again, at the heal.
      since: 20_000,
    });
    delete (silent as { cutLabel?: unknown }).cutLabel;
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settled(cut), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineCollectorCutOff']);
    engine.update(settled(silent), 20_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlineCollectorCutOff']);
    engine.tick(24_999);
    expect((await drain()).notify).toEqual([]);
    engine.update(settled(), 22_000, ctx);
    engine.tick(30_000);
    expect((await drain()).notify).toEqual([]);
    // After another fault's heal, an agent silent on a host it did not name pages at once.
    const other = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    const partition = hypothesis({
      since: 1_000,
      groups: [{ members: ['web-1'] }, { name: 'switch=sw-2', members: ['db-1', 'db-2'] }],
    });
    other.engine.update(settled(partition), 10_000, ctx);
    await other.drain();
    other.engine.update(settled(silent), 20_000, ctx);
    expect(names((await other.drain()).notify).sort()).toEqual([
      'firing:FaultlineAgentSilent',
      'resolved:FaultlineNetworkPartition',
    ]);
  });

  it("the heal's tail (fewer paths, failing since before the alert resolved) holds healTailHold; a new fault, or one read anew with more paths, does not", async () => {
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settled(hypothesis({ since: 1_000 })), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineNetworkPartition']);
    // The cut heals; one source's paths, failing since the cut, recover last: for a moment
    // that reads as a filter on it.
    const tail = { ...blocked, since: 1_500 };
    engine.update(settled(tail), 20_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlineNetworkPartition']);
    engine.tick(24_999);
    expect((await drain()).notify).toEqual([]);
    engine.update(settled(), 25_500, ctx);
    engine.tick(40_000);
    expect((await drain()).notify).toEqual([]);
    // A fault that began after the heal pages at once…
    engine.update(settled({ ...down, since: 41_000 }), 41_500, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineServiceDown']);
    // …and one that outlasts the heal still pages, healTailHold later.
    const left = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    left.engine.update(settled(hypothesis({ since: 1_000 })), 10_000, ctx);
    await left.drain();
    left.engine.update(settled({ ...down, since: 2_000 }), 20_000, ctx);
    left.engine.tick(24_999);
    expect(names((await left.drain()).notify)).toEqual(['resolved:FaultlineNetworkPartition']);
    left.engine.tick(25_000);
    expect(names((await left.drain()).notify)).toEqual(['firing:FaultlineServiceDown']);
    // A fault still arriving, its first reading paged and replaced by one of more paths
    // (a host's loss, then the partition of its switch): no hold.
    const arriving = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    const host = hypothesis({
      kind: 'host_unreachable',
      components: ['db-1'],
      cutLabel: undefined,
      evidence: { counts: { tcp_timeout: 2, icmp_timeout: 1 }, examples: [] },
      since: 1_000,
    });
    delete (host as { cutLabel?: unknown }).cutLabel;
    arriving.engine.update(settled(host), 3_000, ctx);
    await arriving.drain();
    arriving.engine.update(settled(hypothesis({ since: 1_000 })), 3_500, ctx);
    expect(names((await arriving.drain()).notify).sort()).toEqual([
      'firing:FaultlineNetworkPartition',
      'resolved:FaultlineHostUnreachable',
    ]);
  });

  it('waits at most settleMax from the start of the settling, then fires anyway', async () => {
    const { engine, drain } = setup({ holdForMs: 0, settleMaxMs: 1_000 });
    engine.update(settling(10_000, blocked), 10_200, ctx);
    engine.tick(10_999);
    expect((await drain()).notify).toEqual([]);
    engine.tick(11_000);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
  });

  it('holdFor still counts from when the hypothesis appeared; settleMax 0 does not wait', async () => {
    const held = setup({ holdForMs: 2_000 });
    held.engine.update(settling(10_000, down), 10_000, ctx);
    held.engine.update(settled(down), 10_500, ctx);
    held.engine.tick(11_999);
    expect((await held.drain()).notify).toEqual([]);
    held.engine.tick(12_000);
    expect(names((await held.drain()).notify)).toEqual(['firing:FaultlineServiceDown']);

    const eager = setup({ holdForMs: 0, settleMaxMs: 0 });
    eager.engine.update(settling(10_000, blocked), 10_000, ctx);
    expect(names((await eager.drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
  });

  it('a firing alert is not held by a later settling: its updates and resolve go out', async () => {
    const { engine, drain } = setup({ holdForMs: 0 });
    engine.update(settled(down), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineServiceDown']);
    engine.update(settling(20_000, { ...down, confidence: 0.5 }), 20_000, ctx);
    expect(names((await drain()).state)).toEqual(['firing:FaultlineServiceDown']);
    engine.update(settled(), 21_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlineServiceDown']);
  });

  it("a fall's tail: a blocked path on a host whose larger reading vanished unpaged holds healTailHold; after a smaller one, it pages at once", async () => {
    const unreachable = hypothesis({
      kind: 'host_unreachable',
      summary: 'db-1 does not answer at any layer',
      components: ['db-1'],
      groups: [],
      evidence: { counts: { icmp_timeout: 5, tcp_timeout: 5 }, examples: [] },
    });
    delete (unreachable as { cutLabel?: unknown }).cutLabel;
    // db-1's link falls for a moment: read as unreachable while settling, then it comes back
    // unevenly and app-1's paths, not yet back, read as a filter.
    const { engine, drain } = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    engine.update(settling(10_000, unreachable), 10_000, ctx);
    engine.update(settled(blocked), 11_000, ctx);
    engine.tick(15_999);
    expect((await drain()).notify).toEqual([]);
    engine.update(settled(), 12_000, ctx);
    engine.tick(20_000);
    expect((await drain()).notify).toEqual([]);
    // A filter that stays pages, healTailHold later.
    const stays = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    stays.engine.update(settling(10_000, unreachable), 10_000, ctx);
    stays.engine.update(settled(blocked), 11_000, ctx);
    stays.engine.tick(16_000);
    expect(names((await stays.drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
    // After a smaller reading (the fault arriving: one path first), no hold.
    const grows = setup({ holdForMs: 0, healTailHoldMs: 5_000 });
    const one = { ...blocked, components: ['db-1'], evidence: { counts: {}, examples: [] } };
    grows.engine.update(settling(10_000, { ...one, kind: 'service_down' as const }), 10_000, ctx);
    grows.engine.update(settled(blocked), 10_500, ctx);
    expect(names((await grows.drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
  });

  it('packet_loss holds lossHoldFor with the same hosts: the first reading (one lossy pair) narrowing to the host never pages', async () => {
    const { engine, drain } = setup({ holdForMs: 0, lossHoldForMs: 3_000 });
    engine.update(settled(loss(['app-2', 'db-2'])), 10_000, ctx);
    engine.tick(12_000);
    expect((await drain()).notify).toEqual([]);
    // The host's second partner shows: the reading narrows to db-2, its hold starts anew.
    engine.update(settled(loss(['db-2'])), 12_500, ctx);
    engine.tick(15_499);
    expect((await drain()).notify).toEqual([]);
    engine.tick(15_500);
    const got = await drain();
    expect(names(got.notify)).toEqual(['firing:FaultlinePacketLoss']);
    expect(got.notify[0]?.labels.component).toBe('db-2');
    // Other kinds do not wait for it.
    const other = setup({ holdForMs: 0, lossHoldForMs: 3_000 });
    other.engine.update(settled(down), 10_000, ctx);
    expect(names((await other.drain()).notify)).toEqual(['firing:FaultlineServiceDown']);
  });

  it('a loss paged and healed: a narrower loss on its hosts is its tail and waits lossTailHold from the resolve; one that stays pages then, one as large as before or elsewhere at once', async () => {
    const { engine, drain } = setup({ holdForMs: 0, lossTailHoldMs: 30_000 });
    engine.update(settled(loss(['db-2'], 6)), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
    // The loss heals: the host's reading goes; one pair's window still holds its samples.
    engine.update(settled(loss(['db-2', 'web-1'], 1)), 40_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlinePacketLoss']);
    engine.tick(69_999);
    expect((await drain()).notify).toEqual([]);
    // Still there when the healed loss's samples have aged out: a loss of its own, paged.
    engine.tick(70_000);
    const got = await drain();
    expect(names(got.notify)).toEqual(['firing:FaultlinePacketLoss']);
    expect(got.notify[0]?.labels.component).toBe('db-2,web-1');
    // A loss on other hosts is no tail: it pages at once.
    engine.update(settled(loss(['db-2', 'web-1'], 1), loss(['app-1'], 1)), 70_500, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
    // Nor is a loss back on the healed hosts as large as before (a link that flaps now).
    const back = setup({ holdForMs: 0, lossTailHoldMs: 30_000 });
    back.engine.update(settled(loss(['db-2'], 6)), 10_000, ctx);
    back.engine.update(settled(), 20_000, ctx);
    expect(names((await back.drain()).notify)).toEqual([
      'firing:FaultlinePacketLoss',
      'resolved:FaultlinePacketLoss',
    ]);
    back.engine.update(settled(loss(['db-2', 'app-2'], 6)), 25_000, ctx);
    expect(names((await back.drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
  });

  it('a loss whose tail ages out to a pair and back to its host is compared with the loss at its largest: no page', async () => {
    // No re-fire hold: the tail's own wait is what holds.
    const { engine, drain } = setup({ holdForMs: 0, refireHoldForMs: 0, lossTailHoldMs: 30_000 });
    engine.update(settled(loss(['db-2'], 6)), 10_000, ctx);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlinePacketLoss']);
    // Healed at 12 s: the host's reading stays while its samples age out, fewer and fewer.
    engine.update(settled(loss(['db-2'], 4)), 20_000, ctx);
    engine.update(settled(loss(['db-2'], 2)), 30_000, ctx);
    // One pair left for a moment: the host's alert resolves…
    engine.update(settled(loss(['app-1', 'db-2'], 1)), 34_000, ctx);
    expect(names((await drain()).notify)).toEqual(['resolved:FaultlinePacketLoss']);
    // …and the host is read again from two pairs' samples, as many as at the resolve: the
    // same loss's tail, not a loss back as large as it was.
    engine.update(settled(loss(['db-2'], 2)), 35_000, ctx);
    engine.tick(40_000);
    expect((await drain()).notify).toEqual([]);
    engine.update(settled(), 41_000, ctx);
    engine.tick(70_000);
    expect((await drain()).notify).toEqual([]);
  });

  it('path_blocked waits while a host it names has a late agent, at most lateHoldMax; its report arriving ends the wait', async () => {
    const late = new Set<string>(['db-1']);
    const lateCtx: AlertContext = { ...ctx, lateHosts: () => late };
    const { engine, drain } = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    engine.update(settled(blocked), 10_000, lateCtx);
    engine.tick(13_999);
    expect((await drain()).notify).toEqual([]);
    // The bound: a late agent that stays late does not hold it for ever.
    engine.tick(14_000);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
    // Its agent reports (no longer late): the wait ends at the next look.
    const again = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    const late2 = new Set<string>(['app-1']);
    again.engine.update(settled(blocked), 10_000, { ...ctx, lateHosts: () => late2 });
    again.engine.tick(11_000);
    expect((await again.drain()).notify).toEqual([]);
    late2.clear();
    again.engine.tick(11_250);
    expect(names((await again.drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
    // No late agent on its hosts, or another kind: no wait.
    const none = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    none.engine.update(settled(blocked), 10_000, { ...ctx, lateHosts: () => new Set(['web-1']) });
    expect(names((await none.drain()).notify)).toEqual(['firing:FaultlinePathBlocked']);
    const kind = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    kind.engine.update(settled(down), 10_000, { ...ctx, lateHosts: () => new Set(['db-1']) });
    expect(names((await kind.drain()).notify)).toEqual(['firing:FaultlineServiceDown']);
  });

  it('a service_unresponsive alert whose answers timed out waits for a late agent of its hosts too; one whose answers were wrong does not', async () => {
    // 30 % loss on db-1's link: one source's queries lose their answers and read as a hung
    // service for a moment, while db-1's own reports are overdue on the same link.
    const hung = hypothesis({
      kind: 'service_unresponsive',
      summary:
        'postgres on db-1 is hung: it accepts connections but never answers (from 1 of 4 agents)',
      components: ['db-1'],
      groups: [{ name: 'sources', members: ['app-1'] }],
      evidence: { counts: { protocol_timeout: 1 }, examples: [] },
    });
    delete (hung as { cutLabel?: unknown }).cutLabel;
    const late = new Set<string>(['db-1']);
    const lateCtx: AlertContext = { ...ctx, lateHosts: () => late };
    const { engine, drain } = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    engine.update(settled(hung), 10_000, lateCtx);
    engine.tick(13_999);
    expect((await drain()).notify).toEqual([]);
    expect(engine.alerts()[0]?.waitingFor).toEqual([
      { reason: 'late agent', untilMs: 14_000, wakeMs: 13_999 + latePollMs },
    ]);
    engine.tick(14_000);
    expect(names((await drain()).notify)).toEqual(['firing:FaultlineServiceUnresponsive']);
    // A service that answers wrongly said so itself: no loss made that up, no wait.
    const wrong = hypothesis({
      ...hung,
      summary: 'http on db-1 is unhealthy: it accepts connections but answers wrongly',
      evidence: { counts: { http_status: 1 }, examples: [] },
    });
    const w = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    w.engine.update(settled(wrong), 10_000, lateCtx);
    expect(names((await w.drain()).notify)).toEqual(['firing:FaultlineServiceUnresponsive']);
    // No late agent on its hosts: a hung service pages at once.
    const none = setup({ holdForMs: 0, lateHoldMaxMs: 4_000 });
    none.engine.update(settled(hung), 10_000, { ...ctx, lateHosts: () => new Set(['web-1']) });
    expect(names((await none.drain()).notify)).toEqual(['firing:FaultlineServiceUnresponsive']);
  });

  it('a self-ticking engine fires at the settle bound without another diagnosis', async () => {
    const state = recorder('state');
    const engine = new AlertEngine({
      config: { ...config, holdForMs: 0, settleMaxMs: 300 },
      dataDir: tempDir(),
      targets: [state],
      tickMs: 60_000,
    });
    engines.push(engine);
    const now = Date.now();
    engine.update(settling(now, blocked), now, ctx);
    await engine.idle();
    expect(state.got.flat()).toEqual([]);
    const deadline = Date.now() + 5_000;
    while (state.got.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(names(state.got.flat())).toEqual(['firing:FaultlinePathBlocked']);
    expect(Date.now() - now).toBeGreaterThanOrEqual(290);
  });
});
