import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { EchoReport, IcmpError, SendError } from './engine.js';
import {
  lost,
  minPeriodMs,
  movedRounds,
  specOf,
  type LoopRound,
  type LoopTarget,
} from './loop-state.js';
import { echoPayloadBytes } from './process.js';
import type { EchoSocket, PacketSink, SocketEngine } from './socket.js';

/*
 * The loop on the agent's own ICMP socket, for targets the agent probes on a schedule: what
 * fping-loop.ts does with a long-lived `fping -l`, without the process. Every target gets
 * `count` packets per probe interval (one every interval / count, continuously), and a
 * round reports the packets whose fate is known since the target's previous round. In
 * steady state they are in when the round asks, so it answers at once.
 *
 * Targets that share a period send together, one burst per period (one timer, one wake-up
 * for all of them); a packet not answered within the round's timeout counts as lost, and an
 * ICMP error that decides (unreachable, time exceeded) ends its packet at once.
 *
 * A round with nothing to report yet (right after the target was announced, or after the
 * previous round took everything) waits for the fate of a packet in flight, which is known
 * within the timeout, or for a packet due within `maxWaitMs`; otherwise it declines and the
 * caller runs that round as a one-shot echo.
 */

/** Settings of the socket loop; the defaults suit an agent. */
export interface SocketLoopOptions {
  /** A round with nothing in yet waits for its target's next packet only when due within this many ms. */
  readonly maxWaitMs?: number;
  /** Longest interval served by the loop; longer ones are cheap enough as one-shot echoes. */
  readonly maxIntervalMs?: number;
}

/** Counters since construction, for tests and the bench. */
export interface SocketLoopStats {
  /** Echo requests sent. */
  packets: number;
  /** Rounds answered from the loop. */
  rounds: number;
  /** Rounds declined (cold, unknown target, other options): the caller ran them elsewhere. */
  declined: number;
}

/** Outcomes kept for a target whose rounds are not asked for, at most. */
const keptOutcomes = (count: number): number => Math.max(16, count * 4);
const keptErrors = 16;

/** One scheduled target: its packets in flight and the outcomes its next round reports. */
class Target implements PacketSink {
  ip = '';
  closed = false;
  moved = 0;
  /** Outcomes since the last round, in the order they became known: RTT in ms, or `lost`. */
  outcomes: number[] = [];
  errors: IcmpError[] = [];
  sendErrors: SendError[] = [];
  /** Packets in flight: index → [sequence number, when it counts as lost]. */
  readonly inFlight = new Map<number, [seq: number, lostAt: number]>();
  nextIndex = 0;
  waiter: ((report: EchoReport | undefined) => void) | undefined;
  socket: EchoSocket | undefined;

  constructor(
    readonly name: string,
    readonly spec: string,
    readonly count: number,
    readonly periodMs: number,
    readonly packetTimeoutMs: number,
    readonly packetSize: number | undefined,
    readonly sizeBytes: number | undefined,
    readonly dontFragment: boolean,
  ) {}

  sent(index: number, seq: number): void {
    this.inFlight.set(index, [seq, performance.now() + this.packetTimeoutMs]);
  }

  reply(index: number, rttMs: number): void {
    if (this.inFlight.delete(index)) this.outcome(rttMs);
  }

  error(index: number, error: IcmpError, decides: boolean): void {
    if (!this.inFlight.has(index)) return;
    if (this.errors.length < keptErrors) this.errors.push(error);
    if (decides) {
      this.inFlight.delete(index);
      this.outcome(lost);
    }
  }

  refused(_index: number, error: SendError): void {
    if (this.sendErrors.length < keptErrors) this.sendErrors.push(error);
    this.outcome(lost);
  }

  /** Packets past their timeout count as lost (their late answers are dropped). */
  expire(now: number): void {
    for (const [index, [seq, lostAt]] of this.inFlight) {
      if (lostAt > now) continue;
      this.inFlight.delete(index);
      this.socket?.drop(seq);
      this.outcome(lost);
    }
  }

  outcome(rttMs: number): void {
    this.outcomes.push(rttMs);
    // Rounds that were skipped leave outcomes behind: keep the newest few rounds' worth.
    if (this.outcomes.length > keptOutcomes(this.count)) this.outcomes.shift();
    this.waiter?.(this.take());
  }

  take(): EchoReport {
    const report: EchoReport = {
      engine: 'socket-loop',
      ip: this.ip,
      rttsMs: this.outcomes.map((r) => (r === lost ? null : r)),
      icmpErrors: this.errors,
      ...(this.sendErrors.length > 0 ? { sendErrors: this.sendErrors } : {}),
      aborted: false,
    };
    this.clear();
    return report;
  }

