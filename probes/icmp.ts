import { z } from 'zod';
import { FaultlineError } from '../lib/errors.js';
import type { ProbeDefinition } from './types.js';

// PLACEHOLDER: being written; replaced before the first commit.
export const icmpOptions = z.object({}).strict();
export const icmp: ProbeDefinition<z.infer<typeof icmpOptions>> = {
  kind: 'icmp',
  description: 'icmp',
  target: { form: 'host' },
  options: icmpOptions,
  async run() {
    throw new FaultlineError('FL_ERR_INTERNAL', 'not written yet');
  },
};
