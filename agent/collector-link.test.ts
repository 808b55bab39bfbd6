import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { faultlineVersion } from '../lib/version.js';
import { pollUntil } from '../lab/poll-until.js';
import type { Plan } from '../wire/plan.js';
import { ReportBatchSchema } from '../wire/report.js';
import type { ReportBatch } from '../wire/report.js';
import type { ProbeResult } from '../wire/result.js';
import { CollectorLink, recentAnswerMs } from './collector-link.js';
import { backoffDelayMs, classifyReply, parseRetryAfterMs } from './link-replies.js';
import type { CollectorLinkOptions } from './collector-link.js';
import type { DeliverySource, DestinationStats, ReportDestination } from './report-destination.js';

/** The stats of a stand-in message-bus destination named `bus`. */
function busStats(
  accepted: number,
  acceptedSeq: number,
  connected: boolean,
  source: DeliverySource | undefined,
): DestinationStats {
  return {
    name: 'bus',
    label: 'nats://bus',
    posts: 0,
    accepted,
    duplicates: 0,
    gaps: 0,
    rejected: 0,
    implausibleAcks: 0,
    seqRefusals: 0,
    retries: 0,
    acceptedSeq,
    connected,
    enrolState: 'direct',
    spool: source?.cursor.stats(),
  };
}

const log = pino({ level: 'silent' });

/** What the fake collector does with the next report, before (or instead of) the contract. */
type Fault =
  | { readonly status: number; readonly retryAfter?: string; readonly body?: unknown }
  | 'destroy'
  | 'acceptThenDestroy'
  | 'hang';

function plan(version: string, over: Partial<Plan> = {}): Plan {
  return {
    version,
    agent: 'app-1',
    generatedAtMs: 1,
    refreshIntervalMs: 1000,
    reportIntervalMs: 100,
    targets: [
      {
        name: 'db-1/tcp/postgres',
        component: 'db-1',
        service: 'postgres',
        kind: 'tcp',
        address: '198.18.0.10:5432',
        intervalMs: 1000,
        timeoutMs: 500,
        options: {},
        labels: {},
      },
    ],
    ...over,
  };
}

/**
 * A small collector implementing the report contract: per-agent watermark, duplicates
 * acknowledged without change, an undeclared gap refused with 409 {expectedSeq}, a declared
 * one accepted; bearer token; scripted faults.
 */
