import { sleepUnlessAborted } from '../lib/duration.js';
import { procState } from './server-process.js';
import { pollUntil } from './poll-until.js';
import type { Lab } from './lab.js';

/**
 * Fault injectors for the lab, each the way the fault happens in production, each with its
 * heal. `inject()` returns once the fault is in place; `heal()` once it is undone (a
 * restarted service is ready again). Rules live in their own nftables table per fault, so a
 * heal removes exactly what its inject added.
 */
export interface Fault {
  /** For messages and reports: "db-1 port → vlan-99". */
  readonly name: string;
  inject(): Promise<void>;
  heal(): Promise<void>;
}

/**
 * Hosts' switch ports moved to another switch: the ports in the wrong VLAN. The hosts moved
 * together still reach each other there (and whatever else is on it), not the hosts they
 * leave behind on their own switch, nor anything beyond.
 */
export function wrongVlan(lab: Lab, hosts: readonly string[], toSwitch: string): Fault {
  if (hosts.length === 0) throw new Error('wrongVlan: no host to move');
  for (const h of hosts) {
    if (lab.host(h).switchName === toSwitch) {
      throw new Error(`wrongVlan: ${h} is on ${toSwitch} already`);
    }
  }
  lab.bridge(toSwitch);
  return {
    name: `${hosts.join(', ')} port${hosts.length > 1 ? 's' : ''} → ${toSwitch}`,
    inject: async () => {
      for (const h of hosts) await lab.movePort(h, toSwitch);
    },
    heal: async () => {
      for (const h of hosts) await lab.movePort(h, lab.host(h).switchName);
    },
  };
}

/**
 * The switch port of the host the collector runs on (LabSpec.collectorHost) moved to another
 * switch: the collector and its local agent are cut off from every other agent, while the
 * test process and the alert receiver still reach the collector over the management link.
 */
export function collectorCut(lab: Lab, toSwitch: string): Fault {
  const host = lab.collectorHost;
  if (host === undefined) throw new Error('collectorCut: the lab has no collectorHost');
  return {
    ...wrongVlan(lab, [host.name], toSwitch),
    name: `the collector's host ${host.name}: port → ${toSwitch}`,
  };
}

/**
 * A host's switch port with a smaller MTU than the host (default 1000 against 1500): pings and
 * TCP handshakes pass, every full-size frame through that port vanishes, both ways. Heal: the
 * port's MTU as it was.
 */
export function portMtu(lab: Lab, host: string, mtu = 1000): Fault {
  let before: number | undefined;
  return {
    name: `${host}'s switch port MTU ${mtu}`,
    inject: async () => {
      before = await lab.switchPortMtu(host);
      if (mtu >= before) throw new Error(`portMtu: ${host}'s port is at ${before} already`);
      await lab.setSwitchPortMtu(host, mtu);
    },
    heal: () => lab.setSwitchPortMtu(host, before ?? 1500),
  };
}

/** Options of {@link flappingLink}. */
export interface FlapOptions {
  /** How long the link stays down each time (default 1500 ms). */
  readonly downMs?: number;
  /** How long it stays up in between (default 1500 ms). */
  readonly upMs?: number;
  /** Most down/up cycles before it stops by itself, healed or not (default 200). */
  readonly maxFlaps?: number;
}

/**
 * A host's link flapping: its switch port down for `downMs`, up for `upMs`, again and again
 * (the host loses its carrier each time; a bad cable or transceiver). `inject()` returns with
 * the link down for the first time; `heal()` stops the loop and leaves the port up. The loop
 * ends by itself after `maxFlaps` cycles or at its first failed `ip link` (the lab gone).
 */
export function flappingLink(lab: Lab, host: string, opts: FlapOptions = {}): Fault {
  const downMs = opts.downMs ?? 1500;
  const upMs = opts.upMs ?? 1500;
  const maxFlaps = opts.maxFlaps ?? 200;
  if (!(downMs >= 100 && upMs >= 100)) throw new Error('flappingLink: down and up ≥ 100 ms');
  let stop: AbortController | undefined;
  let loop: Promise<void> | undefined;
  let failure: Error | undefined;
  return {
    name: `${host} link flapping (${downMs / 1000} s down / ${upMs / 1000} s up)`,
    inject: async () => {
      if (loop !== undefined) throw new Error(`flappingLink: ${host} is flapping already`);
      const ctl = new AbortController();
      stop = ctl;
      failure = undefined;
      await lab.setSwitchPort(host, false);
      loop = (async () => {
        for (let i = 0; i < maxFlaps; i++) {
          await sleepUnlessAborted(downMs, ctl.signal);
          if (ctl.signal.aborted) return;
          await lab.setSwitchPort(host, true);
          await sleepUnlessAborted(upMs, ctl.signal);
          if (ctl.signal.aborted) return;
          await lab.setSwitchPort(host, false);
        }
      })().catch((err: unknown) => {
        failure =
          err instanceof Error ? err : new Error(`${host} flapping: ${JSON.stringify(err)}`);
      });
    },
    heal: async () => {
      stop?.abort();
      await loop;
      loop = undefined;
      await lab.setSwitchPort(host, true);
      if (failure !== undefined) throw failure;
    },
  };
}

