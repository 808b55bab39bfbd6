import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import { buildApi } from './api.js';
import type { ApiOptions } from './api.js';
import { findAlertIncident } from './alert-link.js';
import { buildAlert } from './alert-build.js';
import { registerDashboard, type DashboardSource } from './dashboard.js';
import { EventHub, flushMs, maxPathChanges, type FeedEvent } from './events.js';
import { buildMatrix, decodeCell, matrixCell, type MatrixDocument } from './matrix-view.js';
import type { Transition } from './paths/checkpoint.js';
import type { ProbeResult } from '../wire/result.js';
import type { StoredIncident, StoredIncidentEvent } from './store/incidents.js';
import type { AgentLiveness, CollectorCore, PathState } from './types.js';

const agentToken = 'fleet-token-0123456789abcdef';
const viewerToken = 'viewer-token-0123456789abcdef';
const asViewer = { authorization: `Bearer ${viewerToken}` };

interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

function path(agent: string, target: string, state: PathState['state'], cls = 'ok'): PathState {
  const [component, service, kind] = target.split('/');
  return {
    agent,
    target,
    component: component!,
    ...(kind === undefined ? {} : { service: service! }),
    kind: kind ?? service!,
    state,
    lastClass: cls as PathState['lastClass'],
    consecutiveFailures: state === 'failing' ? 3 : 0,
    consecutiveSuccesses: state === 'ok' ? 3 : 0,
    failureRatio: state === 'failing' ? 1 : 0,
    failures: {},
    probes: 3,
    sinceMs: 1_000,
    lastSeenMs: 2_000,
  };
}

function agent(name: string, labels: Record<string, string> = {}): AgentLiveness {
  return {
    agentId: `id-${name}`,
    agent: name,
    labels,
    state: 'live',
    lastSeenMs: 2_000,
    acceptedSeq: 1,
    droppedResults: 0,
    spoolBacklog: 0,
  };
}

const components = [
  { name: 'app-1', agent: 'app-1', role: 'api', labels: { switch: 'sw-a' } },
  { name: 'db-1', agent: 'db-1', role: 'database', labels: { switch: 'sw-b' } },
];

const partition: Hypothesis = {
  kind: 'network_partition',
  confidence: 0.9,
  summary: 'network partition between {app-1} and {db-1}',
  components: ['db-1'],
  groups: [{ members: ['app-1'] }, { name: 'switch=sw-b', members: ['db-1'] }],
  cutLabel: { key: 'switch', values: ['sw-b'] },
  evidence: { counts: { tcp_timeout: 2 }, examples: [] },
  since: 1_000,
};
const partitionDiagnosis: Diagnosis = {
  healthy: false,
  hypotheses: [partition],
  ruledOut: [],
  computedAtMs: 2_000,
};

describe('matrix-view: the compact matrix', () => {
  it('codes state and class in a byte and back; an ok path is ok whatever its last class', () => {
    for (const [state, cls] of [
      ['failing', 'tcp_timeout'],
      ['degraded', 'ok'],
      ['unknown', 'ok'],
      ['failing', 'mtu_exceeded'],
    ] as const) {
      expect(decodeCell(matrixCell(state, cls))).toEqual({ state, cls });
    }
    expect(decodeCell(matrixCell('ok', 'tcp_refused'))).toEqual({ state: 'ok', cls: 'ok' });
    expect(decodeCell(0)).toBeUndefined();
  });

  it('one row per agent, one column per target, labels from the report or the inventory', () => {
    const doc = buildMatrix({
      paths: [
        path('db-1', 'app-1/icmp', 'ok'),
        path('app-1', 'db-1/postgres/tcp', 'failing', 'tcp_timeout'),
        path('app-1', 'db-1/icmp', 'ok'),
      ],
      agents: [agent('app-1', { switch: 'reported' }), agent('db-1')],
      components,
      nowMs: 5,
    });
    expect(doc.agents.map((a) => [a.name, a.labels.switch, a.host])).toEqual([
      ['app-1', 'reported', 'app-1'],
      ['db-1', 'sw-b', 'db-1'],
    ]);
    expect(doc.targets.map((t) => [t.name, t.kind, t.labels.switch])).toEqual([
      ['app-1/icmp', 'icmp', 'sw-a'],
      ['db-1/icmp', 'icmp', 'sw-b'],
      ['db-1/postgres/tcp', 'tcp', 'sw-b'],
    ]);
    const cells = [...Buffer.from(doc.cells, 'base64')].map((c) => decodeCell(c)?.state ?? '-');
    expect(cells).toEqual(['-', 'ok', 'failing', 'ok', '-', '-']);
    expect(doc.hosts.map((h) => h.name)).toEqual(['app-1', 'db-1']);
  });
});

