import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CommandModule } from 'yargs';
import { ConfigError } from '../lib/errors.js';
import type { PathState } from '../collector/types.js';
import type { Diagnosis } from '../wire/diagnosis.js';
import { wrongVlan } from '../test/helpers/lab/faults.js';
import { canRunLab, Lab, type LabSpec } from '../test/helpers/lab/lab.js';
import { exitCodes } from './exit-codes.js';

interface DemoArgs {
  keep: boolean;
  'hold-ms': number;
}

/**
 * The demo lab: the collector, two application hosts and a web front on switch sw-1; the
 * primary and the replica database (PostgreSQL 15 each) on switch sw-2; one cable between
 * the switches; and vlan-99, the VLAN the founding incident's ports ended up in.
 */
export const demoLab: LabSpec = {
  switches: [{ name: 'sw-1', zone: 'front' }, { name: 'sw-2', zone: 'data' }, { name: 'vlan-99' }],
  uplinks: [['sw-1', 'sw-2']],
  hosts: [
    { name: 'app-1', switch: 'sw-1', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'app-2', switch: 'sw-1', role: 'api', services: [{ kind: 'http', name: 'api' }] },
    { name: 'web-1', switch: 'sw-1', role: 'web', services: [{ kind: 'http', name: 'web' }] },
    { name: 'db-1', switch: 'sw-2', role: 'database', services: [{ kind: 'postgres' }] },
    { name: 'db-2', switch: 'sw-2', role: 'database', services: [{ kind: 'postgres' }] },
  ],
};
const databases = ['db-1', 'db-2'];
const pathCount = 5 * 4 * 3;

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

/** `faultline demo`: the founding incident replayed on a real network lab. */
export function demoCommand(setExit: (code: number) => void): CommandModule<object, DemoArgs> {
  return {
    command: 'demo',
    describe:
      'Build a small network lab (namespaces, bridges, PostgreSQL, agents, collector), replay a switch port in the wrong VLAN and show the diagnosis (needs root)',
    builder: (y) =>
      y
        .option('keep', {
          type: 'boolean',
          default: false,
          describe:
            'Leave the lab running after the replay (until Ctrl-C) and print the collector URL',
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
      await runDemo(args.keep, args['hold-ms']);
      setExit(exitCodes.ok);
    },
  };
}

async function runDemo(keep: boolean, holdMs: number): Promise<void> {
  const t0 = Date.now();
  const out = (text: string): void => {
    const stamp = `[${new Date().toISOString().slice(11, 23)} +${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
    const [first = '', ...rest] = text.split('\n');
    process.stdout.write(`${stamp} ${first}\n`);
    for (const line of rest) process.stdout.write(`${' '.repeat(stamp.length)} ${line}\n`);
  };
  out(
    'Building the lab: switch sw-1 (app-1, app-2, web-1, the collector), switch sw-2 (db-1 primary, db-2 replica: PostgreSQL 15), one uplink.',
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
      `Lab up. Collector: ${lab.collectorUrl} (an agent on every host, probing every 1 s; namespaces ${lab.prefix}-*).`,
    );
    await waitUntil(async () => {
      const paths = await lab.get<{ paths: PathState[] }>('/api/v1/paths');
      return (
        paths.paths.length >= pathCount &&
        paths.paths.every(
          (p) => (p.state === 'ok' || p.state === 'degraded') && p.lastClass === 'ok',
        )
      );
    }, 60_000);
    const healthy = await lab.get<Diagnosis>('/api/v1/diagnosis');
    out(`All ${pathCount} paths ok. Diagnosis:\n${describeDiagnosis(healthy).join('\n')}`);

    const fault = wrongVlan(lab, databases, 'vlan-99');
    out(
      'INCIDENT: the switch ports of db-1 and db-2 are moved to VLAN 99 (a misconfigured switch).',
    );
    const injectedMs = Date.now();
    await fault.inject();
    let detectedMs: number | undefined;
    try {
      detectedMs = await watch(
        lab,
        out,
        (d) => d.hypotheses[0]?.kind === 'network_partition',
        30_000,
      );
      if (detectedMs !== undefined) {
        out(
          `Diagnosed as a network partition ${((detectedMs - injectedMs) / 1000).toFixed(1)} s after the fault.`,
        );
      } else {
        out('No network partition diagnosed within 30 s.');
      }
      // Keep watching while the fault lasts: the diagnosis may still sharpen.
      await watch(lab, out, () => false, holdMs);
    } finally {
      out('HEAL: the ports go back to sw-2.');
      await fault.heal();
    }
    const healedMs = Date.now();
    const back = await watch(lab, out, (d) => d.healthy, 60_000);
    if (back !== undefined)
      out(`Healthy again ${((back - healedMs) / 1000).toFixed(1)} s after the heal.`);

    if (keep) {
      out(
        `--keep: the lab stays up. Collector: ${lab.collectorUrl} (diagnosis: ${lab.collectorUrl}/api/v1/diagnosis). Press Ctrl-C to tear it down.`,
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
