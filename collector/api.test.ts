import { FaultlineError } from '../lib/errors.js';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { TestPki } from '../test/helpers/tls.js';
import { DiagnosisSchema, type Diagnosis } from '../wire/diagnosis.js';
import type { Plan } from '../wire/plan.js';
import type { ReportBatch } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';
import { buildApi } from './api.js';
import { jsonDepthExceeds, locateJsonError } from './api/json.js';
import { etagFor, ifNoneMatchHits } from './api/plan.js';
import { parseLabels } from './api/query.js';
import type { ApiOptions } from './api.js';
import { digestOf, forbiddenReason } from './auth.js';
import type { Credential, EnrolledCredential } from './auth.js';
import type { IncidentDetail, StoredIncident } from './store/incidents.js';
import { localise } from './localise/localise.js';
import type {
  AgentLiveness,
  CollectorCore,
  EnrolOutcome,
  IngestOutcome,
  PathFilter,
  PathState,
} from './types.js';

const token = 'fleet-token-0123456789abcdef';
const bootstrapToken = 'bootstrap-token-0123456789abcdef';
const webToken = 'web-token-0123456789abcdef';
const dbToken = 'db-1-token-0123456789abcdef';
const tokens = [
  { name: 'fleet', token },
  { name: 'old', token: 'old-token-0123456789abcdef', revoked: true },
  { name: 'boot', token: bootstrapToken, role: 'bootstrap' as const, agents: ['app-*', 'db-*'] },
  { name: 'web', token: webToken, agents: ['web-*'] },
  { name: 'db-1', token: dbToken, agents: ['db-1'] },
];
const auth = { authorization: `Bearer ${token}` };
const viewerToken = 'viewer-token-0123456789abcdef';
const viewers = [
  { name: 'ops', token: viewerToken },
  { name: 'gone', token: 'gone-viewer-0123456789abcdef', revoked: true },
];
const asViewer = { authorization: `Bearer ${viewerToken}` };
/** The fleet token's credential, as ingest is handed it. */
const fleetCredential = { id: 'fleet', label: 'token "fleet"', role: 'agent' };
const json = { 'content-type': 'application/json' };

/** A path of the diagnosis sample: app agents to db-1. */
function samplePath(agent: string, target: string, kind: string, failing: boolean): PathState {
  return {
    agent,
    target,
    component: 'db-1',
    ...(kind === 'icmp' ? {} : { service: 'postgres' }),
    kind,
    state: failing ? 'failing' : 'ok',
    lastClass: failing ? 'tcp_refused' : 'ok',
    consecutiveFailures: failing ? 3 : 0,
    consecutiveSuccesses: failing ? 0 : 3,
    failureRatio: failing ? 1 : 0,
    failures: failing ? { tcp_refused: 3 } : {},
    probes: 3,
    sinceMs: 1_700_000_000_000,
    lastSeenMs: 1_700_000_003_000,
  };
}

/** A real localiser document: postgres on db-1 refusing while the host answers. */
const sampleDiagnosis: Diagnosis = localise({
  paths: ['app-1', 'app-2'].flatMap((a) => [
    samplePath(a, 'db-1/icmp', 'icmp', false),
    samplePath(a, 'db-1/postgres/tcp', 'tcp', true),
  ]),
  agents: ['app-1', 'app-2'].map((a) => ({
    agentId: `agent-${a}`,
    agent: a,
    labels: {},
    state: 'live' as const,
    lastSeenMs: 1_700_000_003_000,
    acceptedSeq: 3,
    droppedResults: 0,
    spoolBacklog: 0,
  })),
  inventory: [
    { name: 'app-1', address: '198.18.0.1', role: 'api', labels: { zone: 'a' } },
    { name: 'app-2', address: '198.18.0.2', role: 'api', labels: { zone: 'a' } },
    { name: 'db-1', address: '198.18.0.3', role: 'database', labels: { zone: 'b' } },
  ],
  nowMs: 1_700_000_004_000,
});

const sampleIncident: StoredIncident = {
  id: 7,
  openedAtMs: 1_700_000_004_000,
  firstFailureMs: 1_700_000_000_000,
  kind: 'service_down',
  summary: 'postgres on db-1 refuses connections',
  components: ['db-1'],
};

/** A collector core in memory: per-agentId watermarks, like the real one, and spies. */
class FakeCore implements CollectorCore {
  busy = false;
  healthy = true;
  planVersion = 'plan-v1';
  readonly watermarks = new Map<string, { agent: string; seq: number }>();
  /** Enrolled credentials by the hex of their digest. */
  readonly credentials = new Map<string, EnrolledCredential>();
  /** What the next enrolment answers instead of enrolling. */
  enrolAnswer: EnrolOutcome | undefined;
  /** What the next batch answers instead of the watermark's verdict. */
  ingestAnswer: IngestOutcome | undefined;

  readonly ingest = vi.fn(
    (
      batch: ReportBatch,
      _receivedAtMs: number,
      _body?: unknown,
      credential?: Credential,
      _backlog?: number,
      _version?: string,
    ): IngestOutcome => {
      if (this.ingestAnswer !== undefined) return this.ingestAnswer;
      const why =
        credential === undefined
          ? undefined
          : forbiddenReason(credential, batch.agent, batch.agentId);
      if (why !== undefined) return { status: 'forbidden', acceptedSeq: 0, message: why };
      const w = this.watermarks.get(batch.agentId) ?? { agent: batch.agent, seq: 0 };
      if (w.agent !== batch.agent) {
        return {
          status: 'conflict',
          acceptedSeq: w.seq,
          message: `agent id ${batch.agentId} belongs to ${w.agent}`,
        };
      }
      if (batch.seq <= w.seq) return { status: 'duplicate', acceptedSeq: w.seq };
      if (batch.seq > w.seq + 1 + (batch.dropped?.batches ?? 0)) {
        return { status: 'gap', acceptedSeq: w.seq, expectedSeq: w.seq + 1 };
      }
      this.watermarks.set(batch.agentId, { agent: batch.agent, seq: batch.seq });
      return { status: 'accepted', acceptedSeq: batch.seq };
    },
  );

  planRefusal(agent: string, credential: Credential): string | undefined {
    return forbiddenReason(credential, agent);
  }

  enrolled(digest: Buffer): EnrolledCredential | undefined {
    return this.credentials.get(digest.toString('hex'));
  }

  readonly enrol = vi.fn(
    (e: EnrolledCredential, digest: Buffer, _by: Credential, _nowMs: number): EnrolOutcome => {
      if (this.enrolAnswer !== undefined) return this.enrolAnswer;
      for (const [k, c] of this.credentials) if (c.agent === e.agent) this.credentials.delete(k);
      this.credentials.set(digest.toString('hex'), e);
      return { status: 'enrolled' };
    },
  );

  readonly plan = vi.fn((agent: string, _labels: Readonly<Record<string, string>>): Plan => ({
    version: this.planVersion,
    agent,
    generatedAtMs: 1,
    refreshIntervalMs: 60_000,
    reportIntervalMs: 10_000,
    targets: [],
  }));

