import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../wire/errors.js';
import {
  ConfigError,
  FaultlineError,
  errorCodeOf,
  errorCodes,
  isErrorCode,
  isFaultlineError,
} from './errors.js';

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('errorCodeOf: the code of every kind of error, never its message', () => {
  it.each<[string, () => unknown, string | undefined]>([
    ['a FaultlineError', () => new FaultlineError('FL_ERR_ENGINE', 'no fping'), 'FL_ERR_ENGINE'],
    ['a ConfigError', () => new ConfigError('x: expected a number'), 'FL_ERR_CONFIG'],
    [
      'a ConfigError with its own code',
      () => new ConfigError('--x', { code: 'FL_ERR_USAGE' }),
      'FL_ERR_USAGE',
    ],
    ['an ApiError', () => new ApiError('FL_ERR_RATE', 'slow down'), 'FL_ERR_RATE'],
    [
      'a Node errno error',
      () => {
        try {
          readFileSync('/nonexistent/faultline-errors-test');
        } catch (err) {
          return err;
        }
        throw new Error('read an absent file');
      },
      'ENOENT',
    ],
    ['a plain Error', () => new Error('ECONNREFUSED in words only'), undefined],
    ['an empty code', () => Object.assign(new Error('x'), { code: '' }), undefined],
    ['a numeric code', () => Object.assign(new Error('x'), { code: 42 }), undefined],
    ['a string thrown', () => 'EPIPE', undefined],
    ['null', () => null, undefined],
    ['undefined', () => undefined, undefined],
  ])('%s', (_what, make, code) => {
    expect(errorCodeOf(make())).toBe(code);
  });

  it("fetch's TypeError: the socket's code from its cause", async () => {
    const port = await closedPort();
    const err: unknown = await fetch(`http://127.0.0.1:${port}/`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TypeError);
    expect((err as { code?: unknown }).code).toBeUndefined();
    expect(errorCodeOf(err)).toBe('ECONNREFUSED');
  });

  it('a Fastify error: its FST_ code', async () => {
    const app = Fastify();
    app.post('/', () => 'ok');
    let seen: unknown;
    app.setErrorHandler((err, _req, reply) => {
      seen = err;
      void reply.code(415).send();
    });
    await app.inject({
      method: 'POST',
      url: '/',
      headers: { 'content-type': 'text/x-nope' },
      payload: 'x',
    });
    await app.close();
    expect(errorCodeOf(seen)).toBe('FST_ERR_CTP_INVALID_MEDIA_TYPE');
  });

  it('the first code outside in; innermost: the deepest (a socket error wins over its wrapper)', () => {
    const socket = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const timer = Object.assign(new Error('timed out', { cause: socket }), {
      code: 'UND_ERR_SOCKET',
    });
    const wrapped = new FaultlineError('FL_ERR_INTERNAL', 'probe crashed', { cause: timer });
    expect(errorCodeOf(wrapped)).toBe('FL_ERR_INTERNAL');
    expect(errorCodeOf(timer)).toBe('UND_ERR_SOCKET');
    expect(errorCodeOf(wrapped, { innermost: true })).toBe('ECONNRESET');
    expect(errorCodeOf(new Error('outer', { cause: timer }))).toBe('UND_ERR_SOCKET');
  });

  it('stops after five links (a cause cycle cannot hang it)', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(errorCodeOf(a)).toBeUndefined();
    let deep: unknown = Object.assign(new Error('root'), { code: 'EIO' });
    for (let i = 0; i < 5; i++) deep = new Error(`wrap ${i}`, { cause: deep });
    expect(errorCodeOf(deep)).toBeUndefined();
  });
});

describe('the catalogue', () => {
  it('every code is FL_ERR_* and says what it means, each meaning its own', () => {
    const entries = Object.entries(errorCodes);
    for (const [code, meaning] of entries) {
      expect(code).toMatch(/^FL_ERR_[A-Z_]+$/);
      expect(meaning.length).toBeGreaterThan(5);
    }
    expect(new Set(entries.map(([, m]) => m)).size).toBe(entries.length);
  });

  it('isErrorCode knows the catalogue and nothing else', () => {
    expect(isErrorCode('FL_ERR_NOT_FOUND')).toBe(true);
    expect(isErrorCode('FL_ERR_NOPE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode(undefined)).toBe(false);
  });

  it('subclasses stay FaultlineErrors with their cause and structured reason', () => {
    const cause = new Error('inner');
    const err = new ApiError(
      'FL_ERR_BAD_REQUEST',
      'invalid query: labels: bad',
      {},
      {},
      {
        cause,
        reason: { field: 'labels', why: 'bad' },
      },
    );
    expect(isFaultlineError(err)).toBe(true);
    expect(err.cause).toBe(cause);
    expect(err.reason).toEqual({ field: 'labels', why: 'bad' });
    expect(err.statusCode).toBe(400);
    expect('cause' in new ConfigError('x')).toBe(false);
  });
});