  clear(): void {
    this.outcomes = [];
    this.errors = [];
    this.sendErrors = [];
  }

  /** Stops sending to the current address and forgets what is in flight. */
  stop(): void {
    for (const [seq] of this.inFlight.values()) this.socket?.drop(seq);
    this.inFlight.clear();
    this.socket = undefined;
  }
}

/** The targets that share a period: one timer sends a packet to each of them per period. */
interface Cadence {
  readonly periodMs: number;
  readonly targets: Set<Target>;
  timer: NodeJS.Timeout | undefined;
  /** performance.now() of the next burst. */
  nextAt: number;
}

/** Pings the scheduled targets from the socket engine's sockets. */
export class SocketLoopEngine {
  readonly maxWaitMs: number;
  readonly maxIntervalMs: number;
  readonly stats: SocketLoopStats = { packets: 0, rounds: 0, declined: 0 };
  private readonly announced = new Map<string, readonly LoopTarget[]>();
  private targets = new Map<string, Target>();
  private readonly cadences = new Map<number, Cadence>();

  constructor(
    private readonly engine: SocketEngine,
    opts: SocketLoopOptions = {},
  ) {
    this.maxWaitMs = opts.maxWaitMs ?? 50;
    this.maxIntervalMs = opts.maxIntervalMs ?? 60_000;
  }

  /**
   * Announces the whole set of scheduled targets of one source, e.g. a probe kind (replacing
   * that source's previous set; other sources' targets stay). Target names are unique across
   * sources: a name announced twice keeps its first announcement. A target keeps its packets
   * and outcomes when announced again unchanged. An IP literal is pinged from now on; a
   * hostname from its first round on, at the address that round resolved.
   */
  prepare(targets: readonly LoopTarget[], source = 'default'): void {
    this.announced.set(source, targets);
    const next = new Map<string, Target>();
    for (const t of [...this.announced.values()].flat()) {
      if (t.intervalMs > this.maxIntervalMs || next.has(t.name)) continue;
      const spec = specOf(t);
      const periodMs = Math.max(minPeriodMs, Math.round((t.intervalMs / t.count) * 1000) / 1000);
      const packetTimeoutMs = Math.max(1, Math.floor(t.timeoutMs));
      const old = this.targets.get(t.name);
      if (
        old !== undefined &&
        old.spec === spec &&
        old.periodMs === periodMs &&
        old.packetTimeoutMs === packetTimeoutMs
      ) {
        next.set(t.name, old);
        continue;
      }
      const target = new Target(
        t.name,
        spec,
        t.count,
        periodMs,
        packetTimeoutMs,
        t.packetSize,
        t.sizeBytes,
        t.dontFragment === true,
      );
      next.set(t.name, target);
      if (isIP(t.host) !== 0) this.point(target, t.host);
    }
    for (const [name, target] of this.targets) {
      if (next.get(name) === target) continue;
      target.waiter?.(undefined);
      this.retire(target);
    }
    this.targets = next;
  }

