import type { PathState } from '../collector/types.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import { matches, pathHealthy, type ExpectedHypothesis } from './expect.js';
import { Lab } from './lab.js';
import { NatsCluster } from './nats.js';
import { pollUntil } from './poll-until.js';
import type { LabOptions, LabSpec } from './spec.js';

/**
 * The HA lab (issue 17): two collectors in two failure domains — ctl-a on zone a's switch,
 * ctl-b on zone b's — the databases in a third zone joined to both, every agent reporting to
 * both collectors, which share inventory and alert labels. Cutting zone b's uplink cuts
 * collector b off with its zone: collector a must page the real cause (zone b partitioned),
 * collector b its own isolation.
 */
export const haLab: LabSpec = {
  switches: [
    { name: 'sw-a', zone: 'zone-a' },
    { name: 'sw-b', zone: 'zone-b' },
    { name: 'sw-db', zone: 'data' },
  ],
  uplinks: [
    ['sw-a', 'sw-db'],
    ['sw-b', 'sw-db'],
  ],
  hosts: [
    { name: 'ctl-a', switch: 'sw-a' },
    { name: 'app-1', switch: 'sw-a', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'ctl-b', switch: 'sw-b' },
    { name: 'app-2', switch: 'sw-b', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'db-1', switch: 'sw-db', role: 'database', services: [{ kind: 'postgres' }] },
  ],
  collectorHost: 'ctl-a',
  secondCollectorHost: 'ctl-b',
};

/** The hosts of the HA lab's NATS nodes with `transport: nats`: one in each zone. */
export const haNatsHosts = ['ctl-a', 'ctl-b', 'db-1'] as const;

/**
 * Starts the HA lab with agents reporting over `transport`: `http`, every agent posting to
 * both collectors (the lab's own agents); `nats`, a three-node JetStream cluster (replicas
 * 3) with a node beside each collector and one in the data zone, the same agents
 * publishing to it, collector a and b each with its own durable consumer.
 */
export async function upHaLab(
  transport: 'http' | 'nats',
  opts: LabOptions,
): Promise<{ lab: Lab; nats?: NatsCluster }> {
  if (transport === 'http') return { lab: await Lab.up(haLab, opts) };
  let nats: NatsCluster | undefined;
  const lab = await Lab.up(
    { ...haLab, hosts: haLab.hosts.map((h) => ({ ...h, agent: false })) },
    {
      ...opts,
      extraCollectorYaml: async (l) => {
        // The cluster first: a collector binds its consumer at start.
        nats = await NatsCluster.start(l, haNatsHosts);
        return `transport: nats\n${nats.yaml('', ['consumer: collector-a', 'replicas: 3'])}`;
      },
      secondCollectorYaml: (yaml) => yaml.replace('consumer: collector-a', 'consumer: collector-b'),
    },
  );
  try {
    for (const h of haLab.hosts)
      nats!.startAgent(opts.cliPath, h.name, ['timeout: 2s'], opts.logLevel ?? 'warn');
  } catch (err) {
    await lab.down();
    throw err;
  }
  return { lab, nats: nats! };
}

/** Zone b: the hosts a cut of its uplink isolates, collector b among them. */
export const haZoneB = ['app-2', 'ctl-b'];

/** The collectors of an HA lab: the test process's URL of each, by name. */
export function haCollectors(lab: Lab): { readonly a: string; readonly b: string } {
  if (lab.secondCollectorUrl === '') throw new Error('the lab has no second collector');
  return { a: lab.collectorUrl, b: lab.secondCollectorUrl };
}

/** Paths (of every agent) as one collector sees them. */
export async function pathsAt(lab: Lab, base: string): Promise<PathState[]> {
  return (await lab.get<{ paths: PathState[] }>('/api/v1/paths', base)).paths;
}

export function diagnosisAt(lab: Lab, base: string): Promise<Diagnosis> {
  return lab.get<Diagnosis>('/api/v1/diagnosis', base);
}

/** Whether one collector's /healthz says reports cannot reach it (NATS `inputStall`). */
async function stallAt(lab: Lab, base: string): Promise<boolean> {
  return (await lab.get<{ inputStall?: unknown }>('/healthz', base)).inputStall !== undefined;
}

/** The agents one collector does not hear from (not `live`). */
async function unheardAt(lab: Lab, base: string): Promise<string[]> {
  const { agents } = await lab.get<{ agents: { agent: string; state: string }[] }>(
    '/api/v1/agents',
    base,
  );
  return agents.filter((a) => a.state !== 'live').map((a) => `${a.agent} ${a.state}`);
}

/**
 * Waits until both collectors hear their reports (NATS), see the same number of paths, every
 * one healthy, every agent live (a path keeps its last state while its agent is silent: after a heal, a collector
 * whose reports have not resumed still shows healthy paths), and the count has not changed
 * for `stableMs` (the plan settles as agents join); returns it.
 */
