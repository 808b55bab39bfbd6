import { spawn, type ChildProcess } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { EchoReport } from './engine.js';
import { parseFpingLine, usableFping } from './fping.js';
import { FifoLines } from './fifo-lines.js';
import {
  maxPacketsPerSecond,
  minPeriodMs,
  startupMs,
  sendCostMs,
  freshReadMs,
  waitStepMs,
  movedRounds,
  lost,
  lineBytes,
  specOf,
  paramsKeyOf,
  type Params,
  type Subscription,
  type Group,
  type LoopTarget,
  type LoopRound,
  type FpingLoopOptions,
  type FpingLoopStats,
} from './loop-state.js';
import { echoPayloadBytes, killAndWait, msArg, onLines, trackChild } from './process.js';

/*
 * The loop engine, for targets the agent probes on a schedule. Each group of targets that
 * share period, per-packet timeout, size, Don't Fragment and family runs ONE long-lived
 * `fping -l` (loop
 * mode): it pings every target `count` times per probe interval (period = interval / count,
 * continuously, like smokeping) and prints one line per packet. The engine files each line
 * under its target; a round then reports the packets that completed since the target's
 * previous round. In steady state those are already in, so a round answers at once, with
 * no process start: the cost per probe is fping's work for `count` packets plus reading
 * their lines. The packets a round reports were sent during the interval before it.
 *
 * Two choices keep that cost low (measured in bench/README.md): each period's packets
 * leave as one burst (fping's `-i` tiny), so fping wakes per burst rather than per packet;
 * and fping writes into a FIFO that we read every `pollMs` and when a round asks, instead
 * of a pipe that wakes Node for nearly every line fping flushes.
 *
 * A round has nothing to report right after fping (re)started, before the target's first
 * packet came back. Waiting a whole period then would make every later round of the target
 * wait as long (each would wait for the packet it just missed, holding a scheduler slot),
 * so a round waits only for a packet due within `maxWaitMs`, and otherwise declines: the
 * caller runs that round on the batching engine. So it does while fping is down.
 */

export type { FpingLoopOptions, FpingLoopStats, LoopRound, LoopTarget } from './loop-state.js';

/** Drives one long-lived `fping -l` per group of scheduled targets. */
export class FpingLoopEngine {
  /** The fping binary. Swappable before the first prepare (tests point it at a missing one). */
  binPath: string;
  readonly debounceMs: number;
  readonly maxWaitMs: number;
  readonly maxIntervalMs: number;
  readonly maxTargetsPerProcess: number;
  readonly sendGapMs: number;
  readonly pollMs: number;
  readonly useFifo: boolean;
  readonly stats: FpingLoopStats = { spawns: 0, crashes: 0, rounds: 0, declined: 0 };
  /** The targets announced, per source (a probe kind): the loop serves them all. */
  private readonly announced = new Map<string, readonly LoopTarget[]>();
  private subs = new Map<string, Subscription>();
  private readonly groups = new Map<string, Group>();
  private generation = 0;
  private debounce: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private readonly stopping = new Set<Promise<void>>();

  constructor(opts: FpingLoopOptions = {}) {
    this.binPath = opts.binPath ?? 'fping';
    this.debounceMs = opts.debounceMs ?? 50;
    this.maxWaitMs = opts.maxWaitMs ?? 50;
    this.maxIntervalMs = opts.maxIntervalMs ?? 60_000;
    this.maxTargetsPerProcess = opts.maxTargetsPerProcess ?? 2000;
    this.sendGapMs = opts.sendGapMs ?? 0.01;
    this.pollMs = opts.pollMs ?? 100;
    this.useFifo = opts.fifo ?? true;
  }

