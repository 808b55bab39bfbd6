import { z } from 'zod';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeDefinition } from './types.js';

// PLACEHOLDER: being written; replaced before the first commit.
export const dnsOptions = z.object({}).strict();
export const dns: ProbeDefinition<z.infer<typeof dnsOptions>> = {
  kind: 'dns',
  description: 'dns',
  target: { form: 'host' },
  options: dnsOptions,
  async run() {
    throw new FaultlineError('FL_ERR_INTERNAL', 'not written yet');
  },
};
