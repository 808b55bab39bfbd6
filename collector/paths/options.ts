/**
 * The path matrix's tuning (`PathMatrixOptions`, defaults in `defaultPathMatrixOptions`) and
 * the default reading of a plan target's name (`describePlanTarget`).
 */

/** Tuning of the path matrix; every field has a default (`defaultPathMatrixOptions`). */
export interface PathMatrixOptions {
  /** Consecutive failures that make a path failing, and successes that make it ok again. */
  readonly debounce: number;
  /** Length of the sliding window (ms). */
  readonly windowMs: number;
  /** Slots the window is kept in: its granularity (memory per path grows with it). */
  readonly windowSlots: number;
  /** Time constant of the latency baseline's EWMA (ms). */
  readonly baselineTauMs: number;
  /** Healthy periods averaged before the baseline is trusted. */
  readonly baselineWarmupPeriods: number;
  /** p50 above this multiple of the baseline (and `degradedLatencyMinMs` over it) → degraded. */
  readonly degradedLatencyFactor: number;
  /** Least absolute latency increase (ms) that counts, so sub-millisecond noise does not. */
  readonly degradedLatencyMinMs: number;
  /** Loss ratio (ICMP) or failure ratio in the window at or above which a path is degraded. */
  readonly degradedLossRatio: number;
  /** Probes the window needs before it can call a path degraded. */
  readonly degradedMinProbes: number;
  /**
   * The recent part of the window (ms, whole slots back from the newest): loss or failures
   * of at least `degradedRecentLossRatio` in it make a path degraded before they have
   * diluted the whole window's 30 s of healthy history to `degradedLossRatio`.
   */
  readonly degradedRecentMs: number;
  readonly degradedRecentLossRatio: number;
  /**
   * Loss every network has and nobody should be paged for: a loss verdict also needs the
   * losses to be unlikely (below `degradedLossAlpha`) had each probe been lost with this
   * chance (collector/loss-significance.ts).
   */
  readonly tolerableLossRatio: number;
  readonly degradedLossAlpha: number;
  /**
   * Share of periods slow against the baseline that chance gives on a healthy path (each
   * lost segment of a TCP probe delays it by a retransmission): a latency verdict needs half
   * the periods slow and more than this share would give (below `degradedLossAlpha`).
   */
  readonly tolerableSlowRatio: number;
  /**
   * Flap damping, as routers damp a flapping route: each fall to failing at the network layer
   * (a timeout, an unreachable: what loss reads as) adds 1 to a path's
   * penalty (at most 3), which halves every `flapHalfLifeMs`. A path that falls again while
   * its penalty is at least `flapSuppressAt` (1.5: the third of falls a few seconds apart;
   * a second fall alone, as a heal's aftermath may have, is not flapping) is flapping: it shows as `degraded` with its failure class — loss, which
   * packet_loss localises to the element the flapping paths share — rather than pulling the
   * diagnosis between a cut and health every few seconds. A fall that lasts
   * `flapMaxSuppressMs` is failing all the same: the link that stopped flapping down.
   */
  readonly flapHalfLifeMs: number;
  readonly flapSuppressAt: number;
  /** Falls further apart than this are separate faults, whatever the penalty says. */
  readonly flapStableMs: number;
  readonly flapMaxSuppressMs: number;
  /**
   * A fall that came back within this long was a blip (over before a fault it began could
   * have been confirmed, settled and paged); a second fall within `flapStableMs` of a blip
   * is a path falling again (`fellAgain`, what the localiser reads as loss). A fall after a
   * long outage that healed is a new fault.
   */
  readonly flapBlipMs: number;
  /**
   * Network-layer failures the path came back from without falling (a lost probe, a
   * confirmation burst that came back ok): two within this long show in its view
   * (`blippedAtMs`) until the earlier is this old by the path's newest result. The localiser
   * reads a host most of whose echo partners blipped so as a lossy link
   * (collector/localise/kinds/packet-loss.ts); one lost probe now and then is background loss.
   */
  readonly blipShowMs: number;
  /** Splits a plan target name into component and service (default: `<component>/<kind>[/<service>]`). */
  readonly describeTarget?: (
    target: string,
    kind: string,
  ) => { readonly component: string; readonly service?: string };
}

export const defaultPathMatrixOptions: PathMatrixOptions = Object.freeze({
  debounce: 3,
  windowMs: 30_000,
  windowSlots: 10,
  baselineTauMs: 600_000,
  baselineWarmupPeriods: 5,
  degradedLatencyFactor: 3,
  degradedLatencyMinMs: 20,
  degradedLossRatio: 0.1,
  degradedMinProbes: 5,
  degradedRecentMs: 6_000,
  degradedRecentLossRatio: 0.25,
  tolerableLossRatio: 0.05,
  degradedLossAlpha: 1e-4,
  tolerableSlowRatio: 0.1,
  flapHalfLifeMs: 30_000,
  flapSuppressAt: 1.5,
  flapStableMs: 10_000,
  flapMaxSuppressMs: 5_000,
  flapBlipMs: 3_500,
  blipShowMs: 5_000,
});

/** The default reading of a plan target's name: the plan's own format (collector/target-names.ts). */
export { describePlanTarget } from '../target-names.js';
