import { z } from 'zod';
import { labelValueSchema, wireLabelNameSchema } from '../lib/labels.js';

/**
 * The probe plan the collector hands each agent (`GET /api/v1/plan?agent=NAME`): a
 * Pingmesh-style pinglist. The agent caches it on disk and keeps probing with it while the
 * collector is away.
 */
export const PlanTargetSchema = z
  .object({
    /** Unique within the plan: `<component>/icmp`, `<component>/<service>/tcp`, `<component>/<service>/<kind>`. */
    name: z.string().min(1).max(256),
    /** The inventory component this target belongs to. */
    component: z.string().min(1).max(128),
    /** The service on the component (absent for host-level probes such as icmp). */
    service: z.string().max(128).optional(),
    kind: z.string().min(1).max(32),
    /** host, host:port or URL, validated by the agent with the kind's target form. */
    address: z.string().min(1).max(2048),
    intervalMs: z.number().int().min(100).max(86_400_000),
    timeoutMs: z.number().int().min(10).max(86_400_000),
    /** The kind's options; validated by the agent against the kind's schema. */
    options: z.record(z.string(), z.unknown()),
    /** Topology labels of the component (zone, rack, switch, role, …). */
    labels: z.record(wireLabelNameSchema, labelValueSchema),
  })
  .strict();
export type PlanTarget = z.infer<typeof PlanTargetSchema>;

/** `confirm` of a plan: the agent's confirmation burst after a change of class. */
export const PlanConfirmSchema = z
  .object({
    /** Re-probes per burst; 0 turns bursts off. */
    count: z.number().int().min(0).max(10),
    /** Between the starts of two re-probes. */
    spacingMs: z.number().int().min(20).max(5000),
  })
  .strict();
export type PlanConfirm = z.infer<typeof PlanConfirmSchema>;

export const PlanSchema = z
  .object({
    /** Content hash: an unchanged plan keeps its version. */
    version: z.string().min(1).max(128),
    agent: z.string().min(1).max(128),
    generatedAtMs: z.number().int().nonnegative(),
    /** How often the agent asks for a new plan. */
    refreshIntervalMs: z.number().int().min(1000),
    /** How often the agent sends a report batch (also its heartbeat). */
    reportIntervalMs: z.number().int().min(100),
    targets: z.array(PlanTargetSchema).max(100_000),
    /**
     * Fast confirmation: when a path's result changes class the agent re-probes it `count`
     * times, `spacingMs` apart, and reports the burst at once. Absent: count 3, 150 ms;
     * count 0: no bursts.
     */
    confirm: PlanConfirmSchema.optional(),
    /**
     * Per-path timeouts that shrink towards the path's observed round trip (TCP RTO style,
     * floor 100 ms, the target's `timeoutMs` as ceiling). Absent: true.
     */
    adaptiveTimeout: z.boolean().optional(),
  })
  .strict();
export type Plan = z.infer<typeof PlanSchema>;
