import { failureClasses } from '../../wire/result.js';
import type { FailureClass } from '../../wire/result.js';
import type { AgentLiveness, PathState } from '../types.js';
import { classCount, newWindow } from './window.js';
import type { WindowTotals } from './window.js';

/**
 * What the path matrix holds per path (`PathRuntime`) and per agent (`AgentEntry`), and a
 * path's view as the API reads it (`pathView`).
 */

export class PathRuntime {
  agentId: string;
  readonly agent: string;
  readonly target: string;
  readonly component: string;
  readonly service: string | undefined;
  kind: string;
  state: PathState['state'] = 'unknown';
  /** The class the current state was entered with (transition `fromClass`). */
  stateClass: FailureClass = 'ok';
  sinceMs: number;
  /** When the path last became ok from failing/unknown: degradation looks at the window after it. */
  healthySinceMs = 0;
  /** When it last came back from failing (not checkpointed: what a window forgets on it). */
  recoveredAtMs = 0;
  /** While failing: the class the failure began with (it may since have changed class). */
  firstClass: FailureClass = 'ok';
  lastClass: FailureClass = 'ok';
  /** Newest probe seq taken into the sequence (results, or a summary's lastSeq). */
  lastSeq = -1;
  consecutiveFailures = 0;
  consecutiveSuccesses = 0;
  runStartMs = 0;
  /** Consecutive failures of the same class as `lastClass`. */
  classRun = 0;
  classRunStartMs = 0;
  /** Full results taken since the path's last summary: the part of that period already seen. */
  fullSinceSummary = 0;
  lastSeenMs = 0;
  newestSlot = -1;
  baselineMs = Number.NaN;
  baselineSamples = 0;
  /** Open confirmation burst: its `of` (0: none), the trigger's class, re-probes seen (bit i = index i). */
  burstOf = 0;
  burstClass: FailureClass = 'ok';
  burstSeen = 0;
  /** Flap damping: falls to failing, decayed with `flapHalfLifeMs` since `flapAtMs`. */
  flapPenalty = 0;
  flapAtMs = 0;
  /** Whether the view shows the last fall (`fellAtMs`): see {@link fellShownAt}. */
  fellShown = false;
  /** The last fall came back within `flapBlipMs` (set when it came back). */
  lastFallBlip = false;
  /** The last fall came within `flapStableMs` of a blip (`fellAgain` in the view). */
  fellAgain = false;
  /**
   * When a network-layer failure last came back without a fall, and the time before that
   * (0: never); whether the view shows them.
   */
  blipAtMs = 0;
  blipBeforeMs = 0;
  blipShown = false;
  /** The apply that last journaled this path (so it is copied once per batch). */
  journalEpoch = 0;
  readonly win: Float64Array;
  /** Failures by class per slot, allocated only for slots that had failures. */
  winFail: (Uint32Array | undefined)[] | undefined;

  constructor(
    agentId: string,
    agent: string,
    target: string,
    kind: string,
    where: { readonly component: string; readonly service?: string },
    slots: number,
    atMs: number,
  ) {
    this.agentId = agentId;
    this.agent = agent;
    this.target = target;
    this.kind = kind;
    this.component = where.component;
    this.service = where.service;
    this.sinceMs = atMs;
    this.win = newWindow(slots);
  }

  copyFrom(o: PathRuntime): void {
    this.agentId = o.agentId;
    this.kind = o.kind;
    this.state = o.state;
    this.stateClass = o.stateClass;
    this.firstClass = o.firstClass;
    this.sinceMs = o.sinceMs;
    this.healthySinceMs = o.healthySinceMs;
    this.lastClass = o.lastClass;
    this.lastSeq = o.lastSeq;
    this.consecutiveFailures = o.consecutiveFailures;
    this.consecutiveSuccesses = o.consecutiveSuccesses;
    this.runStartMs = o.runStartMs;
    this.classRun = o.classRun;
    this.classRunStartMs = o.classRunStartMs;
    this.fullSinceSummary = o.fullSinceSummary;
    this.lastSeenMs = o.lastSeenMs;
    this.newestSlot = o.newestSlot;
    this.baselineMs = o.baselineMs;
    this.baselineSamples = o.baselineSamples;
    this.burstOf = o.burstOf;
    this.burstClass = o.burstClass;
    this.burstSeen = o.burstSeen;
    this.flapPenalty = o.flapPenalty;
    this.flapAtMs = o.flapAtMs;
    this.fellShown = o.fellShown;
    this.lastFallBlip = o.lastFallBlip;
    this.fellAgain = o.fellAgain;
    this.blipAtMs = o.blipAtMs;
    this.blipBeforeMs = o.blipBeforeMs;
    this.blipShown = o.blipShown;
    this.win.set(o.win);
    if (o.winFail === undefined) this.winFail = undefined;
    else {
      this.winFail ??= new Array<Uint32Array | undefined>(o.winFail.length).fill(undefined);
      for (let k = 0; k < o.winFail.length; k++) {
        const f = o.winFail[k];
        const mine = this.winFail[k];
        if (f === undefined) this.winFail[k] = undefined;
        else if (mine === undefined) this.winFail[k] = f.slice();
        else mine.set(f);
      }
    }
  }
}

