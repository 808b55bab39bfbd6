import { randomInt } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { configErrorMap } from '../../lib/config-file.js';
import { FaultlineError } from '../../lib/errors.js';
import { ApiError } from '../../wire/errors.js';
import { fastCheck } from '../../wire/fast-check.js';
import { ReportBatchSchema, agentVersionOf } from '../../wire/report.js';
import type { ReportAck, ReportBatch } from '../../wire/report.js';
import {
  contentCoding,
  inflateLimited,
  inflatesWhole,
  mediaType,
  reportBodyParser,
} from './body.js';
import type { RouteContext } from './context.js';
import { countIssues, describeIssues, summariseIssues } from './query.js';
import { sendError } from './server.js';

/**
 * POST /api/v1/reports: an agent's report batch, checked (token, overload, media type,
 * backlog header, coding) before its body is read, then validated and handed to the core;
 * the outcome (accepted, duplicate, gap, conflict…) is the answer.
 */

/** The 503s of an overloaded collector, one per Retry-After (1–3 s, picked at random). */
const overloadedErrors: readonly ApiError[] = [1, 2, 3].map(
  (retryAfterS) =>
    new ApiError(
      'FL_ERR_OVERLOADED',
      `the collector is overloaded: retry in ${retryAfterS} s`,
      { retryAfterS },
      { 'retry-after': String(retryAfterS) },
    ),
);

/**
 * The `faultline-backlog` header of a report: how many batches the agent has spooled behind
 * this one (0 when absent). An agent replaying a backlog is late until it has caught up.
 */
function backlogOf(request: FastifyRequest): number {
  const raw = request.headers['faultline-backlog'];
  if (raw === undefined) return 0;
  if (typeof raw !== 'string' || !/^[0-9]{1,9}$/.test(raw)) {
    throw new ApiError(
      'FL_ERR_BAD_REQUEST',
      `faultline-backlog: expected the number of batches spooled behind this one, a whole number (actual: ${JSON.stringify(String(raw).slice(0, 100))})`,
      {},
      { connection: 'close' },
    );
  }
  return Number(raw);
}

function batchCounts(body: unknown): { results: number; summaries: number } {
  if (typeof body !== 'object' || body === null) return { results: 0, summaries: 0 };
  const b = body as { results?: unknown; summaries?: unknown };
  return {
    results: Array.isArray(b.results) ? b.results.length : 0,
    summaries: Array.isArray(b.summaries) ? b.summaries.length : 0,
  };
}

/** Ajv's compiled check of a report batch: zod's verdict at a tenth of its cost. */
const reportIsValid = fastCheck(ReportBatchSchema);

/** The body as a report batch, or FL_ERR_INVALID_REPORT naming every problem (zod's words). */
export function validReport(body: unknown): ReportBatch {
  if (reportIsValid(body)) return body;
  const parsed = ReportBatchSchema.safeParse(body, { error: configErrorMap, reportInput: true });
  if (parsed.success) return parsed.data;
  const issues = describeIssues(parsed.error.issues, ReportBatchSchema);
  throw new ApiError(
    'FL_ERR_INVALID_REPORT',
    `invalid report batch: ${summariseIssues(issues, countIssues(parsed.error.issues))}`,
    { issues },
  );
}

