import { spawn } from 'node:child_process';
import type { AddressSpace } from './address-space.js';
import { sh } from './netns.js';
import type { LabHost, LabSpec } from './spec.js';

/**
 * The lab's wiring: switches are Linux bridges, hosts are network namespaces with one veth
 * into their switch, uplinks are veth pairs joining two bridges, and (with `collectorHost`)
 * the collector host's out-of-band management link to the root namespace.
 */

/** The collector host's end of the management link, and its address there. */
export const mgmtIfname = 'mgmt0';
/** Host numbers of the management link's two ends in the lab's /24 (hosts take .10–.249). */
export const mgmtRootHost = 253;
export const mgmtCollectorHost = 254;
/** The second collector host's end of its own management link (the root end is shared). */
export const mgmtSecondCollectorHost = 252;

/** What {@link buildNetwork} made: the interface names the lab's moving parts act on. */
export interface LabNetwork {
  /** Switch name → bridge interface. */
  readonly bridges: Map<string, string>;
  /** {@link uplinkKey} → the uplink's two veth ends. */
  readonly uplinkIfs: Map<string, readonly [string, string]>;
  /** Host name → host, in declaration order. */
  readonly hosts: Map<string, LabHost>;
}

/** The switch of the root namespace's address (and of the collector, without `collectorHost`). */
export function collectorSwitchOf(spec: LabSpec): string {
  const ctl = spec.hosts.find((h) => h.name === spec.collectorHost);
  return spec.collectorSwitch ?? ctl?.switch ?? spec.switches[0]!.name;
}

/**
 * Builds the declared topology. The maps of `into` are filled as links are made, so a
 * failure half-way leaves in them what `down()` must find.
 */