export class AgentEntry implements AgentLiveness {
  /** Live, but its report is overdue (see {@link PathMatrix.markLate}). */
  public late = false;
  /** Its last batch came from a backlog: it is replaying what it spooled while cut off. */
  public behind = false;
  /** Batches spooled behind its last batch (its `faultline-backlog`). */
  public spoolBacklog = 0;
  /** From the `user-agent` of its last batch; in memory only. */
  public version: string | undefined;

  constructor(
    readonly agentId: string,
    readonly agent: string,
    public labels: Readonly<Record<string, string>>,
    public state: 'live' | 'silent',
    public lastSeenMs: number,
    public acceptedSeq: number,
    public droppedResults: number,
  ) {}

  snapshot(): AgentLiveness {
    return {
      agentId: this.agentId,
      agent: this.agent,
      labels: this.labels,
      state: this.state,
      ...(this.late ? { late: true } : {}),
      lastSeenMs: this.lastSeenMs,
      acceptedSeq: this.acceptedSeq,
      droppedResults: this.droppedResults,
      spoolBacklog: this.spoolBacklog,
      ...(this.version === undefined ? {} : { version: this.version }),
    };
  }

  /** A copy, for the journal (a rolled-back batch puts it back). */
  copy(): AgentEntry {
    const c = new AgentEntry(
      this.agentId,
      this.agent,
      this.labels,
      this.state,
      this.lastSeenMs,
      this.acceptedSeq,
      this.droppedResults,
    );
    c.late = this.late;
    c.behind = this.behind;
    c.spoolBacklog = this.spoolBacklog;
    c.version = this.version;
    return c;
  }
}

/** A path as the API reads it: its state and the figures `t` of its whole window. */
/**
 * A fall shows in the path's view (`fellAtMs`) until it is `flapStableMs` old by the path's
 * newest result: the localiser reads the pair as unstable until then. Its coming and going
 * change what the view means (paths/states.ts `showFall`), so the diagnosis is recomputed
 * then (it is driven by changes, not by a clock).
 */
export function fellShownAt(p: PathRuntime, flapStableMs: number): boolean {
  return p.flapPenalty > 0 && p.lastSeenMs - p.flapAtMs < flapStableMs;
}

/**
 * Two blips within `blipShowMs` show in the path's view (`blippedAtMs`) until the earlier is
 * `blipShowMs` old by its newest result. One lost probe now and then is background loss.
 */
export function blipShownAt(p: PathRuntime, blipShowMs: number): boolean {
  return p.blipBeforeMs > 0 && p.lastSeenMs - p.blipBeforeMs < blipShowMs;
}

export function pathView(
  p: PathRuntime,
  t: WindowTotals,
  flapStableMs: number,
  blipShowMs = 0,
): PathState {
  const failures: Partial<Record<FailureClass, number>> = {};
  for (let c = 0; c < classCount; c++) {
    const n = t.failures[c]!;
    if (n > 0) failures[failureClasses[c]!] = n;
  }
  const state: {
    -readonly [K in keyof PathState]: PathState[K];
  } = {
    agent: p.agent,
    target: p.target,
    component: p.component,
    kind: p.kind,
    state: p.state,
    lastClass: p.lastClass,
    consecutiveFailures: p.consecutiveFailures,
    consecutiveSuccesses: p.consecutiveSuccesses,
    failureRatio: t.count > 0 ? (t.count - t.ok) / t.count : 0,
    failures,
    probes: t.count,
    sinceMs: p.sinceMs,
    lastSeenMs: p.lastSeenMs,
  };
  if (p.service !== undefined) state.service = p.service;
  // Also while the newest results' class is still under the debounce of a class change.
  if (p.state === 'failing' && p.firstClass !== p.lastClass) state.firstClass = p.firstClass;
  // A recent fall at the network layer, for the localiser's reading of unstable pairs.
  if (fellShownAt(p, flapStableMs)) {
    state.fellAtMs = p.flapAtMs;
    if (p.fellAgain) state.fellAgain = true;
  }
  if (blipShownAt(p, blipShowMs)) state.blippedAtMs = p.blipAtMs;
  if (t.lossW > 0) state.lossRatio = t.lossSum / t.lossW;
  if (t.latW > 0) {
    const p50 = t.p50Sum / t.latW;
    state.latencyMs = {
      baseline: Number.isNaN(p.baselineMs) ? p50 : p.baselineMs,
      p50,
      p99: t.p99Max,
    };
  }
  return state;
}
