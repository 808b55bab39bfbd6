/** The localiser's inputs and set-up, shared by its parts (localise.ts re-exports them). */

/** One inventory host as localisation needs it. */
export interface LocaliseComponent {
  readonly name: string;
  readonly address: string;
  readonly role: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The agent on this host (default: the component's name). */
  readonly agent?: string;
}

/**
 * Where the collector stands in the network it observes: it is inside it, not above it, and
 * a cut can isolate it (its host, switch or zone) like any other host.
 */
export interface Observer {
  /** The inventory component the collector runs on, when it runs on one. */
  readonly host?: string;
  /** Agents on the collector's own host (their reports never cross the network). */
  readonly agents?: readonly string[];
  /** The collector's topology labels (default: its host's). */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * When this collector started (epoch ms): agents silent since before it are not yet heard
   * again after a restart, no evidence that its side is cut off now.
   */
  readonly upSinceMs?: number;
}

/** How the localiser is set up: the inventory and the collector's place in it. */
export interface LocaliserOptions {
  readonly inventory: readonly LocaliseComponent[];
  /** The collector's own topology labels: says which side of a cut it is on. */
  readonly collectorLabels?: Readonly<Record<string, string>>;
  /** Where the collector stands (host, local agents, labels). */
  readonly observer?: Observer;
  /** Share of reachable hosts an agent must fail to be a source fault (default 0.8). */
  readonly sourceFaultShare?: number;
  /**
   * Hosts that go dark (or agents that fall silent) within this many ms of each other are
   * one event until evidence separates them (default 10 s; the collector passes at least
   * two probe intervals, since agents see a fault up to an interval apart).
   */
  readonly eventWindowMs?: number;
}