  readonly paths = vi.fn((_filter: PathFilter): PathState[] => [
    {
      agent: 'app-1',
      target: 'db-1/tcp/postgres',
      component: 'db-1',
      service: 'postgres',
      kind: 'tcp',
      state: 'failing',
      lastClass: 'tcp_timeout',
      consecutiveFailures: 3,
      consecutiveSuccesses: 0,
      failureRatio: 0.5,
      failures: { tcp_timeout: 3 },
      probes: 6,
      sinceMs: 1,
      lastSeenMs: 2,
    },
  ]);

  readonly agents = vi.fn((): AgentLiveness[] => [
    {
      agentId: 'agent-0001',
      agent: 'app-1',
      labels: { zone: 'a' },
      state: 'live',
      lastSeenMs: 1,
      acceptedSeq: 4,
      droppedResults: 0,
      spoolBacklog: 0,
    },
  ]);

  readonly diagnosis = vi.fn((): Diagnosis => sampleDiagnosis);

  readonly incidents = vi.fn((_limit: number, _beforeId?: number): StoredIncident[] => [
    sampleIncident,
  ]);

  readonly incident = vi.fn((id: number): IncidentDetail | undefined =>
    id === sampleIncident.id ? { ...sampleIncident, events: [] } : undefined,
  );

  readonly postmortem = vi.fn((id: number): string | undefined =>
    id === sampleIncident.id ? '# Postmortem (draft): incident 7\n' : undefined,
  );

  overloaded(): boolean {
    return this.busy;
  }

  health() {
    return this.healthy
      ? { ok: true, agents: 1, paths: 1 }
      : { ok: false, agents: 1, paths: 1, detail: 'store unreachable' };
  }
}

function result(over: Partial<ProbeResult> = {}): ProbeResult {
  return {
    agent: 'app-1',
    target: 'db-1/tcp/postgres',
    address: '198.18.0.2:5432',
    kind: 'tcp',
    class: 'tcp_timeout',
    seq: 7,
    startedAtMs: 1_700_000_000_000,
    timings: { totalMs: 1000 },
    ...over,
  };
}

function batch(seq: number, over: Partial<ReportBatch> = {}): ReportBatch {
  return {
    agentId: 'agent-0001',
    agent: 'app-1',
    seq,
    createdAtMs: 1_700_000_000_000,
    results: [result()],
    summaries: [],
    ...over,
  };
}

/** 100 MB of zeros, gzipped (about 100 KB). */
const bomb = gzipSync(Buffer.alloc(100 * 1024 * 1024), { level: 9 });

/** Asserts the status and the error body; `message` is a substring or a pattern. */
function expectError(
  res: { statusCode: number; body: string },
  status: number,
  code: string,
  message: string | RegExp,
): void {
  expect(res.statusCode).toBe(status);
  const err = errorOf(res.body);
  expect(err.code).toBe(code);
  if (typeof message === 'string') expect(err.message).toContain(message);
  else expect(err.message).toMatch(message);
}

function errorOf(body: string): { code: string; message: string; [k: string]: unknown } {
  return (JSON.parse(body) as { error: { code: string; message: string } }).error;
}