  /**
   * Announces the whole set of scheduled targets of one source, e.g. a probe kind (replacing
   * that source's previous set; other sources' targets stay). Target names are unique across
   * sources: a name announced twice keeps its first announcement. Hostnames are resolved
   * now; groups whose set changed restart their fping after `debounceMs`, the others keep
   * running. Does nothing visible when fping is not usable: rounds decline.
   */
  prepare(targets: readonly LoopTarget[], source = 'default'): void {
    const generation = ++this.generation;
    this.announced.set(source, targets);
    const next = new Map<string, Subscription>();
    const lookups: Promise<void>[] = [];
    for (const t of [...this.announced.values()].flat()) {
      if (t.intervalMs > this.maxIntervalMs || next.has(t.name)) continue;
      const spec = specOf(t);
      const periodMs = Math.max(minPeriodMs, Math.round((t.intervalMs / t.count) * 1000) / 1000);
      // fping 5 times every packet on its own, so a reply may take longer than the period
      // (its man page's warning predates that): a packet has the round's whole timeout.
      const packetTimeoutMs = Math.max(1, Math.floor(t.timeoutMs));
      const old = this.subs.get(t.name);
      const sub: Subscription =
        old !== undefined &&
        old.spec === spec &&
        old.periodMs === periodMs &&
        old.packetTimeoutMs === packetTimeoutMs
          ? old
          : {
              name: t.name,
              spec,
              host: t.host,
              family: t.family,
              count: t.count,
              periodMs,
              packetTimeoutMs,
              packetSize: t.packetSize,
              sizeBytes: t.sizeBytes,
              dontFragment: t.dontFragment === true,
              ip: isIP(t.host) !== 0 ? t.host : undefined,
              member: undefined,
              rtts: [],
              errors: [],
              waiter: undefined,
              moved: 0,
            };
      next.set(t.name, sub);
      if (isIP(t.host) === 0) {
        lookups.push(
          lookup(t.host, { family: t.family, verbatim: true }).then(
            (res) => {
              if (this.generation === generation && sub.ip !== res.address)
                this.repoint(sub, res.address);
            },
            () => undefined,
          ),
        );
      }
    }
    for (const [name, sub] of this.subs) if (next.get(name) !== sub) sub.waiter?.(undefined);
    this.subs = next;
    this.schedule();
    if (lookups.length > 0)
      void Promise.all(lookups).then(() => {
        if (this.generation === generation) this.schedule();
      });
  }

