import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Collector } from '../../collector/collector.js';
import { parseCollectorConfig } from '../../collector/config.js';
import type { CollectorConfig } from '../../collector/config.js';
import { silentAfterFor } from '../../collector/plan.js';
import type { PathState } from '../../collector/types.js';
import type { Plan } from '../../wire/plan.js';
import type { ReportBatch } from '../../wire/report.js';
import { dbInventoryYaml, dbPeriod } from '../helpers/report-batches.js';

/**
 * Issue 13's attacks on identity, replayed against a really started collector over real
 * HTTP (state read back from the collector itself, so the read side's access rules do not
 * matter here). Each test says what it would see if the protection broke.
 *
 * Tokens: `fleet` and `fleet-2` (agent role, any name: the shared fleet tokens of the
 * issue), `app-2` (exactly app-2), `apps` (app-*), `boot` (bootstrap for app-*), `db-1`
 * (exactly db-1: one name, so the small plan bucket).
 */

const secret = (name: string): string => `${name}-secret-0123456789abcdef`.replace(/[^\w-]/g, '');
const tokens = {
  fleet: secret('fleet'),
  fleet2: secret('fleet-2'),
  app2: secret('app-2'),
  apps: secret('apps'),
  boot: secret('boot'),
  db1: secret('db-1'),
};

const silentLog = pino({ level: 'silent' });
const dirs: string[] = [];
const running: Collector[] = [];

afterEach(async () => {
  for (const c of running.splice(0)) await c.stop();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** 20 extra components with two services each: a plan is ~80 targets, as in a real fleet. */
const bulkInventory = Array.from({ length: 20 }, (_, i) => [
  `    - name: svc-${i}`,
  `      address: 127.0.1.${i + 1}`,
  '      role: api',
  '      services:',
  '        - { name: web, kind: http, port: 8080 }',
  '        - { name: cache, kind: redis }',
]).flat();

function configYaml(dataDir: string, extra: readonly string[] = []): string {
  return [
    'listen: 127.0.0.1:0',
    `dataDir: ${dataDir}`,
    'tokens:',
    `  - { name: fleet, token: ${tokens.fleet} }`,
    `  - { name: fleet-2, token: ${tokens.fleet2} }`,
    `  - { name: app-2, token: ${tokens.app2}, agents: [app-2] }`,
    `  - { name: apps, token: ${tokens.apps}, agents: ["app-*"] }`,
    `  - { name: boot, token: ${tokens.boot}, role: bootstrap, agents: ["app-*"] }`,
    `  - { name: db-1, token: ${tokens.db1}, agents: [db-1] }`,
    // icmp left out: a ghost named like a component must not bring it back (issue 13).
    'probes: { layers: [tcp, protocol], mesh: true }',
    'agents: { reportInterval: auto }',
    ...extra,
    ...dbInventoryYaml,
    ...bulkInventory,
    '',
  ].join('\n');
}

async function start(dataDir?: string): Promise<{ c: Collector; config: CollectorConfig }> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'faultline-trust-'));
  if (dataDir === undefined) dirs.push(dir);
  const config = parseCollectorConfig(configYaml(dir), 'collector.yaml');
  const c = await Collector.start(config, silentLog);
  running.push(c);
  return { c, config };
}

interface Answer {
  readonly status: number;
  readonly body: {
    error?: { code: string; message: string; acceptedSeq?: number; freeAtMs?: number };
  } & Record<string, unknown>;
  readonly headers: Headers;
}

