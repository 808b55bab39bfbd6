import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { defaultCollectorListen, defaultDataDir, viewerTokenFile } from '../collector/config.js';
import { ConfigError, errorCodeOf } from '../lib/errors.js';
import { DiagnosisSchema, type Diagnosis, type Hypothesis } from '../wire/diagnosis.js';
import { parseApiErrorBody } from '../wire/errors.js';
import { noPaint, paint, useColor, withColorOption, type Paint } from './color.js';
import { exitCodes } from './exit-codes.js';

interface StatusArgs extends CollectorClientArgs {
  json: boolean;
  color: boolean | undefined;
}

/**
 * What `faultline status` exits with, so a script can gate on it: 0 healthy, 1 not healthy
 * (settling included), 2 bad usage, 3 no diagnosis to judge (the collector unreachable, the
 * token refused, an answer this version cannot read). With --json as without.
 */
export const statusExitCodes = {
  healthy: exitCodes.ok,
  unhealthy: exitCodes.failed,
  usage: exitCodes.usage,
  unavailable: exitCodes.unavailable,
} as const;

/** Where `faultline status` asks when not told: the embedded-defaults collector's address. */
export const defaultStatusUrl = `http://${defaultCollectorListen}`;

/** Examples shown per hypothesis; the document may hold more. */
const shownExamples = 3;

/** Why asking the collector failed: said to the operator as is (`status` exits 3, `incidents` 1). */
export class StatusError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StatusError';
  }
}

function usage(message: string): ConfigError {
  return new ConfigError(message, { code: 'FL_ERR_USAGE' });
}

/** `--collector` as a base URL without a trailing slash; a usage error when it is not http(s). */
export function parseCollectorUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage(
      `--collector: expected an http(s) URL such as ${defaultStatusUrl} (actual: ${JSON.stringify(text)})`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usage(`--collector: expected an http(s) URL (actual scheme: ${url.protocol})`);
  }
  return url;
}

