import { execFileSync } from 'node:child_process';

/** TCP connections in TIME_WAIT with `port` at either end, one line of `ss` each. */
function timeWaitLines(port: number): Set<string> {
  return new Set(
    execFileSync('ss', ['-Htn', 'state', 'time-wait', `( dport = :${port} or sport = :${port} )`])
      .toString()
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== ''),
  );
}

/**
 * Runs `body` and returns the TIME_WAIT connections with `port` at either end that appeared
 * while it ran. Connections of another test to an earlier server on the same port can still be
 * in TIME_WAIT (it lasts a minute), so only new ones are the body's.
 */
export async function timeWaitLeftBy(port: number, body: () => Promise<void>): Promise<string[]> {
  const before = timeWaitLines(port);
  await body();
  return [...timeWaitLines(port)].filter((line) => !before.has(line));
}
