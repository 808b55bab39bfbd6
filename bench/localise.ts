/**
 * Localisation benchmark (issue 5): a full mesh of `--hosts` hosts (default 1,000), each
 * probing every other by ICMP and by TCP to its one service — about 2 million paths — timed
 * for a full diagnosis (`localise()`) and for an incremental one (`IncrementalLocaliser`)
 * after one report batch: one agent's paths changed. Healthy and faulted matrices (a switch
 * cut off seen from both sides, plus a database refusing connections). Prints a Markdown
 * table; figures are medians of `--runs` runs on one thread.
 *
 * `--peers N` makes it a fleet instead of a mesh: each host probes N others (half its
 * neighbours, mostly on its own switch, half spread over the fleet), 2N paths per agent — the
 * ingest bench's fleet is `--hosts 2000 --peers 50` (2,000 agents × 100 paths).
 *
 *   npx tsc -p tsconfig.build.json && node --expose-gc dist/bench/localise.js \
 *     [--hosts 1000] [--peers all|N] [--runs 5] [--matrix both|healthy|faulted]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { IncrementalLocaliser, localise } from '../collector/localise/localise.js';
import type { LocaliseComponent, LocaliseInput } from '../collector/localise/localise.js';
import type { AgentLiveness, PathState } from '../collector/types.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import type { FailureClass } from '../wire/result.js';

const nowMs = 1_800_000_000_000;
const hostsPerSwitch = 25;

interface Mesh {
  readonly inventory: LocaliseComponent[];
  readonly agents: AgentLiveness[];
  /** Paths by agent, in inventory order. */
  readonly byAgent: Map<string, PathState[]>;
  /** The hosts each agent probes. */
  readonly targets: ReadonlyMap<string, readonly LocaliseComponent[]>;
}

const roles = ['api', 'api', 'web', 'cache', 'database'] as const;
const serviceOf: Record<(typeof roles)[number], string> = {
  api: 'http',
  web: 'http',
  cache: 'redis',
  database: 'postgres',
};

function pathState(
  agent: string,
  component: string,
  service: string | undefined,
  cls: FailureClass,
): PathState {
  const failing = cls !== 'ok';
  return {
    agent,
    target: service === undefined ? `${component}/icmp` : `${component}/${service}/tcp`,
    component,
    ...(service === undefined ? {} : { service }),
    kind: service === undefined ? 'icmp' : 'tcp',
    state: failing ? 'failing' : 'ok',
    lastClass: cls,
    consecutiveFailures: failing ? 6 : 0,
    consecutiveSuccesses: failing ? 0 : 10,
    failureRatio: failing ? 0.6 : 0,
    latencyMs: { baseline: 0.4, p50: 0.4, p99: 0.9 },
    failures: failing ? { [cls]: 6 } : {},
    probes: 10,
    sinceMs: nowMs - 60_000,
    lastSeenMs: nowMs - 1_000,
  };
}

/**
 * The hosts each host probes: every other (a full mesh), or `peers` of them — the next
 * `peers / 2` (its switch's neighbours) and as many spread evenly over the rest.
 */
function peersOf(hostCount: number, peers: number | undefined): (i: number) => number[] {
  if (peers === undefined || peers >= hostCount - 1)
    return (i) => Array.from({ length: hostCount - 1 }, (_, k) => (i + 1 + k) % hostCount);
  const near = Math.ceil(peers / 2);
  const far = peers - near;
  const stride = Math.max(1, Math.floor((hostCount - near - 1) / Math.max(1, far)));
  return (i) => {
    const out = new Set<number>();
    for (let k = 1; k <= near; k++) out.add((i + k) % hostCount);
    for (let k = 1; out.size < peers && k < hostCount; k++)
      if ((i + near + k * stride) % hostCount !== i) out.add((i + near + k * stride) % hostCount);
    return [...out];
  };
}

