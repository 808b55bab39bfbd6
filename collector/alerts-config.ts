import { z } from 'zod';
import { addNestedIssues } from '../lib/config-file.js';
import {
  asNumber,
  durationField,
  durationOrAutoField,
  isRecord,
  labelsField,
  nestedParse,
} from '../lib/config-fields.js';
import type { IssueSink } from '../lib/config-fields.js';
import type { Report } from './config-report.js';
import { httpUrlField, isHttpUrl } from './sinks/http.js';
import { sinkDefinition, sinkRegistry, sinkTypes } from './sinks/registry.js';
import type { SinkConfig, SinkType } from './sinks/registry.js';

/**
 * The collector config's `alerts:` section: when alerts fire, what they say, where they go
 * (collector/alerts.ts, collector/sinks/).
 */

/** The `alerts:` section: when alerts fire, what they say, where they go (collector/alerts.ts). */
export interface AlertsConfig {
  /** A hypothesis must hold this long before its alert fires. */
  readonly holdForMs: number;
  /** Within an hour of its resolve, an alert must hold this long (at least holdFor) to fire again. */
  readonly refireHoldForMs: number;
  /**
   * Longest a new alert waits for a settling diagnosis (a fault still arriving) before it
   * fires anyway; also bounds how long the diagnosis calls itself settling. 0: no wait.
   * Default (auto): {@link autoSettleMaxMs}.
   */
  readonly settleMaxMs: number;
  /**
   * After a firing alert resolves, a new one whose hypothesis began before that (its paths
   * were failing already: the heal's tail, recovering unevenly) must hold this long to fire.
   */
  readonly healTailHoldMs: number;
  /**
   * A `packet_loss` alert must hold this long with the same hosts before it fires: loss is
   * a verdict from samples, and it narrows as they come (one lossy pair, then the host).
   */
  readonly lossHoldForMs: number;
  /**
   * After a firing `packet_loss` alert resolves, a new `packet_loss` alert naming any of its
   * hosts and speaking of fewer paths waits until this long after that resolve: the healed
   * loss's own samples age out of the paths' windows unevenly, and read as a narrower loss
   * (one pair) for a while.
   */
  readonly lossTailHoldMs: number;
  /**
   * A `path_blocked` alert waits at most this long while a host it names has a late agent
   * (a filter does not delay a host's own reports; a lossy or failing link does). 0: no wait.
   */
  readonly lateHoldMaxMs: number;
  /** Firing alerts are sent again this often (endsAt = 4 periods ahead). */
  readonly resendEveryMs: number;
  /** Base URL people reach the collector at: alerts link back to it. */
  readonly externalUrl?: string;
  /** Runbook link template; `{kind}` and `{alertname}` are filled in. */
  readonly runbookUrl?: string;
  /** Extra labels on every alert (cluster, env…). */
  readonly labels: Readonly<Record<string, string>>;
  readonly sinks: readonly SinkConfig[];
}

/** Labels the alert engine sets itself. */
const alertLabelNames = ['alertname', 'component', 'severity'] as const;
const runbookPlaceholders = ['kind', 'alertname'] as const;

// Each sink entry is checked by its own type's schema in resolveAlerts (so an unknown key
// gets a "did you mean" from that type's keys); the JSON Schema shows the union instead.
export const sinkSlot = z.record(z.string(), z.unknown());
/** Every sink type's schema as one union: the `alerts.sinks[]` entry of the JSON Schema. */
export function sinkUnion() {
  return z.discriminatedUnion(
    'type',
    sinkTypes().map((t) => sinkRegistry[t].schema) as unknown as [
      (typeof sinkRegistry)[SinkType]['schema'],
      ...(typeof sinkRegistry)[SinkType]['schema'][],
    ],
  );
}

