import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { createLogger } from '../agent/logger.js';
import { startManagedAgent, type ManagedAgent } from '../agent/managed.js';
import { Collector } from '../collector/collector.js';
import {
  defaultCollectorConfig,
  loadCollectorConfig,
  type CollectorConfig,
} from '../collector/config.js';
import { ConfigError } from '../lib/errors.js';
import { untilStopSignal } from './agent.js';
import { exitCodes } from './exit-codes.js';

interface CollectorArgs {
  config?: string;
  'check-config': boolean;
  'data-dir': string;
  listen: string;
  'local-agent': boolean;
}

/**
 * The agent token of a collector run on embedded defaults: generated once, kept in the data
 * dir (mode 0600) so a restart keeps working agents, printed only when it is new.
 */
export function embeddedToken(dataDir: string): { token: string; created: boolean; file: string } {
  const file = join(dataDir, 'agent-token');
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length >= 16) return { token, created: false, file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(
        `${file}: cannot read the agent token: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        {
          cause: err,
        },
      );
    }
  }
  const token = randomBytes(24).toString('base64url');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(file, token + '\n', { mode: 0o600 });
  return { token, created: true, file };
}

function summary(config: CollectorConfig): string {
  const live = config.tokens.filter((t) => !t.revoked).length;
  return `listen ${config.listen}, data ${config.dataDir}, ${config.inventory.components.length} components, ${live} active tokens`;
}

/** `faultline collector`: inventory, plans, reports, the path matrix and the API. */
export function collectorCommand(
  setExit: (code: number) => void,
): CommandModule<object, CollectorArgs> {
  return {
    command: 'collector',
    describe:
      'Run the collector: hand agents their plans, ingest their reports, keep the path matrix',
    builder: (y) =>
      y
        .option('config', {
          alias: 'c',
          type: 'string',
          describe:
            'Collector config (YAML); see deploy/examples/collector.yaml. Without it: embedded defaults',
        })
        .option('check-config', {
          type: 'boolean',
          default: false,
          describe: 'Validate the config and exit',
        })
        .option('data-dir', {
          type: 'string',
          default: 'faultline-data',
          describe: 'Embedded defaults only: where the store and the agent token live',
        })
        .option('listen', {
          type: 'string',
          default: '127.0.0.1:7070',
          describe: 'Embedded defaults only: API address',
        })
        .option('local-agent', {
          type: 'boolean',
          default: false,
          describe: 'Also run an agent on this host reporting to this collector',
        }),
    handler: async (args) => {
      let config: CollectorConfig;
      let token: { token: string; created: boolean; file: string } | undefined;
      if (args.config !== undefined) {
        config = loadCollectorConfig(args.config);
      } else {
        const dataDir = resolve(args['data-dir']);
        token = embeddedToken(dataDir);
        config = defaultCollectorConfig({ dataDir, listen: args.listen, token: token.token });
      }
      if (args['check-config']) {
        process.stdout.write(`${args.config ?? 'embedded defaults'}: valid — ${summary(config)}\n`);
        setExit(exitCodes.ok);
        return;
      }
      const log = createLogger({ component: 'collector' });
      const localAgentName =
        hostname()
          .replace(/[^A-Za-z0-9._:-]/g, '-')
          .slice(0, 128) || 'localhost';
      const collector = await Collector.start(
        config,
        log,
        args['local-agent'] ? { localAgent: localAgentName } : {},
      );
      const url = collector.url();
      let local: ManagedAgent | undefined;
      const lines = [
        `Faultline collector on ${url}`,
        `  path matrix: ${url}/api/v1/paths`,
        `  agents:      ${url}/api/v1/agents`,
        `  diagnosis:   ${url}/api/v1/diagnosis  (in the terminal: faultline status)`,
        `  incidents:   ${url}/api/v1/incidents  (faultline incidents)`,
        `  metrics:     ${url}/metrics`,
      ];
      if (token?.created === true) {
        lines.push(`  agent token (shown once; kept in ${token.file}): ${token.token}`);
      } else if (token !== undefined) {
        lines.push(`  agent token: in ${token.file}`);
      }
      if (args['local-agent']) {
        const agentToken = token?.token ?? config.tokens.find((t) => !t.revoked)?.token ?? '';
        local = await startManagedAgent({
          url,
          token: agentToken,
          name: localAgentName,
          labels: {},
          stateDir: join(config.dataDir, 'local-agent'),
          metricsListen: '127.0.0.1:0',
          log: log.child({ component: 'agent' }),
        });
        const metrics = local.agent.metricsUrl();
        if (metrics !== undefined) lines.push(`  local agent metrics: ${metrics}`);
      }
      lines.push(
        `Start an agent elsewhere: faultline agent --collector ${url} --token <token> --name <host> --state-dir /var/lib/faultline-agent`,
      );
      process.stdout.write(lines.join('\n') + '\n');
      await untilStopSignal(log);
      await local?.stop();
      await collector.stop();
      setExit(exitCodes.ok);
    },
  };
}
