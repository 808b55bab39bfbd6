import type { CommandModule } from 'yargs';
import { agentJsonSchema } from '../agent/config.js';
import { collectorJsonSchema } from '../collector/config.js';
import { exitCodes } from './exit-codes.js';

/** The config files `faultline schema` describes, and where each one's schema comes from. */
export const schemaParts = {
  agent: agentJsonSchema,
  collector: collectorJsonSchema,
} as const;

type Part = keyof typeof schemaParts;

/** The name a config file's schema takes beside it, which the example configs point at. */
export const schemaFileName = (part: Part): string => `${part}.schema.json`;

/**
 * `faultline schema agent|collector`: the JSON Schema of that config file, as this version of
 * the CLI reads it. Written beside the config, it keeps the example configs' editor
 * reference (`# yaml-language-server: $schema=agent.schema.json`) working wherever the
 * file is copied, /etc/faultline included, and matching the installed version.
 */
export function schemaCommand(
  setExit: (code: number) => void,
): CommandModule<object, { part: Part }> {
  return {
    command: 'schema <part>',
    describe: 'Print the JSON Schema of agent.yaml or collector.yaml, for editors',
    builder: (y) =>
      y
        .positional('part', {
          choices: Object.keys(schemaParts) as Part[],
          describe: 'Which config file',
          demandOption: true,
        })
        .example(
          '$0 schema agent > /etc/faultline/agent.schema.json',
          'Beside agent.yaml, where its "# yaml-language-server: $schema=agent.schema.json" line finds it',
        ),
    handler: (args) => {
      process.stdout.write(`${JSON.stringify(schemaParts[args.part](), null, 2)}\n`);
      setExit(exitCodes.ok);
    },
  };
}
