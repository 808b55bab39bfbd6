import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/errors.js';
import { exitCodes } from './exit-codes.js';
import { failureExit } from './failure.js';

function written(err: unknown): { code: number; text: string } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  const code = failureExit(err, out);
  return { code, text };
}

describe('failureExit', () => {
  it('a Faultline error is bad input: its message alone, exit 2', () => {
    const { code, text } = written(new ConfigError('agent.yaml:3:1: targets: expected a list'));
    expect(code).toBe(exitCodes.usage);
    expect(text).toBe('faultline: agent.yaml:3:1: targets: expected a list\n');
  });

  it('anything else is an internal error, with its stack, exit 70', () => {
    const { code, text } = written(new TypeError('x is undefined'));
    expect(code).toBe(exitCodes.internal);
    expect(text).toMatch(/^faultline: internal error: TypeError: x is undefined\n\s+at /);
    expect(written('a string').text).toBe('faultline: internal error: a string\n');
  });
});
