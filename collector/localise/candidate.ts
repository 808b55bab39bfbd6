import type { FaultKind, Hypothesis } from '../../wire/diagnosis.js';
import type { PathState } from '../types.js';
import type { Evidence } from './evidence.js';
import type { Digest } from './text.js';

/**
 * A candidate explanation: one fault that would account for some of the failing paths. Each
 * fault kind's rule (kinds/<kind>.ts) proposes candidates; rank.ts chooses among them.
 */
export interface Candidate {
  readonly hypothesis: Omit<Hypothesis, 'evidence' | 'since'>;
  /**
   * The failing paths it explains, as indices into `Evidence.failing` (a partition explains
   * 100,000 paths: the search marks them in typed arrays, not sets).
   */
  readonly explains: readonly number[];
  /** The same set as a bitset over the failing paths' indices, when the rule built it so. */
  readonly bits?: Uint32Array;
  /** The digest of every path in `explains`, when the rule had it at hand (cheaper merged). */
  readonly digest?: Digest;
  /** Example lines to quote when it explains no path (a silent agent's last report). */
  readonly examples?: readonly string[];
  /** Degraded paths it explains (they are not failing: outside the search's cover). */
  readonly degraded?: readonly PathState[];
  /** Paths it quotes beside them that weigh nothing (a silent agent's host still answering). */
  readonly quotes?: readonly PathState[];
  /** Observations that speak against it: paths that pass where it says they would fail. */
  readonly contradicts?: number;
  /** Agents whose silence it explains (they get no `agent_silent` of their own). */
  readonly silences?: readonly string[];
  /** Kept even when it explains no failing path (the collector's own cut, a silent agent). */
  readonly standalone?: boolean;
  /** When it began, when not the earliest start of the paths it explains (epoch ms). */
  readonly sinceMs?: number;
  /** Between readings of the same evidence, the higher wins (default 0). */
  readonly prior?: number;
  /** Ranked first whatever its weight: it qualifies every other hypothesis. */
  readonly first?: boolean;
}

/**
 * One fault kind's evidence rule: a new kind is a new file under kinds/ and a line in
 * rules.ts, as a probe is.
 *
 * - `structural` rules explain failures across the network (cuts, partitions, a host's or
 *   an element's fault, a source's own fault): they read every failing path and their
 *   candidates are weighed against each other by the search in rank.ts;
 * - `residual` rules (services, filters, names, loss, silence) read, in registry order, the
 *   failing paths that the chosen explanations and the rules before them left.
 */
export interface Rule {
  readonly name: string;
  readonly kinds: readonly FaultKind[];
  readonly tier: 'structural' | 'residual';
  propose(
    ev: Evidence,
    /** Indices into `ev.failing` of what is left unexplained (structural rules: all). */
    remaining: readonly number[],
    chosen: readonly Candidate[],
  ): readonly Candidate[];
}
