/**
 * Ingest through NATS JetStream vs direct HTTP, side by side in one run (issue 17): the real
 * `faultline collector` process pinned to one core, once with `transport: http` taking
 * POSTs and once with `transport: nats` consuming a JetStream stream that a local
 * `nats-server` (Debian's) keeps on disk, the same simulated fleet offering the same
 * batches (every agent one batch of `paths` summaries per report period, phases spread).
 * Prints Markdown: batches/s and summaries/s per ingest core (accepted batches over the
 * collector's CPU-seconds), the collector's and nats-server's CPU, p99 latencies.
 *
 *   node dist/bench/nats.js [--agents 2000] [--paths 100] [--report-interval-ms 10000]
 *       [--duration-s 30] [--components 100] [--collector-cpus 0] [--json FILE]
 *       [--profile-dir DIR]
 *
 * HTTP sends refused with 503 are retried after Retry-After as the agent does; the ack
 * latency runs from the first attempt.
 *
 * Latencies: "send → ingest" is the batch's createdAtMs (stamped as it is sent) to its
 * received_at_ms in the store, for both transports; "ack" is what the sender waits for (the
 * HTTP 200 after the store commit; JetStream's PubAck once the stream has it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { Pool } from 'undici';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { fleetCollectorConfig, freePort, pollUntil, runBench, treeCpuMs } from './lib.js';
import {
  agentName,
  fleetBatch,
  spawnLogged,
  startNatsServer,
  stopChild,
  positiveFlag,
} from './nats-fleet.js';

const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

interface Settings {
  agents: number;
  paths: number;
  reportIntervalMs: number;
  durationS: number;
  components: number;
  collectorCpus: string;
  /** Write the collector's CPU profile (--cpu-prof) of each run to this directory. */
  profileDir?: string;
  json?: string;
}

type Transport = 'http' | 'nats';

