import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { storedSummaries } from '../../../collector/store/rows.js';
import { wrongVlan } from '../../../lab/faults.js';
import { Lab } from '../../../lab/lab.js';
import { NatsCluster } from '../../../lab/nats.js';
import { pollUntil } from '../../../lab/poll-until.js';
import type { LabProcess } from '../../../lab/process.js';
import { canRunLab, type LabSpec } from '../../../lab/spec.js';
import type { ProbeResult } from '../../../wire/result.js';
import { cliPath, ensureBuilt } from '../../helpers/cli.js';

/**
 * `transport: nats` with the real engine: a three-node nats-server cluster (JetStream, the
 * report stream and the plan bucket with 3 replicas) on three lab hosts, three agents
 * publishing through it from their own hosts, the lab's collector consuming with durable
 * consumer `collector-a` and a second collector on host `ops` with `collector-b`. One NATS
 * node SIGKILLed, the ingest collector SIGKILLed mid-stream and restarted, a second NATS
 * node cut off by moving its switch port (JetStream loses its quorum: the agents spool),
 * then everything healed; the agents stop, and each collector's store is audited against
 * what the agents say they produced: every batch once, every result and summary once.
 */
const spec: LabSpec = {
  switches: [{ name: 'sw', zone: 'z1' }, { name: 'vlan-99' }],
  hosts: [
    { name: 'nats-1', switch: 'sw', agent: false },
    { name: 'nats-2', switch: 'sw', agent: false },
    { name: 'nats-3', switch: 'sw', agent: false },
    { name: 'app-1', switch: 'sw', agent: false, services: [{ kind: 'http' }] },
    { name: 'app-2', switch: 'sw', agent: false },
    { name: 'app-3', switch: 'sw', agent: false },
    { name: 'ops', switch: 'sw', agent: false },
  ],
};
const natsHosts = ['nats-1', 'nats-2', 'nats-3'];
const agentHosts = ['app-1', 'app-2', 'app-3'];
const opsPort = 7071;

/** One log line of a process (pino JSON). */
type LogLine = Record<string, unknown> & { msg?: string };

function logLines(p: LabProcess): LogLine[] {
  return p
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        return {};
      }
    });
}

/** What a store holds of one agent. */
interface StoredAgent {
  acceptedSeq: number;
  droppedBatches: number;
  seqs: number[];
  batches: { seq: number; createdAtMs: number; receivedAtMs: number }[];
  results: ProbeResult[];
  summaries: number;
  /** Probes the summaries count, plus the confirmation re-probes that come only in full. */
  probes: number;
}

