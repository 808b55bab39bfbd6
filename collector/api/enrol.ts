import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { configErrorMap } from '../../lib/config-file.js';
import { ApiError } from '../../wire/errors.js';
import { ReportBatchSchema } from '../../wire/report.js';
import { digestOf, forbiddenReason } from '../auth.js';
import { enrolBodyParser } from './body.js';
import type { RouteContext } from './context.js';
import { countIssues, describeIssues, summariseIssues } from './query.js';

/** POST /api/v1/enrol: a bootstrap token exchanged for a per-agent secret bound to one name and id. */

/** Largest enrolment body: two names. */
const maxEnrolBytes = 4096;

const EnrolBodySchema = z
  .object({
    agent: ReportBatchSchema.shape.agent,
    agentId: ReportBatchSchema.shape.agentId,
  })
  .strict();

/** Registers the enrolment route, in a scope of its own (its body parser). */
export function registerEnrol({ app, core, access, known, defaultJsonParse }: RouteContext): void {
  void app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/json',
      { parseAs: 'string', bodyLimit: maxEnrolBytes },
      enrolBodyParser(defaultJsonParse),
    );
    scope.post(known('POST', '/api/v1/enrol'), {
      onRequest: async (request) => {
        const credential = access.requireToken(request);
        if (credential.role !== 'bootstrap') {
          throw new ApiError(
            'FL_ERR_NOT_BOOTSTRAP',
            `${credential.label} is not a bootstrap token: it reports directly; use it for reports and plans`,
          );
        }
        access.admit(access.enrolBuckets, credential, 'enrol');
        access.credentials.set(request, credential);
      },
      handler: async (request, reply) => {
        const credential = access.credentials.get(request)!;
        const parsed = EnrolBodySchema.safeParse(request.body, { error: configErrorMap });
        if (!parsed.success) {
          const issues = describeIssues(parsed.error.issues, EnrolBodySchema);
          throw new ApiError(
            'FL_ERR_BAD_REQUEST',
            `invalid enrolment: ${summariseIssues(issues, countIssues(parsed.error.issues))}`,
            { issues },
          );
        }
        const { agent, agentId } = parsed.data;
        const reason = forbiddenReason(credential, agent);
        if (reason !== undefined) throw new ApiError('FL_ERR_FORBIDDEN', reason);
        const secret = randomBytes(32).toString('base64url');
        const id = randomBytes(8).toString('hex');
        const outcome = core.enrol(
          { id, agent, agentId },
          digestOf(secret),
          credential,
          Date.now(),
        );
        if (outcome.status === 'conflict') {
          throw new ApiError('FL_ERR_AGENT_CONFLICT', outcome.message, {
            ...(outcome.freeAtMs === undefined ? {} : { freeAtMs: outcome.freeAtMs }),
          });
        }
        request.log.info({ agent, agentId, credential: id, by: credential.id }, 'agent enrolled');
        return reply
          .code(201)
          .header('cache-control', 'no-store')
          .send({ agent, agentId, token: secret });
      },
    });
  });
}
