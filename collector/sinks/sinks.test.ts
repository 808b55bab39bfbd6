import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertsEndpoint, postableAlert, targetNames } from './alertmanager.js';
import { AlertDispatcher } from './dispatcher.js';
import { postBody, retryableStatus } from './http.js';
import { sinkRegistry, sinkTypes } from './registry.js';
import type { AlertBatch, AlertNotice } from './types.js';
import { signBody, slackBody, webhookJsonBody } from './webhook.js';

const notice: AlertNotice = {
  fingerprint: '0123456789abcdef',
  status: 'firing',
  labels: {
    alertname: 'FaultlineNetworkPartition',
    kind: 'network_partition',
    component: 'db-1,db-2',
    severity: 'critical',
  },
  annotations: {
    summary: 'Network partition between {app-1} and {db-1, db-2} <sw-2> & co — ruled out: db-1',
    ruled_out: 'db-1',
    runbook_url: 'https://wiki.example.com/network_partition',
  },
  startsAtMs: 1_000,
  endsAtMs: 241_000,
  generatorUrl: 'https://faultline.example.com/?alert=0123456789abcdef',
  incident: { id: '7', url: 'https://faultline.example.com/incidents/7' },
};
const batch: AlertBatch = {
  sentAtMs: 2_000,
  alerts: [notice],
  changes: [notice],
  firing: 1,
  diagnosis: { healthy: false, hypotheses: [], ruledOut: [], computedAtMs: 2_000 },
};

describe('the registry', () => {
  it('has one entry per type, each with its own type in its schema', () => {
    expect(sinkTypes()).toEqual(['alertmanager', 'webhook']);
    for (const type of sinkTypes()) {
      expect(sinkRegistry[type].type).toBe(type);
      const other = sinkTypes().find((t) => t !== type);
      const typeIssues = (value: unknown) =>
        sinkRegistry[type].schema
          .safeParse({ type: value })
          .error?.issues.filter((i) => i.path[0] === 'type') ?? [];
      expect(typeIssues(type)).toEqual([]);
      expect(typeIssues(other)).toHaveLength(1);
    }
  });
});

describe('alertmanager', () => {
  it('posts the v2 postableAlert shape to <base>/api/v2/alerts', () => {
    expect(postableAlert(notice)).toEqual({
      labels: notice.labels,
      annotations: notice.annotations,
      startsAt: '1970-01-01T00:00:01.000Z',
      endsAt: '1970-01-01T00:04:01.000Z',
      generatorURL: notice.generatorUrl,
    });
    expect(alertsEndpoint('http://am:9093')).toBe('http://am:9093/api/v2/alerts');
    expect(alertsEndpoint('http://am:9093/prefix/')).toBe('http://am:9093/prefix/api/v2/alerts');
  });

  it('names one target per URL without showing more of the URL than needed', () => {
    expect(targetNames({ name: 'am', urls: ['http://a:9093'] })).toEqual(['am']);
    expect(targetNames({ name: 'am', urls: ['http://a:9093', 'http://b:9093?x=1'] })).toEqual([
      'am@a:9093',
      'am@b:9093',
    ]);
    expect(targetNames({ name: 'am', urls: ['http://a:9093/one', 'http://a:9093/two'] })).toEqual([
      'am@a:9093/one',
      'am@a:9093/two',
    ]);
  });
});

