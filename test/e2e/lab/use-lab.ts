import { afterAll, beforeAll } from 'vitest';
import { cliPath, ensureBuilt } from '../../helpers/cli.js';
import { detectionReport, waitAllHealthy } from '../../../lab/expect.js';
import { Lab } from '../../../lab/lab.js';
import type { LabOptions, LabSpec } from '../../../lab/spec.js';

/**
 * Brings `spec` up before the enclosing describe's tests (the CLI built, all `healthyPaths`
 * paths healthy) and down after them, printing the detection times its tests recorded under
 * `file`. `opts` are the lab's options besides the CLI. Returns the running lab's getter for
 * the tests.
 */
export function useLab(
  spec: LabSpec,
  healthyPaths: number,
  file: string,
  opts: Omit<LabOptions, 'cliPath'> = {},
): () => Lab {
  let lab: Lab | undefined;
  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.up(spec, { cliPath, ...opts });
    await waitAllHealthy(lab, healthyPaths, 40_000);
  }, 90_000);
  afterAll(async () => {
    console.info(`lab detection times (${file}):\n${detectionReport()}`);
    await lab?.down();
  });
  return () => {
    if (lab === undefined) throw new Error('lab not up');
    return lab;
  };
}
