import { z } from 'zod';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeDefinition } from './types.js';

// PLACEHOLDER: being written; replaced before the first commit.
export const mysqlOptions = z.object({}).strict();
export const mysql: ProbeDefinition<z.infer<typeof mysqlOptions>> = {
  kind: 'mysql',
  description: 'mysql',
  target: { form: 'host' },
  options: mysqlOptions,
  async run() {
    throw new FaultlineError('FL_ERR_INTERNAL', 'not written yet');
  },
};
