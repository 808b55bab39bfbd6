import { z } from 'zod';
import { asNumber, isRecord } from '../../lib/config-fields.js';

/** The collector config's `diagnosis:` section: how path states are debounced (collector/paths.ts). */

/** The `diagnosis:` section. */
export const diagnosisSchema = z
  .object({
    debounce: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(3)
      .describe('Consecutive failures before a path counts as failing.'),
    flapDamping: z
      .boolean()
      .default(true)
      .describe(
        'A path whose network failures (timeouts, unreachable) come back for the third time within seconds is flapping: shown as degraded (loss, localised like packet loss) instead of a cut and a heal every few seconds, until a fall lasts 5 s. false: every fall is failing.',
      ),
  })
  .strict()
  .prefault({});

/** How path states are debounced (collector/paths.ts). */
export interface DiagnosisConfig {
  /** Consecutive failures before a path counts as failing. */
  readonly debounce: number;
  /** Paths falling again and again within seconds show as loss (collector/paths.ts). */
  readonly flapDamping: boolean;
}

/** The `diagnosis:` section, resolved. */
export function resolveDiagnosis(raw: unknown): DiagnosisConfig {
  const diagnosis: Record<string, unknown> = isRecord(raw) ? raw : {};
  return {
    debounce: asNumber(diagnosis.debounce) ?? 0,
    flapDamping: diagnosis.flapDamping !== false,
  };
}