class FakeCollector {
  server: Server | undefined;
  port = 0;
  token = 'secret';
  plan: Plan = plan('v1');
  readonly watermark = new Map<string, number>();
  /** Batches accepted, in the order they were applied. */
  readonly accepted: ReportBatch[] = [];
  readonly posts: { seq: number; status: number }[] = [];
  /** The `faultline-backlog` header of each batch that reached the handler, by seq. */
  readonly backlogs = new Map<number, string | undefined>();
  /** The `user-agent` of every request, by method and path. */
  readonly userAgents = new Map<string, string | undefined>();
  readonly planRequests: {
    url: string;
    authorization: string | undefined;
    status: number;
  }[] = [];
  readonly faults: Fault[] = [];
  hanging: ServerResponse[] = [];
  healthChecks = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(port = 0): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Down: the port refuses connections. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    for (const res of this.hanging) res.destroy();
    this.hanging = [];
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  seqs(): number[] {
    return this.accepted.map((b) => b.seq);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    this.userAgents.set(`${req.method} ${req.url?.split('?')[0]}`, req.headers['user-agent']);
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/healthz') {
      this.healthChecks++;
      reply(200, { status: 'ok' });
      return;
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      if (req.url?.startsWith('/api/v1/reports') === true)
        this.posts.push({ seq: -1, status: 401 });
      reply(401, { error: 'unknown token' });
      return;
    }
    if (req.method === 'GET' && req.url?.startsWith('/api/v1/plan') === true) {
      const etag = `"${this.plan.version}"`;
      const notModified = req.headers['if-none-match'] === etag;
      this.planRequests.push({
        url: req.url,
        authorization: req.headers.authorization,
        status: notModified ? 304 : 200,
      });
      if (notModified) res.writeHead(304, { etag }).end();
      else reply(200, this.plan, { etag });
      return;
    }
    if (req.method !== 'POST' || req.url !== '/api/v1/reports') {
      reply(404, { error: 'not found' });
      return;
    }
    if (
      req.headers['content-encoding'] !== 'gzip' ||
      req.headers['content-type'] !== 'application/json'
    ) {
      reply(415, { error: 'expected gzip JSON' });
      return;
    }
    const parsed = ReportBatchSchema.safeParse(
      JSON.parse(gunzipSync(Buffer.concat(chunks)).toString()),
    );
    if (!parsed.success) {
      reply(400, { error: parsed.error.message });
      return;
    }
    const batch = parsed.data;
    const backlog = req.headers['faultline-backlog'];
    this.backlogs.set(batch.seq, typeof backlog === 'string' ? backlog : undefined);
    const fault = this.faults.shift();
    if (fault === 'destroy') {
      this.posts.push({ seq: batch.seq, status: 0 });
      res.socket?.destroy();
      return;
    }
    if (fault === 'hang') {
      this.hanging.push(res);
      return;
    }
    if (typeof fault === 'object') {
      this.posts.push({ seq: batch.seq, status: fault.status });
      reply(
        fault.status,
        fault.body ?? { error: 'scripted' },
        fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter },
      );
      return;
    }
    const wm = this.watermark.get(batch.agentId) ?? 0;
    let status = 200;
    let body: unknown;
    if (batch.seq <= wm) body = { acceptedSeq: wm, duplicate: true };
    else if (batch.seq === wm + 1 || batch.dropped?.batches === batch.seq - wm - 1) {
      this.watermark.set(batch.agentId, batch.seq);
      this.accepted.push(batch);
      body = { acceptedSeq: batch.seq, duplicate: false };
    } else {
      status = 409;
      // The real collector's error shape.
      body = {
        error: { code: 'FL_ERR_SEQ_GAP', message: 'gap', acceptedSeq: wm, expectedSeq: wm + 1 },
      };
    }
    this.posts.push({ seq: batch.seq, status });
    if (fault === 'acceptThenDestroy') {
      // Stored, but the answer is lost: the agent must retry and get `duplicate`.
      res.socket?.destroy();
      return;
    }
    reply(status, body);
  }
}

let probeSeq = 0;
function failure(
  target = 'db-1/tcp/postgres',
  cls: 'tcp_timeout' | 'tcp_refused' = 'tcp_timeout',
): ProbeResult {
  probeSeq++;
  return {
    agent: 'app-1',
    target,
    address: '198.18.0.10:5432',
    kind: 'tcp',
    class: cls,
    seq: probeSeq,
    // Timestamps far from "now": the collector must receive them as recorded.
    startedAtMs: 1_600_000_000_000 + probeSeq * 7,
    timings: { totalMs: 500 },
  };
}

function delivered(fake: FakeCollector): ProbeResult[] {
  return fake.accepted.flatMap((b) => b.results);
}

/** Every accepted seq exactly once, contiguous from 1 (or declared dropped), in order. */
function expectContiguous(fake: FakeCollector): void {
  const seqs = fake.seqs();
  expect(new Set(seqs).size).toBe(seqs.length);
  let expected = 1;
  for (const b of fake.accepted) {
    expect(b.seq).toBe(expected + (b.dropped?.batches ?? 0));
    expected = b.seq + 1;
  }
}

