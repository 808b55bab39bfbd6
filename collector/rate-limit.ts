/** A token bucket's size: `burst` requests at once, refilled at `perSecond`. */
export interface RateLimit {
  readonly burst: number;
  readonly perSecond: number;
}

/** The answer of {@link TokenBuckets.take}: allowed, or when to retry (whole seconds, ≥ 1). */
export type Admission =
  { readonly ok: true } | { readonly ok: false; readonly retryAfterS: number };

/**
 * One token bucket per key (a credential): a request takes a token; tokens come back at
 * `perSecond` up to `burst`. Keys are credentials, bounded by the config and the enrolled
 * agents, so the map needs no eviction beyond dropping full buckets now and then.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly limit: RateLimit,
    private readonly clockMs: () => number = () => Date.now(),
  ) {}

  take(key: string): Admission {
    const now = this.clockMs();
    const { burst, perSecond } = this.limit;
    const b = this.buckets.get(key) ?? { tokens: burst, atMs: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.atMs) / 1000) * perSecond);
    b.atMs = now;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterS: Math.max(1, Math.ceil((1 - b.tokens) / perSecond)) };
  }
}
