import type { PathState } from '../collector/types.js';
import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import { pollUntil } from './poll-until.js';
import type { Fault } from './faults.js';
import type { Lab } from './lab.js';

/**
 * What lab tests wait for: the path matrix and the diagnosis of a lab's collector, polled
 * with deadlines, and a detection clock from the injection to the first matching diagnosis.
 */

/** A path that is fine: not failing, last probe ok (degraded counts: a loaded box spikes). */
export const pathHealthy = (p: PathState): boolean =>
  (p.state === 'ok' || p.state === 'degraded') && p.lastClass === 'ok';

export async function labPaths(lab: Lab, query = ''): Promise<PathState[]> {
  return (await lab.get<{ paths: PathState[] }>(`/api/v1/paths${query}`)).paths;
}

export async function labDiagnosis(lab: Lab): Promise<Diagnosis> {
  return lab.get<Diagnosis>('/api/v1/diagnosis');
}

/** Whether the collector serves GET /api/v1/diagnosis (it is being added in parallel). */
export async function hasDiagnosis(lab: Lab): Promise<boolean> {
  const res = await lab.fetchApi('/api/v1/diagnosis');
  return res.status === 200;
}

/**
 * Waits until every agent is live and every planned path of the lab is healthy
 * (`expectedPaths` of them at least), and returns them.
 */
