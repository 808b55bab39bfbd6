import type { Diagnosis, Hypothesis } from '../wire/diagnosis.js';
import type { Observer } from './localise/types.js';
import { list } from './localise/text.js';

/** Reports cannot reach the collector (collector/nats-ingest.ts, `NatsIngest.inputStall`). */
export interface InputStall {
  /** When they stopped being able to (epoch ms, collector clock). */
  readonly sinceMs: number;
  /** Why, in a sentence's words. */
  readonly reason: string;
}

/**
 * How long reports may be unable to reach the collector before it says it is blind, unless
 * configured (`nats.blindAfter`). A
 * JetStream node lost takes its stream's and consumers' leadership with it: the others
 * elect new leaders within 4–9 s, and the consumer's pull is renewed within 2 s of that.
 * Shorter stalls are that, not a cut, and are waited out with the agents' liveness held.
 */
export const inputBlindAfterMs = 20_000;

/**
 * The diagnosis while reports cannot reach the collector: held as it was (the agents'
 * silence is the transport's, not theirs: collector.ts holds their liveness), and, once the
 * stall has lasted `blindAfterMs`, first of all the collector's own isolation
 * (`network_partition` with `collectorCutOff`: what a collector cut off from its agents
 * says). Whatever else it held stays beside it, so no alert resolves while nothing is seen.
 */
export function withInputStall(
  d: Diagnosis,
  stall: InputStall | undefined,
  observer: Observer,
  hosts: readonly string[],
  nowMs: number,
  blindAfterMs = inputBlindAfterMs,
): Diagnosis {
  if (stall === undefined || nowMs - stall.sinceMs < blindAfterMs) return d;
  return {
    ...d,
    healthy: false,
    hypotheses: [blindHypothesis(stall, observer, hosts, blindAfterMs), ...d.hypotheses],
  };
}

/** The collector's isolation from its reports, as a hypothesis (see {@link withInputStall}). */
export function blindHypothesis(
  stall: InputStall,
  observer: Observer,
  hosts: readonly string[],
  blindAfterMs = inputBlindAfterMs,
): Hypothesis {
  const side = observer.host === undefined ? [] : [observer.host];
  const far = hosts.filter((h) => h !== observer.host).sort();
  const whose = observer.host === undefined ? 'the collector' : `the collector on ${observer.host}`;
  return {
    kind: 'network_partition',
    confidence: 0.9,
    summary: `reports have not reached ${whose} for over ${Math.round(blindAfterMs / 1000)} s — ${stall.reason}; it is blind: nothing can be said about ${far.length === 0 ? 'the network' : list(far)} until they flow again (its NATS node cut off from the cluster's quorum, or the stream without a leader)`,
    components: side,
    groups: [
      { name: 'collector side', members: side },
      { name: 'far side (unseen)', members: far },
    ],
    collectorCutOff: true,
    evidence: { counts: {}, examples: [stall.reason] },
    since: stall.sinceMs,
  };
}

/**
 * The times reports could not reach the collector (input stalls), for its liveness checks:
 * an agent unheard then was not silent, the collector was deaf (`PathMatrix.markLate`,
 * `markSilent`: `deafMs`). Counting the deaf time, rather than starting every agent's
 * clock again when a stall ends, keeps a stall that flickers (a JetStream leader that
 * answers, then not) from holding a cut zone's agents live for ever. Keeps the last
 * {@link maxSpans} stalls, none ended more than an hour ago.
 */
export class DeafSpans {
  static readonly maxSpans = 64;
  private readonly spans: { fromMs: number; toMs: number | undefined }[] = [];

  /** A stall began (at its `sinceMs`). */
  begin(fromMs: number): void {
    const last = this.spans[this.spans.length - 1];
    if (last !== undefined && last.toMs === undefined) return;
    this.spans.push({ fromMs, toMs: undefined });
    if (this.spans.length > DeafSpans.maxSpans) this.spans.shift();
  }

  /** The stall ended. */
  end(toMs: number): void {
    const last = this.spans[this.spans.length - 1];
    if (last !== undefined && last.toMs === undefined) last.toMs = Math.max(last.fromMs, toMs);
    while (this.spans[0]?.toMs !== undefined && toMs - this.spans[0].toMs > 3_600_000)
      this.spans.shift();
  }

  /** How much of [fromMs, nowMs] fell in stalls (the one going on counts up to `nowMs`). */
  deafMs(fromMs: number, nowMs: number): number {
    let sum = 0;
    for (const s of this.spans) {
      const a = Math.max(s.fromMs, fromMs);
      const b = Math.min(s.toMs ?? nowMs, nowMs);
      if (b > a) sum += b - a;
    }
    return sum;
  }
}