  /**
   * Answers a round for a prepared target with the packets completed since its previous
   * round, or resolves undefined when it cannot (not prepared with these options, nothing
   * in yet, fping down): the caller then probes another way. Never rejects.
   */
  round(req: LoopRound): Promise<EchoReport | undefined> {
    const sub = this.subs.get(req.name);
    if (sub === undefined || sub.spec !== specOf(req) || sub.waiter !== undefined)
      return this.decline();
    if (sub.ip === undefined) {
      this.repoint(sub, req.ip);
      return this.decline();
    }
    if (sub.ip !== req.ip) {
      // A name with several addresses may resolve to another one each time: keep pinging the
      // one we have, and follow the name only once it has moved for good.
      if (++sub.moved >= movedRounds) {
        this.repoint(sub, req.ip);
        return this.decline();
      }
    } else sub.moved = 0;
    if (req.signal.aborted) return Promise.resolve(aborted());
    const member = sub.member;
    // Lines fping wrote since the last read belong to this round, not the next one. Rounds
    // started together (the scheduler batches them) share one read.
    if (member !== undefined) this.drain(member.group, freshReadMs);
    if (sub.rtts.length > 0) return Promise.resolve(this.take(sub));

    const running = member?.group.running;
    if (member === undefined || running === undefined) return this.decline();
    const now = performance.now();
    // fping sends on a fixed grid (each packet one period after the previous one's planned
    // time), so the next line is due at a time known from its sequence number.
    const dueAt =
      running.spawnAt +
      startupMs +
      member.index * Math.max(sendCostMs, running.spacingMs) +
      member.nextSeq * sub.periodMs +
      (member.lastLost ? sub.packetTimeoutMs : 0);
    const dueInMs = dueAt - now;
    if (dueInMs > Math.min(this.maxWaitMs, req.timeoutMs)) return this.decline();
    // A packet's line comes later than due by up to a burst's length plus event-loop delay;
    // the wait ends with the line, so a generous limit costs nothing when all is well.
    const waitMs = Math.min(req.timeoutMs, Math.max(0, dueInMs) + this.maxWaitMs);

    const group = member.group;
    const giveUpAt = now + waitMs;
    return new Promise<EchoReport | undefined>((resolve) => {
      const finish = (report: EchoReport | undefined): void => {
        if (sub.waiter !== finish) return;
        sub.waiter = undefined;
        clearTimeout(timer);
        req.signal.removeEventListener('abort', onAbort);
        if (report === undefined) this.stats.declined++;
        resolve(report);
      };
      const onAbort = (): void => finish(aborted());
      // A FIFO is read when asked: look every few ms while someone waits (a pipe's lines
      // arrive by themselves and end the wait through onLine).
      const check = (): void => {
        this.drain(group);
        const leftMs = giveUpAt - performance.now();
        if (leftMs <= 0) finish(undefined);
        else
          timer = setTimeout(
            check,
            group.running?.out === undefined ? leftMs : Math.min(leftMs, waitStepMs),
          );
      };
      let timer = setTimeout(check, Math.min(waitMs, Math.max(1, dueInMs)));
      sub.waiter = finish;
      req.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Forgets what the loop holds for the target: a probe run out of schedule (a confirmation
   * burst, an echo check) answered newer than the packets buffered for its next round, which
   * were sent up to an interval ago. Reported after it, they would read as the path's newest
   * state: the echoes of the last moment before a cut, ok, after the burst saw it fail.
   */
  discard(name: string): void {
    const sub = this.subs.get(name);
    if (sub === undefined) return;
    const member = sub.member;
    if (member !== undefined) this.drain(member.group);
    sub.rtts = [];
    sub.errors = [];
  }

  /** Outcomes waiting for the target's next round (tests, debugging). */
  buffered(name: string): number {
    return this.subs.get(name)?.rtts.length ?? 0;
  }

  /** PIDs of the fping processes running now. */
  pids(): number[] {
    return [...this.groups.values()].flatMap((g) =>
      g.running?.child.pid === undefined ? [] : [g.running.child.pid],
    );
  }

  /** PID of the fping that pings a prepared target, if one runs. */
  pidOf(name: string): number | undefined {
    return this.subs.get(name)?.member?.group.running?.child.pid;
  }

  /** Ends every fping and forgets every target; pending rounds answer as aborted. Idempotent. */
  async close(): Promise<void> {
    this.generation++;
    clearTimeout(this.debounce);
    this.debounce = undefined;
    for (const sub of this.subs.values()) sub.waiter?.(aborted());
    this.subs = new Map();
    this.announced.clear();
    for (const group of this.groups.values()) this.stop(group);
    this.groups.clear();
    clearTimeout(this.poller);
    this.poller = undefined;
    await Promise.all([...this.stopping]);
  }

  // While any fping writes into a FIFO, read them all now and then: rounds read what they
  // need themselves, so this only keeps a FIFO from filling up (fping would block on it). It
  // reads every pollMs at fping's top rate, less often the fewer lines come.
  private startPolling(): void {
    if (this.poller !== undefined) return;
    const poll = (): void => {
      let linesPerSecond = 0;
      for (const group of this.groups.values()) {
        const running = group.running;
        if (running?.out === undefined) continue;
        linesPerSecond += (running.ips.length * 1000) / group.params.periodMs;
        this.drain(group);
      }
      if (linesPerSecond === 0) {
        this.poller = undefined;
        return;
      }
      const quarterFullMs = (16 * 1024 * 1000) / (lineBytes * linesPerSecond);
      this.poller = setTimeout(poll, Math.min(1000, Math.max(this.pollMs, quarterFullMs)));
      this.poller.unref();
    };
    this.poller = setTimeout(poll, this.pollMs);
    this.poller.unref();
  }

  /** Reads what fping wrote since the last read, unless that read is less than `unlessMs` old. */
  private drain(group: Group, unlessMs = 0): void {
    const running = group.running;
    if (running?.out === undefined) return;
    const now = performance.now();
    if (now - group.readAt < unlessMs) return;
    group.readAt = now;
    running.out.drain((line) => this.onLine(group, running.child, line));
  }

  private decline(): Promise<undefined> {
    this.stats.declined++;
    return Promise.resolve(undefined);
  }

  private take(sub: Subscription): EchoReport {
    const rttsMs = sub.rtts.map((r) => (r === lost ? null : r));
    const report: EchoReport = {
      engine: 'fping-loop',
      ...(sub.ip === undefined ? {} : { ip: sub.ip }),
      rttsMs,
      icmpErrors: sub.errors,
      aborted: false,
    };
    sub.rtts = [];
    sub.errors = [];
    this.stats.rounds++;
    return report;
  }

  private repoint(sub: Subscription, ip: string): void {
    sub.ip = ip;
    sub.moved = 0;
    sub.rtts = [];
    sub.errors = [];
    this.schedule();
  }

  private schedule(): void {
    if (this.debounce !== undefined) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      // The generation as the window closes: every prepare inside it is served by this
      // reconcile (one that comes while fping is checked schedules its own; close() none).
      const generation = this.generation;
      void usableFping(this.binPath).then((binary) => {
        if (binary !== undefined && this.generation === generation) this.reconcile(binary);
      });
    }, this.debounceMs);
    this.debounce.unref();
  }

  /** Brings the running fpings in line with the subscriptions: only changed groups restart. */
  private reconcile(binary: string): void {
    const desired = new Map<string, { params: Params; ips: Map<string, Subscription[]> }>();
    for (const sub of this.subs.values()) {
      if (sub.ip === undefined) continue;
      const family = isIP(sub.ip) === 6 ? 6 : 4;
      const params: Params = {
        family,
        periodMs: sub.periodMs,
        packetTimeoutMs: sub.packetTimeoutMs,
        packetSize:
          sub.sizeBytes === undefined ? sub.packetSize : echoPayloadBytes(sub.sizeBytes, family),
        dontFragment: sub.dontFragment,
      };
      const key = paramsKeyOf(params);
      let entry = desired.get(key);
      if (entry === undefined) desired.set(key, (entry = { params, ips: new Map() }));
      const list = entry.ips.get(sub.ip);
      if (list === undefined) entry.ips.set(sub.ip, [sub]);
      else list.push(sub);
    }

    const assigned = new Map<Group, Map<string, Subscription[]>>();
    for (const group of this.groups.values()) assigned.set(group, new Map());
    for (const [key, { params, ips }] of desired) {
      const chunks = [...this.groups.values()]
        .filter((g) => g.paramsKey === key)
        .sort((a, b) => a.chunk - b.chunk);
      const cap = Math.max(
        1,
        Math.min(
          this.maxTargetsPerProcess,
          Math.floor((maxPacketsPerSecond * params.periodMs) / 1000),
        ),
      );
      const fresh: string[] = [];
      // An address stays in its fping, so adding one target restarts one process, not all.
      for (const ip of ips.keys()) {
        const home = chunks.find((g) => g.members.has(ip));
        if (home === undefined) fresh.push(ip);
        else assigned.get(home)?.set(ip, ips.get(ip) ?? []);
      }
      for (const ip of fresh) {
        let home = chunks.find((g) => (assigned.get(g)?.size ?? 0) < cap);
        if (home === undefined) {
          const chunk = chunks.length === 0 ? 0 : (chunks[chunks.length - 1]?.chunk ?? 0) + 1;
          home = {
            id: `${key}#${chunk}`,
            paramsKey: key,
            chunk,
            params,
            members: new Map(),
            running: undefined,
            failures: 0,
            restartTimer: undefined,
            stderr: '',
            readAt: -Infinity,
          };
          this.groups.set(home.id, home);
          chunks.push(home);
          assigned.set(home, new Map());
        }
        assigned.get(home)?.set(ip, ips.get(ip) ?? []);
      }
    }

    for (const [group, ips] of assigned) {
      const before = new Set(group.members.keys());
      for (const ip of before) if (!ips.has(ip)) group.members.delete(ip);
      for (const [ip, subs] of ips) {
        let member = group.members.get(ip);
        if (member === undefined) {
          member = { ip, group, subs: new Set(), index: 0, nextSeq: 0, lastLost: false };
          group.members.set(ip, member);
        }
        member.subs.clear();
        for (const sub of subs) {
          member.subs.add(sub);
          sub.member = member;
        }
      }
      if (ips.size === 0) {
        this.stop(group);
        this.groups.delete(group.id);
        continue;
      }
      const same =
        group.running !== undefined &&
        group.running.ips.length === ips.size &&
        group.running.ips.every((ip) => ips.has(ip));
      if (!same && group.restartTimer === undefined) {
        this.stop(group);
        this.start(group, binary);
      }
    }
  }

  private start(group: Group, binary: string): void {
    const { params } = group;
    const ips = [...group.members.keys()];
    ips.forEach((ip, i) => {
      const member = group.members.get(ip);
      if (member === undefined) return;
      member.index = i;
      member.nextSeq = 0;
      member.lastLost = false;
    });
    const spacingMs = Math.min(this.sendGapMs, (params.periodMs * 0.25) / ips.length);
    const args = [
      '-l',
      '-p',
      msArg(params.periodMs),
      '-t',
      msArg(params.packetTimeoutMs),
      '-i',
      msArg(spacingMs),
      params.family === 6 ? '-6' : '-4',
    ];
    if (params.packetSize !== undefined) args.push('-b', String(params.packetSize));
    if (params.dontFragment) args.push('-M');
    args.push('--', ...ips);

    // Should Node die without its exit hook (SIGKILL), fping's next line meets a FIFO or
    // pipe nobody reads, and SIGPIPE ends it: a loop never outlives the agent by a period.
    const out = this.useFifo ? FifoLines.open() : undefined;
    let child: ChildProcess;
    try {
      child = spawn(binary, args, { stdio: ['ignore', out?.childFd ?? 'pipe', 'pipe'] });
    } catch (err) {
      out?.close();
      throw err;
    }
    out?.releaseWriteEnd();
    this.stats.spawns++;
    trackChild(child);
    group.running = { child, ips, spawnAt: performance.now(), spacingMs, out };
    group.stderr = '';
    if (out === undefined && child.stdout !== null)
      onLines(child.stdout, (line) => this.onLine(group, child, line));
    else this.startPolling();
    if (child.stderr !== null)
      onLines(child.stderr, (line) => {
        if (!this.onLine(group, child, line) && group.stderr.length < 2048)
          group.stderr += line + '\n';
      });
    child.once('error', () => undefined);
    child.once('close', (code, signal) => this.onExit(group, child, binary, code ?? signal));
  }

  private onLine(group: Group, child: ChildProcess, line: string): boolean {
    if (group.running?.child !== child) return true;
    const parsed = parseFpingLine(line);
    if (parsed === undefined) return false;
    const member = group.members.get(parsed.host);
    if (member === undefined) return true;
    group.failures = 0;
    if (parsed.kind !== 'icmp' && parsed.seq + 1 >= member.nextSeq) {
      member.nextSeq = parsed.seq + 1;
      member.lastLost = parsed.kind === 'lost';
    }
    for (const sub of member.subs) {
      if (parsed.kind === 'icmp') {
        if (sub.errors.length < 16) sub.errors.push(parsed.error);
        continue;
      }
      sub.rtts.push(parsed.kind === 'reply' ? parsed.rttMs : lost);
      // Rounds that were skipped leave outcomes behind: keep the newest few rounds' worth.
      if (sub.rtts.length > Math.max(16, sub.count * 4)) sub.rtts.shift();
      sub.waiter?.(this.take(sub));
    }
    return true;
  }

  // fping ended without being asked to: rounds waiting on it decline (the batching engine
  // answers them), and it restarts with backoff.
  private onExit(
    group: Group,
    child: ChildProcess,
    binary: string,
    how: number | string | null,
  ): void {
    if (group.running?.child !== child) return;
    group.running.out?.close();
    group.running = undefined;
    this.stats.crashes++;
    this.stats.lastCrash = `fping exited with ${how ?? '?'}: ${group.stderr.trim() || 'no output'}`;
    for (const member of group.members.values())
      for (const sub of member.subs) sub.waiter?.(undefined);
    if (this.groups.get(group.id) !== group) return;
    const delayMs = Math.min(30_000, 500 * 2 ** group.failures);
    group.failures++;
    group.restartTimer = setTimeout(() => {
      group.restartTimer = undefined;
      if (this.groups.get(group.id) === group && group.running === undefined)
        this.start(group, binary);
    }, delayMs);
    group.restartTimer.unref();
  }

  private stop(group: Group): void {
    clearTimeout(group.restartTimer);
    group.restartTimer = undefined;
    const running = group.running;
    if (running === undefined) return;
    running.out?.close();
    group.running = undefined;
    for (const member of group.members.values())
      for (const sub of member.subs) sub.waiter?.(undefined);
    const done = killAndWait(running.child).finally(() => this.stopping.delete(done));
    this.stopping.add(done);
  }
}

function aborted(): EchoReport {
  return { engine: 'fping-loop', rttsMs: [], icmpErrors: [], aborted: true };
}
