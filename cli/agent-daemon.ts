import { agentArgsWithoutYargs, runAgentCommand } from './agent.js';
import { exitCodes } from './exit-codes.js';
import { failureExit } from './failure.js';

/**
 * The agent daemon's start, `faultline agent` in its plain spellings (see
 * agentArgsWithoutYargs): the entry of the agent's bundle (scripts/bundle-agent.mjs), which
 * the CLI runs in place of these modules. Returns the exit code, or undefined when the
 * arguments are for yargs (help, a mistyped flag), which then answers them.
 *
 * The bundle carries its own copy of every class it uses, so its errors are told apart (a
 * usage mistake from an internal error) here, inside it, not by the CLI's copy.
 */
export async function runAgentDaemon(argv: readonly string[]): Promise<number | undefined> {
  let code: number = exitCodes.ok;
  try {
    const args = agentArgsWithoutYargs(argv);
    if (args === undefined) return undefined;
    await runAgentCommand(args, (c) => {
      code = c;
    });
    return code;
  } catch (err) {
    return failureExit(err);
  }
}
