#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, isFaultlineError } from '../lib/errors.js';
import { exitCodes } from './exit-codes.js';
import { agentCommand } from './agent.js';
import { collectorCommand } from './collector.js';
import { chooseCompletionShell, completionCommand, completionDescribe } from './completion.js';
import { demoCommand } from './demo.js';
import { incidentsCommand } from './incidents.js';
import { probeCommand } from './probe.js';
import { schemaCommand } from './schema.js';
import { statusCommand } from './status.js';

async function main(argv: string[]): Promise<number> {
  let code: number = exitCodes.ok;
  const setCode = (c: number): void => {
    code = c;
  };
  chooseCompletionShell(argv, process.env);
  await yargs(argv)
    .scriptName('faultline')
    .usage(
      '$0 <command> [options]\n\nSynthetic connectivity probes that tell a network partition from a database or service fault.',
    )
    .command(probeCommand(setCode))
    .command(agentCommand(setCode))
    .command(collectorCommand(setCode))
    .command(statusCommand(setCode))
    .command(incidentsCommand(setCode))
    .command(demoCommand(setCode))
    .command(schemaCommand(setCode))
    // Also answers the scripts' --get-yargs-completions.
    .completion(completionCommand, completionDescribe)
    .demandCommand(1, 'Name a command: see the list above.')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // Stop here: yargs would otherwise go on into the handler with the bad arguments.
      if (err !== undefined && err !== null) throw err;
      throw new ConfigError(`${msg}\nRun with --help for usage.`, { code: 'FL_ERR_USAGE' });
    })
    .parseAsync();
  return code;
}

main(hideBin(process.argv)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (isFaultlineError(err)) {
      process.stderr.write(`faultline: ${err.message}\n`);
      process.exit(exitCodes.usage);
    }
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`faultline: internal error: ${text}\n`);
    process.exit(exitCodes.internal);
  },
);
