import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import type { AgentLiveness, PathState } from '../../collector/types.js';
import type {
  LocaliseComponent,
  LocaliseInput,
  Observer,
} from '../../collector/localise/localise.js';
import { FaultKindSchema } from '../../wire/diagnosis.js';
import type { Diagnosis } from '../../wire/diagnosis.js';
import { failureLayer } from '../../wire/result.js';
import type { FailureClass } from '../../wire/result.js';
import { rng } from '../../lib/prng.js';

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

const labelValue = z.object({ label: z.string(), value: z.string() }).strict();

/**
 * When the fault began, relative to the scenario's fault time (a minute before the diagnosis):
 * `-300000` is five minutes earlier. Its failing paths start within a probe interval after
 * it (each agent probes on its own phase); the agents it silences were last heard within a
 * report interval after it.
 */
const startOffsetMs = z.number().int().min(-3_600_000).max(30_000).optional();
const fault = <T extends z.ZodRawShape>(shape: T) => z.object({ ...shape, startOffsetMs }).strict();

const FaultSchema = z.union([
  /** Hosts with label=value reach each other but nothing else. */
  fault({
    cut: z
      .object({
        label: z.string(),
        value: z.string(),
        /** The cut-off side's agents report (spooled reports arrived, or the collector hears both sides). */
        reportedAgain: z.boolean().default(false),
      })
      .strict(),
  }),
  /**
   * These hosts reach each other but nothing else, whatever their labels (ports moved into a
   * wrong VLAN): a set no label need follow, beside healthy hosts on the same switch.
   */
  fault({
    cutSet: z
      .object({
        hosts: z.array(z.string()),
        /**
         * A collector on no inventory host is inside the set (its own port in the wrong VLAN).
         * A collector on a host is inside exactly when its host is listed.
         */
        collector: z.boolean().default(false),
        reportedAgain: z.boolean().default(false),
      })
      .strict(),
  }),
  fault({ hostDown: z.string() }),
  fault({ serviceDown: ref }),
  fault({ hang: ref }),
  /** Connects, then the service resets the connection (a crashing process). */
  fault({ reset: ref }),
  fault({ protocolError: ref }),
  fault({
    block: z
      .object({
        sources: z.array(z.string()),
        component: z.string(),
        service: z.string().optional(),
      })
      .strict(),
  }),
  fault({ sourceFault: z.string() }),
  fault({ silentAgent: z.string() }),
  fault({
    degrade: z
      .object({
        component: z.string().optional(),
        source: z.string().optional(),
        lossRatio: z.number().default(0.2),
        /**
         * Sources whose TCP paths to `component` lost enough SYNs in a row to be failing
         * (tcp_timeout) while their echoes get through with the loss: degraded.
         */
        failingFrom: z.array(z.string()).optional(),
      })
      .strict(),
  }),
  fault({ dnsFail: z.object({ sources: z.array(z.string()) }).strict() }),
  /** A filter that rejects (RST) connections to a service from some sources. */
  fault({
    reject: z
      .object({ sources: z.array(z.string()), component: z.string(), service: z.string() })
      .strict(),
  }),
  /** One path failing on and off, never long enough to trip the debounce: the matrix calls it degraded. */
  fault({ flap: z.object({ source: z.string(), component: z.string() }).strict() }),
  /**
   * An element with a smaller MTU than its hosts: small packets pass, full-size ones vanish.
   * Exactly one of `port` (a host's switch port: every path to or from the host), `uplink`
   * (between the hosts with label=value and the rest: the paths crossing it) and `switch`
   * (the hosts with label=value: every path to or from them, among themselves too). On those
   * (source, target) pairs the full-size echo (`mtu`) fails and HTTP times out (the answer's
   * full-size segments vanish after the handshake); ICMP, TCP connect and the small-packet
   * protocols (postgres, redis, mysql, dns) pass. The reports to the collector are taken to
   * get through (MSS clamped on its path): an MTU fault silences no agent.
   */
  fault({
    mtu: z
      .object({
        port: z.string().optional(),
        uplink: labelValue.optional(),
        switch: labelValue.optional(),
        /** A router in between answers "fragmentation needed": `mtu_exceeded`, not `icmp_timeout`. */
        fragNeeded: z.boolean().default(false),
      })
      .strict()
      .refine(
        (m) => [m.port, m.uplink, m.switch].filter((x) => x !== undefined).length === 1,
        'exactly one of port, uplink, switch',
      ),
  }),
  /**
   * A one-way filter: new connections from the `from` hosts (a list, or the hosts with
   * label=value) to `to` are dropped (TCP and above time out; ICMP passes); the reverse way,
   * `to`'s agent probing them, is fine. `service`: that service's port only.
   */
  fault({
    oneWay: z
      .object({
        from: z.union([z.array(z.string()).min(1), labelValue]),
        to: z.string(),
        service: z.string().optional(),
      })
      .strict(),
  }),
  /**
   * A host's link going down and up faster than the debounce: every path to or from the host
   * is degraded, with loss, never failing.
   */
  fault({
    flapLink: z
      .object({ host: z.string(), lossRatio: z.number().min(0.01).max(0.9).default(0.3) })
      .strict(),
  }),
]);
export type Fault = z.infer<typeof FaultSchema>;

