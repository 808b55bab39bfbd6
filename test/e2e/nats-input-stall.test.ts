import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { Collector } from '../../collector/collector.js';
import { freePort } from '../../lab/server-process.js';
import { pollUntil } from '../../lab/poll-until.js';
import { natsToken } from '../../lib/nats.js';
import { startNatsCollector } from '../helpers/nats-collector.js';
import type { ReportBatch } from '../../wire/report.js';

/**
 * A collector whose reports stop reaching it (`transport: nats`, its nats-server gone):
 * it knows, holds its agents' liveness (their silence is the transport's, not theirs: a
 * collector fed by a JetStream cluster electing a new leader must not read every agent
 * silent and page its own isolation), says it is blind once that lasts `nats.blindAfter`,
 * and when the server is back it takes the agents' reports again and gives them their
 * silent-after from then. Real nats-server on loopback.
 */
const hasNats = existsSync('/usr/sbin/nats-server') || existsSync('/usr/bin/nats-server');

describe.runIf(hasNats)('collector: reports that cannot reach it over NATS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-nats-stall-'));
  let server: ChildProcess | undefined;
  let collector: Collector | undefined;
  let url = '';
  let port = 0;
  const silentAfterMs = 2_000;
  const blindAfterMs = 8_000;

  const startServer = (): ChildProcess =>
    spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], {
      stdio: 'ignore',
    });
  const stopServer = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (s === undefined || s.exitCode !== null) return;
    const exited = new Promise((resolve) => s.once('exit', resolve));
    s.kill('SIGKILL');
    await exited;
  };
  const connected = (): Promise<NatsConnection> =>
    pollUntil('nats-server', () => connect({ servers: url, timeout: 500 }), {
      timeoutMs: 20_000,
      intervalMs: 200,
    });

  let seq = 0;
  async function report(agent: string): Promise<void> {
    const nc = await connected();
    try {
      const b: ReportBatch = {
        agentId: `id-${agent}-0000`,
        agent,
        seq: ++seq,
        createdAtMs: Date.now(),
        results: [],
        summaries: [],
      };
      await jetstream(nc).publish(
        `faultline.reports.z.${natsToken(agent)}`,
        gzipSync(JSON.stringify(b)),
        { msgID: `${agent}-${b.seq}` },
      );
    } finally {
      await nc.close();
    }
  }
  const stateOf = (agent: string): string | undefined =>
    collector!.agents().find((a) => a.agent === agent)?.state;

  beforeAll(async () => {
    port = await freePort();
    url = `nats://127.0.0.1:${port}`;
    server = startServer();
    const nc = await connected();
    collector = await startNatsCollector({
      dir,
      url,
      consumer: 'stall',
      token: 'nats-stall-token-0123456789',
      nc,
      lines: [`agents: { reportInterval: 1s, silentAfter: ${silentAfterMs}ms }`],
      nats: `blindAfter: ${blindAfterMs}ms, timeout: 1s`,
    });
    await nc.close();
  }, 60_000);

  afterAll(async () => {
    await collector?.stop();
    await stopServer();
    rmSync(dir, { recursive: true, force: true });
  });

  it('holds its agents live while it hears nothing, says it is blind after blindAfter, and takes their reports again', async () => {
    const c = collector!;
    await report('app-1');
    await pollUntil('app-1 live', () => stateOf('app-1') === 'live' || undefined, {
      timeoutMs: 10_000,
    });
    // An idle consumer (no report for seconds) is no stall: its heartbeats say it is there.
    const idleUntil = Date.now() + 5_000;
    while (Date.now() < idleUntil) {
      expect(c.inputStall(), 'an idle consumer').toBeUndefined();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(c.health().inputStall).toBeUndefined();
    expect(stateOf('app-1'), 'unheard past its silent-after').toBe('silent');

    // app-1 heard again just before NATS goes away.
    await report('app-1');
    await pollUntil('app-1 live again', () => stateOf('app-1') === 'live' || undefined, {
      timeoutMs: 10_000,
    });
    await stopServer();
    const t0 = Date.now();
    const stall = await pollUntil('the stall known', () => c.inputStall(), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    expect(Date.now() - t0, 'known within 3 s').toBeLessThan(3_000);
    expect(stall.sinceMs, 'dated from the last thing heard').toBeLessThanOrEqual(t0);
    expect(stall.reason).toMatch(/NATS|stream|consumer/);
    expect(c.health()).toMatchObject({ ok: true, inputStall: { reason: stall.reason } });

    // Before blindAfter: no word of it in the diagnosis, and app-1 is not silent, though
    // unheard for more than its silent-after: the time it could not be heard does not count.
    await new Promise((r) => setTimeout(r, silentAfterMs + 1_000));
    expect(stateOf('app-1')).toBe('live');
    expect(c.diagnosis().hypotheses.some((h) => h.collectorCutOff === true)).toBe(false);

    // After blindAfter: the collector says it is blind, first, naming why.
    const blind = await pollUntil(
      'the blind hypothesis',
      async () => {
        const top = c.diagnosis().hypotheses[0];
        return top?.collectorCutOff === true ? top : undefined;
      },
      { timeoutMs: blindAfterMs + 5_000, intervalMs: 100 },
    );
    expect(blind.kind).toBe('network_partition');
    expect(blind.summary).toMatch(/reports have not reached the collector/);
    expect(blind.evidence.examples[0]).toBe(c.inputStall()?.reason);
    expect(stateOf('app-1')).toBe('live');

    // NATS back: the stall ends, and app-2 reports every half second from then on.
    server = startServer();
    await pollUntil('the stall over', () => c.inputStall() === undefined || undefined, {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    await pollUntil(
      'no blind hypothesis',
      async () => c.diagnosis().hypotheses.every((h) => h.collectorCutOff !== true) || undefined,
      { timeoutMs: 10_000 },
    );
    let reporting = true;
    const reporter = (async () => {
      while (reporting) {
        await report('app-2');
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    try {
      await pollUntil('app-2 live', () => stateOf('app-2') === 'live' || undefined, {
        timeoutMs: 10_000,
      });
      // app-1 said nothing since before the stall: silent one silent-after past its end.
      await pollUntil('app-1 silent', () => stateOf('app-1') === 'silent' || undefined, {
        timeoutMs: silentAfterMs + 5_000,
      });
      expect(c.inputStall(), 'reports flowing: no stall').toBeUndefined();
    } finally {
      reporting = false;
      await reporter;
    }
  }, 90_000);
});
