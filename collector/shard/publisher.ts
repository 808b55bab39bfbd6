import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from '../../lib/logger.js';
import { connectNats } from '../../lib/nats.js';
import { samePathMeaning } from '../localise/views.js';
import type { Transition } from '../paths/checkpoint.js';
import type { SettleSignal } from '../paths/states.js';
import type { ObservedPathMatrix } from '../observed-matrix.js';
import type { CollectorNatsSection } from '../nats-config.js';
import type { InputStall } from '../input-stall.js';
import { ensureStream } from '../nats-consumer.js';
import type { AgentLiveness, PathState } from '../types.js';
import { encodeChange } from './changes.js';
import type { ShardChange } from './changes.js';

/** How often an ingest shard flushes what changed. */
const flushMs = 100;
/** A flush with nothing to say still goes out this often: the localiser knows the shard is there. */
const heartbeatMs = 1_000;
/** Paths per message: a snapshot of a large share goes out in pieces of this size (~150 KB gzipped). */
const maxPathsPerMessage = 5_000;
/**
 * Messages published at once: a 10,000-agent fleet's first round (a million new paths) took
 * a minute one message per round trip. They reach the stream in order (one connection);
 * one that fails is published again, after the others, and the localiser waits for it.
 */
const publishWindow = 8;
/** Signals and transitions held while NATS is away, at most (the oldest go first). */
const maxHeld = 50_000;

/** Counters since start. */
export interface ShardPublisherStats {
  readonly messages: number;
  readonly bytes: number;
  readonly paths: number;
  readonly agents: number;
  readonly snapshots: number;
}

/** Creates the change stream when it is missing (an ingest shard or the localiser, whichever comes first). */
export async function ensureChangeStream(
  nc: NatsConnection,
  s: CollectorNatsSection,
  log: Logger,
): Promise<void> {
  // The localiser needs only what came since it last acked, and asks for a snapshot at start.
  await ensureStream(
    nc,
    s,
    {
      name: s.changeStream,
      subjects: [`${s.changeSubject}.*`],
      maxAgeMs: 3_600_000,
      what: 'NATS change stream',
    },
    log,
  );
}

/** The subject a localiser asks the shards for a snapshot on (core NATS, outside the stream). */
export const resyncSubject = (s: CollectorNatsSection): string => `${s.changeSubject}-resync`;

/**
 * An ingest shard's voice (`nats.role: ingest`): what of its path matrix moves the
 * diagnosis, sent to the change stream. It reads the matrix where the single collector's
 * localiser reads it — the agents whose paths changed meaning (`takeDirtyAgents`) — and of
 * those agents' paths sends the ones that differ, to localisation, from what it last sent
 * (`samePathMeaning`, plus the first class and whether an echo path sees loss); with the
 * liveness of every agent heard, the batches' settle signals and transitions. At start,
 * and when a localiser asks (`<changeSubject>-resync`), it sends its whole share again.
 *
 * Messages go out one at a time, in order, each retried with its own id until JetStream
 * takes it (its dedup window drops a double); what changes meanwhile is merged into the
 * next one.
 */
export class ShardPublisher {
  readonly epoch = Date.now();
  private seq = 0;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private resync: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private closed = false;
  /** Built and not yet taken by JetStream, in seq order. */
  private window: { seq: number; data: Uint8Array; change: ShardChange }[] = [];
  private lastPublishMs = 0;
  private readonly lastSent = new Map<string, Map<string, PathState>>();
  /** Agents to read: false when only changed paths go, true when every path goes (a snapshot). */
  private readonly pending = new Map<string, boolean>();
  private readonly touched = new Set<string>();
  private signals: { atMs: number; list: readonly SettleSignal[] }[] = [];
  private transitions: Transition[] = [];
  private snapshotting = true;
  /** The input stall said in the last change sent, if any. */
  private stallSent: InputStall | undefined;
  private counts = { messages: 0, bytes: 0, paths: 0, agents: 0, snapshots: 0 };

  constructor(
    private readonly section: CollectorNatsSection,
    readonly shard: string,
    private readonly matrix: ObservedPathMatrix,
    private readonly log: Logger,
    /** Since when the shard's own reports cannot reach it, if they cannot (its NATS ingest's). */
    private readonly inputStall: () => InputStall | undefined = () => undefined,
  ) {
    matrix.onSeen = (id) => this.touched.add(id);
    const signals = matrix.onSignals;
    matrix.onSignals = (list, atMs) => {
      signals(list, atMs);
      this.signals.push({ atMs, list });
      if (this.signals.length > maxHeld) this.signals.splice(0, this.signals.length - maxHeld);
    };
    const transitions = matrix.onTransitions;
    matrix.onTransitions = (list) => {
      transitions(list);
      for (const t of list) this.transitions.push(t);
      if (this.transitions.length > maxHeld)
        this.transitions.splice(0, this.transitions.length - maxHeld);
    };
  }

  stats(): ShardPublisherStats {
    return { ...this.counts };
  }

  /**
   * Connects and starts flushing, in the background (NATS may be away at start; the
   * client reconnects for ever once connected); the whole share goes first. Resolves at once.
   */
  start(): Promise<void> {
    void this.connect();
    return Promise.resolve();
  }

