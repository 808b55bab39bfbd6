import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollUntil } from './poll-until.js';
import { freePort } from './server-process.js';

export const prometheusBin = '/usr/bin/prometheus';

/** A throwaway Prometheus (Debian's) on loopback with temporary storage. */
export interface TestPrometheus {
  readonly url: string;
  /** Instant PromQL query; returns the result vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  stop(): Promise<void>;
}

/** What else Prometheus does besides scraping `targets`. */
export interface PrometheusOptions {
  /** More `scrape_configs` entries, as YAML list items indented by two spaces. */
  readonly scrapeConfigs?: string;
  /** A rule file's YAML (`groups: …`); evaluated every scrape interval. */
  readonly rules?: string;
  /** Alertmanager base URLs (http://host:port) the alerts go to. */
  readonly alertmanagers?: readonly string[];
}

/**
 * Starts Prometheus scraping `targets` (host:port of /metrics endpoints) every
 * `scrapeIntervalS` seconds — and whatever `options` adds — and waits until it is ready.
 */
export async function startPrometheus(
  targets: readonly string[],
  scrapeIntervalS = 1,
  options: PrometheusOptions = {},
): Promise<TestPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-prom-'));
  const port = await freePort();
  const lines = [
    'global:',
    `  scrape_interval: ${scrapeIntervalS}s`,
    `  scrape_timeout: ${scrapeIntervalS}s`,
    `  evaluation_interval: ${scrapeIntervalS}s`,
    'scrape_configs:',
  ];
  if (targets.length > 0) {
    lines.push(
      '  - job_name: faultline',
      '    static_configs:',
      `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    );
  }
  if (options.scrapeConfigs !== undefined) lines.push(options.scrapeConfigs.trimEnd());
  if (options.rules !== undefined) {
    writeFileSync(join(dir, 'rules.yml'), options.rules);
    lines.push('rule_files:', `  - ${JSON.stringify(join(dir, 'rules.yml'))}`);
  }
  if (options.alertmanagers !== undefined && options.alertmanagers.length > 0) {
    lines.push(
      'alerting:',
      '  alertmanagers:',
      '    - static_configs:',
      `        - targets: [${options.alertmanagers.map((u) => JSON.stringify(new URL(u).host)).join(', ')}]`,
    );
  }
  writeFileSync(join(dir, 'prometheus.yml'), lines.join('\n') + '\n');
  const child: ChildProcess = spawn(
    prometheusBin,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.pid !== undefined) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await pollUntil(
      'prometheus ready',
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
        const res = await fetch(`${url}/-/ready`);
        return res.ok;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      };
      if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`);
      return body.data.result;
    },
    stop,
  };
}
