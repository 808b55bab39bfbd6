import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CommandModule } from 'yargs';
import { ConfigError } from '../lib/errors.js';
import type { PathState } from '../collector/types.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import { matches, type ExpectedHypothesis } from '../lab/expect.js';
import {
  collectorCut,
  cutUplink,
  dropPort,
  flappingLink,
  freezeDatabase,
  hostLinkDown,
  killAgent,
  portMtu,
  randomLoss,
  stopPostgres,
  wrongVlan,
  type Fault,
} from '../lab/faults.js';
import { Lab } from '../lab/lab.js';
import { canRunLab, type LabSpec } from '../lab/spec.js';
import { exitCodes } from './exit-codes.js';

interface DemoArgs {
  keep: boolean;
  'hold-ms': number;
  fault: string;
}

/**
 * The demo lab: the collector on its own host ctl-1 (with an agent), two application hosts
 * and a web front on switch sw-1; the primary and the replica database (PostgreSQL 15 each)
 * on switch sw-2; one cable between the switches; and vlan-99, the VLAN the founding
 * incident's ports ended up in.
 */
export const demoLab: LabSpec = {
  switches: [{ name: 'sw-1', zone: 'front' }, { name: 'sw-2', zone: 'data' }, { name: 'vlan-99' }],
  uplinks: [['sw-1', 'sw-2']],
  hosts: [
    { name: 'ctl-1', switch: 'sw-1' },
    { name: 'app-1', switch: 'sw-1', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'app-2', switch: 'sw-1', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'web-1', switch: 'sw-1', role: 'web', services: [{ kind: 'http', name: 'web' }] },
    { name: 'db-1', switch: 'sw-2', role: 'database', services: [{ kind: 'postgres' }] },
    { name: 'db-2', switch: 'sw-2', role: 'database', services: [{ kind: 'postgres' }] },
  ],
  collectorHost: 'ctl-1',
};
/**
 * Paths of the demo lab: the five service hosts' agents probe the four others at 3 layers
 * (icmp, tcp, protocol), ping ctl-1 and send each of the five a full-size echo (mtu): 18
 * each; ctl-1's agent probes the five at 3 layers and with a full-size echo: 20.
 */
export const demoLabPaths = 5 * 18 + 5 * 4;
/** The hosts on the collector's switch and the databases: the founding partition's sides. */
export const demoFront = ['app-1', 'app-2', 'ctl-1', 'web-1'];
export const demoData = ['db-1', 'db-2'];

/** One fault the demo can replay (and the detection benchmark measures). */
export interface DemoFault {
  /** The `--fault` value. */
  readonly name: string;
  /** What happens, as the demo announces it ("INCIDENT: …"). */
  readonly incident: string;
  /** How it is undone ("HEAL: …"). */
  readonly heal: string;
  readonly fault: (lab: Lab) => Fault;
  /** The right answer, on top of the diagnosis. */
  readonly want: ExpectedHypothesis;
  /** The right answer in words ("Diagnosed as …"). */
  readonly answer: string;
}

/** The founding incident's answer: the front on one side, the databases on the other. */
const frontFromDatabases: ExpectedHypothesis = {
  kind: 'network_partition',
  groups: [demoFront, demoData],
};

