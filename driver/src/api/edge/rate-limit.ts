// Per-key token buckets: each request takes one token; tokens refill continuously at
// `perSecond` up to `burst`. A refused request learns how long until the next token.

export interface BucketOptions {
  /** Tokens added per second (sustained requests per second). */
  perSecond: number;
  /** Bucket size (the largest burst). */
  burst: number;
}

interface Bucket {
  tokens: number;
  lastMs: number;
  opts: BucketOptions;
}

export class RateLimiter {
  private buckets = new Map<string, Bucket>();

  constructor(
    private readonly defaults: BucketOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes a token for `key`: 0 when allowed, else the milliseconds until one is available. */
  take(key: string, opts: BucketOptions | null = null): number {
    const o = opts ?? this.defaults;
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b || b.opts.perSecond !== o.perSecond || b.opts.burst !== o.burst) {
      b = { tokens: o.burst, lastMs: t, opts: o };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(o.burst, b.tokens + ((t - b.lastMs) / 1000) * o.perSecond);
    b.lastMs = t;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - b.tokens) / o.perSecond) * 1000);
  }
}
