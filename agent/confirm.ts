import { tcpRetransmitFloorMs } from '../probes/types.js';
import type { FailureClass, ProbeResult } from '../wire/result.js';

/**
 * Fast confirmation and timeouts that fit the path (issue 14): the pure parts the Agent
 * composes — when a result is a change worth confirming, the per-agent budget of extra
 * probes, and each path's adaptive timeout. No timers or I/O here, so each is unit-tested
 * with a fake clock.
 */

/** Extra (confirmation) probes allowed per agent and second by default. */
export const defaultConfirmRatePerS = 50;
/** How many extra probes the budget holds at most: one second's worth. */
export const defaultConfirmBurstProbes = defaultConfirmRatePerS;

/**
 * A result is a change to confirm when its class differs from the path's previous one: ok
 * → a failure, a failure → ok, one failure class → another. A path's first result is one
 * only when it is a failure (a fleet starting up is no news; a path failing from the start
 * is). `internal_error` says nothing about the target, so it neither starts a burst nor
 * counts as the class a later result changes from (the caller keeps the class before it).
 */
export function isConfirmableChange(
  previous: FailureClass | undefined,
  current: FailureClass,
): boolean {
  if (current === 'internal_error') return false;
  if (previous === undefined) return current !== 'ok';
  return previous !== current;
}

/**
 * The per-agent budget of confirmation probes: a token bucket refilled at `ratePerS` up to
 * `capacity`. A burst takes all its probes at once or none — a partial burst would leave
 * the collector waiting for confirmations that never come — so when a partition fails
 * hundreds of paths at once, the first bursts run and the rest fall back to the
 * collector's round-by-round debounce instead of storming the network.
 */
export class ConfirmBudget {
  private tokens: number;
  private lastMs: number;

  constructor(
    readonly ratePerS: number = defaultConfirmRatePerS,
    readonly capacity: number = defaultConfirmBurstProbes,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = capacity;
    this.lastMs = now();
  }

  /** Takes `n` probes' worth if the budget has them all; false (taking nothing) otherwise. */
  take(n: number): boolean {
    this.refill();
    if (n > this.tokens) return false;
    this.tokens -= n;
    return true;
  }

  /** Probes' worth available now (fractional while refilling). */
  available(): number {
    this.refill();
    return this.tokens;
  }

  private refill(): void {
    const now = this.now();
    const elapsedMs = now - this.lastMs;
    this.lastMs = now;
    if (elapsedMs > 0)
      this.tokens = Math.min(this.capacity, this.tokens + (elapsedMs * this.ratePerS) / 1000);
  }
}

/** The adaptive timeout never goes below this (a LAN path's 0.2 ms RTT would make it ~1 ms). */
export const adaptiveFloorMs = 100;
/**
 * The floor for probes that ride TCP ({@link tcpRetransmitFloorMs}): a postgres probe
 * exchanges about ten segments, and with the 100 ms floor each one lost failed the probe, so
 * 1 % packet loss failed ~10 % of them.
 */
export const adaptiveTcpFloorMs = tcpRetransmitFloorMs;
/** RTO = (srtt + 4·rttvar) × this: headroom for a slow moment of a healthy path. */
export const adaptiveSafetyFactor = 3;
/** Successes needed before the timeout shrinks at all: a baseline, not one lucky sample. */
export const adaptiveMinSamples = 5;
/** A timeout class: the probe waited its whole timeout for an answer that did not come. */
export function isTimeoutClass(cls: FailureClass): boolean {
  return cls.endsWith('_timeout');
}

