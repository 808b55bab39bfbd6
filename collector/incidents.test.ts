import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import { DiagnosisSchema } from '../wire/diagnosis.js';
import { IncidentTracker, incidentDetail } from './incidents.js';
import type { Transition } from './paths/checkpoint.js';
import { humanDuration, postmortem } from './postmortem.js';
import { Store } from './store.js';

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function openStore(dir?: string): Store {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'faultline-incidents-'));
  if (dir === undefined) dirs.push(d);
  const s = Store.open(d);
  stores.push(s);
  return s;
}

const t0 = 1_700_000_000_000;

function partition(over: Partial<Hypothesis> = {}): Hypothesis {
  return {
    kind: 'network_partition',
    confidence: 0.9,
    summary:
      'Network partition: db-1, db-2 are cut off from app-1, app-2; the cut lies at switch=sw-2.',
    components: ['db-1', 'db-2'],
    groups: [
      { name: 'switch=sw-1', members: ['app-1', 'app-2'] },
      { name: 'switch=sw-2', members: ['db-1', 'db-2'] },
    ],
    cutLabel: { key: 'switch', values: ['sw-2'] },
    evidence: {
      counts: { tcp_timeout: 8, icmp_timeout: 4 },
      examples: ['app-1 → db-1/postgres/tcp: tcp_timeout', 'app-2 → db-2/icmp: icmp_timeout'],
    },
    since: t0,
    ...over,
  };
}

function serviceDown(): Hypothesis {
  return {
    kind: 'service_down',
    confidence: 0.8,
    summary: 'postgres on db-1 is down: its host answers, the port refuses connections.',
    components: ['db-1'],
    groups: [],
    evidence: { counts: { tcp_refused: 2 }, examples: ['app-1 → db-1/postgres/tcp: tcp_refused'] },
    since: t0 + 30_000,
  };
}

function diagnosis(atMs: number, hypotheses: Hypothesis[]): Diagnosis {
  return DiagnosisSchema.parse({
    healthy: hypotheses.length === 0,
    hypotheses,
    ruledOut:
      hypotheses.length === 0
        ? []
        : [
            {
              component: 'db-1',
              canBeRuledOut: false,
              reason:
                'db-1: cannot be ruled out — no reporting agent is on its side of the cut; but every failure toward it is a network-layer timeout',
            },
          ],
    computedAtMs: atMs,
  });
}

