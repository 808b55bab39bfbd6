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

const labelTextNameRe = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const labelTextValueRe = /^[^\p{Cc},=]{1,256}$/u;

/** `text` as JSON, cut to 40 characters: a bad pair named in a message. */
function quoted(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 39)}…` : text);
}

/** Labels parsed from text, or why the text is not labels (naming the bad pair). */
export type LabelTextResult =
  | { readonly ok: true; readonly labels: Record<string, string> }
  | { readonly ok: false; readonly reason: string };

/**
 * Label text as the API's `labels` query and `faultline agent --labels` take it: `k=v,k2=v2`,
 * names as in the agent config (letters, digits, "_"; "__" reserved), values without control
 * characters, "," or "=", no name twice. Empty text is no labels; pairs keep their order.
 */
export function parseLabelText(text: string): LabelTextResult {
  if (text === '') return { ok: true, labels: {} };
  const entries: [string, string][] = [];
  const seen = new Set<string>();
  for (const [i, pair] of text.split(',').entries()) {
    const eq = pair.indexOf('=');
    if (eq < 0) return { ok: false, reason: `pair ${i + 1} ${quoted(pair)} is not name=value` };
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!labelTextNameRe.test(name) || name.startsWith('__')) {
      return {
        ok: false,
        reason: `invalid label name ${quoted(name)}: letters, digits and "_", not starting with a digit or "__"`,
      };
    }
    if (!labelTextValueRe.test(value)) {
      return {
        ok: false,
        reason: `invalid value for ${JSON.stringify(name)}: 1–256 characters, no control characters, "," or "="`,
      };
    }
    if (seen.has(name)) return { ok: false, reason: `duplicate label ${JSON.stringify(name)}` };
    seen.add(name);
    entries.push([name, value]);
  }
  return { ok: true, labels: Object.fromEntries(entries) };
}
