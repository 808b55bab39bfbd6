import { hostname } from 'node:os';
import type { CommandModule } from 'yargs';
import { Agent, defaultStopGraceMs } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { createLogger, type Logger } from '../agent/logger.js';
import { startManagedAgent } from '../agent/managed.js';
import { parseLabels } from '../collector/api.js';
import { ConfigError, isFaultlineError } from '../lib/errors.js';
import { exitCodes } from './exit-codes.js';

interface AgentArgs {
  config?: string;
  'check-config': boolean;
  collector?: string;
  token?: string;
  name?: string;
  labels: string;
  'state-dir'?: string;
  metrics: string;
}

/** Resolves when SIGTERM or SIGINT arrives. */
export function untilStopSignal(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

function usage(message: string): ConfigError {
  return new ConfigError(message, { code: 'FL_ERR_USAGE' });
}

/** `--labels k=v,k2=v2` with the same rules as the API's. */
export function parseLabelFlag(text: string): Record<string, string> {
  try {
    return parseLabels(text);
  } catch (err) {
    throw usage(`--labels: ${(err as Error).message.replace(/^invalid query: labels: /, '')}`);
  }
}

async function runConfigured(args: AgentArgs, file: string): Promise<void> {
  const config = loadAgentConfig(file);
  if (args['check-config']) {
    const metrics = config.metrics.listen === false ? 'off' : config.metrics.listen;
    process.stdout.write(
      `${file}: valid — agent ${config.agent.name}, ${config.targets.length} targets, metrics ${metrics}\n`,
    );
    return;
  }
  const log = createLogger({ agent: config.agent.name });
  const agent = await Agent.start(config, log);
  const onHup = (): void => {
    try {
      agent.reload(loadAgentConfig(file));
    } catch (err) {
      if (!isFaultlineError(err)) throw err;
      log.error(
        { file, reason: err.message },
        'configuration reload refused; keeping the running configuration',
      );
    }
  };
  process.on('SIGHUP', onHup);
  await untilStopSignal(log);
  process.removeListener('SIGHUP', onHup);
  await agent.stop(defaultStopGraceMs);
}

async function runManaged(args: AgentArgs, url: string): Promise<void> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usage(
      `--collector: expected an http(s) URL such as http://collector:7070 (actual: ${JSON.stringify(url)})`,
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw usage(`--collector: expected an http(s) URL (actual scheme: ${parsed.protocol})`);
  }
  const token = args.token ?? process.env.FAULTLINE_TOKEN;
  if (token === undefined || token === '') {
    throw usage('--token (or FAULTLINE_TOKEN) is required with --collector');
  }
  const name = args.name ?? hostname();
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(name)) {
    throw usage(
      `--name: expected letters, digits and . _ : - (1–128 characters) (actual: ${JSON.stringify(name)})`,
    );
  }
  const stateDir = args['state-dir'];
  if (stateDir === undefined)
    throw usage(
      '--state-dir is required with --collector (the spool and the cached plan live there)',
    );
  const metrics = args.metrics === '' || args.metrics === 'false' ? false : args.metrics;
  if (metrics !== false && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(metrics)) {
    throw usage(
      `--metrics: expected host:port or "" to disable (actual: ${JSON.stringify(metrics)})`,
    );
  }
  const labels = parseLabelFlag(args.labels);
  const log = createLogger({ agent: name });
  const managed = await startManagedAgent({
    url: parsed.href.replace(/\/$/, ''),
    token,
    name,
    labels,
    stateDir,
    metricsListen: metrics,
    log,
  });
  await untilStopSignal(log);
  await managed.stop();
}

/** `faultline agent`: the daemon on every host, from a config file or a collector's plan. */
export function agentCommand(setExit: (code: number) => void): CommandModule<object, AgentArgs> {
  return {
    command: 'agent',
    describe:
      'Probe on schedule and export path health; from --config FILE, or from a collector plan',
    builder: (y) =>
      y
        .option('config', {
          alias: 'c',
          type: 'string',
          describe: 'Agent config (YAML); see deploy/examples/agent.yaml',
        })
        .option('check-config', {
          type: 'boolean',
          default: false,
          describe: 'Validate the config, print a summary and exit (0 valid, 2 invalid)',
        })
        .option('collector', {
          type: 'string',
          describe: 'Collector URL: take the plan from it and report to it',
        })
        .option('token', {
          type: 'string',
          describe: 'Bearer token for the collector (or FAULTLINE_TOKEN)',
        })
        .option('name', { type: 'string', describe: 'Agent name (default: the host name)' })
        .option('labels', {
          type: 'string',
          default: '',
          describe: 'Topology labels of this host: zone=a,switch=sw-1',
        })
        .option('state-dir', {
          type: 'string',
          describe: 'Where the spool and the cached plan live',
        })
        .option('metrics', {
          type: 'string',
          default: '127.0.0.1:9465',
          describe: 'With --collector: where /metrics listens ("" disables)',
        })
        .check((a) => {
          if ((a.config === undefined) === (a.collector === undefined)) {
            throw usage('give either --config FILE or --collector URL (one of them)');
          }
          return true;
        })
        .epilog(
          'Signals: SIGHUP reloads the config file (a broken file is refused and the running config kept); ' +
            'SIGTERM/SIGINT let probes in flight finish, flush telemetry and exit.\n' +
            'OTLP push is on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._METRICS_ENDPOINT) is set.',
        ),
    handler: async (args) => {
      if (args.config !== undefined) await runConfigured(args, args.config);
      else await runManaged(args, args.collector ?? '');
      setExit(exitCodes.ok);
    },
  };
}