export const alertsSchema = z
  .object({
    holdFor: durationField(0)
      .prefault('0s')
      .describe(
        'A hypothesis must hold this long (beyond the probe debounce) before its alert fires.',
      ),
    refireHoldFor: durationField(0)
      .prefault('30s')
      .describe(
        'Within an hour of being resolved, an alert must hold this long (and at least holdFor) to fire again: one bad probe does not re-fire it.',
      ),
    settleMax: durationOrAutoField(0)
      .prefault('auto')
      .describe(
        "While a fault is still arriving (paths of its hosts changed in the last moment, agents' confirmation bursts or reports are due, or not every agent has probed its hosts since) the diagnosis is settling and no new alert fires; this bounds the wait, from the first change (0: never wait). auto: one probe interval, a confirmation burst and 250 ms (1.7s at the defaults), at most 10s.",
      ),
    healTailHold: durationField(0)
      .prefault('5s')
      .describe(
        "After a firing alert resolves, a new alert whose hypothesis began before that and speaks of fewer failing paths — the fault that just healed, its paths recovering unevenly: the heal's tail — must hold this long to fire (0: no extra hold). A fault that outlasts the heal still pages, this much later.",
      ),
    lossHoldFor: durationField(0)
      .prefault('3s')
      .describe(
        'A packet_loss alert must hold this long with the same hosts before it fires (and at least holdFor): loss is a verdict from samples that narrows as they come — one lossy pair first, then the host whose link loses — and a page for the first reading names the wrong pair. 0: as other alerts.',
      ),
    lossTailHold: durationField(0)
      .prefault('30s')
      .describe(
        "After a firing packet_loss alert resolves, a new packet_loss alert naming any of its hosts and speaking of fewer paths than that loss at its largest fires no sooner than this after that resolve (and holds lossHoldFor as ever): the healed loss's samples age out of the paths' 30 s windows unevenly and read, for a while, as a narrower loss — one pair — that is the same loss's tail. A narrower loss that stays pages this much later; one as large as before, at once. A packet_loss alert read at the tail of another fault's heal (on its hosts, just after it resolved) waits this long too, as the heal's own lost probes stay in the windows. 0: no such wait.",
      ),
    lateHoldMax: durationField(0)
      .prefault('4s')
      .describe(
        "A path_blocked alert, or a service_unresponsive one whose answers timed out, waits at most this long while a host it names has a late agent (its report overdue): a filter or a hung service does not delay a host's own reports, a lossy or failing link does (its lost segments also look like a filter or a hung answer), and the agent's next report tells which. 0: no wait.",
      ),
    resendEvery: durationField(1000)
      .prefault('1m')
      .describe(
        'Firing alerts are sent again this often, with endsAt 4 periods ahead: Alertmanager keeps them while the fault lasts, and lets them lapse if every collector stops.',
      ),
    externalUrl: httpUrlField()
      .optional()
      .describe(
        'URL people reach this collector at (e.g. https://faultline.example.com): alerts link back to it.',
      ),
    runbookUrl: z
      .string()
      .optional()
      .describe(
        'Runbook link of every alert (annotation runbook_url); {kind} and {alertname} are filled in, e.g. https://wiki.example.com/faultline/{kind}.',
      ),
    labels: labelsField([...alertLabelNames])
      .prefault({})
      .describe(
        'Extra labels on every alert, e.g. {cluster: prod}. Give both collectors of an HA pair the same, so Alertmanager sees one alert.',
      ),
    sinks: z
      .array(sinkSlot)
      .prefault([])
      .describe(
        `Where alerts go; each with type: ${sinkTypes().join(', ')}. A sink that is down never holds up the others.`,
      ),
  })
  .strict()
  .describe('Alerts with root-cause hints: when they fire and where they are sent.');

