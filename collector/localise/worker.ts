import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { IncrementalLocaliser, type LocaliserOptions } from './localise.js';
import type { ThreadReply, ThreadRequest } from './thread.js';

/**
 * The localiser's own thread (collector/localise/thread.ts starts it): it keeps an
 * `IncrementalLocaliser` and answers each request — the paths of the agents that changed,
 * everyone's liveness, the clock — with the diagnosis, so a localisation that takes a
 * large matrix hundreds of milliseconds never holds up report ingest on the main thread.
 */
if (parentPort === null) throw new Error('collector/localise/worker.js runs as a worker thread');
const port = parentPort;

/**
 * Ingest first: this thread runs at a lower priority (nice 10), so on a busy core the main
 * thread — reports, answers — gets the CPU and localising takes what is left (it is spaced
 * by its own wall time, so it then simply runs less often). Linux only (a thread's id from
 * /proc/thread-self); elsewhere, or if refused, it runs at the process's priority.
 */
function lowerPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, localiserNice);
  } catch {
    // Not Linux, or not allowed: same priority as ingest.
  }
}
const localiserNice = 10;
lowerPriority();
const options = workerData as LocaliserOptions;
let localiser = new IncrementalLocaliser(options);

port.on('message', (req: ThreadRequest) => {
  let reply: ThreadReply;
  try {
    if (req.all) localiser = new IncrementalLocaliser(options);
    for (const [agent, paths] of req.changed) localiser.replaceAgentPaths(agent, paths);
    localiser.setAgents(req.agents);
    reply = { id: req.id, diagnosis: localiser.diagnose(req.nowMs) };
  } catch (err) {
    // Start again from everything next time: the localiser may be half updated.
    localiser = new IncrementalLocaliser(options);
    reply = {
      id: req.id,
      error: err instanceof Error ? (err.stack ?? err.message) : String(err),
    };
  }
  port.postMessage(reply);
});
