import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pollUntil } from '../lab/poll-until.js';
import type { Plan } from '../wire/plan.js';
import type { ReportBatch } from '../wire/report.js';
import { CollectorLink } from './collector-link.js';
import type { CollectorLinkOptions } from './collector-link.js';

const log = pino({ level: 'silent' });

const emptyPlan: Plan = {
  version: 'v1',
  agent: 'app-1',
  generatedAtMs: 1,
  refreshIntervalMs: 60_000,
  reportIntervalMs: 100,
  targets: [],
};

/**
 * A collector that speaks the enrolment contract of issue 13 (H1 builds the real one in
 * parallel): bootstrap tokens may only enrol (reports and plans → 403
 * FL_ERR_ENROL_REQUIRED); enrolling returns a fresh per-agent secret bound to name and
 * agentId, revoking the previous one; agent-role tokens get 403 FL_ERR_NOT_BOOTSTRAP from
 * /enrol and report directly; an unknown token is 401.
 */
class ContractCollector {
  server: Server | undefined;
  port = 0;
  readonly bootstrap = new Set<string>(['boot-token']);
  readonly agentTokens = new Set<string>(['agent-token']);
  /** Issued per-agent secret → the name and id it is bound to. */
  readonly issued = new Map<string, { agent: string; agentId: string }>();
  readonly enrolRequests: { token: string; status: number }[] = [];
  readonly batches: { token: string; batch: ReportBatch }[] = [];
  readonly refusals: { path: string; status: number; code: string }[] = [];

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(port = 0): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (s === undefined) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** The store is wiped: every issued secret is forgotten. */
  wipe(): void {
    this.issued.clear();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = (req.url ?? '').split('?')[0]!;
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const refuse = (status: number, code: string, message: string): void => {
      this.refusals.push({ path, status, code });
      reply(status, { error: { code, message } });
    };
    if (path === '/healthz') return reply(200, { status: 'ok' });
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const known =
      this.bootstrap.has(token) || this.agentTokens.has(token) || this.issued.has(token);
    if (!known) return refuse(401, 'FL_ERR_AUTH', 'unknown token');
    if (req.method === 'POST' && path === '/api/v1/enrol') {
      if (!this.bootstrap.has(token)) {
        this.enrolRequests.push({ token, status: 403 });
        return refuse(403, 'FL_ERR_NOT_BOOTSTRAP', 'an agent token reports directly');
      }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        agent: string;
        agentId: string;
      };
      for (const [secret, b] of this.issued)
        if (b.agent === body.agent && b.agentId === body.agentId) this.issued.delete(secret);
      const secret = randomBytes(24).toString('base64url');
      this.issued.set(secret, { agent: body.agent, agentId: body.agentId });
      this.enrolRequests.push({ token, status: 201 });
      return reply(201, { agent: body.agent, agentId: body.agentId, token: secret });
    }
    if (this.bootstrap.has(token))
      return refuse(403, 'FL_ERR_ENROL_REQUIRED', 'enrol first: POST /api/v1/enrol');
    if (req.method === 'GET' && path === '/api/v1/plan') return reply(200, emptyPlan);
    if (req.method === 'POST' && path === '/api/v1/reports') {
      const batch = JSON.parse(gunzipSync(Buffer.concat(chunks)).toString()) as ReportBatch;
      const bound = this.issued.get(token);
      if (bound !== undefined && (bound.agent !== batch.agent || bound.agentId !== batch.agentId))
        return refuse(403, 'FL_ERR_FORBIDDEN', 'credential bound to another agent');
      this.batches.push({ token, batch });
      return reply(200, { acceptedSeq: batch.seq, duplicate: false });
    }
    reply(404, { error: { code: 'FL_ERR_NOT_FOUND', message: 'not found' } });
  }
}

