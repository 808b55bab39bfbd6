import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeResult } from '../wire/result.js';
import type { ProbeContext, ProbeDefinition, ProbeOutcome, Target } from './types.js';

/** Who runs a probe, and when it must be done. */
export interface RunOptions {
  readonly agent?: string;
  readonly seq?: number;
  readonly timeoutMs: number;
  /** Aborts the probe early (shutdown). */
  readonly signal?: AbortSignal;
  /** See ProbeContext.now. */
  readonly now?: boolean;
  /** See ProbeContext.burst. */
  readonly burst?: ProbeContext['burst'];
}

// A probe gets this long beyond its own timeout before the runner gives up on it: a probe
// that answers its timeout honestly is always faster, so this catches only bugs.
const graceMs = 1000;
const watchdogPeriodMs = 250;

/** Never aborts: the signal of probes run without one. */
const neverAborted = new AbortController().signal;
// Every concurrent probe listens on it; that is no leak.
setMaxListeners(0, neverAborted);

interface Overrun {
  readonly deadline: number;
  readonly fire: () => void;
}

// One watchdog for every probe in flight instead of a timer per probe: at thousands of
// probes per second a timer each is measurable, and this guard only ever fires for bugs.
const inFlight = new Set<Overrun>();
let watchdog: NodeJS.Timeout | undefined;

function sweep(): void {
  const now = performance.now();
  for (const o of inFlight) if (now >= o.deadline) o.fire();
  if (inFlight.size === 0 && watchdog !== undefined) {
    clearInterval(watchdog);
    watchdog = undefined;
  }
}

/**
 * Runs one probe and builds its result record. A probe that throws (a bug) or overruns its
 * timeout never escapes: it becomes an `internal_error` result, so one bad probe cannot
 * take an agent down.
 */
export async function runProbe<O>(
  def: ProbeDefinition<O>,
  target: Target,
  options: O,
  run: RunOptions,
): Promise<ProbeResult> {
  const startedAtMs = Date.now();
  const t0 = performance.now();
  let guard: Overrun | undefined;
  let outcome: ProbeOutcome;
  try {
    const overrun = new Promise<never>((_, rejectRun) => {
      guard = {
        deadline: t0 + run.timeoutMs + graceMs,
        fire: () =>
          rejectRun(
            new FaultlineError(
              'FL_ERR_INTERNAL',
              `probe did not return within its timeout of ${run.timeoutMs} ms`,
            ),
          ),
      };
      inFlight.add(guard);
      if (watchdog === undefined) {
        watchdog = setInterval(sweep, watchdogPeriodMs);
        watchdog.unref();
      }
    });
    outcome = await Promise.race([
      def.run(target, options, {
        timeoutMs: run.timeoutMs,
        signal: run.signal ?? neverAborted,
        ...(run.now === true ? { now: true } : {}),
        ...(run.now === true && run.burst !== undefined ? { burst: run.burst } : {}),
      }),
      overrun,
    ]);
  } catch (err) {
    outcome = {
      class: 'internal_error',
      timings: {},
      error: {
        code: err instanceof FaultlineError ? err.code : 'FL_ERR_INTERNAL',
        message: err instanceof Error ? err.message : String(err),
      },
    };
  } finally {
    if (guard !== undefined) inFlight.delete(guard);
  }
  const totalMs = outcome.timings.totalMs ?? round(performance.now() - t0);
  const result: ProbeResult = {
    agent: run.agent ?? '',
    target: target.name,
    address: target.address,
    kind: def.kind,
    class: outcome.class,
    seq: run.seq ?? 0,
    startedAtMs,
    timings: { ...outcome.timings, totalMs },
  };
  if (outcome.error !== undefined) result.error = outcome.error;
  if (outcome.detail !== undefined) result.detail = outcome.detail;
  return result;
}

/** Milliseconds rounded to microseconds: what a timing is worth on the wire. */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
