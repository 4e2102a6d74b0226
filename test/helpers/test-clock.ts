// A clock for tests that move time forward by hand (billing hours, budgets). It runs at real speed
// from 06:00 UTC of today, so that an hour or two of jumps never crosses a calendar day or month:
// a test run at 23:40 UTC sees the same budget windows as one run at noon.

/** A clock running at real speed from 06:00 UTC today, plus what `jump` adds. */
export function testClock(): { now: () => number; jump: (toMs: number) => void } {
  const t0 = Date.now();
  const d = new Date(t0);
  const anchor = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), 6);
  let offsetMs = 0;
  return {
    now: () => anchor + (Date.now() - t0) + offsetMs,
    /** Sets how far ahead of real time (since the clock was made) the clock runs. */
    jump: (toMs) => {
      offsetMs = toMs;
    },
  };
}
