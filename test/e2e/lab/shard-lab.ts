import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { Diagnosis, Hypothesis } from '../../../wire/diagnosis.js';
import type { AgentLiveness, PathState } from '../../../collector/types.js';
import { Lab } from '../../../lab/lab.js';
import { NatsCluster } from '../../../lab/nats.js';
import type { LabProcess } from '../../../lab/process.js';
import type { LabSpec } from '../../../lab/spec.js';
import { cliPath, ensureBuilt } from '../../helpers/cli.js';

/**
 * The scale-out lab the shard tests share (issue 17): a three-node nats-server cluster
 * (JetStream, replicas 3), agents publishing their reports through it from their own hosts,
 * the ingest shards a test names (each a `faultline collector` on the `ops` host with its
 * `nats:` lines), a single collector (`role: both`, its own durable consumer) beside them
 * taking every report itself, and the lab's collector as the localiser (`role: localiser`).
 * The spec must have hosts `ops` and the three `natsHosts`, none of them running an agent.
 */
export interface ShardLabOptions {
  readonly spec: LabSpec;
  /** The hosts of the NATS cluster's three nodes. */
  readonly natsHosts: readonly string[];
  /** The hosts whose agents publish through NATS. */
  readonly agentHosts: readonly string[];
  /** Per ingest shard: its API port on `ops` and its `nats:` lines besides servers and replicas. */
  readonly shards: Readonly<Record<string, { readonly port: number; readonly nats: string[] }>>;
  /** The single collector's API port on `ops`. */
  readonly singlePort: number;
}

/** A collector of the shard lab: an ingest shard, the single collector or the localiser. */
export type ShardLabSide = string;

/** What a shard lab test reads and drives (valid once the lab is up). */
export interface ShardLab {
  readonly lab: () => Lab;
  /** The ingest shards', the single collector's and the agents' processes, by name. */
  readonly procs: Map<string, LabProcess>;
  /** (Re)starts an ingest shard or the single collector (`single`) on its port. */
  readonly startCollector: (side: ShardLabSide) => void;
  readonly get: <T>(side: ShardLabSide, path: string) => Promise<T>;
  readonly paths: (side: ShardLabSide) => Promise<PathState[]>;
  readonly agentsOf: (side: ShardLabSide) => Promise<AgentLiveness[]>;
  readonly diagnosisOf: (side: ShardLabSide) => Promise<Diagnosis>;
}

/** The top hypothesis' kind and components (sorted), or undefined when healthy. */
export const topOf = (d: Diagnosis): Pick<Hypothesis, 'kind' | 'components'> | undefined =>
  d.hypotheses[0] === undefined
    ? undefined
    : { kind: d.hypotheses[0].kind, components: [...d.hypotheses[0].components].sort() };

/** A path's name in messages: `agent → target`. */
export const pathKey = (p: PathState): string => `${p.agent} → ${p.target}`;

/**
 * One look, for `pollUntil`, at whether the localiser holds every path of the shards (each
 * shard only the paths `owns` gives it, and some), at least `echoPaths` echo paths in the
 * states the single collector has them, every path ok and a healthy diagnosis; else it
 * throws saying what is not so yet.
 */
export async function localiserHoldsTheShards(
  l: Pick<ShardLab, 'paths' | 'diagnosisOf'>,
  owns: Readonly<Record<ShardLabSide, (p: PathState) => boolean>>,
  echoPaths: number,
): Promise<true> {
  const shards = Object.keys(owns);
  const [loc = [], single = [], ...held] = await Promise.all(
    ['localiser', 'single', ...shards].map(l.paths),
  );
  let total = 0;
  for (const [i, side] of shards.entries()) {
    const ps = held[i] ?? [];
    const foreign = ps.find((p) => owns[side]?.(p) !== true);
    if (foreign !== undefined) throw new Error(`${side} holds ${pathKey(foreign)}`);
    if (ps.length === 0) throw new Error(`${side} holds no paths yet`);
    total += ps.length;
  }
  const icmp = (ps: PathState[]): string[] =>
    ps
      .filter((p) => p.kind === 'icmp')
      .map((p) => `${pathKey(p)}: ${p.state}`)
      .sort();
  if (icmp(loc).length < echoPaths) throw new Error(`localiser: ${icmp(loc).length} echo paths`);
  if (loc.length !== total) throw new Error(`localiser ${loc.length} paths, shards ${total}`);
  expect(icmp(loc)).toEqual(icmp(single));
  if (loc.some((p) => p.state !== 'ok')) throw new Error('not every path ok yet');
  const d = await l.diagnosisOf('localiser');
  if (!d.healthy) throw new Error(`localiser: ${d.hypotheses[0]?.summary}`);
  return true;
}

