/**
 * Load generator of the collector benchmark (bench/collector.ts): simulates many agents
 * reporting to a real collector, in the real wire format.
 *
 *   collector-load.js '<LoadSettings as JSON>'
 *
 * It fetches one plan from the collector (`GET /api/v1/plan`) and gives each simulated agent
 * `paths` of its targets. Every agent cuts one report batch per interval at its own phase of
 * the interval (phases spread evenly), like the agent's Reporter: one summary per path, plus
 * in full the first result of every path and every failing result, gzip'd as the agent
 * spools it.
 *
 * Building and compressing 2,000 batches a second would take most of a core, so every batch
 * of the run (`rounds` per agent) is made before `READY`, in worker threads (the
 * orchestrator pins this process to its CPU only after that), stamped as if the run had
 * begun then: the agents' clocks are behind the collector's by the time that took, which
 * the collector does not mind. The run itself only sends.
 *
 * Sending is the agent's sender's: batches in order, one request in flight per agent, each
 * agent on its own keep-alive connection (an undici Client: each agent process has its
 * own), a 10 s request timeout; a 429/503 is retried after its Retry-After plus up to 10 %,
 * no answer after a full-jitter exponential backoff (250 ms doubling up to 30 s), the batch
 * staying first in the agent's queue, so a slow collector builds a backlog as the agents'
 * spools would.
 *
 * Control on stdin, one word a line: `start` begins sending, `mark` resets the counters
 * (answers `MARKED`), `report` prints `REPORT {…}` (a LoadReport of everything since the
 * mark), `stop` stops cutting batches, waits up to 10 s for requests in flight, prints
 * `STOPPED {…}` and exits.
 */
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';
import { Client } from 'undici';
import { defaultConfirmResults } from '../agent/reporter.js';
import { rng } from '../lib/prng.js';

/** What the orchestrator tells one load process. */
export interface LoadSettings {
  /** Collector base URL (http://127.0.0.1:port). */
  readonly url: string;
  readonly token: string;
  /** Index of this process's first agent and how many agents it runs. */
  readonly firstAgent: number;
  readonly agents: number;
  /** Every agent of the whole run (for the phase spread across processes). */
  readonly totalAgents: number;
  /** Paths per agent. */
  readonly paths: number;
  /** Report period: each agent cuts one batch per this. */
  readonly intervalMs: number;
  /** Probes per path in each report period (probe interval = intervalMs / probesPerReport). */
  readonly probesPerReport: number;
  /** Share of each agent's paths that fail every probe (0–1). */
  readonly failRatio: number;
  /** gzip level of the bodies (the agent uses zlib's default, 6; inflating either costs the same). */
  readonly gzipLevel: number;
  /** Batches made per agent before the run: it stops cutting after these. */
  readonly rounds: number;
}

/** What one load process counted since the last `mark`. */
export interface LoadReport {
  readonly elapsedMs: number;
  /** Batches cut (offered) and the path results they cover (sum of summary counts). */
  readonly offeredBatches: number;
  readonly offeredPathResults: number;
  /** Batches acknowledged as new (200, duplicate false) and their path results. */
  readonly acceptedBatches: number;
  readonly acceptedPathResults: number;
  readonly acceptedSummaries: number;
  readonly acceptedFullResults: number;
  /** Acks that said duplicate (a retry of an already stored batch). */
  readonly duplicates: number;
  /** HTTP answers by status, and requests that got none (network error, timeout). */
  readonly statuses: Readonly<Record<string, number>>;
  readonly networkErrors: number;
  /** Request → answer of every request (ms); one with no answer counts until it failed. */
  readonly latencyMs: Quantiles;
  /** Request → answer of the 200 answers only (ms). */
  readonly ackLatencyMs: Quantiles;
  /** Batch cut → ack (ms): latency plus time waiting in the agent's queue (retries, backlog). */
  readonly deliveryMs: Quantiles;
  /** Batches waiting (or in flight) in the agents' queues at the mark and at the report. */
  readonly backlogAtMarkBatches: number;
  readonly backlogBatches: number;
  /** Compressed and uncompressed body bytes per batch (mean). */
  readonly meanBodyBytes: number;
  readonly meanJsonBytes: number;
  /** This process's own event-loop delay (ms): high values inflate the latencies above. */
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  /** How late batches were cut against their planned time (ms, p99): the generator's lag. */
  readonly cutLateP99Ms: number;
  /** A few distinct failures and non-200 answers, for humans. */
  readonly sampleErrors: readonly string[];
}

