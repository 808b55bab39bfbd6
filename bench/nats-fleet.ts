/**
 * What the NATS benches (bench/nats.ts, bench/shards.ts) share: the child processes they
 * start (nats-server, collectors) with their log tails, and the simulated fleet's agents and
 * report batches.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { connect } from '@nats-io/transport-node';
import { freePort, pollUntil } from './lib.js';

/** Children a bench is stopping: their exit code is not news. */
const stopping = new WeakSet<ChildProcess>();
/** The last 4,000 characters each child wrote (its log tail, for a failure). */
const tails = new WeakMap<ChildProcess, () => string>();

/** Starts a child whose output is kept as a tail, printed if it exits with an error. */
export function spawnLogged(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): ChildProcess {
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let tail = '';
  const keep = (d: Buffer): void => {
    tail = (tail + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  tails.set(child, () => tail);
  child.on('exit', (code, sig) => {
    if (code !== 0 && code !== null && sig === null && !stopping.has(child))
      process.stderr.write(`${cmd} exited ${code}: ${tail}\n`);
  });
  return child;
}

/** What a child started by {@link spawnLogged} last wrote. */
export function tailOf(child: ChildProcess): string {
  return tails.get(child)?.() ?? '';
}

/** SIGTERM, then SIGKILL after 15 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  stopping.add(child);
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/**
 * A numeric flag of the NATS benches: a positive number (`integer`: a whole one), or an error
 * naming the flag and what it was given.
 */
export function positiveFlag(
  values: Readonly<Record<string, unknown>>,
  key: string,
  integer = false,
): number {
  const v = Number(values[key]);
  if (!(integer ? Number.isInteger(v) : Number.isFinite(v)) || v <= 0)
    throw new Error(
      `--${key}: expected a positive ${integer ? 'integer' : 'number'} (actual: ${String(values[key])})`,
    );
  return v;
}

/** The simulated agent's name. */
export const agentName = (agent: number): string => `agent-${String(agent).padStart(5, '0')}`;

/** A target of a simulated agent; `failing`: it times out while the bench's fault is on. */
export interface FleetTarget {
  readonly name: string;
  readonly kind: string;
  readonly failing?: boolean;
}

/**
 * One report batch of a simulated agent, gzip'd as the agent spools it: a summary per
 * target over the last `intervalMs`, those toward a failing target timing out while `fault`
 * is on. `varied`: latencies differ path by path and period by period, so a batch compresses
 * as a real one does (identical figures make the report stream look 5× smaller).
 */
export function fleetBatch(
  agent: number,
  seq: number,
  targets: readonly FleetTarget[],
  intervalMs: number,
  opts: { readonly fault?: boolean; readonly varied?: boolean } = {},
): { readonly body: Buffer; readonly createdAtMs: number } {
  const now = Date.now();
  const summaries = targets.map((t) => {
    const lat = 0.2 + (agent % 7) * 0.05 + (opts.varied === true ? Math.random() * 0.5 : 0);
    const q = (x: number): string => (opts.varied === true ? x.toFixed(3) : String(x));
    const bad = opts.fault === true && t.failing === true;
    const cls = t.kind === 'icmp' ? 'icmp_timeout' : 'tcp_timeout';
    const latency = opts.varied === true ? [0.8, 1, 1.3, 1.9, 2.4] : [1, 1, 1, 1, 1];
    const [mn, p50, p90, p99, mx] = latency.map((f) => q(lat * f));
    return `{"target":${JSON.stringify(t.name)},"kind":"${t.kind}","fromMs":${now - intervalMs},"toMs":${now},"count":10,"ok":${bad ? 0 : 10},"failures":${bad ? `{"${cls}":10}` : '{}'},${bad ? '' : `"latencyMs":{"min":${mn},"p50":${p50},"p90":${p90},"p99":${p99},"max":${mx}},`}${t.kind === 'icmp' ? `"lossRatio":${bad ? 1 : 0},` : ''}"lastClass":"${bad ? cls : 'ok'}","lastSeq":${seq * 10}}`;
  });
  const json = `{"agentId":"bench${String(agent).padStart(6, '0')}","agent":"${agentName(agent)}","labels":{"zone":"z${agent % 3}"},"seq":${seq},"createdAtMs":${now},"results":[],"summaries":[${summaries.join(',')}]}`;
  return { body: gzipSync(json, { level: 6 }), createdAtMs: now };
}

/** A one-node nats-server with JetStream, its store under `dir`, once it takes connections. */
export async function startNatsServer(
  dir: string,
): Promise<{ readonly child: ChildProcess; readonly url: string }> {
  const port = await freePort();
  const child = spawnLogged('nats-server', [
    '-js',
    '-a',
    '127.0.0.1',
    '-p',
    String(port),
    '-sd',
    join(dir, 'js'),
  ]);
  const url = `nats://127.0.0.1:${port}`;
  try {
    await pollUntil(
      'nats-server',
      async () => {
        const nc = await connect({ servers: url, timeout: 500 });
        await nc.close();
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return { child, url };
}
