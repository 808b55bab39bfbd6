import { isIP } from 'node:net';
import { z } from 'zod';
import { configErrorMap } from './config-file.js';
import { parseDurationMs } from './duration.js';
import { labelValueSchema, maxLabelNameLength } from './labels.js';
import { isValidHost } from './host.js';

/**
 * Config fields shared by the agent's and the collector's YAML: durations, names, topology
 * labels, listen addresses, byte sizes. The per-kind probe options, which need the probe
 * registry, are in probes/kind-options.ts.
 */

/** Label names Faultline sets itself on every result and metric. */
export const reservedLabelNames = [
  'agent',
  'target',
  'kind',
  'class',
  'phase',
  'instance',
  'job',
  'le',
] as const;

// setTimeout holds at most 2^31-1 ms; a day is far below that and far above any sane interval.
const maxDurationMs = 86_400_000;

/** Agent names: what `agent.name` and a collector component's `agent` accept. */
export const agentNameRe = /^[A-Za-z0-9._:-]{1,128}$/;
const labelNameRe = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
// Same grammar as lib/duration.ts; here only so the JSON Schema can show it.
const durationRe = /^\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h)?\s*$/;

/** 15000 → "15s", 1500 → "1.5s", 800 → "800ms": durations in messages read as written. */
export function formatDurationMs(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const durationHelp =
  'expected a duration: milliseconds, or a number with ms, s, m or h (e.g. "500ms", "15s", "2m")';

/**
 * A duration field: a number of ms or text like "15s"; parses to whole milliseconds in
 * [minMs, maxMs] (maxMs: a day unless given).
 */
export function durationField(minMs: number, maxMs = maxDurationMs) {
  return z
    .union([z.number(), z.string().regex(durationRe, { error: durationHelp })], {
      error: durationHelp,
    })
    .transform((raw, ctx) => {
      const ms = parseDurationMs(raw);
      const bad = (message: string): never => {
        ctx.addIssue({ code: 'custom', message, input: raw });
        return z.NEVER;
      };
      if (ms === undefined) return bad(durationHelp);
      if (!Number.isInteger(ms)) return bad('expected whole milliseconds');
      if (ms < minMs) {
        // `interval: 15` means 15 ms, almost never what was meant.
        const hint = typeof raw === 'number' ? '; a bare number is milliseconds (write "15s")' : '';
        return bad(`expected at least ${formatDurationMs(minMs)}${hint}`);
      }
      if (ms > maxMs) return bad(`expected at most ${formatDurationMs(maxMs)}`);
      return ms;
    });
}

const durationOrAutoHelp = `${durationHelp}, or auto`;
const durationOrAutoRe = new RegExp(`^\\s*auto\\s*$|${durationRe.source}`);

/**
 * A duration field that may also be `auto` (the program picks the duration): parses to
 * whole milliseconds ≥ minMs, or to 'auto'.
 */
export function durationOrAutoField(minMs: number) {
  const duration = durationField(minMs);
  return z
    .union([z.number(), z.string().regex(durationOrAutoRe, { error: durationOrAutoHelp })], {
      error: durationOrAutoHelp,
    })
    .transform((raw, ctx): number | 'auto' => {
      if (typeof raw === 'string' && raw.trim() === 'auto') return 'auto';
      const parsed = duration.safeParse(raw);
      if (parsed.success) return parsed.data;
      for (const issue of parsed.error.issues)
        ctx.addIssue({ code: 'custom', message: issue.message, input: raw });
      return z.NEVER;
    });
}

/** An agent name (1–128 of A-Z a-z 0-9 . _ : -). */
export const agentNameSchema = z
  .string()
  .regex(agentNameRe, { error: 'expected 1–128 characters from A-Z a-z 0-9 . _ : -' });

/**
 * Topology labels: label name → string value. Names follow the Prometheus rules and may
 * not be one Faultline sets itself (`reservedLabelNames`, plus `extraReserved`).
 */
export function labelsField(extraReserved: readonly string[] = []) {
  const reserved: readonly string[] = [...reservedLabelNames, ...extraReserved];
  const labelName = z
    .string()
    .max(maxLabelNameLength, {
      error: `expected a label name of at most ${maxLabelNameLength} characters`,
    })
    .regex(labelNameRe, {
      error: 'expected a label name: letters, digits and "_", not starting with a digit',
    })
    .refine((n) => !n.startsWith('__'), { error: 'label names starting with "__" are reserved' })
    .refine((n) => !reserved.includes(n), {
      error: `reserved label name: Faultline sets ${reserved.join(', ')} itself`,
    });
  return z
    .record(labelName, labelValueSchema)
    .describe('Topology labels (zone, switch, rack, role…): label name → string value.');
}

/**
 * `127.0.0.1:9465`, `[::1]:9465`, `localhost:0` → the same text normalised (IPv6 in
 * brackets), or undefined. The host must be an IP or a hostname; port 0 picks a free port.
 */
export function parseListen(raw: string): string | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(raw) ?? /^([^:[\]]+):(\d{1,5})$/.exec(raw);
  if (m === null) return undefined;
  const host = m[1] ?? '';
  const port = Number(m[2]);
  if (!isValidHost(host) || port > 65535) return undefined;
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Splits a listen address made by parseListen into host (no brackets) and port. */
export function splitListen(listen: string): { readonly host: string; readonly port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon);
  return {
    host: host.startsWith('[') ? host.slice(1, -1) : host,
    port: Number(listen.slice(colon + 1)),
  };
}

