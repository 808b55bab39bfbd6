import type { Plan } from '../wire/plan.js';

/**
 * The plan an agent with several collectors follows: the newest any of them serves — the
 * latest `generatedAtMs` (a collector keeps that stamp while its plan's content is
 * unchanged, so a restart does not make an old plan new), ties broken by version so every
 * agent picks the same one. A collector that is down keeps its last plan in the race: the
 * agent never goes back to an older plan because the newer one's collector went quiet.
 */
export function newestPlan(plans: readonly (Plan | undefined)[]): Plan | undefined {
  let best: Plan | undefined;
  for (const p of plans) {
    if (p === undefined) continue;
    if (
      best === undefined ||
      p.generatedAtMs > best.generatedAtMs ||
      (p.generatedAtMs === best.generatedAtMs && p.version > best.version)
    )
      best = p;
  }
  return best;
}
