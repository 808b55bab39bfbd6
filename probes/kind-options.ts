import { z } from 'zod';
import { addNestedIssues } from '../lib/config-file.js';
import type { ConfigPath, IssueSink } from '../lib/config-file.js';
import { isRecord, nestedParse } from '../lib/config-fields.js';
import { probeKinds, probeRegistry } from './registry.js';
import type { ProbeKind } from './registry.js';

/**
 * The per-kind probe options of the agent's and the collector's YAML: option slots in the
 * schemas (shown as the kind's own schema in the JSON Schema), per-kind defaults, and
 * options merged over them and validated by the kind's own schema. Beside the registry,
 * which they read; the kind-free config fields are in lib/config-fields.ts.
 */

// Options are validated per kind after the merge with the defaults; these slots only
// accept a mapping. optionsSlotJsonSchema() shows the kind's own schema in their place.
const optionSlots = new Map<z.core.$ZodType, ProbeKind | 'any'>();

/** A mapping slot for probe options: a kind's, or 'any' when the kind is in a sibling field. */
export function optionsSlot(kind: ProbeKind | 'any') {
  const slot = z.record(z.string(), z.unknown());
  optionSlots.set(slot, kind);
  return slot;
}

/** The JSON Schema of a kind's options (draft 2020-12, input side, no `$schema`). */
export function kindOptionsJsonSchema(kind: ProbeKind): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(probeRegistry[kind].options, {
    io: 'input',
    unrepresentable: 'any',
  }) as Record<string, unknown>;
  return rest;
}

/**
 * For a `z.toJSONSchema` override: replaces a kind's options slot with the kind's schema
 * (keeping the description); leaves any other schema alone.
 */
export function fillOptionsSlot(zodSchema: z.core.$ZodType, json: Record<string, unknown>): void {
  const slot = optionSlots.get(zodSchema);
  if (slot === undefined || slot === 'any') return;
  for (const key of Object.keys(json)) if (key !== 'description') delete json[key];
  Object.assign(json, kindOptionsJsonSchema(slot));
}

/** The `options` object of a defaults section: one optional options slot per kind. */
export function perKindOptionsField(what: string) {
  return z
    .object(
      Object.fromEntries(
        probeKinds.map((kind) => [
          kind,
          optionsSlot(kind)
            .optional()
            .describe(
              `Default options for every ${kind} ${what} (${probeRegistry[kind].description}).`,
            ),
        ]),
      ),
    )
    .strict();
}

/** Per-kind default options as written, and the kinds whose defaults are invalid. */
export interface KindDefaults {
  readonly options: Partial<Record<ProbeKind, Record<string, unknown>>>;
  readonly bad: ReadonlySet<ProbeKind>;
}

/**
 * Validates per-kind default options (`raw[kind]` against the kind's schema), reporting
 * problems under `prefix`. Valid ones are returned as written, for merging.
 */
export function checkKindDefaults(
  raw: unknown,
  ctx: IssueSink | undefined,
  prefix: ConfigPath,
): KindDefaults {
  const written: Record<string, unknown> = isRecord(raw) ? raw : {};
  const options: Partial<Record<ProbeKind, Record<string, unknown>>> = {};
  const bad = new Set<ProbeKind>();
  for (const kind of probeKinds) {
    const value = written[kind];
    if (value === undefined) continue;
    if (!isRecord(value)) {
      bad.add(kind);
      continue;
    }
    const schema = probeRegistry[kind].options as z.ZodType;
    const parsed = schema.safeParse(value, nestedParse);
    if (parsed.success) options[kind] = value;
    else {
      bad.add(kind);
      if (ctx !== undefined) addNestedIssues(ctx, parsed.error.issues, [...prefix, kind], schema);
    }
  }
  return { options, bad };
}

/** The issues of a merged options parse that concern keys the target itself wrote. */
function ownIssues(
  issues: readonly z.core.$ZodIssue[],
  own: Record<string, unknown>,
): z.core.$ZodIssue[] {
  const out: z.core.$ZodIssue[] = [];
  for (const iss of issues) {
    if (iss.code === 'unrecognized_keys' && iss.path.length === 0) {
      const keys = iss.keys.filter((k) => k in own);
      if (keys.length > 0) out.push({ ...iss, keys });
    } else if (iss.path.length > 0 && String(iss.path[0]) in own) {
      out.push(iss);
    }
  }
  return out;
}

/**
 * Merges `own` options over the kind's defaults (shallow: a key replaces the default's
 * whole value, as with labels) and parses the result with the kind's schema. Problems are
 * reported under `prefix`; with broken defaults only what `own` wrote is news there.
 * Returns the parsed options, or undefined when they are invalid.
 */
export function checkMergedOptions(
  kind: ProbeKind,
  defaults: KindDefaults,
  own: Record<string, unknown>,
  ctx: IssueSink | undefined,
  prefix: ConfigPath,
): { readonly merged: Record<string, unknown>; readonly parsed: unknown } | undefined {
  const schema = probeRegistry[kind].options as z.ZodType;
  const merged = { ...defaults.options[kind], ...own };
  const parsed = schema.safeParse(merged, nestedParse);
  if (parsed.success) return { merged, parsed: parsed.data };
  if (ctx !== undefined) {
    const issues = defaults.bad.has(kind)
      ? ownIssues(parsed.error.issues, own)
      : parsed.error.issues;
    addNestedIssues(ctx, issues, prefix, schema);
  }
  return undefined;
}
