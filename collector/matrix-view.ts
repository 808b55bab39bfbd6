import { failureClasses } from '../wire/result.js';
import type { FailureClass } from '../wire/result.js';
import type { PathHead } from './types.js';
import type { AgentLiveness } from './types.js';

/**
 * The path matrix in the compact shape the dashboard draws (`GET /api/v1/matrix`): agents
 * and targets once each, and one byte per (agent, target) cell — 2,000 agents × 300 targets
 * is 600 kB of cells (800 kB as base64), where `/api/v1/paths` would be some 200 MB of JSON.
 *
 * A cell is 0 where the agent has no such path, else `1 + (state << 5 | class)`, the
 * indexes into {@link matrixStates} and the document's `classes` (wire/result.ts order).
 */

/** Debounced path states, in the order cells code them. */
export const matrixStates = ['ok', 'failing', 'degraded', 'unknown'] as const;
export type MatrixState = (typeof matrixStates)[number];

const stateIndex: Readonly<Record<string, number>> = Object.fromEntries(
  matrixStates.map((s, i) => [s, i]),
);
const classIndex: Readonly<Record<string, number>> = Object.fromEntries(
  failureClasses.map((c, i) => [c, i]),
);

/** The cell code of a state and class (see the file comment). */
export function matrixCell(state: string, cls: string): number {
  // An ok path's last class is ok: a class that lingers after recovery would paint it red.
  const c = state === 'ok' ? 'ok' : cls;
  return 1 + (((stateIndex[state] ?? 3) << 5) | (classIndex[c] ?? 0));
}

/** A cell code back to its state and class; undefined for 0 (no path). */
export function decodeCell(cell: number): { state: MatrixState; cls: FailureClass } | undefined {
  if (cell === 0) return undefined;
  const v = cell - 1;
  return { state: matrixStates[v >> 5] ?? 'unknown', cls: failureClasses[v & 31] ?? 'ok' };
}

/** One row of the matrix. */
export interface MatrixAgent {
  readonly name: string;
  /** Its topology labels (as it reports them, else its host's in the inventory). */
  readonly labels: Readonly<Record<string, string>>;
  readonly state: 'live' | 'silent' | 'unknown';
  readonly late?: boolean;
  /** The inventory host it runs on, when known. */
  readonly host?: string;
}

/** One column of the matrix. */
export interface MatrixTarget {
  /** Plan target name: `<component>/icmp`, `<component>/<service>/<kind>`. */
  readonly name: string;
  readonly component: string;
  readonly service?: string;
  readonly kind: string;
  /** The component's inventory labels. */
  readonly labels: Readonly<Record<string, string>>;
}

/** One host of the inventory, for the topology. */
export interface MatrixHost {
  readonly name: string;
  readonly role: string;
  readonly agent: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** The document of `GET /api/v1/matrix`. */
export interface MatrixDocument {
  /** The inventory's hosts (the topology is drawn from their labels). */
  readonly hosts: readonly MatrixHost[];
  readonly agents: readonly MatrixAgent[];
  readonly targets: readonly MatrixTarget[];
  readonly states: readonly string[];
  readonly classes: readonly string[];
  /** agents.length × targets.length bytes, row by row (an agent per row), base64. */
  readonly cells: string;
  readonly computedAtMs: number;
  /**
   * The live feed's boot id and `EventHub.seq` (collector/events.ts) when this was computed: a page whose
   * stream said `hello` at a seq at most this (same boot) misses no change of it.
   */
  readonly feed?: { readonly bootId: string; readonly seq: number };
}

/** What {@link buildMatrix} reads. */
export interface MatrixInput {
  readonly paths: readonly PathHead[];
  readonly agents: readonly AgentLiveness[];
  /** Inventory components: name, agent, labels. */
  readonly components: readonly {
    readonly name: string;
    readonly agent: string;
    readonly role: string;
    readonly labels: Readonly<Record<string, string>>;
  }[];
  readonly nowMs: number;
}

const byName = (a: { name: string }, b: { name: string }): number =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

/** The compact matrix of the paths (agents and targets sorted by name). */
export function buildMatrix(input: MatrixInput): MatrixDocument {
  const componentLabels = new Map(input.components.map((c) => [c.name, c.labels]));
  const hostOf = new Map(input.components.map((c) => [c.agent, c.name]));
  const agents = new Map<string, MatrixAgent>();
  for (const a of input.agents) {
    const host = hostOf.get(a.agent);
    const labels =
      Object.keys(a.labels).length > 0
        ? a.labels
        : ((host === undefined ? undefined : componentLabels.get(host)) ?? {});
    agents.set(a.agent, {
      name: a.agent,
      labels,
      state: a.state,
      ...(a.late === true ? { late: true } : {}),
      ...(host === undefined ? {} : { host }),
    });
  }
  const targets = new Map<string, MatrixTarget>();
  for (const p of input.paths) {
    if (!agents.has(p.agent)) {
      const host = hostOf.get(p.agent);
      agents.set(p.agent, {
        name: p.agent,
        labels: (host === undefined ? undefined : componentLabels.get(host)) ?? {},
        state: 'unknown',
        ...(host === undefined ? {} : { host }),
      });
    }
    if (!targets.has(p.target)) {
      targets.set(p.target, {
        name: p.target,
        component: p.component,
        ...(p.service === undefined ? {} : { service: p.service }),
        kind: p.kind,
        labels: componentLabels.get(p.component) ?? {},
      });
    }
  }
  const agentList = [...agents.values()].sort(byName);
  const targetList = [...targets.values()].sort(byName);
  const row = new Map(agentList.map((a, i) => [a.name, i]));
  const col = new Map(targetList.map((t, i) => [t.name, i]));
  const cells = Buffer.alloc(agentList.length * targetList.length);
  for (const p of input.paths) {
    cells[row.get(p.agent)! * targetList.length + col.get(p.target)!] = matrixCell(
      p.state,
      p.lastClass,
    );
  }
  return {
    hosts: input.components.map((c) => ({
      name: c.name,
      role: c.role,
      agent: c.agent,
      labels: c.labels,
    })),
    agents: agentList,
    targets: targetList,
    states: matrixStates,
    classes: failureClasses,
    cells: cells.toString('base64'),
    computedAtMs: input.nowMs,
  };
}
