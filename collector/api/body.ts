import { Transform } from 'node:stream';
import type { Readable, TransformCallback } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';
import type { FastifyBodyParser, FastifyRequest } from 'fastify';
import { errorCodeOf } from '../../lib/errors.js';
import { ApiError } from '../../wire/errors.js';
import type { ReportBody } from '../types.js';
import { jsonDepthExceeds, locateJsonError, maxJsonDepth } from './json.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** A report's body as received (POST /api/v1/reports): what the store keeps. */
    reportBody: ReportBody | null;
  }
}

/**
 * How the API reads a request body: only reports and enrolments have one. A report comes as
 * JSON, gzip'd or not: a gzip body of known length is inflated in one call, one of unknown
 * length as it streams, both stopping at the size limit (a gzip bomb costs about the limit);
 * its nesting is checked before parsing and a parse error names its line and column.
 */

/** The FL_ERR_TOO_LARGE answer to a report body past `maxBytes`. */
export function tooLarge(maxBytes: number): ApiError {
  return new ApiError(
    'FL_ERR_TOO_LARGE',
    `the report body exceeds ${maxBytes} bytes (the limit applies after decompression too): send smaller batches`,
  );
}

/** The FL_ERR_BAD_ENCODING answer to a body zlib could not inflate. */
function badGzip(err: NodeJS.ErrnoException): ApiError {
  return new ApiError(
    'FL_ERR_BAD_ENCODING',
    `the body is not valid gzip (${err.code ?? 'error'}: ${err.message})`,
    {},
    {},
    { cause: err },
  );
}

/**
 * Inflates a gzip body read whole, failing with 413 as soon as the output passes
 * `maxBytes` (zlib stops there), or 400 when it is not gzip. One call into zlib: for the
 * few kilobytes of a report batch, streaming through three transforms and libuv's thread
 * pool cost more than the inflating itself.
 */
export function inflateWhole(body: Buffer, maxBytes: number): Buffer {
  try {
    return gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if (errorCodeOf(err) === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(maxBytes);
    throw badGzip(err as NodeJS.ErrnoException);
  }
}

/**
 * Whether a gzip body is read whole and inflated in one call (then kept compressed for the
 * store): when its length is known, as agents send it. One of unknown length is inflated as
 * it streams, so a gzip bomb stops being read at the limit.
 */
export function inflatesWhole(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return (
    contentCoding(request.headers['content-encoding']) === 'gzip' &&
    length !== undefined &&
    length !== ''
  );
}

/** A stream with the compressed byte count fastify checks against content-length. */
type CountedStream = Transform & { receivedEncodedLength: number };

/**
 * Gunzips `source`, failing with 413 as soon as the output passes `maxBytes`. Destroying
 * the inflater stops it there, so a gzip bomb costs about `maxBytes`, never its full size.
 * The request itself is only unpiped, not destroyed, so the 413 can still be sent.
 */
export function inflateLimited(source: Readable, maxBytes: number): CountedStream {
  let inflatedBytes = 0;
  const output = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      inflatedBytes += chunk.length;
      if (inflatedBytes > maxBytes) cb(tooLarge(maxBytes));
      else cb(null, chunk);
    },
  }) as CountedStream;
  output.receivedEncodedLength = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      output.receivedEncodedLength += chunk.length;
      cb(null, chunk);
    },
  });
  const gunzip = createGunzip();
  gunzip.once('error', (err: NodeJS.ErrnoException) => output.destroy(badGzip(err)));
  source.once('error', (err) => output.destroy(err));
  source.once('close', () => {
    if (!source.readableEnded) output.destroy(new Error('request aborted by the client'));
  });
  output.once('close', () => {
    source.unpipe(counter);
    counter.destroy();
    gunzip.destroy();
  });
  source.pipe(counter).pipe(gunzip).pipe(output);
  return output;
}

/** The media type of a content-type header, lower-cased, without parameters. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
}

/** 'identity', 'gzip', or the unsupported coding as sent. */
export function contentCoding(header: string | undefined): string {
  const c = (header ?? '').trim().toLowerCase();
  if (c === '' || c === 'identity') return 'identity';
  return c === 'gzip' || c === 'x-gzip' ? 'gzip' : c;
}

/**
 * The report route's JSON parser (fastify reads the body as a buffer, at most `maxBytes`): a
 * gzip body of known length inflated whole, then kept as received for the store
 * (`request.reportBody`); empty, too deeply nested and malformed bodies refused.
 */
export function reportBodyParser(
  maxBytes: number,
  defaultJsonParse: FastifyBodyParser<string>,
): FastifyBodyParser<Buffer> {
  return (request, received, done) => {
    let body = received;
    const gzip = inflatesWhole(request);
    if (gzip) {
      try {
        body = inflateWhole(received, maxBytes);
      } catch (err) {
        done(err as Error);
        return;
      }
    }
    request.reportBody = { bytes: received, gzip };
    if (body.length === 0) {
      done(new ApiError('FL_ERR_INVALID_JSON', 'empty body: expected a JSON report batch'));
      return;
    }
    if (jsonDepthExceeds(body, maxJsonDepth)) {
      done(new ApiError('FL_ERR_INVALID_JSON', `JSON nested deeper than ${maxJsonDepth} levels`));
      return;
    }
    const text = body.toString('utf8');
    // secure-json-parse (fastify's own parser) refuses __proto__ and
    // constructor.prototype keys, on the gzip path too since it parses the inflated text.
    void defaultJsonParse(request, text, (err, value) => {
      if (err === null) {
        done(null, value);
        return;
      }
      const where = locateJsonError(text);
      done(
        where === undefined
          ? new ApiError(
              'FL_ERR_INVALID_JSON',
              'the body holds a forbidden key ("__proto__", or "constructor" with "prototype"): refused as a prototype-pollution attempt',
            )
          : new ApiError(
              'FL_ERR_INVALID_JSON',
              `malformed JSON at line ${where.line}, column ${where.column}: ${where.message}`,
              { line: where.line, column: where.column, position: where.position },
            ),
      );
    });
  };
}

/** The enrolment route's JSON parser (a small body read as text). */
export function enrolBodyParser(
  defaultJsonParse: FastifyBodyParser<string>,
): FastifyBodyParser<string> {
  return (request, text, done) => {
    if (text.length === 0) {
      done(new ApiError('FL_ERR_INVALID_JSON', 'empty body: expected {"agent", "agentId"}'));
      return;
    }
    void defaultJsonParse(request, text, (err, value) => {
      if (err === null) done(null, value);
      else {
        const where = locateJsonError(text);
        done(
          new ApiError(
            'FL_ERR_INVALID_JSON',
            where === undefined
              ? 'the body holds a forbidden key ("__proto__", or "constructor" with "prototype")'
              : `malformed JSON at line ${where.line}, column ${where.column}: ${where.message}`,
          ),
        );
      }
    });
  };
}
