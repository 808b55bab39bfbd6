import type { CommandModule } from 'yargs';
import { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import { DiagnosisSchema } from '../wire/diagnosis.js';
import { exitCodes } from './exit-codes.js';
import {
  collectorClient,
  fetchCollector,
  fetchCollectorJson,
  formatAge,
  formatTime,
  StatusError,
  withCollectorClientOptions,
  type CollectorClientArgs,
} from './status.js';

interface IncidentsArgs extends CollectorClientArgs {
  id?: number;
  postmortem: boolean;
  json: boolean;
  limit: number;
}

const IncidentSchema = z.object({
  id: z.number().int(),
  openedAtMs: z.number(),
  firstFailureMs: z.number(),
  closedAtMs: z.number().optional(),
  kind: z.string(),
  summary: z.string(),
  components: z.array(z.string()),
});
type Incident = z.infer<typeof IncidentSchema>;

const IncidentListSchema = z.object({ incidents: z.array(IncidentSchema) });

const IncidentDetailSchema = IncidentSchema.extend({
  events: z.array(z.object({ atMs: z.number(), type: z.string(), diagnosis: z.unknown() })),
});
type IncidentDetail = z.infer<typeof IncidentDetailSchema>;

/** Formatting options: "now" for durations and the time zone of the times shown. */
export interface IncidentFormatOptions {
  readonly nowMs: number;
  readonly timeZone?: string;
}

function status(i: Incident, nowMs: number): string {
  return i.closedAtMs === undefined
    ? `OPEN for ${formatAge(nowMs - i.firstFailureMs)}`
    : `resolved after ${formatAge(i.closedAtMs - i.firstFailureMs)}`;
}

/** One line per incident, newest first. */
export function formatIncidentList(list: readonly Incident[], opts: IncidentFormatOptions): string {
  if (list.length === 0) return 'No incidents recorded.\n';
  const lines = list.map(
    (i) =>
      `#${i.id}  ${formatTime(i.firstFailureMs, opts.timeZone)}  ${status(i, opts.nowMs)}  ${i.kind}: ${i.summary}`,
  );
  return `${lines.join('\n')}\n`;
}

const eventWords: Readonly<Record<string, string>> = {
  opened: 'detected',
  leading_changed: 'leading hypothesis changed',
  hypotheses_changed: 'hypotheses changed',
  recovered: 'recovered',
};

/** An incident's head and timeline. */
export function formatIncident(i: IncidentDetail, opts: IncidentFormatOptions): string {
  const lines = [
    `Incident #${i.id}: ${i.summary}`,
    `  status:      ${status(i, opts.nowMs)}`,
    `  first failure ${formatTime(i.firstFailureMs, opts.timeZone)}, detected ${formatTime(i.openedAtMs, opts.timeZone)}${i.closedAtMs === undefined ? '' : `, recovered ${formatTime(i.closedAtMs, opts.timeZone)}`}`,
    `  components:  ${i.components.join(', ') || '—'}`,
    '',
    'Timeline:',
  ];
  for (const e of i.events) {
    const d = DiagnosisSchema.safeParse(e.diagnosis);
    const lead = d.success ? d.data.hypotheses[0] : undefined;
    const what = eventWords[e.type] ?? e.type;
    lines.push(
      `  ${formatTime(e.atMs, opts.timeZone)}  ${what}${lead === undefined ? '' : `: ${lead.kind} — ${lead.summary}`}`,
    );
  }
  lines.push('', `The postmortem draft: faultline incidents ${i.id} --postmortem`);
  return `${lines.join('\n')}\n`;
}

function usage(message: string): ConfigError {
  return new ConfigError(message, { code: 'FL_ERR_USAGE' });
}

/** `faultline incidents [id] [--postmortem]`: the incident record in the terminal. */
export function incidentsCommand(
  setExit: (code: number) => void,
): CommandModule<object, IncidentsArgs> {
  return {
    command: 'incidents [id]',
    describe: 'List incidents, show one with its timeline, or print its postmortem draft',
    builder: (y) =>
      withCollectorClientOptions(y)
        .positional('id', { type: 'number', describe: 'An incident id: show that incident' })
        .option('postmortem', {
          type: 'boolean',
          default: false,
          describe: 'With an id: print its postmortem draft (Markdown)',
        })
        .option('json', {
          type: 'boolean',
          default: false,
          describe: 'Print the API document as JSON',
        })
        .option('limit', {
          type: 'number',
          default: 20,
          describe: 'How many incidents to list (1–1000), newest first',
        })
        .example('$0 incidents', 'The latest incidents')
        .example('$0 incidents 12 --postmortem > pm.md', 'A postmortem draft to edit'),
    handler: async (args) => {
      const client = collectorClient(args);
      const { id } = args;
      if (id !== undefined && (!Number.isSafeInteger(id) || id < 1)) {
        throw usage(`incident id: expected a positive integer (actual: ${String(id)})`);
      }
      if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > 1000) {
        throw usage(`--limit: expected a number from 1 to 1000 (actual: ${String(args.limit)})`);
      }
      if (args.postmortem && id === undefined) {
        throw usage('--postmortem needs an incident id: faultline incidents ID --postmortem');
      }
      const opts = { nowMs: Date.now() };
      try {
        if (id !== undefined && args.postmortem) {
          process.stdout.write(
            await fetchCollector(
              client.url,
              `api/v1/incidents/${id}/postmortem`,
              client.token,
              client.timeoutMs,
              'text/markdown',
            ),
          );
        } else if (id !== undefined) {
          const { body } = await fetchCollectorJson(
            client.url,
            `api/v1/incidents/${id}`,
            client.token,
            client.timeoutMs,
          );
          if (args.json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
          else process.stdout.write(formatIncident(readAs(IncidentDetailSchema, body), opts));
        } else {
          const { body } = await fetchCollectorJson(
            client.url,
            `api/v1/incidents?limit=${args.limit}`,
            client.token,
            client.timeoutMs,
          );
          if (args.json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
          else
            process.stdout.write(
              formatIncidentList(readAs(IncidentListSchema, body).incidents, opts),
            );
        }
      } catch (err) {
        if (!(err instanceof StatusError)) throw err;
        process.stderr.write(`faultline: ${err.message}\n`);
        setExit(exitCodes.failed);
        return;
      }
      setExit(exitCodes.ok);
    },
  };
}

function readAs<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const first = parsed.error.issues[0];
  throw new StatusError(
    `the collector's incident document is not one this version reads (${first ? `${first.path.join('.')}: ${first.message}` : 'invalid'}); try --json`,
  );
}
