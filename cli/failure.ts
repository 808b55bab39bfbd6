import { isFaultlineError } from '../lib/errors.js';
import { exitCodes } from './exit-codes.js';

/**
 * How a command that threw ends: a Faultline error (bad input, a usage mistake) as its
 * message and exit code 2; anything else as an internal error with its stack and 70. Written
 * to standard error; returns the exit code.
 */
export function failureExit(err: unknown, stderr: NodeJS.WritableStream = process.stderr): number {
  if (isFaultlineError(err)) {
    stderr.write(`faultline: ${err.message}\n`);
    return exitCodes.usage;
  }
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  stderr.write(`faultline: internal error: ${text}\n`);
  return exitCodes.internal;
}