describe('events: the live feed hub', () => {
  const transition = (agentName: string, target: string, toState: string): Transition => ({
    agentId: `id-${agentName}`,
    agent: agentName,
    target,
    kind: target === '' ? 'agent' : 'tcp',
    fromClass: 'ok',
    toClass: toState === 'failing' ? 'tcp_timeout' : 'ok',
    fromState: 'ok',
    toState,
    atMs: 1,
    resultSeq: 1,
    batchSeq: 1,
  });

  it('coalesces path changes per path (the latest wins) and agent changes into one event each', () => {
    const hub = new EventHub();
    const seen: FeedEvent[] = [];
    hub.subscribe((e) => seen.push(e));
    hub.transitions([transition('a', 'db-1/postgres/tcp', 'failing')]);
    hub.transitions([
      transition('a', 'db-1/postgres/tcp', 'ok'),
      transition('b', 'db-1/postgres/tcp', 'failing'),
      transition('c', '', 'silent'),
    ]);
    expect(seen).toEqual([]);
    hub.flush();
    expect(seen.map((e) => e.type)).toEqual(['paths', 'agents']);
    expect(seen[0]!.data).toEqual({
      changes: [
        ['a', 'db-1/postgres/tcp', matrixCell('ok', 'ok')],
        ['b', 'db-1/postgres/tcp', matrixCell('failing', 'tcp_timeout')],
      ],
    });
    hub.close();
  });

  it('too many changes at once: one `matrix` event (read it again) instead of the list', () => {
    const hub = new EventHub();
    const seen: FeedEvent[] = [];
    hub.subscribe((e) => seen.push(e));
    hub.transitions(
      Array.from({ length: maxPathChanges + 1 }, (_, i) =>
        transition(`a${i}`, 'x/icmp', 'failing'),
      ),
    );
    hub.flush();
    expect(seen.map((e) => e.type)).toEqual(['matrix']);
    hub.close();
  });

  it('with nobody listening, nothing is kept', () => {
    const hub = new EventHub();
    hub.transitions([transition('a', 'x/icmp', 'failing')]);
    const seen: FeedEvent[] = [];
    hub.subscribe((e) => seen.push(e));
    hub.flush();
    expect(seen).toEqual([]);
  });
});

describe('alert-link: an alert fingerprint to its incident', () => {
  const incidents: StoredIncident[] = [
    {
      id: 3,
      openedAtMs: 2_000,
      firstFailureMs: 1_000,
      kind: 'network_partition',
      summary: partition.summary,
      components: ['db-1'],
    },
  ];
  const events: StoredIncidentEvent[] = [
    { atMs: 2_000, type: 'opened', diagnosis: partitionDiagnosis },
  ];
  const source = { incidents: () => incidents, incidentEvents: () => events };
  const config = { labels: { cluster: 'prod' }, externalUrl: 'http://x/' };

  it('finds the incident whatever severity the alert had (it depends on the fleet then)', () => {
    for (const totalPaths of [2, 100, 100_000]) {
      const ctx = { roles: { 'db-1': 'database' }, totalPaths };
      const alert = buildAlert(partition, partitionDiagnosis, ctx, config);
      expect(alert.generatorUrl).toBe(`http://x/?alert=${alert.fingerprint}`);
      expect(findAlertIncident(alert.fingerprint, source, config)).toEqual({
        fingerprint: alert.fingerprint,
        incidentId: 3,
        alertname: 'FaultlineNetworkPartition',
        kind: 'network_partition',
      });
    }
  });

  it('an unknown fingerprint, or other extra labels (another cluster): not found', () => {
    const alert = buildAlert(partition, partitionDiagnosis, { roles: {}, totalPaths: 1 }, config);
    expect(findAlertIncident('0123456789abcdef', source, config)).toBeUndefined();
    expect(
      findAlertIncident(alert.fingerprint, source, { labels: { cluster: 'dev' } }),
    ).toBeUndefined();
  });
});

