import { parseLabelText } from '../../lib/labels.js';
import { z } from 'zod';
import {
  configErrorMap,
  formatConfigPath,
  knownKeysAt,
  unknownKeyMessage,
} from '../../lib/config-file.js';
import { ApiError } from '../../wire/errors.js';

/** Reading a request's query, and saying what is wrong with a request: its issues. */

const maxListedIssues = 5;
const maxReturnedIssues = 20;

/** An agent name in a query. */
export const agentNameSchema = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, {
  error: 'expected an agent name: 1–128 letters, digits, ".", "_", ":" or "-"',
});

/** A query that takes no parameters. */
export const noQuerySchema = z.object({}).strict();

/** One problem of a request, for the `issues` list of an error body. */
export interface ApiIssue {
  readonly path: string;
  readonly message: string;
}

/** A scalar as shown in a message: JSON-escaped, cut short; undefined for anything else. */
export function showScalar(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 39)}…` : value);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) {
    return JSON.stringify(value);
  }
  return undefined;
}

/**
 * zod issues as `path: message` lines, unknown keys one per line with a "did you mean".
 * Values are shown JSON-escaped and cut short (never raw), and only scalars.
 */
export function describeIssues(
  issues: readonly z.core.$ZodIssue[],
  schema: z.core.$ZodType,
): ApiIssue[] {
  const out: ApiIssue[] = [];
  for (const iss of issues) {
    if (out.length >= maxReturnedIssues) break;
    if (iss.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, iss.path);
      for (const key of iss.keys) {
        out.push({
          path: formatConfigPath([...iss.path, key]),
          message: unknownKeyMessage(key, known),
        });
      }
      continue;
    }
    let message = iss.message;
    if (iss.code === 'invalid_type' && iss.input === undefined) message = 'missing';
    else {
      const actual = showScalar(iss.input);
      if (actual !== undefined) message += ` (actual: ${actual})`;
    }
    out.push({ path: formatConfigPath(iss.path), message });
  }
  return out;
}

/** "results[3].class: expected one of: ok, …; seq: missing (and 4 more)". */
export function summariseIssues(issues: readonly ApiIssue[], total: number): string {
  const lines = issues
    .slice(0, maxListedIssues)
    .map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`));
  const more = total - Math.min(issues.length, maxListedIssues);
  return `${lines.join('; ')}${more > 0 ? ` (and ${more} more)` : ''}`;
}

/** How many problems zod found (each unknown key one). */
export function countIssues(issues: readonly z.core.$ZodIssue[]): number {
  return issues.reduce((n, i) => n + (i.code === 'unrecognized_keys' ? i.keys.length : 1), 0);
}

export function parseQuery<T>(schema: z.ZodType<T>, query: unknown): T {
  const parsed = schema.safeParse(query ?? {}, { error: configErrorMap, reportInput: true });
  if (parsed.success) return parsed.data;
  const issues = describeIssues(parsed.error.issues, schema);
  throw new ApiError(
    'FL_ERR_BAD_REQUEST',
    `invalid query: ${summariseIssues(issues, countIssues(parsed.error.issues))}`,
    { issues },
  );
}

/**
 * Parses the `labels` query parameter strictly (lib/labels.ts parseLabelText: `k=v,k2=v2`).
 * Throws ApiError FL_ERR_BAD_REQUEST naming the bad pair; its `reason.why` without the
 * query's framing.
 */
export function parseLabels(text: string): Record<string, string> {
  const parsed = parseLabelText(text);
  if (!parsed.ok)
    throw new ApiError(
      'FL_ERR_BAD_REQUEST',
      `invalid query: labels: ${parsed.reason}`,
      {},
      {},
      { reason: { field: 'labels', why: parsed.reason } },
    );
  return parsed.labels;
}
