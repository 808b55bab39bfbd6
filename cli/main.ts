#!/usr/bin/env node
import { ConfigError } from '../lib/errors.js';
import type { CommandModule } from 'yargs';
import type * as AgentDaemon from './agent-daemon.js';
import { agentDaemonUrl } from './agent-entry.js';
import { exitCodes } from './exit-codes.js';
import { failureExit } from './failure.js';

type SetCode = (code: number) => void;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each command has its own argument type
type Command = CommandModule<object, any>;

/**
 * Every command, in the order `--help` lists them, each loaded only when needed: a process
 * runs one command, and the agent — the daemon on every host — should not carry the
 * collector's web server, store and localiser (~30 MB of RSS) in its memory.
 */
const commands: readonly (readonly [string, (set: SetCode) => Promise<Command>])[] = [
  ['probe', async (set) => (await import('./probe.js')).probeCommand(set)],
  ['agent', async (set) => (await import('./agent.js')).agentCommand(set)],
  ['collector', async (set) => (await import('./collector.js')).collectorCommand(set)],
  ['status', async (set) => (await import('./status.js')).statusCommand(set)],
  ['incidents', async (set) => (await import('./incidents.js')).incidentsCommand(set)],
  ['demo', async (set) => (await import('./demo.js')).demoCommand(set)],
  ['schema', async (set) => (await import('./schema.js')).schemaCommand(set)],
];

/**
 * The commands to load for `argv`: the one it names (its first word, when that is a command),
 * or all of them (top-level help, completion, a mistyped command yargs should suggest for).
 */
function commandsFor(argv: readonly string[]): readonly string[] {
  const all = commands.map(([name]) => name);
  if (argv.some((a) => a.startsWith('--get-yargs-completions'))) return all;
  const first = argv.find((a) => !a.startsWith('-'));
  return first !== undefined && all.includes(first) ? [first] : all;
}

async function main(argv: string[]): Promise<number> {
  let code: number = exitCodes.ok;
  const setCode = (c: number): void => {
    code = c;
  };
  // The agent daemon's start skips yargs (its flags in the plain spellings; see cli/agent.ts)
  // and runs from the agent's bundle (cli/agent-entry.ts).
  if (argv[0] === 'agent') {
    const daemon = (await import(agentDaemonUrl().href)) as typeof AgentDaemon;
    const exit = await daemon.runAgentDaemon(argv);
    if (exit !== undefined) return exit;
  }
  const [{ default: yargs }, { chooseCompletionShell, completionCommand, completionDescribe }] =
    await Promise.all([import('yargs'), import('./completion.js')]);
  chooseCompletionShell(argv, process.env);
  const wanted = new Set(commandsFor(argv));
  const loaded = await Promise.all(
    commands.filter(([name]) => wanted.has(name)).map(([, load]) => load(setCode)),
  );
  let cli = yargs(argv);
  for (const command of loaded) cli = cli.command(command);
  await cli
    .scriptName('faultline')
    .usage(
      '$0 <command> [options]\n\nSynthetic connectivity probes that tell a network partition from a database or service fault.',
    )
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

// As yargs' hideBin for a plain `node main.js …` or the installed `faultline …` script.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => process.exit(failureExit(err)),
);
