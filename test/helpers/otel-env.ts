import { afterEach, beforeEach } from 'vitest';

/**
 * Clears every OTEL_* variable before each test of the calling file and restores them after:
 * the host's environment must not turn push on, nor a test's settings leak into the next.
 */
export function isolateOtelEnv(): void {
  let saved: [string, string | undefined][] = [];
  beforeEach(() => {
    saved = Object.keys(process.env)
      .filter((k) => k.startsWith('OTEL_'))
      .map((k) => [k, process.env[k]]);
    for (const [k] of saved) delete process.env[k];
  });
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];
    for (const [k, v] of saved) if (v !== undefined) process.env[k] = v;
  });
}