const HypothesisExpectSchema = z
  .object({
    kind: FaultKindSchema,
    /** Exactly these components, order-free. */
    components: z.array(z.string()).optional(),
  })
  .strict();

export const ScenarioSchema = z
  .object({
    name: z.string(),
    description: z.string().optional(),
    components: z.array(ComponentSchema).min(2),
    collector: z
      .object({
        /**
         * The inventory component the collector runs on; that host's agent, if it has one, is
         * the collector's local agent. Absent: the collector stands on no inventory host.
         */
        host: z.string().optional(),
        /** Its topology labels (default: its host's, else none). */
        labels: labels.optional(),
        /** The collector hears every agent (a management network a cut does not touch). */
        hearsAll: z.boolean().default(false),
      })
      .strict()
      .default({ hearsAll: false }),
    /** What the collector plans beside the mesh (`probes.mtu`: a full-size echo next to every ICMP one). */
    probes: z
      .object({ mtu: z.boolean().default(true) })
      .strict()
      .default({ mtu: true }),
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
            /** true: the hypothesis says the collector's own side is cut off; false: it does not. */
            collectorCutOff: z.boolean().optional(),
          })
          .strict()
          .optional(),
        /** Every hypothesis kind, in rank order. */
        kinds: z.array(FaultKindSchema).optional(),
        /** Hypotheses that must be in the diagnosis, at any rank. */
        contains: z.array(HypothesisExpectSchema).default([]),
        /** Exactly these components in ruledOut, with canBeRuledOut (unchecked when absent, but for a healthy case: none). */
        ruledOut: z.record(z.string(), z.boolean()).optional(),
        /** Components that must not be ruled out (absent, or "cannot be ruled out"). */
        notRuledOut: z.array(z.string()).default([]),
        /** Phrases the top hypothesis's summary must contain. */
        summaryIncludes: z.array(z.string()).default([]),
        /** How the top hypothesis's summary must begin. */
        summaryStartsWith: z.string().optional(),
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
      // A fault naming an unknown host, or a collector on one, is a bad file too.
      try {
        world(parsed.data);
      } catch (err) {
        throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
      }
      return { file, scenario: parsed.data };
    });
}

const nowMs = 1_800_000_000_000;
/** The scenario's fault time; each fault's `startOffsetMs` moves its own. */
const faultStartMs = nowMs - 60_000;
/**
 * The probe interval (the collector's default, 1 s) and the report interval (2 s: twice the
 * auto interval of a small fleet) the matrix is built with. Failing paths start within one
 * probe interval of their fault, each agent on its own phase; agents a fault silences were
 * last heard within one report interval of it.
 */
export const probeIntervalMs = 1_000;
export const reportIntervalMs = 2_000;

/** When a fault began (epoch ms). */
export const faultAtMs = (f: Fault): number => faultStartMs + (f.startOffsetMs ?? 0);

type Component = Scenario['components'][number];
type MtuFault = Extract<Fault, { mtu: unknown }>;

/** A cut, by label or by host set: who is inside, and whether the collector is. */
export interface CutView {
  readonly fault: Fault;
  readonly inside: (host: string) => boolean;
  readonly collectorInside: boolean;
  readonly reportedAgain: boolean;
  readonly atMs: number;
}

