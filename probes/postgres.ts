import { z } from 'zod';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeDefinition } from './types.js';

// PLACEHOLDER: being written; replaced before the first commit.
export const postgresOptions = z.object({}).strict();
export const postgres: ProbeDefinition<z.infer<typeof postgresOptions>> = {
  kind: 'postgres',
  description: 'postgres',
  target: { form: 'host' },
  options: postgresOptions,
  async run() {
    throw new FaultlineError('FL_ERR_INTERNAL', 'not written yet');
  },
};