/** Registers the report route, in a scope of its own (its body parser). */
export function registerReports({
  app,
  core,
  opts,
  access,
  known,
  defaultJsonParse,
}: RouteContext): void {
  const maxBytes = opts.maxReportBytes;
  void app.register(async (scope) => {
    scope.decorateRequest('reportBody', null);
    scope.addContentTypeParser(
      'application/json',
      { parseAs: 'buffer', bodyLimit: maxBytes },
      reportBodyParser(maxBytes, defaultJsonParse),
    );

    scope.post(known('POST', '/api/v1/reports'), {
      onRequest: async (request, reply) => {
        access.credentials.set(request, access.requireAgentToken(request));
        // Answered here, before the body is read, with an error made once: under overload a
        // refusal must cost next to nothing.
        if (core.overloaded()) return sendError(reply, overloadedErrors[randomInt(0, 3)]!);
        const type = mediaType(request.headers['content-type']);
        if (type !== 'application/json') {
          throw new ApiError(
            'FL_ERR_MEDIA_TYPE',
            `expected content-type application/json (actual: ${JSON.stringify(type.slice(0, 100))})`,
            {},
            { connection: 'close' },
          );
        }
        backlogOf(request);
        const coding = contentCoding(request.headers['content-encoding']);
        if (coding !== 'identity' && coding !== 'gzip') {
          throw new ApiError(
            'FL_ERR_MEDIA_TYPE',
            `unsupported content-encoding ${JSON.stringify(coding.slice(0, 100))}: send gzip or identity`,
            {},
            { connection: 'close' },
          );
        }
      },
      preParsing: async (request, _reply, payload) =>
        contentCoding(request.headers['content-encoding']) === 'gzip' && !inflatesWhole(request)
          ? inflateLimited(payload, maxBytes)
          : payload,
      handler: async (request): Promise<ReportAck> => {
        const counts = batchCounts(request.body);
        const cap = opts.maxResultsPerBatch;
        if (cap !== undefined && (counts.results > cap || counts.summaries > cap)) {
          throw new ApiError(
            'FL_ERR_TOO_LARGE',
            `the batch holds ${counts.results} results and ${counts.summaries} summaries; this collector takes at most ${cap} of each per batch: send smaller batches`,
          );
        }
        const batch = validReport(request.body);
        const bad = batch.results.findIndex((r) => r.agent !== batch.agent);
        if (bad >= 0) {
          throw new ApiError(
            'FL_ERR_INVALID_REPORT',
            `invalid report batch: results[${bad}].agent ${JSON.stringify(batch.results[bad]!.agent)} is not the batch's agent ${JSON.stringify(batch.agent)}: a batch carries only its own agent's results`,
            {
              issues: [
                {
                  path: `results[${bad}].agent`,
                  message: `expected the batch's agent ${JSON.stringify(batch.agent)}`,
                },
              ],
            },
          );
        }
        const credential = access.credentials.get(request);
        let outcome;
        try {
          outcome = core.ingest(
            batch,
            Date.now(),
            request.reportBody ?? undefined,
            credential,
            backlogOf(request),
            agentVersionOf(request.headers['user-agent']),
          );
        } catch (err) {
          // The store failed (disk full, I/O error): nothing was stored, the agent keeps the
          // batch spooled and retries; say so instead of a bare 500.
          if (!(err instanceof FaultlineError && err.code === 'FL_ERR_STORE')) throw err;
          request.log.error({ err }, 'report not stored');
          const retryAfterS = randomInt(5, 16);
          throw new ApiError(
            'FL_ERR_STORE',
            `the collector cannot store reports right now (${err.message}); retry in ${retryAfterS} s`,
            { retryAfterS },
            { 'retry-after': String(retryAfterS) },
          );
        }
        request.log.debug(
          {
            agent: batch.agent,
            seq: batch.seq,
            results: batch.results.length,
            outcome: outcome.status,
          },
          'report',
        );
        switch (outcome.status) {
          case 'accepted':
          case 'duplicate':
            return { acceptedSeq: outcome.acceptedSeq, duplicate: outcome.status === 'duplicate' };
          case 'gap':
            throw new ApiError(
              'FL_ERR_SEQ_GAP',
              `seq ${batch.seq} skips ahead: accepted up to ${outcome.acceptedSeq}, expected ${outcome.expectedSeq}; resend from there or declare the dropped batches`,
              { expectedSeq: outcome.expectedSeq, acceptedSeq: outcome.acceptedSeq },
            );
          case 'conflict':
            throw new ApiError('FL_ERR_AGENT_CONFLICT', outcome.message, {
              acceptedSeq: outcome.acceptedSeq,
              ...(outcome.freeAtMs === undefined ? {} : { freeAtMs: outcome.freeAtMs }),
            });
          case 'forbidden':
            throw new ApiError('FL_ERR_FORBIDDEN', outcome.message);
          case 'implausible':
            throw new ApiError('FL_ERR_SEQ_IMPLAUSIBLE', outcome.message, {
              acceptedSeq: outcome.acceptedSeq,
            });
        }
      },
    });
  });
}