/**
 * A scenario's world: where the collector stands and what each fault touches, read by
 * `buildInput` to fail the paths and by the invariants to judge a diagnosis.
 */
export interface World {
  readonly scenario: Scenario;
  readonly byName: ReadonlyMap<string, Component>;
  /** The agent on a host, if it has one. */
  readonly agentOf: (host: string) => string | undefined;
  /** The host an agent runs on. */
  readonly hostOfAgent: ReadonlyMap<string, string>;
  /** Where the collector stands, as the localiser is told. */
  readonly observer: Observer;
  readonly cuts: readonly CutView[];
  /**
   * A cut that leaves the collector on the smaller side (by hosts) while the far side's agents
   * fall silent: `near` the collector's side (its hosts; none for a collector on no inventory
   * host cut off alone), `far` the rest. Undefined when no cut does that.
   */
  readonly collectorCut:
    { readonly near: readonly string[]; readonly far: readonly string[] } | undefined;
  /** The far side of a collector cut: hosts no hypothesis may name. */
  readonly farHosts: ReadonlySet<string>;
  /** The MTU fault on the paths from one host to another, if any. */
  readonly mtuOn: (src: string, dst: string) => MtuFault | undefined;
  /**
   * When the agent on this host fell silent — the start of the earliest fault that silenced
   * it (host down, agent silent, cut from the collector) — or undefined while it reports.
   */
  readonly silentAtMs: (host: string) => number | undefined;
}

/** A scenario's world; throws when a fault or the collector names an unknown host. */
export function world(s: Scenario): World {
  const byName = new Map(s.components.map((c) => [c.name, c]));
  const known = (what: string, host: string): string => {
    if (!byName.has(host)) throw new Error(`${s.name}: ${what} names unknown host "${host}"`);
    return host;
  };
  const agentOf = (host: string): string | undefined => {
    const c = byName.get(host);
    return c === undefined || c.agent === false ? undefined : (c.agent ?? c.name);
  };
  const hostOfAgent = new Map<string, string>();
  for (const c of s.components) {
    const a = agentOf(c.name);
    if (a !== undefined) hostOfAgent.set(a, c.name);
  }
  const labelsOf = (host: string): Readonly<Record<string, string>> =>
    byName.get(host)?.labels ?? {};
  const hasValue = (lv: { label: string; value: string }) => (host: string) =>
    labelsOf(host)[lv.label] === lv.value;

  const collectorHost =
    s.collector.host === undefined ? undefined : known('collector.host', s.collector.host);
  const collectorLabels =
    s.collector.labels ?? (collectorHost === undefined ? {} : { ...labelsOf(collectorHost) });
  const localAgent = collectorHost === undefined ? undefined : agentOf(collectorHost);
  const observer: Observer = {
    ...(collectorHost === undefined ? {} : { host: collectorHost }),
    ...(localAgent === undefined ? {} : { agents: [localAgent] }),
    labels: collectorLabels,
  };

  const cuts: CutView[] = [];
  for (const f of s.faults) {
    if ('cut' in f) {
      const inside = hasValue(f.cut);
      cuts.push({
        fault: f,
        inside,
        collectorInside:
          collectorHost === undefined
            ? collectorLabels[f.cut.label] === f.cut.value
            : inside(collectorHost),
        reportedAgain: f.cut.reportedAgain,
        atMs: faultAtMs(f),
      });
    } else if ('cutSet' in f) {
      const set = new Set(f.cutSet.hosts.map((h) => known('cutSet.hosts', h)));
      if (collectorHost !== undefined && f.cutSet.collector && !set.has(collectorHost))
        throw new Error(
          `${s.name}: cutSet.collector is true but the collector's host ${collectorHost} is not in the set`,
        );
      cuts.push({
        fault: f,
        inside: (h) => set.has(h),
        collectorInside: collectorHost === undefined ? f.cutSet.collector : set.has(collectorHost),
        reportedAgain: f.cutSet.reportedAgain,
        atMs: faultAtMs(f),
      });
    }
  }
  for (const f of s.faults) {
    if ('hostDown' in f) known('hostDown', f.hostDown);
    if ('flapLink' in f) known('flapLink.host', f.flapLink.host);
    if ('oneWay' in f) {
      known('oneWay.to', f.oneWay.to);
      if (Array.isArray(f.oneWay.from)) for (const h of f.oneWay.from) known('oneWay.from', h);
    }
    if ('mtu' in f && f.mtu.port !== undefined) known('mtu.port', f.mtu.port);
  }

  // The collector's side cut off: silent far side, and the collector's side the smaller one.
  const hosts = s.components.map((c) => c.name);
  const far = new Set<string>();
  if (!s.collector.hearsAll)
    for (const c of cuts) {
      if (c.reportedAgain) continue;
      const near = hosts.filter((h) => c.inside(h) === c.collectorInside);
      const away = hosts.filter((h) => c.inside(h) !== c.collectorInside);
      if (near.length < away.length) for (const h of away) far.add(h);
    }
  const collectorCut =
    far.size === 0
      ? undefined
      : { near: hosts.filter((h) => !far.has(h)).sort(), far: [...far].sort() };

  const mtuFaults = s.faults.filter((f): f is MtuFault => 'mtu' in f);
  const mtuOn = (src: string, dst: string): MtuFault | undefined =>
    mtuFaults.find(({ mtu }) => {
      if (mtu.port !== undefined) return src === mtu.port || dst === mtu.port;
      if (mtu.uplink !== undefined) return hasValue(mtu.uplink)(src) !== hasValue(mtu.uplink)(dst);
      if (mtu.switch !== undefined) return hasValue(mtu.switch)(src) || hasValue(mtu.switch)(dst);
      return false;
    });

  const silentAtMs = (host: string): number | undefined => {
    const agent = agentOf(host);
    const times: number[] = [];
    for (const f of s.faults) {
      if ('silentAgent' in f && (f.silentAgent === agent || f.silentAgent === host))
        times.push(faultAtMs(f));
      if ('hostDown' in f && f.hostDown === host) times.push(faultAtMs(f));
    }
    if (!s.collector.hearsAll)
      for (const c of cuts)
        if (!c.reportedAgain && c.inside(host) !== c.collectorInside) times.push(c.atMs);
    return times.length === 0 ? undefined : Math.min(...times);
  };

  return {
    scenario: s,
    byName,
    agentOf,
    hostOfAgent,
    observer,
    cuts,
    collectorCut,
    farHosts: far,
    mtuOn,
    silentAtMs,
  };
}

