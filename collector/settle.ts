import type { Diagnosis } from '../wire/diagnosis.js';
import type { SettleSignal } from './paths/states.js';
import type { AgentLiveness } from './types.js';

/**
 * Whether a fault is still arriving, for the diagnosis' `settling` flag (issue 14).
 *
 * Agents see one fault up to a probe interval apart, and each confirms its own change with
 * a burst: for a moment the first agents' failures look like a smaller fault (a filter, a
 * blocked path) until the others' arrive. The settler remembers, per host (the target
 * component of a path and the agent's host), when a path there last changed state or class
 * and which confirmation bursts about it are open. A host is *active* within `quietMs` of a
 * change, or while a burst about it is open and not overdue (`burstMaxMs` after its
 * trigger arrived: `of` × spacing + a timeout, at most ~1.5 s), until `roundMs` after its
 * activity began (every agent has probed it once since: agents see a fault up to a probe
 * interval apart, so the first ones alone may read as a blocked path), or while its own agent has
 * not reported since the activity began there and is not yet late: that agent's word (or its
 * lateness, when the host is cut off) tells a cut from a filter that spares it.
 *
 * The diagnosis is settling while a host its hypotheses name (components and group
 * members) is active — an *episode* — bounded: never longer than `settleMaxMs` from the
 * episode's first change. Activity on hosts no hypothesis names does not hold it up, so the
 * background of single lost probes in a large fleet (each one a trigger and a cancelled
 * burst) does not keep the diagnosis settling; a healthy diagnosis never settles.
 *
 * Cost: a map lookup per signal (signals come only with class changes and bursts); per
 * diagnosis, a lookup per host its hypotheses name.
 */

/** Tuning of {@link Settler}; every field has a default. */
export interface SettlerOptions {
  /** A host is active this long after a path of it changed state or class (ms). */
  readonly quietMs: number;
  /** An open burst is overdue this long after its trigger arrived (ms). */
  readonly burstMaxMs: number;
  /** A settling episode lasts at most this long from its first change (ms); 0: never settle. */
  readonly settleMaxMs: number;
  /**
   * A host stays active at least this long after its activity began (ms): until every agent
   * has probed it once since the first one saw the change, and told (the collector passes
   * one probe interval and a probe's timeout). 0: no such floor.
   */
  readonly roundMs: number;
}

export const defaultSettlerOptions: SettlerOptions = Object.freeze({
  quietMs: 400,
  burstMaxMs: 1_500,
  settleMaxMs: 1_000,
  roundMs: 0,
});

/** How long {@link Settler.recoveredAtMs} remembers a host's recovery. */
export const recoveryMemoryMs = 60_000;

/** The settling of one diagnosis. */
export interface SettleVerdict {
  readonly settling: boolean;
  /** While settling: when the episode began. */
  readonly sinceMs?: number;
  /** While settling: when to look again (the episode's activity ends, or its bound). */
  readonly untilMs?: number;
}

interface HostActivity {
  /** Latest change of a path of the host. */
  changedMs: number;
  /** Since when the host has been active without a gap. */
  activeSinceMs: number;
  /** Open bursts about the host. */
  bursts: number;
  /** Latest deadline of those bursts. */
  burstUntilMs: number;
  /** When a burst about it last ended: activity goes on without a gap to then. */
  closedMs: number;
}

interface OpenBurst {
  readonly hosts: readonly string[];
  readonly untilMs: number;
}

/** See the file comment. Not thread-safe; the clock is passed in. */
export class Settler {
  readonly options: SettlerOptions;
  private readonly hosts = new Map<string, HostActivity>();
  private readonly bursts = new Map<string, OpenBurst>();
  /** Per host: when a path of it last came back (failing → ok), kept {@link recoveryMemoryMs}. */
  private readonly recoveries = new Map<string, number>();
  private readonly hostOfAgent: (agent: string) => string;
  private readonly agentDue: (host: string, sinceMs: number) => number;
  private episode: { startMs: number; untilMs: number } | undefined;
  /** The last time a diagnosis was healthy: a fault's episode begins after it. */
  private healthyAtMs = Number.NEGATIVE_INFINITY;
  private lastSweepMs = 0;