describe('collector API (inject)', () => {
  let core: FakeCore;
  let app: FastifyInstance;
  let extraOpts: Partial<ApiOptions> = {};

  beforeEach(() => {
    core = new FakeCore();
    extraOpts = {};
  });
  afterEach(async () => {
    await app.close();
  });
  function build(over: Partial<ApiOptions> = {}): FastifyInstance {
    app = buildApi(core, { tokens, maxReportBytes: 1024 * 1024, ...extraOpts, ...over });
    return app;
  }
  function post(
    payload: string | Buffer | Readable,
    headers: Record<string, string> = { ...auth, ...json },
  ) {
    return build().inject({ method: 'POST', url: '/api/v1/reports', headers, payload });
  }

  describe('POST /api/v1/reports: auth', () => {
    it.each([
      ['missing', {}, 401, 'FL_ERR_AUTH', /missing bearer token/],
      ['wrong', { authorization: 'Bearer nope-0123456789' }, 401, 'FL_ERR_AUTH', /unknown token/],
      ['malformed', { authorization: `Basic ${token}` }, 401, 'FL_ERR_AUTH', /malformed/],
      [
        'revoked',
        { authorization: 'Bearer old-token-0123456789abcdef' },
        403,
        'FL_ERR_TOKEN_REVOKED',
        /^token 'old' is revoked$/,
      ],
    ])('%s token: refused and never reaches ingest', async (_what, headers, status, code, re) => {
      const res = await post(JSON.stringify(batch(1)), { ...json, ...headers });
      expectError(res, status, code, re);
      expect(core.ingest).not.toHaveBeenCalled();
    });

    it('the right token: 200 with the ack, and ingest gets the validated batch', async () => {
      const res = await post(JSON.stringify(batch(1)));
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ acceptedSeq: 1, duplicate: false });
      // With the body as received, which the store keeps for the batch's summaries.
      expect(core.ingest).toHaveBeenCalledWith(
        batch(1),
        expect.any(Number),
        {
          bytes: Buffer.from(JSON.stringify(batch(1))),
          gzip: false,
        },
        fleetCredential,
        0, // no faultline-backlog header: nothing spooled behind it
        undefined, // no user-agent: the agent's version is unknown
      );
    });
  });

  describe('POST /api/v1/reports: body', () => {
    it('gzip body: inflated, validated, accepted; ingest gets it still compressed', async () => {
      const gz = gzipSync(JSON.stringify(batch(1)));
      const res = await post(gz, { ...auth, ...json, 'content-encoding': 'gzip' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ acceptedSeq: 1, duplicate: false });
      expect(core.ingest).toHaveBeenCalledWith(
        batch(1),
        expect.any(Number),
        {
          bytes: gz,
          gzip: true,
        },
        fleetCredential,
        0, // no faultline-backlog header: nothing spooled behind it
        undefined, // no user-agent: the agent's version is unknown
      );
    });

    it('gzip body of unknown length (streamed): inflated as it comes, ingest gets the JSON', async () => {
      const text = JSON.stringify(batch(1));
      const res = await post(Readable.from([gzipSync(text)]), {
        ...auth,
        ...json,
        'content-encoding': 'gzip',
      });
      expect(res.statusCode).toBe(200);
      expect(core.ingest).toHaveBeenCalledWith(
        batch(1),
        expect.any(Number),
        {
          bytes: Buffer.from(text),
          gzip: false,
        },
        fleetCredential,
        0, // no faultline-backlog header: nothing spooled behind it
        undefined, // no user-agent: the agent's version is unknown
      );
    });

    it('gzip bomb (1 GB of zeros): 413 after inflating about the limit, not the whole', async () => {
      // Ten gzip members of 100 MB each: 1 GB inflated from ~1 MB on the wire.
      const big = Buffer.concat(Array.from({ length: 10 }, () => bomb));
      let consumed = 0;
      const chunks: Buffer[] = [];
      for (let i = 0; i < big.length; i += 1024) chunks.push(big.subarray(i, i + 1024));
      const source = new Readable({
        read() {
          const c = chunks.shift();
          if (c !== undefined) consumed += c.length;
          this.push(c ?? null);
        },
      });
      const res = await post(source, { ...auth, ...json, 'content-encoding': 'gzip' });
      expect(res.statusCode).toBe(413);
      expect(errorOf(res.body).code).toBe('FL_ERR_TOO_LARGE');
      // Inflating it all would read all ~1 MB of input; 1 MB of output needs ~1 KB of it,
      // plus what the stream buffers hold (~100 KB).
      expect(consumed).toBeLessThan(200 * 1024);
      expect(core.ingest).not.toHaveBeenCalled();
    });

    it('corrupt gzip: 400 FL_ERR_BAD_ENCODING', async () => {
      const res = await post(Buffer.from('not gzip at all'), {
        ...auth,
        ...json,
        'content-encoding': 'gzip',
      });
      expectError(res, 400, 'FL_ERR_BAD_ENCODING', 'not valid gzip');
    });

    it('oversized plain body: 413', async () => {
      const big = JSON.stringify(
        batch(1, { results: [result({ error: { message: 'x'.repeat(1000) } })] }),
      ).padEnd(2 * 1024 * 1024, ' ');
      const res = await post(big);
      expectError(res, 413, 'FL_ERR_TOO_LARGE', '1048576 bytes');
      expect(core.ingest).not.toHaveBeenCalled();
    });

    it('more results than maxResultsPerBatch: 413 before validation', async () => {
      extraOpts = { maxResultsPerBatch: 2 };
      const res = await post(JSON.stringify(batch(1, { results: [result(), result(), result()] })));
      expect(res.statusCode).toBe(413);
      expect(errorOf(res.body).message).toMatch(/3 results .* at most 2/);
    });

    it('malformed JSON: 400 naming line and column', async () => {
      const res = await post('{\n  "agentId": "agent-0001",\n  "seq": }');
      expect(res.statusCode).toBe(400);
      const err = errorOf(res.body);
      expect(err).toMatchObject({ code: 'FL_ERR_INVALID_JSON', line: 3, column: 10 });
      expect(err.message).toBe('malformed JSON at line 3, column 10: expected a value, found "}"');
    });

    it('empty body: 400', async () => {
      const res = await post('');
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body).code).toBe('FL_ERR_INVALID_JSON');
    });

    it('deeply nested JSON: 400 before parsing', async () => {
      const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
      const res = await post(deep);
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body).message).toMatch(/nested deeper than 64/);
    });

    it('schema violations: 400 naming the paths', async () => {
      const bad = {
        ...batch(1),
        results: [result(), result({ class: 'okk' as never })],
        extra: true,
      };
      const res = await post(JSON.stringify(bad));
      expect(res.statusCode).toBe(400);
      const err = errorOf(res.body);
      expect(err.code).toBe('FL_ERR_INVALID_REPORT');
      expect(err.message).toContain('results[1].class: expected one of: ok, dns_error');
      expect(err.message).toContain('(actual: "okk")');
      expect(err.message).toContain('unknown key "extra"');
      expect(err.issues).toContainEqual({ path: 'extra', message: 'unknown key "extra"' });
      expect(core.ingest).not.toHaveBeenCalled();
    });

    it('a missing field is named as missing', async () => {
      const { seq: _seq, ...noSeq } = batch(1);
      const res = await post(JSON.stringify(noSeq));
      expect(res.statusCode).toBe(400);
      expect(errorOf(res.body).message).toBe('invalid report batch: seq: missing');
    });

    it.each([
      ['text/plain', { 'content-type': 'text/plain' }, /application\/json .*"text\/plain"/],
      ['no content type', {}, /application\/json/],
      ['brotli', { ...json, 'content-encoding': 'br' }, /unsupported content-encoding "br"/],
    ])('%s: 415, nothing ingested', async (_what, headers, re) => {
      const res = await post(JSON.stringify(batch(1)), { ...auth, ...headers });
      expectError(res, 415, 'FL_ERR_MEDIA_TYPE', re);
      expect(core.ingest).not.toHaveBeenCalled();
    });
  });

  describe('POST /api/v1/reports: faultline-backlog', () => {
    it('passes the batches spooled behind this one to the core', async () => {
      const res = await post(JSON.stringify(batch(1)), {
        ...auth,
        ...json,
        'faultline-backlog': '7',
      });
      expect(res.statusCode).toBe(200);
      expect(vi.mocked(core.ingest).mock.calls[0]?.[4]).toBe(7);
    });

    it.each([['-1'], ['1.5'], ['many'], ['9999999999']])(
      'a malformed one (%s): 400 naming the header, nothing ingested',
      async (value) => {
        const res = await post(JSON.stringify(batch(1)), {
          ...auth,
          ...json,
          'faultline-backlog': value,
        });
        expectError(res, 400, 'FL_ERR_BAD_REQUEST', /faultline-backlog: expected .*whole number/);
        expect(core.ingest).not.toHaveBeenCalled();
      },
    );
  });

  describe("POST /api/v1/reports: the agent's version (user-agent)", () => {
    it.each([
      ['faultline-agent/1.4.2', '1.4.2'],
      ['faultline-agent/2.0.0-rc.1+build.7 (linux)', '2.0.0-rc.1+build.7'],
      [undefined, undefined],
      ['curl/8.5.0', undefined],
      ['faultline-agent/', undefined],
      ['faultline-agent/<script>', undefined],
    ])('user-agent %s: accepted, the core gets version %s', async (ua, version) => {
      const res = await post(JSON.stringify(batch(1)), {
        ...auth,
        ...json,
        ...(ua === undefined ? {} : { 'user-agent': ua }),
      });
      expect(res.statusCode).toBe(200);
      expect(vi.mocked(core.ingest).mock.calls[0]?.[5]).toBe(version);
    });
  });

  describe('POST /api/v1/reports: sequence', () => {
    it('a replayed batch: 200 duplicate, applied once', async () => {
      build();
      const send = (b: ReportBatch) =>
        app.inject({
          method: 'POST',
          url: '/api/v1/reports',
          headers: { ...auth, ...json },
          payload: JSON.stringify(b),
        });
      expect((await send(batch(1))).json()).toEqual({ acceptedSeq: 1, duplicate: false });
      expect((await send(batch(1))).json()).toEqual({ acceptedSeq: 1, duplicate: true });
      expect(core.watermarks.get('agent-0001')?.seq).toBe(1);
    });

    it('out of order: 409 FL_ERR_SEQ_GAP with expectedSeq and acceptedSeq', async () => {
      const res = await post(JSON.stringify(batch(3)));
      expect(res.statusCode).toBe(409);
      expect(errorOf(res.body)).toMatchObject({
        code: 'FL_ERR_SEQ_GAP',
        expectedSeq: 1,
        acceptedSeq: 0,
      });
    });

    it('agent id held by another name: 409 FL_ERR_AGENT_CONFLICT with the core message', async () => {
      core.watermarks.set('agent-0001', { agent: 'app-2', seq: 5 });
      const res = await post(JSON.stringify(batch(6)));
      expect(res.statusCode).toBe(409);
      expect(errorOf(res.body)).toMatchObject({
        code: 'FL_ERR_AGENT_CONFLICT',
        message: 'agent id agent-0001 belongs to app-2',
        acceptedSeq: 5,
      });
    });

    it('overloaded: 503 with Retry-After 1–3 s before the body is parsed', async () => {
      core.busy = true;
      // Not even JSON: a 400 here would mean the body was parsed first.
      const res = await post('{{{ not json');
      expect(res.statusCode).toBe(503);
      expect(errorOf(res.body).code).toBe('FL_ERR_OVERLOADED');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(3);
      expect(core.ingest).not.toHaveBeenCalled();
    });

    it('ingest throwing: 500 FL_ERR_INTERNAL without the internal message', async () => {
      core.ingest.mockImplementationOnce(() => {
        throw new Error('SQLITE_BUSY: secret path /var/lib/x');
      });
      const res = await post(JSON.stringify(batch(1)));
      expect(res.statusCode).toBe(500);
      const err = errorOf(res.body);
      expect(err.code).toBe('FL_ERR_INTERNAL');
      expect(err.message).not.toContain('SQLITE');
    });
  });

  describe('POST /api/v1/reports: store failure', () => {
    it('a store failure: 503 FL_ERR_STORE with Retry-After, so the agent keeps the batch and retries', async () => {
      core.ingest.mockImplementationOnce(() => {
        throw new FaultlineError('FL_ERR_STORE', 'database or disk is full (SQLITE_FULL)');
      });
      const res = await post(JSON.stringify(batch(1)));
      expect(res.statusCode).toBe(503);
      const err = errorOf(res.body);
      expect(err.code).toBe('FL_ERR_STORE');
      expect(err.message).toContain('SQLITE_FULL');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(5);
    });
  });

  describe('POST /api/v1/reports: hostile input', () => {
    const hostile: [string, string][] = [
      [
        '__proto__ at the top',
        `{"__proto__":{"polluted":"yes"},${JSON.stringify(batch(1)).slice(1)}`,
      ],
      [
        '__proto__ in detail',
        JSON.stringify(batch(1)).replace(
          '"timings"',
          '"detail":{"__proto__":{"polluted":"yes"}},"timings"',
        ),
      ],
      [
        'escaped __proto__',
        `{"\\u005f_proto__":{"polluted":"yes"},${JSON.stringify(batch(1)).slice(1)}`,
      ],
      [
        'constructor.prototype',
        JSON.stringify(batch(1)).replace(
          '"timings"',
          '"detail":{"constructor":{"prototype":{"polluted":"yes"}}},"timings"',
        ),
      ],
    ];
    it.each(hostile)('%s: 400, nothing ingested, Object.prototype clean', async (_what, text) => {
      for (const [payload, headers] of [
        [text, { ...auth, ...json }],
        [gzipSync(text), { ...auth, ...json, 'content-encoding': 'gzip' }],
      ] as const) {
        const res = await post(payload, headers);
        expectError(res, 400, 'FL_ERR_INVALID_JSON', 'prototype-pollution');
        await app.close();
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype).not.toHaveProperty('polluted');
      expect(core.ingest).not.toHaveBeenCalled();
      build(); // afterEach closes it
    });

    it('control characters: data in results is accepted as sent; an agent name with them is refused; logs stay escaped', async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      });
      extraOpts = { log: pino({ level: 'debug' }, sink) };
      const b = batch(1, { results: [result({ error: { message: 'bad\r\nnews\u001b[0m' } })] });
      const res = await post(JSON.stringify(b));
      expect(res.statusCode).toBe(200);
      expect(core.ingest.mock.calls[0]?.[0]).toEqual(b);

      const hostile = batch(2, { agent: 'app\u001b[31m\u0000-1' });
      const refused = await post(JSON.stringify(hostile));
      expect(refused.statusCode).toBe(400);
      expect(refused.json()).toMatchObject({ error: { code: 'FL_ERR_INVALID_REPORT' } });
      expect(refused.json<{ error: { message: string } }>().error.message).toContain('agent');
      expect(core.ingest).toHaveBeenCalledTimes(1);
      const log = lines.join('');
      expect(log).not.toContain('\u001b');
      expect(log).not.toContain('\u0000');
      for (const line of log.trim().split('\n'))
        expect(() => JSON.parse(line) as unknown).not.toThrow();
    });
  });

  describe('GET /api/v1/plan', () => {
    const get = (url: string, headers: Record<string, string> = auth) =>
      build().inject({ method: 'GET', url, headers });

    it('needs a token', async () => {
      const res = await get('/api/v1/plan?agent=app-1', {});
      expect(res.statusCode).toBe(401);
      expect(core.plan).not.toHaveBeenCalled();
    });

    it('answers the plan with its version as ETag; labels and the source address for the core', async () => {
      const res = await build().inject({
        method: 'GET',
        url: '/api/v1/plan?agent=app-1&labels=zone%3Da,rack=r1',
        headers: auth,
        remoteAddress: '10.0.4.7',
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers.etag).toBe('"plan-v1"');
      expect(res.json()).toMatchObject({ version: 'plan-v1', agent: 'app-1' });
      expect(core.plan).toHaveBeenCalledWith('app-1', { zone: 'a', rack: 'r1' }, '10.0.4.7');
    });

    it.each([
      ['the same version', '"plan-v1"', 304],
      ['weak form', 'W/"plan-v1"', 304],
      ['in a list', '"old", "plan-v1"', 304],
      ['a star', '*', 304],
      ['another version', '"plan-v0"', 200],
    ])('If-None-Match %s: %i', async (_what, inm, status) => {
      const res = await get('/api/v1/plan?agent=app-1', { ...auth, 'if-none-match': inm });
      expect(res.statusCode).toBe(status);
      if (status === 304) {
        expect(res.body).toBe('');
        expect(res.headers.etag).toBe('"plan-v1"');
      }
    });

    it.each([
      ['no agent', '/api/v1/plan', /agent: missing/],
      ['a bad agent name', '/api/v1/plan?agent=a%20b', /agent: expected an agent name/],
      ['an agent twice', '/api/v1/plan?agent=a&agent=b', /agent: expected a string/],
      [
        'an unknown parameter',
        '/api/v1/plan?agent=a&lables=x',
        /unknown key "lables" \(did you mean "labels"\?\)/,
      ],
      [
        'a label without =',
        '/api/v1/plan?agent=a&labels=zone',
        /labels: pair 1 "zone" is not name=value/,
      ],
      ['a bad label name', '/api/v1/plan?agent=a&labels=1x=a', /invalid label name "1x"/],
      [
        'a reserved label name',
        '/api/v1/plan?agent=a&labels=__proto__=a',
        /invalid label name "__proto__"/,
      ],
      ['an empty value', '/api/v1/plan?agent=a&labels=zone=', /invalid value for "zone"/],
      ['a duplicate label', '/api/v1/plan?agent=a&labels=z=a,z=b', /duplicate label "z"/],
      ['a trailing comma', '/api/v1/plan?agent=a&labels=z=a,', /pair 2 "" is not name=value/],
    ])('%s: 400', async (_what, url, re) => {
      const res = await get(url);
      expectError(res, 400, 'FL_ERR_BAD_REQUEST', re);
      expect(core.plan).not.toHaveBeenCalled();
    });
  });

  describe('read endpoints (as a viewer)', () => {
    beforeEach(() => {
      extraOpts = { viewers };
    });
    const get = (url: string) => build().inject({ method: 'GET', url, headers: asViewer });

    it('GET /api/v1/paths with a viewer token, filters passed to the core', async () => {
      const res = await get('/api/v1/paths?agent=app-1&component=db-1&kind=tcp&state=failing');
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ paths: core.paths.mock.results[0]?.value as unknown });
      expect(core.paths).toHaveBeenCalledWith({
        agent: 'app-1',
        component: 'db-1',
        kind: 'tcp',
        state: 'failing',
      });
    });

    it.each([
      [
        'an unknown parameter',
        '/api/v1/paths?stat=ok',
        /unknown key "stat" \(did you mean "state"\?\)/,
      ],
      [
        'an invalid state',
        '/api/v1/paths?state=down',
        /state: expected one of: ok, failing, degraded, unknown/,
      ],
      ['a bad kind', '/api/v1/paths?kind=TCP!', /kind: expected a probe kind/],
      [
        'a control character',
        '/api/v1/paths?component=a%07b',
        /component: expected a component name/,
      ],
      ['agents with a parameter', '/api/v1/agents?state=live', /unknown key "state"/],
    ])('%s: 400', async (_what, url, re) => {
      const res = await get(url);
      expectError(res, 400, 'FL_ERR_BAD_REQUEST', re);
      expect(core.paths).not.toHaveBeenCalled();
    });

    it('GET /api/v1/diagnosis: the core document as is, to a viewer and (readAccess open) to anyone; it validates', async () => {
      expect(sampleDiagnosis.hypotheses[0]?.kind).toBe('service_down');
      for (const [headers, readAccess] of [
        [asViewer, 'token'],
        [{}, 'open'],
      ] as const) {
        const res = await build({ readAccess }).inject({
          method: 'GET',
          url: '/api/v1/diagnosis',
          headers,
        });
        await app.close();
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        expect(res.headers['cache-control']).toBe('no-cache');
        const body: unknown = res.json();
        expect(DiagnosisSchema.parse(body)).toEqual(sampleDiagnosis);
      }
      expect(core.diagnosis).toHaveBeenCalledTimes(2);
    });

    it('GET /api/v1/diagnosis with a query parameter: 400 naming it, the core not asked', async () => {
      const res = await get('/api/v1/diagnosis?kind=service_down');
      expectError(res, 400, 'FL_ERR_BAD_REQUEST', /unknown key "kind"/);
      expect(core.diagnosis).not.toHaveBeenCalled();
    });

    it('GET /api/v1/diagnosis when the core throws: 500 FL_ERR_INTERNAL, no internals', async () => {
      core.diagnosis.mockImplementationOnce(() => {
        throw new Error('secret internals');
      });
      const res = await get('/api/v1/diagnosis');
      expectError(res, 500, 'FL_ERR_INTERNAL', /collector log has the details/);
      expect(res.body).not.toContain('secret internals');
    });

    it('GET /api/v1/incidents lists them (limit and before passed on); one incident; its postmortem as Markdown', async () => {
      const list = await get('/api/v1/incidents?limit=5&before=9');
      expect(list.statusCode).toBe(200);
      expect(list.json()).toEqual({ incidents: [sampleIncident] });
      expect(core.incidents).toHaveBeenCalledWith(5, 9);
      await app.close();
      const one = await get('/api/v1/incidents/7');
      expect(one.statusCode).toBe(200);
      expect(one.json()).toEqual({ ...sampleIncident, events: [] });
      await app.close();
      const pm = await get('/api/v1/incidents/7/postmortem');
      expect(pm.statusCode).toBe(200);
      expect(pm.headers['content-type']).toBe('text/markdown; charset=utf-8');
      expect(pm.body).toBe('# Postmortem (draft): incident 7\n');
    });

    it.each([
      ['an unknown incident', '/api/v1/incidents/8', 404, 'FL_ERR_NOT_FOUND', /no incident 8/],
      [
        'its postmortem',
        '/api/v1/incidents/8/postmortem',
        404,
        'FL_ERR_NOT_FOUND',
        /no incident 8/,
      ],
      [
        'a bad id',
        '/api/v1/incidents/1%3B%20drop',
        400,
        'FL_ERR_BAD_REQUEST',
        /invalid incident id "1; drop"/,
      ],
      ['id zero', '/api/v1/incidents/0', 400, 'FL_ERR_BAD_REQUEST', /expected a positive integer/],
      [
        'a bad limit',
        '/api/v1/incidents?limit=5000',
        400,
        'FL_ERR_BAD_REQUEST',
        /limit: expected a number of incidents from 1 to 1000/,
      ],
      [
        'an unknown parameter',
        '/api/v1/incidents?status=open',
        400,
        'FL_ERR_BAD_REQUEST',
        /unknown key "status"/,
      ],
    ])('incidents, %s: %i', async (_what, url, status, code, re) => {
      const res = await get(url);
      expectError(res, status, code, re);
    });

    it('GET /api/v1/agents lists agent liveness, ids and seqs included for a viewer', async () => {
      const res = await get('/api/v1/agents');
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ agents: core.agents.mock.results[0]?.value as unknown });
      expect(res.json()).toMatchObject({
        agents: [{ agent: 'app-1', state: 'live', agentId: expect.any(String) as unknown }],
      });
    });

    it("GET /api/v1/agents: each agent's version and spool backlog as the core has them", async () => {
      core.agents.mockReturnValueOnce([
        {
          agentId: 'agent-0001',
          agent: 'app-1',
          labels: {},
          state: 'live',
          lastSeenMs: 1,
          acceptedSeq: 4,
          droppedResults: 0,
          spoolBacklog: 12,
          version: '1.4.2',
        },
      ]);
      const res = await get('/api/v1/agents');
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ agents: [{ spoolBacklog: 12, version: '1.4.2' }] });
    });

    it('/healthz: 200 when ok, 503 with the error shape when not', async () => {
      const ok = await get('/healthz');
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({ status: 'ok', ok: true, agents: 1, paths: 1 });
      await app.close();
      core.healthy = false;
      const bad = await get('/healthz');
      expect(bad.statusCode).toBe(503);
      expect(bad.json()).toMatchObject({
        status: 'unhealthy',
        error: { code: 'FL_ERR_UNHEALTHY', message: 'store unreachable' },
      });
    });

    it('/metrics: 404 without a handler, the handler text with one', async () => {
      const absent = await get('/metrics');
      expect(absent.statusCode).toBe(404);
      expect(errorOf(absent.body).code).toBe('FL_ERR_NOT_FOUND');
      await app.close();
      extraOpts = { metricsHandler: async () => 'faultline_paths 1\n' };
      const res = await get('/metrics');
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.body).toBe('faultline_paths 1\n');
    });
  });

  describe('read endpoints: who may read', () => {
    const readUrls = [
      '/api/v1/paths',
      '/api/v1/agents',
      '/api/v1/diagnosis',
      '/api/v1/incidents',
      '/api/v1/incidents/7',
      '/api/v1/incidents/7/postmortem',
    ];
    const read = (
      url: string,
      headers: Record<string, string>,
      over: Partial<ApiOptions> = {},
      method: 'GET' | 'HEAD' = 'GET',
    ) => build({ viewers, ...over }).inject({ method, url, headers });
    const coreAsked = (): number =>
      core.paths.mock.calls.length +
      core.agents.mock.calls.length +
      core.diagnosis.mock.calls.length +
      core.incidents.mock.calls.length +
      core.incident.mock.calls.length +
      core.postmortem.mock.calls.length;

    const refusals = [
      ['no token', {}, 401, 'FL_ERR_AUTH', /missing bearer token/],
      [
        'an unknown token',
        { authorization: 'Bearer nope-0123456789abcdef' },
        401,
        'FL_ERR_AUTH',
        /unknown token/,
      ],
      [
        'a malformed header',
        { authorization: `Basic ${viewerToken}` },
        401,
        'FL_ERR_AUTH',
        /malformed/,
      ],
      [
        'an agent token',
        auth,
        403,
        'FL_ERR_FORBIDDEN',
        /agent tokens cannot read; use a viewer token/,
      ],
      [
        'a revoked agent token',
        { authorization: 'Bearer old-token-0123456789abcdef' },
        403,
        'FL_ERR_FORBIDDEN',
        /agent tokens cannot read/,
      ],
      [
        'a revoked viewer token',
        { authorization: 'Bearer gone-viewer-0123456789abcdef' },
        403,
        'FL_ERR_TOKEN_REVOKED',
        /token 'gone' is revoked/,
      ],
    ] as const;

    for (const url of readUrls) {
      it.each(refusals)(
        `${url}, %s: %i %s, the core not asked`,
        async (_what, headers, status, code, re) => {
          const res = await read(url, headers);
          expectError(res, status, code, re);
          expect(coreAsked()).toBe(0);
        },
      );

      it(`${url} with a viewer token: 200`, async () => {
        const res = await read(url, asViewer);
        expect(res.statusCode, res.body).toBe(200);
      });
    }

    it('HEAD is guarded like GET', async () => {
      expect((await read('/api/v1/agents', {}, {}, 'HEAD')).statusCode).toBe(401);
      await app.close();
      expect((await read('/api/v1/agents', asViewer, {}, 'HEAD')).statusCode).toBe(200);
    });

    it('a 401 asks for a bearer token (WWW-Authenticate)', async () => {
      const res = await read('/api/v1/paths', {});
      expect(res.headers['www-authenticate']).toBe('Bearer realm="faultline"');
    });

    it('with no viewers configured, reading is refused to everyone (the default is token)', async () => {
      for (const headers of [{}, auth]) {
        const res = await build().inject({ method: 'GET', url: '/api/v1/paths', headers });
        await app.close();
        expect(res.statusCode).toBeGreaterThanOrEqual(401);
        expect(res.statusCode).toBeLessThanOrEqual(403);
      }
      expect(core.paths).not.toHaveBeenCalled();
    });

    it('readAccess open: every read endpoint answers without a token', async () => {
      for (const url of readUrls) {
        const res = await read(url, {}, { readAccess: 'open' });
        await app.close();
        expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
      }
    });

    it('readAccess open: /agents without a token leaves out agent ids and sequence numbers', async () => {
      const anon = await read('/api/v1/agents', {}, { readAccess: 'open' });
      expect(anon.statusCode).toBe(200);
      const full = core.agents.mock.results[0]?.value as AgentLiveness[];
      expect(full[0]?.agentId).toBeDefined();
      expect(anon.body).not.toContain(full[0]!.agentId);
      const shown = anon.json<{ agents: Record<string, unknown>[] }>().agents;
      expect(shown).toHaveLength(full.length);
      for (const a of shown) {
        expect(a).not.toHaveProperty('agentId');
        expect(a).not.toHaveProperty('acceptedSeq');
        expect(a).toHaveProperty('agent');
        expect(a).toHaveProperty('state');
      }
      await app.close();
      const viewer = await read('/api/v1/agents', asViewer, { readAccess: 'open' });
      expect(viewer.json()).toMatchObject({
        agents: [{ agentId: full[0]!.agentId, acceptedSeq: full[0]!.acceptedSeq }],
      });
    });

    it('readAccess open: a token that is sent must still be a viewer token', async () => {
      for (const [headers, status, code] of [
        [auth, 403, 'FL_ERR_FORBIDDEN'],
        [{ authorization: 'Bearer nope-0123456789abcdef' }, 401, 'FL_ERR_AUTH'],
        [{ authorization: 'Bearer gone-viewer-0123456789abcdef' }, 403, 'FL_ERR_TOKEN_REVOKED'],
      ] as const) {
        const res = await read('/api/v1/agents', headers, { readAccess: 'open' });
        await app.close();
        expectError(res, status, code, /./);
      }
      expect(core.agents).not.toHaveBeenCalled();
    });

    it('a viewer token cannot report or fetch a plan', async () => {
      const plan = await read('/api/v1/plan?agent=app-1', asViewer);
      expectError(plan, 401, 'FL_ERR_AUTH', /unknown token/);
      expect(core.plan).not.toHaveBeenCalled();
    });

    it('/healthz and /metrics stay open', async () => {
      extraOpts = { metricsHandler: async () => 'faultline_paths 1\n' };
      expect((await read('/healthz', {})).statusCode).toBe(200);
      await app.close();
      expect((await read('/metrics', {})).statusCode).toBe(200);
    });
  });

  describe('identity: credentials, enrolment, binding', () => {
    const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
    const report = (t: string, b: ReportBatch) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/reports',
        headers: { ...bearer(t), ...json },
        payload: JSON.stringify(b),
      });
    const enrol = (t: string, body: unknown) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/enrol',
        headers: { ...bearer(t), ...json },
        payload: JSON.stringify(body),
      });
    const plan = (t: string, agent: string) =>
      app.inject({ method: 'GET', url: `/api/v1/plan?agent=${agent}`, headers: bearer(t) });

    it('a bootstrap token cannot report or fetch a plan: 403 FL_ERR_ENROL_REQUIRED', async () => {
      build();
      expectError(
        await report(bootstrapToken, batch(1)),
        403,
        'FL_ERR_ENROL_REQUIRED',
        'enrol first: POST /api/v1/enrol',
      );
      expectError(await plan(bootstrapToken, 'app-1'), 403, 'FL_ERR_ENROL_REQUIRED', 'bootstrap');
      expect(core.ingest).not.toHaveBeenCalled();
      expect(core.plan).not.toHaveBeenCalled();
    });

    it('enrols: 201 with a fresh secret that then reports and fetches only its own plan', async () => {
      build();
      const res = await enrol(bootstrapToken, { agent: 'app-1', agentId: 'agent-0001' });
      expect(res.statusCode).toBe(201);
      const body = res.json<{ agent: string; agentId: string; token: string }>();
      expect(body).toMatchObject({ agent: 'app-1', agentId: 'agent-0001' });
      expect(body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(core.enrol.mock.calls[0]?.[1]).toEqual(digestOf(body.token));
      expect((await report(body.token, batch(1))).statusCode).toBe(200);
      expect((await plan(body.token, 'app-1')).statusCode).toBe(200);
      expectError(await plan(body.token, 'app-2'), 403, 'FL_ERR_FORBIDDEN', '"app-2"');
      // Its agent id only.
      expectError(
        await report(body.token, batch(1, { agentId: 'agent-0002' })),
        403,
        'FL_ERR_FORBIDDEN',
        'agent id agent-0001, not agent-0002',
      );
      // Enrolling again revokes the first secret: it is unknown now.
      const again = (await enrol(bootstrapToken, { agent: 'app-1', agentId: 'agent-0001' })).json<{
        token: string;
      }>();
      expect(again.token).not.toBe(body.token);
      expectError(await report(body.token, batch(2)), 401, 'FL_ERR_AUTH', 'unknown token');
      expect((await report(again.token, batch(2))).statusCode).toBe(200);
    });

    it.each([
      ['an agent-role token', token, 403, 'FL_ERR_NOT_BOOTSTRAP', 'not a bootstrap token'],
      ['a name its patterns do not allow', bootstrapToken, 403, 'FL_ERR_FORBIDDEN', '"web-1"'],
      ['no token', '', 401, 'FL_ERR_AUTH', 'missing bearer token'],
    ])('enrol with %s: refused', async (_what, t, status, code, message) => {
      build();
      const headers = t === '' ? json : { ...bearer(t), ...json };
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/enrol',
        headers,
        payload: JSON.stringify({ agent: 'web-1', agentId: 'agent-0009' }),
      });
      expectError(res, status, code, message);
      expect(core.enrol).not.toHaveBeenCalled();
    });

    it('enrol: a bad body names the field; a name held by a live agent: 409 saying when it frees', async () => {
      build();
      const bad = await enrol(bootstrapToken, { agent: 'app 1', agentId: 'x' });
      expectError(bad, 400, 'FL_ERR_BAD_REQUEST', 'agentId');
      expect(bad.json<{ error: { message: string } }>().error.message).toContain('agent');
      core.enrolAnswer = { status: 'conflict', message: 'bound; free at …', freeAtMs: 42 };
      const res = await enrol(bootstrapToken, { agent: 'app-1', agentId: 'agent-0003' });
      expectError(res, 409, 'FL_ERR_AGENT_CONFLICT', 'free at');
      expect(errorOf(res.body).freeAtMs).toBe(42);
    });

    it('enrol and plan requests are rate-limited per credential: 429 FL_ERR_RATE + Retry-After', async () => {
      build({
        rateLimits: {
          enrol: { burst: 2, perSecond: 0.1 },
          planOwn: { burst: 3, perSecond: 0.5 },
        },
      });
      for (const i of [1, 2]) {
        const res = await enrol(bootstrapToken, { agent: `app-${i}`, agentId: `agent-000${i}` });
        expect(res.statusCode).toBe(201);
      }
      const refused = await enrol(bootstrapToken, { agent: 'app-3', agentId: 'agent-0003' });
      expectError(refused, 429, 'FL_ERR_RATE', 'too many enrol requests');
      expect(refused.headers['retry-after']).toBe('10');
      for (let i = 0; i < 3; i++) expect((await plan(dbToken, 'db-1')).statusCode).toBe(200);
      const res = await plan(dbToken, 'db-1');
      expectError(res, 429, 'FL_ERR_RATE', 'token "db-1"');
      expect(res.headers['retry-after']).toBe('2');
      // A fleet token has its own (larger) bucket.
      expect((await plan(token, 'db-1')).statusCode).toBe(200);
    });

    it('a plan for a name the token may not use: 403 FL_ERR_FORBIDDEN, no plan made', async () => {
      build();
      expectError(
        await plan(webToken, 'db-1'),
        403,
        'FL_ERR_FORBIDDEN',
        'may not act as agent "db-1"',
      );
      expect((await plan(webToken, 'web-7')).statusCode).toBe(200);
      expect(core.plan).toHaveBeenCalledTimes(1);
    });

    it('a result of another agent in the batch: 400 naming its index, nothing ingested', async () => {
      build();
      const b = batch(1, { results: [result(), result({ agent: 'db-1' })] });
      const res = await report(token, b);
      expectError(
        res,
        400,
        'FL_ERR_INVALID_REPORT',
        'results[1].agent "db-1" is not the batch\'s agent "app-1"',
      );
      expect(core.ingest).not.toHaveBeenCalled();
    });

    it.each([
      [{ status: 'forbidden', acceptedSeq: 0, message: 'bound' }, 403, 'FL_ERR_FORBIDDEN'],
      [
        { status: 'implausible', acceptedSeq: 4, message: 'too far' },
        400,
        'FL_ERR_SEQ_IMPLAUSIBLE',
      ],
      [
        { status: 'conflict', acceptedSeq: 4, message: 'live', freeAtMs: 9 },
        409,
        'FL_ERR_AGENT_CONFLICT',
      ],
    ] as const)('ingest answering %o: %i %s with the details', async (answer, status, code) => {
      build();
      core.ingestAnswer = answer;
      const res = await report(token, batch(5));
      expectError(res, status, code, answer.message);
      if (answer.status !== 'forbidden') expect(errorOf(res.body).acceptedSeq).toBe(4);
      if (answer.status === 'conflict') expect(errorOf(res.body).freeAtMs).toBe(9);
    });

    it('hands ingest the credential that sent the batch', async () => {
      build();
      await report(webToken, batch(1, { agent: 'web-1', results: [result({ agent: 'web-1' })] }));
      expect(core.ingest.mock.calls[0]?.[3]).toMatchObject({ id: 'web', agents: ['web-*'] });
      const res = await report(webToken, batch(1));
      expectError(res, 403, 'FL_ERR_FORBIDDEN', 'token "web" may not act as agent "app-1"');
    });
  });

  describe('routing', () => {
    it('unknown route: 404 in the error shape', async () => {
      const res = await build().inject({ method: 'GET', url: '/api/v2/nothing?x=1' });
      expect(res.statusCode).toBe(404);
      expect(errorOf(res.body)).toEqual({
        code: 'FL_ERR_NOT_FOUND',
        message: 'no such endpoint: "/api/v2/nothing"',
        what: 'endpoint',
      });
    });

    it.each([
      ['GET', '/api/v1/reports', 'POST'],
      ['DELETE', '/api/v1/paths', 'GET, HEAD'],
      ['POST', '/api/v1/plan', 'GET, HEAD'],
      ['POST', '/api/v1/diagnosis', 'GET, HEAD'],
    ] as const)('%s %s: 405 with Allow: %s', async (method, url, allow) => {
      const res = await build().inject({
        method,
        url,
        headers: json,
        payload: method === 'GET' ? undefined : '{}',
      });
      expect(res.statusCode).toBe(405);
      expect(res.headers.allow).toBe(allow);
      expect(errorOf(res.body).code).toBe('FL_ERR_METHOD');
    });
  });
});

