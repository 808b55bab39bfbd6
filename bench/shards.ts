/**
 * Scale-out over NATS JetStream (issue 17): a simulated fleet publishing report batches to
 * a local `nats-server` (Debian's), two ingest shards (`nats.role: ingest`, `shard: { by:
 * hash }`, each a real `faultline collector` pinned to its own core) and one localiser
 * (`role: localiser`) consuming the shards' change stream. Phases, each a whole number of
 * report periods: the fleet's first round (every path new), a steady healthy state, a
 * fault that fails every path toward `--fault-components` components (10 of 100: a tenth
 * of all paths), and the heal. Prints Markdown: per shard batches and summaries per
 * CPU-second; per phase the report stream's and the change stream's messages/s and
 * bytes/s (JetStream's stored sizes) and their ratio; what the localiser holds.
 *
 *   node dist/bench/shards.js [--agents 10000] [--paths 100] [--report-interval-ms 30000]
 *       [--steady-rounds 2] [--fault-rounds 4] [--heal-rounds 3] [--fault-components 10]
 *       [--json FILE]
 *
 * The rate a 2-core machine can offer is the limit: 10,000 agents at a 30 s period is 333
 * batches/s (a 10 s period is 1,000/s, more than two shards, nats-server and this
 * generator can take on two cores). Per-core figures are what add up.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { fleetCollectorConfig, freePort, pollUntil, runBench, treeCpuMs } from './lib.js';
import {
  agentName,
  fleetBatch,
  spawnLogged,
  startNatsServer,
  stopChild,
  tailOf,
  positiveFlag,
} from './nats-fleet.js';

const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const reportStream = 'BENCH_REPORTS';
const changeStream = 'BENCH_CHANGES';

interface Settings {
  agents: number;
  paths: number;
  reportIntervalMs: number;
  steadyRounds: number;
  faultRounds: number;
  healRounds: number;
  faultComponents: number;
  json?: string;
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      agents: { type: 'string', default: '10000' },
      paths: { type: 'string', default: '100' },
      'report-interval-ms': { type: 'string', default: '30000' },
      'steady-rounds': { type: 'string', default: '2' },
      'fault-rounds': { type: 'string', default: '4' },
      'heal-rounds': { type: 'string', default: '3' },
      'fault-components': { type: 'string', default: '10' },
      json: { type: 'string' },
    },
  });
  const n = (k: Exclude<keyof typeof values, 'json'>): number => positiveFlag(values, k, true);
  return {
    agents: n('agents'),
    paths: n('paths'),
    reportIntervalMs: n('report-interval-ms'),
    steadyRounds: n('steady-rounds'),
    faultRounds: n('fault-rounds'),
    healRounds: n('heal-rounds'),
    faultComponents: n('fault-components'),
    ...(values.json === undefined ? {} : { json: values.json }),
  };
}

interface StreamSize {
  messages: number;
  bytes: number;
}

interface PhaseResult {
  phase: string;
  seconds: number;
  reports: StreamSize;
  changes: StreamSize;
  /** CPU-seconds per process over the phase. */
  cpuS: Record<string, number>;
  /** Batches each shard accepted over the phase. */
  accepted: Record<string, number>;
}

