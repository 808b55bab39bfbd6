import { z } from 'zod';

/**
 * How a probe ended: DESIGN.md's evidence vocabulary. Decided from the real error
 * (errno, DNS rcode, ICMP type, HTTP status) in probes/classify.ts, never from a message.
 */
export const failureClasses = [
  'ok',
  'dns_error',
  'dns_timeout',
  'icmp_timeout',
  'icmp_unreachable',
  'tcp_refused',
  'tcp_timeout',
  'tcp_unreachable',
  'tcp_reset',
  'tls_error',
  'http_timeout',
  'protocol_timeout',
  'http_status',
  'http_body',
  'protocol_error',
  /** The probe itself failed (a bug or a missing engine): says nothing about the target. */
  'internal_error',
  /**
   * A full-size packet with Don't Fragment set was refused on the way: ICMP "fragmentation
   * needed" / "packet too big" came back, or the local interface is smaller (EMSGSIZE).
   * Appended last: stored windows index classes by position.
   */
  'mtu_exceeded',
] as const;

export const FailureClassSchema = z.enum(failureClasses);
export type FailureClass = z.infer<typeof FailureClassSchema>;

/** Which layer a failure class is evidence about; localisation reads this. */
export const failureLayer: Readonly<
  Record<FailureClass, 'none' | 'dns' | 'network' | 'service' | 'probe'>
> = {
  ok: 'none',
  dns_error: 'dns',
  dns_timeout: 'dns',
  icmp_timeout: 'network',
  icmp_unreachable: 'network',
  tcp_refused: 'service',
  tcp_timeout: 'network',
  tcp_unreachable: 'network',
  tcp_reset: 'service',
  tls_error: 'service',
  http_timeout: 'service',
  protocol_timeout: 'service',
  http_status: 'service',
  http_body: 'service',
  protocol_error: 'service',
  internal_error: 'probe',
  mtu_exceeded: 'network',
};

/** Phase timings in milliseconds; a phase that did not happen is absent. */
export const TimingsSchema = z
  .object({
    /** Name resolution. */
    dnsMs: z.number().nonnegative().optional(),
    /** TCP handshake (SYN → SYN-ACK). */
    connectMs: z.number().nonnegative().optional(),
    /** TLS handshake. */
    tlsMs: z.number().nonnegative().optional(),
    /** Request sent → first byte of the answer (HTTP, database greeting, send/expect). */
    firstByteMs: z.number().nonnegative().optional(),
    /** ICMP echo round-trip, averaged over the replies. */
    rttMs: z.number().nonnegative().optional(),
    /** Whole probe. */
    totalMs: z.number().nonnegative(),
  })
  .strict();
export type Timings = z.infer<typeof TimingsSchema>;

/** The raw error behind a failure class, kept for humans; never used to classify. */
export const RawErrorSchema = z
  .object({
    code: z.string().max(64).optional(),
    message: z.string().max(1024),
  })
  .strict();
export type RawError = z.infer<typeof RawErrorSchema>;

/** Where a result stands in a confirmation burst (see ProbeResult.confirm). */
export const ConfirmMarkSchema = z
  .object({
    /** Re-probes in the burst. */
    of: z.number().int().min(1).max(10),
    /** 0: the trigger; 1..of: the re-probes, in the order they started (never above `of`). */
    index: z.number().int().min(0).max(10),
  })
  // No refinement (index <= of): the report schema is checked by Ajv too (wire/fast-check.ts).
  .strict();
export type ConfirmMark = z.infer<typeof ConfirmMarkSchema>;

/** One record per probe attempt. */
export const ProbeResultSchema = z
  .object({
    /** Agent that ran the probe (empty for a one-shot `faultline probe`). */
    agent: z.string().max(128),
    /** Target name: the component or the target as configured. */
    target: z.string().min(1).max(512),
    /** Address actually probed (host, host:port or URL). */
    address: z.string().min(1).max(2048),
    kind: z.string().min(1).max(32),
    class: FailureClassSchema,
    /** Monotonically increasing per agent. */
    seq: z.number().int().nonnegative(),
    /** Wall-clock start, milliseconds since the epoch. */
    startedAtMs: z.number().int().nonnegative(),
    timings: TimingsSchema,
    error: RawErrorSchema.optional(),
    /** Kind-specific facts: ICMP engine and per-packet RTTs, HTTP status, DNS answers… */
    detail: z.record(z.string(), z.unknown()).optional(),
    /**
     * On the results of a confirmation burst only: `index` 0 is the result whose class
     * changed (the trigger), 1..`of` the burst's re-probes of the same path. The collector
     * takes the change at once when every re-probe agrees with the trigger, and cancels it
     * when one does not. Results outside bursts carry none.
     */
    confirm: ConfirmMarkSchema.optional(),
  })
  .strict();
export type ProbeResult = z.infer<typeof ProbeResultSchema>;
