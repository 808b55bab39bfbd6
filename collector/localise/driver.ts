import type { Diagnosis } from '../../wire/diagnosis.js';
import type { PathFilter, PathState } from '../types.js';
import {
  IncrementalLocaliser,
  localise,
  type LocaliseInput,
  type LocaliserOptions,
} from './localise.js';
import { LocaliserThread } from './thread.js';

/** What the driver reads of the path matrix: its paths, and whose paths changed. */
export interface DirtyPathSource {
  paths(filter?: PathFilter): PathState[];
  /** The agents whose paths changed since the last call (`all`: read every path again). */
  takeDirtyAgents(): { readonly all: boolean; readonly agents: readonly string[] };
  /** After a failed localisation: read everything again next time. */
  markAllDirty(): void;
}

/**
 * When and where the collector localises: in a build, in its own thread
 * (collector/localise/thread.ts), so a large matrix never holds up ingest; from TypeScript
 * sources (unit tests), on this one. Either way incrementally: only the paths of agents
 * whose paths changed since the last run are read again (`DirtyPathSource`), and a failed
 * run makes the next one read everything. The diagnosis engine (collector/diagnosis.ts)
 * decides how often it runs.
 */
export class LocaliseDriver {
  private readonly thread: LocaliserThread | undefined;
  private localiser: IncrementalLocaliser;
  /** Whether the thread holds every agent's paths yet. */
  private threadPrimed = false;

  /** `workerUrl`: the thread's compiled worker; undefined localises on this thread. */
  constructor(
    private readonly matrix: DirtyPathSource,
    private readonly options: LocaliserOptions,
    workerUrl: URL | undefined,
  ) {
    this.localiser = new IncrementalLocaliser(options);
    this.thread = workerUrl === undefined ? undefined : new LocaliserThread(options, workerUrl);
    this.thread?.warm();
  }

  /** The build's worker, when there is one (none from TypeScript sources). */
  static builtWorker(): URL | undefined {
    return LocaliserThread.builtWorker();
  }

  /**
   * The localiser on this thread. With the thread, it serves only the computation at
   * start-up: a full one.
   */
  localise(input: LocaliseInput): Diagnosis {
    if (this.thread !== undefined) return localise({ ...input, paths: this.matrix.paths() });
    const dirty = this.matrix.takeDirtyAgents();
    try {
      if (dirty.all) {
        this.localiser = new IncrementalLocaliser(this.options);
        for (const [agent, paths] of this.pathsByAgent())
          this.localiser.replaceAgentPaths(agent, paths);
      } else {
        for (const agent of dirty.agents)
          this.localiser.replaceAgentPaths(agent, this.matrix.paths({ agent }));
      }
      this.localiser.setAgents(input.agents);
      return this.localiser.diagnose(input.nowMs);
    } catch (err) {
      this.matrix.markAllDirty();
      throw err;
    }
  }

  /** The localiser in the thread, or undefined when there is none. */
  asyncLocaliser(): ((input: LocaliseInput) => Promise<Diagnosis>) | undefined {
    const thread = this.thread;
    if (thread === undefined) return undefined;
    return async (input) => {
      const dirty = this.matrix.takeDirtyAgents();
      const all = dirty.all || !this.threadPrimed;
      const changed = all
        ? [...this.pathsByAgent()]
        : dirty.agents.map((a) => [a, this.matrix.paths({ agent: a })] as const);
      try {
        const d = await thread.diagnose({
          all,
          changed,
          agents: input.agents,
          nowMs: input.nowMs,
        });
        this.threadPrimed = true;
        return d;
      } catch (err) {
        this.matrix.markAllDirty();
        throw err;
      }
    };
  }

  /** Ends the thread, if any. */
  async close(): Promise<void> {
    await this.thread?.close();
  }

  /** Every path of the matrix, grouped by agent. */
  private pathsByAgent(): Map<string, PathState[]> {
    const byAgent = new Map<string, PathState[]>();
    for (const p of this.matrix.paths()) {
      const list = byAgent.get(p.agent);
      if (list === undefined) byAgent.set(p.agent, [p]);
      else list.push(p);
    }
    return byAgent;
  }
}
