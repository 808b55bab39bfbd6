import { z } from 'zod';
import { labelValueSchema, wireLabelNameSchema } from '../lib/labels.js';
import { FailureClassSchema, ProbeResultSchema } from './result.js';

/**
 * What agents send (`POST /api/v1/reports`, bearer token, gzip allowed). A healthy path
 * costs little on the wire: full results only for state changes and failures, summaries per
 * period for the rest.
 */

/** Per path, per period: what happened, without every success in full. */
export const PathSummarySchema = z
  .object({
    /** Plan target name. */
    target: z.string().min(1).max(512),
    kind: z.string().min(1).max(32),
    fromMs: z.number().int().nonnegative(),
    toMs: z.number().int().nonnegative(),
    count: z.number().int().nonnegative(),
    ok: z.number().int().nonnegative(),
    /** Failures by class. */
    failures: z.partialRecord(FailureClassSchema, z.number().int().positive()),
    /** Latency of the successful probes in the period (ms): the kind's main timing. */
    latencyMs: z
      .object({
        min: z.number().nonnegative(),
        p50: z.number().nonnegative(),
        p90: z.number().nonnegative(),
        p99: z.number().nonnegative(),
        max: z.number().nonnegative(),
      })
      .strict()
      .optional(),
    /** ICMP: packets lost / sent in the period. */
    lossRatio: z.number().min(0).max(1).optional(),
    /**
     * ICMP: packets sent in the period, the sample `lossRatio` is of (the collector tests the
     * loss against background loss with it). Absent: one per probe is assumed.
     */
    echoes: z.number().int().positive().optional(),
    lastClass: FailureClassSchema,
    /** Sequence number of the last result in the period. */
    lastSeq: z.number().int().nonnegative(),
  })
  .strict();
export type PathSummary = z.infer<typeof PathSummarySchema>;

export const ReportBatchSchema = z
  .object({
    /** Stable id of the agent (generated once, kept in its state dir). */
    agentId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
    /** Agent name: the same grammar the plan endpoint accepts. */
    agent: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'expected an agent name of letters, digits and . _ : -'),
    labels: z.record(wireLabelNameSchema, labelValueSchema).optional(),
    /** Batch sequence number per agentId: 1, 2, 3, … assigned when the batch is spooled. */
    seq: z.number().int().positive(),
    /** Batches the agent had to drop (spool bound) right before this one; the collector
     * accepts the gap in `seq` only when it is declared here. */
    dropped: z
      .object({ batches: z.number().int().positive(), results: z.number().int().nonnegative() })
      .strict()
      .optional(),
    createdAtMs: z.number().int().nonnegative(),
    planVersion: z.string().max(128).optional(),
    /** State changes and failures, in full, in probe order. */
    results: z.array(ProbeResultSchema).max(50_000),
    summaries: z.array(PathSummarySchema).max(50_000),
  })
  .strict();
export type ReportBatch = z.infer<typeof ReportBatchSchema>;

/** The collector's answer to a report. */
export const ReportAckSchema = z
  .object({
    /** Highest seq accepted for this agent, contiguous (the watermark). */
    acceptedSeq: z.number().int().nonnegative(),
    /** True when this batch had already been accepted (a retry): nothing changed. */
    duplicate: z.boolean(),
  })
  .strict();
export type ReportAck = z.infer<typeof ReportAckSchema>;

/** The `user-agent` prefix of every agent request: `faultline-agent/<version>`. */
export const agentUserAgentPrefix = 'faultline-agent/';

/** The `user-agent` an agent of this version sends. */
export function agentUserAgent(version: string): string {
  return `${agentUserAgentPrefix}${version}`;
}

/**
 * The agent's version from a request's `user-agent`, or undefined when it is absent or not
 * an agent's (a proxy's, curl's, an older agent's): lenient, never an error. A version is
 * 1–64 characters of `[0-9A-Za-z.+-]` (semver and its pre-release and build parts).
 */
export function agentVersionOf(userAgent: string | undefined): string | undefined {
  if (userAgent === undefined || !userAgent.startsWith(agentUserAgentPrefix)) return undefined;
  const m = /^([0-9A-Za-z.+-]{1,64})(?:\s|$)/.exec(userAgent.slice(agentUserAgentPrefix.length));
  return m === null ? undefined : m[1];
}