/**
 * Waits, for `pollUntil`, until the localiser and the single collector both have `want` on
 * top, and returns both documents; says which of them does not yet.
 */
export function bothAnswer(
  l: Pick<ShardLab, 'diagnosisOf'>,
  want: Pick<Hypothesis, 'kind' | 'components'>,
): () => Promise<{ loc: Diagnosis; single: Diagnosis }> {
  return async () => {
    const [loc, single] = await Promise.all([l.diagnosisOf('localiser'), l.diagnosisOf('single')]);
    const wanted = JSON.stringify({ kind: want.kind, components: [...want.components].sort() });
    if (JSON.stringify(topOf(single)) !== wanted)
      throw new Error(`single: ${single.hypotheses[0]?.summary ?? 'healthy'}`);
    if (JSON.stringify(topOf(loc)) !== wanted)
      throw new Error(`localiser: ${loc.hypotheses[0]?.summary ?? 'healthy'}`);
    return { loc, single };
  };
}

/**
 * Brings the shard lab up before the enclosing describe's tests (collectors and agents
 * started, not yet waited for) and down after them (every process by PID, every namespace),
 * printing the collectors' logs of a failed test.
 */
export function useShardLab(o: ShardLabOptions): ShardLab {
  let lab: Lab | undefined;
  let nats: NatsCluster | undefined;
  const procs = new Map<string, LabProcess>();
  const ports: Record<string, number> = {
    ...Object.fromEntries(Object.entries(o.shards).map(([k, v]) => [k, v.port])),
    single: o.singlePort,
  };

  const urlOf = (side: ShardLabSide): string => {
    if (side === 'localiser') return lab!.collectorUrl;
    const port = ports[side];
    if (port === undefined) throw new Error(`no collector ${side} in this shard lab`);
    return `http://${lab!.host('ops').ip}:${port}`;
  };

  const startCollector = (side: ShardLabSide): void => {
    const l = lab!;
    const ops = l.host('ops');
    const port = ports[side]!;
    const file = join(l.dir, `collector-${side}.yaml`);
    const yaml = l
      .collectorYaml(port)
      .replace(/^listen: .*$/m, `listen: ${ops.ip}:${port}`)
      .replace(/^dataDir: .*$/m, `dataDir: ${join(l.dir, `data-${side}`)}`);
    const role = side === 'single' ? ['consumer: single', 'role: both'] : o.shards[side]!.nats;
    writeFileSync(file, `${yaml}transport: nats\n${nats!.yaml('', [...role, 'replicas: 3'])}\n`);
    procs.set(
      side,
      l.spawnIn(ops, side, process.execPath, [cliPath, 'collector', '-c', file], {
        FAULTLINE_LOG_LEVEL: 'info',
      }),
    );
  };

  const get = <T>(side: ShardLabSide, path: string): Promise<T> => lab!.get<T>(path, urlOf(side));

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.up(o.spec, {
      cliPath,
      extraCollectorYaml: async (l) => {
        nats = await NatsCluster.start(l, o.natsHosts);
        return `transport: nats\n${nats.yaml('', ['consumer: localiser', 'role: localiser', 'replicas: 3'])}`;
      },
    });
    for (const side of Object.keys(ports)) startCollector(side);
    for (const a of o.agentHosts)
      procs.set(a, nats!.startAgent(cliPath, a, ['timeout: 2s'], 'warn'));
  }, 120_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail' || lab === undefined) return;
    for (const [name, p] of [['localiser', lab.collector] as const, ...procs])
      console.info(`--- ${name}:\n${p?.log().slice(-3000) ?? ''}`);
  });

  afterAll(async () => {
    // Kills every process the lab started (NATS nodes, agents, collectors) by PID.
    await lab?.down();
  });

  return {
    lab: () => {
      if (lab === undefined) throw new Error('shard lab not up');
      return lab;
    },
    procs,
    startCollector,
    get,
    paths: async (side) => (await get<{ paths: PathState[] }>(side, '/api/v1/paths')).paths,
    agentsOf: async (side) =>
      (await get<{ agents: AgentLiveness[] }>(side, '/api/v1/agents')).agents,
    diagnosisOf: (side) => get<Diagnosis>(side, '/api/v1/diagnosis'),
  };
}
