import { gunzipSync, gzipSync } from 'node:zlib';
import type { Transition } from '../paths/checkpoint.js';
import type { SettleSignal } from '../paths/states.js';
import type { AgentLiveness, PathState } from '../types.js';

/**
 * What an ingest shard (`nats.role: ingest`) tells the localiser: one message per flush,
 * on `<changeSubject>.<shard>` of the change stream. It carries only what moves the
 * diagnosis — the paths whose meaning to localisation changed (collector/localise/views.ts
 * `samePathMeaning`), whole, so applying one again changes nothing — and the liveness of
 * the agents heard since the last flush, from which the localiser decides late and silent
 * itself, as a single collector does from its own ingest.
 *
 * Order: `epoch` is the shard process's start (ms), `seq` counts its messages from 1. The
 * localiser applies a shard's messages in that order, once ({@link ChangeOrder}); a
 * restarted shard begins a new epoch with a full snapshot of its share.
 */
export interface ShardChange {
  readonly v: 1;
  readonly shard: string;
  readonly epoch: number;
  readonly seq: number;
  /** When the shard flushed it (its clock). */
  readonly atMs: number;
  /** The agents heard since the last flush (every report batch is a heartbeat). */
  readonly agents: readonly AgentLiveness[];
  /** Paths whose meaning to localisation changed since the shard last sent them. */
  readonly paths: readonly PathState[];
  /** Settle signals of the batches, with the batch's arrival time. */
  readonly signals: readonly { readonly atMs: number; readonly list: readonly SettleSignal[] }[];
  /** Path and agent state changes, for the dashboard's feed and the record. */
  readonly transitions: readonly Transition[];
  /** Set on the messages of a full snapshot (a start, or a localiser's resync request). */
  readonly snapshot?: boolean;
  /**
   * Set while the shard's own reports cannot reach it (its NATS input stalled:
   * collector/nats-ingest.ts `inputStall`), since when (its clock): its agents' silence
   * since then is the transport's, not theirs, and the localiser does not count it.
   */
  readonly inputStalledSinceMs?: number;
}

/** A change message's wire form: gzipped JSON. */
export function encodeChange(c: ShardChange): Uint8Array {
  return gzipSync(JSON.stringify(c));
}

/** Why a change message could not be read. */
export class BadChange extends Error {}

const isInt = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** Decodes and checks the frame of a change message; throws {@link BadChange} naming what is wrong. */
export function decodeChange(data: Uint8Array): ShardChange {
  let raw: unknown;
  try {
    raw = JSON.parse(gunzipSync(data).toString());
  } catch (err) {
    throw new BadChange(`not a gzipped JSON change: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null) throw new BadChange('expected an object');
  const c = raw as Record<string, unknown>;
  if (c.v !== 1) throw new BadChange(`v: expected 1 (actual: ${JSON.stringify(c.v)})`);
  if (typeof c.shard !== 'string' || c.shard === '') throw new BadChange('shard: expected a name');
  for (const k of ['epoch', 'seq', 'atMs'] as const)
    if (!isInt(c[k])) throw new BadChange(`${k}: expected an integer ≥ 0`);
  if ((c.seq as number) < 1) throw new BadChange('seq: expected ≥ 1');
  if (c.inputStalledSinceMs !== undefined && !isInt(c.inputStalledSinceMs))
    throw new BadChange('inputStalledSinceMs: expected an integer ≥ 0');
  for (const k of ['agents', 'paths', 'signals', 'transitions'] as const)
    if (!Array.isArray(c[k])) throw new BadChange(`${k}: expected an array`);
  (c.paths as unknown[]).forEach((p, i) => {
    const q = p as Partial<PathState> | null;
    if (typeof q?.agent !== 'string' || typeof q.target !== 'string' || typeof q.state !== 'string')
      throw new BadChange(`paths[${i}]: expected a path state (agent, target, state)`);
  });
  (c.agents as unknown[]).forEach((a, i) => {
    const q = a as Partial<AgentLiveness> | null;
    if (typeof q?.agent !== 'string' || typeof q.agentId !== 'string' || !isInt(q.lastSeenMs))
      throw new BadChange(
        `agents[${i}]: expected an agent's liveness (agent, agentId, lastSeenMs)`,
      );
  });
  return raw as ShardChange;
}

/** What to do with a change message (see {@link ChangeOrder.verdict}). */
export type ChangeVerdict =
  /** The next one of its shard: apply it, then `commit`. */
  | 'apply'
  /** Already applied (a redelivery), or of an epoch the shard has left: drop it (ack). */
  | 'duplicate'
  /** An earlier one of its shard has not come yet: take it again later. */
  | 'gap';

/**
 * The order of each shard's changes at the localiser: per shard its epoch and the last seq
 * applied. A redelivery is a duplicate; a message ahead of the next waits for it; a newer
 * epoch (the shard restarted) is taken from its first message. A shard the localiser has
 * not heard since its own start is taken from whatever comes first (the localiser asks the
 * shards for a snapshot at start: what it missed is in it).
 */
export class ChangeOrder {
  private readonly last = new Map<string, { epoch: number; seq: number }>();

  verdict(c: Pick<ShardChange, 'shard' | 'epoch' | 'seq'>): ChangeVerdict {
    const l = this.last.get(c.shard);
    if (l === undefined) return 'apply';
    if (c.epoch < l.epoch) return 'duplicate';
    if (c.epoch > l.epoch) return c.seq === 1 ? 'apply' : 'gap';
    if (c.seq <= l.seq) return 'duplicate';
    return c.seq === l.seq + 1 ? 'apply' : 'gap';
  }

  /** Records a message as applied (also one applied past a gap given up on). */
  commit(c: Pick<ShardChange, 'shard' | 'epoch' | 'seq'>): void {
    this.last.set(c.shard, { epoch: c.epoch, seq: c.seq });
  }

  /** Per shard, the epoch and last seq applied. */
  positions(): ReadonlyMap<string, { readonly epoch: number; readonly seq: number }> {
    return this.last;
  }
}

/** FNV-1a (32 bits) of a string's UTF-16 units: stable across processes and versions. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The hash shard (0 … count − 1) of an agent: FNV-1a of its name. */
export function hashShardOf(agent: string, count: number): number {
  return fnv1a(agent) % count;
}
