import { procState } from '../server-process.js';
import { pollUntil } from '../poll-until.js';
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

/** A host's switch port moved to another switch: the port in the wrong VLAN. */
export function wrongVlan(lab: Lab, hosts: readonly string[], toSwitch: string): Fault {
  return {
    name: `${hosts.join(', ')} port → ${toSwitch}`,
    inject: async () => {
      for (const h of hosts) await lab.movePort(h, toSwitch);
    },
    heal: async () => {
      for (const h of hosts) await lab.movePort(h, lab.host(h).switchName);
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

/** Random loss of `percent` % on a host's link, both directions (nftables numgen random). */
export function randomLoss(lab: Lab, host: string, percent: number): Fault {
  if (!(percent > 0 && percent < 100)) throw new Error(`loss percent ${percent}: expected 1–99`);
  const rule = `numgen random mod 100 < ${percent} drop;`;
  return {
    name: `${percent}% loss on ${host}'s link`,
    inject: () =>
      lab.nft(
        host,
        `table inet flloss {
           chain input { type filter hook input priority 0; ${rule} }
           chain output { type filter hook output priority 0; ${rule} }
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