interface RunResult {
  transport: Transport;
  batches: number;
  summaries: number;
  wallS: number;
  collectorCpuS: number;
  natsCpuS: number;
  batchesPerCoreS: number;
  summariesPerCoreS: number;
  ingestP50Ms: number;
  ingestP99Ms: number;
  ackP50Ms: number;
  ackP99Ms: number;
  failedSends: number;
  /** 503s answered (each retried, as an agent would). */
  refusals: number;
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string', default: '2000' },
      paths: { type: 'string', default: '100' },
      'report-interval-ms': { type: 'string', default: '10000' },
      'duration-s': { type: 'string', default: '30' },
      components: { type: 'string', default: '100' },
      'collector-cpus': { type: 'string', default: '0' },
      json: { type: 'string' },
      'profile-dir': { type: 'string' },
    },
  });
  const n = (k: Exclude<keyof typeof values, 'json'>): number => positiveFlag(values, k);
  return {
    agents: n('agents'),
    paths: n('paths'),
    reportIntervalMs: n('report-interval-ms'),
    durationS: n('duration-s'),
    components: n('components'),
    collectorCpus: values['collector-cpus'],
    ...(values.json === undefined ? {} : { json: values.json }),
    ...(values['profile-dir'] === undefined ? {} : { profileDir: values['profile-dir'] }),
  };
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function run(
  s: Settings,
  transport: Transport,
  dir: string,
  natsUrl: string,
  natsPid: number,
): Promise<RunResult> {
  const port = await freePort();
  const token = randomBytes(16).toString('hex');
  const viewer = randomBytes(16).toString('hex');
  const dataDir = join(dir, `data-${transport}`);
  const config = {
    ...(fleetCollectorConfig({
      components: s.components,
      dataDir,
      port,
      token,
      viewer,
      reportIntervalMs: s.reportIntervalMs,
      intervalMs: s.reportIntervalMs / 10,
    }) as Record<string, unknown>),
    ...(transport === 'nats'
      ? {
          transport: 'nats',
          nats: { servers: [natsUrl], consumer: 'bench', stream: 'BENCH_REPORTS' },
        }
      : {}),
  };
  const file = join(dir, `collector-${transport}.yaml`);
  writeFileSync(file, stringify(config));
  const collector = spawnLogged(
    'taskset',
    [
      '-c',
      s.collectorCpus,
      process.execPath,
      ...(s.profileDir === undefined
        ? []
        : [
            '--cpu-prof',
            `--cpu-prof-dir=${s.profileDir}`,
            `--cpu-prof-name=collector-${transport}.cpuprofile`,
          ]),
      cliPath,
      'collector',
      '--config',
      file,
    ],
    {
      FAULTLINE_LOG_LEVEL: 'warn',
    },
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    await pollUntil(
      'collector /healthz',
      async () => (await fetch(`${base}/healthz`)).status === 200,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const planRes = await fetch(`${base}/api/v1/plan?agent=agent-00000`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const plan = (await planRes.json()) as { targets: { name: string; kind: string }[] };
    const targets = plan.targets.slice(0, s.paths);
    if (targets.length < s.paths)
      throw new Error(
        `the plan has ${targets.length} targets; --paths ${s.paths} needs more --components`,
      );

    const pool = new Pool(base, { connections: 64, pipelining: 1 });
    const nc = transport === 'nats' ? await connect({ servers: natsUrl }) : undefined;
    const js = nc === undefined ? undefined : jetstream(nc);
    const rounds = Math.max(1, Math.round((s.durationS * 1000) / s.reportIntervalMs));
    const total = s.agents * rounds;
    const acks: number[] = [];
    let failed = 0;
    let refusals = 0;
    const inflight = new Set<Promise<void>>();
    const chains: Promise<void>[] = [];
    const send = async (agent: number, seq: number): Promise<void> => {
      if (js === undefined && seq === 1) {
        // An HTTP agent asks for its plan before it reports; a NATS one is sent it (the
        // collector puts a new agent's plan in the bucket): both runs pay for the plans.
        const res = await pool.request({
          path: `/api/v1/plan?agent=${agentName(agent)}&labels=zone%3Dz${agent % 3}`,
          method: 'GET',
          headers: { authorization: `Bearer ${token}`, 'user-agent': 'faultline-agent/0.1.0' },
        });
        await res.body.dump();
      }
      const { body } = fleetBatch(agent, seq, targets, s.reportIntervalMs);
      const t0 = performance.now();
      try {
        if (js !== undefined) {
          const h = natsHeaders();
          h.set('Content-Encoding', 'gzip');
          h.set('Faultline-Backlog', '0');
          await js.publish(
            `faultline.reports.z${agent % 3}.agent-${String(agent).padStart(5, '0')}`,
            body,
            {
              msgID: `bench${agent}-${seq}`,
              headers: h,
            },
          );
        } else {
          // As the agent does: a 503 (an overloaded collector) is retried after its
          // Retry-After plus up to 10 %, the batch first in line.
          for (let attempt = 1; ; attempt++) {
            const res = await pool.request({
              path: '/api/v1/reports',
              method: 'POST',
              headers: {
                authorization: `Bearer ${token}`,
                'content-type': 'application/json',
                'content-encoding': 'gzip',
                'user-agent': 'faultline-agent/0.1.0',
              },
              body,
            });
            await res.body.dump();
            if (res.statusCode === 200) break;
            const retryAfterS = Number(res.headers['retry-after'] ?? NaN);
            if (res.statusCode !== 503 || !Number.isFinite(retryAfterS) || attempt >= 20)
              throw new Error(`status ${res.statusCode}`);
            refusals++;
            await new Promise((r) => setTimeout(r, retryAfterS * 1000 * (1 + Math.random() * 0.1)));
          }
        }
        acks.push(performance.now() - t0);
      } catch {
        failed++;
      }
    };
    const cpu0 = treeCpuMs(collector.pid!);
    const natsCpu0 = treeCpuMs(natsPid);
    const start = performance.now();
    // Every agent sends once per period at its own phase, its batches in seq order.
    for (let r = 0; r < rounds; r++) {
      for (let a = 0; a < s.agents; a++) {
        const dueMs = r * s.reportIntervalMs + (a * s.reportIntervalMs) / s.agents;
        const waitMs = dueMs - (performance.now() - start);
        if (waitMs > 1) await new Promise((res) => setTimeout(res, waitMs));
        // One batch in flight per agent, as the agent sends: the next waits for the last.
        const p = (chains[a] ?? Promise.resolve())
          .then(() => send(a, r + 1))
          .finally(() => inflight.delete(p));
        chains[a] = p;
        inflight.add(p);
      }
    }
    await Promise.all(inflight);
    await pollUntil(
      'every batch ingested',
      async () => {
        const text = await (
          await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${viewer}` } })
        ).text();
        const m = /^faultline_ingest_batches_total\{[^}]*outcome="accepted"[^}]*\} (\d+)/m.exec(
          text,
        );
        if (m !== null && Number(m[1]) >= total - failed) return true;
        throw new Error(
          `${m?.[1] ?? 'no'} of ${total - failed} batches accepted (${failed} failed)`,
        );
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    const wallS = (performance.now() - start) / 1000;
    const collectorCpuS = (treeCpuMs(collector.pid!) - cpu0) / 1000;
    const natsCpuS = transport === 'nats' ? (treeCpuMs(natsPid) - natsCpu0) / 1000 : 0;
    await pool.close();
    await nc?.close();
    await stopChild(collector);
    const db = new Database(join(dataDir, 'faultline.db'), { readonly: true });
    const lat = (
      db.prepare('SELECT received_at_ms - created_at_ms FROM batches').pluck().all() as number[]
    ).sort((x, y) => x - y);
    const stored = db.prepare('SELECT count(*) FROM batches').pluck().get() as number;
    db.close();
    acks.sort((x, y) => x - y);
    return {
      transport,
      batches: stored,
      summaries: stored * s.paths,
      wallS,
      collectorCpuS,
      natsCpuS,
      batchesPerCoreS: stored / collectorCpuS,
      summariesPerCoreS: (stored * s.paths) / collectorCpuS,
      ingestP50Ms: quantile(lat, 0.5),
      ingestP99Ms: quantile(lat, 0.99),
      ackP50Ms: quantile(acks, 0.5),
      ackP99Ms: quantile(acks, 0.99),
      failedSends: failed,
      refusals,
    };
  } finally {
    await stopChild(collector);
  }
}

async function main(): Promise<void> {
  const s = settings();
  const dir = mkdtempSync(join(tmpdir(), 'faultline-bench-nats-'));
  const { child: nats, url: natsUrl } = await startNatsServer(dir);
  try {
    const results: RunResult[] = [];
    for (const t of ['http', 'nats'] as const)
      results.push(await run(s, t, dir, natsUrl, nats.pid!));
    const [h, n] = results as [RunResult, RunResult];
    const rate = s.agents / (s.reportIntervalMs / 1000);
    const out = [
      `## Ingest: JetStream vs HTTP (${s.agents} agents × ${s.paths} paths, a batch per agent every ${s.reportIntervalMs / 1000} s = ${rate} batches/s offered, ${s.durationS} s)`,
      '',
      '| | HTTP | JetStream | JetStream / HTTP |',
      '| --- | ---: | ---: | ---: |',
      ...(
        [
          ['batches stored', 'batches', 0],
          ['collector CPU (s)', 'collectorCpuS', 1],
          ['nats-server CPU (s)', 'natsCpuS', 1],
          ['batches/s per ingest core', 'batchesPerCoreS', 0],
          ['summaries/s per ingest core', 'summariesPerCoreS', 0],
          ['send → ingest p50 (ms)', 'ingestP50Ms', 0],
          ['send → ingest p99 (ms)', 'ingestP99Ms', 0],
          ['ack p50 (ms)', 'ackP50Ms', 1],
          ['ack p99 (ms)', 'ackP99Ms', 1],
          ['503 refusals (retried)', 'refusals', 0],
          ['failed sends', 'failedSends', 0],
        ] as const
      ).map(([label, k, digits]) => {
        const ratio = h[k] === 0 ? '–' : `${(n[k] / h[k]).toFixed(2)}×`;
        return `| ${label} | ${h[k].toFixed(digits)} | ${n[k].toFixed(digits)} | ${ratio} |`;
      }),
      '',
    ];
    process.stdout.write(out.join('\n'));
    if (s.json !== undefined)
      writeFileSync(s.json, JSON.stringify({ settings: s, results }, null, 2));
  } finally {
    await stopChild(nats);
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('bench/nats', main);