/** Every fault `faultline demo --fault` replays, the founding incident first. */
export const demoFaults: readonly DemoFault[] = [
  {
    name: 'wrong-vlan',
    incident: 'the switch ports of db-1 and db-2 are moved to VLAN 99 (a misconfigured switch).',
    heal: 'the ports go back to sw-2.',
    fault: (l) => wrongVlan(l, demoData, 'vlan-99'),
    want: frontFromDatabases,
    answer: 'a network partition',
  },
  {
    name: 'uplink-cut',
    incident: 'the cable between sw-1 and sw-2 is cut.',
    heal: 'the cable is back.',
    fault: (l) => cutUplink(l, 'sw-1', 'sw-2'),
    want: frontFromDatabases,
    answer: 'a network partition',
  },
  {
    name: 'host-link-down',
    incident: "db-2's network interface goes down.",
    heal: "db-2's interface is up again.",
    fault: (l) => hostLinkDown(l, 'db-2'),
    want: { kind: 'host_unreachable', components: ['db-2'] },
    answer: 'db-2 unreachable',
  },
  {
    name: 'postgres-stopped',
    incident: 'PostgreSQL on db-1 is shut down (immediate).',
    heal: 'PostgreSQL on db-1 is started again.',
    fault: (l) => stopPostgres(l, 'db-1'),
    want: { kind: 'service_down', components: ['db-1'] },
    answer: 'the database service down on db-1',
  },
  {
    name: 'postgres-frozen',
    incident: 'PostgreSQL on db-1 is frozen (SIGSTOP): it accepts connections, never answers.',
    heal: 'PostgreSQL on db-1 is thawed (SIGCONT).',
    fault: (l) => freezeDatabase(l, 'db-1', 'postgres'),
    want: { kind: 'service_unresponsive', components: ['db-1'] },
    answer: 'the database on db-1 unresponsive',
  },
  {
    name: 'port-dropped',
    incident: "a firewall rule on db-1 drops app-1's connections to PostgreSQL (port 5432).",
    heal: 'the rule is removed.',
    fault: (l) => dropPort(l, 'db-1', 5432, ['app-1']),
    want: { kind: 'path_blocked', components: ['db-1'] },
    answer: 'a path blocked to db-1',
  },
  {
    name: 'loss-30pct',
    incident: "db-2's link loses 30 % of the packets, both ways.",
    heal: 'the loss stops.',
    fault: (l) => randomLoss(l, 'db-2', 30),
    // The lossy host alone: a first answer naming it beside the far end of its first lossy
    // paths ([db-1, db-2]) does not count.
    want: { kind: 'packet_loss', components: ['db-2'] },
    answer: 'packet loss at db-2',
  },
  {
    name: 'agent-killed',
    incident: 'the agent on app-2 is killed.',
    heal: 'the agent on app-2 is started again.',
    fault: (l) => killAgent(l, 'app-2'),
    want: { kind: 'agent_silent', components: ['app-2'] },
    answer: 'the agent on app-2 silent',
  },
  {
    name: 'collector-cut',
    incident:
      "the switch port of ctl-1, the collector's own host, is moved to VLAN 99: every other agent falls silent at once.",
    heal: "ctl-1's port goes back to sw-1.",
    fault: (l) => collectorCut(l, 'vlan-99'),
    want: {
      kind: 'network_partition',
      collectorCutOff: true,
      components: ['ctl-1'],
      summaryStartsWith: "the collector's side is cut off",
    },
    answer: "the collector's own side cut off (nothing blamed on the far side)",
  },
  {
    name: 'hosts-cut',
    incident:
      'the switch ports of app-1 and app-2 are moved to VLAN 99 together; web-1 and ctl-1 stay on sw-1.',
    heal: 'the ports go back to sw-1.',
    fault: (l) => wrongVlan(l, ['app-1', 'app-2'], 'vlan-99'),
    want: { kind: 'network_partition', components: ['app-1', 'app-2'] },
    answer: 'one network partition cutting off app-1 and app-2',
  },
  {
    name: 'mtu',
    incident:
      "web-1's switch port is set to MTU 1000: pings and handshakes pass, every full-size frame vanishes.",
    heal: "web-1's switch port is back at MTU 1500.",
    fault: (l) => portMtu(l, 'web-1', 1000),
    want: { kind: 'mtu_mismatch', components: ['web-1'] },
    answer: "an MTU mismatch at web-1's port (the web app not blamed)",
  },
  {
    name: 'flapping-link',
    incident: "db-2's link flaps: 1.5 s down, 1.5 s up, again and again.",
    heal: "the flapping stops, db-2's link stays up.",
    fault: (l) => flappingLink(l, 'db-2'),
    want: { kind: 'packet_loss', components: ['db-2'] },
    answer: 'packet loss at db-2',
  },
];