/**
 * One path's adaptive timeout, the way TCP computes its retransmission timeout (RFC 6298):
 * a smoothed round trip `srtt` and its variation `rttvar` from the path's successful probes
 * (their total time, which is what the timeout bounds), and a timeout of
 * `(srtt + 4·rttvar) × 3`, at least 100 ms and at most the configured timeout. Only
 * successes feed it: a failure's duration says nothing about the path's round trip.
 *
 * A timeout under a shortened timeout may be the path's fault or the shortening's, so the
 * next probes wait the full configured timeout again until two succeed (TCP backs off the
 * same way, doubling; here straight to the ceiling); the first success is not sampled (see
 * `observe`). A slow but healthy path thus never shows two failures in a row for the
 * shortening alone: the round after is probed in full, and every probe of a confirmation
 * burst waits twice the path's own timeout (the Agent's `reprobeTimeoutFor`, as TCP doubles
 * its RTO on a retransmission), so a change is confirmed only when the path answers slower
 * than that — for a LAN path riding TCP, 600 ms — or not at all.
 */
export class AdaptiveTimeout {
  private srttMs = 0;
  private rttvarMs = 0;
  private samples = 0;
  /** A timeout happened under a shortened timeout: full timeouts until the next success. */
  private backedOff = false;
  /** Backed off, and the first success since came: the next one is sampled and ends it. */
  private answeredSince = false;

  /**
   * The timeout for the next probe: the configured one until the path has a baseline;
   * never below `floorMs` (100 ms; {@link adaptiveTcpFloorMs} for probes that ride TCP).
   */
  timeoutMs(configuredMs: number, floorMs = adaptiveFloorMs): number {
    if (this.samples < adaptiveMinSamples || this.backedOff) return configuredMs;
    const rto = (this.srttMs + 4 * this.rttvarMs) * adaptiveSafetyFactor;
    return Math.min(configuredMs, Math.max(floorMs, Math.ceil(rto)));
  }

  /**
   * The path's own timeout, `floorMs` at least, whether or not it is backed off; undefined
   * until the path has a baseline. For probes out of schedule whose timing does not feed
   * back into the schedule (an echo's confirmation).
   */
  estimateMs(floorMs = adaptiveFloorMs): number | undefined {
    if (this.samples < adaptiveMinSamples) return undefined;
    return Math.max(floorMs, Math.ceil((this.srttMs + 4 * this.rttvarMs) * adaptiveSafetyFactor));
  }

  /** Takes a result probed with `usedTimeoutMs` of a path configured with `configuredMs`. */
  observe(
    result: Pick<ProbeResult, 'class' | 'timings'>,
    usedTimeoutMs: number,
    configuredMs: number,
  ): void {
    if (result.class === 'ok') {
      // The first answer after a timeout measures whatever held the path up (a service
      // catching up on the connections queued while it stalled: hundreds of ms where it
      // answers in a few), not its round trip; sampled, it kept the timeout near the ceiling
      // for ~10 s, and the next fault on the path was seen that much later. The backoff ends
      // with the answer after it, which is sampled: a path that did get slower still teaches
      // the estimate its new round trip, one probe later.
      if (this.backedOff && !this.answeredSince) {
        this.answeredSince = true;
        return;
      }
      this.sample(result.timings.totalMs);
      this.backedOff = false;
      this.answeredSince = false;
    } else if (isTimeoutClass(result.class) && usedTimeoutMs < configuredMs) {
      this.backedOff = true;
      this.answeredSince = false;
    }
  }

  /** The estimator's state, for tests and debugging. */
  state(): { srttMs: number; rttvarMs: number; samples: number; backedOff: boolean } {
    return {
      srttMs: this.srttMs,
      rttvarMs: this.rttvarMs,
      samples: this.samples,
      backedOff: this.backedOff,
    };
  }

  private sample(rttMs: number): void {
    if (!(rttMs >= 0) || !Number.isFinite(rttMs)) return;
    if (this.samples === 0) {
      this.srttMs = rttMs;
      this.rttvarMs = rttMs / 2;
    } else {
      this.rttvarMs = 0.75 * this.rttvarMs + 0.25 * Math.abs(this.srttMs - rttMs);
      this.srttMs = 0.875 * this.srttMs + 0.125 * rttMs;
    }
    this.samples++;
  }
}
