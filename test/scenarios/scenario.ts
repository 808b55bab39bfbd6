import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import type { AgentLiveness, PathState } from '../../collector/types.js';
import type { LocaliseComponent, LocaliseInput } from '../../collector/localise/localise.js';
import { FaultKindSchema } from '../../wire/diagnosis.js';
import type { FailureClass } from '../../wire/result.js';

/**
 * Localisation scenarios: one YAML file per scenario in `cases/` — a topology, faults to
 * apply to an otherwise healthy full mesh, and the expected diagnosis. `buildInput` turns a
 * scenario into the path matrix the collector would hold (debounced states), so a scenario
 * reads like the incident it describes rather than a list of paths.
 */

const labels = z.record(z.string(), z.string());
const ref = z.object({ component: z.string(), service: z.string() }).strict();

const ServiceSchema = z.object({ name: z.string(), kind: z.string() }).strict();
const ComponentSchema = z
  .object({
    name: z.string(),
    role: z.string().default('other'),
    labels: labels.default({}),
    services: z.array(ServiceSchema).default([]),
    /** The agent's name; `false`: no agent on this host. */
    agent: z.union([z.string(), z.literal(false)]).optional(),
  })
  .strict();

const FaultSchema = z.union([
  z
    .object({
      /** Hosts with label=value reach each other but nothing else. */
      cut: z
        .object({
          label: z.string(),
          value: z.string(),
          /** The cut-off side's agents report (spooled reports arrived, or the collector hears both sides). */
          reportedAgain: z.boolean().default(false),
        })
        .strict(),
    })
    .strict(),
  z.object({ hostDown: z.string() }).strict(),
  z.object({ serviceDown: ref }).strict(),
  z.object({ hang: ref }).strict(),
  /** Connects, then the service resets the connection (a crashing process). */
  z.object({ reset: ref }).strict(),
  z.object({ protocolError: ref }).strict(),
  z
    .object({
      block: z
        .object({
          sources: z.array(z.string()),
          component: z.string(),
          service: z.string().optional(),
        })
        .strict(),
    })
    .strict(),
  z.object({ sourceFault: z.string() }).strict(),
  z.object({ silentAgent: z.string() }).strict(),
  z
    .object({
      degrade: z
        .object({
          component: z.string().optional(),
          source: z.string().optional(),
          lossRatio: z.number().default(0.2),
        })
        .strict(),
    })
    .strict(),
  z.object({ dnsFail: z.object({ sources: z.array(z.string()) }).strict() }).strict(),
  /** A filter that rejects (RST) connections to a service from some sources. */
  z
    .object({
      reject: z
        .object({ sources: z.array(z.string()), component: z.string(), service: z.string() })
        .strict(),
    })
    .strict(),
  /** One path failing on and off, never long enough to trip the debounce: the matrix calls it degraded. */
  z.object({ flap: z.object({ source: z.string(), component: z.string() }).strict() }).strict(),
]);
export type Fault = z.infer<typeof FaultSchema>;

export const ScenarioSchema = z
  .object({
    name: z.string(),
    description: z.string().optional(),
    components: z.array(ComponentSchema).min(2),
    collector: z
      .object({
        labels: labels.default({}),
        /** The collector hears every agent (a management network a cut does not touch). */
        hearsAll: z.boolean().default(false),
      })
      .strict()
      .default({ labels: {}, hearsAll: false }),
    faults: z.array(FaultSchema).default([]),
    /** Share of probes on ok paths that failed once (under the debounce). */
    noise: z.number().min(0).max(0.1).default(0),
    seed: z.number().int().default(1),
    expect: z
      .object({
        healthy: z.boolean(),
        top: z
          .object({
            kind: FaultKindSchema,
            components: z.array(z.string()).optional(),
            /** Member lists, order-free. */
            groups: z.array(z.array(z.string())).optional(),
            cutLabel: z
              .object({ key: z.string(), values: z.array(z.string()) })
              .strict()
              .optional(),
          })
          .strict()
          .optional(),
        /** Every hypothesis kind, in rank order. */
        kinds: z.array(FaultKindSchema).optional(),
        /** Exactly these components in ruledOut, with canBeRuledOut. */
        ruledOut: z.record(z.string(), z.boolean()).default({}),
        /** Phrases the top hypothesis's summary must contain. */
        summaryIncludes: z.array(z.string()).default([]),
      })
      .strict(),
  })
  .strict();
export type Scenario = z.infer<typeof ScenarioSchema>;

const casesDir = join(import.meta.dirname, 'cases');

