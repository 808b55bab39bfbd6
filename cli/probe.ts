import type { CommandModule } from 'yargs';
import { z } from 'zod';
import { parseDurationMs } from '../lib/duration.js';
import { ConfigError } from '../lib/errors.js';
import { probeKinds, probeDefinition } from '../probes/registry.js';
import { runProbe } from '../probes/run.js';
import { parseTarget } from '../probes/target.js';
import type { ProbeResult } from '../wire/result.js';
import { exitCodes } from './exit-codes.js';

interface ProbeArgs {
  kind: string;
  target: string;
  count: number;
  interval: string;
  timeout: string;
  option: string[];
  json: boolean;
}

function duration(flag: string, value: string, minMs: number): number {
  const ms = parseDurationMs(value);
  if (ms === undefined) {
    throw new ConfigError(
      `--${flag}: expected a duration like 500ms, 2s or 1m (actual: ${JSON.stringify(value)})`,
      {
        code: 'FL_ERR_USAGE',
      },
    );
  }
  if (ms < minMs)
    throw new ConfigError(`--${flag}: must be at least ${minMs} ms (actual: ${ms} ms)`, {
      code: 'FL_ERR_USAGE',
    });
  return ms;
}

/** `-o key=value` pairs into an options object; values are JSON where they parse, else strings. */
export function parseOptionPairs(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      throw new ConfigError(`--option: expected key=value (actual: ${JSON.stringify(pair)})`, {
        code: 'FL_ERR_USAGE',
      });
    }
    const path = pair.slice(0, eq).split('.');
    const text = pair.slice(eq + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      /* a plain string */
    }
    let node = out;
    for (const key of path.slice(0, -1)) {
      if (key === '__proto__' || key === 'constructor' || key === 'prototype') {
        throw new ConfigError(`--option: key "${key}" is not allowed`, { code: 'FL_ERR_USAGE' });
      }
      const next = node[key];
      node = (typeof next === 'object' && next !== null ? next : (node[key] = {})) as Record<
        string,
        unknown
      >;
    }
    const last = path[path.length - 1] ?? '';
    if (last === '' || last === '__proto__' || last === 'constructor' || last === 'prototype') {
      throw new ConfigError(`--option: key "${pair.slice(0, eq)}" is not allowed`, {
        code: 'FL_ERR_USAGE',
      });
    }
    node[last] = value;
  }
  return out;
}

function fmt(ms: number | undefined): string | undefined {
  if (ms === undefined) return undefined;
  return ms < 10 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(1);
}

/** One human line per attempt: like ping, for every kind. */
export function formatAttempt(r: ProbeResult, index: number): string {
  const t = r.timings;
  const phases = (
    [
      ['dns', t.dnsMs],
      ['connect', t.connectMs],
      ['tls', t.tlsMs],
      ['first-byte', t.firstByteMs],
      ['rtt', t.rttMs],
      ['total', t.totalMs],
    ] as const
  )
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${fmt(v)}ms`)
    .join(' ');
  const facts: string[] = [];
  const d = r.detail ?? {};
  for (const key of [
    'engine',
    'ip',
    'sizeBytes',
    'nextHopMtu',
    'status',
    'rcode',
    'lossRatio',
    'serverVersion',
    'authMethod',
    'sqlstate',
  ]) {
    const v = d[key];
    if (v !== undefined) facts.push(`${key}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  const err = r.error === undefined ? '' : `  (${r.error.code ?? 'error'}: ${r.error.message})`;
  return `#${index + 1} ${r.class.padEnd(16)} ${phases}${facts.length > 0 ? '  ' + facts.join(' ') : ''}${err}`;
}

/** The closing summary: sent/ok/failed, classes, min/avg/max of the main latency. */
export function formatSummary(
  kind: string,
  address: string,
  results: readonly ProbeResult[],
): string {
  const ok = results.filter((r) => r.class === 'ok');
  const classes = new Map<string, number>();
  for (const r of results) classes.set(r.class, (classes.get(r.class) ?? 0) + 1);
  const failedPct =
    results.length === 0 ? 0 : (100 * (results.length - ok.length)) / results.length;
  const lat = ok.map(
    (r) => r.timings.rttMs ?? r.timings.firstByteMs ?? r.timings.connectMs ?? r.timings.totalMs,
  );
  const lines = [
    `--- ${address} ${kind} probe statistics ---`,
    `${results.length} sent, ${ok.length} ok, ${failedPct.toFixed(1)}% failed; ` +
      [...classes].map(([c, n]) => `${c}=${n}`).join(' '),
  ];
  if (lat.length > 0) {
    const min = Math.min(...lat);
    const max = Math.max(...lat);
    const avg = lat.reduce((a, b) => a + b, 0) / lat.length;
    lines.push(`latency min/avg/max = ${fmt(min)}/${fmt(avg)}/${fmt(max)} ms`);
  }
  return lines.join('\n');
}

