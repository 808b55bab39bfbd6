import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { parseQuery } from './api/query.js';
import type { ExtraRouteContext } from './api/options.js';
import type { AlertLink } from './alert-link.js';
import { streamTo } from './events.js';
import type { EventHub } from './events.js';
import type { MatrixDocument } from './matrix-view.js';
import type { Transition } from './paths/checkpoint.js';
import { mainTiming } from '../probes/registry.js';
import { ApiError, notFound } from '../wire/errors.js';
import type { FailureClass, ProbeResult } from '../wire/result.js';

/**
 * The web dashboard at `/`: a Preact + htm app of plain ES modules (collector/dashboard/,
 * copied beside this file by the build), its libraries served from the package's own
 * node_modules — nothing from a CDN, nothing downloaded at run time. The page itself holds
 * no data and is open; everything it shows comes from the read API with a viewer token
 * (or none, with `readAccess: open`), like any other reader's.
 *
 * Routes added here (besides the files): `GET /api/v1/matrix` (the compact matrix),
 * `GET /api/v1/paths/history` (one path's state changes), `GET /api/v1/paths/results` (its
 * newest stored results: failures and state changes), `GET /api/v1/alerts/:fingerprint`
 * (an alert link's incident) and `GET /api/v1/events` (the live feed, collector/events.ts).
 */

/** What the dashboard's routes read from the collector. */
export interface DashboardSource {
  /** The live feed's hub. */
  readonly events: EventHub;
  /** The compact path matrix (collector/matrix-view.ts). */
  matrix(): MatrixDocument;
  /** The incident of an alert, by the fingerprint of its link. */
  alertIncident(fingerprint: string): AlertLink | undefined;
  /** The newest state changes of one path, newest first. */
  pathHistory(agent: string, target: string, limit: number): Transition[];
  /**
   * The newest stored results of one path, newest first: only failures and state changes
   * are stored in full (successes arrive summarised), so these are the last stored ones.
   */
  pathResults(agent: string, target: string, limit: number): ProbeResult[];
}

/** One stored result as the hover shows it. */
export interface PathResultView {
  readonly startedAtMs: number;
  readonly class: FailureClass;
  /** The kind's main timing (probes/registry.ts `mainTiming`) and its value, when measured. */
  readonly timing: string;
  readonly ms?: number;
  readonly totalMs: number;
  readonly error?: { readonly code?: string; readonly message: string };
}

function resultView(r: ProbeResult): PathResultView {
  const timing = mainTiming(r.kind);
  const ms = r.timings[timing];
  return {
    startedAtMs: r.startedAtMs,
    class: r.class,
    timing,
    ...(ms === undefined ? {} : { ms }),
    totalMs: r.timings.totalMs,
    ...(r.error === undefined ? {} : { error: r.error }),
  };
}

/** The app's files: collector/dashboard/ (from sources) or dist/collector/dashboard/. */
export const dashboardDir = fileURLToPath(new URL('./dashboard/', import.meta.url));

/** The libraries the app imports, by the name it imports them as (its import map). */
const vendorFiles: Readonly<Record<string, readonly [string, string]>> = {
  'preact.mjs': ['preact', 'dist/preact.module.js'],
  'preact-hooks.mjs': ['preact', 'hooks/dist/hooks.module.js'],
  'htm.mjs': ['htm', 'dist/htm.module.js'],
  'uplot.mjs': ['uplot', 'dist/uPlot.esm.js'],
  'uplot.css': ['uplot', 'dist/uPlot.min.css'],
  'marked.mjs': ['marked', 'lib/marked.esm.js'],
  'purify.mjs': ['dompurify', 'dist/purify.es.mjs'],
};

const contentTypes: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** Where Node would find a package from here (its directory), or undefined. */
function packageDir(name: string): string | undefined {
  const require = createRequire(import.meta.url);
  for (const dir of require.resolve.paths(name) ?? []) {
    if (existsSync(join(dir, name, 'package.json'))) return join(dir, name);
  }
  return undefined;
}

function staticFile(path: string): StaticFile {
  const body = readFileSync(path);
  return {
    body,
    type: contentTypes[extname(path)] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
  };
}

/**
 * Every file the dashboard serves, read once at start: the app's own (a fixed set, so no
 * request path ever reaches the file system) and the vendor libraries.
 */
export function loadDashboardFiles(dir = dashboardDir): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(dir)) {
    throw new Error(`the dashboard's files are missing at ${dir}: run \`npm run build\``);
  }
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isFile() && contentTypes[extname(name)] !== undefined) {
      files.set(`/ui/${name}`, staticFile(path));
    }
  }
  for (const [served, [pkg, file]] of Object.entries(vendorFiles)) {
    const root = packageDir(pkg);
    if (root === undefined) throw new Error(`the dashboard needs the package ${pkg}: npm install`);
    files.set(`/ui/vendor/${served}`, staticFile(join(root, file)));
  }
  return files;
}

const fingerprintText = z
  .string()
  .regex(/^[0-9a-f]{16}$/, { error: 'expected an alert fingerprint (16 hex digits)' });
