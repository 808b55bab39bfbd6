/**
 * One fault of `faultline demo`'s catalogue, injected in the detection bench's lab, with the
 * diagnosis and the agents' liveness printed as they change (every 50 ms), from the
 * injection to the right answer and on after the heal: what the diagnosis showed, when, and
 * why (which agents were late or silent), and the collector's alerts pending or firing. A
 * tool for reading one fault closely.
 *
 *   node dist/bench/timeline.js <fault> [--hold-s 8] [--after-s 6] [--agent-log app-1]
 *
 * `--agent-log` runs the agents at log level info and prints that agent's log lines of the
 * fault (paths failing and recovering, with how long their probes took) after the timeline.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Diagnosis } from '../wire/diagnosis.js';
import { Lab } from '../lab/lab.js';
import { canRunLab } from '../lab/spec.js';
import { detectionLabTiming } from './lib.js';
import { demoFaults, demoLabPaths, demoLab as spec } from '../cli/demo.js';
import { labPaths, waitDiagnosisHealthy } from '../lab/expect.js';
import { pollUntil } from '../lab/poll-until.js';

const cliPath = fileURLToPath(new URL('../cli/main.js', import.meta.url));

interface AgentRow {
  agent: string;
  state: string;
  late?: boolean;
  lastSeenMs: number;
}

/**
 * The collector's alerts by name and phase (`faultline_alerts_active` of its /metrics), e.g.
 * `FaultlineHostUnreachable:firing`; resolved ones left out.
 */
async function alertPhases(lab: Lab): Promise<string> {
  const res = await lab.fetchApi('/metrics');
  if (res.status !== 200) return '?';
  const out: string[] = [];
  for (const m of (await res.text()).matchAll(/^faultline_alerts_active\{([^}]*)\} (\S+)/gm)) {
    if (Number(m[2]) <= 0) continue;
    const name = /alertname="([^"]*)"/.exec(m[1] ?? '')?.[1] ?? '';
    const phase = /phase="([^"]*)"/.exec(m[1] ?? '')?.[1] ?? '';
    if (phase !== 'resolved') out.push(`${name.replace(/^Faultline/, '')}:${phase}`);
  }
  return out.sort().join(' ');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'hold-s': { type: 'string', default: '8' },
      'after-s': { type: 'string', default: '6' },
      'agent-log': { type: 'string' },
    },
  });
  const name = positionals[0];
  const c = demoFaults.find((f) => f.name === name);
  if (c === undefined)
    throw new Error(`fault ${name}: expected one of ${demoFaults.map((f) => f.name).join(', ')}`);
  if (!canRunLab) throw new Error('needs root (namespaces)');
  const agentLog = values['agent-log'];
  const lab = await Lab.up(spec, {
    cliPath,
    ...detectionLabTiming,
    ...(agentLog === undefined ? {} : { logLevel: 'info' }),
  });
  try {
    // Every agent has reported every path, and the diagnosis is healthy.
    await pollUntil(
      `the lab's ${demoLabPaths} paths`,
      async () => (await labPaths(lab)).length === demoLabPaths,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    await waitDiagnosisHealthy(lab, 60_000);
    const fault = c.fault(lab);
    let last = '';
    const seen = new Set<string>();
    const look = async (t0: number): Promise<void> => {
      const d = await lab.get<Diagnosis>('/api/v1/diagnosis');
      const { agents } = await lab.get<{ agents: AgentRow[] }>('/api/v1/agents');
      const odd = agents
        .filter((a) => a.state !== 'live' || a.late === true || Date.now() - a.lastSeenMs > 1200)
        .map(
          (a) =>
            `${a.agent}:${a.state === 'live' ? (a.late === true ? 'late' : 'quiet') : a.state}`,
        );
      const hyps = d.hypotheses.map((h) => `${h.kind}[${h.components.join(',')}]`);
      const alerts = await alertPhases(lab);
      const line = `${d.settling === true ? 'SETTLING ' : ''}${d.healthy ? 'healthy' : hyps.join(' | ')}${odd.length > 0 ? `   agents: ${odd.join(' ')}` : ''}${alerts === '' ? '' : `   alerts: ${alerts}`}`;
      for (const h of d.hypotheses) {
        const key = `${h.kind}[${h.components.join(',')}]`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (process.env.TIMELINE_SUMMARIES === '1')
          process.stdout.write(
            `          ${key}: ${h.summary} — ${h.evidence.examples.slice(0, 3).join('; ')}\n`,
          );
      }
      if (line !== last) {
        process.stdout.write(`${((Date.now() - t0) / 1000).toFixed(2).padStart(6)} s  ${line}\n`);
        last = line;
      }
    };
    const pollFor = async (t0: number, ms: number): Promise<void> => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        await look(t0);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    process.stdout.write(`${c.name}: ${c.incident}\n`);
    const t0 = Date.now();
    await fault.inject();
    await pollFor(t0, Number(values['hold-s']) * 1000);
    process.stdout.write(`heal: ${c.heal}\n`);
    const t1 = Date.now();
    await fault.heal();
    last = '';
    await pollFor(t1, Number(values['after-s']) * 1000);
    if (agentLog !== undefined) {
      // The agent's lines since the injection (pino's `time` is an ISO timestamp).
      process.stdout.write(`${agentLog}'s log from the injection:\n`);
      for (const line of lab.agent(agentLog).log().split('\n')) {
        const time = Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? '');
        if (time >= t0)
          process.stdout.write(`${((time - t0) / 1000).toFixed(3).padStart(7)} s  ${line}\n`);
      }
    }
  } finally {
    await lab.down();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