/** The catalogue entry of a `--fault` value. */
export function demoFault(name: string): DemoFault {
  const f = demoFaults.find((x) => x.name === name);
  if (f === undefined) {
    throw new ConfigError(
      `--fault: expected one of ${demoFaults.map((x) => x.name).join(', ')} (actual: ${JSON.stringify(name)})`,
      { code: 'FL_ERR_USAGE' },
    );
  }
  return f;
}

function needsRoot(): ConfigError {
  return new ConfigError(
    'demo needs root: it builds network namespaces, bridges and veth pairs, and runs PostgreSQL as the postgres user. Run it as root (e.g. sudo faultline demo).',
    { code: 'FL_ERR_USAGE' },
  );
}

/** The diagnosis in a few lines: what a person watching the demo reads. */
export function describeDiagnosis(d: Diagnosis): string[] {
  if (d.healthy) return ['healthy: nothing is wrong'];
  const lines: string[] = [];
  for (const [i, h] of d.hypotheses.slice(0, 3).entries()) {
    lines.push(
      `${i === 0 ? '' : 'or: '}${h.kind} (confidence ${h.confidence.toFixed(2)}): ${h.summary}`,
    );
  }
  for (const r of d.ruledOut) {
    lines.push(`  ${r.canBeRuledOut ? 'ruled out' : 'not ruled out'}: ${r.component}: ${r.reason}`);
  }
  return lines;
}

/** `faultline demo`: the founding incident (or another fault) replayed on a real network lab. */
export function demoCommand(setExit: (code: number) => void): CommandModule<object, DemoArgs> {
  return {
    command: 'demo',
    describe:
      'Build a small network lab (namespaces, bridges, PostgreSQL, agents, collector), replay a fault (by default the database switch ports in the wrong VLAN) and show the diagnosis (needs root)',
    builder: (y) =>
      y
        .option('keep', {
          type: 'boolean',
          default: false,
          describe:
            'Leave the lab running after the replay (until Ctrl-C) and print the collector URL',
        })
        .option('fault', {
          type: 'string',
          default: 'wrong-vlan',
          choices: demoFaults.map((f) => f.name),
          describe:
            "The fault to replay: the founding incident (wrong-vlan), a cut uplink, a host's link down, PostgreSQL stopped or frozen, a port dropped for one source, 30 % loss, a killed agent, the collector's own host cut off, two hosts cut off together, a switch port with a smaller MTU, a flapping link",
        })
        .option('hold-ms', {
          type: 'number',
          default: 10_000,
          describe: 'How long the fault stays in place after it is diagnosed (ms)',
        })
        .check((a) => {
          if (!Number.isInteger(a['hold-ms']) || a['hold-ms'] < 0 || a['hold-ms'] > 600_000) {
            throw new ConfigError(
              `--hold-ms: expected an integer from 0 to 600000 (actual: ${String(a['hold-ms'])})`,
              { code: 'FL_ERR_USAGE' },
            );
          }
          return true;
        }),
    handler: async (args) => {
      if (!canRunLab) throw needsRoot();
      if (!existsSync('/usr/lib/postgresql/15/bin/postgres')) {
        throw new ConfigError(
          'demo needs PostgreSQL 15 (/usr/lib/postgresql/15/bin): install the postgresql package',
          { code: 'FL_ERR_USAGE' },
        );
      }
      await runDemo(demoFault(args.fault), args.keep, args['hold-ms']);
      setExit(exitCodes.ok);
    },
  };
}

