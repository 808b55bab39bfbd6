import { afterAll, describe, expect, it } from 'vitest';
import {
  alertKey,
  alertMatches,
  alertmanagerEvents,
  firings,
  startWebhookLog,
  type AlertEvent,
} from './alert-log.js';

const ev = (atMs: number, firing: boolean, labels: Record<string, string>): AlertEvent => ({
  atMs,
  firing,
  labels,
});

describe('the detection bench alert log', () => {
  const down = { alertname: 'FaultlineServiceDown', kind: 'service_down', component: 'db-1' };

  it('counts a firing once until it resolves; re-sends and a severity change are the same page', () => {
    const out = firings([
      ev(1, true, { ...down, severity: 'warning' }),
      ev(2, true, { ...down, severity: 'critical' }),
      ev(3, false, { ...down, severity: 'critical' }),
      ev(4, true, { ...down, severity: 'critical' }),
    ]);
    expect(out.map((e) => e.atMs)).toEqual([1, 4]);
    expect(alertKey({ ...down, severity: 'x' })).toBe(alertKey(down));
  });

  it('matches kind, components in any order and the collector cut', () => {
    expect(alertMatches(down, { kind: 'service_down', components: ['db-1'] })).toBe(true);
    expect(alertMatches(down, { kind: 'service_down', components: ['db-2'] })).toBe(false);
    expect(alertMatches(down, { kind: 'path_blocked', components: ['db-1'] })).toBe(false);
    const part = {
      alertname: 'FaultlineNetworkPartition',
      kind: 'network_partition',
      component: 'db-2,db-1',
    };
    expect(alertMatches(part, { kind: 'network_partition', components: ['db-1', 'db-2'] })).toBe(
      true,
    );
    expect(
      alertMatches(part, {
        kind: 'network_partition',
        components: ['db-1', 'db-2'],
        collectorCutOff: true,
      }),
    ).toBe(false);
    expect(
      alertMatches(
        { ...part, alertname: 'FaultlineCollectorCutOff', component: 'ctl-1' },
        { kind: 'network_partition', components: ['ctl-1'], collectorCutOff: true },
      ),
    ).toBe(true);
  });

  it('reads an Alertmanager post whose endsAt has passed as a resolve', () => {
    const at = Date.parse('2026-01-01T00:00:10Z');
    const es = alertmanagerEvents([
      { atMs: at, labels: down, annotations: {}, startsAt: '', endsAt: '2026-01-01T00:04:10Z' },
      { atMs: at, labels: down, annotations: {}, startsAt: '', endsAt: '2026-01-01T00:00:10Z' },
    ]);
    expect(es.map((e) => e.firing)).toEqual([true, false]);
  });

  let stop: (() => Promise<void>) | undefined;
  afterAll(async () => {
    await stop?.();
  });

  it('records what a webhook sink posts', async () => {
    const log = await startWebhookLog('127.0.0.1');
    stop = () => log.stop();
    const res = await fetch(log.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        alerts: [
          { status: 'firing', labels: down },
          { status: 'resolved', labels: down },
        ],
      }),
    });
    expect(res.status).toBe(200);
    await fetch(log.url, { method: 'POST', body: 'not json' });
    expect(log.events.map((e) => e.firing)).toEqual([true, false]);
    expect(log.badBodies).toBe(1);
  });
});