describe('IncidentTracker', () => {
  it('opens an incident when the diagnosis turns unhealthy, records changes, closes it on health', () => {
    const store = openStore();
    const tracker = new IncidentTracker(store);
    expect(tracker.update(diagnosis(t0 - 5000, []))).toBeUndefined();
    expect(store.incidents()).toEqual([]);

    expect(tracker.update(diagnosis(t0 + 4000, [partition()]))).toEqual({
      incidentId: 1,
      type: 'opened',
    });
    // The same hypothesis with new counts and confidence is no news.
    const sameAgain = partition({
      confidence: 0.95,
      evidence: { counts: { tcp_timeout: 9 }, examples: [] },
    });
    expect(tracker.update(diagnosis(t0 + 5000, [sameAgain]))).toBeUndefined();
    // A second hypothesis beside the leading one.
    expect(tracker.update(diagnosis(t0 + 31_000, [partition(), serviceDown()]))).toEqual({
      incidentId: 1,
      type: 'hypotheses_changed',
    });
    // The leading one changes.
    expect(tracker.update(diagnosis(t0 + 60_000, [serviceDown()]))).toEqual({
      incidentId: 1,
      type: 'leading_changed',
    });
    expect(tracker.current()).toMatchObject({ id: 1, kind: 'service_down' });
    expect(tracker.update(diagnosis(t0 + 90_000, []))).toEqual({
      incidentId: 1,
      type: 'recovered',
    });
    expect(tracker.current()).toBeUndefined();

    const detail = incidentDetail(store, 1)!;
    expect(detail).toMatchObject({
      id: 1,
      firstFailureMs: t0,
      openedAtMs: t0 + 4000,
      closedAtMs: t0 + 90_000,
      kind: 'service_down',
      components: ['db-1', 'db-2'],
    });
    expect(detail.events.map((e) => [e.type, e.atMs])).toEqual([
      ['opened', t0 + 4000],
      ['hypotheses_changed', t0 + 31_000],
      ['leading_changed', t0 + 60_000],
      ['recovered', t0 + 90_000],
    ]);
    // Each event carries the evidence snapshot of its moment.
    expect((detail.events[0]!.diagnosis as Diagnosis).hypotheses[0]!.evidence.counts).toEqual({
      tcp_timeout: 8,
      icmp_timeout: 4,
    });
    // The root cause hint is the leading hypothesis that held longest (the partition led
    // for 56 s, service_down for the last 30 s), not simply the last one.
    expect(postmortem(detail, [], t0 + 100_000)).toContain(
      '## Root cause hint\n\n`network_partition` (cut at switch=sw-2)',
    );
    // A new fault after recovery is a new incident.
    expect(tracker.update(diagnosis(t0 + 200_000, [serviceDown()]))).toMatchObject({
      incidentId: 2,
      type: 'opened',
    });
    expect(store.incidents().map((i) => i.id)).toEqual([2, 1]);
  });

  it('names as root cause the leader of the most failing path-seconds, not an aftermath that explains no failure', () => {
    const store = openStore();
    const tracker = new IncidentTracker(store);
    const silent: Hypothesis = {
      kind: 'agent_silent',
      confidence: 0.9,
      summary: 'agent db-1 stopped reporting while db-1 still answers 3 other agents',
      components: ['db-1'],
      groups: [],
      evidence: { counts: { ok: 12 }, examples: [] },
      since: t0 + 6000,
    };
    tracker.update(diagnosis(t0 + 1000, [partition()]));
    // The cut healed after 3 s; the agents behind it stay silent 4 s more, explaining nothing.
    tracker.update(diagnosis(t0 + 4000, [silent]));
    tracker.update(diagnosis(t0 + 8000, []));
    const md = postmortem(incidentDetail(store, 1)!, [], t0 + 9000);
    expect(md).toContain('## Root cause hint\n\n`network_partition`');
  });

  it('continues the open incident after a restart instead of opening a second one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-incidents-'));
    dirs.push(dir);
    const first = openStore(dir);
    new IncidentTracker(first).update(diagnosis(t0 + 4000, [partition()]));
    first.close();
    stores.splice(stores.indexOf(first), 1);

    const store = openStore(dir);
    const tracker = new IncidentTracker(store);
    expect(tracker.current()?.id).toBe(1);
    // The same fault seen again after the restart records nothing new.
    expect(tracker.update(diagnosis(t0 + 9000, [partition()]))).toBeUndefined();
    expect(tracker.update(diagnosis(t0 + 20_000, []))).toEqual({
      incidentId: 1,
      type: 'recovered',
    });
    expect(store.incidents()).toHaveLength(1);
  });
});