/** p50/p90/p99/max and the count they are over. */
export interface Quantiles {
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

const requestTimeoutMs = 10_000;
const backoffBaseMs = 250;
const backoffCapMs = 30_000;
/** Cuts per timer tick, so answers and stdin are still read when cutting falls behind. */
const maxCutsPerTick = 16;

/** An append-only list of doubles (latencies), grown by doubling. */
class Samples {
  private values = new Float64Array(1 << 16);
  private n = 0;

  push(x: number): void {
    if (this.n === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.n++] = x;
  }

  /** Exact quantiles (sorts a copy). */
  quantiles(): Quantiles {
    const n = this.n;
    if (n === 0) return { n, p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, max: Number.NaN };
    const v = this.values.slice(0, n).sort();
    const q = (p: number): number => v[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]!;
    return { n, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: v[n - 1]! };
  }
}

// ---------------------------------------------------------------------------------------
// Making the batches

interface PlanTargetLite {
  readonly name: string;
  readonly kind: string;
  readonly address: string;
}

/** How a failing path of each kind fails: class, errno-style code, duration, detail. */
const failures: Readonly<
  Record<string, { cls: string; code: string; totalMs: number; detail?: string }>
> = {
  icmp: {
    cls: 'icmp_timeout',
    code: 'ETIMEDOUT',
    totalMs: 800,
    detail: '{"engine":"fping","sent":1,"received":0,"lossRatio":1,"rttsMs":[]}',
  },
  tcp: { cls: 'tcp_timeout', code: 'ETIMEDOUT', totalMs: 800 },
  http: { cls: 'http_status', code: 'HTTP_STATUS', totalMs: 2.4, detail: '{"status":503}' },
  postgres: { cls: 'tcp_refused', code: 'ECONNREFUSED', totalMs: 0.3 },
  mysql: { cls: 'tcp_refused', code: 'ECONNREFUSED', totalMs: 0.3 },
  redis: { cls: 'tcp_refused', code: 'ECONNREFUSED', totalMs: 0.3 },
  dns: { cls: 'dns_timeout', code: 'ETIMEOUT', totalMs: 800 },
};

const ms3 = (x: number): number => Math.round(x * 1000) / 1000;

const agentName = (index: number): string => `sim-${String(index).padStart(5, '0')}`;
const agentIdOf = (index: number): string => `simagent-${String(index).padStart(8, '0')}`;
const phaseOf = (s: LoadSettings, index: number): number =>
  Math.floor((index / s.totalAgents) * s.intervalMs);

/** Every batch of one agent, compressed into one buffer, and what each holds. */
interface AgentBatches {
  readonly index: number;
  readonly data: Uint8Array;
  /** Per batch: [offset, length, json bytes, full results]. */
  readonly meta: Float64Array;
}

const metaFields = 4;

/**
 * Makes `s.rounds` batches of one agent, the first stamped `baseMs` + its phase. The agent
 * probes `s.paths` targets of the plan, spread over it and rotated per agent so agents
 * differ; every (1/failRatio)-th of its paths fails every probe.
 */
/** Results an agent sends in full after a state change besides the change itself. */
const confirmedAfter = defaultConfirmResults;

function makeAgentBatches(
  s: LoadSettings,
  targets: readonly PlanTargetLite[],
  index: number,
  baseMs: number,
): AgentBatches {
  const rand = rng(0x5eed + index);
  const name = agentName(index);
  const failEvery = s.failRatio > 0 ? Math.round(1 / s.failRatio) : 0;
  const paths = [];
  for (let j = 0; j < s.paths; j++) {
    const t = targets[(index * 7 + Math.floor((j * targets.length) / s.paths)) % targets.length]!;
    paths.push({
      ...t,
      failing: failEvery > 0 && j % failEvery === 0,
      head: `{"target":${JSON.stringify(t.name)},"kind":${JSON.stringify(t.kind)},`,
      resultHead: `{"agent":"${name}","target":${JSON.stringify(t.name)},"address":${JSON.stringify(t.address)},"kind":"${t.kind}",`,
      baseMs: t.kind === 'http' ? 1.5 + rand() * 3 : 0.1 + rand() * 0.6,
    });
  }
  const batchHead =
    `{"agentId":"${agentIdOf(index)}","agent":"${name}",` +
    `"labels":{"zone":"z${index % 3}","rack":"r${index % 20}"},`;
  const phase = phaseOf(s, index);
  const bodies: Buffer[] = [];
  const meta = new Float64Array(s.rounds * metaFields);
  let probeSeq = 0;
  let offset = 0;
  for (let r = 0; r < s.rounds; r++) {
    const toMs = baseMs + r * s.intervalMs + phase;
    const fromMs = toMs - s.intervalMs;
    const k = s.probesPerReport;
    const probeMs = s.intervalMs / k;
    const summaries: string[] = [];
    const results: string[] = [];
    // Every path's probes of this period: seqs firstSeq … firstSeq + k - 1, per path.
    const firstSeq = probeSeq + 1;
    probeSeq += k * paths.length;
    for (let pi = 0; pi < paths.length; pi++) {
      const p = paths[pi]!;
      const seqOf = (i: number): number => firstSeq + i * paths.length + pi;
      const lastSeq = seqOf(k - 1);
      // Which of a failing path's probes go in full: its first (a change: a failure) and the
      // `confirmResults` after it (agent/reporter.ts).
      const fullUpTo = Math.min(k, Math.max(0, confirmedAfter + 1 - r * k));
      if (p.failing) {
        const f = failures[p.kind] ?? failures.tcp!;
        summaries.push(
          `${p.head}"fromMs":${fromMs},"toMs":${toMs},"count":${k},"ok":0,"failures":{"${f.cls}":${k}},` +
            `${p.kind === 'icmp' ? '"lossRatio":1,' : ''}"lastClass":"${f.cls}","lastSeq":${lastSeq}}`,
        );
        for (let i = 0; i < fullUpTo; i++) {
          results.push(
            `${p.resultHead}"class":"${f.cls}","seq":${seqOf(i)},"startedAtMs":${Math.floor(fromMs + i * probeMs)},` +
              `"timings":{"totalMs":${ms3(f.totalMs * (0.98 + rand() * 0.04))}},` +
              `"error":{"code":"${f.code}","message":${JSON.stringify(`${f.code} while probing ${p.address}`)}}` +
              `${f.detail === undefined ? '' : `,"detail":${f.detail}`}}`,
          );
        }
        continue;
      }
      const lat = ms3(p.baseMs * (0.8 + rand() * 0.4));
      summaries.push(
        `${p.head}"fromMs":${fromMs},"toMs":${toMs},"count":${k},"ok":${k},"failures":{},` +
          `"latencyMs":{"min":${lat},"p50":${lat},"p90":${lat},"p99":${lat},"max":${lat}},` +
          `${p.kind === 'icmp' ? '"lossRatio":0,' : ''}"lastClass":"ok","lastSeq":${lastSeq}}`,
      );
      // A healthy path's first result is no news (agent/reporter.ts): nothing goes in full.
    }
    const json =
      `${batchHead}"seq":${r + 1},"createdAtMs":${toMs},` +
      `"results":[${results.join(',')}],"summaries":[${summaries.join(',')}]}`;
    const body = gzipSync(json, { level: s.gzipLevel });
    bodies.push(body);
    meta.set([offset, body.length, json.length, results.length], r * metaFields);
    offset += body.length;
  }
  const data = new Uint8Array(offset);
  for (let r = 0; r < bodies.length; r++) data.set(bodies[r]!, meta[r * metaFields]);
  return { index, data, meta };
}

interface WorkerJob {
  readonly s: LoadSettings;
  readonly targets: readonly PlanTargetLite[];
  readonly indexes: readonly number[];
  readonly baseMs: number;
}

/** Makes every agent's batches, spread over worker threads (one per CPU this may use). */
async function makeAllBatches(
  s: LoadSettings,
  targets: readonly PlanTargetLite[],
  baseMs: number,
): Promise<Map<number, AgentBatches>> {
  const workers = Math.max(1, Math.min(availableParallelism(), s.agents));
  const jobs: number[][] = Array.from({ length: workers }, () => []);
  for (let k = 0; k < s.agents; k++) jobs[k % workers]!.push(s.firstAgent + k);
  const out = new Map<number, AgentBatches>();
  await Promise.all(
    jobs.map(
      (indexes) =>
        new Promise<void>((resolve, reject) => {
          const job: WorkerJob = { s, targets, indexes, baseMs };
          const w = new Worker(new URL(import.meta.url), { workerData: job });
          w.on('message', (m: AgentBatches) => out.set(m.index, m));
          w.once('error', reject);
          w.once('exit', (code) =>
            code === 0 ? resolve() : reject(new Error(`batch worker exited with ${code}`)),
          );
        }),
    ),
  );
  return out;
}

function workerMain(): void {
  const job = workerData as WorkerJob;
  for (const index of job.indexes) {
    const b = makeAgentBatches(job.s, job.targets, index, job.baseMs);
    parentPort!.postMessage(b, [b.data.buffer as ArrayBuffer]);
  }
}

// ---------------------------------------------------------------------------------------
// Sending them

interface QueuedBatch {
  readonly body: Uint8Array;
  readonly jsonBytes: number;
  readonly fullResults: number;
  /** When it was due (performance.now() clock). */
  readonly cutAtMs: number;
}

interface SimAgent {
  readonly index: number;
  readonly phaseMs: number;
  readonly client: Client;
  readonly batches: AgentBatches;
  readonly queue: QueuedBatch[];
  inFlight: boolean;
  /** Waiting for a Retry-After or a backoff. */
  waiting: boolean;
  /** Consecutive requests without an answer (the backoff's attempt). */
  failures: number;
}

class Load {
  private readonly agents: SimAgent[] = [];
  private readonly rand = rng(0xbac0ff);
  private startMs = 0;
  private round = 0;
  private cursor = 0;
  private ticker: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private readonly headers: Record<string, string>;
  // Counters since the mark.
  private markMs = performance.now();
  private backlogAtMark = 0;
  private c = this.zero();
  private latency = new Samples();
  private ackLatency = new Samples();
  private delivery = new Samples();
  private cutLate = new Samples();
  private readonly errorSamples = new Set<string>();

