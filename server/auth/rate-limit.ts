/**
 * Per-key token buckets (`CAIRN_RATE_LIMIT_RPS`, `CAIRN_RATE_LIMIT_BURST`).
 * In memory and per process: N server processes behind a load balancer allow
 * up to N times the rate in all. A bucket holds at most `burst` tokens and
 * refills at `rps` tokens per second; each request takes one.
 *
 * A bucket lives only as long as it is not full: one that has refilled says
 * nothing a fresh bucket would not, so idle keys are swept away. Nothing else
 * drops a bucket (a key-change notice must not hand a client a fresh burst).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Milliseconds an empty bucket takes to fill up again. */
  private readonly refillMs: number;
  private sweptAt: number;

  constructor(
    readonly rps: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(rps > 0) || !(burst >= 1)) throw new RangeError("RateLimiter needs rps > 0 and burst >= 1");
    this.refillMs = (burst * 1000) / rps;
    this.sweptAt = now();
  }

  /** Takes a token for `id`: 0 when the request may go ahead, else the milliseconds until a token is free. */
  take(id: string): number {
    const now = this.now();
    if (now - this.sweptAt >= Math.max(this.refillMs, 1000)) this.sweep(now);
    let bucket = this.buckets.get(id);
    if (!bucket) {
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(id, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) * this.rps) / 1000);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * 1000) / this.rps));
  }

  /** Like `take` without taking: 0 when a token is free for `id`, else the milliseconds until one is. */
  peek(id: string): number {
    const bucket = this.buckets.get(id);
    if (!bucket) return 0;
    const tokens = Math.min(this.burst, bucket.tokens + ((this.now() - bucket.at) * this.rps) / 1000);
    return tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - tokens) * 1000) / this.rps));
  }

  /** How many keys have a bucket (the sweep keeps this to the keys used lately). */
  get size(): number {
    return this.buckets.size;
  }

  /** Drops the buckets that have refilled since their last request. */
  private sweep(now: number): void {
    this.sweptAt = now;
    for (const [id, bucket] of this.buckets) {
      if (now - bucket.at >= this.refillMs) this.buckets.delete(id);
    }
  }
}