describe('postmortem', () => {
  it('writes the classic shape from the record: summary, timeline, both sides of the cut, ruled out', () => {
    const store = openStore();
    const tracker = new IncidentTracker(store);
    tracker.update(diagnosis(t0 + 4000, [partition()]));
    tracker.update(diagnosis(t0 + 125_000, []));
    const transition = (agent: string, target: string, atMs: number, toClass: string): Transition =>
      ({
        agentId: `${agent}-id`,
        agent,
        target,
        kind: 'tcp',
        fromClass: 'ok',
        toClass,
        fromState: 'ok',
        toState: 'failing',
        atMs,
        resultSeq: 1,
        batchSeq: 1,
      }) as Transition;
    const transitions = [
      transition('app-1', 'db-1/postgres/tcp', t0, 'tcp_timeout'),
      transition('app-1', 'db-2/postgres/tcp', t0 + 1000, 'tcp_timeout'),
      // The other side's view, delivered from its spool after the heal.
      transition('db-1', 'app-1/http/tcp', t0 + 500, 'tcp_timeout'),
      {
        ...transition('db-1', '', t0 + 3000, 'tcp_timeout'),
        kind: 'agent',
        fromState: 'live',
        toState: 'silent',
      },
      // Long before the incident: not part of it.
      transition('app-2', 'db-1/icmp', t0 - 3_600_000, 'icmp_timeout'),
    ];
    // db-2 (db-1's side of the cut) probes db-1; so does app-1, across the cut.
    const viewers = new Map([['db-1', ['app-1', 'db-2']]]);
    const md = postmortem(
      incidentDetail(store, 1)!,
      transitions,
      t0 + 200_000,
      'http://c:7800/',
      viewers,
    );
    expect(md).toMatch(/^# Postmortem \(draft\): incident 1 — Network partition/);
    expect(md).toContain('- **Status:** resolved at 2023-11-14 22:15:25Z');
    expect(md).toContain('- **Duration:** 2 min 5 s');
    expect(md).toContain('- **Detected:** 2023-11-14 22:13:24Z, 4 s after the first failed probe');
    expect(md).toContain('**Impact at the peak:** 12 failing paths');
    expect(md).toMatch(/## Timeline \(UTC\)\n\n- 2023-11-14 22:13:20Z — first failed probe/);
    expect(md).toContain('— **detected**: `network_partition` (cut at switch=sw-2)');
    expect(md).toContain('— **recovered**');
    expect(md).toContain('| app-1 | 2 | 2023-11-14 22:13:20Z | tcp_timeout | no |');
    expect(md).toContain('| db-1 | 1 | 2023-11-14 22:13:20Z | tcp_timeout | yes |');
    expect(md).not.toContain('| app-2 |');
    expect(md).toContain('- **db-1** — cannot be ruled out:');
    // The spool of db-2 showed db-1 fine from its own side: ruled out after the fact.
    expect(md).toContain(
      'Since the recovery:\n- **db-1** — ruled out in hindsight: db-2, on its side of the cut, reached it without a failure throughout',
    );
    // Had db-2 failed toward db-1 too, nothing would be ruled out.
    const md2 = postmortem(
      incidentDetail(store, 1)!,
      [...transitions, transition('db-2', 'db-1/postgres/tcp', t0 + 800, 'tcp_refused')],
      t0 + 200_000,
      undefined,
      viewers,
    );
    expect(md2).not.toContain('ruled out in hindsight');
    expect(md).toContain('## Corrective measures');
    expect(md).toContain('Incident record: http://c:7800/api/v1/incidents/1');
  });

  it('says how long, readably', () => {
    expect(humanDuration(45_000)).toBe('45 s');
    expect(humanDuration(200_000)).toBe('3 min 20 s');
    expect(humanDuration(3_720_000)).toBe('1 h 2 min');
  });
});

describe('Store outbox (pending deliveries of sinks)', () => {
  it('keeps a delivery until delivered or dead, across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'faultline-outbox-'));
    dirs.push(dir);
    const first = openStore(dir);
    const a = first.outboxAdd('am', { alerts: [1] }, t0);
    const b = first.outboxAdd('am', { alerts: [2] }, t0 + 1);
    first.outboxAdd('hook', { x: 1 }, t0 + 2);
    first.outboxRetry(a, t0 + 5000, 'ECONNREFUSED');
    first.close();
    stores.splice(stores.indexOf(first), 1);

    const store = openStore(dir);
    expect(store.outboxPending('am')).toEqual([
      {
        id: a,
        sink: 'am',
        createdAtMs: t0,
        attempts: 1,
        nextAttemptMs: t0 + 5000,
        payload: { alerts: [1] },
        lastError: 'ECONNREFUSED',
      },
      {
        id: b,
        sink: 'am',
        createdAtMs: t0 + 1,
        attempts: 0,
        nextAttemptMs: t0 + 1,
        payload: { alerts: [2] },
      },
    ]);
    store.outboxDelivered(b);
    store.outboxDead(a, t0 + 60_000, 'HTTP 400: bad alert');
    expect(store.outboxPending('am')).toEqual([]);
    expect(store.deadLetters()).toMatchObject([
      { id: a, sink: 'am', attempts: 2, deadAtMs: t0 + 60_000, lastError: 'HTTP 400: bad alert' },
    ]);
    expect(store.outboxPending('hook')).toHaveLength(1);
  });
});

describe('IncidentTracker and a settling diagnosis (issue 14)', () => {
  it('records nothing while settling: the incident opens with the settled cause, dated from the first failure', () => {
    const store = openStore();
    const tracker = new IncidentTracker(store);
    const first = t0 + 1_000;
    const blocked: Hypothesis = {
      ...serviceDown(),
      kind: 'path_blocked',
      summary: 'app-1 cannot reach postgres on db-1; others can',
      since: first,
    };
    const settlingDoc = (atMs: number, h: Hypothesis): Diagnosis => ({
      ...diagnosis(atMs, [h]),
      settling: true,
      settlingSinceMs: first,
    });
    expect(tracker.update(settlingDoc(first + 500, blocked))).toBeUndefined();
    expect(tracker.update(settlingDoc(first + 700, { ...serviceDown(), since: first }))).toBe(
      undefined,
    );
    expect(store.incidents()).toEqual([]);
    expect(
      tracker.update({
        ...diagnosis(first + 1_000, [{ ...serviceDown(), since: first }]),
        settling: false,
      }),
    ).toEqual({ incidentId: 1, type: 'opened' });
    expect(tracker.current()).toMatchObject({
      kind: 'service_down',
      firstFailureMs: first,
      openedAtMs: first + 1_000,
    });
    const events = incidentDetail(store, 1)!.events;
    expect(events.map((e) => e.type)).toEqual(['opened']);
    // While an incident is open a settling document changes nothing either; recovery is
    // never settling and closes it.
    expect(tracker.update(settlingDoc(first + 5_000, blocked))).toBeUndefined();
    expect(tracker.update({ ...diagnosis(first + 9_000, []), settling: false })).toEqual({
      incidentId: 1,
      type: 'recovered',
    });
  });

  it('records a settling diagnosis an alert fired from (evenSettling), once', () => {
    const store = openStore();
    const tracker = new IncidentTracker(store);
    const first = t0 + 1_000;
    const doc: Diagnosis = {
      ...diagnosis(first + 1_700, [{ ...serviceDown(), since: first }]),
      settling: true,
      settlingSinceMs: first,
    };
    expect(tracker.update(doc)).toBeUndefined();
    expect(tracker.update(doc, { evenSettling: true })).toEqual({ incidentId: 1, type: 'opened' });
    expect(tracker.update({ ...doc, settling: false })).toBeUndefined();
    expect(incidentDetail(store, 1)!.events.map((e) => e.type)).toEqual(['opened']);
  });
});

describe('IncidentTracker: what a change is', () => {
  it('a partition found to cut the collector itself off is a change (its alert is another)', () => {
    const store = openStore();
    const tracker = new IncidentTracker(store);
    const cut = partition();
    expect(tracker.update(diagnosis(t0 + 1_000, [cut]))).toEqual({ incidentId: 1, type: 'opened' });
    expect(tracker.update(diagnosis(t0 + 2_000, [{ ...cut, confidence: 0.5 }]))).toBeUndefined();
    expect(tracker.update(diagnosis(t0 + 3_000, [{ ...cut, collectorCutOff: true }]))).toEqual({
      incidentId: 1,
      type: 'leading_changed',
    });
  });
});