  constructor(
    private readonly s: LoadSettings,
    made: ReadonlyMap<number, AgentBatches>,
  ) {
    this.headers = {
      authorization: `Bearer ${s.token}`,
      'content-type': 'application/json',
      'content-encoding': 'gzip',
      accept: 'application/json',
    };
    for (let k = 0; k < s.agents; k++) {
      const index = s.firstAgent + k;
      this.agents.push({
        index,
        phaseMs: phaseOf(s, index),
        client: new Client(s.url, {
          keepAliveTimeout: 30_000,
          pipelining: 1,
          headersTimeout: requestTimeoutMs,
          bodyTimeout: requestTimeoutMs,
          connectTimeout: requestTimeoutMs,
        }),
        batches: made.get(index)!,
        queue: [],
        inFlight: false,
        waiting: false,
        failures: 0,
      });
    }
  }

  private zero() {
    return {
      offeredBatches: 0,
      acceptedBatches: 0,
      acceptedFullResults: 0,
      duplicates: 0,
      networkErrors: 0,
      bodyBytes: 0,
      jsonBytes: 0,
      statuses: {} as Record<string, number>,
    };
  }

  start(): void {
    this.loop.enable();
    this.startMs = Date.now();
    this.ticker = setInterval(() => this.tick(), 2);
  }