describe('webhook bodies', () => {
  it('json: version, status, the alerts with their incident, the incidents and the diagnosis', () => {
    const body = JSON.parse(webhookJsonBody([notice], batch)) as Record<string, unknown>;
    expect(body).toMatchObject({
      version: 1,
      sender: 'faultline',
      sentAt: '1970-01-01T00:00:02.000Z',
      status: 'firing',
      firing: 1,
      incidents: [notice.incident],
      diagnosis: batch.diagnosis,
    });
    expect((body.alerts as Record<string, unknown>[])[0]).toMatchObject({
      status: 'firing',
      fingerprint: notice.fingerprint,
      labels: notice.labels,
      incident: notice.incident,
    });
  });

  it('the signature is the hex HMAC-SHA256 of the exact body', () => {
    const body = webhookJsonBody([notice], batch);
    expect(signBody(body, 'k'.repeat(16))).toBe(
      createHmac('sha256', 'k'.repeat(16)).update(body).digest('hex'),
    );
  });

  it('slack: {text, blocks} with mrkdwn escaped and the links', () => {
    const body = JSON.parse(slackBody([notice], batch)) as {
      text: string;
      blocks: { type: string; text?: { text: string }; elements?: { text: string }[] }[];
    };
    expect(Object.keys(body)).toEqual(['text', 'blocks']);
    expect(body.text).toBe(
      `:red_circle: FIRING (critical) FaultlineNetworkPartition: ${notice.annotations.summary}`,
    );
    expect(body.blocks.map((b) => b.type)).toEqual([
      'section',
      'context',
      'context',
      'divider',
      'context',
    ]);
    expect(body.blocks[0]?.text?.text).toContain('{db-1, db-2} &lt;sw-2&gt; &amp; co');
    expect(body.blocks[2]?.elements?.[0]?.text).toBe(
      `<${notice.generatorUrl}|Open in Faultline>  ·  <${notice.incident?.url}|Incident 7>  ·  <${notice.annotations.runbook_url}|Runbook>`,
    );
    const many = JSON.parse(slackBody(Array(25).fill(notice) as AlertNotice[], batch)) as {
      blocks: unknown[];
    };
    // Slack's limit is 50 blocks.
    expect(many.blocks.length).toBeLessThanOrEqual(50);
  });
});

describe('postBody', () => {
  let server: Server;
  let base = '';
  beforeAll(async () => {
    server = createServer((req, res) => {
      const status = Number(req.url?.slice(1));
      if (status === 0) return; // hangs
      res.statusCode = status;
      res.end(status >= 400 ? 'nope' : '');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it.each([
    { path: '/200', outcome: { status: 'success' } },
    { path: '/204', outcome: { status: 'success' } },
    { path: '/400', outcome: { status: 'failure', reason: 'HTTP 400: nope' } },
    { path: '/404', outcome: { status: 'failure', reason: 'HTTP 404: nope' } },
    { path: '/429', outcome: { status: 'retryable', reason: 'HTTP 429: nope' } },
    { path: '/503', outcome: { status: 'retryable', reason: 'HTTP 503: nope' } },
    { path: '/0', outcome: { status: 'retryable', reason: 'timed out after 200 ms' } },
  ])('$path → $outcome.status', async ({ path, outcome }) => {
    const signal = new AbortController().signal;
    expect(await postBody(`${base}${path}`, '{}', {}, 200, signal)).toEqual(outcome);
  });

  it('a refused connection is retryable, named by its code', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const { port } = closed.address() as AddressInfo;
    await new Promise((r) => closed.close(r));
    expect(
      await postBody(`http://127.0.0.1:${port}/`, '{}', {}, 1000, new AbortController().signal),
    ).toEqual({ status: 'retryable', reason: 'request failed: ECONNREFUSED' });
    expect([408, 425, 429, 500, 502].every(retryableStatus)).toBe(true);
    expect([400, 401, 403, 404, 413].some(retryableStatus)).toBe(false);
  });
});

describe('backoff', () => {
  it('doubles its ceiling per retry up to the maximum, with full jitter below it', () => {
    const at = (random: number) =>
      new AlertDispatcher({
        targets: [],
        deadLetterFile: '/nonexistent/never-written.jsonl',
        retry: { initialBackoffMs: 500, maxBackoffMs: 4_000 },
        random: () => random,
      });
    const top = at(0.999_999);
    expect([1, 2, 3, 4, 5, 6].map((n) => top.backoffMs(n))).toEqual([
      499, 999, 1999, 3999, 3999, 3999,
    ]);
    expect(at(0).backoffMs(3)).toBe(0);
    expect(at(0.5).backoffMs(2)).toBe(500);
  });
});