export async function waitAllHealthy(
  lab: Lab,
  expectedPaths: number,
  timeoutMs = 30_000,
): Promise<PathState[]> {
  return pollUntil(
    'every lab path healthy',
    async () => {
      const paths = await labPaths(lab);
      const bad = paths.filter((p) => !pathHealthy(p));
      if (paths.length >= expectedPaths && bad.length === 0) return paths;
      const silent = lab.hosts
        .filter((h) => h.spec.agent !== false && !paths.some((p) => p.agent === h.name))
        .map((h) => {
          const a = lab.agent(h.name);
          return `${h.name} (${a.running ? 'running' : 'exited'}: ${a.log().slice(0, 600)})`;
        });
      throw new Error(
        `${paths.length}/${expectedPaths} paths; agents without paths: ${silent.join(', ') || 'none'}; not healthy: ` +
          bad
            .slice(0, 5)
            .map((p) => `${p.agent} → ${p.target}: ${p.state}/${p.lastClass}`)
            .join('; '),
      );
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/** Expected top hypothesis; fields left out are not checked. */
export interface ExpectedHypothesis {
  readonly kind: Hypothesis['kind'];
  /** Exactly these components (sorted compare). */
  readonly components?: readonly string[];
  /** Exactly these groups' members (order of groups ignored). */
  readonly groups?: ReadonlyArray<readonly string[]>;
  /** True: the hypothesis says the collector's own side is cut off; false: it does not. */
  readonly collectorCutOff?: boolean;
  /** The summary starts so (case as written). */
  readonly summaryStartsWith?: string;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

/** Whether `h` matches what is expected. */
export function matches(h: Hypothesis | undefined, want: ExpectedHypothesis): boolean {
  if (h === undefined || h.kind !== want.kind) return false;
  if (want.components !== undefined && !sameSet(h.components, want.components)) return false;
  if (want.groups !== undefined) {
    const got = h.groups.map((g) => [...g.members].sort().join(',')).sort();
    const exp = want.groups.map((g) => [...g].sort().join(',')).sort();
    if (got.join('|') !== exp.join('|')) return false;
  }
  if (want.collectorCutOff !== undefined && (h.collectorCutOff === true) !== want.collectorCutOff) {
    return false;
  }
  if (want.summaryStartsWith !== undefined && !h.summary.startsWith(want.summaryStartsWith)) {
    return false;
  }
  return true;
}

/** A path in one line, with its window's numbers: for failure messages. */
export const describePathState = (p: PathState): string =>
  `${p.agent} → ${p.target}: ${p.state}/${p.lastClass} loss=${p.lossRatio ?? '-'} fail=${p.failureRatio} ` +
  `p50=${p.latencyMs?.p50 ?? '-'} base=${p.latencyMs?.baseline ?? '-'} since=${Date.now() - p.sinceMs}ms ago`;

/** The top three hypotheses in one line each: for failure messages. */
export const diagnosisLine = (d: Diagnosis | undefined): string =>
  d === undefined
    ? 'no diagnosis'
    : d.healthy
      ? 'healthy'
      : d.hypotheses
          .slice(0, 3)
          .map((h) => `${h.kind} [${h.components.join(', ')}] ${h.summary}`)
          .join(' | ');

/** One detection: how long from the injection to the expected diagnosis on top. */
export interface Detection {
  readonly fault: string;
  readonly detectionMs: number;
  readonly diagnosis: Diagnosis;
}

/** Detection times of the lab tests, printed at the end of each file. */
export const detections: Detection[] = [];

/**
 * Injects `fault`, polls the diagnosis until `want` is the top hypothesis (every 100 ms),
 * records the detection time and returns the diagnosis. The fault stays in place. `observe`
 * sees every diagnosis polled on the way (it may throw: an invariant broken before the
 * detection fails the test at once).
 */
export async function injectAndDetect(
  lab: Lab,
  fault: Fault,
  want: ExpectedHypothesis,
  timeoutMs = 20_000,
  observe?: (d: Diagnosis) => void,
): Promise<Detection> {
  const startMs = Date.now();
  await fault.inject();
  let last: Diagnosis | undefined;
  let broken: Error | undefined;
  const diagnosis = await pollUntil(
    `${fault.name}: ${want.kind} on top`,
    async () => {
      last = await labDiagnosis(lab);
      try {
        observe?.(last);
      } catch (err) {
        // Stops the polling (which would take a throw for "not yet"), to fail below.
        broken = err instanceof Error ? err : new Error(String(err));
        return last;
      }
      if (matches(last.hypotheses[0], want)) return last;
      throw new Error(diagnosisLine(last));
    },
    { timeoutMs, intervalMs: 100 },
  );
  if (broken !== undefined) throw broken;
  const detection = { fault: fault.name, detectionMs: Date.now() - startMs, diagnosis };
  detections.push(detection);
  return detection;
}

/**
 * Polls until the diagnosis has said healthy for `stableMs` in a row (a moment of healthy
 * between a recovery and a verdict on its aftermath does not count).
 */
export async function waitDiagnosisHealthy(
  lab: Lab,
  timeoutMs = 45_000,
  stableMs = 3000,
): Promise<Diagnosis> {
  let healthySinceMs: number | undefined;
  return pollUntil(
    `the diagnosis healthy for ${stableMs} ms in a row`,
    async () => {
      const d = await labDiagnosis(lab);
      if (!d.healthy) {
        healthySinceMs = undefined;
        const odd = (await labPaths(lab)).filter((p) => p.state !== 'ok').map(describePathState);
        throw new Error(`${diagnosisLine(d)}; paths not ok: ${odd.slice(0, 6).join('; ')}`);
      }
      healthySinceMs ??= Date.now();
      return Date.now() - healthySinceMs >= stableMs ? d : undefined;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

/**
 * Samples the diagnosis for `forMs` and throws at the first sample that is not healthy:
 * "stays healthy for a while" (a bounded observation, not a wait for a condition).
 */
export async function expectStaysHealthy(lab: Lab, forMs: number): Promise<number> {
  const endMs = Date.now() + forMs;
  let samples = 0;
  for (let i = 0; i < 1000 && Date.now() < endMs; i++) {
    const d = await labDiagnosis(lab);
    if (!d.healthy) {
      const odd = (await labPaths(lab)).filter((p) => p.state !== 'ok').map(describePathState);
      throw new Error(
        `diagnosis not healthy while nothing was wrong: ${diagnosisLine(d)}; paths not ok: ${odd.join('; ')}`,
      );
    }
    samples++;
    await new Promise((r) => setTimeout(r, 250));
  }
  return samples;
}

/**
 * Reads the diagnosis every 200 ms for `forMs` and hands each to `check` (which throws to
 * fail): "stays so for a while", a bounded observation. Returns how many were read.
 */
export async function watchDiagnosis(
  lab: Lab,
  forMs: number,
  check: (d: Diagnosis) => void,
): Promise<number> {
  const endMs = Date.now() + forMs;
  let samples = 0;
  for (let i = 0; i < 10_000 && Date.now() < endMs; i++) {
    check(await labDiagnosis(lab));
    samples++;
    await new Promise((r) => setTimeout(r, 200));
  }
  return samples;
}

/** Options of {@link faultCycle}. */
export interface FaultCycleOptions {
  /** How long the diagnosis must stay healthy before the injection (default 3 s). */
  readonly healthyForMs?: number;
  /** Deadline for the detection (default 20 s). */
  readonly detectTimeoutMs?: number;
  /** Deadline for the return to (stable) healthy after the heal (default 45 s). */
  readonly recoverTimeoutMs?: number;
  /** Runs with the fault still in place, after the detection (extra checks). */
  readonly whileInjected?: (detection: Detection) => Promise<void>;
  /**
   * Sees every diagnosis polled from the injection to the detection (see injectAndDetect);
   * throw to fail. For the time after it, read the diagnosis in `whileInjected`
   * ({@link watchDiagnosis}).
   */
  readonly observe?: (d: Diagnosis) => void;
}

/**
 * One lab scenario: healthy for a while, inject, wait for `want` on top (timed), run the
 * extra checks, heal (also when something failed), and wait until healthy again.
 */
export async function faultCycle(
  lab: Lab,
  fault: Fault,
  want: ExpectedHypothesis,
  opts: FaultCycleOptions = {},
): Promise<Detection> {
  await waitDiagnosisHealthy(lab, opts.recoverTimeoutMs ?? 45_000, 1000);
  await expectStaysHealthy(lab, opts.healthyForMs ?? 3000);
  let detection: Detection;
  try {
    detection = await injectAndDetect(
      lab,
      fault,
      want,
      opts.detectTimeoutMs ?? 20_000,
      opts.observe,
    );
    await opts.whileInjected?.(detection);
  } finally {
    await fault.heal();
  }
  await waitDiagnosisHealthy(lab, opts.recoverTimeoutMs ?? 45_000);
  return detection;
}

/** The detection times so far, one line each, for the end of a lab test file. */
export function detectionReport(): string {
  return detections
    .map(
      (d) =>
        `  ${d.fault.padEnd(44)} ${String(d.detectionMs).padStart(6)} ms  → ${d.diagnosis.hypotheses[0]?.kind}`,
    )
    .join('\n');
}
