import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Collector } from '../../collector/collector.js';
import { freePort } from '../../lab/server-process.js';
import { pollUntil } from '../../lab/poll-until.js';
import { natsToken } from '../../lib/nats.js';
import { startNatsCollector } from '../helpers/nats-collector.js';
import type { ReportBatch } from '../../wire/report.js';

/**
 * The collector's NATS ingest against a real nats-server (JetStream on disk, loopback): a
 * batch stored once however often it comes, one ahead of its predecessor taken after it, a
 * batch on another agent's subject and garbage terminated without harm, and the plan put
 * in the bucket under the agent's name.
 */
const hasNats = existsSync('/usr/sbin/nats-server') || existsSync('/usr/bin/nats-server');

describe.runIf(hasNats)('collector: transport nats against nats-server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-nats-ingest-'));
  let server: ChildProcess | undefined;
  let collector: Collector | undefined;
  let nc: NatsConnection | undefined;
  let js: JetStreamClient;
  let url = '';
  const token = 'nats-ingest-token-0123456789';

  beforeAll(async () => {
    const port = await freePort();
    url = `nats://127.0.0.1:${port}`;
    server = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], {
      stdio: 'ignore',
    });
    nc = await pollUntil('nats-server', () => connect({ servers: url, timeout: 500 }), {
      timeoutMs: 20_000,
      intervalMs: 200,
    });
    js = jetstream(nc);
    collector = await startNatsCollector({ dir, url, consumer: 'test-a', token, nc });
  }, 60_000);

  afterAll(async () => {
    await collector?.stop();
    await nc?.close();
    server?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  function batch(agent: string, seq: number): ReportBatch {
    return {
      agentId: `id-${agent.replace(/[^A-Za-z0-9]/g, '')}-0000`,
      agent,
      seq,
      createdAtMs: Date.now(),
      results: [],
      summaries: [
        {
          target: 'db/icmp',
          kind: 'icmp',
          fromMs: Date.now() - 1000,
          toMs: Date.now(),
          count: 1,
          ok: 1,
          failures: {},
          lossRatio: 0,
          lastClass: 'ok',
          lastSeq: seq,
        },
      ],
    };
  }

  const publish = (subjectAgent: string, body: unknown, msgID: string) =>
    js.publish(
      `faultline.reports.z.${natsToken(subjectAgent)}`,
      gzipSync(typeof body === 'string' ? body : JSON.stringify(body)),
      { msgID },
    );

  const acceptedSeq = (agent: string): number | undefined =>
    collector!.agents().find((a) => a.agent === agent)?.acceptedSeq;

  async function settled(): Promise<void> {
    const jsm = await jetstreamManager(nc!);
    await pollUntil(
      'every message acked or terminated',
      async () => {
        const info = await jsm.consumers.info('FAULTLINE_REPORTS', 'test-a');
        if (info.num_pending === 0 && info.num_ack_pending === 0) return true;
        throw new Error(
          `pending ${info.num_pending}, ack pending ${info.num_ack_pending}, redelivered ${info.num_redelivered}`,
        );
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  }

  it('stores a batch once, whether JetStream or the store drops the second copy', async () => {
    const first = await publish('app.1', batch('app.1', 1), 'a-1');
    const again = await publish('app.1', batch('app.1', 1), 'a-1');
    expect(again.duplicate).toBe(true); // JetStream's window
    expect(again.seq).toBe(first.seq);
    // Past the window (another message id): the collector's watermark drops it.
    await publish('app.1', batch('app.1', 1), 'a-1-late');
    await settled();
    expect(acceptedSeq('app.1')).toBe(1);
  });

  it('takes a batch that came ahead of its predecessor after it', async () => {
    await publish('app.1', batch('app.1', 3), 'a-3');
    await new Promise((r) => setTimeout(r, 300));
    expect(acceptedSeq('app.1')).toBe(1); // seq 3 waits for 2
    await publish('app.1', batch('app.1', 2), 'a-2');
    await pollUntil('seq 3 stored after 2', () => acceptedSeq('app.1') === 3, {
      timeoutMs: 10_000,
    });
    await settled();
  });

  it('terminates a batch on another agent’s subject, and garbage, changing nothing', async () => {
    await publish('app.1', batch('intruder', 1), 'x-1');
    await publish('app.1', 'not json', 'x-2');
    await publish('app.1', { agent: 'app.1', seq: 'one' }, 'x-3');
    await settled();
    expect(collector!.agents().map((a) => a.agent)).toEqual(['app.1']);
    expect(acceptedSeq('app.1')).toBe(3);
  });

  it('puts the plan of an agent that reported in the bucket under its name', async () => {
    const kv = await new Kvm(js).open('faultline-plans');
    const entry = await pollUntil(
      'the plan of app.1',
      async () => {
        const e = await kv.get(natsToken('app.1'));
        return e === null || e.operation !== 'PUT' ? undefined : e;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const plan = JSON.parse(gunzipSync(entry.value).toString()) as {
      agent: string;
      targets: { name: string }[];
    };
    expect(plan.agent).toBe('app.1');
    expect(plan.targets.map((t) => t.name)).toContain('db/icmp');
  });
});