async function runDemo(fault: DemoFault, keep: boolean, holdMs: number): Promise<void> {
  const t0 = Date.now();
  const out = (text: string): void => {
    const stamp = `[${new Date().toISOString().slice(11, 23)} +${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
    const [first = '', ...rest] = text.split('\n');
    process.stdout.write(`${stamp} ${first}\n`);
    for (const line of rest) process.stdout.write(`${' '.repeat(stamp.length)} ${line}\n`);
  };
  out(
    'Building the lab: switch sw-1 (ctl-1 running the collector, app-1, app-2, web-1), switch sw-2 (db-1 primary, db-2 replica: PostgreSQL 15), one uplink.',
  );
  const cliPath = fileURLToPath(new URL('./main.js', import.meta.url));
  const lab = await Lab.up(demoLab, { cliPath });
  let tornDown = false;
  const tearDown = async (): Promise<void> => {
    if (tornDown) return;
    tornDown = true;
    out('Tearing the lab down.');
    await lab.down();
    out('Done: no namespace, bridge or process of the lab is left.');
  };
  try {
    out(
      `Lab up. Collector: ${lab.collectorUrl} (on ctl-1, reached over its management link; an agent on every host, probing every 1 s; namespaces ${lab.prefix}-*).`,
    );
    await waitUntil(async () => {
      const paths = await lab.get<{ paths: PathState[] }>('/api/v1/paths');
      return (
        paths.paths.length >= demoLabPaths &&
        paths.paths.every(
          (p) => (p.state === 'ok' || p.state === 'degraded') && p.lastClass === 'ok',
        )
      );
    }, 60_000);
    const healthy = await lab.get<Diagnosis>('/api/v1/diagnosis');
    out(`All ${demoLabPaths} paths ok. Diagnosis:\n${describeDiagnosis(healthy).join('\n')}`);

    const injector = fault.fault(lab);
    out(`INCIDENT: ${fault.incident}`);
    const injectedMs = Date.now();
    await injector.inject();
    let detectedMs: number | undefined;
    try {
      detectedMs = await watch(lab, out, (d) => matches(d.hypotheses[0], fault.want), 30_000);
      if (detectedMs !== undefined) {
        out(
          `Diagnosed as ${fault.answer} ${((detectedMs - injectedMs) / 1000).toFixed(1)} s after the fault.`,
        );
      } else {
        out(`Not diagnosed as ${fault.answer} within 30 s.`);
      }
      // Keep watching while the fault lasts: the diagnosis may still sharpen.
      await watch(lab, out, () => false, holdMs);
    } finally {
      out(`HEAL: ${fault.heal}`);
      await injector.heal();
    }
    const healedMs = Date.now();
    const back = await watch(lab, out, (d) => d.healthy, 60_000);
    if (back !== undefined)
      out(`Healthy again ${((back - healedMs) / 1000).toFixed(1)} s after the heal.`);

    if (keep) {
      out(
        `--keep: the lab stays up. Collector: ${lab.collectorUrl} (diagnosis: ${lab.collectorUrl}/api/v1/diagnosis; viewer token: ${lab.viewerToken}, e.g. faultline status --collector ${lab.collectorUrl} --token ${lab.viewerToken}). Press Ctrl-C to tear it down.`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
  } finally {
    await tearDown();
  }
}

/** Polls `check` every 250 ms until true or `timeoutMs`. */
async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `the lab did not become healthy within ${timeoutMs} ms${last instanceof Error ? `: ${last.message}` : ''}`,
  );
}

/**
 * Prints the diagnosis each time it changes, for up to `forMs`; returns the time `done`
 * first held (and stops there), or undefined.
 */
async function watch(
  lab: Lab,
  out: (text: string) => void,
  done: (d: Diagnosis) => boolean,
  forMs: number,
): Promise<number | undefined> {
  const deadline = Date.now() + forMs;
  let shown = '';
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    let d: Diagnosis | undefined;
    try {
      d = await lab.get<Diagnosis>('/api/v1/diagnosis');
    } catch {
      /* the collector is busy; next round */
    }
    if (d !== undefined) {
      const lines = describeDiagnosis(d);
      const text = lines.join('\n');
      if (text !== shown) {
        out(`Diagnosis:\n${text}`);
        shown = text;
      }
      if (done(d)) return Date.now();
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return undefined;
}
