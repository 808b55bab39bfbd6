import { ConfigError, errorCodeOf } from './errors.js';

const hints: Readonly<Record<string, string>> = {
  EADDRINUSE: 'something else already listens there: stop it, or choose another address',
  EADDRNOTAVAIL: 'no interface of this host has that address: use one it has (or 0.0.0.0)',
  EACCES: 'ports below 1024 need privileges: use a port above 1024',
};

/**
 * Turns a failed `listen` into a clear error naming the address and what to do; other
 * errors are returned unchanged. `setting` names where the address came from.
 */
export function listenError(address: string, setting: string, err: unknown): Error {
  const code = errorCodeOf(err);
  if (code === undefined || hints[code] === undefined) {
    return err instanceof Error ? err : new Error(String(err));
  }
  return new ConfigError(`cannot listen on ${address} (${setting}): ${code}: ${hints[code]}`, {
    cause: err,
  });
}
