import { ConfigError } from '../lib/errors.js';

/** The shells `faultline completion` writes a script for. */
export const completionShells = ['bash', 'zsh'] as const;

/** The completion command and what `--help` says of it. */
export const completionCommand = 'completion';
export const completionDescribe =
  'Print the shell completion script: faultline completion bash >> ~/.bashrc, or zsh >> ~/.zshrc (default: the shell in $SHELL)';

/**
 * For `faultline completion [bash|zsh]`: yargs writes the script of the shell it finds in
 * $SHELL when the parser is made, and takes no argument for it, so a shell named on the
 * command line is put in `env` first. Throws a usage error for a shell it has no script for.
 */
export function chooseCompletionShell(argv: readonly string[], env: NodeJS.ProcessEnv): void {
  if (argv[0] !== completionCommand || argv[1] === undefined || argv[1].startsWith('-')) return;
  const shell = argv[1];
  if (!(completionShells as readonly string[]).includes(shell)) {
    throw new ConfigError(
      `completion: expected one of ${completionShells.join(', ')} (actual: ${JSON.stringify(shell)})`,
      { code: 'FL_ERR_USAGE' },
    );
  }
  env.SHELL = `/bin/${shell}`;
  delete env.ZSH_NAME;
}