describe('dashboard routes (through buildApi)', () => {
  let app: FastifyInstance | undefined;
  const hub = new EventHub();
  const history: Transition[] = [
    {
      agentId: 'id-app-1',
      agent: 'app-1',
      target: 'db-1/icmp',
      kind: 'icmp',
      fromClass: 'ok',
      toClass: 'icmp_timeout',
      fromState: 'ok',
      toState: 'failing',
      atMs: 1_500,
      resultSeq: 4,
      batchSeq: 2,
    },
  ];
  const calls: unknown[][] = [];
  const resultCalls: [string, string, number][] = [];
  const probeResult = (
    seq: number,
    cls: ProbeResult['class'],
    timings: ProbeResult['timings'],
    error?: ProbeResult['error'],
  ): ProbeResult => ({
    agent: 'app-1',
    target: 'db-1/postgres/tcp',
    address: '198.18.1.1:5432',
    kind: 'tcp',
    class: cls,
    seq,
    startedAtMs: 1_000 + seq,
    timings,
    ...(error === undefined ? {} : { error }),
  });
  const stored: ProbeResult[] = Array.from({ length: 120 }, (_, i) =>
    i === 0
      ? probeResult(200, 'ok', { connectMs: 1.5, totalMs: 1.6 })
      : probeResult(
          200 - i,
          'tcp_timeout',
          { totalMs: 3000 },
          {
            code: 'ETIMEDOUT',
            message: 'connect ETIMEDOUT 198.18.1.1:5432',
          },
        ),
  );
  const source: DashboardSource = {
    events: hub,
    matrix: () =>
      buildMatrix({
        paths: [path('app-1', 'db-1/icmp', 'failing', 'icmp_timeout')],
        agents: [agent('app-1')],
        components,
        nowMs: 9,
      }),
    alertIncident: (fp) =>
      fp === 'aaaaaaaaaaaaaaaa'
        ? { fingerprint: fp, incidentId: 3, alertname: 'FaultlineNetworkPartition', kind: 'x' }
        : undefined,
    pathHistory: (...args) => {
      calls.push(args);
      return history;
    },
    pathResults: (...args) => {
      resultCalls.push(args);
      return stored.slice(0, args[2]);
    },
  };
  function build(over: Partial<ApiOptions> = {}): FastifyInstance {
    app = buildApi({} as CollectorCore, {
      tokens: [{ name: 'fleet', token: agentToken }],
      viewers: [{ name: 'ops', token: viewerToken }],
      maxReportBytes: 1024 * 1024,
      routes: (a, ctx) => registerDashboard(a, source, ctx),
      ...over,
    });
    return app;
  }
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('GET / is the app, open, with a CSP that allows only its own scripts and its import map', async () => {
    const res = await build().inject({ method: 'GET', url: '/?alert=aaaaaaaaaaaaaaaa' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toContain('<script type="importmap">');
    const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(res.body)![1]!;
    const hash = createHash('sha256').update(map).digest('base64');
    expect(res.headers['content-security-policy']).toContain(`script-src 'self' 'sha256-${hash}'`);
  });

  it('serves the app files and the vendor libraries from the package, nothing else', async () => {
    const api = build();
    for (const url of ['/ui/app.js', '/ui/vendor/preact.mjs', '/ui/vendor/uplot.mjs']) {
      const res = await api.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/javascript/);
      const again = await api.inject({
        method: 'GET',
        url,
        headers: { 'if-none-match': String(res.headers.etag) },
      });
      expect(again.statusCode).toBe(304);
    }
    for (const url of ['/ui/../package.json', '/ui/vendor/../../package.json', '/ui/nope.js']) {
      expect((await api.inject({ method: 'GET', url })).statusCode, url).toBe(404);
    }
    expect((await api.inject({ method: 'POST', url: '/' })).statusCode).toBe(405);
  });

  it('GET /api/v1/matrix: viewers only (an agent token is refused), the compact document', async () => {
    const api = build();
    expect((await api.inject({ method: 'GET', url: '/api/v1/matrix' })).statusCode).toBe(401);
    const agentRes = await api.inject({
      method: 'GET',
      url: '/api/v1/matrix',
      headers: { authorization: `Bearer ${agentToken}` },
    });
    expect(agentRes.statusCode).toBe(403);
    expect(agentRes.json<ErrorBody>().error.message).toMatch(/agent tokens cannot read/);
    const res = await api.inject({ method: 'GET', url: '/api/v1/matrix', headers: asViewer });
    expect(res.statusCode).toBe(200);
    const doc = res.json<MatrixDocument>();
    expect(doc.agents.map((a) => a.name)).toEqual(['app-1']);
    expect(decodeCell(Buffer.from(doc.cells, 'base64')[0]!)).toEqual({
      state: 'failing',
      cls: 'icmp_timeout',
    });
    const bad = await api.inject({ method: 'GET', url: '/api/v1/matrix?x=1', headers: asViewer });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<ErrorBody>().error.code).toBe('FL_ERR_BAD_REQUEST');
  });

  it('readAccess open: the matrix answers without a token', async () => {
    const res = await build({ readAccess: 'open' }).inject({
      method: 'GET',
      url: '/api/v1/matrix',
    });
    expect(res.statusCode).toBe(200);
  });

  it('GET /api/v1/alerts/:fingerprint: the incident; 404 unknown; 400 not a fingerprint', async () => {
    const api = build();
    const ok = await api.inject({
      method: 'GET',
      url: '/api/v1/alerts/aaaaaaaaaaaaaaaa',
      headers: asViewer,
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ incidentId: 3 });
    const unknown = await api.inject({
      method: 'GET',
      url: '/api/v1/alerts/bbbbbbbbbbbbbbbb',
      headers: asViewer,
    });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json<ErrorBody>().error.message).toMatch(
      /no incident has an alert with fingerprint/,
    );
    const bad = await api.inject({ method: 'GET', url: '/api/v1/alerts/xyz', headers: asViewer });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<ErrorBody>().error.message).toMatch(
      /invalid alert fingerprint "xyz": expected 16 hex/,
    );
    expect(
      (await api.inject({ method: 'GET', url: '/api/v1/alerts/aaaaaaaaaaaaaaaa' })).statusCode,
    ).toBe(401);
  });

  it('GET /api/v1/paths/history: agent and target required, agent ids left out', async () => {
    const api = build();
    const res = await api.inject({
      method: 'GET',
      url: '/api/v1/paths/history?agent=app-1&target=db-1%2Ficmp&limit=20',
      headers: asViewer,
    });
    expect(res.statusCode).toBe(200);
    expect(calls.at(-1)).toEqual(['app-1', 'db-1/icmp', 20]);
    expect(res.json<{ transitions: object[] }>().transitions[0]).not.toHaveProperty('agentId');
    expect(res.json<{ transitions: object[] }>().transitions[0]).toMatchObject({
      toState: 'failing',
      toClass: 'icmp_timeout',
    });
    const bad = await api.inject({
      method: 'GET',
      url: '/api/v1/paths/history?agent=app-1',
      headers: asViewer,
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<ErrorBody>().error.message).toMatch(/target/);
  });

  it("GET /api/v1/paths/results: viewers only, validated, the path's newest stored results", async () => {
    const api = build();
    const url = '/api/v1/paths/results?agent=app-1&target=db-1%2Fpostgres%2Ftcp';
    expect((await api.inject({ method: 'GET', url })).statusCode).toBe(401);
    const agentRes = await api.inject({
      method: 'GET',
      url,
      headers: { authorization: `Bearer ${agentToken}` },
    });
    expect(agentRes.statusCode).toBe(403);
    expect(agentRes.json<ErrorBody>().error.message).toMatch(/agent tokens cannot read/);
    expect(resultCalls).toEqual([]);

    const res = await api.inject({ method: 'GET', url, headers: asViewer });
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-cache');
    // 10 by default, newest first, each with its class, start, main timing and error.
    expect(resultCalls.at(-1)).toEqual(['app-1', 'db-1/postgres/tcp', 10]);
    const body = res.json<{ agent: string; target: string; results: object[] }>();
    expect(body).toMatchObject({ agent: 'app-1', target: 'db-1/postgres/tcp' });
    expect(body.results).toHaveLength(10);
    expect(body.results[0]).toEqual({
      startedAtMs: 1_200,
      class: 'ok',
      timing: 'connectMs',
      ms: 1.5,
      totalMs: 1.6,
    });
    expect(body.results[1]).toEqual({
      startedAtMs: 1_199,
      class: 'tcp_timeout',
      timing: 'connectMs',
      totalMs: 3000,
      error: { code: 'ETIMEDOUT', message: 'connect ETIMEDOUT 198.18.1.1:5432' },
    });
    const hundred = await api.inject({ method: 'GET', url: `${url}&limit=100`, headers: asViewer });
    expect(hundred.json<{ results: object[] }>().results).toHaveLength(100);

    for (const [query, field, why] of [
      ['&limit=101', 'limit', /expected a number from 1 to 100/],
      ['&limit=0', 'limit', /expected a number from 1 to 100/],
      ['&limit=ten', 'limit', /expected a number from 1 to 100/],
      ['&extra=1', 'extra', /extra/],
    ] as const) {
      const bad = await api.inject({ method: 'GET', url: `${url}${query}`, headers: asViewer });
      expect(bad.statusCode, query).toBe(400);
      expect(bad.json<ErrorBody>().error.code).toBe('FL_ERR_BAD_REQUEST');
      expect(bad.json<ErrorBody>().error.message, query).toMatch(field);
      expect(bad.json<ErrorBody>().error.message, query).toMatch(why);
    }
    for (const query of ['agent=app-1', 'target=db-1%2Ficmp', 'agent=a%20b&target=x']) {
      const bad = await api.inject({
        method: 'GET',
        url: `/api/v1/paths/results?${query}`,
        headers: asViewer,
      });
      expect(bad.statusCode, query).toBe(400);
    }
    expect(resultCalls).toHaveLength(2);
  });

  it('GET /api/v1/events streams hello, then changes; closing the server ends the stream', async () => {
    const api = build();
    await api.listen({ host: '127.0.0.1', port: 0 });
    const { port } = api.server.address() as AddressInfo;
    const refused = await fetch(`http://127.0.0.1:${port}/api/v1/events`);
    expect(refused.status).toBe(401);
    await refused.body?.cancel();
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/events`, { headers: asViewer });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const until = async (needle: string): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (!text.includes(needle)) {
        if (Date.now() > deadline) throw new Error(`no ${needle} in ${text}`);
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}`);
        text += value;
      }
    };
    await until('event: hello');
    expect(text).toContain(`"bootId":"${hub.bootId}"`);
    hub.diagnosis(partitionDiagnosis);
    await until('event: diagnosis');
    hub.transitions([{ ...history[0]! }]);
    await new Promise((r) => setTimeout(r, flushMs + 50));
    await until('event: paths');
    expect(text).toContain(`["app-1","db-1/icmp",${matrixCell('failing', 'icmp_timeout')}]`);
    const closed = api.close();
    for (;;) if ((await reader.read()).done) break;
    await closed;
    app = undefined;
    expect(hub.size).toBe(0);
  });
});
