/** Retry timing for Hetzner Cloud requests: exponential backoff with jitter, rate-limit aware. */

export interface RetryPolicy {
  /** Attempts in all, including the first. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { attempts: 10, baseMs: 400, maxMs: 15_000 };

/** RateLimit-* headers of an answer, when present. */
export interface RateLimitInfo {
  limit: number | undefined;
  remaining: number | undefined;
  /** Unix seconds when the limit will have fully recovered. */
  reset: number | undefined;
}

/** Reads RateLimit-Limit/Remaining/Reset. */
export function readRateLimit(get: (name: string) => string | null): RateLimitInfo {
  const num = (name: string) => {
    const v = get(name);
    const n = v === null ? NaN : Number(v);
    return Number.isFinite(n) ? n : undefined;
  };
  return {
    limit: num("RateLimit-Limit"),
    remaining: num("RateLimit-Remaining"),
    reset: num("RateLimit-Reset"),
  };
}

/**
 * Delay before retry number `attempt` (1-based): base·2^(attempt-1), "equal jitter" (half fixed,
 * half random), capped. After a 429 the API refills one request every 3600/limit seconds, so
 * wait at least that long, but never past RateLimit-Reset.
 */
export function retryDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: number,
  rate?: { info: RateLimitInfo; nowMs: number },
): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  let delay = exp / 2 + (exp / 2) * random;
  if (rate) {
    const { limit, reset } = rate.info;
    const refill = limit && limit > 0 ? 3_600_000 / limit : 1000;
    delay = Math.max(delay, refill);
    if (reset !== undefined) {
      const untilReset = reset * 1000 - rate.nowMs;
      if (untilReset > 0) delay = Math.min(delay, untilReset);
    }
  }
  return Math.round(Math.min(policy.maxMs, Math.max(50, delay)));
}