async function call(
  c: Collector,
  method: 'GET' | 'POST',
  path: string,
  token: string,
  body?: unknown,
): Promise<Answer> {
  const res = await fetch(`${c.url()}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return {
    status: res.status,
    body: text === '' ? {} : (JSON.parse(text) as Answer['body']),
    headers: res.headers,
  };
}

const report = (c: Collector, token: string, b: ReportBatch): Promise<Answer> =>
  call(c, 'POST', '/api/v1/reports', token, b);
const plan = async (c: Collector, token: string, agent: string): Promise<Answer> =>
  call(c, 'GET', `/api/v1/plan?agent=${encodeURIComponent(agent)}`, token);

/** One report period of `agent` at now-ish timestamps: db-1 pings, postgres `pg`. */
function period(
  agent: string,
  seq: number,
  pg: 'ok' | 'tcp_timeout',
  over: Partial<ReportBatch> = {},
): ReportBatch {
  return { ...dbPeriod(agent, seq, pg, Date.now() - 60_000), ...over };
}

/** What an attack must not change: the agent's paths as the diagnosis reads them. */
const pathView = (
  c: Collector,
  agent: string,
): Pick<PathState, 'target' | 'state' | 'lastClass'>[] =>
  c
    .paths({ agent })
    .map((p) => ({ target: p.target, state: p.state, lastClass: p.lastClass }))
    .sort((a, b) => a.target.localeCompare(b.target));

const hypotheses = (c: Collector): string[] => {
  c.diagnoser.computeNow('test');
  return c
    .diagnosis()
    .hypotheses.map((h) => `${h.kind}:${JSON.stringify(h)}`)
    .map((s) => s.replace(/"(atMs|sinceMs|generatedAtMs|[a-zA-Z]*Ms)":\d+/g, ''));
};

const heapUsed = (): number => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

describe('trust: identity bound to credentials (issue 13), against a real collector', () => {
  it('(a) seq poisoning: a seq of 2^53−1 with a dropped range under the victim’s id is refused; the victim goes on', async () => {
    const { c } = await start();
    for (let seq = 1; seq <= 3; seq++) {
      expect((await report(c, tokens.fleet, period('app-1', seq, 'ok'))).status).toBe(200);
    }
    const victimId = 'agent-app-1-0001';
    // The attacker's batch: plausible results, a seq of 2^53−1, the gap declared dropped.
    const poison = period('app-1', Number.MAX_SAFE_INTEGER, 'ok', {
      dropped: { batches: Number.MAX_SAFE_INTEGER - 4, results: 0 },
      results: period('app-1', 4, 'ok').results,
      createdAtMs: Date.now(),
    });
    // Another token holder (fleet-2) and the victim's own shared token alike.
    for (const t of [tokens.fleet2, tokens.fleet]) {
      const res = await report(c, t, poison);
      // Broken protection: 200 with acceptedSeq 2^53−1.
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'FL_ERR_SEQ_IMPLAUSIBLE', acceptedSeq: 3 });
      expect(res.body.error?.message).toContain('identity.maxSeqGap 200000');
    }
    // A declared drop beyond any spool, with a plausible seq: refused too.
    const declared = period('app-1', 5, 'ok', { dropped: { batches: 200_001, results: 0 } });
    expect((await report(c, tokens.fleet2, declared)).body.error?.code).toBe(
      'FL_ERR_SEQ_IMPLAUSIBLE',
    );
    const victim = c.agents().find((a) => a.agentId === victimId);
    expect(victim?.acceptedSeq).toBe(3);
    // The victim's next batch is taken (broken: 200 duplicate, acceptedSeq 2^53−1, forever).
    const next = await report(c, tokens.fleet, period('app-1', 4, 'ok'));
    expect(next.status).toBe(200);
    expect(next.body).toEqual({ acceptedSeq: 4, duplicate: false });
    console.log(
      `trust (a): poisoned batches refused 400 FL_ERR_SEQ_IMPLAUSIBLE; victim acceptedSeq 3 -> ${c.agents().find((a) => a.agentId === victimId)?.acceptedSeq} after its next batch`,
    );
    // With a credential naming the victim, another token cannot even try.
    expect((await report(c, tokens.app2, period('app-2', 1, 'ok'))).status).toBe(200);
    const res = await report(
      c,
      tokens.fleet,
      period('app-2', Number.MAX_SAFE_INTEGER, 'ok', {
        dropped: { batches: 10, results: 0 },
        results: period('app-2', 2, 'ok').results,
        createdAtMs: Date.now(),
      }),
    );
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe('FL_ERR_FORBIDDEN');
  });

  it('(b) impersonation: a live agent’s name under a new id is refused; paths and diagnosis unchanged', async () => {
    const { c } = await start();
    for (let seq = 1; seq <= 4; seq++) {
      for (const a of ['app-1', 'app-2']) {
        const t = a === 'app-2' ? tokens.app2 : tokens.fleet;
        expect((await report(c, t, period(a, seq, 'ok'))).status).toBe(200);
      }
    }
    const before = pathView(c, 'app-1');
    expect(before.length).toBeGreaterThan(0);
    expect(before.every((p) => p.state !== 'failing')).toBe(true);
    const diagnosisBefore = hypotheses(c);

    // Shared fleet token: app-1's name, a new agent id, failing postgres, several batches.
    for (let seq = 1; seq <= 5; seq++) {
      const fake = period('app-1', seq, 'tcp_timeout', { agentId: 'agent-impostor-0001' });
      const res = await report(c, tokens.fleet2, fake);
      // Broken protection: 200, app-1 superseded, its postgres path `failing`.
      expect(res.status).toBe(409);
      expect(res.body.error?.code).toBe('FL_ERR_AGENT_CONFLICT');
      expect(res.body.error?.message).toMatch(/free for a new agent id at \d{4}-\d\d-\d\dT/);
      expect(res.body.error?.freeAtMs).toBeGreaterThan(Date.now() + 3_500_000);
    }
    expect(pathView(c, 'app-1')).toEqual(before);
    expect(
      c
        .agents()
        .filter((a) => a.agent === 'app-1')
        .map((a) => a.agentId),
    ).toEqual(['agent-app-1-0001']);
    expect(hypotheses(c)).toEqual(diagnosisBefore);
    console.log(
      `trust (b): 5 impersonating batches refused 409; app-1's ${before.length} paths unchanged, ${c.paths({ agent: 'app-1' }).filter((p) => p.state === 'failing').length} failing; hypotheses ${diagnosisBefore.length} before and after`,
    );

    // Per-agent credentials: any cross-name report is 403, whatever the agent id.
    const crossName = await report(c, tokens.app2, period('app-1', 9, 'tcp_timeout'));
    expect(crossName.status).toBe(403);
    expect(crossName.body.error?.message).toBe(
      'token "app-2" may not act as agent "app-1" (it may use: app-2)',
    );
    // app-2 is bound to its exact-name token: the fleet token may not report as it, even
    // with app-2's own id (broken: 200 and app-2's paths failing).
    const asApp2 = await report(c, tokens.fleet, period('app-2', 5, 'tcp_timeout'));
    expect(asApp2.status).toBe(403);
    expect(asApp2.body.error?.message).toContain('bound to its own credential');
    // An enrolled credential too.
    const enrolled = await call(c, 'POST', '/api/v1/enrol', tokens.boot, {
      agent: 'app-7',
      agentId: 'agent-app-7-0001',
    });
    expect(enrolled.status).toBe(201);
    const secret7 = enrolled.body.token as string;
    const as1 = await report(c, secret7, period('app-1', 9, 'tcp_timeout'));
    expect(as1.status).toBe(403);
    expect(as1.body.error?.message).toContain('the enrolled credential of "app-7"');
    expect(pathView(c, 'app-1')).toEqual(before);
    expect(pathView(c, 'app-2').every((p) => p.state !== 'failing')).toBe(true);
    // A batch carrying another agent's results: 400 naming the first.
    const mixed = period('app-1', 5, 'ok');
    const smuggled = {
      ...mixed,
      results: [mixed.results[0]!, { ...mixed.results[1]!, agent: 'app-2' }],
    };
    const res = await report(c, tokens.fleet, smuggled);
    expect(res.status).toBe(400);
    expect(res.body.error?.message).toContain('results[1].agent "app-2"');
  });

  it('(c) plans: a ghost named like a component changes no plan; 3,000 made-up names change nothing and do not grow the collector', async () => {
    const { c, config } = await start();
    for (let seq = 1; seq <= 2; seq++) {
      for (const a of ['app-1', 'app-2']) {
        expect((await report(c, tokens.fleet, period(a, seq, 'ok'))).status).toBe(200);
      }
    }
    const planOf = async (agent: string, t = tokens.fleet): Promise<Plan> => {
      const res = await plan(c, t, agent);
      expect(res.status).toBe(200);
      return res.body as unknown as Plan;
    };
    const before = await planOf('app-1');
    expect(before.targets.some((t) => t.kind === 'icmp')).toBe(false);

    // The ghost: reports (fleet token) and asks for plans as "db-1", the inventory's db-1.
    expect((await report(c, tokens.fleet, period('db-1', 1, 'ok'))).status).toBe(200);
    await planOf('db-1');
    // Broken protection: every plan gains db-1/icmp and db-1/mtu, which the layers left out.
    const after = await planOf('app-1');
    expect(after.version).toBe(before.version);
    expect(after.targets.map((t) => t.name)).toEqual(before.targets.map((t) => t.name));

    // 3,000 made-up names ask for plans (the fleet token may use any name).
    const fleetBefore = c.fleetSize();
    const silentBefore = silentAfterFor(config.agents, fleetBefore);
    const madeUp = (i: number): string => `ghost-${i}`;
    const ask = async (from: number, count: number): Promise<void> => {
      for (let i = from; i < from + count; i += 25) {
        const answers = await Promise.all(
          Array.from({ length: Math.min(25, from + count - i) }, (_, k) =>
            plan(c, tokens.fleet, madeUp(i + k)),
          ),
        );
        for (const a of answers) expect(a.status).toBe(200);
      }
    };
    await ask(0, 1000); // warm-up: JIT, sockets, buffers
    const heapBefore = heapUsed();
    await ask(1000, 3000);
    const heapAfter = heapUsed();

    const growthMiB = (heapAfter - heapBefore) / 2 ** 20;
    console.log(
      `trust (c): heap ${(heapBefore / 2 ** 20).toFixed(1)} MiB -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB after 3,000 plan requests for made-up names (growth ${growthMiB.toFixed(2)} MiB); fleet size ${fleetBefore} -> ${c.fleetSize()}; plan of ${before.targets.length} targets`,
    );
    // Broken protection (every name's plan cached, ~80 targets each): 66 MiB measured.
    expect(growthMiB).toBeLessThan(8);
    expect(c.fleetSize()).toBe(fleetBefore);
    const real = await planOf('app-1');
    expect(real.reportIntervalMs).toBe(before.reportIntervalMs);
    expect(real.version).toBe(before.version);
    expect(silentAfterFor(config.agents, c.fleetSize())).toBe(silentBefore);
    // silentAfter covers what agents are told, so no live agent flaps silent.
    expect(silentBefore).toBeGreaterThanOrEqual(2 * real.reportIntervalMs);

    // The plan for a name the credential may not use: 403 (broken: the plan, passwords and all).
    const denied = await plan(c, tokens.apps, 'db-1');
    expect(denied.status).toBe(403);
    expect(denied.body.error?.code).toBe('FL_ERR_FORBIDDEN');
    expect((await plan(c, tokens.app2, 'app-1')).status).toBe(403);
    // app-2 bound to its exact-name token (it reports): the fleet token may not fetch its plan.
    expect(
      (await report(c, tokens.app2, period('app-2', 1, 'ok', { agentId: 'agent-app-2-0002' })))
        .status,
    ).toBe(200);
    expect((await plan(c, tokens.fleet, 'app-2')).status).toBe(403);
    // Plan requests are bounded per credential: a one-name token gets 20 at once.
    let refused: Answer | undefined;
    for (let i = 0; i < 25 && refused === undefined; i++) {
      const res = await plan(c, tokens.db1, 'db-1');
      if (res.status !== 200) refused = res;
    }
    expect(refused?.status).toBe(429);
    expect(refused?.body.error?.code).toBe('FL_ERR_RATE');
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('(d) enrolment: bootstrap → 201 → the secret reports; the bootstrap token cannot; a restart keeps it', async () => {
    const first = await start();
    const c = first.c;
    const bootstrapReport = await report(c, tokens.boot, period('app-3', 1, 'ok'));
    expect(bootstrapReport.status).toBe(403);
    expect(bootstrapReport.body.error?.code).toBe('FL_ERR_ENROL_REQUIRED');
    expect(bootstrapReport.body.error?.message).toContain('enrol first: POST /api/v1/enrol');
    expect((await plan(c, tokens.boot, 'app-3')).body.error?.code).toBe('FL_ERR_ENROL_REQUIRED');
    // An agent-role token reports directly.
    const notBootstrap = await call(c, 'POST', '/api/v1/enrol', tokens.fleet, {
      agent: 'app-3',
      agentId: 'agent-app-3-0001',
    });
    expect(notBootstrap.status).toBe(403);
    expect(notBootstrap.body.error?.code).toBe('FL_ERR_NOT_BOOTSTRAP');
    // Outside the bootstrap token's names.
    const outside = await call(c, 'POST', '/api/v1/enrol', tokens.boot, {
      agent: 'db-1',
      agentId: 'agent-db-1-0001',
    });
    expect(outside.status).toBe(403);
    expect(outside.body.error?.code).toBe('FL_ERR_FORBIDDEN');

    const enrol = await call(c, 'POST', '/api/v1/enrol', tokens.boot, {
      agent: 'app-3',
      agentId: 'agent-app-3-0001',
    });
    expect(enrol.status).toBe(201);
    expect(enrol.body).toMatchObject({ agent: 'app-3', agentId: 'agent-app-3-0001' });
    const issued = enrol.body.token as string;
    expect(issued).not.toBe(tokens.boot);
    expect((await report(c, issued, period('app-3', 1, 'ok'))).status).toBe(200);
    expect((await plan(c, issued, 'app-3')).status).toBe(200);
    // Another agent id for the live name: 409 saying when the name frees.
    const taken = await call(c, 'POST', '/api/v1/enrol', tokens.boot, {
      agent: 'app-3',
      agentId: 'agent-app-3-0002',
    });
    expect(taken.status).toBe(409);
    expect(taken.body.error?.message).toMatch(/free for a new agent id at/);

    // A restart keeps the enrolled credential (only its digest is stored).
    const dataDir = first.config.dataDir;
    await c.stop();
    running.splice(running.indexOf(c), 1);
    const { c: again } = await start(dataDir);
    const res = await report(again, issued, period('app-3', 2, 'ok'));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ acceptedSeq: 2, duplicate: false });
    // Re-enrolling the same name and id issues a new secret and revokes the old one.
    const renewed = await call(again, 'POST', '/api/v1/enrol', tokens.boot, {
      agent: 'app-3',
      agentId: 'agent-app-3-0001',
    });
    expect(renewed.status).toBe(201);
    expect((await report(again, issued, period('app-3', 3, 'ok'))).status).toBe(401);
    expect(
      (await report(again, renewed.body.token as string, period('app-3', 3, 'ok'))).status,
    ).toBe(200);
  });
});
