import type { CommandModule } from 'yargs';
import { Agent, defaultStopGraceMs } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { createLogger } from '../agent/logger.js';
import { isFaultlineError } from '../lib/errors.js';
import { exitCodes } from './exit-codes.js';

interface AgentArgs {
  config: string;
  'check-config': boolean;
}

/** `faultline agent --config FILE`: the daemon on every host. */
export function agentCommand(setExit: (code: number) => void): CommandModule<object, AgentArgs> {
  return {
    command: 'agent',
    describe:
      'Probe the targets of a config file on schedule and export path health (Prometheus /metrics, OTLP)',
    builder: (y) =>
      y
        .option('config', {
          alias: 'c',
          type: 'string',
          demandOption: true,
          describe: 'Agent config (YAML); see deploy/examples/agent.yaml',
        })
        .option('check-config', {
          type: 'boolean',
          default: false,
          describe: 'Validate the config, print a summary and exit (0 valid, 2 invalid)',
        })
        .epilog(
          'Signals: SIGHUP reloads the config (a broken file is refused and the running config kept); ' +
            'SIGTERM/SIGINT let probes in flight finish, flush telemetry and exit.\n' +
            'OTLP push is on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._METRICS_ENDPOINT) is set.',
        ),
    handler: async (args) => {
      const config = loadAgentConfig(args.config);
      if (args['check-config']) {
        process.stdout.write(
          `${args.config}: valid — agent ${config.agent.name}, ${config.targets.length} targets, metrics ${
            config.metrics.listen === false ? 'off' : config.metrics.listen
          }\n`,
        );
        return;
      }
      const log = createLogger({ agent: config.agent.name });
      const agent = await Agent.start(config, log);
      const onHup = (): void => {
        try {
          agent.reload(loadAgentConfig(args.config));
        } catch (err) {
          if (!isFaultlineError(err)) throw err;
          log.error(
            { file: args.config, reason: err.message },
            'configuration reload refused; keeping the running configuration',
          );
        }
      };
      process.on('SIGHUP', onHup);
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          log.info({ signal }, 'stopping');
          process.removeListener('SIGTERM', stop);
          process.removeListener('SIGINT', stop);
          resolve();
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      process.removeListener('SIGHUP', onHup);
      await agent.stop(defaultStopGraceMs);
      setExit(exitCodes.ok);
    },
  };
}
