/**
 * Per-key token buckets (`CAIRN_RATE_LIMIT_RPS`, `CAIRN_RATE_LIMIT_BURST`).
 * In memory and per process: N server processes behind a load balancer allow
 * up to N times the rate in all. A bucket holds at most `burst` tokens and
 * refills at `rps` tokens per second; each request takes one.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly rps: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(rps > 0) || !(burst >= 1)) throw new RangeError("RateLimiter needs rps > 0 and burst >= 1");
  }

  /** Takes a token for `id`: 0 when the request may go ahead, else the milliseconds until a token is free. */
  take(id: string): number {
    const now = this.now();
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

  /** Forgets a key's bucket (a revoked key needs none). */
  forget(id: string): void {
    this.buckets.delete(id);
  }
}