/** The mesh; `cutSwitch` fails every path across it, `downDb` refuses its service. */
function mesh(
  hostCount: number,
  peers: number | undefined,
  fault: { cutSwitch?: string; downDb?: string },
): Mesh {
  const inventory: LocaliseComponent[] = [];
  for (let i = 0; i < hostCount; i++) {
    const sw = Math.floor(i / hostsPerSwitch);
    inventory.push({
      name: `h-${i}`,
      address: `198.18.${i >> 8}.${i & 255}`,
      role: roles[i % roles.length] ?? 'api',
      labels: { zone: sw % 2 === 0 ? 'a' : 'b', switch: `sw-${sw}` },
    });
  }
  const agents: AgentLiveness[] = inventory.map((c) => ({
    agentId: `id-${c.name}`,
    agent: c.name,
    labels: c.labels,
    state: 'live',
    lastSeenMs: nowMs - 1_000,
    acceptedSeq: 10,
    droppedResults: 0,
    spoolBacklog: 0,
  }));
  const byAgent = new Map<string, PathState[]>();
  const targetsOf = peersOf(hostCount, peers);
  const targets = new Map<string, LocaliseComponent[]>();
  inventory.forEach((src, i) => {
    const ts = targetsOf(i).map((k) => inventory[k] as LocaliseComponent);
    targets.set(src.name, ts);
    byAgent.set(src.name, agentPaths(ts, src, fault));
  });
  return { inventory, agents, byAgent, targets };
}

function agentPaths(
  targets: readonly LocaliseComponent[],
  src: LocaliseComponent,
  fault: { cutSwitch?: string; downDb?: string; sourceFault?: boolean },
): PathState[] {
  const out: PathState[] = [];
  const srcCut = src.labels.switch === fault.cutSwitch;
  for (const dst of targets) {
    const across =
      fault.sourceFault === true ||
      (fault.cutSwitch !== undefined && srcCut !== (dst.labels.switch === fault.cutSwitch));
    const service = serviceOf[dst.role as (typeof roles)[number]];
    out.push(pathState(src.name, dst.name, undefined, across ? 'icmp_timeout' : 'ok'));
    out.push(
      pathState(
        src.name,
        dst.name,
        service,
        across ? 'tcp_timeout' : dst.name === fault.downDb ? 'tcp_refused' : 'ok',
      ),
    );
  }
  return out;
}

/** Wall-clock and CPU time (user + system, this process) of one call. */
interface Timing {
  readonly wallMs: number;
  readonly cpuMs: number;
}

function timing(fn: () => void): Timing {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wallMs, cpuMs: (c.user + c.system) / 1000 };
}

