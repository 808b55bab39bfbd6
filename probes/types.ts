import type { z } from 'zod';
import type { FailureClass, ProbeResult, RawError, Timings } from '../wire/result.js';

/** How a kind's target string is written. */
export type TargetForm =
  /** A hostname or IP address: icmp, dns (the name to resolve). */
  | 'host'
  /** host:port, [v6]:port, or host alone when the kind has a default port. */
  | 'hostPort'
  /** An http(s) URL. */
  | 'url';

/** A validated probe target. Built only by `parseTarget` (probes/target.ts). */
export interface Target {
  /** Display name: the component or target name, or the address as typed. */
  readonly name: string;
  /** The normalised address: host, host:port or URL. */
  readonly address: string;
  /** Hostname or IP literal, without IPv6 brackets. */
  readonly host: string;
  /** Port, for `hostPort` and `url` forms. */
  readonly port?: number;
  /** Parsed URL, for the `url` form. */
  readonly url?: URL;
}

/** What a probe run gets besides its target and options. */
export interface ProbeContext {
  /** Hard limit for the whole probe; the probe answers by then with a timeout class. */
  readonly timeoutMs: number;
  /** Aborted when the caller gives up (shutdown); probes stop and return promptly. */
  readonly signal: AbortSignal;
  /**
   * Probe now, out of schedule (a confirmation re-probe, an echo check): a kind whose
   * scheduled targets ride a long-lived engine's own rounds (icmp, mtu on fping's loop)
   * sends its packets at once instead of waiting for the engine's next round.
   */
  readonly now?: boolean;
  /**
   * With `now`: this probe is re-probe `index` of a confirmation burst of `of`, `spacingMs`
   * apart (an echo engine may send the whole burst's packets from one process).
   */
  readonly burst?: { readonly index: number; readonly of: number; readonly spacingMs: number };
}

/** What a probe's `run` returns; `runProbe` adds identity, sequence and wall-clock time. */
export interface ProbeOutcome {
  readonly class: FailureClass;
  /** Phase timings; `totalMs` is filled in by `runProbe` when absent. */
  readonly timings: Partial<Timings>;
  /** The raw error behind a failure, for humans. */
  readonly error?: RawError;
  /** Kind-specific facts (status code, answers, engine, per-packet RTTs…). */
  readonly detail?: Record<string, unknown>;
}

/**
 * One probe kind. Adding a kind is one file exporting one of these plus one line in
 * probes/registry.ts; the registry test fails until it has tests beside it.
 */
export interface ProbeDefinition<O = unknown> {
  /** Also the YAML `kind:` and `faultline probe <kind>`. */
  readonly kind: string;
  /** One line for `--help` and the docs table. */
  readonly description: string;
  /** How the target is written, and the default port where there is one. */
  readonly target: { readonly form: TargetForm; readonly defaultPort?: number };
  /** This kind's options, defaults inside; unknown keys rejected. */
  readonly options: z.ZodType<O, unknown>;
  /**
   * What "latency" means for this kind: the timing a period summary's latency quantiles,
   * the dashboard's latency and `faultline probe`'s headline read (falling back on
   * `totalMs` in a result without it). Required, so that a new kind cannot silently report
   * its total time.
   */
  readonly mainTiming: keyof Timings;
  /**
   * Optional. The packet loss one result of this kind measured, for its period summary
   * (`lossRatio`, weighted by `packets`, and `echoes`): undefined when the result carries none.
   */
  readonly summaryLoss?: (detail: Readonly<Record<string, unknown>>) => SummaryLoss | undefined;
  /** Optional. What the agent exports for this kind besides the series every kind has. */
  readonly telemetry?: ProbeTelemetry;
  /**
   * Optional. What of this kind's options a collector's plan may not ask without the
   * agent's consent (the agent config's plan policy). Without it every option is harmless.
   */
  readonly planCheck?: PlanCheck<O>;
  /**
   * Optional. Results of this kind are ICMP echo rounds: `timings.rttMs` is their latency,
   * `detail.rttsMs` and `detail.lossRatio` their packets. The agent summarises RTT and loss
   * and exports the ICMP series (`faultline.probe.icmp.rtt`, blackbox's
   * `probe_icmp_duration_seconds`) for them.
   */
  readonly echo?: boolean;
  /**
   * Optional. This kind's latency (`mainTiming`) is the network's alone: the far end's
   * kernel answers (an echo, a TCP handshake), no server process does work for it. The
   * localiser reads a slower path of such a kind as the network's; a service probe slower
   * with nothing lost is its server's (collector/localise/kinds/packet-loss.ts). Echo kinds
   * are so without saying it.
   */
  readonly networkLatency?: boolean;
  /**
   * Optional. Probes of this kind ride a TCP connection: a segment lost on the way is sent
   * again by the kernel after its retransmission timeout (at least 200 ms on Linux), so the
   * agent's adaptive timeout never shrinks below room for one retransmission — a single lost
   * packet of a healthy path is background loss, not a failed probe.
   */
  readonly transport?: 'tcp';
  /**
   * Runs one probe. Never throws for a target failure: it returns a failure class and the
   * phase timings reached. Throws only on a programming error.
   */
  run(target: Target, options: O, ctx: ProbeContext): Promise<ProbeOutcome>;
  /**
   * Optional. The agent announces every target of this kind it will probe on schedule (at
   * start and at each reload, the whole set each time), so a kind can keep long-lived
   * machinery for them (ICMP: one fping process for all targets) instead of paying a start-up
   * per probe. `run` must still work for targets never announced (one-shot probes).
   */
  prepare?(targets: readonly ScheduledTarget<O>[]): void;
  /** Optional. Releases what `prepare` or `run` set up (child processes); idempotent. */
  close?(): Promise<void>;
}

