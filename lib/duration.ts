/**
 * Durations as people write them in flags and YAML: a number of milliseconds, or a number
 * with a unit (`250ms`, `1.5s`, `2m`, `1h`). Returns milliseconds, or undefined when the
 * text is not a duration.
 */
const units: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (m === null) return undefined;
  const n = Number(m[1]);
  const unit = units[m[2] ?? 'ms'] ?? 1;
  return n * unit;
}

/**
 * Waits `ms`, or less when `signal` aborts: resolves either way (never rejects), so a loop
 * that sleeps between retries simply sees its stop flag afterwards.
 */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