describe('enrolment against a collector speaking the contract', () => {
  let dir: string;
  let collector: ContractCollector;
  const links: CollectorLink[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'faultline-enrol-'));
    collector = new ContractCollector();
    await collector.listen();
  });
  afterEach(async () => {
    for (const l of links.splice(0)) await l.stop(0);
    await collector.close();
    await rm(dir, { recursive: true, force: true });
  });

  function link(token: string, over: Partial<CollectorLinkOptions> = {}): CollectorLink {
    const l = new CollectorLink({
      url: collector.url,
      token,
      agent: 'app-1',
      labels: {},
      stateDir: dir,
      log,
      onPlan: () => undefined,
      backoff: { baseMs: 10, capMs: 100 },
      authRetryMs: 200,
      ...over,
    });
    links.push(l);
    return l;
  }

  it('a bootstrap token is exchanged for a per-agent credential, saved 0600, and reports use it', async () => {
    const l = link('boot-token');
    await l.start();
    await pollUntil('a batch delivered', () => collector.batches.length > 0);
    const secret = (await readFile(join(dir, 'credential'), 'utf8')).trim();
    expect(collector.issued.has(secret)).toBe(true);
    expect((await stat(join(dir, 'credential'))).mode & 0o777).toBe(0o600);
    expect(collector.batches.every((b) => b.token === secret)).toBe(true);
    expect(l.stats().enrolState).toBe('enrolled');
    // Never reports or plans with the bootstrap token itself.
    expect(collector.refusals.filter((r) => r.code === 'FL_ERR_ENROL_REQUIRED')).toEqual([]);
  });

  it('a saved credential is used at the next start: no second enrolment', async () => {
    const first = link('boot-token');
    await first.start();
    await pollUntil('a batch delivered', () => collector.batches.length > 0);
    await first.stop(0);
    links.splice(0);
    const secret = (await readFile(join(dir, 'credential'), 'utf8')).trim();
    const second = link('boot-token');
    await second.start();
    const before = collector.batches.length;
    await pollUntil('more batches', () => collector.batches.length > before + 1);
    expect(collector.enrolRequests).toHaveLength(1);
    expect(second.stats().enrolState).toBe('saved');
    expect(collector.batches.slice(before).every((b) => b.token === secret)).toBe(true);
  });

  it('an agent token (403 FL_ERR_NOT_BOOTSTRAP) is used directly, and nothing is saved', async () => {
    const l = link('agent-token');
    await l.start();
    await pollUntil('a batch delivered', () => collector.batches.length > 0);
    expect(collector.batches.every((b) => b.token === 'agent-token')).toBe(true);
    expect(l.stats().enrolState).toBe('direct');
    await expect(stat(join(dir, 'credential'))).rejects.toThrow(/ENOENT/);
  });

  it('a saved credential the collector forgot (401): deleted, enrolled again, nothing lost', async () => {
    const l = link('boot-token');
    await l.start();
    await pollUntil('a batch delivered', () => collector.batches.length > 0);
    const old = (await readFile(join(dir, 'credential'), 'utf8')).trim();
    collector.wipe();
    await pollUntil('enrolled again', () => collector.enrolRequests.length >= 2);
    await pollUntil('reports with the new credential', () =>
      collector.batches.some((b) => b.token !== old),
    );
    const fresh = (await readFile(join(dir, 'credential'), 'utf8')).trim();
    expect(fresh).not.toBe(old);
    expect(collector.issued.has(fresh)).toBe(true);
    // Every seq from 1 on arrived: the 401s lost no batch.
    const seqs = collector.batches.map((b) => b.batch.seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(l.stats().rejected).toBe(0);
  });

  it('probing and spooling do not wait: with the collector down at start, batches spool and are delivered after enrolment', async () => {
    await collector.close();
    const l = link('boot-token', { startPlanTimeoutMs: 200 });
    const started = Date.now();
    await l.start();
    expect(Date.now() - started).toBeLessThan(3_000);
    await pollUntil('batches spooled', () => (l.stats().spool?.batches ?? 0) >= 3);
    expect(l.stats().enrolState).toBe('none');
    await collector.listen(collector.port);
    await pollUntil('the spool drained', () => l.stats().spool?.batches === 0);
    expect(collector.batches[0]!.batch.seq).toBe(1);
    expect(l.stats().enrolState).toBe('enrolled');
  });

  it('a corrupt saved credential is deleted and the agent enrols', async () => {
    await writeFile(join(dir, 'credential'), 'x\n', { mode: 0o600 });
    const l = link('boot-token');
    await l.start();
    await pollUntil('a batch delivered', () => collector.batches.length > 0);
    expect(collector.enrolRequests).toHaveLength(1);
    expect(l.stats().enrolState).toBe('enrolled');
  });
});
