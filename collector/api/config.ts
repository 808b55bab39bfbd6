import { createSecureContext } from 'node:tls';
import { z } from 'zod';
import {
  asNumber,
  byteSizeField,
  durationField,
  isRecord,
  parseListen,
} from '../../lib/config-fields.js';
import { defaultConnectionLimits } from '../connection-guard.js';
import { pathSchema, readTextFile } from '../config-report.js';
import type { Report } from '../config-report.js';

/**
 * The collector config's `listen`, `tls` and `limits` sections: where the API listens and
 * what one client and one report may hold of it (collector/api.ts, collector/connection-guard.ts).
 */

/** Where the collector listens when the config does not say. Loopback: nothing exposed. */
export const defaultCollectorListen = '127.0.0.1:7070';

// The wire format caps a batch at this many results.
const maxResultsPerBatch = 50_000;

const listenHelp = 'expected host:port such as "127.0.0.1:7070" (IPv6 in brackets: "[::1]:7070")';

export const listenSchema = z
  .string({ error: listenHelp })
  .transform((raw, ctx) => {
    const listen = parseListen(raw);
    if (listen === undefined) {
      ctx.addIssue({ code: 'custom', message: listenHelp, input: raw });
      return z.NEVER;
    }
    return listen;
  })
  .describe(
    'Address of the HTTP API, host:port (port 0 picks a free one). Agents on other hosts need an address they can reach: e.g. 0.0.0.0:7070, with tls.',
  );

/** The `tls:` section. */
export const tlsSchema = z
  .object({
    cert: pathSchema.describe('PEM certificate (chain) file.'),
    key: pathSchema.describe('PEM private key file of the certificate.'),
  })
  .strict()
  .optional()
  .describe('Serve HTTPS: both files must be readable and belong together.');

/** The `limits:` section. */
export const limitsSchema = z
  .object({
    maxReportBytes: byteSizeField(1024, 1024 ** 3)
      .prefault('8MB')
      .describe('Largest report body accepted, after decompression: bytes, or e.g. "8MB".'),
    maxResultsPerBatch: z
      .number()
      .int()
      .min(1)
      .max(maxResultsPerBatch)
      .default(maxResultsPerBatch)
      .describe('Most results (and most summaries) in one report batch.'),
    maxConnections: z
      .number()
      .int()
      .min(16)
      .max(65_536)
      .default(defaultConnectionLimits.maxConnections)
      .describe(
        'Open HTTP connections at most. Past it the oldest connection with no request in progress (stalled before its headers, or idle) is closed to make room.',
      ),
    headersTimeout: durationField(100)
      .refine((ms) => ms <= 60_000, { error: 'expected at most 60s' })
      .prefault(defaultConnectionLimits.headersTimeoutMs)
      .describe(
        "Time a client may take to send a request's headers (and its TLS handshake) before the connection is closed.",
      ),
    keepAliveTimeout: durationField(100)
      .prefault(defaultConnectionLimits.keepAliveTimeoutMs)
      .describe('An idle keep-alive connection is closed after this long.'),
  })
  .strict()
  .prefault({})
  .describe(
    'What one report may hold (larger ones are refused with 413) and what one client may hold of the HTTP server.',
  );

/** What OpenSSL's codes mean for someone holding the files. */
function tlsReason(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH')
    return 'the key does not belong to the certificate';
  const text = typeof code === 'string' ? code : (err as Error).message;
  return `not usable by TLS (${text})`;
}

export function checkTls(tls: Record<string, unknown>, report: Report): void {
  const certPath = typeof tls.cert === 'string' ? tls.cert : undefined;
  const keyPath = typeof tls.key === 'string' ? tls.key : undefined;
  const cert =
    certPath === undefined
      ? undefined
      : readTextFile(certPath, 'certificate file', ['tls', 'cert'], report);
  const key =
    keyPath === undefined ? undefined : readTextFile(keyPath, 'key file', ['tls', 'key'], report);
  let ok = true;
  if (cert !== undefined) {
    try {
      createSecureContext({ cert });
    } catch (err) {
      report(['tls', 'cert'], `expected a PEM certificate: ${tlsReason(err)}`, certPath);
      ok = false;
    }
  }
  if (key !== undefined) {
    try {
      createSecureContext({ key });
    } catch (err) {
      report(['tls', 'key'], `expected a PEM private key: ${tlsReason(err)}`, keyPath);
      ok = false;
    }
  }
  if (ok && cert !== undefined && key !== undefined) {
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      report(['tls'], `cannot serve with this certificate and key: ${tlsReason(err)}`);
    }
  }
}

/** The `limits:` section, resolved. */
export function resolveLimits(raw: unknown): CollectorConfigLimits {
  const limits: Record<string, unknown> = isRecord(raw) ? raw : {};
  return {
    maxReportBytes: asNumber(limits.maxReportBytes) ?? 0,
    maxResultsPerBatch: asNumber(limits.maxResultsPerBatch) ?? 0,
    maxConnections: asNumber(limits.maxConnections) ?? 0,
    headersTimeoutMs: asNumber(limits.headersTimeout) ?? 0,
    keepAliveTimeoutMs: asNumber(limits.keepAliveTimeout) ?? 0,
  };
}

/** What one report and one client may hold of the HTTP server. */
export interface CollectorConfigLimits {
  /** Largest report body accepted (bytes, after decompression). */
  readonly maxReportBytes: number;
  /** Most results (and most summaries) in one report batch. */
  readonly maxResultsPerBatch: number;
  /** Open HTTP connections at most (collector/connection-guard.ts). */
  readonly maxConnections: number;
  /** Time a client may take to send a request's headers (and a TLS handshake). */
  readonly headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  readonly keepAliveTimeoutMs: number;
}
