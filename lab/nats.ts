import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './lab.js';
import { pollUntil } from './poll-until.js';
import type { LabProcess } from './process.js';

/** Client, cluster-route and monitoring ports of every lab NATS node (one per host). */
export const natsPorts = { client: 4222, cluster: 6222, monitor: 8222 } as const;

/**
 * A NATS cluster with JetStream in the lab: one `nats-server` (Debian's) per host, each
 * listening on its host's address, routes to every other node, its JetStream store in the
 * lab's dir (kept across a restart of the node). Started inside the hosts' namespaces, so
 * the lab's faults (a port moved, a link down) cut a node off like any other host; ended
 * with the lab (`lab.down()`), or node by node by PID.
 */
export class NatsCluster {
  private readonly procs = new Map<string, LabProcess>();

  private constructor(
    private readonly lab: Lab,
    readonly hosts: readonly string[],
    private readonly dir: string,
    private readonly name: string,
  ) {}

  /** Starts a node on each of `hosts` and waits until each says JetStream is healthy. */
  static async start(
    lab: Lab,
    hosts: readonly string[],
    name = 'faultline-lab',
  ): Promise<NatsCluster> {
    const cluster = new NatsCluster(lab, hosts, join(lab.dir, 'nats'), name);
    for (const h of hosts) cluster.startNode(h);
    await Promise.all(hosts.map((h) => cluster.untilHealthy(h)));
    return cluster;
  }

  /** `nats://ip:4222` of every node, for agents and collectors. */
  get servers(): string[] {
    return this.hosts.map((h) => `nats://${this.lab.host(h).ip}:${natsPorts.client}`);
  }

  /** The node process on `host` (its PID, to kill it). */
  node(host: string): LabProcess {
    const p = this.procs.get(host);
    if (p === undefined) throw new Error(`no NATS node on ${host}`);
    return p;
  }

  /** (Re)starts the node on `host` with its config and store. */
  startNode(host: string): LabProcess {
    const h = this.lab.host(host);
    const store = join(this.dir, host);
    mkdirSync(store, { recursive: true });
    const routes = this.hosts
      .filter((o) => o !== host)
      .map((o) => `nats-route://${this.lab.host(o).ip}:${natsPorts.cluster}`);
    const conf = join(this.dir, `${host}.conf`);
    writeFileSync(
      conf,
      [
        `server_name: ${host}`,
        `listen: ${h.ip}:${natsPorts.client}`,
        `http: ${h.ip}:${natsPorts.monitor}`,
        `jetstream { store_dir: "${store}", max_memory_store: 64MB, max_file_store: 1GB }`,
        `cluster { name: ${this.name}, listen: ${h.ip}:${natsPorts.cluster}, routes: [${routes.join(', ')}] }`,
        // A cut node is noticed within seconds, not the default two minutes.
        'ping_interval: "2s"',
        'ping_max: 2',
        '',
      ].join('\n'),
    );
    const proc = this.lab.spawnIn(h, `nats ${host}`, 'nats-server', ['-c', conf]);
    this.procs.set(host, proc);
    return proc;
  }

  /** Waits until the node on `host` answers its JetStream health check. */
  async untilHealthy(
    host: string,
    timeoutMs = 30_000,
    opts: { readonly current?: boolean } = {},
  ): Promise<void> {
    const proc = this.node(host);
    // `js-enabled-only`: JetStream is on. Without it (`current`), the server also reports
    // JetStream current: the meta group and its streams caught up. A restarted node answers
    // publishes with "jetstream is not enabled" until then.
    const query = opts.current === true ? '' : '?js-enabled-only=true';
    const url = `http://${this.lab.host(host).ip}:${natsPorts.monitor}/healthz${query}`;
    await pollUntil(
      `NATS on ${host} healthy`,
      async () => {
        if (!proc.running)
          throw new Error(`nats-server on ${host} exited: ${proc.log().slice(-2000)}`);
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
        return res.status === 200;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  /**
   * Starts a `transport: nats` agent on lab host `name` (config `agent-<name>.yaml`, state
   * dir `agent-<name>` in the lab's dir; `natsLines` more lines of its `nats:` section),
   * labelled with its switch and zone like the lab's own agents. Ended with the lab, or by PID.
   */
  startAgent(
    cliPath: string,
    name: string,
    natsLines: readonly string[] = [],
    logLevel = 'info',
  ): LabProcess {
    const h = this.lab.host(name);
    const file = join(this.lab.dir, `agent-${name}.yaml`);
    writeFileSync(
      file,
      [
        'agent:',
        `  name: ${name}`,
        `  labels: { switch: ${h.switchName}, zone: ${h.zone} }`,
        'metrics: { listen: "" }',
        'collector:',
        `  stateDir: ${join(this.lab.dir, `agent-${name}`)}`,
        '  transport: nats',
        this.yaml('  ', natsLines),
        '',
      ].join('\n'),
    );
    return this.lab.spawnIn(h, `agent ${name}`, process.execPath, [cliPath, 'agent', '-c', file], {
      FAULTLINE_LOG_LEVEL: logLevel,
    });
  }

  /** The `nats:` YAML lines for an agent's or a collector's config, indented by `indent`. */
  yaml(indent: string, extra: readonly string[] = []): string {
    return [
      `${indent}nats:`,
      `${indent}  servers: [${this.servers.join(', ')}]`,
      ...extra.map((l) => `${indent}  ${l}`),
    ].join('\n');
  }
}