/** Every scenario file, parsed and validated (a bad file throws naming it). */
export function loadScenarios(): { file: string; scenario: Scenario }[] {
  return readdirSync(casesDir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const parsed = ScenarioSchema.safeParse(parse(readFileSync(join(casesDir, file), 'utf8')));
      if (!parsed.success) throw new Error(`${file}: ${z.prettifyError(parsed.error)}`);
      return { file, scenario: parsed.data };
    });
}

const nowMs = 1_800_000_000_000;
const faultStartMs = nowMs - 60_000;

/** Small deterministic PRNG (mulberry32) so noise is the same every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The localisation input a collector would hold for this scenario. */
export function buildInput(s: Scenario): LocaliseInput {
  const random = rng(s.seed);
  const agentOf = (c: Scenario['components'][number]): string | undefined =>
    c.agent === false ? undefined : (c.agent ?? c.name);
  const byName = new Map(s.components.map((c) => [c.name, c]));
  const faults = s.faults;
  const cuts = faults.flatMap((f) => ('cut' in f ? [f.cut] : []));
  const onSide = (host: string, cut: (typeof cuts)[number]): boolean =>
    byName.get(host)?.labels[cut.label] === cut.value;
  const collectorOn = (cut: (typeof cuts)[number]): boolean =>
    s.collector.labels[cut.label] === cut.value;
  const has = <K extends string>(key: K) =>
    faults.flatMap((f) => (key in f ? [(f as Record<K, unknown>)[key]] : []));
  const hostDown = new Set(has('hostDown') as string[]);
  const sourceFault = new Set(has('sourceFault') as string[]);
  const silentAgents = new Set(has('silentAgent') as string[]);
  const serviceDown = has('serviceDown') as z.infer<typeof ref>[];
  const hang = has('hang') as z.infer<typeof ref>[];
  const protocolError = has('protocolError') as z.infer<typeof ref>[];
  const blocks = has('block') as { sources: string[]; component: string; service?: string }[];
  const degrades = has('degrade') as { component?: string; source?: string; lossRatio: number }[];
  const dnsFail = has('dnsFail') as { sources: string[] }[];
  const rejects = has('reject') as { sources: string[]; component: string; service: string }[];
  const resets = has('reset') as z.infer<typeof ref>[];
  const flaps = has('flap') as { source: string; component: string }[];
  const hit = (refs: z.infer<typeof ref>[], c: string, svc: string | undefined): boolean =>
    refs.some((r) => r.component === c && r.service === svc);

  const agents: AgentLiveness[] = [];
  const paths: PathState[] = [];
  for (const src of s.components) {
    const agent = agentOf(src);
    if (agent === undefined) continue;
    const silent =
      silentAgents.has(agent) ||
      hostDown.has(src.name) ||
      (!s.collector.hearsAll &&
        cuts.some((c) => !c.reportedAgain && onSide(src.name, c) !== collectorOn(c)));
    agents.push({
      agentId: `id-${agent}`,
      agent,
      labels: src.labels,
      state: silent ? 'silent' : 'live',
      lastSeenMs: silent ? faultStartMs : nowMs - 1_000,
      acceptedSeq: 10,
      droppedResults: 0,
    });
    for (const dst of s.components) {
      if (dst === src) continue;
      const targets: {
        target: string;
        kind: string;
        service?: string;
        layer: 'icmp' | 'tcp' | 'proto';
      }[] = [{ target: `${dst.name}/icmp`, kind: 'icmp', layer: 'icmp' }];
      for (const svc of dst.services) {
        targets.push({
          target: `${dst.name}/${svc.name}/tcp`,
          kind: 'tcp',
          service: svc.name,
          layer: 'tcp',
        });
        if (svc.kind !== 'tcp')
          targets.push({
            target: `${dst.name}/${svc.name}/${svc.kind}`,
            kind: svc.kind,
            service: svc.name,
            layer: 'proto',
          });
      }
      for (const t of targets) {
        const base = {
          agent,
          target: t.target,
          component: dst.name,
          ...(t.service === undefined ? {} : { service: t.service }),
          kind: t.kind,
        };
        if (silent) {
          // A silent agent's window froze before the fault: all it says is stale.
          paths.push(okPath(base, faultStartMs - 120_000, faultStartMs));
          continue;
        }
        const netDown =
          sourceFault.has(agent) ||
          sourceFault.has(src.name) ||
          hostDown.has(dst.name) ||
          cuts.some((c) => onSide(src.name, c) !== onSide(dst.name, c)) ||
          blocks.some(
            (b) =>
              (b.sources.includes(agent) || b.sources.includes(src.name)) &&
              b.component === dst.name &&
              (b.service === undefined || (t.layer !== 'icmp' && b.service === t.service)),
          );
        const isHttp = t.kind === 'http';
        let cls: FailureClass | undefined;
        if (netDown) cls = t.layer === 'icmp' ? 'icmp_timeout' : 'tcp_timeout';
        else if (t.layer !== 'icmp' && dnsFail.some((d) => d.sources.includes(agent)))
          cls = 'dns_error';
        else if (t.layer !== 'icmp' && hit(serviceDown, dst.name, t.service)) cls = 'tcp_refused';
        else if (
          t.layer !== 'icmp' &&
          rejects.some(
            (r) =>
              (r.sources.includes(agent) || r.sources.includes(src.name)) &&
              r.component === dst.name &&
              r.service === t.service,
          )
        )
          cls = 'tcp_refused';
        else if (t.layer === 'proto' && hit(hang, dst.name, t.service))
          cls = isHttp ? 'http_timeout' : t.kind === 'dns' ? 'dns_timeout' : 'protocol_timeout';
        else if (t.layer === 'proto' && hit(resets, dst.name, t.service)) cls = 'tcp_reset';
        else if (t.layer === 'proto' && hit(protocolError, dst.name, t.service))
          cls = isHttp ? 'http_status' : 'protocol_error';
        if (cls !== undefined) {
          paths.push({
            ...base,
            state: 'failing',
            lastClass: cls,
            consecutiveFailures: 6,
            consecutiveSuccesses: 0,
            failureRatio: 0.6,
            failures: { [cls]: 6 },
            probes: 10,
            sinceMs: faultStartMs,
            lastSeenMs: nowMs - 1_000,
          });
          continue;
        }
        const loss = degrades.find(
          (d) =>
            (d.component !== undefined && d.component === dst.name) ||
            (d.source !== undefined && (d.source === agent || d.source === src.name)),
        );
        if (loss) {
          paths.push({
            ...okPath(base, faultStartMs - 600_000, nowMs - 1_000),
            state: 'degraded',
            lossRatio: loss.lossRatio,
            failureRatio: loss.lossRatio,
            sinceMs: faultStartMs,
          });
          continue;
        }
        if (
          flaps.some(
            (f) => (f.source === agent || f.source === src.name) && f.component === dst.name,
          )
        ) {
          const flapClass: FailureClass = t.layer === 'icmp' ? 'icmp_timeout' : 'tcp_timeout';
          paths.push({
            ...okPath(base, faultStartMs - 600_000, nowMs - 1_000),
            state: 'degraded',
            lastClass: flapClass,
            consecutiveFailures: 2,
            consecutiveSuccesses: 0,
            failureRatio: 0.4,
            failures: { [flapClass]: 4 },
            sinceMs: faultStartMs,
          });
          continue;
        }
        const p = okPath(base, faultStartMs - 600_000, nowMs - 1_000);
        if (random() < s.noise) {
          // One lost probe, under the debounce: the path stays ok.
          const noiseClass: FailureClass = t.layer === 'icmp' ? 'icmp_timeout' : 'tcp_timeout';
          paths.push({
            ...p,
            lastClass: noiseClass,
            consecutiveFailures: 1,
            consecutiveSuccesses: 0,
            failureRatio: 0.1,
            failures: { [noiseClass]: 1 },
          });
        } else paths.push(p);
      }
    }
  }
  const inventory: LocaliseComponent[] = s.components.map((c) => ({
    name: c.name,
    address: `198.18.0.${s.components.indexOf(c) + 1}`,
    role: c.role,
    labels: c.labels,
    ...(agentOf(c) === undefined ? {} : { agent: agentOf(c) }),
  }));
  return { paths, agents, inventory, collectorLabels: s.collector.labels, nowMs };
}

function okPath(
  base: Pick<PathState, 'agent' | 'target' | 'component' | 'service' | 'kind'>,
  sinceMs: number,
  lastSeenMs: number,
): PathState {
  return {
    ...base,
    state: 'ok',
    lastClass: 'ok',
    consecutiveFailures: 0,
    consecutiveSuccesses: 10,
    failureRatio: 0,
    lossRatio: base.kind === 'icmp' ? 0 : undefined,
    latencyMs: { baseline: 0.4, p50: 0.4, p99: 0.9 },
    failures: {},
    probes: 10,
    sinceMs,
    lastSeenMs,
  };
}
