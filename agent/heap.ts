import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/*
 * V8's heap settings for the agent, a small daemon whose live heap is ~25 MB at 1,000
 * targets but which allocates ~10 MB/s of short-lived garbage (a probe's sockets, timers,
 * results). With V8's defaults the old generation grows to several times what is live
 * before a full collection (RSS 135 → 230 MB in a minute at 1,000 targets, measured); here
 * it is collected at 20 % over what is live, for ~10 % more CPU. The young generation's size
 * can only be set when the process starts, as can V8's helper threads: deploy/ sets
 * `--max-semi-space-size=1 --v8-pool-size=1` in NODE_OPTIONS (RSS ~82 MB instead of ~120 MB
 * at 1,000 targets). See the README's agent benchmark for the figures and the commands.
 */

/** Old-generation growth over the live heap before V8 collects it again, in percent. */
export const agentHeapGrowingPercent = 20;

/** Whether node flags choose the heap growth themselves. */
const growthChosen = (s: string): boolean => /--heap[-_]growing[-_]percent/.test(s);

/**
 * Applies the agent's heap settings to this process, unless its node flags (command line or
 * NODE_OPTIONS) already choose a heap growth. Returns the flag it set, or undefined.
 */
export function tuneAgentHeap(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? '',
): string | undefined {
  if (execArgv.some(growthChosen) || growthChosen(nodeOptions)) return undefined;
  const flag = `--heap-growing-percent=${agentHeapGrowingPercent}`;
  setFlagsFromString(flag);
  return flag;
}

/**
 * When the agent runs full collections of its own after start: V8 sets the old generation's
 * first collection limit from the heap's maximum, not from what the process holds, so a
 * daemon that churns through garbage while it starts (config parsing, a first round of
 * sockets) climbs well past its working set before its first mark-compact — the peak RSS
 * (at 1,000 targets ~105 MB at ~10 s, then ~93 MB for good). A full collection after the
 * start sets the limit from the live heap, and `agentHeapGrowingPercent` applies from there.
 */
export const agentSettleAfterMs: readonly number[] = [1_000, 4_000];

/**
 * V8's full collection, reached without `--expose-gc` on the command line (a context made
 * after the flag is set gets `gc`), or undefined where this Node does not give it.
 */
function fullCollection(): (() => void) | undefined {
  setFlagsFromString('--expose-gc');
  try {
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs a full collection at each of `afterMs` from now (timers that hold nothing up), unless
 * the node flags choose a heap growth (someone tuning V8 by hand) or V8 gives no way to ask for
 * one. Returns how many it planned.
 */
export function settleAgentHeap(
  afterMs: readonly number[] = agentSettleAfterMs,
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? '',
): number {
  if (execArgv.some(growthChosen) || growthChosen(nodeOptions)) return 0;
  const gc = fullCollection();
  if (gc === undefined) return 0;
  for (const ms of afterMs) setTimeout(gc, ms).unref();
  return afterMs.length;
}