describe('collector API (real sockets)', () => {
  const core = new FakeCore();
  let pki: TestPki;
  let dispatcher: Agent;
  const apps: FastifyInstance[] = [];

  beforeAll(async () => {
    pki = await TestPki.create();
    dispatcher = new Agent({ connect: { ca: pki.ca.cert } });
  });
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await dispatcher?.close();
    await pki?.destroy();
  });
  async function serve(opts: Partial<ApiOptions> = {}): Promise<number> {
    const app = buildApi(core, { tokens, maxReportBytes: 1024 * 1024, ...opts });
    apps.push(app);
    await app.listen({ host: '127.0.0.1', port: 0 });
    return (app.server.address() as AddressInfo).port;
  }
  const gzHeaders = { ...auth, ...json, 'content-encoding': 'gzip' };

  it('http: a gzip report is accepted; a gzip bomb is refused with 413', async () => {
    const port = await serve();
    const ok = await request(`http://127.0.0.1:${port}/api/v1/reports`, {
      method: 'POST',
      headers: gzHeaders,
      body: gzipSync(JSON.stringify(batch(1, { agentId: 'agent-http-1' }))),
    });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toEqual({ acceptedSeq: 1, duplicate: false });

    const boom = await request(`http://127.0.0.1:${port}/api/v1/reports`, {
      method: 'POST',
      headers: gzHeaders,
      body: bomb,
    });
    expect(boom.statusCode).toBe(413);
    expect(((await boom.body.json()) as { error: { code: string } }).error.code).toBe(
      'FL_ERR_TOO_LARGE',
    );
  });

  it('https with a certificate from a test CA: health and a gzip report', async () => {
    const cert = await pki.issue({ cn: 'localhost', sans: ['IP:127.0.0.1', 'DNS:localhost'] });
    const port = await serve({ tls: { cert: cert.cert, key: cert.key } });
    const health = await request(`https://127.0.0.1:${port}/healthz`, { dispatcher });
    expect(health.statusCode).toBe(200);
    expect(await health.body.json()).toMatchObject({ status: 'ok' });

    const ok = await request(`https://127.0.0.1:${port}/api/v1/reports`, {
      method: 'POST',
      headers: gzHeaders,
      body: gzipSync(JSON.stringify(batch(1, { agentId: 'agent-https-1' }))),
      dispatcher,
    });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toEqual({ acceptedSeq: 1, duplicate: false });

    // Plain HTTP to the TLS port gets no API answer.
    await expect(request(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});

describe('helpers', () => {
  it.each([
    ['{"a":}', 1, 6, 'expected a value, found "}"'],
    ['{"a":1', 1, 7, 'expected "," or "}", found the end of the body'],
    ['{"a":1}x', 1, 8, 'expected nothing after the JSON value, found "x"'],
    ['{a:1}', 1, 2, 'expected a property name in double quotes, found "a"'],
    ['[1,2,]', 1, 6, 'expected a value, found "]"'],
    ['[1 2]', 1, 4, 'expected "," or "]", found "2"'],
    ['{"a" 1}', 1, 6, 'expected ":" after the property name, found "1"'],
    ['{"a":tru}', 1, 9, 'expected true, found "}"'],
    ['"ab\u0001"', 1, 4, 'expected an escape instead of a raw control character, found "\\u0001"'],
    ['"\\x"', 1, 3, 'expected a valid escape after "\\", found "x"'],
    ['"\\u12g4"', 1, 6, 'expected 4 hex digits after \\u, found "g"'],
    ['[-]', 1, 3, 'expected a digit, found "]"'],
    ['[1.]', 1, 4, 'expected a digit, found "]"'],
    ['[1e]', 1, 4, 'expected a digit, found "]"'],
    ['"open', 1, 6, 'expected the closing quote of a string, found the end of the body'],
    ['', 1, 1, 'expected a value, found the end of the body'],
    ['{\n "a": [\n  1,\n  ?]}', 4, 3, 'expected a value, found "?"'],
  ])('locateJsonError(%j): line %i, column %i', (text, line, column, message) => {
    expect(() => JSON.parse(text) as unknown).toThrow();
    expect(locateJsonError(text)).toMatchObject({ line, column, message });
  });

  it.each(['{}', '[]', '{"a":[1,-2.5e+3,true,false,null,"x\\n\\u00e9"]}', ' 0 ', '"\\/"'])(
    'locateJsonError(%j): valid JSON has no error',
    (text) => {
      expect(() => JSON.parse(text) as unknown).not.toThrow();
      expect(locateJsonError(text)).toBeUndefined();
    },
  );

  it('locateJsonError survives hostile nesting', () => {
    const text = `${'['.repeat(1_000_000)}x`;
    expect(locateJsonError(text)).toMatchObject({ position: 1_000_000 });
  });

  it('jsonDepthExceeds counts brackets outside strings only', () => {
    expect(jsonDepthExceeds(Buffer.from('[[[]]]'), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('[[[[]]]]'), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from('["[[[[", "\\"[[[["]'), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('[[],[],[],[],[]]'), 2)).toBe(false);
  });

  it('parseLabels: empty is none; pairs in order', () => {
    expect(parseLabels('')).toEqual({});
    expect(parseLabels('zone=eu-1a,rack=r 7,switch=sw-2')).toEqual({
      zone: 'eu-1a',
      rack: 'r 7',
      switch: 'sw-2',
    });
    expect(Object.getPrototypeOf(parseLabels('constructor=x'))).toBe(Object.prototype);
  });

  it('etagFor quotes a plain version and hashes one that cannot be an entity tag', () => {
    expect(etagFor('abc123')).toBe('"abc123"');
    expect(etagFor('has "quotes" and spaces')).toMatch(/^"[0-9a-f]{32}"$/);
    expect(ifNoneMatchHits(undefined, '"a"')).toBe(false);
    expect(ifNoneMatchHits('"b", W/"a"', '"a"')).toBe(true);
  });
});