/** Median and max of the wall and CPU times. */
function summary(xs: readonly Timing[]): string {
  const wall = xs.map((x) => x.wallMs);
  const cpu = xs.map((x) => x.cpuMs);
  const f = (n: number): string => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  return `${f(median(wall))} / ${f(median(cpu))} ms (max ${f(Math.max(...wall))} / ${f(Math.max(...cpu))})`;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MB`;

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

interface Row {
  readonly matrix: string;
  readonly paths: number;
  readonly full: string;
  /** One agent's batch with no change of state. */
  readonly refresh: string;
  /** One agent's batch where every path of it breaks, or heals. */
  readonly flip: string;
  readonly top: string;
  readonly heapMb: string;
  readonly rssMb: string;
}

function measure(
  name: string,
  hostCount: number,
  peers: number | undefined,
  runs: number,
  fault: { cutSwitch?: string; downDb?: string },
): Row {
  const m = mesh(hostCount, peers, fault);
  const paths = [...m.byAgent.values()].flat();
  const input: LocaliseInput = { paths, agents: m.agents, inventory: m.inventory, nowMs };
  gc();
  const before = process.memoryUsage();

  let d: Diagnosis | undefined;
  const full: Timing[] = [];
  for (let r = 0; r < runs; r++)
    full.push(
      timing(() => {
        d = localise(input);
      }),
    );

  // Warm localiser; then one agent's batch at a time flips between healthy and broken.
  const l = new IncrementalLocaliser({ inventory: m.inventory });
  for (const [agent, ps] of m.byAgent) l.replaceAgentPaths(agent, ps);
  l.setAgents(m.agents);
  l.diagnose(nowMs);
  gc();
  const held = process.memoryUsage();
  const refresh: Timing[] = [];
  const flip: Timing[] = [];
  const updates = Math.max(10, 4 * runs);
  const inventory = m.inventory;
  const timed = (batch: readonly PathState[], into: Timing[]): void => {
    into.push(
      timing(() => {
        l.upsertPaths(batch);
        l.setAgents(m.agents);
        l.diagnose(nowMs);
      }),
    );
  };
  for (let u = 0; u < updates; u++) {
    const src = inventory[(u * 37) % inventory.length] as LocaliseComponent;
    const healed = m.byAgent.get(src.name) ?? [];
    // The usual batch: the agent's paths seen again, nothing changed but the time.
    timed(
      healed.map((p) => ({ ...p, lastSeenMs: p.lastSeenMs + 1 })),
      refresh,
    );
    // A batch where the agent's own host lost its network, then the next one where it is back.
    timed(agentPaths(m.targets.get(src.name) ?? [], src, { ...fault, sourceFault: true }), flip);
    timed(healed, flip);
  }
  const check = l.diagnose(nowMs);
  if (JSON.stringify(check) !== JSON.stringify(d))
    throw new Error(`${name}: incremental and full diagnoses differ`);
  const top = d?.hypotheses[0];
  return {
    matrix: name,
    paths: paths.length,
    full: summary(full),
    refresh: summary(refresh),
    flip: summary(flip),
    top: top
      ? `${top.kind} ${top.components.length > 3 ? `${top.components.length} hosts` : top.components.join(',')}`
      : 'healthy',
    heapMb: `${mb(before.heapUsed)} → ${mb(held.heapUsed)}`,
    rssMb: `${mb(before.rss)} → ${mb(held.rss)}`,
  };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      hosts: { type: 'string', default: '1000' },
      peers: { type: 'string', default: 'all' },
      runs: { type: 'string', default: '5' },
      matrix: { type: 'string', default: 'both' },
    },
  });
  const hostCount = Number(values.hosts);
  const runs = Number(values.runs);
  if (!Number.isInteger(hostCount) || hostCount < 2 * hostsPerSwitch)
    throw new Error(
      `--hosts: expected an integer ≥ ${2 * hostsPerSwitch} (actual: ${values.hosts})`,
    );
  if (!Number.isInteger(runs) || runs < 1)
    throw new Error(`--runs: expected an integer ≥ 1 (actual: ${values.runs})`);
  const peers = values.peers === 'all' ? undefined : Number(values.peers);
  if (peers !== undefined && !(Number.isInteger(peers) && peers >= 2 && peers < hostCount))
    throw new Error(
      `--peers: expected all or an integer from 2 to --hosts − 1 (actual: ${values.peers})`,
    );
  const which = values.matrix;
  if (which !== 'both' && which !== 'healthy' && which !== 'faulted')
    throw new Error(`--matrix: expected healthy, faulted or both (actual: ${which})`);
  const rows: Row[] = [];
  if (which !== 'faulted') rows.push(measure('healthy', hostCount, peers, runs, {}));
  if (which !== 'healthy')
    rows.push(
      measure('sw-1 cut off + db down', hostCount, peers, runs, {
        cutSwitch: 'sw-1',
        downDb: 'h-54',
      }),
    );
  console.log(
    `\nLocalisation, ${hostCount} hosts, ${peers === undefined ? 'a full mesh' : `each probing ${peers} others`} (icmp + tcp), node ${process.version}; times are wall / CPU, median of ${runs} full runs and of ${Math.max(10, 4 * runs)} (no change) / ${2 * Math.max(10, 4 * runs)} (break/heal) incremental updates, with the max\n`,
  );
  console.log(
    '| matrix | paths | full localise() | incremental: batch, no change | incremental: batch breaks / heals an agent | top hypothesis | heap (input → +warm localiser) | RSS |',
  );
  console.log('|---|---:|---:|---:|---:|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.matrix} | ${r.paths.toLocaleString('en')} | ${r.full} | ${r.refresh} | ${r.flip} | ${r.top} | ${r.heapMb} | ${r.rssMb} |`,
    );
}

main();