export async function buildNetwork(
  spec: LabSpec,
  space: AddressSpace,
  gateway: string,
  into: LabNetwork,
): Promise<void> {
  const p = space.prefix;
  spec.switches.forEach((s, i) => into.bridges.set(s.name, `${p}s${i}`));
  const bridge = (name: string): string => into.bridges.get(name)!;
  const collectorSwitch = collectorSwitchOf(spec);
  for (const [name, br] of into.bridges) {
    await sh('ip', ['link', 'add', br, 'type', 'bridge']);
    // No STP delay: a port forwards at once when plugged (or moved) in.
    await sh('ip', ['link', 'set', br, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0']);
    // Set, not derived: a bridge whose MTU was never set follows its smallest port, and a
    // port's MTU lowered (a fault) would shrink the root namespace's own packets with it.
    // (Setting the MTU it has already is a no-op that leaves it derived: hence two steps.)
    await sh('ip', ['link', 'set', br, 'mtu', '1499']);
    await sh('ip', ['link', 'set', br, 'mtu', '1500']);
    await noOffloads(br);
    await sh('ip', ['link', 'set', br, 'up']);
    if (name === collectorSwitch) {
      await sh('ip', ['addr', 'add', `${gateway}/24`, 'dev', br]);
    }
  }
  // Traffic of the lab's subnet never leaves through the machine's default route.
  await sh('ip', ['route', 'add', 'unreachable', space.subnet, 'metric', '4000']);
  for (const [i, [a, b]] of (spec.uplinks ?? []).entries()) {
    const ends = [`${p}u${i}a`, `${p}u${i}b`] as const;
    await sh('ip', ['link', 'add', ends[0], 'type', 'veth', 'peer', 'name', ends[1]]);
    await sh('ip', ['link', 'set', ends[0], 'master', bridge(a)]);
    await sh('ip', ['link', 'set', ends[1], 'master', bridge(b)]);
    await sh('ip', ['link', 'set', ends[0], 'up']);
    await sh('ip', ['link', 'set', ends[1], 'up']);
    for (const end of ends) await noOffloads(end);
    into.uplinkIfs.set(uplinkKey(a, b), ends);
  }
  for (const [i, hostSpec] of spec.hosts.entries()) {
    const n = 10 + i;
    const sw = spec.switches.find((s) => s.name === hostSpec.switch)!;
    const host: LabHost = {
      name: hostSpec.name,
      ns: `${p}-${hostSpec.name}`,
      ip: space.address(n),
      ifname: 'eth0',
      rootIf: `${p}h${n}`,
      spec: hostSpec,
      switchName: hostSpec.switch,
      zone: sw.zone ?? sw.name,
      role: hostSpec.role ?? 'other',
    };
    into.hosts.set(hostSpec.name, host);
    await plugHost(host, `${p}t${n}`, bridge(hostSpec.switch));
  }
  const ctl = spec.collectorHost === undefined ? undefined : into.hosts.get(spec.collectorHost);
  if (ctl !== undefined) await buildManagementLink(ctl, space, '', mgmtCollectorHost);
  const second =
    spec.secondCollectorHost === undefined ? undefined : into.hosts.get(spec.secondCollectorHost);
  if (second !== undefined) await buildManagementLink(second, space, '2', mgmtSecondCollectorHost);
}

/** A host's namespace, its veth (`tmpIf` until moved in and renamed) plugged into `bridge`. */
async function plugHost(host: LabHost, tmpIf: string, bridge: string): Promise<void> {
  await sh('ip', ['netns', 'add', host.ns]);
  await sh('ip', ['link', 'add', host.rootIf, 'type', 'veth', 'peer', 'name', tmpIf]);
  await sh('ip', ['link', 'set', tmpIf, 'netns', host.ns]);
  await sh('ip', ['-n', host.ns, 'link', 'set', tmpIf, 'name', host.ifname]);
  await sh('ip', ['-n', host.ns, 'addr', 'add', `${host.ip}/24`, 'dev', host.ifname]);
  await sh('ip', ['-n', host.ns, 'link', 'set', host.ifname, 'up']);
  await sh('ip', ['-n', host.ns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['link', 'set', host.rootIf, 'master', bridge]);
  await sh('ip', ['link', 'set', host.rootIf, 'up']);
  await noOffloads(host.rootIf);
  await noOffloads(host.ifname, host.ns);
}

/**
 * The collector host's out-of-band link to the root namespace (see LabSpec.collectorHost):
 * a veth with a /32 at each end, so only these two addresses route over it. Inside the
 * host, a connection to its end on the collector's port is forwarded to the collector on
 * the host's lab address, and nothing else is accepted from the link.
 */
async function buildManagementLink(
  host: LabHost,
  space: AddressSpace,
  suffix: string,
  hostNumber: number,
): Promise<void> {
  const rootIf = `${space.prefix}mg${suffix}`;
  const tmpIf = `${space.prefix}mt${suffix}`;
  // The root end's address is the same on every management link: one alert receiver
  // listening there hears every collector.
  const rootAddr = space.address(mgmtRootHost);
  const hostAddr = space.address(hostNumber);
  await sh('ip', ['link', 'add', rootIf, 'type', 'veth', 'peer', 'name', tmpIf]);
  await sh('ip', ['link', 'set', tmpIf, 'netns', host.ns]);
  await sh('ip', ['-n', host.ns, 'link', 'set', tmpIf, 'name', mgmtIfname]);
  await sh('ip', ['-n', host.ns, 'addr', 'add', `${hostAddr}/32`, 'dev', mgmtIfname]);
  await sh('ip', ['-n', host.ns, 'link', 'set', mgmtIfname, 'up']);
  await sh('ip', [
    '-n',
    host.ns,
    'route',
    'add',
    `${rootAddr}/32`,
    'dev',
    mgmtIfname,
    'src',
    hostAddr,
  ]);
  await sh('ip', ['addr', 'add', `${rootAddr}/32`, 'dev', rootIf]);
  await sh('ip', ['link', 'set', rootIf, 'up']);
  await sh('ip', ['route', 'add', `${hostAddr}/32`, 'dev', rootIf, 'src', rootAddr]);
}

/** Forwards the management link's collector port to the collector; nothing else gets in. */
export async function guardManagementLink(
  host: LabHost,
  port: number,
  space: AddressSpace,
  hostNumber = mgmtCollectorHost,
): Promise<void> {
  const hostAddr = space.address(hostNumber);
  await nftIn(
    host,
    `table ip flmgmt {
       chain prerouting {
         type nat hook prerouting priority dstnat; policy accept;
         iifname "${mgmtIfname}" ip daddr ${hostAddr} tcp dport ${port} dnat to ${host.ip}
       }
       chain input {
         type filter hook input priority filter; policy accept;
         iifname "${mgmtIfname}" ct state established,related accept
         iifname "${mgmtIfname}" ip daddr ${host.ip} tcp dport ${port} accept
         iifname "${mgmtIfname}" drop
       }
     }`,
  );
}

/** Applies an nftables ruleset (text) inside a host's namespace. */
export async function nftIn(host: LabHost, ruleset: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', host.ns, 'nft', '-f', '-'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`nft in ${host.name} failed: ${stderr.trim()}`)),
    );
    child.stdin.end(ruleset);
  });
}

/**
 * Segmentation and receive offloads off on a lab interface: a real NIC cuts a large send into
 * MTU-sized frames before they reach the wire, but a veth or bridge passes the one large
 * "GSO" packet along, and Linux lets such packets past a smaller MTU downstream. With the
 * offloads on, a switch port's lowered MTU would stop pings and never TCP.
 */
async function noOffloads(ifname: string, ns?: string): Promise<void> {
  const args = ['-K', ifname, 'tso', 'off', 'gso', 'off', 'gro', 'off'];
  if (ns === undefined) await sh('ethtool', args);
  else await sh('ip', ['netns', 'exec', ns, 'ethtool', ...args]);
}

export function uplinkKey(a: string, b: string): string {
  return [a, b].sort().join('|');
}