describe('CollectorLink against a fake collector', () => {
  let dir: string;
  let fake: FakeCollector;
  const links: CollectorLink[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'faultline-link-'));
    fake = new FakeCollector();
    await fake.listen();
  });
  afterEach(async () => {
    for (const l of links.splice(0)) await l.stop(0);
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  function link(over: Partial<CollectorLinkOptions> = {}): CollectorLink {
    const l = new CollectorLink({
      url: fake.url,
      token: 'secret',
      agent: 'app-1',
      labels: { zone: 'a', rack: 'r1' },
      stateDir: dir,
      log,
      onPlan: () => undefined,
      earlyFlushMs: false,
      backoff: { baseMs: 10, capMs: 100 },
      authRetryMs: 200,
      requestTimeoutMs: 2000,
      startPlanTimeoutMs: 1000,
      ...over,
    });
    links.push(l);
    return l;
  }

  async function drained(l: CollectorLink): Promise<void> {
    await pollUntil('the spool drained', () => l.stats().spool?.batches === 0, {
      timeoutMs: 10_000,
    });
  }

  it('fetches the plan with the bearer token, agent and labels; caches it', async () => {
    const l = link();
    const p = await l.start();
    expect(p?.version).toBe('v1');
    const req = fake.planRequests[0]!;
    expect(req.authorization).toBe('Bearer secret');
    const q = new URL(req.url, 'http://x').searchParams;
    expect(q.get('agent')).toBe('app-1');
    expect(q.get('labels')).toBe('zone=a,rack=r1');
    const cached = JSON.parse(await readFile(join(dir, 'plan.json'), 'utf8')) as Plan;
    expect(cached.version).toBe('v1');
  });

  it('delivers every batch exactly once, in order, through lost answers, 429, 503 and resets', async () => {
    const l = link();
    await l.start();
    fake.faults.push(
      'acceptThenDestroy',
      { status: 429, retryAfter: '1' },
      { status: 503 },
      'destroy',
    );
    const fed: ProbeResult[] = [];
    for (let i = 0; i < 8; i++) {
      // Alternating classes: each result is a state change, so each one is sent in full.
      const r = failure(undefined, i % 2 === 0 ? 'tcp_timeout' : 'tcp_refused');
      fed.push(r);
      l.observe(r, { name: r.target, kind: r.kind });
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    await pollUntil('every fault used', () => fake.faults.length === 0, { timeoutMs: 10_000 });
    await drained(l);
    await l.stop();

    expectContiguous(fake);
    expect(fake.accepted.every((b) => b.dropped === undefined)).toBe(true);
    // Every result once, as recorded, in probe order.
    expect(delivered(fake)).toEqual(fed);
    const stats = l.stats();
    expect(stats.duplicates).toBeGreaterThanOrEqual(1);
    expect(stats.retries).toBeGreaterThanOrEqual(3);
    expect(stats.acceptedSeq).toBe(fake.seqs().at(-1));
    // The lost answer was retried: the same seq was posted twice, stored once.
    const lost = fake.posts.find((p, i) => fake.posts.findIndex((q) => q.seq === p.seq) !== i);
    expect(lost).toBeDefined();
    // Batches carry the agent's identity and plan version.
    expect(fake.accepted[0]).toMatchObject({
      agent: 'app-1',
      labels: { zone: 'a', rack: 'r1' },
      planVersion: 'v1',
    });
  });

  it('honours Retry-After: no retry before it elapses', async () => {
    const l = link();
    await l.start();
    fake.faults.push({ status: 503, retryAfter: '1' });
    await pollUntil('the 503', () => fake.posts.find((p) => p.status === 503));
    const t503 = Date.now();
    await pollUntil('a batch accepted after the 503', () => fake.accepted.length > 0, {
      timeoutMs: 5000,
    });
    expect(Date.now() - t503).toBeGreaterThanOrEqual(950);
    expect(fake.posts.filter((p) => p.status === 503)).toHaveLength(1);
  });

  it('collector down for a while, then up: everything spooled arrives, in order, once', async () => {
    const l = link();
    await l.start();
    await pollUntil('a first heartbeat', () => fake.accepted.length > 0);
    const port = fake.port;
    await fake.close();
    const sentBefore = Math.max(0, ...fake.backlogs.keys());
    const fed: ProbeResult[] = [];
    for (let i = 0; i < 5; i++) {
      const r = failure();
      fed.push(r);
      l.observe(r, { name: r.target, kind: r.kind });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await pollUntil('batches spooled while down', () => (l.stats().spool?.batches ?? 0) >= 5);
    expect(l.stats().connected).toBe(false);
    await fake.listen(port);
    await drained(l);
    expectContiguous(fake);
    expect(delivered(fake)).toEqual(fed);
    expect(l.stats().connected).toBe(true);
    // Each replayed batch said how many were spooled behind it, down to 0 for the last: the
    // collector does not count the view of an agent that is catching up.
    // (A batch spooled during the replay adds one to what the ones before it said.)
    const replayed = [...fake.backlogs.keys()]
      .filter((q) => q > sentBefore)
      .sort((a, b) => a - b)
      .map((q) => Number(fake.backlogs.get(q)));
    expect(replayed[0]).toBeGreaterThanOrEqual(4);
    // One fewer behind each batch sent, give or take those spooled meanwhile: never a drop
    // of more than one (the collector would see an agent caught up before it is).
    for (let i = 1; i < replayed.length; i++)
      expect(replayed[i]!, `backlog after batch ${i}`).toBeGreaterThanOrEqual(replayed[i - 1]! - 1);
    expect(replayed.at(-1)).toBe(0);
    // Every request says the agent's version (the collector's Agents view shows it).
    const ua = `faultline-agent/${faultlineVersion}`;
    expect(Object.fromEntries(fake.userAgents)).toEqual({
      'POST /api/v1/enrol': ua,
      'GET /api/v1/plan': ua,
      'POST /api/v1/reports': ua,
    });
  });

  it('after an outage, delivery resumes within a health poll of the collector return, not after the backoff', async () => {
    // random 0.999: backoff sleeps 250, 500, 1000, 2000, 4000 ms… deterministic; health polls every ≤250 ms.
    const l = link({
      backoff: { baseMs: 250, capMs: 30_000 },
      healthPollMs: 200,
      random: () => 0.999,
    });
    await l.start();
    await pollUntil('a first heartbeat', () => fake.accepted.length > 0);
    const port = fake.port;
    await fake.close();
    // Down long enough that the next backoff sleep is 4 s.
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    expect(l.stats().connected).toBe(false);
    const before = fake.accepted.length;
    const upMs = Date.now();
    await fake.listen(port);
    await pollUntil('delivery resumed', () => fake.accepted.length > before, { timeoutMs: 10_000 });
    const resumeMs = Date.now() - upMs;
    expect(fake.healthChecks).toBeGreaterThan(0);
    expect(fake.userAgents.get('GET /healthz')).toBe(`faultline-agent/${faultlineVersion}`);
    // Without the health poll the pending 4 s backoff would still be running (≥ 3 s left).
    expect(resumeMs).toBeLessThan(1_000);
    await drained(l);
    expectContiguous(fake);
  });

  it('after a restart, what was spooled is delivered with its original seq (no gap, no duplicate)', async () => {
    const first = link();
    await first.start();
    await pollUntil('a heartbeat', () => fake.accepted.length > 0);
    const port = fake.port;
    await fake.close();
    const r = failure();
    first.observe(r, { name: r.target, kind: r.kind });
    await first.stop(0); // the open period goes into the spool
    const spooled = first.stats().spool!.batches;
    expect(spooled).toBeGreaterThan(0);

    await fake.listen(port);
    const second = link();
    await second.start();
    await drained(second);
    expectContiguous(fake);
    expect(delivered(fake)).toEqual([r]);
  });

  it('uses the cached plan while the collector is away; a new version on its return calls onPlan', async () => {
    const first = link();
    await first.start();
    await first.stop(0);
    const port = fake.port;
    await fake.close();

    const plans: Plan[] = [];
    const second = link({ onPlan: (p) => plans.push(p) });
    const t0 = Date.now();
    const p = await second.start();
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(p?.version).toBe('v1');
    expect(second.plan()?.version).toBe('v1');

    fake.plan = plan('v2', { targets: [] });
    await fake.listen(port);
    await pollUntil('onPlan(v2)', () => plans.length > 0, { timeoutMs: 5000 });
    expect(plans.map((x) => x.version)).toEqual(['v2']);
    expect(JSON.parse(await readFile(join(dir, 'plan.json'), 'utf8'))).toMatchObject({
      version: 'v2',
    });
  });

  it('a plan refresh calls onPlan only when the version changes', async () => {
    const plans: string[] = [];
    const l = link({ onPlan: (p) => plans.push(p.version) });
    await l.start();
    await pollUntil('a refresh of the same plan', () => fake.planRequests.length >= 2, {
      timeoutMs: 5000,
    });
    expect(plans).toEqual([]);
    // The refresh was conditional: an unchanged plan costs a 304, not the whole plan.
    expect(fake.planRequests[1]?.status).toBe(304);
    fake.plan = plan('v3');
    await pollUntil('onPlan(v3)', () => plans.length > 0, { timeoutMs: 5000 });
    expect(plans).toEqual(['v3']);
    await pollUntil('the next batches carry v3', () => fake.accepted.at(-1)?.planVersion === 'v3');
  });

  it('no collector and no cached plan: start returns undefined, the plan comes later', async () => {
    const port = fake.port;
    await fake.close();
    const plans: string[] = [];
    const l = link({ onPlan: (p) => plans.push(p.version) });
    expect(await l.start()).toBeUndefined();
    await fake.listen(port);
    await pollUntil('the first plan', () => plans.length > 0, { timeoutMs: 5000 });
    expect(plans).toEqual(['v1']);
  });

  it('409 gap (the collector lost state): declares the missing batches dropped and goes on', async () => {
    const l = link();
    await l.start();
    await pollUntil('3 batches accepted', () => fake.accepted.length >= 3);
    // The collector comes back from an old backup: it only has seq 1.
    const agentId = fake.accepted[0]!.agentId;
    fake.watermark.set(agentId, 1);
    await pollUntil('a batch accepted with a declared gap', () =>
      fake.accepted.find((b) => b.dropped !== undefined),
    );
    const healed = fake.accepted.find((b) => b.dropped !== undefined)!;
    expect(healed.dropped!.batches).toBe(healed.seq - 2);
    expect(fake.posts.some((p) => p.status === 409)).toBe(true);
    expect(l.stats().gaps).toBeGreaterThanOrEqual(1);
    await pollUntil('delivery goes on after the gap', () => fake.seqs().at(-1)! > healed.seq);
  });

  it('an implausible ack (acceptedSeq above every seq spooled, e.g. 2^53−1): counted, batch kept, seq never skipped ahead', async () => {
    const l = link();
    await l.start();
    await pollUntil('a batch accepted', () => fake.accepted.length > 0);
    const agentId = fake.accepted[0]!.agentId;
    // Someone else reported under this id with an absurd seq: the fake now acks that.
    fake.watermark.set(agentId, Number.MAX_SAFE_INTEGER);
    const r = failure();
    l.observe(r, { name: r.target, kind: r.kind });
    await pollUntil('implausible acks counted', () => l.stats().implausibleAcks >= 2);
    const stats = l.stats();
    // Nothing was acknowledged by the absurd ack, the seq did not jump, nothing rejected.
    expect(stats.spool!.nextSeq).toBeLessThan(1000);
    expect(stats.acceptedSeq).toBeLessThan(1000);
    expect(stats.spool!.batches).toBeGreaterThan(0);
    expect(stats.rejected).toBe(0);
    expect(await readdir(join(dir, 'spool', 'rejected'))).toEqual([]);
    // The real collector is restored (H1 refuses such a seq): the kept batches arrive, in order.
    fake.watermark.set(agentId, fake.accepted.at(-1)!.seq);
    await drained(l);
    expect(delivered(fake)).toContainEqual(r);
    expectContiguous(fake);
  });

  for (const refusal of [
    { status: 400, code: 'FL_ERR_SEQ_IMPLAUSIBLE' },
    { status: 400, code: 'FL_ERR_SEQ_GAP' },
    { status: 409, code: 'FL_ERR_AGENT_CONFLICT' },
    { status: 403, code: 'FL_ERR_FORBIDDEN' },
    { status: 403, code: 'FL_ERR_ENROL_REQUIRED' },
  ]) {
    it(`a seq/identity refusal (${refusal.status} ${refusal.code}) never moves the batch to rejected/`, async () => {
      const l = link();
      await l.start();
      await pollUntil('a batch accepted', () => fake.accepted.length > 0);
      const r = failure();
      fake.faults.push(
        { status: refusal.status, body: { error: { code: refusal.code, message: 'refused' } } },
        { status: refusal.status, body: { error: { code: refusal.code, message: 'refused' } } },
      );
      l.observe(r, { name: r.target, kind: r.kind });
      await pollUntil('both refusals', () => fake.faults.length === 0);
      await drained(l);
      expect(delivered(fake)).toContainEqual(r);
      expect(l.stats().rejected).toBe(0);
      expect(l.stats().seqRefusals).toBeGreaterThanOrEqual(1);
      expect(await readdir(join(dir, 'spool', 'rejected'))).toEqual([]);
      expectContiguous(fake);
    });
  }

  it('400: the batch is moved to rejected/, declared dropped in the next, never retried', async () => {
    const l = link();
    await l.start();
    await pollUntil('a batch accepted', () => fake.accepted.length > 0);
    fake.faults.push({ status: 400, body: { error: 'results[0].class: invalid' } });
    await pollUntil('the 400', () => fake.posts.find((p) => p.status === 400));
    const bad = fake.posts.find((p) => p.status === 400)!.seq;
    await pollUntil('the next batch', () => fake.seqs().some((s) => s > bad));
    const next = fake.accepted.find((b) => b.seq > bad)!;
    expect(next.seq).toBe(bad + 1);
    expect(next.dropped).toEqual({ batches: 1, results: 0 });
    expect(fake.posts.filter((p) => p.seq === bad)).toHaveLength(1);
    const rejected = await readdir(join(dir, 'spool', 'rejected'));
    expect(rejected.some((f) => f.startsWith(String(bad).padStart(12, '0')))).toBe(true);
    expect(l.stats().rejected).toBe(1);
  });

  it('401: retries slowly until the token is accepted, losing nothing', async () => {
    fake.token = 'rotated';
    const l = link();
    await l.start(); // the plan is refused too: no plan yet
    const r = failure();
    l.observe(r, { name: r.target, kind: r.kind });
    // Without a plan the period is the default 1 s: wait for the first refused report.
    await pollUntil('a refused report', () => fake.posts.some((p) => p.status === 401));
    const before = fake.posts.length;
    await new Promise((resolve) => setTimeout(resolve, 700));
    const refused = fake.posts.slice(before).filter((p) => p.status === 401).length;
    // authRetryMs 200 (+≤10%): a few retries in 700 ms, not a tight loop.
    expect(refused).toBeGreaterThanOrEqual(1);
    expect(refused).toBeLessThanOrEqual(5);
    fake.token = 'secret';
    await drained(l);
    expect(delivered(fake)).toEqual([r]);
  });

  it('stop() is bounded with a hung collector, and keeps the unsent batches in the spool', async () => {
    const l = link({ requestTimeoutMs: 60_000 });
    await l.start();
    fake.faults.push('hang');
    const r = failure();
    l.observe(r, { name: r.target, kind: r.kind });
    await pollUntil('a request hanging', () => fake.hanging.length > 0);
    const t0 = Date.now();
    await l.stop(300);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(l.stats().spool!.batches).toBeGreaterThan(0);
  });
});

describe('CollectorLink with two collectors', () => {
  let dir: string;
  const fakes: FakeCollector[] = [];
  const links: CollectorLink[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'faultline-link2-'));
  });
  afterEach(async () => {
    for (const l of links.splice(0)) await l.stop(0);
    for (const f of fakes.splice(0)) await f.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function fake(p: Plan): Promise<FakeCollector> {
    const f = new FakeCollector();
    f.plan = p;
    await f.listen();
    fakes.push(f);
    return f;
  }

  it('delivers every batch to each once, one down delays nobody, and follows the newest plan', async () => {
    const a = await fake(plan('v1', { generatedAtMs: 1 }));
    const b = await fake(plan('v2', { generatedAtMs: 5 }));
    const plans: string[] = [];
    const l = new CollectorLink({
      collectors: [
        { url: a.url, token: 'secret' },
        { url: b.url, token: 'secret' },
      ],
      agent: 'app-1',
      labels: { zone: 'a' },
      stateDir: dir,
      log,
      onPlan: (p) => plans.push(p.version),
      earlyFlushMs: false,
      backoff: { baseMs: 10, capMs: 100 },
      healthPollMs: 100,
      requestTimeoutMs: 2000,
      startPlanTimeoutMs: 1000,
    });
    links.push(l);
    expect((await l.start())?.version).toBe('v2');
    // Each collector has its own state dir: its credential and cached plan.
    const dirs = await readdir(join(dir, 'collectors'));
    expect(dirs).toHaveLength(2);
    const cachedVersions = await Promise.all(
      dirs.map(
        async (d) =>
          (JSON.parse(await readFile(join(dir, 'collectors', d, 'plan.json'), 'utf8')) as Plan)
            .version,
      ),
    );
    expect(cachedVersions.sort()).toEqual(['v1', 'v2']);

    const bPort = b.port;
    await b.close();
    const fed: ProbeResult[] = [];
    for (let i = 0; i < 6; i++) {
      const r = failure(undefined, i % 2 === 0 ? 'tcp_timeout' : 'tcp_refused');
      fed.push(r);
      l.observe(r, { name: r.target, kind: r.kind });
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    await pollUntil(
      'collector a has every result while b is down',
      () => delivered(a).length === fed.length,
      {
        timeoutMs: 10_000,
      },
    );
    // Kept in the spool for b; a has taken everything (the link's next batch, made since,
    // may be on its way to a for a moment: looked at until it has arrived).
    const down = await pollUntil(
      'collector a has nothing waiting',
      () => {
        const st = l.stats();
        const atA = st.collectors.find((c) => c.label === a.url);
        return atA?.spool?.batches === 0 ? st : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(down.spool!.batches).toBeGreaterThan(0);
    const byLabel = new Map(down.collectors.map((c) => [c.label, c]));
    expect(byLabel.get(a.url)).toMatchObject({ connected: true, spool: { batches: 0 } });
    expect(byLabel.get(b.url)?.connected).toBe(false);
    expect(byLabel.get(b.url)?.spool?.batches).toBeGreaterThan(0);

    await b.listen(bPort);
    await pollUntil('the spool drained to both', () => l.stats().spool?.batches === 0, {
      timeoutMs: 10_000,
    });
    expect(delivered(a)).toEqual(fed);
    expect(delivered(b)).toEqual(fed);
    expectContiguous(a);
    expectContiguous(b);
    expect(a.accepted.every((x) => x.dropped === undefined)).toBe(true);
    expect(b.accepted.every((x) => x.dropped === undefined)).toBe(true);

    // A newer plan on either collector wins.
    a.plan = plan('v3', { generatedAtMs: 9 });
    await pollUntil('the newest plan taken', () => plans.includes('v3'), { timeoutMs: 5000 });
    expect(l.plan()?.version).toBe('v3');
  });

  it('another destination kind takes a cursor like a collector: the spool waits for it too', async () => {
    const a = await fake(plan('v1'));
    const got: number[] = [];
    let open = false;
    let source: DeliverySource | undefined;
    let stopped = false;
    // A destination that takes batches only while `open`: a message bus, say.
    const bus: ReportDestination = {
      name: 'bus',
      deliver: (s) => {
        source = s;
        void (async () => {
          while (!stopped) {
            const b = open ? await s.cursor.peek() : undefined;
            if (b !== undefined) {
              got.push(b.seq);
              await s.cursor.ack(b.seq);
            } else await new Promise((r) => setTimeout(r, 20));
          }
        })();
      },
      drained: () => Promise.resolve(),
      connected: () => open,
      stop: async () => {
        stopped = true;
      },
      stats: () => busStats(got.length, got.at(-1) ?? 0, open, source),
    };
    const l = new CollectorLink({
      url: a.url,
      token: 'secret',
      destinations: [bus],
      agent: 'app-1',
      labels: {},
      stateDir: dir,
      log,
      onPlan: () => undefined,
      earlyFlushMs: false,
      backoff: { baseMs: 10, capMs: 100 },
      startPlanTimeoutMs: 1000,
    });
    links.push(l);
    await l.start();
    for (let i = 0; i < 4; i++) {
      const r = failure(undefined, i % 2 === 0 ? 'tcp_timeout' : 'tcp_refused');
      l.observe(r, { name: r.target, kind: r.kind });
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    await pollUntil('the collector has the results', () => delivered(a).length === 4, {
      timeoutMs: 10_000,
    });
    // The collector has them; the spool keeps them for the bus.
    expect(l.stats().spool!.batches).toBeGreaterThan(0);
    expect(l.stats().others[0]?.spool?.batches).toBeGreaterThan(0);
    open = true;
    await pollUntil('the bus drained its cursor', () => l.stats().spool?.batches === 0, {
      timeoutMs: 10_000,
    });
    expect(got).toEqual(a.seqs().filter((s) => s <= got.at(-1)!));
    expect(got[0]).toBe(1);
  });

  it('at the stop, a destination that took a batch moments ago and failed once since still gets the drain; one silent for longer does not', async () => {
    for (const [agoMs, drains] of [
      [1_000, 1],
      [recentAnswerMs + 1_000, 0],
      [undefined, 0],
    ] as const) {
      const a = await fake(plan('v1'));
      let asked = 0;
      let source: DeliverySource | undefined;
      // A bus that failed its last publish (a node restarting): not connected now.
      const bus: ReportDestination = {
        name: 'bus',
        deliver: (s) => {
          source = s;
        },
        drained: () => {
          asked++;
          return Promise.resolve();
        },
        connected: () => false,
        answeredAtMs: () => (agoMs === undefined ? undefined : Date.now() - agoMs),
        stop: () => Promise.resolve(),
        stats: () => busStats(0, 0, false, source),
      };
      const stateDir = await mkdtemp(join(tmpdir(), 'fl-link-stop-'));
      const l = new CollectorLink({
        url: a.url,
        token: 'secret',
        destinations: [bus],
        agent: 'app-1',
        labels: {},
        stateDir,
        log,
        onPlan: () => undefined,
        earlyFlushMs: false,
        startPlanTimeoutMs: 1000,
      });
      await l.start();
      const r = failure(undefined, 'tcp_timeout');
      l.observe(r, { name: r.target, kind: r.kind });
      await l.stop(500);
      await rm(stateDir, { recursive: true, force: true });
      expect(asked, `answered ${String(agoMs)} ms ago`).toBe(drains);
    }
  });

  it('refuses url and collectors together, and the same collector twice', () => {
    const base = { agent: 'x', labels: {}, stateDir: dir, log, onPlan: () => undefined };
    expect(
      () =>
        new CollectorLink({
          ...base,
          url: 'http://a:1',
          token: 't',
          collectors: [{ url: 'http://b:1', token: 't' }],
        }),
    ).toThrow(/not both/);
    expect(
      () =>
        new CollectorLink({
          ...base,
          collectors: [
            { url: 'http://b:1', token: 't' },
            { url: 'http://b:1/', token: 't' },
          ],
        }),
    ).toThrow(/twice/);
  });
});

describe('backoff and replies', () => {
  it('full jitter stays within [0, min(cap, base·2^(n−1))] and reaches the cap', () => {
    for (let attempt = 1; attempt <= 40; attempt++) {
      const ceiling = Math.min(30_000, 250 * 2 ** (attempt - 1));
      expect(backoffDelayMs(attempt, 250, 30_000, () => 0)).toBe(0);
      const top = backoffDelayMs(attempt, 250, 30_000, () => 0.999999);
      expect(top).toBeLessThanOrEqual(ceiling);
      expect(top).toBeGreaterThanOrEqual(ceiling - 1);
    }
    expect(backoffDelayMs(1, 250, 30_000, () => 0.999999)).toBeLessThanOrEqual(250);
    expect(backoffDelayMs(100, 250, 30_000, () => 0.999999)).toBeLessThanOrEqual(30_000);
    const samples = Array.from({ length: 1000 }, () => backoffDelayMs(5, 250, 30_000));
    expect(Math.max(...samples)).toBeLessThanOrEqual(4000);
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    // Spread out, not in step.
    expect(new Set(samples).size).toBeGreaterThan(500);
  });

  it.each([
    ['2', 2000],
    ['0', 0],
    ['99999', 600_000],
    [new Date(Date.UTC(2030, 0, 1, 0, 0, 5)).toUTCString(), 5000],
    ['soon', undefined],
    [undefined, undefined],
  ])('Retry-After %s → %s ms', (value, ms) => {
    expect(parseRetryAfterMs(value, Date.UTC(2030, 0, 1, 0, 0, 0))).toBe(ms);
  });

  it.each([
    [200, '{"acceptedSeq":5,"duplicate":false}', 'acked'],
    [200, 'not json', 'backoff'],
    [409, '{"expectedSeq":3}', 'gap'],
    [409, '{"error":{"code":"FL_ERR_SEQ_GAP","message":"…","expectedSeq":3}}', 'gap'],
    [409, '{"error":{"code":"FL_ERR_AGENT_CONFLICT","message":"held by app-2"}}', 'slow'],
    [429, '', 'backoff'],
    [503, '', 'backoff'],
    [401, '', 'slow'],
    [403, '', 'slow'],
    [415, '', 'slow'],
    [400, '{"error":"bad"}', 'reject'],
    [413, '', 'reject'],
    [500, '', 'backoff'],
    [404, '', 'backoff'],
  ])('%i %s → %s', (status, body, kind) => {
    expect(classifyReply(status, {}, body, () => 0).kind).toBe(kind);
  });

  it('429 with Retry-After waits that long, plus at most 10%', () => {
    expect(classifyReply(429, { 'retry-after': '3' }, '', () => 0)).toMatchObject({
      kind: 'wait',
      delayMs: 3000,
    });
    expect(classifyReply(429, { 'retry-after': '3' }, '', () => 0.999)).toMatchObject({
      kind: 'wait',
      delayMs: 3300,
    });
  });
});