  /**
   * `hostOfAgent`: the component an agent runs on (default: the agent's own name).
   * `agentDue`: until when a report of the host's agent is due, when it has not reported
   * since `sinceMs` (the host's activity began) and is not yet late; 0 when none is due.
   */
  constructor(
    options: Partial<SettlerOptions> = {},
    hostOfAgent: (agent: string) => string = (a) => a,
    agentDue: (host: string, sinceMs: number) => number = () => 0,
  ) {
    this.options = Object.freeze({ ...defaultSettlerOptions, ...options });
    this.hostOfAgent = hostOfAgent;
    this.agentDue = agentDue;
  }

  /** Takes a committed batch's signals (collector/paths/states.ts), received at `nowMs`. */
  take(signals: readonly SettleSignal[], nowMs: number): void {
    for (const s of signals) {
      if (s.type === 'close') {
        this.closeBurst(s.key, nowMs);
        continue;
      }
      const hosts = [s.component, this.hostOfAgent(s.agent)];
      if (s.type === 'change') {
        for (const h of hosts) {
          this.host(h, nowMs).changedMs = nowMs;
          if (s.recovered === true) this.recoveries.set(h, nowMs);
        }
      } else {
        this.closeBurst(s.key, nowMs);
        const untilMs = nowMs + this.options.burstMaxMs;
        this.bursts.set(s.key, { hosts, untilMs });
        for (const h of hosts) {
          const a = this.host(h, nowMs);
          a.bursts++;
          if (untilMs > a.burstUntilMs) a.burstUntilMs = untilMs;
        }
      }
    }
    if (nowMs - this.lastSweepMs >= this.options.burstMaxMs) this.sweep(nowMs);
  }

  /** The settling of a diagnosis computed at `nowMs` (a healthy one never settles). */
  verdict(d: Diagnosis, nowMs: number): SettleVerdict {
    if (d.healthy || d.hypotheses.length === 0 || this.options.settleMaxMs <= 0) {
      this.episode = undefined;
      this.healthyAtMs = nowMs;
      return { settling: false };
    }
    let active = false;
    let firstMs = Number.POSITIVE_INFINITY;
    let untilMs = 0;
    const look = (name: string): void => {
      const a = this.hosts.get(name);
      if (a === undefined) return;
      // Activity that began while the diagnosis was still healthy (the background of lost
      // probes, the paths' first states) is not this fault's: it begins after that.
      const startMs = Math.max(a.activeSinceMs, this.healthyAtMs);
      // The host's own agent, silent since the fault began arriving there, is due to say
      // its side (or to be late, which says it too); and a whole round after the first
      // change every agent has probed the host once.
      const end = Math.max(
        this.activeUntil(a),
        this.agentDue(name, a.activeSinceMs),
        a.changedMs >= startMs || a.closedMs >= startMs || a.bursts > 0
          ? startMs + this.options.roundMs
          : 0,
      );
      if (end <= nowMs) return;
      active = true;
      if (startMs < firstMs) firstMs = startMs;
      if (end > untilMs) untilMs = end;
    };
    for (const h of d.hypotheses) {
      for (const c of h.components) look(c);
      for (const g of h.groups) for (const m of g.members) look(m);
    }
    if (!active) {
      this.episode = undefined;
      return { settling: false };
    }
    // One episode while activity goes on without a gap, even as it moves from host to host:
    // the bound counts from its first change, not from each host's.
    const ep = this.episode;
    if (ep === undefined || firstMs > ep.untilMs) this.episode = { startMs: firstMs, untilMs };
    else if (untilMs > ep.untilMs) ep.untilMs = untilMs;
    const startMs = this.episode!.startMs;
    const boundMs = startMs + this.options.settleMaxMs;
    if (nowMs >= boundMs) return { settling: false };
    return { settling: true, sinceMs: startMs, untilMs: Math.min(untilMs, boundMs) };
  }

