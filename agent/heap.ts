import { setFlagsFromString } from 'node:v8';

/*
 * V8's heap settings for the agent, a small daemon whose live heap is ~25 MB at 1,000
 * targets but which allocates ~10 MB/s of short-lived garbage (a probe's sockets, timers,
 * results). With V8's defaults the old generation grows to several times what is live
 * before a full collection (RSS 135 → 230 MB in a minute at 1,000 targets, measured); here
 * it is collected at 20 % over what is live, for ~10 % more CPU. The young generation's size
 * can only be set when the process starts: deploy/ sets `--max-semi-space-size=2` in
 * NODE_OPTIONS (RSS ~95 MB instead of ~120 MB at 1,000 targets). See the README's agent
 * benchmark for the figures and the commands.
 */

/** Old-generation growth over the live heap before V8 collects it again, in percent. */
export const agentHeapGrowingPercent = 20;

/**
 * Applies the agent's heap settings to this process, unless its node flags (command line or
 * NODE_OPTIONS) already choose a heap growth. Returns the flag it set, or undefined.
 */
export function tuneAgentHeap(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? '',
): string | undefined {
  const chosen = (s: string): boolean => /--heap[-_]growing[-_]percent/.test(s);
  if (execArgv.some(chosen) || chosen(nodeOptions)) return undefined;
  const flag = `--heap-growing-percent=${agentHeapGrowingPercent}`;
  setFlagsFromString(flag);
  return flag;
}