export async function waitBothHealthy(
  lab: Lab,
  timeoutMs = 60_000,
  stableMs = 3000,
): Promise<number> {
  const { a, b } = haCollectors(lab);
  let last = -1;
  let sinceMs = 0;
  return pollUntil(
    'both collectors: the same paths, all healthy, for a while',
    async () => {
      const [pa, pb, ua, ub, sa, sb] = await Promise.all([
        pathsAt(lab, a),
        pathsAt(lab, b),
        unheardAt(lab, a),
        unheardAt(lab, b),
        stallAt(lab, a),
        stallAt(lab, b),
      ]);
      // A collector that hears nothing (NATS) holds its agents live: that is no proof.
      if (sa || sb) {
        last = -1;
        throw new Error(`reports cannot reach collector ${sa ? 'a' : ''}${sb ? ' b' : ''}`);
      }
      const bad = [...pa, ...pb].filter((p) => !pathHealthy(p));
      if (ua.length > 0 || ub.length > 0) {
        last = -1;
        throw new Error(
          `not live at a: ${ua.join(', ') || 'none'}; at b: ${ub.join(', ') || 'none'}`,
        );
      }
      if (pa.length === 0 || pa.length !== pb.length || bad.length > 0) {
        last = -1;
        throw new Error(
          `a: ${pa.length} paths, b: ${pb.length}; not healthy: ${bad
            .slice(0, 4)
            .map((p) => `${p.agent} → ${p.target}: ${p.state}/${p.lastClass}`)
            .join('; ')}`,
        );
      }
      if (pa.length !== last) {
        last = pa.length;
        sinceMs = Date.now();
      }
      return Date.now() - sinceMs >= stableMs ? last : undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/** The hosts of each collector's zone (a cut of its uplink isolates them). */
export const haZones = { a: ['app-1', 'ctl-a'], b: haZoneB } as const;

/** When one collector first had each answer on top, ms after the injection. */
export interface CollectorAnswers {
  /** The real cause: the cut zone partitioned off (what the collector outside it says). */
  realCauseMs?: number;
  /** Its own side cut off (what the collector inside the cut zone says). */
  cutOffMs?: number;
  /** With NATS: when its /healthz first said reports could not reach it (`inputStall`)… */
  inputStalledMs?: number;
  /** …and when it no longer said so, after that. */
  inputBackMs?: number;
  /**
   * The collector outside the cut: how long (ms, in 100 ms polls) its top hypothesis said
   * that its own side was cut off, ready to page (not settling) — a wrong page.
   */
  wrongCutOffMs?: number;
}

/** How often watchHaAnswers looks at both diagnoses. */
const pollMs = 100;

/**
 * With zone `cut` cut off since `startMs`: polls both diagnoses every 100 ms until the
 * collector outside has the real cause on top and the one inside its own cut-off, and
 * `holdMs` more (or `timeoutMs` passes); says when each answer came, per collector (also an
 * answer a collector should never give: the one inside naming the real cause it cannot see).
 */
export async function watchHaAnswers(
  lab: Lab,
  startMs: number,
  timeoutMs: number,
  cut: 'a' | 'b' = 'b',
  /** After both answers, keep watching this long (a wrong answer may still come). */
  holdMs = 0,
): Promise<Record<'a' | 'b', CollectorAnswers>> {
  const urls = haCollectors(lab);
  const zone = haZones[cut];
  const real: ExpectedHypothesis = {
    kind: 'network_partition',
    components: zone,
    collectorCutOff: false,
  };
  const cutOff: ExpectedHypothesis = {
    kind: 'network_partition',
    components: zone,
    collectorCutOff: true,
  };
  const out: Record<'a' | 'b', CollectorAnswers> = { a: {}, b: {} };
  const inside = out[cut];
  const outside = out[cut === 'a' ? 'b' : 'a'];
  const endMs = startMs + timeoutMs;
  let bothAtMs: number | undefined;
  while (Date.now() < endMs && (bothAtMs === undefined || Date.now() - bothAtMs < holdMs)) {
    const got = await Promise.allSettled([diagnosisAt(lab, urls.a), diagnosisAt(lab, urls.b)]);
    const health = await Promise.allSettled([stallAt(lab, urls.a), stallAt(lab, urls.b)]);
    const now = Date.now() - startMs;
    health.forEach((h, i) => {
      if (h.status !== 'fulfilled') return;
      const o = out[i === 0 ? 'a' : 'b'];
      if (h.value) o.inputStalledMs ??= now;
      else if (o.inputStalledMs !== undefined) o.inputBackMs ??= now;
    });
    got.forEach((d, i) => {
      if (d.status !== 'fulfilled') return;
      const o = out[i === 0 ? 'a' : 'b'];
      const top = d.value.hypotheses[0];
      if (matches(top, real)) o.realCauseMs ??= now;
      if (matches(top, cutOff)) o.cutOffMs ??= now;
      if (o === outside && top?.collectorCutOff === true && d.value.settling !== true)
        o.wrongCutOffMs = (o.wrongCutOffMs ?? 0) + pollMs;
    });
    if (outside.realCauseMs !== undefined && inside.cutOffMs !== undefined) bothAtMs ??= Date.now();
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return out;
}
