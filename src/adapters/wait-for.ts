import { setTimeout as sleep } from "node:timers/promises";

export interface WaitForOptions {
  /** Give up after this long (the predicate is tried at least once). */
  timeoutMs: number;
  /** Pause between tries (default 50 ms); a function gets the number of tries so far (a backoff). */
  intervalMs?: number | ((tries: number) => number);
  /** Stops the wait early: the signal's reason is thrown. */
  signal?: AbortSignal;
}

/**
 * Polls `predicate` until it returns true (or a value other than false/undefined), and
 * returns that value; false when `timeoutMs` passes first. The one polling loop of nixpool
 * and its tests: callers decide what a timeout means.
 */
export async function waitFor<T>(
  predicate: () => T | false | undefined | Promise<T | false | undefined>,
  o: WaitForOptions,
): Promise<T | false> {
  const deadline = Date.now() + o.timeoutMs;
  const interval = o.intervalMs ?? 50;
  for (let tries = 1; ; tries++) {
    o.signal?.throwIfAborted();
    const value = await predicate();
    if (value !== false && value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    const pause = typeof interval === "number" ? interval : interval(tries);
    await sleep(Math.min(pause, left), undefined, o.signal ? { signal: o.signal } : {}).catch(
      (e: unknown) => {
        throw o.signal?.aborted ? o.signal.reason : e;
      },
    );
  }
}