  /** When the host's current activity began, if it is active at `nowMs`. */
  activeSince(host: string, nowMs: number): number | undefined {
    const a = this.hosts.get(host);
    return a !== undefined && this.activeUntil(a) > nowMs ? a.activeSinceMs : undefined;
  }

  /**
   * When a path of the host last came back from failing (received time), within the last
   * {@link recoveryMemoryMs}: a fault there healing (collector/alerts.ts).
   */
  recoveredAtMs(host: string): number | undefined {
    return this.recoveries.get(host);
  }

  /** Hosts and bursts held (tests, metrics). */
  size(): { readonly hosts: number; readonly bursts: number } {
    return { hosts: this.hosts.size, bursts: this.bursts.size };
  }

  private activeUntil(a: HostActivity): number {
    const quiet = Math.max(a.changedMs + this.options.quietMs, a.closedMs);
    return a.bursts > 0 && a.burstUntilMs > quiet ? a.burstUntilMs : quiet;
  }

  private host(name: string, nowMs: number): HostActivity {
    let a = this.hosts.get(name);
    if (a === undefined) {
      a = {
        changedMs: Number.NEGATIVE_INFINITY,
        activeSinceMs: nowMs,
        bursts: 0,
        burstUntilMs: 0,
        closedMs: Number.NEGATIVE_INFINITY,
      };
      this.hosts.set(name, a);
    } else if (this.activeUntil(a) < nowMs) a.activeSinceMs = nowMs;
    return a;
  }

  /** A burst ended at `nowMs` (confirmed, cancelled, replaced) or was found overdue. */
  private closeBurst(key: string, nowMs: number): void {
    const b = this.bursts.get(key);
    if (b === undefined) return;
    this.bursts.delete(key);
    const endMs = Math.min(nowMs, b.untilMs);
    for (const h of b.hosts) {
      const a = this.hosts.get(h);
      if (a === undefined) continue;
      if (a.bursts > 0) a.bursts--;
      if (endMs > a.closedMs) a.closedMs = endMs;
    }
  }

  /** Forgets overdue bursts (their results were lost) and hosts long quiet. */
  private sweep(nowMs: number): void {
    this.lastSweepMs = nowMs;
    for (const [key, b] of this.bursts) if (b.untilMs <= nowMs) this.closeBurst(key, nowMs);
    for (const [name, a] of this.hosts) {
      if (a.bursts === 0 && this.activeUntil(a) <= nowMs) this.hosts.delete(name);
    }
    for (const [name, atMs] of this.recoveries)
      if (nowMs - atMs > recoveryMemoryMs) this.recoveries.delete(name);
  }
}

/**
 * The Settler's `agentDue` for an inventory: a host where a fault is arriving whose agent has
 * not reported since — its report (or its lateness) is what tells a cut from a filter, and it
 * is due by then: a late-after past its last report (or the collector's start, `upSinceMs`).
 */
export function reportsDue(
  components: readonly { readonly name: string; readonly agent: string }[],
  agentNamed: (name: string) => AgentLiveness | undefined,
  lateAfterMs: () => number,
  upSinceMs: number,
): (host: string, sinceMs: number) => number {
  const agentsOnHost = new Map<string, string[]>();
  for (const c of components) {
    const list = agentsOnHost.get(c.name) ?? [];
    list.push(c.agent);
    agentsOnHost.set(c.name, list);
  }
  return (host, sinceMs) => {
    const lateMs = lateAfterMs();
    let untilMs = 0;
    for (const name of agentsOnHost.get(host) ?? [host]) {
      const a = agentNamed(name);
      if (a === undefined || a.state !== 'live') continue;
      if (a.lastSeenMs >= sinceMs) continue;
      untilMs = Math.max(untilMs, Math.max(a.lastSeenMs, upSinceMs) + lateMs);
    }
    return untilMs;
  };
}
