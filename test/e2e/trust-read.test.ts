import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../helpers/cli.js';
import { CollectorProcess } from '../helpers/collector-process.js';
import { pollUntil } from '../../lab/poll-until.js';
import { dbInventoryYaml, dbPeriod, postReport } from '../helpers/report-batches.js';
import { freePort } from '../../lab/server-process.js';
import type { FailureClass } from '../../wire/result.js';

/**
 * Issue 13, the read side: against real `faultline collector` processes fed real report
 * batches, the read endpoints answer only viewer tokens (never an agent's), and what a forged
 * report needs — an agent's id and accepted seq — is shown to nobody else: not with
 * `readAccess: open`, not on /metrics or /healthz. Every assertion is on the real ids the
 * agents reported with, so a leak of them anywhere fails.
 */

const agentToken = `agent-${randomUUID()}`;
const revokedAgentToken = `agent-old-${randomUUID()}`;
const viewerToken = `viewer-${randomUUID()}`;
const revokedViewerToken = `viewer-old-${randomUUID()}`;
const otherViewerToken = `viewer-open-${randomUUID()}`;

/** The agents' ids: random, so finding one in an answer can only be a leak. */
const agentIds: Record<string, string> = {
  'app-1': `id-${randomUUID()}`,
  'app-2': `id-${randomUUID()}`,
};
const lastSeq = 6;

const readEndpoints = [
  '/api/v1/paths',
  '/api/v1/agents',
  '/api/v1/diagnosis',
  '/api/v1/incidents',
  '/api/v1/incidents/1',
  '/api/v1/incidents/1/postmortem',
] as const;

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly code?: string;
  readonly message?: string;
}

async function read(base: string, path: string, token?: string): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(5_000),
  });
  const body = await res.text();
  let error: { code?: string; message?: string } | undefined;
  try {
    error = (JSON.parse(body) as { error?: { code?: string; message?: string } }).error;
  } catch {
    /* the postmortem is Markdown */
  }
  return { status: res.status, body, code: error?.code, message: error?.message };
}

function expectNoAgentIds(text: string): void {
  for (const id of Object.values(agentIds)) expect(text).not.toContain(id);
}

function collectorYaml(port: number, dataDir: string, more: readonly string[]): string {
  return [
    `listen: 127.0.0.1:${port}`,
    `dataDir: ${dataDir}`,
    'tokens:',
    `  - { name: fleet, token: ${agentToken} }`,
    `  - { name: old-fleet, token: ${revokedAgentToken}, revoked: true }`,
    ...more,
    'agents: { reportInterval: 1s, silentAfter: 10m }',
    ...dbInventoryYaml,
    '',
  ].join('\n');
}

