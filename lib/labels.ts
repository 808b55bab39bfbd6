import { z } from 'zod';

/**
 * The one grammar for label text wherever labels arrive (config files, report batches,
 * plans, `--labels`, the plan query): bounded lengths and no control characters — C0,
 * DEL and C1 — which would forge log lines, rewrite a terminal (`faultline status`) or
 * break the Prometheus text format. A plain character class (not `\p{Cc}`) so the same
 * pattern runs without the `u` flag in Ajv's fast check of report batches.
 */
export const maxLabelNameLength = 64;
export const maxLabelValueLength = 256;

// eslint-disable-next-line no-control-regex -- matching control characters is the point
export const noControlCharsRe = /^[^\x00-\x1f\x7f-\x9f]*$/;

/** True when `s` holds a C0, DEL or C1 control character. */
export function hasControlChars(s: string): boolean {
  return !noControlCharsRe.test(s);
}

/** A label name on the wire: at most 64 characters, none of them control characters. */
export const wireLabelNameSchema = z
  .string()
  .max(maxLabelNameLength)
  .regex(noControlCharsRe, { error: 'label names may not contain control characters' });

/** A label value: at most 256 characters, none of them control characters. */
export const labelValueSchema = z
  .string()
  .max(maxLabelValueLength)
  .regex(noControlCharsRe, { error: 'label values may not contain control characters' });