/** `faultline probe <kind> <target>`: the debug path of every probe kind. */
export function probeCommand(setExit: (code: number) => void): CommandModule<object, ProbeArgs> {
  return {
    command: 'probe <kind> <target>',
    describe: 'Probe one target once or a few times and say exactly how it answers',
    builder: (y) =>
      y
        .positional('kind', {
          type: 'string',
          choices: probeKinds,
          describe: 'Probe kind',
          demandOption: true,
        })
        .positional('target', {
          type: 'string',
          demandOption: true,
          describe: 'host, host:port, [v6]:port or URL, depending on the kind',
        })
        .option('count', { alias: 'c', type: 'number', default: 1, describe: 'Attempts to make' })
        .option('interval', {
          alias: 'i',
          type: 'string',
          default: '1s',
          describe: 'Pause between attempts',
        })
        .option('timeout', {
          alias: 't',
          type: 'string',
          default: '3s',
          describe: 'Limit for one attempt',
        })
        .option('option', {
          alias: 'o',
          type: 'string',
          array: true,
          default: [],
          describe: 'Kind option as key=value (JSON values allowed), repeatable',
        })
        .option('json', {
          type: 'boolean',
          default: false,
          describe: 'Print the result records, one JSON object per line',
        })
        .example('$0 probe tcp db-1:5432 -c 3', 'connect three times, like ping')
        .example('$0 probe postgres 10.0.0.5', 'is PostgreSQL there and speaking its protocol?')
        .example(
          '$0 probe http https://api.example/healthz -o validStatusCodes=[200]',
          'HTTP with phase timings',
        )
        .example('$0 probe tcp mail:25 -o expect=^220', 'send/expect exchange')
        .example(
          '$0 probe mtu db-1 -o size=9000',
          "does a 9000-byte packet with Don't Fragment get there?",
        ),
    handler: async (args) => {
      if (!Number.isInteger(args.count) || args.count < 1 || args.count > 100_000) {
        throw new ConfigError(
          `--count: expected a whole number from 1 to 100000 (actual: ${args.count})`,
          {
            code: 'FL_ERR_USAGE',
          },
        );
      }
      const timeoutMs = duration('timeout', args.timeout, 1);
      const intervalMs = duration('interval', args.interval, 0);
      const def = probeDefinition(args.kind);
      const target = parseTarget(args.target, def.target);
      const parsed = def.options.safeParse(parseOptionPairs(args.option));
      if (!parsed.success) {
        throw new ConfigError(
          `--option for ${def.kind}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`,
          {
            code: 'FL_ERR_OPTIONS',
          },
        );
      }
      const options = parsed.data;
      if (!args.json) {
        process.stdout.write(
          `PROBE ${def.kind} ${target.address} timeout=${timeoutMs}ms options=${JSON.stringify(options)}\n`,
        );
      }
      const stop = new AbortController();
      const onSigint = (): void => stop.abort();
      process.once('SIGINT', onSigint);
      const results: ProbeResult[] = [];
      // A run of attempts is a schedule: a kind with long-lived machinery for scheduled targets
      // (icmp, mtu: one `fping -l` for the whole run instead of a process per attempt) uses
      // it, as the agent does. A round it cannot answer in time runs one-shot as before.
      if (args.count > 1 && intervalMs > 0)
        def.prepare?.([{ target, options, intervalMs, timeoutMs }]);
      try {
        for (let i = 0; i < args.count && !stop.signal.aborted; i++) {
          if (i > 0 && intervalMs > 0) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, intervalMs);
              stop.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), {
                once: true,
              });
            });
            if (stop.signal.aborted) break;
          }
          const r = await runProbe(def, target, options, {
            timeoutMs,
            seq: i + 1,
            signal: stop.signal,
          });
          results.push(r);
          process.stdout.write((args.json ? JSON.stringify(r) : formatAttempt(r, i)) + '\n');
        }
      } finally {
        process.removeListener('SIGINT', onSigint);
        await def.close?.();
      }
      if (!args.json) process.stdout.write(formatSummary(def.kind, target.address, results) + '\n');
      setExit(results.every((r) => r.class === 'ok') ? exitCodes.ok : exitCodes.failed);
    },
  };
}