type Layer = 'icmp' | 'mtu' | 'tcp' | 'proto';

/** The localisation input a collector would hold for this scenario. */
export function buildInput(s: Scenario): LocaliseInput {
  const w = world(s);
  const random = rng(s.seed);
  // Timing draws from their own stream, so the noise falls where it always did.
  const jitter = rng(s.seed ^ 0x5bd1e995);
  const faults = s.faults;
  const has = <K extends string>(key: K) =>
    faults.flatMap((f) =>
      key in f ? [{ ...(f as Record<K, object>)[key], atMs: faultAtMs(f) }] : [],
    );
  const hostDown = faults.flatMap((f) =>
    'hostDown' in f ? [{ host: f.hostDown, atMs: faultAtMs(f) }] : [],
  );
  const sourceFault = faults.flatMap((f) =>
    'sourceFault' in f ? [{ name: f.sourceFault, atMs: faultAtMs(f) }] : [],
  );
  type Ref = z.infer<typeof ref> & { atMs: number };
  const serviceDown = has('serviceDown') as Ref[];
  const hang = has('hang') as Ref[];
  const protocolError = has('protocolError') as Ref[];
  const resets = has('reset') as Ref[];
  const blocks = has('block') as {
    sources: string[];
    component: string;
    service?: string;
    atMs: number;
  }[];
  const degrades = has('degrade') as {
    component?: string;
    source?: string;
    lossRatio: number;
    failingFrom?: string[];
    atMs: number;
  }[];
  const dnsFail = has('dnsFail') as { sources: string[]; atMs: number }[];
  const rejects = has('reject') as {
    sources: string[];
    component: string;
    service: string;
    atMs: number;
  }[];
  const flaps = has('flap') as { source: string; component: string; atMs: number }[];
  const oneWays = has('oneWay') as {
    from: string[] | { label: string; value: string };
    to: string;
    service?: string;
    atMs: number;
  }[];
  const flapLinks = has('flapLink') as { host: string; lossRatio: number; atMs: number }[];
  const hit = (refs: Ref[], c: string, svc: string | undefined): Ref | undefined =>
    refs.find((r) => r.component === c && r.service === svc);
  const labelsOf = (h: string): Readonly<Record<string, string>> => w.byName.get(h)?.labels ?? {};
  const fromHas = (from: (typeof oneWays)[number]['from'], h: string): boolean =>
    Array.isArray(from) ? from.includes(h) : labelsOf(h)[from.label] === from.value;

  const agents: AgentLiveness[] = [];
  const paths: PathState[] = [];
  for (const src of s.components) {
    const agent = w.agentOf(src.name);
    if (agent === undefined) continue;
    const silentAt = w.silentAtMs(src.name);
    const silent = silentAt !== undefined;
    // Agents silenced together were last heard within one report interval of each other.
    const lastHeardMs = silent ? silentAt + Math.floor(jitter() * reportIntervalMs) : nowMs - 1_000;
    agents.push({
      agentId: `id-${agent}`,
      agent,
      labels: src.labels,
      state: silent ? 'silent' : 'live',
      lastSeenMs: lastHeardMs,
      acceptedSeq: 10,
      droppedResults: 0,
      spoolBacklog: 0,
    });
    // Each agent probes on its own phase: a fault shows on its paths within one interval.
    const phaseMs = Math.floor(jitter() * probeIntervalMs);
    const startAfter = (atMs: number): number =>
      atMs + ((phaseMs + Math.floor(jitter() * 250)) % probeIntervalMs);
    const isSource = (names: readonly string[]): boolean =>
      names.includes(agent) || names.includes(src.name);
    const agentDns = dnsFail.find((d) => isSource(d.sources));
    for (const dst of s.components) {
      if (dst === src) continue;
      const targets: { target: string; kind: string; service?: string; layer: Layer }[] = [
        { target: `${dst.name}/icmp`, kind: 'icmp', layer: 'icmp' },
      ];
      if (s.probes.mtu) targets.push({ target: `${dst.name}/mtu`, kind: 'mtu', layer: 'mtu' });
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
      const mtu = w.mtuOn(src.name, dst.name);
      // What cuts every path of this pair, and the filters on it.
      let pairDownAt = Infinity;
      for (const f of sourceFault)
        if (f.name === agent || f.name === src.name) pairDownAt = Math.min(pairDownAt, f.atMs);
      for (const f of hostDown) if (f.host === dst.name) pairDownAt = Math.min(pairDownAt, f.atMs);
      for (const c of w.cuts)
        if (c.inside(src.name) !== c.inside(dst.name)) pairDownAt = Math.min(pairDownAt, c.atMs);
      const pairBlocks = blocks.filter((b) => b.component === dst.name && isSource(b.sources));
      const pairOneWays = oneWays.filter((o) => o.to === dst.name && fromHas(o.from, src.name));
      for (const t of targets) {
        const base = {
          agent,
          target: t.target,
          component: dst.name,
          ...(t.service === undefined ? {} : { service: t.service }),
          kind: t.kind,
        };
        if (silent) {
          // A silent agent's window froze when it was last heard: all it says is stale.
          paths.push(okPath(base, lastHeardMs - 120_000, lastHeardMs));
          continue;
        }
        const echo = t.layer === 'icmp' || t.layer === 'mtu';
        // Network-layer loss: the earliest fault that cuts this path.
        let downAt = pairDownAt;
        for (const b of pairBlocks)
          if (b.service === undefined || (!echo && b.service === t.service))
            downAt = Math.min(downAt, b.atMs);
        if (!echo)
          for (const o of pairOneWays)
            if (o.service === undefined || o.service === t.service)
              downAt = Math.min(downAt, o.atMs);
        const isHttp = t.kind === 'http';
        let cause: { cls: FailureClass; atMs: number } | undefined;
        const dns = echo ? undefined : agentDns;
        const refused = echo ? undefined : hit(serviceDown, dst.name, t.service);
        const rejected = echo
          ? undefined
          : rejects.find(
              (r) => isSource(r.sources) && r.component === dst.name && r.service === t.service,
            );
        const hung = t.layer === 'proto' ? hit(hang, dst.name, t.service) : undefined;
        const reset = t.layer === 'proto' ? hit(resets, dst.name, t.service) : undefined;
        const wrong = t.layer === 'proto' ? hit(protocolError, dst.name, t.service) : undefined;
        if (downAt !== Infinity)
          cause = { cls: echo ? 'icmp_timeout' : 'tcp_timeout', atMs: downAt };
        else if (dns) cause = { cls: 'dns_error', atMs: dns.atMs };
        else if (refused) cause = { cls: 'tcp_refused', atMs: refused.atMs };
        else if (rejected) cause = { cls: 'tcp_refused', atMs: rejected.atMs };
        else if (mtu && t.layer === 'mtu')
          cause = {
            cls: mtu.mtu.fragNeeded ? 'mtu_exceeded' : 'icmp_timeout',
            atMs: faultAtMs(mtu),
          };
        else if (mtu && t.layer === 'proto' && isHttp)
          // The handshake passes; the answer's full-size segments vanish.
          cause = { cls: 'http_timeout', atMs: Math.min(faultAtMs(mtu), hung?.atMs ?? Infinity) };
        else if (hung)
          cause = {
            cls: isHttp ? 'http_timeout' : t.kind === 'dns' ? 'dns_timeout' : 'protocol_timeout',
            atMs: hung.atMs,
          };
        else if (reset) cause = { cls: 'tcp_reset', atMs: reset.atMs };
        else if (wrong)
          cause = { cls: isHttp ? 'http_status' : 'protocol_error', atMs: wrong.atMs };
        if (cause !== undefined) {
          paths.push({
            ...base,
            state: 'failing',
            lastClass: cause.cls,
            consecutiveFailures: 6,
            consecutiveSuccesses: 0,
            failureRatio: 0.6,
            failures: { [cause.cls]: 6 },
            probes: 10,
            sinceMs: startAfter(cause.atMs),
            lastSeenMs: nowMs - 1_000,
          });
          continue;
        }
        const loss = degrades.find(
          (d) =>
            (d.component !== undefined && d.component === dst.name) ||
            (d.source !== undefined && (d.source === agent || d.source === src.name)),
        );
        if (loss && !echo && (loss.failingFrom ?? []).includes(src.name)) {
          // Three SYNs lost in a row (the answers, past the handshake): failing for the
          // debounce, successes around it.
          const lost: FailureClass =
            t.layer !== 'proto' ? 'tcp_timeout' : isHttp ? 'http_timeout' : 'protocol_timeout';
          paths.push({
            ...okPath(base, faultStartMs - 600_000, nowMs - 1_000),
            state: 'failing',
            lastClass: lost,
            consecutiveFailures: 3,
            consecutiveSuccesses: 0,
            failureRatio: 0.5,
            failures: { [lost]: 5 },
            sinceMs: startAfter(loss.atMs),
          });
          continue;
        }
        if (loss) {
          paths.push({
            ...okPath(base, faultStartMs - 600_000, nowMs - 1_000),
            state: 'degraded',
            lossRatio: loss.lossRatio,
            failureRatio: loss.lossRatio,
            sinceMs: startAfter(loss.atMs),
          });
          continue;
        }
        const flapClass: FailureClass = echo ? 'icmp_timeout' : 'tcp_timeout';
        const link = flapLinks.find((f) => f.host === src.name || f.host === dst.name);
        if (link) {
          // Down and up again within the debounce: lost probes, never three in a row.
          const lost = Math.max(1, Math.round(link.lossRatio * 10));
          const lastLost = jitter() < link.lossRatio;
          paths.push({
            ...okPath(base, faultStartMs - 600_000, nowMs - 1_000),
            state: 'degraded',
            lastClass: lastLost ? flapClass : 'ok',
            consecutiveFailures: lastLost ? 1 + Math.floor(jitter() * 2) : 0,
            consecutiveSuccesses: lastLost ? 0 : 1 + Math.floor(jitter() * 3),
            failureRatio: lost / 10,
            lossRatio: echo ? lost / 10 : undefined,
            failures: { [flapClass]: lost },
            sinceMs: startAfter(link.atMs),
          });
          continue;
        }
        const flap = flaps.find(
          (f) => (f.source === agent || f.source === src.name) && f.component === dst.name,
        );
        if (flap) {
          paths.push({
            ...okPath(base, faultStartMs - 600_000, nowMs - 1_000),
            state: 'degraded',
            lastClass: flapClass,
            consecutiveFailures: 2,
            consecutiveSuccesses: 0,
            failureRatio: 0.4,
            failures: { [flapClass]: 4 },
            sinceMs: startAfter(flap.atMs),
          });
          continue;
        }
        const p = okPath(base, faultStartMs - 600_000, nowMs - 1_000);
        if (random() < s.noise) {
          // One lost probe, under the debounce: the path stays ok.
          const noiseClass: FailureClass = echo ? 'icmp_timeout' : 'tcp_timeout';
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
  const inventory: LocaliseComponent[] = s.components.map((c, i) => {
    const agent = w.agentOf(c.name);
    return {
      name: c.name,
      address: `198.18.0.${i + 1}`,
      role: c.role,
      labels: c.labels,
      ...(agent === undefined ? {} : { agent }),
    };
  });
  return {
    paths,
    agents,
    inventory,
    collectorLabels: w.observer.labels ?? {},
    observer: w.observer,
    nowMs,
  };
}

function okPath(
  base: Pick<PathState, 'agent' | 'target' | 'component' | 'service' | 'kind'>,
  sinceMs: number,
  lastSeenMs: number,
): PathState {
  // Written out, not spread: a large mesh builds hundreds of thousands of these.
  const p: PathState = {
    agent: base.agent,
    target: base.target,
    component: base.component,
    kind: base.kind,
    state: 'ok',
    lastClass: 'ok',
    consecutiveFailures: 0,
    consecutiveSuccesses: 10,
    failureRatio: 0,
    lossRatio: base.kind === 'icmp' || base.kind === 'mtu' ? 0 : undefined,
    latencyMs: { baseline: 0.4, p50: 0.4, p99: 0.9 },
    failures: {},
    probes: 10,
    sinceMs,
    lastSeenMs,
  };
  return base.service === undefined ? p : { ...p, service: base.service };
}

/**
 * Issue 12's hard invariants, judged on one diagnosis of a scenario's input; each broken one
 * in words (none: []).
 * (a) A cut that leaves the collector's side cut off blames nothing on the far side: no
 *     hypothesis names a far-side host.
 * (b) An MTU mismatch is not a service fault: no `service_down`/`service_unresponsive` names
 *     a component whose failing service paths all run over MTU-affected pairs.
 */
export function brokenInvariants(w: World, input: LocaliseInput, d: Diagnosis): string[] {
  const out: string[] = [];
  for (const h of d.hypotheses) {
    const far = h.components.filter((c) => w.farHosts.has(c));
    if (far.length > 0)
      out.push(
        `(a) the collector's side is cut off, yet ${h.kind} names far-side ${far.join(', ')}: "${h.summary}"`,
      );
  }
  const mtuOnly = mtuOnlyServiceComponents(w, input);
  for (const h of d.hypotheses) {
    if (h.kind !== 'service_down' && h.kind !== 'service_unresponsive') continue;
    const blamed = h.components.filter((c) => mtuOnly.has(c));
    if (blamed.length > 0)
      out.push(`(b) an MTU mismatch reported as ${h.kind} of ${blamed.join(', ')}: "${h.summary}"`);
  }
  return out;
}

/**
 * Components whose failing service-layer paths (from live agents) all run over pairs an MTU
 * fault touches: an HTTP timeout there is the MTU's, not the service's.
 */
export function mtuOnlyServiceComponents(w: World, input: LocaliseInput): Set<string> {
  const live = new Set(input.agents.filter((a) => a.state === 'live').map((a) => a.agent));
  const onlyMtu = new Map<string, boolean>();
  for (const p of input.paths) {
    if (!live.has(p.agent) || p.state !== 'failing' || failureLayer[p.lastClass] !== 'service')
      continue;
    const src = w.hostOfAgent.get(p.agent) ?? p.agent;
    const onMtu = w.mtuOn(src, p.component) !== undefined;
    onlyMtu.set(p.component, (onlyMtu.get(p.component) ?? true) && onMtu);
  }
  return new Set([...onlyMtu].filter(([, only]) => only).map(([c]) => c));
}