// Binary units, as nginx and most daemons read them: 8MB is 8 × 1024 × 1024 bytes.
const byteUnits: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
const byteSizeRe = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;

/** `8MB` → 8388608, `512k` → 524288, 1000 → 1000 (units are binary); undefined if not a size. */
export function parseByteSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = byteSizeRe.exec(value);
  if (m === null) return undefined;
  const unit = byteUnits[(m[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.floor(Number(m[1]) * unit);
}

/** "8MiB", "1.5KiB", "100B": sizes in messages. */
export function formatByteSize(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= size) return `${Math.round((bytes / size) * 100) / 100}${unit}`;
  }
  return `${bytes}B`;
}

const byteSizeHelp =
  'expected a size: bytes, or a number with KB, MB or GB (binary: 1KB = 1024 bytes), e.g. "8MB"';

/** A byte-size field: bytes, or text like "8MB"; parses to whole bytes in [minBytes, maxBytes]. */
export function byteSizeField(minBytes: number, maxBytes: number) {
  return z
    .union([z.number(), z.string().regex(byteSizeRe, { error: byteSizeHelp })], {
      error: byteSizeHelp,
    })
    .transform((raw, ctx) => {
      const bytes = parseByteSize(raw);
      const bad = (message: string): never => {
        ctx.addIssue({ code: 'custom', message, input: raw });
        return z.NEVER;
      };
      if (bytes === undefined || !Number.isInteger(bytes)) return bad(byteSizeHelp);
      if (bytes < minBytes) return bad(`expected at least ${formatByteSize(minBytes)}`);
      if (bytes > maxBytes) return bad(`expected at most ${formatByteSize(maxBytes)}`);
      return bytes;
    });
}

export function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export function asNumber(x: unknown): number | undefined {
  return typeof x === 'number' && Number.isFinite(x) ? x : undefined;
}

export type { IssueSink } from './config-file.js';

/** Parse settings for a nested value, so its messages read like the rest of the file. */
export const nestedParse = { error: configErrorMap, reportInput: true } as const;

/** Confirmation bursts when a plan or config does not say: 3 re-probes 150 ms apart. */
export const defaultConfirm = { count: 3, spacingMs: 150 } as const;
/** The bounds of `confirm` (the plan's wire schema holds the same). */
export const maxConfirmCount = 10;
export const minConfirmSpacingMs = 20;
export const maxConfirmSpacingMs = 5000;

/** `confirm:` — the burst of re-probes that confirms a change of class on a path. */
export function confirmField() {
  return z
    .object({
      count: z
        .number()
        .int()
        .min(0)
        .max(maxConfirmCount)
        .default(defaultConfirm.count)
        .describe(
          `Re-probes of a path whose result changed class (ok → failure, failure → ok, one failure to another), reported at once with the change; 0 turns bursts off. Default ${defaultConfirm.count}, at most ${maxConfirmCount}.`,
        ),
      spacing: durationField(minConfirmSpacingMs, maxConfirmSpacingMs)
        .prefault(`${defaultConfirm.spacingMs}ms`)
        .describe(
          `Between the starts of two re-probes of a burst; each waits twice the path's own timeout (the configured one with adaptiveTimeout: false). Default ${defaultConfirm.spacingMs}ms, ${formatDurationMs(minConfirmSpacingMs)} to ${formatDurationMs(maxConfirmSpacingMs)}.`,
        ),
    })
    .strict();
}

/** `adaptiveTimeout:` — per-path timeouts that shrink towards the path's round trip. */
export function adaptiveTimeoutField() {
  return z
    .boolean()
    .default(true)
    .describe(
      "Each path's timeout shrinks towards its own observed round trip (srtt + 4·rttvar, ×3, at least 100ms — 300ms for probes riding TCP — at most the configured timeout), so a dead LAN path is seen in 100–300ms instead of the full timeout. Confirmation re-probes wait twice the path's own timeout (as TCP doubles its RTO on a retransmission), so a path only slower than its shortened timeout is not reported failing for it. false: always the configured timeout.",
    );
}
