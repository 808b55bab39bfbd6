import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The module `faultline agent` runs (cli/agent-daemon's `runAgentDaemon`): the agent's
 * bundle that the build makes beside dist/cli (scripts/bundle-agent.mjs), or these modules
 * where there is none (running from source, a build without it). The bundle is one minified
 * module instead of ~250 (Node keeps ~35 kB per ESM module it loads, and each module's
 * source) and carries only zod's English messages: ~3 MB less RSS for a daemon that runs
 * on every host (the README's agent benchmark, fifth pass).
 */
export function agentDaemonUrl(from: string = import.meta.url): URL {
  const bundle = new URL('../agent-bundle/agent-daemon.js', from);
  return existsSync(fileURLToPath(bundle)) ? bundle : new URL('./agent-daemon.js', from);
}