/** One result's packet loss, as `ProbeDefinition.summaryLoss` reads it. */
export interface SummaryLoss {
  /** Lost share of the packets sent, 0..1. */
  readonly ratio: number;
  /** Packets sent: the weight of this result in the period's loss. */
  readonly packets: number;
}

/**
 * A metric a kind exports besides the common ones, named and described the OTel way (the
 * agent's Prometheus text maps the name). Defined once, as a constant: the agent keys the
 * metric family by this object.
 */
export interface KindMetric {
  readonly name: string;
  /** UCUM unit: `s`, `1`, or '' for a plain number. */
  readonly unit: string;
  readonly description: string;
  /**
   * Exported by default. Without it the series is exported only when the agent config asks
   * for every blackbox_exporter series (`metrics.blackbox: full`): each series is another
   * line per path in every scrape.
   */
  readonly core?: boolean;
}

/** Where `ProbeTelemetry.series` writes: gauges on one path's blackbox-compatible labels. */
export interface KindSeriesSink {
  /**
   * A gauge with the path's `probe_*` labels (path labels, `address`, maybe `instance`), and
   * `label="labelValue"` besides when given.
   */
  gauge(metric: KindMetric, value: number, label?: string, labelValue?: string): void;
}

/**
 * What the agent exports for a kind besides the series every kind has (durations, results,
 * success, state, `probe_success`, `probe_duration_seconds`, `probe_dns_lookup_time_seconds`).
 */
export interface ProbeTelemetry {
  /**
   * Every phase the result timed gets a `faultline.probe.duration` histogram (phase="dns",
   * "connect", "tls", "first_byte", "total"); without it only phase="total" (each histogram
   * is ~14 lines a scrape, and for most kinds one phase is nearly all of the total).
   */
  readonly phaseHistograms?: boolean;
  /**
   * blackbox_exporter has a prober for this kind: the IP address a result reached (or
   * anything else when it reached none), for `probe_ip_protocol`.
   */
  readonly blackboxIp?: (result: ProbeResult) => unknown;
  /** The kind's own gauges, read from the path's last result at each collection. */
  readonly series?: (result: ProbeResult, sink: KindSeriesSink) => void;
}

/**
 * What an agent lets a collector's plan ask of its probes beyond a plain check (the agent
 * config's `planPolicy`): a stand-in collector must not turn the agent into a tool that
 * sends chosen bytes to chosen ports.
 */
export interface PlanPermissions {
  /** Raw tcp payloads (`options.send`) from the plan. */
  readonly allowTcpSend: boolean;
  /** HTTP methods a plan may use. */
  readonly allowHttpMethods: readonly string[];
  /** Custom HTTP request headers and bodies from the plan. */
  readonly allowHttpHeaders: boolean;
}

/** A kind's part in checking a plan target against the agent's policy (`ProbeDefinition.planCheck`). */
export interface PlanCheck<O> {
  /**
   * The host the probe talks to instead of the target's, checked against the agent's
   * `allowTargets` in its place (dns: the resolver in `options.server`), and what it is.
   */
  peer?(options: O): { readonly host: string; readonly what: string } | undefined;
  /** Why these options could reach hosts beyond the target (redirects): refused under `allowTargets`. */
  escapes?(options: O): string | undefined;
  /** Why the agent's permissions refuse these options, or undefined. */
  refusal?(options: O, permissions: PlanPermissions): string | undefined;
}

/** A target the agent probes on a schedule, as announced to `ProbeDefinition.prepare`. */
export interface ScheduledTarget<O> {
  readonly target: Target;
  readonly options: O;
  /** Time between the starts of two rounds. */
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/**
 * Least wait for a probe that rides TCP ({@link ProbeDefinition.transport}): Linux's least
 * retransmission timeout (200 ms) and room for the resent segment's round trip, so one
 * segment lost to background loss is sent again within it (a lost SYN waits 1 s: that fails
 * under any timeout a LAN would configure).
 */
export const tcpRetransmitFloorMs = 300;
