/**
 * Scale-out over NATS JetStream (issue 17): a simulated fleet publishing report batches to
 * a local `nats-server` (Debian's), two ingest shards (`nats.role: ingest`, `shard: { by:
 * hash }`, each a real `faultline collector` pinned to its own core), one localiser
 * (`role: localiser`) consuming the shards' change stream and — unless `--no-single` — one
 * single collector (`role: both`, its own durable consumer) on the same reports, the
 * side-by-side answer. Phases, each a whole number of report periods: the fleet's first
 * round (every path new), a steady healthy state, a fault that fails every path toward
 * `--fault-components` components (10 of 100: a tenth of all paths), and the heal. Prints
 * Markdown: per shard (and the single collector) batches and summaries per CPU-second; per
 * phase the report stream's and the change stream's messages/s and bytes/s (JetStream's
 * stored sizes) and their ratio, and every process's CPU; and from the fault's first batch
 * each step to the answer: each fault round published, the fault's failing paths
 * published by the shards (read off the change stream) and acked by the localiser (its
 * durable consumer's ack floor), each diagnosis (sampled every second) first unhealthy and
 * showing the answer — the single collector's top hypothesis at the fault's end.
 *
 *   node dist/bench/shards.js [--agents 10000] [--paths 100] [--report-interval-ms 30000]
 *       [--steady-rounds 2] [--fault-rounds 4] [--heal-rounds 3] [--fault-components 10]
 *       [--no-single] [--log-dir DIR] [--json FILE]
 *
 * The rate a 2-core machine can offer is the limit: 10,000 agents at a 30 s period is 333
 * batches/s (a 10 s period is 1,000/s, more than two shards, nats-server and this
 * generator can take on two cores). Per-core figures are what add up.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { decodeChange } from '../collector/shard/changes.js';
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
  /** One collector on the same reports, beside the shards (`--no-single`: without). */
  single: boolean;
  /** Where each collector's log goes whole (`<name>.log`). */
  logDir?: string;
  json?: string;
}

/** A diagnosis as sampled every second of the fault. */
interface DiagSample {
  /** Since the fault's first batch (s). */
  t: number;
  /** How long `GET /api/v1/diagnosis` took (a starved process answers late). */
  answerMs: number;
  /** How old the document was (`computedAtMs`): a localisation still running keeps it. */
  ageMs: number;
  healthy: boolean;
  settling: boolean;
  /** The top hypothesis: kind and components. */
  top: string;
}

/** A diagnoser's agents, every 5 s of the fault: how many late or silent, how long unheard. */
interface LivenessSample {
  t: number;
  agents: number;
  late: number;
  silent: number;
  medianAgeS: number;
  maxAgeS: number;
}

interface ConsumerLag {
  /** Messages not yet delivered plus delivered and not acked. */
  pending: number;
  /** The stream sequence every message up to which is acked. */
  ackFloor: number;
}

interface LagSample {
  t: number;
  /** Per ingester, report messages pending. */
  reports: Record<string, number>;
  localiser: ConsumerLag;
}

/** When each step from the fault's first batch to the answer happened (s). */
interface FaultTiming {
  faultEndS: number;
  roundsPublishedS: number[];
  failingPublishedS: Record<'first' | 'half' | 'all', number | undefined>;
  failingAckedByLocaliserS: Record<'first' | 'half' | 'all', number | undefined>;
  failingPathsPublished: number;
  expectedFailing: number;
  answer: string;
  firstUnhealthyS: Record<string, number | undefined>;
  answeredS: Record<string, number | undefined>;
  finalTop: Record<string, string>;
  maxReportLag: Record<string, number>;
  maxLocaliserLag: number;
  slowestDiagnosisAnswerMs: Record<string, number>;
  oldestDiagnosisMs: Record<string, number>;
  maxLate: number;
}