/** The cable between two switches cut. */
export function cutUplink(lab: Lab, a: string, b: string): Fault {
  return {
    name: `uplink ${a}–${b} cut`,
    inject: () => lab.setUplink(a, b, false),
    heal: () => lab.setUplink(a, b, true),
  };
}

/** A host's own link down (a pulled cable, a dead NIC). */
export function hostLinkDown(lab: Lab, host: string): Fault {
  return {
    name: `${host} link down`,
    inject: () => lab.setHostLink(host, false),
    heal: () => lab.setHostLink(host, true),
  };
}

/** PostgreSQL immediate shutdown (SIGQUIT to the postmaster); heal: start it again. */
export function stopPostgres(lab: Lab, host: string): Fault {
  const pg = (): ReturnType<Lab['postgresOf']> => lab.postgresOf(host);
  return {
    name: `postgres on ${host} stopped (immediate)`,
    inject: async () => {
      const main = pg().pid;
      if (main === undefined) throw new Error(`postgres on ${host} is not running`);
      const pids = pg().pids();
      process.kill(main, 'SIGQUIT');
      await pollUntil(
        `postgres on ${host} to exit`,
        () => pids.every((pid) => ['Z', 'X', undefined].includes(procState(pid))),
        { timeoutMs: 10_000 },
      );
    },
    heal: () => lab.restartPostgres(host),
  };
}

/** Every process of a database SIGSTOPped: it accepts connections and never answers. */
export function freezeDatabase(lab: Lab, host: string, kind: 'postgres' | 'redis'): Fault {
  const server = (): { freeze(): Promise<void>; thaw(): Promise<void> } =>
    kind === 'postgres' ? lab.postgresOf(host) : lab.redisOf(host);
  return {
    name: `${kind} on ${host} frozen`,
    inject: () => server().freeze(),
    heal: () => server().thaw(),
  };
}

/**
 * An nftables filter on `host`'s input dropping TCP to `port`, from `fromHosts` only when
 * given (a firewall rule on some paths), or from everyone.
 */
export function dropPort(
  lab: Lab,
  host: string,
  port: number,
  fromHosts: readonly string[] = [],
): Fault {
  const table = `fldrop${port}`;
  const from =
    fromHosts.length > 0 ? `ip saddr { ${fromHosts.map((h) => lab.host(h).ip).join(', ')} } ` : '';
  return {
    name: `tcp ${host}:${port} dropped${fromHosts.length > 0 ? ` from ${fromHosts.join(', ')}` : ''}`,
    inject: () =>
      lab.nft(
        host,
        `table inet ${table} { chain input { type filter hook input priority 0; ${from}tcp dport ${port} drop; }; }`,
      ),
    heal: () => lab.nft(host, `delete table inet ${table}`),
  };
}

/** Everything from `source` dropped at `host` (both directions of every path between them). */
export function dropSource(lab: Lab, host: string, source: string): Fault {
  const ip = lab.host(source).ip;
  return {
    name: `${host} drops everything from ${source}`,
    inject: () =>
      lab.nft(
        host,
        `table inet fldropsrc { chain input { type filter hook input priority 0; ip saddr ${ip} drop; }; }`,
      ),
    heal: () => lab.nft(host, 'delete table inet fldropsrc'),
  };
}

/**
 * Random loss of `percent` % on a host's link, both directions (nftables numgen random). Only
 * its lab link: not its loopback, nor the collector host's management link. A fraction of a
 * percent (down to 0.01) draws from 10,000 instead of 100.
 */
export function randomLoss(lab: Lab, host: string, percent: number): Fault {
  if (!(percent > 0 && percent < 100)) throw new Error(`loss percent ${percent}: expected 1–99`);
  const ifname = lab.host(host).ifname;
  let rule = `numgen random mod 100 < ${percent} drop;`;
  if (!Number.isInteger(percent)) {
    const basisPoints = Math.round(percent * 100);
    if (basisPoints < 1) throw new Error(`loss percent ${percent}: expected at least 0.01`);
    rule = `numgen random mod 10000 < ${basisPoints} drop;`;
  }
  return {
    name: `${percent}% loss on ${host}'s link`,
    inject: () =>
      lab.nft(
        host,
        `table inet flloss {
           chain input { type filter hook input priority 0; iifname "${ifname}" ${rule} }
           chain output { type filter hook output priority 0; oifname "${ifname}" ${rule} }
         }`,
      ),
    heal: () => lab.nft(host, 'delete table inet flloss'),
  };
}

/** The DNS server on `host` restarted with its zone empty: every lab name is NXDOMAIN. */
export function breakDns(lab: Lab, host: string): Fault {
  return {
    name: `dns on ${host} lost its records`,
    inject: () => lab.startDns(host, false),
    heal: () => lab.startDns(host, true),
  };
}

/** The agent on `host` killed (SIGKILL); heal: started again on the same state dir. */
export function killAgent(lab: Lab, host: string): Fault {
  return {
    name: `agent on ${host} killed`,
    inject: () => lab.agent(host).kill(),
    heal: async () => {
      lab.startAgent(host);
    },
  };
}