const AlertParamsSchema = z.object({ fingerprint: fingerprintText }).strict();
const EmptyQuerySchema = z.object({}).strict();
const agentText = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, { error: 'expected an agent name' });
const targetText = z
  .string()
  .regex(/^\P{Cc}{1,300}$/u, { error: 'expected a plan target (1–300 characters)' });
const HistoryQuerySchema = z
  .object({
    agent: agentText,
    target: targetText,
    limit: z
      .string()
      .regex(/^[1-9][0-9]{0,2}$/, { error: 'expected a number from 1 to 999' })
      .optional(),
  })
  .strict();
const ResultsQuerySchema = z
  .object({
    agent: agentText,
    target: targetText,
    limit: z
      .string()
      .regex(/^(?:[1-9][0-9]?|100)$/, { error: 'expected a number from 1 to 100' })
      .optional(),
  })
  .strict();

/** Registers the dashboard's files and routes on the API. */
export function registerDashboard(
  app: FastifyInstance,
  source: DashboardSource,
  ctx: ExtraRouteContext,
  files: Map<string, StaticFile> = loadDashboardFiles(),
): void {
  const index = files.get('/ui/index.html');
  if (index === undefined) throw new Error("the dashboard's index.html is missing");
  // The import map is the page's one inline script: allowed by its hash, nothing else is.
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(index.body.toString());
  const mapHash =
    importMap === null
      ? ''
      : ` 'sha256-${createHash('sha256').update(importMap[1]!).digest('base64')}'`;
  const csp = [
    "default-src 'self'",
    `script-src 'self'${mapHash}`,
    "img-src 'self' data:",
    // uPlot and Preact set element styles.
    "style-src 'self' 'unsafe-inline'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ');

  const send = (request: FastifyRequest, reply: FastifyReply, f: StaticFile): FastifyReply => {
    void reply.header('etag', f.etag).header('x-content-type-options', 'nosniff');
    if (request.headers['if-none-match'] === f.etag) return reply.code(304).send();
    return reply.type(f.type).send(f.body);
  };
  const page = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    // The page runs only our own modules; markdown is sanitised before it is shown.
    void reply.header('content-security-policy', csp).header('cache-control', 'no-cache');
    return send(request, reply, index);
  };
  // `/?alert=<fingerprint>` is an alert's link: the app reads the query itself.
  app.get(ctx.known('GET', '/'), async (request, reply) => page(request, reply));
  for (const [url, f] of files) {
    app.get(ctx.known('GET', url), async (request, reply) => {
      void reply.header('cache-control', 'no-cache');
      return send(request, reply, f);
    });
  }

  app.get(ctx.known('GET', '/api/v1/matrix'), ctx.readHook, async (request, reply) => {
    parseQuery(EmptyQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return source.matrix();
  });

  app.get(ctx.known('GET', '/api/v1/paths/history'), ctx.readHook, async (request, reply) => {
    const q = parseQuery(HistoryQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return {
      agent: q.agent,
      target: q.target,
      transitions: source
        .pathHistory(q.agent, q.target, q.limit === undefined ? 200 : Number(q.limit))
        .map(({ agentId: _id, ...t }) => t),
    };
  });

  app.get(ctx.known('GET', '/api/v1/paths/results'), ctx.readHook, async (request, reply) => {
    const q = parseQuery(ResultsQuerySchema, request.query);
    void reply.header('cache-control', 'no-cache');
    return {
      agent: q.agent,
      target: q.target,
      results: source
        .pathResults(q.agent, q.target, q.limit === undefined ? 10 : Number(q.limit))
        .map(resultView),
    };
  });

  app.get('/api/v1/alerts/:fingerprint', ctx.readHook, async (request, reply) => {
    parseQuery(EmptyQuerySchema, request.query);
    const parsed = AlertParamsSchema.safeParse(request.params);
    if (!parsed.success) {
      const raw = String((request.params as { fingerprint?: unknown }).fingerprint);
      throw new ApiError(
        'FL_ERR_BAD_REQUEST',
        `invalid alert fingerprint ${JSON.stringify(raw.slice(0, 40))}: expected 16 hex digits`,
      );
    }
    const link = source.alertIncident(parsed.data.fingerprint);
    if (link === undefined) {
      throw notFound(
        'alert',
        `no incident has an alert with fingerprint ${parsed.data.fingerprint}`,
      );
    }
    void reply.header('cache-control', 'no-cache');
    return link;
  });

  const streams = new Set<() => void>();
  app.get(ctx.known('GET', '/api/v1/events'), ctx.readHook, async (request, reply) => {
    parseQuery(EmptyQuerySchema, request.query);
    reply.hijack();
    const end = streamTo(source.events, reply.raw);
    streams.add(end);
    reply.raw.on('close', () => streams.delete(end));
  });
  // Open streams would hold the server's close forever.
  app.addHook('preClose', async () => {
    for (const end of streams) end();
    streams.clear();
  });
}
