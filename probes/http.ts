import { z } from 'zod';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeDefinition } from './types.js';

// PLACEHOLDER: being written; replaced before the first commit.
export const httpOptions = z.object({}).strict();
export const http: ProbeDefinition<z.infer<typeof httpOptions>> = {
  kind: 'http',
  description: 'http',
  target: { form: 'host' },
  options: httpOptions,
  async run() {
    throw new FaultlineError('FL_ERR_INTERNAL', 'not written yet');
  },
};