  mark(): void {
    this.markMs = performance.now();
    this.backlogAtMark = this.backlog();
    this.c = this.zero();
    this.latency = new Samples();
    this.ackLatency = new Samples();
    this.delivery = new Samples();
    this.cutLate = new Samples();
    this.errorSamples.clear();
    this.loop.reset();
  }

  private backlog(): number {
    let n = 0;
    for (const a of this.agents) n += a.queue.length;
    return n;
  }

  report(): LoadReport {
    const c = this.c;
    const p = this.s.paths;
    return {
      elapsedMs: performance.now() - this.markMs,
      offeredBatches: c.offeredBatches,
      offeredPathResults: c.offeredBatches * p,
      acceptedBatches: c.acceptedBatches,
      acceptedPathResults: c.acceptedBatches * p,
      acceptedSummaries: c.acceptedBatches * p,
      acceptedFullResults: c.acceptedFullResults,
      duplicates: c.duplicates,
      statuses: { ...c.statuses },
      networkErrors: c.networkErrors,
      latencyMs: this.latency.quantiles(),
      ackLatencyMs: this.ackLatency.quantiles(),
      deliveryMs: this.delivery.quantiles(),
      backlogAtMarkBatches: this.backlogAtMark,
      backlogBatches: this.backlog(),
      meanBodyBytes: c.offeredBatches === 0 ? Number.NaN : c.bodyBytes / c.offeredBatches,
      meanJsonBytes: c.offeredBatches === 0 ? Number.NaN : c.jsonBytes / c.offeredBatches,
      loopDelayP99Ms: this.loop.percentile(99) / 1e6,
      loopDelayMaxMs: this.loop.max / 1e6,
      cutLateP99Ms: this.cutLate.quantiles().p99,
      sampleErrors: [...this.errorSamples],
    };
  }

