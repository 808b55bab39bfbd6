import { z } from 'zod';

/**
 * The diagnosis document (`GET /api/v1/diagnosis`): what the collector believes is wrong,
 * ranked, and what it can rule out. Produced by collector/localise; read by alerts, the
 * dashboard and `faultline status`.
 */

/** DESIGN.md's fault kinds, by their exact names. */
export const faultKinds = [
  'network_partition',
  'host_unreachable',
  'service_down',
  'service_unresponsive',
  'path_blocked',
  'source_fault',
  'packet_loss',
  'dns_failure',
  'agent_silent',
  'mtu_mismatch',
  'unexplained',
] as const;

export const FaultKindSchema = z.enum(faultKinds);
export type FaultKind = z.infer<typeof FaultKindSchema>;

/** A set of hosts that reach each other (or, for a source fault, the failing sources). */
export const DiagnosisGroupSchema = z
  .object({
    /** Human name of the group, e.g. `switch=sw-2`. */
    name: z.string().max(256).optional(),
    /** Component (host) names, sorted. */
    members: z.array(z.string().min(1).max(128)),
  })
  .strict();
export type DiagnosisGroup = z.infer<typeof DiagnosisGroupSchema>;

/** The topology label that separates the groups, with the values on the cut-off side. */
export const CutLabelSchema = z
  .object({
    key: z.string().min(1).max(128),
    values: z.array(z.string().max(256)).min(1),
  })
  .strict();
export type CutLabel = z.infer<typeof CutLabelSchema>;

export const HypothesisEvidenceSchema = z
  .object({
    /** Failing paths by failure class (plus e.g. `ok` paths that support the hypothesis). */
    counts: z.record(z.string(), z.number().int().nonnegative()),
    /** A few example paths: `app-1 → db-1/postgres/tcp: tcp_timeout`. */
    examples: z.array(z.string().max(512)).max(20),
  })
  .strict();
export type HypothesisEvidence = z.infer<typeof HypothesisEvidenceSchema>;

export const HypothesisSchema = z
  .object({
    kind: FaultKindSchema,
    confidence: z.number().min(0).max(1),
    /** One sentence a tired engineer understands at 2 AM. */
    summary: z.string().min(1).max(1024),
    /** The components the hypothesis blames or is about, sorted. */
    components: z.array(z.string().min(1).max(128)),
    groups: z.array(DiagnosisGroupSchema),
    cutLabel: CutLabelSchema.optional(),
    /**
     * The collector's own side is the part cut off (its host, switch or zone): `components`
     * and the first group are that side; nothing is said of the far side, which it cannot see.
     */
    collectorCutOff: z.literal(true).optional(),
    evidence: HypothesisEvidenceSchema,
    /** When the fault began: the earliest start of the states it explains (epoch ms). */
    since: z.number().int().nonnegative(),
  })
  .strict();
export type Hypothesis = z.infer<typeof HypothesisSchema>;

export const RuledOutSchema = z
  .object({
    component: z.string().min(1).max(128),
    /** True only with direct positive evidence; false: "cannot be ruled out". */
    canBeRuledOut: z.boolean(),
    /** The evidence, in words. */
    reason: z.string().min(1).max(1024),
  })
  .strict();
export type RuledOut = z.infer<typeof RuledOutSchema>;

export const DiagnosisSchema = z
  .object({
    healthy: z.boolean(),
    /** Best first. */
    hypotheses: z.array(HypothesisSchema),
    ruledOut: z.array(RuledOutSchema),
    /**
     * A fault is still arriving: a path of the hosts the hypotheses are about changed state
     * or class in the last moment, or agents' confirmation bursts about them are due. The
     * hypotheses may still change; alerts for new ones wait (at most `alerts.settleMax`
     * from the first change). Absent in documents of older collectors: not settling.
     */
    settling: z.boolean().optional(),
    /** While settling: when the changes still arriving began (epoch ms, collector clock). */
    settlingSinceMs: z.number().int().nonnegative().optional(),
    computedAtMs: z.number().int().nonnegative(),
  })
  .strict();
export type Diagnosis = z.infer<typeof DiagnosisSchema>;
