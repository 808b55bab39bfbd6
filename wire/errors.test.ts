import { describe, expect, it } from 'vitest';
import { FaultlineError, errorCodeOf, errorCodes } from '../lib/errors.js';
import { ApiError, apiErrorStatus, notFound, parseApiErrorBody } from './errors.js';

describe("the API's codes and statuses (wire/errors.ts)", () => {
  it('every API code is one of the catalogue, once, with a 4xx or 5xx status', () => {
    const codes = Object.keys(apiErrorStatus);
    expect(codes.filter((c) => !Object.hasOwn(errorCodes, c))).toEqual([]);
    expect(new Set(codes).size).toBe(codes.length);
    for (const status of Object.values(apiErrorStatus)) {
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(600);
    }
  });

  it.each(Object.entries(apiErrorStatus))('%s answers %i', (code, status) => {
    const err = new ApiError(code as keyof typeof apiErrorStatus, 'why');
    expect(err.statusCode).toBe(status);
    expect(err).toBeInstanceOf(FaultlineError);
    expect(errorCodeOf(err)).toBe(code);
  });

  it('the statuses clients rely on stay put', () => {
    expect(apiErrorStatus).toMatchObject({
      FL_ERR_AUTH: 401,
      FL_ERR_TOKEN_REVOKED: 403,
      FL_ERR_FORBIDDEN: 403,
      FL_ERR_ENROL_REQUIRED: 403,
      FL_ERR_NOT_BOOTSTRAP: 403,
      FL_ERR_NOT_FOUND: 404,
      FL_ERR_SEQ_GAP: 409,
      FL_ERR_AGENT_CONFLICT: 409,
      FL_ERR_RATE: 429,
      FL_ERR_INTERNAL: 500,
      FL_ERR_OVERLOADED: 503,
      FL_ERR_STORE: 503,
    });
  });

  it('notFound says what was not found in a field, beside the code', () => {
    const err = notFound('incident', 'no incident 8');
    expect([err.statusCode, err.code, err.message, err.extra]).toEqual([
      404,
      'FL_ERR_NOT_FOUND',
      'no incident 8',
      { what: 'incident' },
    ]);
  });
});

describe('parseApiErrorBody: the error body as a client reads it', () => {
  it.each<[string, string, ReturnType<typeof parseApiErrorBody>]>([
    [
      'a 404 with what',
      '{"error":{"code":"FL_ERR_NOT_FOUND","message":"no such endpoint: \\"/x\\"","what":"endpoint"}}',
      { code: 'FL_ERR_NOT_FOUND', message: 'no such endpoint: "/x"', what: 'endpoint', extra: {} },
    ],
    [
      'an older collector without what',
      '{"error":{"code":"FL_ERR_NOT_FOUND","message":"no incident 9"}}',
      { code: 'FL_ERR_NOT_FOUND', message: 'no incident 9', extra: {} },
    ],
    [
      'extra fields kept',
      '{"error":{"code":"FL_ERR_RATE","message":"slow","retryAfterS":3}}',
      { code: 'FL_ERR_RATE', message: 'slow', extra: { retryAfterS: 3 } },
    ],
    ['not JSON', '<html>404</html>', undefined],
    ['JSON without error', '{"status":"unhealthy"}', undefined],
    ['a code that is not a string', '{"error":{"code":404,"message":"x"}}', undefined],
    ['no message', '{"error":{"code":"FL_ERR_AUTH"}}', undefined],
    ['null', 'null', undefined],
  ])('%s', (_what, text, parsed) => {
    expect(parseApiErrorBody(text)).toEqual(parsed);
  });
});