function isLoopback(url: URL): boolean {
  const h = url.hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** The environment variable `faultline status` and `incidents` take a viewer token from. */
export const viewerTokenEnv = 'FAULTLINE_VIEWER_TOKEN';

/**
 * The viewer token to send: `--token`, else the file `--token-file`, else
 * FAULTLINE_VIEWER_TOKEN, else — for a collector on this host only, so a local secret never
 * goes to another host — the embedded-defaults viewer token in `<data-dir>/viewer-token`
 * (`--data-dir`, default ./faultline-data: where `faultline collector` keeps it). Undefined
 * when there is none: a collector with `readAccess: open` still answers. An agent token is
 * never sent: the collector refuses it on the read endpoints. Throws a usage error when both
 * flags are given or the token file cannot be read.
 */
export function resolveToken(
  args: { readonly token?: string; readonly tokenFile?: string; readonly dataDir: string },
  url: URL,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const flag = args.token !== undefined && args.token !== '' ? args.token : undefined;
  if (flag !== undefined && args.tokenFile !== undefined) {
    throw usage('--token and --token-file are mutually exclusive: keep one');
  }
  if (flag !== undefined) return flag;
  if (args.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(args.tokenFile, 'utf8').trim();
    } catch (err) {
      throw usage(
        `--token-file: cannot read ${args.tokenFile}: ${errorCodeOf(err) ?? String(err)}`,
      );
    }
    if (text === '') throw usage(`--token-file: ${args.tokenFile} is empty`);
    return text;
  }
  const fromEnv = env[viewerTokenEnv];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (!isLoopback(url)) return undefined;
  try {
    const token = readFileSync(join(resolve(args.dataDir), viewerTokenFile), 'utf8').trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/**
 * GETs `path` (relative to the collector's base URL, e.g. `api/v1/incidents`) and returns
 * the body text. Throws StatusError saying what went wrong and what to do: unreachable,
 * token refused, not found (with the API's own message when it sent one), an error answer.
 */
export async function fetchCollector(
  base: URL,
  path: string,
  token: string | undefined,
  timeoutMs: number,
  accept = 'application/json',
): Promise<string> {
  const url = new URL(path, base.href.endsWith('/') ? base.href : `${base.href}/`);
  const where = base.href.replace(/\/$/, '');
  let res: Response;
  try {
    res = await fetch(url, {
      headers: {
        accept,
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const code = errorCodeOf(err);
    const why =
      code !== undefined
        ? code
        : err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')
          ? `no answer within ${timeoutMs} ms`
          : err instanceof Error
            ? err.message
            : String(err);
    throw new StatusError(
      `cannot reach the collector at ${where}: ${why}. Is \`faultline collector\` running there? Pass its address with --collector URL.`,
      { cause: err },
    );
  }
  const text = await res.text();
  if (res.status === 401 || res.status === 403) {
    const e = parseApiErrorBody(text);
    throw new StatusError(
      `the collector at ${where} refused the token (${res.status}${e ? ` ${e.code}: ${e.message}` : ''}). ${token === undefined ? `Pass a viewer token with --token, --token-file or ${viewerTokenEnv}.` : `Check --token / --token-file / ${viewerTokenEnv}: it must be a viewer token.`}`,
    );
  }
  if (res.status === 404) {
    const e = parseApiErrorBody(text);
    throw new StatusError(
      // The code and `what` say whether the endpoint or only the thing asked for is missing
      // (a collector older than `what` is taken at its word: its message says which).
      e !== undefined && e.code === 'FL_ERR_NOT_FOUND' && e.what !== 'endpoint'
        ? `the collector at ${where} says: ${e.message}`
        : `${where} has no /${path} (404): is it a Faultline collector, and new enough?`,
    );
  }
  if (res.status !== 200) {
    const e = parseApiErrorBody(text);
    throw new StatusError(
      `the collector at ${where} answered ${res.status}${e ? ` ${e.code}: ${e.message}` : `: ${text.slice(0, 200)}`}`,
    );
  }
  return text;
}

/** {@link fetchCollector} for a JSON document: the text and the parsed body. */
export async function fetchCollectorJson(
  base: URL,
  path: string,
  token: string | undefined,
  timeoutMs: number,
): Promise<{ text: string; body: unknown }> {
  const text = await fetchCollector(base, path, token, timeoutMs);
  try {
    return { text, body: JSON.parse(text) as unknown };
  } catch (err) {
    throw new StatusError(
      `the collector at ${base.href.replace(/\/$/, '')} answered 200 with a body that is not JSON`,
      { cause: err },
    );
  }
}

/** GETs `/api/v1/diagnosis`: see {@link fetchCollector}. */
export function fetchDiagnosis(
  base: URL,
  token: string | undefined,
  timeoutMs: number,
): Promise<{ text: string; body: unknown }> {
  return fetchCollectorJson(base, 'api/v1/diagnosis', token, timeoutMs);
}

/** Formatting options of {@link formatStatus}. */
export interface FormatOptions {
  /** "Now" for ages (epoch ms). */
  readonly nowMs: number;
  /** IANA time zone for the times shown (default: this host's). */
  readonly timeZone?: string;
  /** Shown in the header line. */
  readonly source?: string;
  /** Colours the verdict, the hypotheses' kinds and the ruled-out marks (default: none). */
  readonly paint?: Paint;
}

/** `4 s`, `3 min`, `2 h 5 min`, `3 d 4 h`; `in the future` when the clocks disagree. */
export function formatAge(ms: number): string {
  if (ms < 0) return 'in the future (clock skew)';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
  const d = Math.floor(h / 24);
  return h % 24 === 0 ? `${d} d` : `${d} d ${h % 24} h`;
}

/** `2026-11-24 01:48:10` in the given (or this host's) time zone. */
export function formatTime(ms: number, timeZone?: string): string {
  // sv-SE writes ISO-like dates: YYYY-MM-DD HH:MM:SS.
  return new Intl.DateTimeFormat('sv-SE', {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
    ...(timeZone === undefined ? {} : { timeZone }),
  }).format(new Date(ms));
}

function countsLine(counts: Readonly<Record<string, number>>): string {
  const parts = Object.entries(counts)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
    .map(([cls, n]) => `${cls} ${n}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

function hypothesisBlock(h: Hypothesis, rank: number, opts: FormatOptions): string[] {
  const p = opts.paint ?? noPaint;
  const lines = [
    `${p(`${rank}. ${h.kind}`, 'bold')}  (confidence ${Math.round(h.confidence * 100)}%)`,
    `   ${h.summary}`,
    `   since:      ${formatTime(h.since, opts.timeZone)} (${formatAge(opts.nowMs - h.since)} ago)`,
  ];
  if (h.components.length > 0) lines.push(`   components: ${h.components.join(', ')}`);
  for (const [i, g] of h.groups.entries()) {
    const label = i === 0 ? 'groups:    ' : '           ';
    lines.push(`   ${label} ${g.name !== undefined ? `${g.name}: ` : ''}${g.members.join(', ')}`);
  }
  if (h.cutLabel !== undefined) {
    lines.push(`   cut at:     ${h.cutLabel.key} = ${h.cutLabel.values.join(', ')}`);
  }
  const total = Object.values(h.evidence.counts).reduce((a, b) => a + b, 0);
  lines.push(`   evidence:   ${total} paths: ${countsLine(h.evidence.counts)}`);
  for (const ex of h.evidence.examples.slice(0, shownExamples)) lines.push(`     ${ex}`);
  const more = h.evidence.examples.length - shownExamples;
  if (more > 0) lines.push(`     … ${more} more example${more === 1 ? '' : 's'} (--json)`);
  return lines;
}

/** The terminal view of a diagnosis document. */
export function formatStatus(d: Diagnosis, opts: FormatOptions): string {
  const p = opts.paint ?? noPaint;
  const lines: string[] = [];
  const computed =
    d.computedAtMs > 0
      ? `computed ${formatTime(d.computedAtMs, opts.timeZone)} (${formatAge(opts.nowMs - d.computedAtMs)} ago)`
      : 'not computed yet';
  lines.push(`Faultline diagnosis${opts.source ? ` from ${opts.source}` : ''}, ${computed}`, '');
  const n = d.hypotheses.length;
  const many = `${n} hypothes${n === 1 ? 'is' : 'es'}`;
  if (n === 0) {
    lines.push(
      d.healthy
        ? p('healthy: no fault found on any path', 'green')
        : p('NOT HEALTHY (no hypothesis)', 'red', 'bold'),
    );
  } else {
    lines.push(
      d.healthy
        ? p(`healthy, with ${many} worth a look:`, 'green')
        : p(`NOT HEALTHY: ${many}, most likely first`, 'red', 'bold'),
    );
    if (d.settling === true) {
      const since =
        d.settlingSinceMs === undefined
          ? ''
          : ` (changes arriving for ${Math.max(0, Math.round(opts.nowMs - d.settlingSinceMs))} ms)`;
      lines.push(
        p(
          `SETTLING${since}: the fault is still arriving; this answer may change within a second, alerts wait for it`,
          'yellow',
        ),
      );
    }
    lines.push('');
    for (const [i, h] of d.hypotheses.entries()) {
      lines.push(...hypothesisBlock(h, i + 1, opts), '');
    }
    if (lines.at(-1) === '') lines.pop();
  }
  const ruledOut = d.ruledOut.filter((r) => r.canBeRuledOut);
  const notRuledOut = d.ruledOut.filter((r) => !r.canBeRuledOut);
  if (ruledOut.length > 0) {
    lines.push('', 'Ruled out:');
    for (const r of ruledOut) lines.push(`  ${p('✓', 'green')} ${r.component}: ${r.reason}`);
  }
  if (notRuledOut.length > 0) {
    lines.push('', 'Cannot be ruled out:');
    for (const r of notRuledOut) lines.push(`  ${p('?', 'yellow')} ${r.component}: ${r.reason}`);
  }
  return lines.join('\n') + '\n';
}

/** The flags every command that asks the collector takes. */
export interface CollectorClientArgs {
  collector?: string;
  token?: string;
  'token-file'?: string;
  'data-dir': string;
  timeout: number;
}

/** Adds --collector, --token, --token-file, --data-dir and --timeout. */
export function withCollectorClientOptions<T>(y: Argv<T>): Argv<T & CollectorClientArgs> {
  return y
    .option('collector', {
      type: 'string',
      describe: `Collector base URL (default: FAULTLINE_COLLECTOR, else ${defaultStatusUrl}, where \`faultline collector\` listens on embedded defaults)`,
    })
    .option('token', {
      type: 'string',
      describe: `Viewer token to send (default: ${viewerTokenEnv}; for a collector on this host, the ${viewerTokenFile} in --data-dir). Agent tokens cannot read`,
    })
    .option('token-file', {
      type: 'string',
      describe: 'A file holding the viewer token (kept out of ps and shell history)',
    })
    .option('data-dir', {
      type: 'string',
      default: defaultDataDir,
      describe: `Data dir of a collector on embedded defaults, for its ${viewerTokenFile}`,
    })
    .option('timeout', {
      type: 'number',
      default: 5000,
      describe: 'How long to wait for the collector (ms)',
    });
}

/** The collector to ask and how, from the flags; a usage error names a bad flag. */
export function collectorClient(args: CollectorClientArgs): {
  url: URL;
  token: string | undefined;
  timeoutMs: number;
} {
  if (!Number.isFinite(args.timeout) || args.timeout < 1) {
    throw usage(`--timeout: expected milliseconds ≥ 1 (actual: ${String(args.timeout)})`);
  }
  const url = parseCollectorUrl(
    args.collector ?? (process.env.FAULTLINE_COLLECTOR || defaultStatusUrl),
  );
  const token = resolveToken(
    { token: args.token, tokenFile: args['token-file'], dataDir: args['data-dir'] },
    url,
  );
  return { url, token, timeoutMs: args.timeout };
}

/** `faultline status`: the collector's diagnosis in the terminal, or its JSON document. */
export function statusCommand(setExit: (code: number) => void): CommandModule<object, StatusArgs> {
  return {
    command: 'status',
    describe: "Show the collector's diagnosis: what is broken, since when, and what is ruled out",
    builder: (y) =>
      withColorOption(withCollectorClientOptions(y))
        .option('json', {
          type: 'boolean',
          default: false,
          describe: 'Print the API document (GET /api/v1/diagnosis) as JSON',
        })
        .example('$0 status', 'Ask the collector on this host (npm start)')
        .example('$0 status --collector https://collector:7070 --json', 'The document, for jq')
        .example(
          '$0 status || page-someone',
          'Exit 0 healthy, 1 not healthy, 2 bad usage, 3 no answer',
        )
        .epilogue(
          'Exit status: 0 healthy, 1 not healthy (settling included), 2 bad usage, 3 no diagnosis to judge (collector unreachable, token refused, an answer this version cannot read).',
        ),
    handler: async (args) => {
      const { url, token, timeoutMs } = collectorClient(args);
      let answer: { text: string; body: unknown };
      try {
        answer = await fetchDiagnosis(url, token, timeoutMs);
      } catch (err) {
        if (!(err instanceof StatusError)) throw err;
        process.stderr.write(`faultline: ${err.message}\n`);
        setExit(statusExitCodes.unavailable);
        return;
      }
      if (args.json) {
        process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`);
        const healthy = (answer.body as { healthy?: unknown } | null)?.healthy;
        setExit(
          healthy === true
            ? statusExitCodes.healthy
            : healthy === false
              ? statusExitCodes.unhealthy
              : statusExitCodes.unavailable,
        );
        return;
      }
      const parsed = DiagnosisSchema.safeParse(answer.body);
      if (!parsed.success) {
        const first = parsed.error.issues[0];
        process.stderr.write(
          `faultline: the collector's diagnosis document is not one this version reads (${first ? `${first.path.join('.')}: ${first.message}` : 'invalid'}); try --json\n`,
        );
        setExit(statusExitCodes.unavailable);
        return;
      }
      process.stdout.write(
        formatStatus(parsed.data, {
          nowMs: Date.now(),
          source: url.href.replace(/\/$/, ''),
          paint: useColor(args.color, process.stdout) ? paint : noPaint,
        }),
      );
      setExit(parsed.data.healthy ? statusExitCodes.healthy : statusExitCodes.unhealthy);
    },
  };
}