describe('the read side leaks nothing (real collectors)', () => {
  let dir: string;
  /** readAccess: token (the default), viewers ops and gone (revoked). */
  let guarded: CollectorProcess | undefined;
  /** readAccess: open, one viewer. */
  let open: CollectorProcess | undefined;

  /** Six periods of app-1 and app-2 (postgres refusing from the fourth): one incident. */
  async function feed(base: string): Promise<void> {
    for (let seq = 1; seq <= lastSeq; seq++) {
      const pg: FailureClass = seq <= 3 ? 'ok' : 'tcp_refused';
      for (const agent of ['app-1', 'app-2']) {
        await postReport(base, agentToken, {
          ...dbPeriod(agent, seq, pg, Date.now() - 20_000),
          agentId: agentIds[agent]!,
        });
      }
    }
    await pollUntil(
      'incident 1 recorded',
      async () => {
        const r = await read(base, '/api/v1/incidents/1', viewerToken);
        return r.status === 200;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  }

  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'faultline-trust-read-'));
    const [guardedPort, openPort] = [await freePort(), await freePort()];
    const guardedFile = join(dir, 'guarded.yaml');
    writeFileSync(
      guardedFile,
      collectorYaml(guardedPort, join(dir, 'guarded'), [
        'viewers:',
        `  - { name: ops, token: ${viewerToken} }`,
        `  - { name: gone, token: ${revokedViewerToken}, revoked: true }`,
      ]),
    );
    const openFile = join(dir, 'open.yaml');
    writeFileSync(
      openFile,
      collectorYaml(openPort, join(dir, 'open'), [
        'viewers:',
        `  - { name: ops, token: ${viewerToken} }`,
        'readAccess: open',
      ]),
    );
    [guarded, open] = await Promise.all([
      CollectorProcess.start(guardedFile, `http://127.0.0.1:${guardedPort}`),
      CollectorProcess.start(openFile, `http://127.0.0.1:${openPort}`),
    ]);
    await Promise.all([feed(guarded.url), feed(open.url)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([guarded?.kill(), open?.kill()]);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it.each(readEndpoints)('%s without a token: 401 FL_ERR_AUTH', async (path) => {
    const r = await read(guarded!.url, path);
    expect(r.status, r.body).toBe(401);
    expect(r.code).toBe('FL_ERR_AUTH');
    expectNoAgentIds(r.body);
  });

  it.each(readEndpoints)('%s with an unknown token: 401 FL_ERR_AUTH', async (path) => {
    const r = await read(guarded!.url, path, otherViewerToken);
    expect(r.status, r.body).toBe(401);
    expect(r.code).toBe('FL_ERR_AUTH');
  });

  it.each(readEndpoints)(
    '%s with the agent token the reports came with: 403 FL_ERR_FORBIDDEN',
    async (path) => {
      for (const token of [agentToken, revokedAgentToken]) {
        const r = await read(guarded!.url, path, token);
        expect(r.status, r.body).toBe(403);
        expect(r.code).toBe('FL_ERR_FORBIDDEN');
        expect(r.message).toMatch(/^agent tokens cannot read; use a viewer token/);
        expectNoAgentIds(r.body);
      }
    },
  );

  it.each(readEndpoints)(
    '%s with a revoked viewer token: 403 FL_ERR_TOKEN_REVOKED',
    async (path) => {
      const r = await read(guarded!.url, path, revokedViewerToken);
      expect(r.status, r.body).toBe(403);
      expect(r.code).toBe('FL_ERR_TOKEN_REVOKED');
      expect(r.message).toBe("token 'gone' is revoked");
      expectNoAgentIds(r.body);
    },
  );

  it.each(readEndpoints)('%s with a viewer token: 200', async (path) => {
    const r = await read(guarded!.url, path, viewerToken);
    expect(r.status, r.body).toBe(200);
  });

  it('a viewer sees each agent’s id and accepted seq in /agents; the data behind the other endpoints is there', async () => {
    const agents = JSON.parse((await read(guarded!.url, '/api/v1/agents', viewerToken)).body) as {
      agents: { agent: string; agentId: string; acceptedSeq: number }[];
    };
    expect(agents.agents.map((a) => [a.agent, a.agentId, a.acceptedSeq]).sort()).toEqual([
      ['app-1', agentIds['app-1'], lastSeq],
      ['app-2', agentIds['app-2'], lastSeq],
    ]);
    const paths = JSON.parse((await read(guarded!.url, '/api/v1/paths', viewerToken)).body) as {
      paths: unknown[];
    };
    expect(paths.paths).toHaveLength(4);
  });

  it('a viewer token cannot report: 401, nothing stored', async () => {
    const res = await fetch(`${guarded!.url}/api/v1/reports`, {
      method: 'POST',
      headers: { authorization: `Bearer ${viewerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...dbPeriod('app-1', lastSeq + 1, 'ok'), agentId: agentIds['app-1'] }),
      signal: AbortSignal.timeout(5_000),
    });
    expect(res.status).toBe(401);
    const agents = JSON.parse((await read(guarded!.url, '/api/v1/agents', viewerToken)).body) as {
      agents: { agent: string; acceptedSeq: number }[];
    };
    expect(agents.agents.find((a) => a.agent === 'app-1')?.acceptedSeq).toBe(lastSeq);
  });

  it.each(readEndpoints)('readAccess open: %s answers 200 without a token', async (path) => {
    const r = await read(open!.url, path);
    expect(r.status, r.body).toBe(200);
  });

  it('readAccess open: /agents without a token names the agents and their state, never an id or a seq', async () => {
    const r = await read(open!.url, '/api/v1/agents');
    expect(r.status).toBe(200);
    expectNoAgentIds(r.body);
    const { agents } = JSON.parse(r.body) as { agents: Record<string, unknown>[] };
    expect(agents.map((a) => a.agent).sort()).toEqual(['app-1', 'app-2']);
    for (const a of agents) {
      expect(a.state).toBe('live');
      expect(Object.keys(a).filter((k) => /id$|seq/i.test(k))).toEqual([]);
    }
    // The same collector shows them to its viewer: they were there to leak.
    const viewer = await read(open!.url, '/api/v1/agents', viewerToken);
    expect(viewer.body).toContain(agentIds['app-1']);
    expect(viewer.body).toContain(agentIds['app-2']);
  });

  it('readAccess open: an agent token is still refused (403), an unknown one 401', async () => {
    const agent = await read(open!.url, '/api/v1/agents', agentToken);
    expect(agent.status).toBe(403);
    expect(agent.code).toBe('FL_ERR_FORBIDDEN');
    expectNoAgentIds(agent.body);
    const unknown = await read(open!.url, '/api/v1/agents', otherViewerToken);
    expect(unknown.status).toBe(401);
  });

  it.each(['/metrics', '/healthz'])(
    '%s is open and holds no agent id and no sequence number',
    async (path) => {
      for (const c of [guarded!, open!]) {
        const r = await read(c.url, path);
        expect(r.status, r.body).toBe(200);
        expect(r.body.length).toBeGreaterThan(0);
        expectNoAgentIds(r.body);
        expect(r.body).not.toMatch(/agent_?id|seq/i);
      }
    },
  );
});