  private async connect(): Promise<void> {
    const s = this.section;
    for (let failures = 0; !this.closed; failures++) {
      try {
        this.nc = await connectNats(s, `faultline-shard ${this.shard}`);
        break;
      } catch (err) {
        if (failures === 0)
          this.log.warn(
            { err: (err as Error).message },
            'NATS not reachable for changes; retrying',
          );
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
    if (this.closed || this.nc === undefined) return;
    this.js = jetstream(this.nc, { timeout: s.timeout });
    this.queueSnapshot();
    this.resync = this.nc.subscribe(resyncSubject(s), {
      callback: (_err, msg) => {
        // A request names the shard whose changes went missing, or none (a localiser's start).
        const of = msg.string();
        if (of !== '' && of !== this.shard) return;
        this.log.info({ shard: this.shard }, 'a localiser asked for a snapshot');
        this.queueSnapshot();
      },
    });
    this.timer = setInterval(() => void this.pump(), flushMs);
    this.log.info(
      { shard: this.shard, stream: s.changeStream, subject: this.subject() },
      'publishing path-state changes to NATS',
    );
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.resync?.unsubscribe();
    // The last changes, best effort: the next start sends a snapshot anyway.
    if (!this.pumping) await this.pump(true).catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
  }

  private subject(): string {
    return `${this.section.changeSubject}.${this.shard}`;
  }

  private queueSnapshot(): void {
    this.snapshotting = true;
    this.counts.snapshots++;
  }

  /** Publishes what is due, one message at a time. */
  private async pump(final = false): Promise<void> {
    if (this.pumping || (this.closed && !final) || this.js === undefined) return;
    this.pumping = true;
    try {
      if (this.ensured === false) {
        await ensureChangeStream(this.nc!, this.section, this.log);
        this.ensured = true;
      }
      for (;;) {
        if (this.window.length === 0) {
          for (let m = this.build(Date.now()); m !== undefined; m = this.build(Date.now())) {
            this.window.push(m);
            if (this.window.length >= publishWindow) break;
          }
          if (this.window.length === 0) break;
        }
        const js = this.js;
        const sent = await Promise.allSettled(
          this.window.map((m) =>
            js.publish(this.subject(), m.data, {
              msgID: `${this.shard}-${this.epoch}-${m.seq}`,
              timeout: this.section.timeout,
            }),
          ),
        );
        const failed = this.window.filter((_, i) => sent[i]!.status === 'rejected');
        for (const m of this.window) {
          if (failed.includes(m)) continue;
          this.lastPublishMs = Date.now();
          this.counts.messages++;
          this.counts.bytes += m.data.length;
          this.counts.paths += m.change.paths.length;
          this.counts.agents += m.change.agents.length;
        }
        this.window = failed;
        const err = sent.find((r) => r.status === 'rejected');
        if (err?.status === 'rejected') throw err.reason;
        if (final) break;
      }
    } catch (err) {
      if (!this.closed)
        this.log.warn({ err: (err as Error).message }, 'change not published; retrying');
    } finally {
      this.pumping = false;
    }
  }

  private ensured = false;

  /** The next message, or undefined when there is nothing to say yet. */
  private build(nowMs: number): { seq: number; data: Uint8Array; change: ShardChange } | undefined {
    const matrix = this.matrix;
    const dirty = matrix.takeDirtyAgents();
    let snapshot = false;
    if (this.snapshotting) {
      this.snapshotting = false;
      snapshot = true;
      for (const a of matrix.agents()) {
        this.pending.set(a.agent, true);
        this.touched.add(a.agentId);
      }
    } else if (dirty.all) {
      for (const a of matrix.agents())
        if (!this.pending.has(a.agent)) this.pending.set(a.agent, false);
    }
    for (const a of dirty.agents) if (!this.pending.has(a)) this.pending.set(a, false);

    const paths: PathState[] = [];
    for (const [agent, all] of this.pending) {
      if (paths.length >= maxPathsPerMessage) break;
      this.pending.delete(agent);
      let sent = this.lastSent.get(agent);
      if (sent === undefined) {
        sent = new Map();
        this.lastSent.set(agent, sent);
      }
      for (const p of matrix.paths({ agent })) {
        const last = sent.get(p.target);
        if (all || last === undefined || !sameToLocaliser(p, last)) {
          paths.push(p);
          sent.set(p.target, p);
        }
      }
      if (all) snapshot = true;
    }
    const agents: AgentLiveness[] = [];
    for (const id of this.touched) {
      const a = matrix.agentById(id);
      if (a !== undefined) agents.push(a);
    }
    this.touched.clear();
    const signals = this.signals;
    const transitions = this.transitions;
    // A stall of the shard's input that began or ended goes out at once.
    const stall = this.inputStall();
    if (
      (stall === undefined) === (this.stallSent === undefined) &&
      paths.length === 0 &&
      agents.length === 0 &&
      signals.length === 0 &&
      transitions.length === 0 &&
      nowMs - this.lastPublishMs < heartbeatMs
    )
      return undefined;
    this.signals = [];
    this.transitions = [];
    this.stallSent = stall;
    const change: ShardChange = {
      v: 1,
      shard: this.shard,
      epoch: this.epoch,
      seq: ++this.seq,
      atMs: nowMs,
      agents,
      paths,
      signals,
      transitions,
      ...(snapshot ? { snapshot: true } : {}),
      ...(stall === undefined ? {} : { inputStalledSinceMs: Math.floor(stall.sinceMs) }),
    };
    return { seq: change.seq, data: encodeChange(change), change };
  }
}

/** What an ingest shard compares: localisation's meaning, the first class, and whether an echo path sees loss. */
function sameToLocaliser(p: PathState, q: PathState): boolean {
  return (
    samePathMeaning(p, q) &&
    p.firstClass === q.firstClass &&
    (p.lossRatio ?? 0) > 0 === (q.lossRatio ?? 0) > 0
  );
}