export function resolveAlerts(
  raw: unknown,
  ctx: IssueSink | undefined,
  report: Report,
  autoSettleMaxMs: number,
): AlertsConfig {
  const a: Record<string, unknown> = isRecord(raw) ? raw : {};
  const at = (...rest: PropertyKey[]): PropertyKey[] => ['alerts', ...rest];
  let runbookUrl: string | undefined;
  if (typeof a.runbookUrl === 'string') {
    const unknown = [...a.runbookUrl.matchAll(/\{([^{}]*)\}/g)]
      .map((m) => m[1] ?? '')
      .filter((name) => !(runbookPlaceholders as readonly string[]).includes(name));
    let filled = a.runbookUrl;
    for (const p of runbookPlaceholders) filled = filled.replaceAll(`{${p}}`, 'x');
    if (unknown.length > 0) {
      report(
        at('runbookUrl'),
        `unknown placeholder {${unknown[0]}}: expected ${runbookPlaceholders.map((p) => `{${p}}`).join(' or ')}`,
        a.runbookUrl,
      );
    } else if (!isHttpUrl(filled)) {
      report(
        at('runbookUrl'),
        'expected an http(s) URL such as "https://wiki.example.com/faultline/{kind}"',
        a.runbookUrl,
      );
    } else runbookUrl = a.runbookUrl;
  }

  const sinks: SinkConfig[] = [];
  const list: unknown[] = Array.isArray(a.sinks) ? a.sinks : [];
  const firstByName = new Map<string, number>();
  list.forEach((entry: unknown, i) => {
    if (!isRecord(entry)) return;
    const types = sinkTypes();
    const typeHelp = `expected one of: ${types.join(', ')}`;
    if (entry.type === undefined) {
      report(at('sinks', i), `missing required key "type": ${typeHelp}`);
      return;
    }
    if (!(types as unknown[]).includes(entry.type)) {
      report(at('sinks', i, 'type'), `unknown sink type: ${typeHelp}`, entry.type);
      return;
    }
    const type = entry.type as SinkType;
    const definition = sinkDefinition(type);
    const parsed = definition.schema.safeParse(entry, nestedParse);
    if (!parsed.success) {
      if (ctx !== undefined)
        addNestedIssues(ctx, parsed.error.issues, at('sinks', i), definition.schema);
      return;
    }
    const written = typeof entry.name === 'string';
    const name = written ? (entry.name as string) : type;
    const first = firstByName.get(name);
    if (first !== undefined) {
      const hint = written ? '' : ' (the name defaults to the type: give each a name)';
      const nameAt = (j: number): PropertyKey[] => {
        const e = list[j];
        return isRecord(e) && e.name !== undefined ? at('sinks', j, 'name') : at('sinks', j);
      };
      report(nameAt(i), `duplicate sink name ${JSON.stringify(name)}${hint}`, undefined, {
        related: { path: nameAt(first), label: 'first used' },
      });
      return;
    }
    firstByName.set(name, i);
    const resolved = definition.resolve(parsed.data, name, (path, message, input, params) =>
      report(at('sinks', i, ...path), message, input, params),
    );
    if (resolved !== undefined) sinks.push(resolved as SinkConfig);
  });

  const labels = isRecord(a.labels) ? (a.labels as Record<string, string>) : {};
  return {
    holdForMs: asNumber(a.holdFor) ?? 0,
    refireHoldForMs: asNumber(a.refireHoldFor) ?? 0,
    settleMaxMs: asNumber(a.settleMax) ?? autoSettleMaxMs,
    healTailHoldMs: asNumber(a.healTailHold) ?? 5000,
    lossHoldForMs: asNumber(a.lossHoldFor) ?? 3000,
    lossTailHoldMs: asNumber(a.lossTailHold) ?? 30_000,
    lateHoldMaxMs: asNumber(a.lateHoldMax) ?? 4000,
    resendEveryMs: asNumber(a.resendEvery) ?? 0,
    ...(typeof a.externalUrl === 'string' ? { externalUrl: a.externalUrl } : {}),
    ...(runbookUrl === undefined ? {} : { runbookUrl }),
    labels,
    sinks,
  };
}

/**
 * `alerts.settleMax: auto`: the time for every agent to have probed a fault's hosts once
 * since the first of them saw it (one probe interval), confirmed what it saw (a burst) and
 * reported it (250 ms) — agents see a fault up to an interval apart, and until then the
 * first ones' failures look like a smaller fault. At most 10 s.
 */
export function autoSettleMaxMs(
  intervalMs: number,
  confirm: { readonly count: number; readonly spacingMs: number },
): number {
  return Math.min(10_000, intervalMs + confirm.count * confirm.spacingMs + 250);
}