  /** Stops cutting; waits (bounded) for what is in flight; closes the connections. */
  async stop(): Promise<{ backlogBatches: number }> {
    this.stopping = true;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    const deadline = performance.now() + 10_000;
    while (this.agents.some((a) => a.inFlight) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const backlogBatches = this.backlog();
    await Promise.allSettled(this.agents.map((a) => a.client.destroy()));
    return { backlogBatches };
  }

  /** Queues the batch of every agent whose moment has come (agents are in phase order). */
  private tick(): void {
    const now = Date.now();
    for (let n = 0; n < maxCutsPerTick; n++) {
      if (this.round >= this.s.rounds) {
        clearInterval(this.ticker);
        return;
      }
      const a = this.agents[this.cursor]!;
      const dueMs = this.startMs + this.round * this.s.intervalMs + a.phaseMs;
      if (dueMs > now) return;
      this.cutLate.push(now - dueMs);
      this.enqueue(a, performance.now() - (now - dueMs));
      if (++this.cursor === this.agents.length) {
        this.cursor = 0;
        this.round++;
      }
    }
  }

  /** The agent's batch of this round goes into its queue (its spool), and out if the line is free. */
  private enqueue(a: SimAgent, cutAtMs: number): void {
    const m = a.batches.meta.subarray(this.round * metaFields, (this.round + 1) * metaFields);
    const [offset, length, jsonBytes, fullResults] = m as unknown as [
      number,
      number,
      number,
      number,
    ];
    const body = a.batches.data.subarray(offset, offset + length);
    this.c.offeredBatches++;
    this.c.jsonBytes += jsonBytes;
    this.c.bodyBytes += length;
    a.queue.push({ body, jsonBytes, fullResults, cutAtMs });
    this.pump(a);
  }

  private pump(a: SimAgent): void {
    if (a.inFlight || a.waiting || a.queue.length === 0 || this.stopping) return;
    a.inFlight = true;
    void this.send(a, a.queue[0]!).finally(() => {
      a.inFlight = false;
      this.pump(a);
    });
  }

  private async send(a: SimAgent, b: QueuedBatch): Promise<void> {
    const t0 = performance.now();
    let status: number;
    let text: string;
    let retryAfterS: number | undefined;
    try {
      const res = await a.client.request({
        path: '/api/v1/reports',
        method: 'POST',
        headers: this.headers,
        body: b.body,
      });
      status = res.statusCode;
      text = await res.body.text();
      const ra = res.headers['retry-after'];
      if (typeof ra === 'string' && /^\d+$/.test(ra)) retryAfterS = Number(ra);
    } catch (err) {
      this.latency.push(performance.now() - t0);
      this.c.networkErrors++;
      this.noteError(`no answer: ${(err as { code?: string }).code ?? String(err)}`);
      a.failures++;
      const ceilingMs = Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(a.failures - 1, 30));
      this.retryLater(a, Math.floor(this.rand() * ceilingMs));
      return;
    }
    const t1 = performance.now();
    this.latency.push(t1 - t0);
    a.failures = 0;
    const key = String(status);
    this.c.statuses[key] = (this.c.statuses[key] ?? 0) + 1;
    if (status === 200) {
      a.queue.shift();
      this.ackLatency.push(t1 - t0);
      this.delivery.push(t1 - b.cutAtMs);
      if ((JSON.parse(text) as { duplicate?: boolean }).duplicate === true) {
        this.c.duplicates++;
        return;
      }
      this.c.acceptedBatches++;
      this.c.acceptedFullResults += b.fullResults;
      return;
    }
    this.noteError(`${status} ${text.slice(0, 160)}`);
    if (status === 503 || status === 429) {
      const waitMs = (retryAfterS ?? 1) * 1000;
      this.retryLater(a, waitMs + this.rand() * waitMs * 0.1);
      return;
    }
    // Anything else would wedge the agent's queue: the batch is dropped (its status counted).
    a.queue.shift();
  }

