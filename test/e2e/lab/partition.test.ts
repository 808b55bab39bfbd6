import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { Diagnosis, Hypothesis } from '../../../wire/diagnosis.js';
import { pollUntil } from '../../../lab/poll-until.js';
import { cutUplink, hostLinkDown, wrongVlan, type Fault } from '../../../lab/faults.js';
import { faultCycle, labPaths, pathHealthy } from '../../../lab/expect.js';
import { useLab } from './use-lab.js';
import { canRunLab, type LabSpec } from '../../../lab/spec.js';

/**
 * The founding incident in the lab: the front (two app hosts and a web host) on switch
 * sw-app with the collector, the databases on sw-db, one cable between the switches, and a
 * spare switch vlan-99 standing for the wrong VLAN. Real PostgreSQL on both database hosts,
 * the HTTP app on the front, an agent on every host.
 */
const spec: LabSpec = {
  switches: [
    { name: 'sw-app', zone: 'front' },
    { name: 'sw-db', zone: 'data' },
    { name: 'vlan-99' },
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
const front = ['app-1', 'app-2', 'web-1'];
const data = ['db-1', 'db-2'];
// Every agent probes the 4 other hosts at 3 layers and with a full-size echo (mtu).
const pathCount = 5 * 4 * 4;
const networkClasses = [
  'icmp_timeout',
  'icmp_unreachable',
  'tcp_timeout',
  'tcp_unreachable',
  'protocol_timeout',
  'http_timeout',
];
const serviceKinds: Hypothesis['kind'][] = ['service_down', 'service_unresponsive'];

/** The fields of an incident this file reads (GET /api/v1/incidents). */
interface IncidentLike {
  readonly id: number;
  readonly openedAtMs: number;
  readonly closedAtMs?: number;
}

/** A fault that notes when it was injected and healed. */
function timed(fault: Fault): Fault & { startMs: number; endMs: number } {
  const t = { ...fault, startMs: 0, endMs: 0 };
  t.inject = async () => {
    t.startMs = Date.now();
    await fault.inject();
  };
  t.heal = async () => {
    await fault.heal();
    t.endMs = Date.now();
  };
  return t;
}

describe.runIf(canRunLab)('lab: partitions', () => {
  let vlan: ReturnType<typeof timed> | undefined;
  const theLab = useLab(spec, pathCount, 'partition.test.ts');

  it('the founding incident: database switch ports in the wrong VLAN is a network partition, the database not blamed', async () => {
    const l = theLab();
    vlan = timed(wrongVlan(l, data, 'vlan-99'));
    const { diagnosis } = await faultCycle(
      l,
      vlan,
      { kind: 'network_partition', groups: [front, data] },
      {
        whileInjected: async () => {
          // The real effect: front → data fails at the network layer, both ways.
          const cut = await pollUntil(
            'front → data paths failing',
            async () => {
              const paths = (await labPaths(l)).filter(
                (p) => front.includes(p.agent) && data.includes(p.component),
              );
              return paths.length === 3 * 2 * 4 && paths.every((p) => p.state === 'failing')
                ? paths
                : undefined;
            },
            { timeoutMs: 10_000, intervalMs: 200 },
          );
          for (const p of cut)
            expect(networkClasses, `${p.agent} → ${p.target}`).toContain(p.lastClass);
          // db-1 still reaches db-2 (the same wrong VLAN), not app-1.
          await l.exec('db-1', 'ping', ['-c', '1', '-W', '1', l.host('db-2').ip]);
          await expect(
            l.exec('db-1', 'ping', ['-c', '1', '-W', '1', l.host('app-1').ip]),
          ).rejects.toThrow();
          // The cut lasts 6 s at least: the last test reads what db-1 spooled through it
          // (a batch every report interval), and detection no longer takes that long.
          const leftMs = vlan!.startMs + 6000 - Date.now();
          if (leftMs > 0) await new Promise((r) => setTimeout(r, leftMs));
        },
      },
    );
    const top = diagnosis.hypotheses[0]!;
    expect(top.cutLabel?.key, top.summary).toMatch(/^(switch|zone)$/);
    expect(top.cutLabel?.values).toEqual([top.cutLabel?.key === 'switch' ? 'sw-db' : 'data']);
    // Nothing says the database is the fault: every hypothesis naming a database is the
    // partition itself, and both databases are accounted for beside it.
    for (const h of diagnosis.hypotheses) {
      if (h.components.some((c) => data.includes(c)))
        expect(h.kind, h.summary).toBe('network_partition');
    }
    expect(diagnosis.ruledOut.map((r) => r.component).sort()).toEqual(expect.arrayContaining(data));
  }, 90_000);

  it('a cut uplink between the switches is the same partition', async () => {
    const l = theLab();
    const { diagnosis } = await faultCycle(l, cutUplink(l, 'sw-app', 'sw-db'), {
      kind: 'network_partition',
      groups: [front, data],
    });
    for (const h of diagnosis.hypotheses) {
      if (serviceKinds.includes(h.kind)) {
        expect(
          h.components.filter((c) => data.includes(c)),
          h.summary,
        ).toEqual([]);
      }
    }
  }, 90_000);

  it('one host whose link goes down is host_unreachable, not a partition', async () => {
    const l = theLab();
    await faultCycle(
      l,
      hostLinkDown(l, 'app-2'),
      { kind: 'host_unreachable', components: ['app-2'] },
      {
        whileInjected: async () => {
          await expect(
            l.exec('app-1', 'ping', ['-c', '1', '-W', '1', l.host('app-2').ip]),
          ).rejects.toThrow();
        },
      },
    );
  }, 90_000);
  it('the store holds what the cut-off agents saw from their side, delivered after the heal (runs last: stops the collector)', async () => {
    const l = theLab();
    if (vlan === undefined || vlan.endMs === 0) throw new Error('the partition test did not run');
    const { startMs, endMs } = vlan;
    // The collector's matrix heard from db-1 about the partition period.
    const path = await pollUntil(
      'db-1 → app-1 ok again, having heard of the cut',
      async () => {
        const p = (await labPaths(l, '?agent=db-1')).find((x) => x.target === 'app-1/icmp');
        return p !== undefined && pathHealthy(p) && p.lastSeenMs > endMs ? p : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(path.sinceMs).toBeGreaterThan(startMs);
    // The incident record (where the collector keeps one): opened during the cut with the
    // partition leading, closed after the heal.
    const { incidents: list } = await l.get<{ incidents: IncidentLike[] }>('/api/v1/incidents');
    const mine = list.find((i) => i.openedAtMs >= startMs && i.openedAtMs <= endMs);
    expect(mine, JSON.stringify(list).slice(0, 2000)).toBeDefined();
    expect(mine!.closedAtMs).toBeGreaterThan(endMs);
    const detail = await l.get<{ events: { type: string; diagnosis: Diagnosis }[] }>(
      `/api/v1/incidents/${mine!.id}`,
    );
    const kinds = detail.events.map((e) => e.diagnosis.hypotheses[0]?.kind);
    expect(kinds).toContain('network_partition');
    // The postmortem: duration about the cut's, the timeline in order, the partition as the
    // root cause, and the databases ruled out — in hindsight, from their own side's reports.
    const pm = await l.fetchApi(`/api/v1/incidents/${mine!.id}/postmortem`);
    const md = await pm.text();
    expect(pm.status, md).toBe(200);
    const duration = /- \*\*Duration:\*\* (?:(\d+) min )?(\d+) s/.exec(md);
    expect(duration, md).not.toBeNull();
    const durationS = Number(duration![1] ?? 0) * 60 + Number(duration![2]);
    expect(durationS, md).toBeGreaterThanOrEqual(Math.floor((endMs - startMs) / 1000) - 5);
    expect(durationS, md).toBeLessThanOrEqual(Math.ceil((endMs - startMs) / 1000) + 15);
    expect(md.indexOf('— **detected**'), md).toBeGreaterThan(0);
    expect(md.indexOf('— **recovered**'), md).toBeGreaterThan(md.indexOf('— **detected**'));
    expect(md, md).toMatch(/## Root cause hint\n\n`network_partition`/);
    expect(md, md).toMatch(
      /\*\*db-[12]\*\* — ruled out in hindsight: db-[12], on its side of the cut/,
    );
    // The store is held exclusively by the running collector: read it after a clean stop.
    await l.collector?.stop();
    const db = new Database(join(l.dir, 'data', 'faultline.db'), {
      readonly: true,
      fileMustExist: true,
    });
    try {
      const key = db.prepare('SELECT agent_key FROM agents WHERE name = ?').pluck().get('db-1');
      // Batches made while cut off, received only after the heal: the spool delivered.
      const spooled = db
        .prepare(
          'SELECT created_at_ms, received_at_ms FROM batches WHERE agent_key = ? AND created_at_ms > ? AND created_at_ms < ?',
        )
        .all(key, startMs + 2000, endMs - 500) as {
        created_at_ms: number;
        received_at_ms: number;
      }[];
      expect(spooled.length).toBeGreaterThanOrEqual(2);
      for (const b of spooled) expect(b.received_at_ms).toBeGreaterThan(endMs - 500);
      // Its view: the front unreachable at the network layer, in full results.
      const failures = db
        .prepare(
          'SELECT target, class FROM results WHERE agent_key = ? AND started_at_ms > ? AND started_at_ms < ?',
        )
        .all(key, startMs + 1000, endMs - 1000) as { target: string; class: string }[];
      const toFront = failures.filter((r) => front.some((f) => r.target.startsWith(`${f}/`)));
      expect(toFront.length).toBeGreaterThanOrEqual(3);
      for (const r of toFront) expect(networkClasses, r.target).toContain(r.class);
      // …and db-2's PostgreSQL answering throughout: no failure of it from db-1 in the cut.
      // (Results sent in full are failures and the ok ones that confirm a change back: the
      // ports move one after the other, so a probe in that instant may fail and its ok
      // confirmations land in the window. An ok row is not a failure.)
      expect(failures.filter((r) => r.target.startsWith('db-2/') && r.class !== 'ok')).toEqual([]);
    } finally {
      db.close();
    }
  }, 40_000);
});