function readStore(dataDir: string, agent: string): StoredAgent | undefined {
  const db = new Database(join(dataDir, 'faultline.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db
      .prepare('SELECT agent_key, accepted_seq, dropped_batches FROM agents WHERE name = ?')
      .get(agent) as
      { agent_key: number; accepted_seq: number; dropped_batches: number } | undefined;
    if (row === undefined) return undefined;
    const rows = db
      .prepare(
        'SELECT seq, created_at_ms, received_at_ms, summaries_json, body, body_gzip FROM batches WHERE agent_key = ? ORDER BY seq',
      )
      .all(row.agent_key) as (Parameters<typeof storedSummaries>[0] & {
      seq: number;
      created_at_ms: number;
      received_at_ms: number;
    })[];
    const results = (
      db
        .prepare('SELECT record FROM results WHERE agent_key = ? ORDER BY id')
        .pluck()
        .all(row.agent_key) as string[]
    ).map((r) => JSON.parse(r) as ProbeResult);
    const summaries = rows.flatMap(storedSummaries);
    const probes =
      summaries.reduce((n, s) => n + s.count, 0) +
      results.filter((r) => r.confirm !== undefined && r.confirm.index > 0).length;
    return {
      acceptedSeq: row.accepted_seq,
      droppedBatches: row.dropped_batches,
      seqs: rows.map((r) => r.seq),
      batches: rows.map((r) => ({
        seq: r.seq,
        createdAtMs: r.created_at_ms,
        receivedAtMs: r.received_at_ms,
      })),
      results,
      summaries: summaries.length,
      probes,
    };
  } finally {
    db.close();
  }
}

describe.runIf(canRunLab)('lab: NATS JetStream transport', () => {
  let lab: Lab | undefined;
  let nats: NatsCluster | undefined;
  let collectorB: LabProcess | undefined;
  const agents = new Map<string, LabProcess>();
  const dataA = (): string => join(lab!.dir, 'data');
  const dataB = (): string => join(lab!.dir, 'data-b');

  function startAgent(name: string): LabProcess {
    const proc = nats!.startAgent(cliPath, name, ['timeout: 2s']);
    agents.set(name, proc);
    return proc;
  }

  function startCollectorB(): LabProcess {
    const l = lab!;
    const ops = l.host('ops');
    const file = join(l.dir, 'collector-b.yaml');
    const yaml = l
      .collectorYaml(opsPort)
      .replace(/^listen: .*$/m, `listen: ${ops.ip}:${opsPort}`)
      .replace(/^dataDir: .*$/m, `dataDir: ${dataB()}`);
    writeFileSync(
      file,
      `${yaml}transport: nats\n${nats!.yaml('', ['consumer: collector-b', 'replicas: 3'])}\n`,
    );
    return l.spawnIn(ops, 'collector-b', process.execPath, [cliPath, 'collector', '-c', file], {
      FAULTLINE_LOG_LEVEL: 'warn',
    });
  }

  /** The API of collector a (the lab's) or b. */
  const apiOf = (dataDir: string): string =>
    dataDir === dataA() ? lab!.collectorUrl : `http://${lab!.host('ops').ip}:${opsPort}`;

  /**
   * Every agent's watermark as a collector's API says (0 for one it has not heard of): its
   * store is its own while it runs (an exclusive lock).
   */
  async function storedSeqs(dataDir: string): Promise<number[]> {
    const res = await fetch(`${apiOf(dataDir)}/api/v1/agents`, {
      headers: { authorization: `Bearer ${lab!.viewerToken}` },
      signal: AbortSignal.timeout(3000),
    });
    if (res.status !== 200) throw new Error(`GET /api/v1/agents: ${res.status}`);
    const { agents: list } = (await res.json()) as {
      agents: { agent: string; acceptedSeq?: number }[];
    };
    return agentHosts.map((a) => list.find((x) => x.agent === a)?.acceptedSeq ?? 0);
  }

  /** Waits until every agent's watermark in a collector has grown past `than`. */
  async function untilGrown(dataDir: string, than: number[], what: string): Promise<number[]> {
    return pollUntil(
      what,
      async () => {
        const now = await storedSeqs(dataDir);
        if (now.every((s, i) => s > than[i]! + 2)) return now;
        throw new Error(`watermarks ${now.join(', ')} (from ${than.join(', ')})`);
      },
      { timeoutMs: 45_000, intervalMs: 250 },
    );
  }

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.up(spec, {
      cliPath,
      extraCollectorYaml: async (l) => {
        // The cluster first: the collector binds its consumer at start.
        nats = await NatsCluster.start(l, natsHosts);
        return `transport: nats\n${nats.yaml('', ['consumer: collector-a', 'replicas: 3'])}`;
      },
    });
    collectorB = startCollectorB();
    for (const a of agentHosts) startAgent(a);
  }, 120_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail' || lab === undefined) return;
    const tails = [
      ['collector-a', lab.collector],
      ['collector-b', collectorB],
      ...[...agents].map(([n, p]) => [n, p] as const),
      ...natsHosts.map(
        (h) => [h, nats?.hosts.includes(h) === true ? nats.node(h) : undefined] as const,
      ),
    ] as const;
    for (const [name, p] of tails) console.info(`--- ${name}:\n${p?.log().slice(-3000) ?? ''}`);
  });

  afterAll(async () => {
    // Kills every process the lab started (NATS nodes, agents, both collectors) by PID.
    await lab?.down();
  });

  it('agents publish through a three-node cluster; two collectors with their own durable consumers both take every agent', async () => {
    await untilGrown(dataA(), [0, 0, 0], 'collector-a storing every agent’s batches');
    await untilGrown(dataB(), [0, 0, 0], 'collector-b storing every agent’s batches');
  }, 60_000);

  it('a NATS node killed, the collector killed mid-stream, quorum lost: after the heal every result is stored once, in both collectors', async () => {
    const l = lab!;
    const cluster = nats!;
    // One node SIGKILLed: R3 keeps a quorum of two, reports keep flowing.
    const killed = cluster.node('nats-1');
    killed.signal('SIGKILL');
    await killed.exited;
    const seqs = await untilGrown(
      dataA(),
      await storedSeqs(dataA()),
      'reports flowing with a node dead',
    );

    // The ingest collector SIGKILLed mid-stream and started again on its store: what it had
    // not acked comes again, what it had stored is a duplicate.
    l.collector!.signal('SIGKILL');
    await l.collector!.exited;
    await new Promise((r) => setTimeout(r, 1_500)); // reports pile up in the stream meanwhile
    await l.restartCollector();
    await untilGrown(dataA(), seqs, 'the restarted collector catching up');

    // A second node cut off: one of three left, no quorum, publishes go unacked: agents spool.
    const cut = wrongVlan(l, ['nats-2'], 'vlan-99');
    await cut.inject();
    const cutMs = Date.now();
    await new Promise((r) => setTimeout(r, 6_000)); // batches spooled meanwhile
    const healMs = Date.now();
    await cut.heal();
    cluster.startNode('nats-1');
    // Healed: the restarted node's JetStream caught up too. Until then it may answer an
    // agent's publish with "jetstream is not enabled", and that agent backs off for seconds:
    // it would stop with batches in its spool (kept for its next start, but not delivered).
    await Promise.all(natsHosts.map((h) => cluster.untilHealthy(h, 45_000, { current: true })));
    await untilGrown(dataA(), await storedSeqs(dataA()), 'reports flowing after the heal');

    // The agents stop: each spools its last batch and delivers it, and says what it made.
    const made = new Map<string, LogLine>();
    await Promise.all([...agents.values()].map((p) => p.stop(20_000)));
    for (const [name, p] of agents) {
      const line = logLines(p).find((x) => x.msg === 'collector link stopped');
      expect(line, `${name}: ${p.log().slice(-1500)}`).toBeDefined();
      expect(line!.spooled, name).toBe(0);
      made.set(name, line!);
    }
    for (const dataDir of [dataA(), dataB()]) {
      await pollUntil(
        `${dataDir}: every agent's last batch stored`,
        async () => {
          const seqs = await storedSeqs(dataDir);
          if (agentHosts.every((a, i) => seqs[i] === made.get(a)!.acceptedSeq)) return true;
          throw new Error(`watermarks ${seqs.join(', ')}`);
        },
        { timeoutMs: 45_000, intervalMs: 250 },
      );
    }
    await l.collector!.stop(10_000);
    await collectorB!.stop(10_000);

    for (const dataDir of [dataA(), dataB()]) {
      for (const a of agentHosts) {
        const m = made.get(a)!;
        const s = readStore(dataDir, a)!;
        const where = `${a} in ${dataDir}`;
        // Every batch the agent made, once: seq 1..N, nothing declared lost.
        expect(s.droppedBatches, where).toBe(0);
        expect(s.seqs, where).toEqual(Array.from({ length: s.acceptedSeq }, (_, i) => i + 1));
        expect(s.seqs.length, where).toBe(m.batches);
        // Every full result and summary once, and every probe the agent observed.
        expect(s.results.length, where).toBe(m.results);
        expect(new Set(s.results.map((r) => r.seq)).size, where).toBe(s.results.length);
        expect(s.summaries, where).toBe(m.summaries);
        expect(s.probes, where).toBe(m.observed);
        // Batches made while JetStream had no quorum were spooled and came after the heal.
        const during = s.batches.filter(
          (b) => b.createdAtMs > cutMs + 3_000 && b.createdAtMs < healMs - 500,
        );
        expect(during.length, `${where}: batches made without a quorum`).toBeGreaterThanOrEqual(2);
        for (const b of during) expect(b.receivedAtMs, where).toBeGreaterThan(healMs);
      }
    }
  }, 240_000);
});