  /**
   * Answers a round for a prepared target with the packets whose fate is known since its
   * previous round, or resolves undefined when it cannot (not prepared with these options,
   * nothing in yet): the caller then probes another way. Never rejects.
   */
  round(req: LoopRound): Promise<EchoReport | undefined> {
    const target = this.targets.get(req.name);
    if (target === undefined || target.spec !== specOf(req) || target.waiter !== undefined)
      return this.decline();
    if (target.socket === undefined) {
      this.point(target, req.ip);
      return this.decline();
    }
    if (target.ip !== req.ip) {
      // A name with several addresses may resolve to another one each time: keep pinging the
      // one we have, and follow the name only once it has moved for good.
      if (++target.moved >= movedRounds) {
        this.point(target, req.ip);
        return this.decline();
      }
    } else target.moved = 0;
    if (req.signal.aborted) return Promise.resolve(aborted());
    target.expire(performance.now());
    if (target.outcomes.length > 0) return Promise.resolve(this.take(target));

    const now = performance.now();
    let waitMs: number;
    if (target.inFlight.size > 0) {
      // A packet in flight: its fate is known by the time it counts as lost, which is what
      // a one-shot echo in its place would wait for too.
      let oldest = Infinity;
      for (const [, lostAt] of target.inFlight.values()) oldest = Math.min(oldest, lostAt);
      waitMs = Math.min(req.timeoutMs, Math.max(0, oldest - now) + this.maxWaitMs);
    } else {
      // Nothing in flight: wait for the next packet only if it leaves soon.
      const dueInMs = (this.cadences.get(target.periodMs)?.nextAt ?? Infinity) - now;
      if (dueInMs > Math.min(this.maxWaitMs, req.timeoutMs)) return this.decline();
      waitMs = Math.min(req.timeoutMs, Math.max(0, dueInMs) + this.maxWaitMs);
    }
    return new Promise<EchoReport | undefined>((resolve) => {
      const finish = (report: EchoReport | undefined): void => {
        if (target.waiter !== finish) return;
        target.waiter = undefined;
        clearTimeout(timer);
        req.signal.removeEventListener('abort', onAbort);
        if (report === undefined) this.stats.declined++;
        else if (!report.aborted) this.stats.rounds++;
        resolve(report);
      };
      const onAbort = (): void => finish(aborted());
      // A loss is only known when its timer here sees it: look again at the wait's end.
      const timer = setTimeout(() => {
        target.expire(performance.now());
        finish(target.outcomes.length > 0 ? target.take() : undefined);
      }, waitMs);
      target.waiter = finish;
      req.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Forgets what the loop holds for the target: a probe run out of schedule answered newer
   * than the packets buffered for its next round (see FpingLoopEngine.discard).
   */
  discard(name: string): void {
    this.targets.get(name)?.clear();
  }

  /** Outcomes waiting for the target's next round (tests, debugging). */
  buffered(name: string): number {
    const target = this.targets.get(name);
    if (target === undefined) return 0;
    target.expire(performance.now());
    return target.outcomes.length;
  }

  /** Forgets every target and stops sending; pending rounds answer as aborted. Idempotent. */
  async close(): Promise<void> {
    for (const target of this.targets.values()) {
      target.waiter?.(aborted());
      this.retire(target);
    }
    this.targets = new Map();
    this.announced.clear();
    for (const cadence of this.cadences.values()) clearTimeout(cadence.timer);
    this.cadences.clear();
    return Promise.resolve();
  }

  private decline(): Promise<undefined> {
    this.stats.declined++;
    return Promise.resolve(undefined);
  }

  private take(target: Target): EchoReport {
    this.stats.rounds++;
    return target.take();
  }

  /** Pings `target` at `ip` from now on (forgetting what it had), on its period's cadence. */
  private point(target: Target, ip: string): void {
    target.stop();
    target.clear();
    target.moved = 0;
    target.ip = ip;
    const family = isIP(ip) === 6 ? 6 : 4;
    try {
      target.socket = this.engine.socketFor(family, target.dontFragment);
    } catch {
      return; // no socket for this family: rounds decline, the one-shot engines answer
    }
    const cadence = this.cadences.get(target.periodMs);
    if (cadence === undefined) {
      const fresh: Cadence = {
        periodMs: target.periodMs,
        targets: new Set([target]),
        timer: undefined,
        nextAt: performance.now(),
      };
      this.cadences.set(target.periodMs, fresh);
      this.tick(fresh);
    } else {
      cadence.targets.add(target);
      // Its first packet now, not a period from now: the first round comes within one.
      this.send(target, performance.now());
    }
  }

  private retire(target: Target): void {
    target.closed = true;
    target.stop();
    const cadence = this.cadences.get(target.periodMs);
    if (cadence === undefined) return;
    cadence.targets.delete(target);
    if (cadence.targets.size === 0) {
      clearTimeout(cadence.timer);
      this.cadences.delete(target.periodMs);
    }
  }

  private send(target: Target, now: number): void {
    let socket = target.socket;
    if (socket === undefined) return;
    if (socket.closed) {
      // The socket engine was closed and stays usable: its new socket, if one opens.
      try {
        socket = this.engine.socketFor(socket.family, target.dontFragment);
      } catch {
        return;
      }
      target.socket = socket;
    }
    target.expire(now);
    const payload =
      target.sizeBytes !== undefined
        ? echoPayloadBytes(target.sizeBytes, socket.family)
        : (target.packetSize ?? 56);
    this.stats.packets++;
    socket.send(target, target.nextIndex++, payload);
  }

  /** One burst: a packet to every target of the cadence; then the next, a period later. */
  private tick(cadence: Cadence): void {
    const now = performance.now();
    for (const target of cadence.targets) this.send(target, now);
    // On a fixed grid (no drift); a loop late by more than a period skips the missed bursts.
    cadence.nextAt += cadence.periodMs;
    if (cadence.nextAt < now) cadence.nextAt = now + cadence.periodMs;
    cadence.timer = setTimeout(() => this.tick(cadence), cadence.nextAt - now);
    cadence.timer.unref();
  }
}

function aborted(): EchoReport {
  return { engine: 'socket-loop', rttsMs: [], icmpErrors: [], aborted: true };
}