  private retryLater(a: SimAgent, ms: number): void {
    a.waiting = true;
    setTimeout(() => {
      a.waiting = false;
      this.pump(a);
    }, ms).unref();
  }

  private noteError(what: string): void {
    if (this.errorSamples.size < 5) this.errorSamples.add(what.replace(/\d+ s\b/g, 'N s'));
  }
}

async function fetchTargets(s: LoadSettings): Promise<PlanTargetLite[]> {
  const client = new Client(s.url);
  try {
    const res = await client.request({
      path: `/api/v1/plan?agent=sim-plan`,
      method: 'GET',
      headers: { authorization: `Bearer ${s.token}`, accept: 'application/json' },
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`plan: ${res.statusCode} ${text.slice(0, 300)}`);
    const plan = JSON.parse(text) as { targets: PlanTargetLite[] };
    if (plan.targets.length === 0) throw new Error('the plan has no targets');
    return plan.targets.map((t) => ({ name: t.name, kind: t.kind, address: t.address }));
  } finally {
    await client.close();
  }
}

async function main(): Promise<void> {
  const s = JSON.parse(process.argv[2] ?? '') as LoadSettings;
  const targets = await fetchTargets(s);
  const t0 = performance.now();
  const made = await makeAllBatches(s, targets, Date.now());
  const prepareS = (performance.now() - t0) / 1000;
  let bytes = 0;
  for (const b of made.values()) bytes += b.data.length;
  const load = new Load(s, made);
  const kinds: Record<string, number> = {};
  for (const t of targets) kinds[t.kind] = (kinds[t.kind] ?? 0) + 1;
  const ready = {
    planTargets: targets.length,
    kinds,
    batches: s.agents * s.rounds,
    megabytes: bytes / (1024 * 1024),
    prepareS,
  };
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`);
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    switch (line.trim()) {
      case 'start':
        load.start();
        break;
      case 'mark':
        load.mark();
        process.stdout.write('MARKED\n');
        break;
      case 'report':
        process.stdout.write(`REPORT ${JSON.stringify(load.report())}\n`);
        break;
      case 'stop': {
        const left = await load.stop();
        process.stdout.write(`STOPPED ${JSON.stringify(left)}\n`);
        process.exit(0);
        break;
      }
      default:
        break;
    }
  }
  // stdin closed without `stop`: the orchestrator is gone.
  await load.stop();
  process.exit(0);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `collector-load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
} else {
  workerMain();
}