type Doc = {
  healthy: boolean;
  computedAtMs: number;
  settling?: boolean;
  hypotheses: {
    kind: string;
    summary: string;
    components: string[];
    groups: { name?: string; members: string[] }[];
  }[];
};

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
      'no-single': { type: 'boolean', default: false },
      'log-dir': { type: 'string' },
      json: { type: 'string' },
    },
  });
  const n = (k: Exclude<keyof typeof values, 'json' | 'no-single' | 'log-dir'>): number =>
    positiveFlag(values, k, true);
  return {
    agents: n('agents'),
    paths: n('paths'),
    reportIntervalMs: n('report-interval-ms'),
    steadyRounds: n('steady-rounds'),
    faultRounds: n('fault-rounds'),
    healRounds: n('heal-rounds'),
    faultComponents: n('fault-components'),
    single: !values['no-single'],
    ...(values['log-dir'] === undefined ? {} : { logDir: values['log-dir'] }),
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
  /** Batches the single collector had not yet accepted at the phase's end. */
  singleBehind: number;
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
      if (s.logDir !== undefined) {
        const log = createWriteStream(join(s.logDir, `${name}.log`));
        child.stdout?.pipe(log);
        child.stderr?.pipe(log);
      }
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
    // One collector on the same reports (its own durable consumer, every subject), unpinned
    // as the localiser is: the side-by-side answer to "what does sharding cost the page".
    if (s.single) await start('single', { role: 'both', consumer: 'single' });
    const ingesters = s.single ? [...shards, 'single'] : shards;

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
    });
    // The generator's own CPU (its tree holds every other process).
    const cpuNow = (): Record<string, number> => {
      const u = process.cpuUsage();
      return {
        ...Object.fromEntries(Object.entries(pids()).map(([n, pid]) => [n, treeCpuMs(pid)])),
        generator: (u.user + u.system) / 1000,
      };
    };
    const acceptedNow = async (): Promise<Record<string, number>> =>
      Object.fromEntries(
        await Promise.all(
          ingesters.map(
            async (n) => [n, await metric(procs.get(n)!.base, viewer, acceptedRe)] as const,
          ),
        ),
      );

    let seq = 0;
    let failedSends = 0;
    let retriedSends = 0;
    /** When the last agent's batch of each fault round was taken by JetStream. */
    const faultRoundPublishedMs: number[] = [];
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
            const body = fleetBatch(a, mySeq, targets, s.reportIntervalMs, {
              fault,
              varied: true,
            }).body;
            // Retried with the same id, as an agent's spool does (JetStream's dedup drops a
            // double): a batch given up on leaves its agent's later ones waiting as a gap.
            for (let attempt = 1; ; attempt++) {
              try {
                await js.publish(`faultline.reports.z${a % 3}.${agentName(a)}`, body, {
                  msgID: `bench${a}-${mySeq}`,
                  headers: h,
                });
                break;
              } catch {
                retriedSends++;
                if (attempt === 5) {
                  failedSends++;
                  break;
                }
              }
            }
            if (fault && a === s.agents - 1) faultRoundPublishedMs.push(performance.now());
          });
        }
        const left = s.reportIntervalMs - (performance.now() - roundStart);
        if (left > 1) await new Promise((res) => setTimeout(res, left));
      }
      await Promise.all(chains);
      // Every batch of the phase ingested by its shard (a shard behind shows here).
      const due = s.agents * seq - failedSends;
      await pollUntil(
        `${phase}: every batch ingested by the shards`,
        async () => {
          const now = await acceptedNow();
          const total = shards.reduce((n, k) => n + now[k]!, 0);
          if (total >= due) return true;
          throw new Error(`${total} of ${due} batches accepted by the shards`);
        },
        { timeoutMs: 300_000, intervalMs: 500 },
      );
      // The single collector is not waited for: a pause here is a gap in every agent's
      // reports (a third of a period makes the whole fleet late at the next phase's start,
      // and a late agent's paths do not count). What it has not yet taken is a figure.
      const singleBehind = s.single ? Math.max(0, due - (await acceptedNow()).single!) : 0;
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
        singleBehind,
        reports: { messages: r1.messages - r0.messages, bytes: r1.bytes - r0.bytes },
        changes: { messages: c1.messages - c0.messages, bytes: c1.bytes - c0.bytes },
        cpuS: Object.fromEntries(Object.keys(cpu1).map((k) => [k, (cpu1[k]! - cpu0[k]!) / 1000])),
        accepted: Object.fromEntries(ingesters.map((k) => [k, a1[k]! - a0[k]!])),
      });
      process.stderr.write(
        `${phase} done in ${seconds.toFixed(0)} s${singleBehind > 0 ? ` (the single collector ${singleBehind} batches behind)` : ''}\n`,
      );
    };

    await runPhase('first round (every path new)', 1, false);
    await runPhase('steady (healthy)', s.steadyRounds, false);
    // ---- the fault: when each step on the way to the answer happened ----
    // From the fault's first batch: when the shards published its failing paths (the change
    // stream, read here as the localiser reads it), when the localiser had acked them (its
    // durable consumer's ack floor), and what each diagnosis said, every second.
    const faultStartMs = performance.now();
    const sinceFaultS = (): number => (performance.now() - faultStartMs) / 1000;
    const diagnosers = s.single ? ['localiser', 'single'] : ['localiser'];
    const samples: Record<string, DiagSample[]> = Object.fromEntries(
      diagnosers.map((n) => [n, [] as DiagSample[]]),
    );
    const failingOut: { t: number; seq: number; paths: number }[] = [];
    const seenFailing = new Set<string>();
    const tap = await (
      await js.consumers.get(changeStream, { deliver_policy: DeliverPolicy.New })
    ).consume();
    const tapping = (async () => {
      for await (const m of tap) {
        const c = decodeChange(m.data);
        // Each failing path once: one is sent again when its fall stops showing (fellAtMs).
        let n = 0;
        for (const p of c.paths) {
          const key = `${p.agent} ${p.target}`;
          if (p.state !== 'failing' || seenFailing.has(key)) continue;
          seenFailing.add(key);
          n++;
        }
        if (n > 0) failingOut.push({ t: sinceFaultS(), seq: m.seq, paths: n });
      }
    })();
    const lags: LagSample[] = [];
    const liveness: Record<string, LivenessSample[]> = Object.fromEntries(
      diagnosers.map((n) => [n, [] as LivenessSample[]]),
    );
    // The most agents the localiser held late at once: a late agent's view is not counted
    // (a generator that falls behind its period makes agents overdue).
    let maxLate = 0;
    let ticks = 0;
    let sampling = true;
    const sampleOnce = async (): Promise<void> => {
      const t = sinceFaultS();
      const consumerInfo = async (stream: string, name: string): Promise<ConsumerLag> => {
        const i = await jsm.consumers.info(stream, name);
        return { pending: i.num_pending + i.num_ack_pending, ackFloor: i.ack_floor.stream_seq };
      };
      const lag: LagSample = { t, reports: {}, localiser: { pending: 0, ackFloor: 0 } };
      await Promise.all([
        ...shards.map(async (k, i) => {
          lag.reports[k] = (
            await consumerInfo(reportStream, `ingest-hash-${i}of${shards.length}`)
          ).pending;
        }),
        ...(s.single
          ? [
              async () => {
                lag.reports.single = (await consumerInfo(reportStream, 'single')).pending;
              },
            ]
          : []
        ).map((f) => f()),
        (async () => {
          lag.localiser = await consumerInfo(changeStream, 'localiser');
        })(),
      ]);
      lags.push(lag);
    };
    // Each diagnosis on its own clock: a busy collector answering late delays only its samples.
    const sampleDiagnosis = async (n: string): Promise<void> => {
      const t = sinceFaultS();
      const t0 = performance.now();
      const d = (await (
        await fetch(`${procs.get(n)!.base}/api/v1/diagnosis`, {
          headers: { authorization: `Bearer ${viewer}` },
        })
      ).json()) as Doc;
      const top = d.hypotheses[0];
      samples[n]!.push({
        t,
        answerMs: performance.now() - t0,
        healthy: d.healthy,
        settling: d.settling === true,
        ageMs: Date.now() - d.computedAtMs,
        top:
          top === undefined
            ? ''
            : `${top.kind} [${top.components.join(',')}] groups ${top.groups.map((g) => `${g.name ?? ''}(${g.members.length})`).join(' | ')}`,
      });
    };
    const diagnosisSamplers = diagnosers.map(async (n) => {
      while (sampling) {
        const next = performance.now() + 1_000;
        await sampleDiagnosis(n).catch(() => undefined);
        await new Promise((res) => setTimeout(res, Math.max(0, next - performance.now())));
      }
    });
    const sampler = (async () => {
      while (sampling) {
        const next = performance.now() + 1_000;
        await sampleOnce().catch(() => undefined);
        // Every 5 s, each diagnoser's view of the agents: a late or silent agent's paths do
        // not count in its diagnosis.
        if (ticks++ % 5 === 0)
          await Promise.all(
            diagnosers.map(async (n) => {
              const t = sinceFaultS();
              const r = await fetch(`${procs.get(n)!.base}/api/v1/agents`, {
                headers: { authorization: `Bearer ${viewer}` },
              });
              const { agents } = (await r.json()) as {
                agents: { late?: boolean; state: string; lastSeenMs: number }[];
              };
              const late = agents.filter((a) => a.late === true).length;
              if (n === 'localiser') maxLate = Math.max(maxLate, late);
              const ages = agents
                .map((a) => (Date.now() - a.lastSeenMs) / 1000)
                .sort((x, y) => x - y);
              liveness[n]!.push({
                t,
                agents: agents.length,
                late,
                silent: agents.filter((a) => a.state === 'silent').length,
                medianAgeS: ages[Math.floor(ages.length / 2)] ?? 0,
                maxAgeS: ages.at(-1) ?? 0,
              });
            }),
          ).catch(() => undefined);
        await new Promise((res) => setTimeout(res, Math.max(0, next - performance.now())));
      }
    })();
    await runPhase(
      `fault (${failingPaths} of ${s.paths} paths of every agent failing)`,
      s.faultRounds,
      true,
    );
    const faultEndS = sinceFaultS();
    const loc = procs.get('localiser')!.base;
    sampling = false;
    await Promise.all([sampler, ...diagnosisSamplers]);
    tap.stop();
    await tapping.catch(() => undefined);
    // Sampled only while the fault's batches come (the phase ends when every one is
    // accepted and flushed): after it the generator is quiet and agents turn late.
    for (const n of diagnosers) samples[n] = samples[n]!.filter((x) => x.t <= faultEndS);
    // The right answer: the single collector's top hypothesis at the fault's end (the
    // localiser's without one).
    const answer = samples[s.single ? 'single' : 'localiser']!.at(-1)?.top ?? '';
    const answeredAt = (n: string): number | undefined => {
      const l = samples[n]!;
      let i = l.length;
      while (i > 0 && l[i - 1]!.top === answer && !l[i - 1]!.healthy) i--;
      return i === l.length ? undefined : l[i]!.t;
    };
    const firstUnhealthy = (n: string): number | undefined =>
      samples[n]!.find((x) => !x.healthy)?.t;
    const expectedFailing = s.agents * failingPaths;
    let outSum = 0;
    const failingOutAt = (share: number): { t: number; seq: number } | undefined =>
      failingOut.find((x) => (outSum += x.paths) >= share * expectedFailing);
    outSum = 0;
    const firstOut = failingOut[0];
    const halfOut = failingOutAt(0.5);
    outSum = 0;
    const allOut = failingOutAt(1);
    const ackedAt = (seq: number | undefined): number | undefined =>
      seq === undefined ? undefined : lags.find((l) => l.localiser.ackFloor >= seq)?.t;
    const maxOf = (f: (l: LagSample) => number): number => Math.max(0, ...lags.map(f));
    const timing: FaultTiming = {
      faultEndS,
      roundsPublishedS: faultRoundPublishedMs.map((ms) => (ms - faultStartMs) / 1000),
      failingPublishedS: {
        first: firstOut?.t,
        half: halfOut?.t,
        all: allOut?.t,
      },
      failingAckedByLocaliserS: {
        first: ackedAt(firstOut?.seq),
        half: ackedAt(halfOut?.seq),
        all: ackedAt(allOut?.seq),
      },
      failingPathsPublished: failingOut.reduce((n, x) => n + x.paths, 0),
      expectedFailing,
      answer,
      firstUnhealthyS: Object.fromEntries(diagnosers.map((n) => [n, firstUnhealthy(n)])),
      answeredS: Object.fromEntries(diagnosers.map((n) => [n, answeredAt(n)])),
      finalTop: Object.fromEntries(diagnosers.map((n) => [n, samples[n]!.at(-1)?.top ?? ''])),
      maxReportLag: Object.fromEntries(ingesters.map((k) => [k, maxOf((l) => l.reports[k] ?? 0)])),
      maxLocaliserLag: maxOf((l) => l.localiser.pending),
      slowestDiagnosisAnswerMs: Object.fromEntries(
        diagnosers.map((n) => [n, Math.max(0, ...samples[n]!.map((x) => x.answerMs))]),
      ),
      oldestDiagnosisMs: Object.fromEntries(
        diagnosers.map((n) => [n, Math.max(0, ...samples[n]!.map((x) => x.ageMs))]),
      ),
      maxLate,
    };
    if (timing.answeredS.localiser === undefined)
      process.stderr.write(
        `the localiser did not show the answer by the fault's end; its log:\n${tailOf(procs.get('localiser')!.child)}\n`,
      );
    const diag = samples.localiser!.at(-1);
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
    const opt = (x: number | undefined): string => (x === undefined ? 'not seen' : fmt(x, 1));
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
    if (s.single) {
      const b = results.reduce((n, r) => n + r.accepted.single!, 0);
      const cpu = results.reduce((n, r) => n + r.cpuS.single!, 0);
      out.push(
        `| single collector (every subject, diagnosing; unpinned) | ${fmt(b)} | ${fmt(cpu, 1)} | ${fmt(b / cpu)} | ${fmt((b * s.paths) / cpu)} |`,
      );
    }
    out.push(
      '',
      '### Localiser input vs the report stream, per phase',
      '',
      '| phase | s | reports msg/s | reports KB/s | changes msg/s | changes KB/s | changes / reports (bytes) | localiser CPU % | nats-server CPU % | shards CPU % (0 / 1) | single CPU % | single: batches behind at the end | generator CPU % |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const r of results) {
      const per = (x: number): number => x / r.seconds;
      out.push(
        `| ${r.phase} | ${fmt(r.seconds)} | ${fmt(per(r.reports.messages))} | ${fmt(per(r.reports.bytes) / 1024)} | ${fmt(per(r.changes.messages), 1)} | ${fmt(per(r.changes.bytes) / 1024, 1)} | ${r.reports.bytes === 0 ? '–' : `${((100 * r.changes.bytes) / r.reports.bytes).toFixed(2)} %`} | ${fmt((100 * r.cpuS.localiser!) / r.seconds, 1)} | ${fmt((100 * r.cpuS['nats-server']!) / r.seconds, 1)} | ${fmt((100 * r.cpuS['shard-0']!) / r.seconds)} / ${fmt((100 * r.cpuS['shard-1']!) / r.seconds)} | ${r.cpuS.single === undefined ? '–' : fmt((100 * r.cpuS.single) / r.seconds)} | ${s.single ? fmt(r.singleBehind) : '–'} | ${fmt((100 * r.cpuS.generator!) / r.seconds)} |`,
      );
    }
    out.push(
      '',
      `### From the fault's first batch to the answer (seconds)`,
      '',
      `The answer: \`${timing.answer}\` (${s.single ? "the single collector's" : "the localiser's"} last top hypothesis). A path fails at its agent's ${'`debounce`'}-th failed report: the floor is the round that completes it.`,
      '',
      '| step | s |',
      '| --- | ---: |',
      ...timing.roundsPublishedS.map(
        (t, i) => `| fault round ${i + 1}: the last agent's batch published | ${fmt(t, 1)} |`,
      ),
      `| first failing path published by a shard | ${opt(timing.failingPublishedS.first)} |`,
      `| … acked by the localiser | ${opt(timing.failingAckedByLocaliserS.first)} |`,
      `| half of the ${fmt(timing.expectedFailing)} failing paths published | ${opt(timing.failingPublishedS.half)} |`,
      `| … acked by the localiser | ${opt(timing.failingAckedByLocaliserS.half)} |`,
      `| all of them published (${fmt(timing.failingPathsPublished)} seen) | ${opt(timing.failingPublishedS.all)} |`,
      `| … acked by the localiser | ${opt(timing.failingAckedByLocaliserS.all)} |`,
      ...diagnosers.flatMap((n) => [
        `| ${n}: first unhealthy | ${opt(timing.firstUnhealthyS[n])} |`,
        `| ${n}: the answer, held from | ${opt(timing.answeredS[n])} |`,
      ]),
      `| the fault's last round accepted by every ingester | ${fmt(timing.faultEndS, 1)} |`,
      '',
      `${s.single && timing.answeredS.single !== undefined && timing.answeredS.localiser !== undefined ? `Localiser / single collector, time to the answer: **${(timing.answeredS.localiser / timing.answeredS.single).toFixed(2)}**. ` : ''}Final top hypotheses: ${diagnosers.map((n) => `${n} \`${timing.finalTop[n]}\``).join(', ')}. Most messages behind during the fault: reports ${Object.entries(
        timing.maxReportLag,
      )
        .map(([k, v]) => `${k} ${fmt(v)}`)
        .join(
          ', ',
        )}; the localiser's change consumer ${fmt(timing.maxLocaliserLag)}. Slowest \`GET /diagnosis\`: ${diagnosers.map((n) => `${n} ${fmt(timing.slowestDiagnosisAnswerMs[n]!)} ms`).join(', ')}; oldest document served: ${diagnosers.map((n) => `${n} ${fmt(timing.oldestDiagnosisMs[n]! / 1000, 1)} s`).join(', ')}. At most ${fmt(maxLate)} agents late at the localiser. The localiser after the fault: ${fmt(health.agents)} agents, ${fmt(health.paths)} paths. Publishes retried ${retriedSends}, given up ${failedSends}. Load average at the end: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}.`,
      '',
    );
    process.stdout.write(out.join('\n'));
    if (s.json !== undefined)
      writeFileSync(
        s.json,
        JSON.stringify(
          { settings: s, results, timing, samples, lags, liveness, localiser: { health, diag } },
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
