import { z } from 'zod';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeDefinition } from './types.js';

// PLACEHOLDER: being written; replaced before the first commit.
export const redisOptions = z.object({}).strict();
export const redis: ProbeDefinition<z.infer<typeof redisOptions>> = {
  kind: 'redis',
  description: 'redis',
  target: { form: 'host' },
  options: redisOptions,
  async run() {
    throw new FaultlineError('FL_ERR_INTERNAL', 'not written yet');
  },
};
