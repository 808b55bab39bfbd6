import type { Lab } from './lab.js';
import type { TestHost } from './netns.js';

/**
 * What a lab is declared as: switches, uplinks, hosts and their services, where the
 * collector stands, and the timing of its agents and collector ({@link Lab.up} builds it).
 */

/** Whether this process can build a lab (root on Linux). */
export const canRunLab = process.platform === 'linux' && process.getuid?.() === 0;

/** A service inside a lab host. */
export type LabServiceSpec =
  | { readonly kind: 'postgres'; readonly name?: string }
  | { readonly kind: 'redis'; readonly name?: string }
  /**
   * The small HTTP app: GET /healthz → 200, "ok" and ~4 KB more (a page is bigger than one
   * packet: a path that loses full-size frames times out after the handshake). Port default 8080.
   */
  | { readonly kind: 'http'; readonly name?: string; readonly port?: number }
  /** dnsmasq answering `<host>.lab.internal` for every lab host. */
  | { readonly kind: 'dns'; readonly name?: string };

export interface LabHostSpec {
  /** Component, agent and namespace name suffix. */
  readonly name: string;
  /** The switch its one port is plugged into. */
  readonly switch: string;
  /** Inventory role (database, api, web, cache, dns…); default "other". */
  readonly role?: string;
  readonly services?: readonly LabServiceSpec[];
  /** Run an agent here (default true). */
  readonly agent?: boolean;
}

export interface LabSwitchSpec {
  readonly name: string;
  /** Its `zone` label; default the switch name. */
  readonly zone?: string;
}

/**
 * A topology. The test process sits in the root namespace on `.1` of one switch (the first
 * unless `collectorSwitch` says; the collector host's switch with `collectorHost`); the
 * collector sits there too unless `collectorHost` puts it on a host.
 */
export interface LabSpec {
  readonly switches: readonly LabSwitchSpec[];
  /** Pairs of switches joined by a cable (a veth pair between the bridges). */
  readonly uplinks?: ReadonlyArray<readonly [string, string]>;
  readonly hosts: readonly LabHostSpec[];
  /** The switch of the root namespace's address (and of the collector, without `collectorHost`). */
  readonly collectorSwitch?: string;
  /**
   * Runs the collector inside this host's namespace, listening on the host's address: the
   * host's agent (if it has one) is then the collector's local agent, and a fault of the
   * host's port cuts the collector off like any other host. Agents reach it only through the
   * lab's switches. Beside its switch port, the host gets an out-of-band management link to
   * the root namespace (`mgmt0`, {@link Lab.managementAddress} at the root end) that carries
   * only the test process's calls to the collector's API and the collector's alerts to a
   * receiver listening on `managementAddress` — the way a pager's path is not the
   * production LAN. Exclusive with `collectorSwitch`.
   */
  readonly collectorHost?: string;
  /**
   * A second collector (HA: two collectors in two failure domains), inside this host's
   * namespace like `collectorHost`'s and with its own management link: the same inventory,
   * tokens and extra YAML (alerts), its own store. Every agent reports to both. Needs
   * `collectorHost`, on another host.
   */
  readonly secondCollectorHost?: string;
}

/** Timing of the lab's agents and collector; fast defaults for tests. */
export interface LabOptions {
  /** The built CLI (dist/cli/main.js). */
  readonly cliPath: string;
  readonly probeIntervalMs?: number;
  readonly probeTimeoutMs?: number;
  readonly reportIntervalMs?: number;
  readonly silentAfterMs?: number;
  /** Consecutive failures before a path is failing. */
  readonly debounce?: number;
  /** Log level of agents and collector (default warn). */
  readonly logLevel?: string;
  /**
   * Nice value of everything running inside the hosts (agents and services; default -5).
   * The agents time their probes in-process: on a machine shared with other CPU-heavy
   * work, scheduling delay would show up as path latency the lab did not inject.
   */
  readonly niceness?: number;
  /**
   * More top-level YAML for the collector's config (e.g. an `alerts:` section), made once the
   * network and services are up and before the collector starts, so a receiver can first be
   * started on {@link Lab.managementAddress}.
   */
  readonly extraCollectorYaml?: (lab: Lab) => Promise<string> | string;
  /**
   * With `secondCollectorHost`: rewrites the second collector's config (extra YAML
   * included), e.g. to give it its own NATS durable consumer.
   */
  readonly secondCollectorYaml?: (yaml: string) => string;
}

/** A host of the lab: a namespace with one veth into its switch. */
export interface LabHost extends TestHost {
  readonly spec: LabHostSpec;
  /** The switch the host is declared on (its labels say this, wherever its port is). */
  readonly switchName: string;
  readonly zone: string;
  readonly role: string;
}

const nameRe = /^[a-z0-9][a-z0-9-]{0,14}$/;

export function checkSpec(spec: LabSpec): void {
  const switches = new Set<string>();
  for (const s of spec.switches) {
    if (!nameRe.test(s.name))
      throw new Error(
        `lab switch name ${JSON.stringify(s.name)}: expected [a-z0-9-], 1–15 characters`,
      );
    if (switches.has(s.name)) throw new Error(`lab switch ${s.name} declared twice`);
    switches.add(s.name);
  }
  if (switches.size === 0) throw new Error('a lab needs at least one switch');
  if (spec.collectorSwitch !== undefined && !switches.has(spec.collectorSwitch)) {
    throw new Error(`collectorSwitch ${spec.collectorSwitch}: no such switch`);
  }
  for (const [a, b] of spec.uplinks ?? []) {
    if (!switches.has(a) || !switches.has(b) || a === b) {
      throw new Error(`lab uplink ${a}–${b}: expected two different declared switches`);
    }
  }
  if (spec.collectorHost !== undefined && spec.collectorSwitch !== undefined) {
    throw new Error('collectorHost and collectorSwitch: give one (the host says its switch)');
  }
  const hosts = new Set<string>();
  if (spec.hosts.length > 240) throw new Error('a lab holds at most 240 hosts');
  for (const h of spec.hosts) {
    if (!nameRe.test(h.name))
      throw new Error(
        `lab host name ${JSON.stringify(h.name)}: expected [a-z0-9-], 1–15 characters`,
      );
    if (hosts.has(h.name)) throw new Error(`lab host ${h.name} declared twice`);
    if (!switches.has(h.switch)) throw new Error(`lab host ${h.name}: no switch ${h.switch}`);
    hosts.add(h.name);
  }
  if (spec.collectorHost !== undefined && !hosts.has(spec.collectorHost)) {
    throw new Error(`collectorHost ${spec.collectorHost}: no such host`);
  }
  const second = spec.secondCollectorHost;
  if (second !== undefined) {
    if (!hosts.has(second)) throw new Error(`secondCollectorHost ${second}: no such host`);
    if (spec.collectorHost === undefined || spec.collectorHost === second)
      throw new Error('secondCollectorHost needs collectorHost, on another host');
  }
}