async function metric(base: string, viewer: string, re: RegExp): Promise<number> {
  const text = await (
    await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${viewer}` } })
  ).text();
  const m = re.exec(text);
  return m === null ? 0 : Number(m[1]);
}

const acceptedRe = /^faultline_ingest_batches_total\{[^}]*outcome="accepted"[^}]*\} (\d+)/m;

async function main(): Promise<void> {
  const s = settings();
  const dir = mkdtempSync(join(tmpdir(), 'faultline-bench-shards-'));
  const { child: nats, url: natsUrl } = await startNatsServer(dir);
  const procs = new Map<string, { child: ChildProcess; base: string }>();
  const token = randomBytes(16).toString('hex');
  const viewer = randomBytes(16).toString('hex');
  try {
    const start = async (
      name: string,
      nats: Record<string, unknown>,
      cpus?: string,
    ): Promise<void> => {
      const port = await freePort();
      const config = {
        ...(fleetCollectorConfig({
          components: 100,
          dataDir: join(dir, `data-${name}`),
          port,
          token,
          viewer,
          reportIntervalMs: s.reportIntervalMs,
          intervalMs: s.reportIntervalMs / 10,
        }) as Record<string, unknown>),
        transport: 'nats',
        nats: {
          servers: [natsUrl],
          stream: reportStream,
          changeStream,
          changeSubject: 'bench.changes',
          ...nats,
        },
      };
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, stringify(config));
      const args = [cliPath, 'collector', '--config', file];
      const child =
        cpus === undefined
          ? spawnLogged(process.execPath, args, { FAULTLINE_LOG_LEVEL: 'warn' })
          : spawnLogged('taskset', ['-c', cpus, process.execPath, ...args], {
              FAULTLINE_LOG_LEVEL: 'warn',
            });
      const base = `http://127.0.0.1:${port}`;
      procs.set(name, { child, base });
      await pollUntil(
        `${name} /healthz`,
        async () => (await fetch(`${base}/healthz`)).status === 200,
        { timeoutMs: 30_000, intervalMs: 100 },
      );
    };
    await start('localiser', { role: 'localiser', consumer: 'localiser' });
    await start(
      'shard-0',
      { role: 'ingest', consumer: 'ingest', shard: { by: 'hash', index: 0, count: 2 } },
      '0',
    );
    await start(
      'shard-1',
      { role: 'ingest', consumer: 'ingest', shard: { by: 'hash', index: 1, count: 2 } },
      '1',
    );
    const shards = ['shard-0', 'shard-1'];

    // The targets: the plan of one agent (fleet plans are the same), the first `paths`.
    const planRes = await fetch(`${procs.get('shard-0')!.base}/api/v1/plan?agent=agent-00000`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const plan = (await planRes.json()) as { targets: { name: string; kind: string }[] };
    const components = [...new Set(plan.targets.map((t) => t.name.split('/')[0]!))];
    const failing = new Set(components.slice(0, s.faultComponents));
    const targets = plan.targets
      .slice(0, s.paths)
      .map((t) => ({ ...t, failing: failing.has(t.name.split('/')[0]!) }));
    if (targets.length < s.paths)
      throw new Error(`the plan has ${targets.length} targets; --paths ${s.paths} needs more`);
    const failingPaths = targets.filter((t) => t.failing).length;

    const nc = await connect({ servers: natsUrl });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const size = async (stream: string): Promise<StreamSize> => {
      try {
        const i = await jsm.streams.info(stream);
        return { messages: i.state.messages, bytes: i.state.bytes };
      } catch {
        return { messages: 0, bytes: 0 };
      }
    };
    const pids = (): Record<string, number> => ({
      ...Object.fromEntries([...procs].map(([n, p]) => [n, p.child.pid!])),
      'nats-server': nats.pid!,
      generator: process.pid,
    });
    const cpuNow = (): Record<string, number> =>
      Object.fromEntries(Object.entries(pids()).map(([n, pid]) => [n, treeCpuMs(pid)]));
    const acceptedNow = async (): Promise<Record<string, number>> =>
      Object.fromEntries(
        await Promise.all(
          shards.map(
            async (n) => [n, await metric(procs.get(n)!.base, viewer, acceptedRe)] as const,
          ),
        ),
      );

    let seq = 0;
    let failedSends = 0;
    const chains: Promise<void>[] = [];
    const results: PhaseResult[] = [];
    const runPhase = async (phase: string, rounds: number, fault: boolean): Promise<void> => {
      const r0 = await size(reportStream);
      const c0 = await size(changeStream);
      const cpu0 = cpuNow();
      const a0 = await acceptedNow();
      const t0 = performance.now();
      for (let r = 0; r < rounds; r++) {
        seq++;
        const roundStart = performance.now();
        for (let a = 0; a < s.agents; a++) {
          const dueMs = (a * s.reportIntervalMs) / s.agents;
          const waitMs = dueMs - (performance.now() - roundStart);
          if (waitMs > 1) await new Promise((res) => setTimeout(res, waitMs));
          const mySeq = seq;
          chains[a] = (chains[a] ?? Promise.resolve()).then(async () => {
            const h = natsHeaders();
            h.set('Faultline-Backlog', '0');
            try {
              await js.publish(
                `faultline.reports.z${a % 3}.${agentName(a)}`,
                fleetBatch(a, mySeq, targets, s.reportIntervalMs, { fault, varied: true }).body,
                { msgID: `bench${a}-${mySeq}`, headers: h },
              );
            } catch {
              failedSends++;
            }
          });
        }
        const left = s.reportIntervalMs - (performance.now() - roundStart);
        if (left > 1) await new Promise((res) => setTimeout(res, left));
      }
      await Promise.all(chains);
      // Every batch of the phase ingested by its shard (a shard behind shows here).
      await pollUntil(
        `${phase}: every batch ingested`,
        async () => {
          const now = await acceptedNow();
          const total = shards.reduce((n, k) => n + now[k]!, 0);
          if (total >= s.agents * seq - failedSends) return true;
          throw new Error(`${total} of ${s.agents * seq} batches accepted`);
        },
        { timeoutMs: 300_000, intervalMs: 500 },
      );
      // The changes of the last batches flushed (every 100 ms) and counted.
      await new Promise((res) => setTimeout(res, 1_500));
      const seconds = (performance.now() - t0) / 1000;
      const r1 = await size(reportStream);
      const c1 = await size(changeStream);
      const cpu1 = cpuNow();
      const a1 = await acceptedNow();
      results.push({
        phase,
        seconds,
        reports: { messages: r1.messages - r0.messages, bytes: r1.bytes - r0.bytes },
        changes: { messages: c1.messages - c0.messages, bytes: c1.bytes - c0.bytes },
        cpuS: Object.fromEntries(Object.keys(cpu1).map((k) => [k, (cpu1[k]! - cpu0[k]!) / 1000])),
        accepted: Object.fromEntries(shards.map((k) => [k, a1[k]! - a0[k]!])),
      });
      process.stderr.write(`${phase} done in ${seconds.toFixed(0)} s\n`);
    };

    await runPhase('first round (every path new)', 1, false);
    await runPhase('steady (healthy)', s.steadyRounds, false);
    // From the fault's first batch, when the localiser's diagnosis first stops being healthy.
    const faultStartMs = performance.now();
    let firstUnhealthyS: number | undefined;
    // The most agents the localiser held late at once: a late agent's view is not counted
    // (a generator that falls behind its period makes agents overdue).
    let maxLate = 0;
    let ticks = 0;
    const watch = setInterval(() => {
      if (ticks++ % 5 === 0)
        fetch(`${procs.get('localiser')!.base}/api/v1/agents`, {
          headers: { authorization: `Bearer ${viewer}` },
        })
          .then(async (r) => {
            const { agents } = (await r.json()) as { agents: { late?: boolean }[] };
            maxLate = Math.max(maxLate, agents.filter((a) => a.late === true).length);
          })
          .catch(() => undefined);
      if (firstUnhealthyS !== undefined) return;
      fetch(`${procs.get('localiser')!.base}/api/v1/diagnosis`, {
        headers: { authorization: `Bearer ${viewer}` },
      })
        .then(async (r) => {
          const d = (await r.json()) as { healthy: boolean };
          if (!d.healthy && firstUnhealthyS === undefined)
            firstUnhealthyS = (performance.now() - faultStartMs) / 1000;
        })
        .catch(() => undefined);
    }, 1_000);
    await runPhase(
      `fault (${failingPaths} of ${s.paths} paths of every agent failing)`,
      s.faultRounds,
      true,
    );
    // What the localiser makes of the fault: polled from the end of the fault's rounds.
    const loc = procs.get('localiser')!.base;
    type Doc = {
      healthy: boolean;
      settling?: boolean;
      hypotheses: { kind: string; summary: string }[];
    };
    const faultEndMs = performance.now();
    let diag: Doc = { healthy: true, hypotheses: [] };
    let diagnosedAfterS: number | undefined;
    try {
      diag = await pollUntil(
        'the localiser diagnosing the fault',
        async () => {
          const d = (await (
            await fetch(`${loc}/api/v1/diagnosis`, {
              headers: { authorization: `Bearer ${viewer}` },
            })
          ).json()) as Doc;
          if (d.healthy) throw new Error(`healthy (settling: ${d.settling === true})`);
          return d;
        },
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      diagnosedAfterS = (performance.now() - faultEndMs) / 1000;
    } catch (err) {
      const tail = tailOf(procs.get('localiser')!.child);
      process.stderr.write(`${(err as Error).message}\nthe localiser's log:\n${tail}\n`);
    }
    clearInterval(watch);
    const health = (await (await fetch(`${loc}/healthz`)).json()) as {
      agents: number;
      paths: number;
    };
    await runPhase('heal', s.healRounds, false);
    await nc.close();

    // ---- the report ----
    const rate = s.agents / (s.reportIntervalMs / 1000);
    const fmt = (x: number, d = 0): string =>
      x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
    const out: string[] = [
      `## Ingest shards and a localiser (${fmt(s.agents)} agents × ${s.paths} paths, a batch per agent every ${s.reportIntervalMs / 1000} s = ${fmt(rate)} batches/s offered; 2 hash shards, each pinned to one core)`,
      '',
      '### Per shard, over the whole run',
      '',
      '| shard | batches | CPU s | batches/s per core | summaries/s per core |',
      '| --- | ---: | ---: | ---: | ---: |',
    ];
    for (const k of shards) {
      const b = results.reduce((n, r) => n + r.accepted[k]!, 0);
      const cpu = results.reduce((n, r) => n + r.cpuS[k]!, 0);
      out.push(
        `| ${k} | ${fmt(b)} | ${fmt(cpu, 1)} | ${fmt(b / cpu)} | ${fmt((b * s.paths) / cpu)} |`,
      );
    }
    const allB = results.reduce((n, r) => n + shards.reduce((m, k) => m + r.accepted[k]!, 0), 0);
    const allCpu = results.reduce((n, r) => n + shards.reduce((m, k) => m + r.cpuS[k]!, 0), 0);
    out.push(
      `| both | ${fmt(allB)} | ${fmt(allCpu, 1)} | ${fmt(allB / allCpu)} | ${fmt((allB * s.paths) / allCpu)} |`,
    );
    out.push(
      '',
      '### Localiser input vs the report stream, per phase',
      '',
      '| phase | s | reports msg/s | reports KB/s | changes msg/s | changes KB/s | changes / reports (bytes) | localiser CPU % | nats-server CPU % | shards CPU % (0 / 1) |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const r of results) {
      const per = (x: number): number => x / r.seconds;
      out.push(
        `| ${r.phase} | ${fmt(r.seconds)} | ${fmt(per(r.reports.messages))} | ${fmt(per(r.reports.bytes) / 1024)} | ${fmt(per(r.changes.messages), 1)} | ${fmt(per(r.changes.bytes) / 1024, 1)} | ${r.reports.bytes === 0 ? '–' : `${((100 * r.changes.bytes) / r.reports.bytes).toFixed(2)} %`} | ${fmt((100 * r.cpuS.localiser!) / r.seconds, 1)} | ${fmt((100 * r.cpuS['nats-server']!) / r.seconds, 1)} | ${fmt((100 * r.cpuS['shard-0']!) / r.seconds)} / ${fmt((100 * r.cpuS['shard-1']!) / r.seconds)} |`,
      );
    }
    out.push(
      '',
      `Localiser: first unhealthy diagnosis ${firstUnhealthyS === undefined ? 'not seen' : `${fmt(firstUnhealthyS, 1)} s`} after the fault's first batches (a path fails after \`debounce\` failed reports of its agent); at most ${fmt(maxLate)} agents late at once during the fault. After the fault's rounds: ${fmt(health.agents)} agents, ${fmt(health.paths)} paths; ${diag.healthy ? 'still healthy 120 s later' : `${diagnosedAfterS === undefined ? '' : `${fmt(diagnosedAfterS, 1)} s after the last round: `}top hypothesis ${diag.hypotheses[0]?.kind}: ${(diag.hypotheses[0]?.summary ?? '').slice(0, 160)}…`}. Failed publishes (the generator's, retried by no one): ${failedSends}.`,
      '',
    );
    process.stdout.write(out.join('\n'));
    if (s.json !== undefined)
      writeFileSync(
        s.json,
        JSON.stringify(
          { settings: s, results, localiser: { health, diag, diagnosedAfterS } },
          null,
          2,
        ),
      );
  } finally {
    for (const p of procs.values()) await stopChild(p.child);
    await stopChild(nats);
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench('bench/shards', main);
